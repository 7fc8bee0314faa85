//! `--shard I/N` and `rexec merge`: shards split the selection (disjoint, balanced, stable,
//! together the whole selection), and the `--json` outputs of the shards of a real run
//! against sshd merge into the summary, failed-hosts file and exit code of one run.

use crate::harness;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use harness::cli::{json_lines, rexec, rexec_command, text};
use harness::Cluster;
use serde_json::{json, Value};

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

fn list(args: &[&str], shard: &str) -> Vec<String> {
    let mut all = args.to_vec();
    all.extend(["--shard", shard, "--list-hosts"]);
    let out = rexec(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    lines(&out)
}

#[test]
fn shards_split_the_selection_disjoint_balanced_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        "[hosts]\n\"web[01-12]\" = {}\n\"db[1-5]\" = {}\nlb = {}\n\
         [groups.web]\nhosts = [\"web[01-12]\"]\n",
    )
    .unwrap();
    let inventory = inventory.to_str().unwrap();
    for (args, pattern) in [
        (vec!["-H", "h[1-23]"], "all"),
        (vec!["-i", inventory], "all"),
        (vec!["-i", inventory], "web:!web03,db*"),
    ] {
        let mut base = args.clone();
        base.extend(["-l", pattern]);
        let out = rexec(&[base.as_slice(), &["--list-hosts"]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let selected = lines(&out);
        assert!(selected.len() > 10, "{selected:?}");
        for n in [1, 3, 4, 7] {
            let mut union = Vec::new();
            let mut sizes = Vec::new();
            for i in 1..=n {
                let shard = format!("{i}/{n}");
                let hosts = list(&base, &shard);
                // The documented rule: the k-th selected host goes to shard (k mod N)+1.
                let expected: Vec<String> = selected
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % n == i - 1)
                    .map(|(_, h)| h.clone())
                    .collect();
                assert_eq!(hosts, expected, "{args:?} -l {pattern} --shard {shard}");
                // Stable: the same again.
                assert_eq!(list(&base, &shard), hosts);
                sizes.push(hosts.len());
                union.extend(hosts);
            }
            // Disjoint and together the selection.
            let distinct: HashSet<&String> = union.iter().collect();
            assert_eq!(distinct.len(), union.len(), "{union:?}");
            let mut sorted_union = union.clone();
            sorted_union.sort();
            let mut sorted_selected = selected.clone();
            sorted_selected.sort();
            assert_eq!(sorted_union, sorted_selected);
            // Balanced to one host.
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
        }
    }
}

#[test]
fn show_config_shows_the_shards_hosts() {
    let out = rexec(&[
        "-H",
        "h[1-5]",
        "-F",
        "none",
        "--shard",
        "2/2",
        "--show-config",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let objects: Vec<Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{shown}");
    assert!(
        shown.contains("\"h2\"") && shown.contains("\"h4\""),
        "{shown}"
    );
    for absent in ["\"h1\"", "\"h3\"", "\"h5\""] {
        assert!(!shown.contains(absent), "{shown}");
    }
}

#[test]
fn bad_shards_are_usage_errors_before_connecting() {
    for (value, says) in [
        (
            "0/0",
            "--shard 0/0: the number of shards N must be at least 1",
        ),
        (
            "1/0",
            "--shard 1/0: the number of shards N must be at least 1",
        ),
        ("5/4", "--shard 5/4: the shard must be from 1 to 4"),
        (
            "a/b",
            "--shard a/b: expected I/N, two whole numbers with 1 <= I <= N (like 1/4)",
        ),
        (
            "-1/3",
            "--shard -1/3: expected I/N, two whole numbers with 1 <= I <= N (like 1/4)",
        ),
        (
            "2",
            "--shard 2: expected I/N, two whole numbers with 1 <= I <= N (like 1/4)",
        ),
        (
            "0/4",
            "--shard 0/4: shards are numbered from 1 to N (1/4 to 4/4); from a 0-based index \
             such as Kubernetes' JOB_COMPLETION_INDEX, use --shard $((JOB_COMPLETION_INDEX+1))/4",
        ),
    ] {
        // A host that would fail with exit 3 if anything connected.
        for args in [
            vec!["-H", "127.0.0.1:1", "--shard", value, "true"],
            vec!["-H", "127.0.0.1:1", "--shard", value, "--list-hosts"],
            vec![
                "-H",
                "127.0.0.1:1",
                "--shard",
                value,
                "put",
                "Cargo.toml",
                "/tmp/x",
            ],
        ] {
            let out = rexec(&args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?}: {}",
                text(&out.stderr)
            );
            assert_eq!(
                text(&out.stderr),
                format!("rexec: {says}\nTry 'rexec --help' for more information.\n"),
                "{args:?}"
            );
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn a_shard_without_hosts_warns_and_succeeds_with_an_empty_summary() {
    let out = rexec(&["-H", "a,b", "--shard", "3/4", "--list-hosts"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("shard 3/4 has no hosts: 2 hosts are selected for 4 shards"),
        "{}",
        text(&out.stderr)
    );
    // No host is contacted (these would be unreachable): exit 0, an empty summary that
    // still records the shard, so that a merge of all four is complete.
    let out = rexec(&[
        "-H",
        "127.0.0.1:1,127.0.0.1:2",
        "--shard",
        "4/4",
        "--json",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (hosts, summary) = json_lines(&out);
    assert!(hosts.is_empty());
    assert_eq!(summary["hosts"], 0);
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(
        summary["shard"],
        json!({"index": 4, "count": 4, "selected": 2, "failed_positions": []})
    );
    let out = rexec(&["-H", "127.0.0.1:1,127.0.0.1:2", "--shard", "3/4", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("shard 3/4 has no hosts") && stderr.ends_with("--- 0 hosts in 0.00s\n"),
        "{stderr}"
    );
}

/// Runs shard `i` of `n` with `--json` and `--failed-hosts`, writing its JSON lines to
/// DIR/shard-I.jsonl; returns the file and the run's output.
fn run_shard(dir: &Path, base: &[&str], i: usize, n: usize) -> (PathBuf, Output) {
    let file = dir.join(format!("shard-{i}.jsonl"));
    let failed = dir.join(format!("failed-{i}.txt"));
    let shard = format!("{i}/{n}");
    let mut args = vec![
        "--shard",
        &shard,
        "--json",
        "--failed-hosts",
        failed.to_str().unwrap(),
    ];
    args.extend(base);
    let out = rexec(&args);
    fs::write(&file, &out.stdout).unwrap();
    (file, out)
}

fn merge(args: &[&str], files: &[&Path]) -> Output {
    let mut all = vec!["merge"];
    all.extend(args);
    let names: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    all.extend(names);
    rexec(&all)
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

const COMMAND: &str = "case {{name}} in node03|node08) echo failing; exit 1;; esac; echo ok";

#[test]
fn the_shards_of_a_run_merge_into_the_run() {
    let cluster = Cluster::start(1, 9, 600);
    let inventory = cluster.inventory(&[], "node10 = { address = \"127.0.0.1\", port = 1 }\n");
    let dir = tempfile::tempdir().unwrap();
    let base = ["-i", inventory.to_str().unwrap(), "--no-agent", COMMAND];

    let mut files = Vec::new();
    let mut seen = Vec::new();
    for i in 1..=4 {
        let (file, out) = run_shard(dir.path(), &base, i, 4);
        let (hosts, summary) = json_lines(&out);
        let shard = &summary["shard"];
        assert_eq!(
            (&shard["index"], &shard["count"], &shard["selected"]),
            (&json!(i), &json!(4), &json!(10)),
            "{}",
            text(&out.stdout)
        );
        // node03, node08 and node10 stand at 2, 7 and 9 in the selection.
        let expected: Vec<usize> = [2, 7, 9].into_iter().filter(|k| k % 4 == i - 1).collect();
        assert_eq!(shard["failed_positions"], json!(expected));
        assert_eq!(summary["hosts"], hosts.len());
        seen.extend(hosts.into_keys());
        files.push(file);
    }
    // Every host exactly once across the shards.
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 10);
    assert_eq!(distinct.len(), 10);

    // One run over the same hosts, for comparison.
    let whole_failed = dir.path().join("whole-failed.txt");
    let mut args = vec!["--json", "--failed-hosts", whole_failed.to_str().unwrap()];
    args.extend(base);
    let whole = rexec(&args);
    assert_eq!(whole.status.code(), Some(3));
    let (_, whole_summary) = json_lines(&whole);

    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let failed = dir.path().join("failed.txt");
    let out = merge(&["--failed-hosts", failed.to_str().unwrap()], &paths);
    // node10 unreachable (3) beats node03 and node08 exiting 1.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let summary_text = text(&out.stderr);
    assert!(
        summary_text.starts_with("--- 10 hosts in "),
        "{summary_text}"
    );
    assert!(
        summary_text.contains(": 7 ok, 2 exited-nonzero, 1 unreachable\n"),
        "{summary_text}"
    );
    assert!(
        summary_text.contains("    exited-nonzero: node[03,08]\n    unreachable: node10\n"),
        "{summary_text}"
    );
    assert_eq!(sorted_lines(&failed), ["node03", "node08", "node10"]);
    assert_eq!(sorted_lines(&failed), sorted_lines(&whole_failed));

    // With --json: the summary object one run prints (elapsed aside).
    let out = merge(&["--json"], &paths);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let (hosts, merged) = json_lines(&out);
    assert!(hosts.is_empty());
    assert_eq!(text(&out.stdout).lines().count(), 1);
    for key in ["hosts", "outcomes", "failed_hosts", "exit_code"] {
        assert_eq!(merged[key], whole_summary[key], "{key}");
    }
    assert_eq!(
        merged["failed_hosts"],
        json!(["node03", "node08", "node10"])
    );
    // The failed-hosts file too, line for line.
    assert_eq!(
        fs::read_to_string(&failed).unwrap(),
        fs::read_to_string(&whole_failed).unwrap()
    );
    assert!(merged.get("shard").is_none());
    assert!(merged["elapsed_ms"].as_u64().is_some());

    // The same through stdin, the files one after the other.
    let mut cat = Vec::new();
    for f in &files {
        cat.extend(fs::read(f).unwrap());
    }
    let mut child = rexec_command(&["merge", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&cat).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out).1["outcomes"], whole_summary["outcomes"]);

    // Missing shard: exit 2, nothing printed on stdout, no failed-hosts file.
    let failed_again = dir.path().join("failed-again.txt");
    let expect_error = |args: &[&str], files: &[&Path], says: &str| {
        let mut all = vec!["--json", "--failed-hosts", failed_again.to_str().unwrap()];
        all.extend(args);
        let out = merge(&all, files);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        assert!(!failed_again.exists());
        let message = text(&out.stderr);
        assert!(message.starts_with("rexec: merge: "), "{message}");
        assert!(message.contains(says), "expected {says:?} in {message}");
    };
    expect_error(&[], &paths[..3], "shard 4/4 is missing (3 of 4 given)");
    expect_error(&[], &[paths[0], paths[2]], "shards 2/4, 4/4 are missing");
    // Duplicate shard.
    let copy = dir.path().join("copy.jsonl");
    fs::copy(paths[1], &copy).unwrap();
    expect_error(
        &[],
        &[paths[0], paths[1], paths[2], paths[3], &copy],
        "appears twice",
    );
    // A truncated file: cut in the middle of its summary line, or before it.
    let whole_text = fs::read_to_string(paths[0]).unwrap();
    let cut = dir.path().join("cut.jsonl");
    fs::write(&cut, &whole_text[..whole_text.len() - 20]).unwrap();
    let summary_line = whole_text.lines().count();
    expect_error(
        &[],
        &[&cut, paths[1], paths[2], paths[3]],
        &format!(
            "{}:{summary_line}: not a line of rexec --json output",
            cut.display()
        ),
    );
    let before_summary: String = whole_text
        .lines()
        .take(summary_line - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&cut, before_summary).unwrap();
    expect_error(
        &[],
        &[&cut, paths[1], paths[2], paths[3]],
        &format!("{}: ends without a summary line after", cut.display()),
    );
    // A malformed line names its file and line.
    let mut damaged: Vec<String> = whole_text.lines().map(str::to_owned).collect();
    damaged[1] = "{\"host\": \"node05\", oops".to_owned();
    let bad = dir.path().join("bad.jsonl");
    fs::write(&bad, damaged.join("\n")).unwrap();
    expect_error(
        &[],
        &[&bad, paths[1], paths[2], paths[3]],
        &format!("{}:2: not a line of rexec --json output", bad.display()),
    );
    // A shard of another split (3 shards) among these.
    let other = tempfile::tempdir().unwrap();
    let (third, _) = run_shard(other.path(), &base, 1, 3);
    expect_error(
        &[],
        &[paths[0], paths[1], paths[2], &third],
        "shard 1/3 of 10 selected hosts, but",
    );
    // A run without --shard among shards.
    let plain = dir.path().join("plain.jsonl");
    fs::write(&plain, &whole.stdout).unwrap();
    expect_error(&[], &[paths[0], &plain], "not a sharded run");
    // Options merge does not take: a usage error.
    let out = merge(&["-l", "web"], &paths);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: merge takes only --json, --failed-hosts FILE and -q/--quiet, not --limit\n\
         Try 'rexec --help' for more information.\n"
    );
    expect_error(
        &[],
        &[Path::new("/nonexistent/shard.jsonl")],
        "cannot read /nonexistent/shard.jsonl",
    );
}

#[test]
fn runs_without_shards_merge_and_no_host_may_appear_twice() {
    let cluster = Cluster::start(1, 4, 620);
    let inventory = cluster.inventory(&[], "");
    let inventory = inventory.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |limit: &str, name: &str| {
        let out = rexec(&[
            "-i",
            inventory,
            "--no-agent",
            "-l",
            limit,
            "--json",
            COMMAND,
        ]);
        let path = dir.path().join(name);
        fs::write(&path, &out.stdout).unwrap();
        path
    };
    let a = run("node01,node02", "a.jsonl");
    let b = run("node03,node04", "b.jsonl");
    let out = merge(&["--json"], &[&a, &b]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (_, summary) = json_lines(&out);
    assert_eq!(summary["hosts"], 4);
    assert_eq!(summary["outcomes"], json!({"ok": 3, "exited-nonzero": 1}));
    assert_eq!(summary["failed_hosts"], json!(["node03"]));
    // -q: no text summary, still the exit code.
    let out = merge(&["-q"], &[&a, &b]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty() && out.stdout.is_empty());

    let c = run("node02,node03", "c.jsonl");
    let out = merge(&[], &[&a, &c]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("host node02 appears twice"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sharded_put_and_get_merge_too() {
    let cluster = Cluster::start(1, 5, 640);
    let inventory = cluster.inventory(&[], "");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("payload.txt");
    fs::write(&local, "payload\n").unwrap();
    let remote = format!(
        "/tmp/rexec-shard-test-{}-{{{{name}}}}.txt",
        std::process::id()
    );
    let put = [
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "put",
        local.to_str().unwrap(),
        remote.as_str(),
    ];
    let mut files = Vec::new();
    for i in 1..=2 {
        let (file, out) = run_shard(dir.path(), &put, i, 2);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        files.push(file);
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = merge(&["--json"], &paths);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, summary) = json_lines(&out);
    assert_eq!(summary["hosts"], 5);
    assert_eq!(summary["outcomes"], json!({"ok": 5}));

    let fetched = dir.path().join("fetched");
    let get = [
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "get",
        remote.as_str(),
        fetched.to_str().unwrap(),
    ];
    let mut files = Vec::new();
    for i in 1..=3 {
        let (file, out) = run_shard(&dir.path().join(""), &get, i, 3);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        files.push(file);
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = merge(&[], &paths);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(": 5 ok\n"),
        "{}",
        text(&out.stderr)
    );
    // Every host's copy arrived once.
    assert_eq!(fs::read_dir(&fetched).unwrap().count(), 5);
    for i in 1..=5 {
        let _ = fs::remove_file(remote.replace("{{name}}", &format!("node{i:02}")));
    }
}

#[test]
fn a_command_named_merge_needs_dash_dash() {
    // Without `--`: the merge subcommand, which takes no hosts (exit 2, nothing connects).
    let out = rexec(&["-H", "127.0.0.1:1", "merge", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("merge takes only --json, --failed-hosts FILE and -q/--quiet, not --hosts"),
        "{}",
        text(&out.stderr)
    );
    // With `--`: a remote command, tried on the (unreachable) host.
    let out = rexec(&["-H", "127.0.0.1:1", "--json", "--", "merge", "x"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (hosts, _) = json_lines(&out);
    assert_eq!(hosts["127.0.0.1:1"]["outcome"], "unreachable");
}
