//! The `rexec` binary against fleets of real sshd servers on loopback addresses: per-host
//! results, summaries, output modes, exit codes, failed-hosts round trip and Ctrl-C.

use crate::harness;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::cli::{answer_prompt, on_a_terminal};
use harness::{eventually, remote_processes, Cluster};
use serde_json::Value;

fn rexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> (HashMap<String, Value>, Value) {
    let mut hosts = HashMap::new();
    let mut summary = Value::Null;
    for line in text(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(s) = v.get("summary") {
            summary = s.clone();
        } else {
            hosts.insert(v["host"].as_str().unwrap().to_owned(), v);
        }
    }
    (hosts, summary)
}

/// A different key than the server's, for `[address]:port`.
fn wrong_key_line(cluster: &Cluster, address: &str, port: u16) -> String {
    let key = harness::keygen(cluster.dir.path(), "impostor", "ed25519", "");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut p = public.split_whitespace();
    format!(
        "[{address}]:{port} {} {}\n",
        p.next().unwrap(),
        p.next().unwrap()
    )
}

fn replace_known_host(cluster: &Cluster, address: &str, port: u16) {
    let text = std::fs::read_to_string(&cluster.known_hosts).unwrap();
    let prefix = format!("[{address}]:{port} ");
    let mut kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&wrong_key_line(cluster, address, port));
    std::fs::write(&cluster.known_hosts, kept).unwrap();
}

const MIXED_COMMAND: &str = "case {{name}} in \
    node03) echo three; exit 3;; \
    node04) sleep 60;; \
    node07) head -c 20000000 /dev/zero;; \
    esac; echo hello from {{name}}";

#[test]
fn thirty_hosts_each_get_their_own_result() {
    let cluster = Cluster::start(2, 15, 2);
    let hosts = cluster.hosts();
    assert_eq!(hosts.len(), 30);
    let closed = harness::free_port();
    // node06's recorded key is wrong.
    replace_known_host(&cluster, &hosts[5].address, hosts[5].port);
    let inventory = cluster.inventory(
        &[(
            "node05",
            format!("{{ address = \"127.0.0.6\", port = {closed} }}"),
        )],
        "",
    );
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        // Long enough for node07's 20 MB (120 MB of JSON from a debug build) on a loaded
        // machine: at 3 s it timed out under a load average of 35.
        "-t",
        "10s",
        MIXED_COMMAND,
    ]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 30, "{}", text(&out.stderr));
    for i in 1..=30 {
        let name = format!("node{i:02}");
        let r = &results[&name];
        match i {
            3 => {
                assert_eq!(r["outcome"], "exited-nonzero");
                assert_eq!(r["exit_code"], 3);
                assert_eq!(r["stdout"], "three\n");
            }
            4 => {
                assert_eq!(r["outcome"], "timed-out");
                assert_eq!(r["error"]["phase"], "command");
            }
            5 => {
                assert_eq!(r["outcome"], "unreachable");
                assert_eq!(r["error"]["kind"], "connect");
            }
            6 => {
                assert_eq!(r["outcome"], "host-key-rejected");
                assert_eq!(r["error"]["kind"], "host-key-changed");
                assert!(r["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("HOST KEY CHANGED"));
            }
            7 => {
                assert_eq!(r["outcome"], "ok");
                let stdout = r["stdout"].as_str().unwrap();
                assert_eq!(stdout.len(), 20_000_000 + "hello from node07\n".len());
                assert!(stdout.ends_with("\0hello from node07\n"));
            }
            _ => {
                assert_eq!(r["outcome"], "ok", "{name}: {r}");
                assert_eq!(r["exit_code"], 0);
                assert_eq!(r["stdout"], format!("hello from {name}\n"));
                assert_eq!(r["stderr"], "");
            }
        }
    }
    assert_eq!(summary["hosts"], 30);
    assert_eq!(summary["outcomes"]["ok"], 26);
    assert_eq!(summary["outcomes"]["exited-nonzero"], 1);
    assert_eq!(summary["outcomes"]["timed-out"], 1);
    assert_eq!(summary["outcomes"]["unreachable"], 1);
    assert_eq!(summary["outcomes"]["host-key-rejected"], 1);
    assert_eq!(
        summary["failed_hosts"],
        serde_json::json!(["node03", "node04", "node05", "node06"])
    );
    // Timeout (4) outranks could-not-run (3) and non-zero exit (1).
    assert_eq!(summary["exit_code"], 4);
    assert_eq!(out.status.code(), Some(4));
    // The timed-out command is gone from the server.
    assert!(eventually(Duration::from_secs(10), || remote_processes(
        "sleep 60"
    )
    .is_empty()));
}

#[test]
fn default_output_prints_each_host_whole_with_a_summary() {
    let cluster = Cluster::start(1, 4, 40);
    let inventory = cluster.inventory(&[], "");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "echo out {{name}}; echo err {{name}} >&2; test {{name}} != node02",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for i in 1..=4 {
        let name = format!("node{i:02}");
        let outcome = if i == 2 {
            "exited-nonzero (exit 1)"
        } else {
            "ok (exit 0)"
        };
        let block = format!("=== {name}: {outcome} in ");
        let at = stdout
            .find(&block)
            .unwrap_or_else(|| panic!("no {block:?} in {stdout}"));
        let rest = &stdout[at..];
        let body = rest.split_once('\n').unwrap().1;
        assert!(
            body.starts_with(&format!("out {name}\n--- {name} stderr:\nerr {name}\n")),
            "{stdout}"
        );
    }
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--- 4 hosts in "), "{stderr}");
    assert!(stderr.contains(": 3 ok, 1 exited-nonzero\n"), "{stderr}");
    assert!(stderr.contains("    exited-nonzero: node02\n"), "{stderr}");
}

/// Issue 13: the default mode held each host's whole output in memory (223 MB for 20
/// hosts of 13.5 MB). Blocks past 1 MiB per stream now wait in temporary files: printed
/// whole, byte for byte, in bounded memory; --max-output cuts them as before.
#[test]
fn default_output_prints_large_blocks_whole_in_bounded_memory() {
    let cluster = Cluster::start(1, 4, 780);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    const BYTES: usize = 24_000_000;
    let (out, peak_kib) = harness::cli::output_with_peak_rss(&mut harness::cli::rexec_command(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        &format!("yes {{{{name}}}}-0123456789abcdef | head -c {BYTES}; echo e-{{{{name}}}} >&2"),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut stdout: &[u8] = &out.stdout;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let header_end = stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
        let header = text(&stdout[..header_end]);
        let name = header
            .strip_prefix("=== ")
            .and_then(|h| h.split_once(": ok (exit 0) in "))
            .unwrap_or_else(|| panic!("not a block header: {header:?}"))
            .0
            .to_owned();
        let line = format!("{name}-0123456789abcdef\n");
        let mut expected: Vec<u8> = line.as_bytes().repeat(BYTES / line.len() + 1);
        expected.truncate(BYTES);
        if !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        expected.extend_from_slice(format!("--- {name} stderr:\ne-{name}\n").as_bytes());
        let block = &stdout[header_end..];
        assert!(
            block.len() >= expected.len() && block[..expected.len()] == expected[..],
            "the block of {name} is not its output, byte for byte"
        );
        stdout = &block[expected.len()..];
        seen.push(name);
    }
    assert!(stdout.is_empty(), "{} bytes after the blocks", stdout.len());
    seen.sort();
    assert_eq!(seen, ["node01", "node02", "node03", "node04"]);
    // Each host's 24 MB used to be held whole (128 MiB of buffers for the four).
    assert!(
        peak_kib < 80 * 1024,
        "peak memory {} MiB for 4 blocks of 24 MB",
        peak_kib / 1024
    );

    // --max-output past the spill threshold: the first bytes, and the cut said.
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "-l",
        "node01",
        "--max-output",
        "3MB",
        "head -c 5000000 /dev/zero | tr '\\0' a",
    ]);
    let stdout = &out.stdout;
    let header_end = stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
    let header = text(&stdout[..header_end]);
    assert!(
        header.ends_with("; stdout cut at --max-output\n"),
        "{header}"
    );
    assert_eq!(stdout.len() - header_end, 3_000_000 + 1);
    assert!(stdout[header_end..3_000_000 + header_end]
        .iter()
        .all(|&b| b == b'a'));
}

#[test]
fn group_folds_identical_results() {
    let cluster = Cluster::start(1, 12, 60);
    let inventory = cluster.inventory(&[], "");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--group",
        "-q",
        "case {{name}} in node07|node09) echo odd; exit 2;; *) echo same;; esac",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "=== node[01-06,08,10-12] (10): ok (exit 0)\nsame\n\
         === node[07,09] (2): exited-nonzero (exit 2)\nodd\n"
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn stream_prints_lines_as_they_come() {
    let cluster = Cluster::start(1, 3, 80);
    let inventory = cluster.inventory(&[], "");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--stream",
        "-q",
        "echo one; echo oops >&2; printf 'two\\nno-newline'",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for name in ["node01", "node02", "node03"] {
        for line in ["one", "two", "no-newline"] {
            assert!(stdout.contains(&format!("{name} | {line}\n")), "{stdout}");
        }
        assert!(text(&out.stderr).contains(&format!("{name} | oops\n")));
    }
    assert_eq!(stdout.lines().count(), 9);
}

#[test]
fn out_dir_writes_each_hosts_output_to_files() {
    let cluster = Cluster::start(1, 3, 90);
    let inventory = cluster.inventory(&[], "");
    let dir = tempfile::tempdir().unwrap();
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "--out-dir",
        dir.path().to_str().unwrap(),
        "head -c 5000000 /dev/zero; echo {{name}}; echo e-{{name}} >&2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (results, _) = json_lines(&out);
    for name in ["node01", "node02", "node03"] {
        let stdout = std::fs::read(dir.path().join(format!("{name}.out"))).unwrap();
        assert_eq!(stdout.len(), 5_000_000 + name.len() + 1);
        assert!(stdout.ends_with(format!("{name}\n").as_bytes()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("{name}.err"))).unwrap(),
            format!("e-{name}\n")
        );
        let r = &results[name];
        assert!(r.get("stdout").is_none(), "output kept in memory: {r}");
        assert_eq!(
            r["stdout_file"],
            dir.path().join(format!("{name}.out")).to_str().unwrap()
        );
    }
}

#[test]
fn failed_hosts_round_trip() {
    let cluster = Cluster::start(1, 6, 100);
    let inventory = cluster.inventory(&[], "");
    let failed = cluster.dir.path().join("failed.txt");
    let inv = inventory.to_str().unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "--failed-hosts",
        failed.to_str().unwrap(),
        "case {{name}} in node02|node05) exit 1;; esac",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&failed).unwrap(),
        "node02\nnode05\n"
    );
    let list = rexec(&[
        "-i",
        inv,
        "--list-hosts",
        "-l",
        &format!("@{}", failed.display()),
    ]);
    assert_eq!(text(&list.stdout), "node02\nnode05\n");
    let rerun = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-l",
        &format!("@{}", failed.display()),
        "echo again {{name}}",
    ]);
    let (results, summary) = json_lines(&rerun);
    assert_eq!(results.len(), 2);
    assert_eq!(results["node05"]["stdout"], "again node05\n");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(rerun.status.code(), Some(0));
}

#[test]
fn exit_codes_follow_the_documented_table() {
    let cluster = Cluster::start(1, 2, 110);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let code = |args: &[&str]| {
        let mut all = vec!["-i", inv, "--no-agent", "-q"];
        all.extend_from_slice(args);
        rexec(&all).status.code()
    };
    assert_eq!(code(&["true"]), Some(0));
    assert_eq!(code(&["false"]), Some(1));
    assert_eq!(code(&["-l", "node01", "kill -KILL $$"]), Some(4));
    assert_eq!(code(&["-t", "1s", "sleep 30"]), Some(4));
    assert_eq!(
        code(&[
            "--host-key-policy",
            "strict",
            "--known-hosts",
            "/dev/null",
            "true"
        ]),
        Some(3)
    );
    assert_eq!(code(&["-l", "nope", "true"]), Some(2));
    assert_eq!(code(&[]), Some(2));
    assert_eq!(code(&["echo {{undefined}}"]), Some(2));
    // Mixed: one host exits 1, the other cannot authenticate: 3 wins.
    let mixed = cluster.inventory(
        &[(
            "node02",
            format!(
                "{{ address = \"127.0.0.111\", port = {}, identity_files = [\"{}\"] }}",
                cluster.hosts()[1].port,
                harness::keygen(cluster.dir.path(), "stranger", "ed25519", "").display()
            ),
        )],
        "",
    );
    let out = rexec(&["-i", mixed.to_str().unwrap(), "--no-agent", "-q", "false"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn inventory_errors_stop_before_any_connection() {
    let cluster = Cluster::start(1, 1, 120);
    let bad = cluster.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[hosts]\nnode01 = {{ address = \"127.0.0.120\", prot = {} }}\n",
            cluster.servers[0].port
        ),
    )
    .unwrap();
    let out = rexec(&["-i", bad.to_str().unwrap(), "--no-agent", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "rexec: {}:2:37: unknown field `prot`",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(
        !cluster.servers[0].log().contains("Connection from"),
        "something connected"
    );
}

#[test]
fn host_lists_and_local_hosts_work_without_an_inventory_file() {
    let cluster = Cluster::start(1, 2, 130);
    let h = cluster.hosts();
    let list = format!(
        "rexec-test@{}:{},rexec-test@{}:{}",
        h[0].address, h[0].port, h[1].address, h[1].port
    );
    let out = rexec(&[
        "-H",
        &list,
        "--no-agent",
        "-I",
        cluster.user_key.to_str().unwrap(),
        "--known-hosts",
        cluster.known_hosts.to_str().unwrap(),
        "--json",
        "id -un",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results.len(), 2, "{}", text(&out.stderr));
    for r in results.values() {
        assert_eq!(r["stdout"], "rexec-test\n");
    }
    // A local host runs as this process's user, side by side with ssh hosts.
    let inventory = cluster.inventory(&[], "here = { transport = \"local\" }\n");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "id -un; echo {{name}}",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results["here"]["stdout"], "root\nhere\n");
    assert_eq!(results["node01"]["stdout"], "rexec-test\nnode01\n");
}

#[test]
fn ctrl_c_interrupts_and_cleans_up_remote_commands() {
    let cluster = Cluster::start(1, 4, 140);
    let inventory = cluster.inventory(&[], "");
    let marker = format!("sleep 38{:02}", harness::random_u64() % 100);
    let child = Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args([
            "-i",
            inventory.to_str().unwrap(),
            "--no-agent",
            "--json",
            "-f",
            "2",
        ])
        .arg(format!("echo started; {marker}; echo never"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the `sleep` processes themselves (anchored: the shell's own command line
    // holds the marker too, before it has even run `echo started`).
    assert!(eventually(Duration::from_secs(20), || remote_processes(
        &format!("^{marker}")
    )
    .len()
        >= 2));
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    let outcomes: Vec<&str> = (1..=4)
        .map(|i| results[&format!("node{i:02}")]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["interrupted", "interrupted", "not-started", "not-started"]
    );
    assert_eq!(results["node01"]["stdout"], "started\n");
    assert_eq!(summary["exit_code"], 130);
    assert!(
        eventually(Duration::from_secs(10), || remote_processes(&marker)
            .is_empty()),
        "left behind: {:?}",
        remote_processes(&marker)
    );
}

#[test]
fn list_hosts_prints_the_selection() {
    let cluster = Cluster::start(1, 1, 150);
    let inventory = cluster.inventory(
        &[],
        "\"extra[1-3]\" = { transport = \"local\" }\n[groups.extras]\nhosts = [\"extra[1-3]\"]\n",
    );
    let inv = inventory.to_str().unwrap();
    let out = rexec(&["-i", inv, "--list-hosts", "-l", "extras:!extra2,node01"]);
    assert_eq!(text(&out.stdout), "node01\nextra1\nextra3\n");
    assert_eq!(out.status.code(), Some(0));
    let _ = Path::new(inv);
}

/// Runs rexec under a pseudo-terminal (util-linux `script`), returning what the terminal
/// showed.
fn rexec_on_a_terminal(args: &[&str]) -> String {
    let mut line = String::from(env!("CARGO_BIN_EXE_rexec"));
    for a in args {
        line.push(' ');
        line.push_str(&rexec::shell_quote(a));
    }
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    text(&out.stdout)
}

#[test]
fn a_terminal_gets_a_progress_bar_and_harmless_output() {
    let cluster = Cluster::start(1, 3, 200);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let command = "sleep 1; printf '\\033[31mred\\033]0;title\\007\\n'";
    let shown = rexec_on_a_terminal(&["-i", inv, "--no-agent", command]);
    assert!(shown.contains("/3 hosts, "), "no progress bar: {shown:?}");
    assert!(shown.contains("0 failed"), "{shown:?}");
    assert!(shown.contains("^[[31mred^[]0;title^G"), "{shown:?}");
    assert!(
        !shown.contains("\x1b[31mred"),
        "escape reached the terminal: {shown:?}"
    );
    // --quiet: no bar, no summary.
    let shown = rexec_on_a_terminal(&["-i", inv, "--no-agent", "-q", command]);
    assert!(!shown.contains("/3 hosts, "), "{shown:?}");
    assert!(!shown.contains("--- 3 hosts"), "{shown:?}");
    // Not a terminal: no bar, and output is passed through untouched.
    let out = rexec(&["-i", inv, "--no-agent", "-l", "node01", command]);
    assert!(!text(&out.stderr).contains("/1 hosts, "));
    assert!(text(&out.stdout).contains("\x1b[31mred"));
}

#[test]
fn stdin_and_pty_options_reach_every_host() {
    let cluster = Cluster::start(1, 2, 220);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let input = cluster.dir.path().join("input");
    std::fs::write(&input, "line one\nline two\n").unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--stdin",
        input.to_str().unwrap(),
        "wc -l",
    ]);
    let (results, _) = json_lines(&out);
    for r in results.values() {
        assert_eq!(r["stdout"].as_str().unwrap().trim(), "2");
    }
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--pty",
        "test -t 0 && echo tty",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results["node01"]["stdout"], "tty\r\n");
}

#[test]
fn ask_pass_prompts_on_the_terminal() {
    let sshd = harness::Sshd::start();
    let password = harness::setup();
    // No agent and HOME without keys: only the password can log in.
    let line = format!(
        "{} -H rexec-test@127.0.0.1:{} --no-agent --known-hosts {} --ask-pass --json 'echo in'",
        env!("CARGO_BIN_EXE_rexec"),
        sshd.port,
        sshd.known_hosts.display()
    );
    let shown = answer_prompt(
        on_a_terminal(&line).env("HOME", sshd.dir.path()),
        "Password:",
        password,
    );
    assert!(shown.contains("Password:"), "{shown}");
    assert!(shown.contains("\"outcome\":\"ok\""), "{shown}");
    assert!(
        !shown.contains(password),
        "the password was echoed: {shown}"
    );
    assert!(sshd.log().contains("Accepted password"), "{}", sshd.log());
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let cluster = Cluster::start(1, 1, 230);
    let inventory = cluster.inventory(&[], "");
    let marker = format!("sleep 40{:02}", harness::random_u64() % 100);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(["-i", inventory.to_str().unwrap(), "--no-agent", "--json"])
        // Ignores TERM: the first Ctrl-C alone would wait for the KILL after 2 s.
        .arg(format!("trap '' TERM; {marker}"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || !remote_processes(
        &marker
    )
    .is_empty()));
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("interrupted") {
        let n = std::io::Read::read(&mut stderr, &mut buf).unwrap();
        assert!(
            n > 0,
            "rexec ended before the first interrupt was acknowledged"
        );
        seen.extend_from_slice(&buf[..n]);
    }
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Exited before the host finished: no result line, no summary.
    assert_eq!(text(&out.stdout), "");
    // Exiting at once means not waiting for the stop: whether the command that ignores
    // TERM is gone depends on whether the stop had reached the server (its reaper then
    // finishes the job there). The test cleans up whatever is left.
    cluster.servers[0].kill_leftovers();
}

/// `hosts` inventory names (`n001`...) spread over the cluster's addresses: a fleet
/// larger than the servers the test starts.
fn many_names(cluster: &Cluster, hosts: usize) -> std::path::PathBuf {
    let addresses = cluster.hosts();
    let mut text = format!(
        "[defaults]\nuser = \"{}\"\nidentity_files = [\"{}\"]\n\
         known_hosts = \"{}\"\nconnect_timeout = \"20s\"\n\n[hosts]\n",
        harness::TEST_USER,
        cluster.user_key.display(),
        cluster.known_hosts.display()
    );
    for i in 0..hosts {
        let h = &addresses[i % addresses.len()];
        text.push_str(&format!(
            "n{:03} = {{ address = \"{}\", port = {} }}\n",
            i + 1,
            h.address,
            h.port
        ));
    }
    let path = cluster.dir.path().join("many.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `rexec ARGS` with the open-file limit (soft and hard) at `limit`.
fn rexec_with_file_limit(limit: u32, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The warning's "capped to N", checked to be below `forks`.
fn capped_forks(stderr: &str, forks: usize) -> usize {
    let warning = stderr
        .lines()
        .find(|l| l.contains(&format!("--forks {forks} capped to ")))
        .unwrap_or_else(|| panic!("no cap warning in: {stderr}"));
    assert!(
        warning.contains("the open-file limit is 128 (ulimit -n)"),
        "{warning}"
    );
    let n: usize = warning
        .split("capped to ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!(n >= 1 && n < forks, "{warning}");
    assert_eq!(
        stderr.matches("capped to").count(),
        1,
        "warned more than once: {stderr}"
    );
    n
}

// Regression (issue 15): `-f 5000` under `ulimit -n 1024` gave 3,987 hosts "too many open
// files"; `-f` is now capped to what the limit holds, with one warning.
#[test]
fn forks_beyond_the_open_file_limit_are_capped_with_a_warning_not_failed_hosts() {
    let cluster = Cluster::start(2, 15, 240);
    let inventory = many_names(&cluster, 150);
    let out = rexec_with_file_limit(
        128,
        &[
            "-i",
            inventory.to_str().unwrap(),
            "--no-agent",
            "--json",
            "-f",
            "500",
            "sleep 1; echo ok",
        ],
    );
    let stderr = text(&out.stderr);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 150, "{stderr}");
    for (host, r) in &results {
        assert_eq!(r["outcome"], "ok", "{host}: {r}");
        assert_eq!(r["stdout"], "ok\n", "{host}: {r}");
    }
    assert_eq!(summary["hosts"], 150);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    capped_forks(&stderr, 500);
}

#[test]
fn forks_are_capped_lower_with_out_dir_files_open_for_every_host() {
    let cluster = Cluster::start(2, 15, 700);
    let inventory = many_names(&cluster, 150);
    let dir = cluster.dir.path().join("out");
    let plain = rexec_with_file_limit(
        128,
        &[
            "-i",
            inventory.to_str().unwrap(),
            "--no-agent",
            "--json",
            "-f",
            "500",
            "true",
        ],
    );
    let out = rexec_with_file_limit(
        128,
        &[
            "-i",
            inventory.to_str().unwrap(),
            "--no-agent",
            "--json",
            "-f",
            "500",
            "--out-dir",
            dir.to_str().unwrap(),
            "sleep 1; echo ok; echo warn >&2",
        ],
    );
    let stderr = text(&out.stderr);
    let (results, _) = json_lines(&out);
    assert_eq!(results.len(), 150, "{stderr}");
    for (host, r) in &results {
        assert_eq!(r["outcome"], "ok", "{host}: {r}");
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{host}.out"))).unwrap(),
            "ok\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{host}.err"))).unwrap(),
            "warn\n"
        );
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Three descriptors a host instead of one: a third of the window.
    let with_files = capped_forks(&stderr, 500);
    let without = capped_forks(&text(&plain.stderr), 500);
    assert!(with_files * 3 <= without + 2, "{with_files} vs {without}");
}

/// An inventory whose hosts have `updir` (a directory the test user may write) as a
/// variable; `node04` gets a directory it may not write.
fn transfer_cluster(first: usize) -> (Cluster, std::path::PathBuf, std::path::PathBuf) {
    let cluster = Cluster::start(1, 4, first);
    let up = cluster.servers[0].user_dir("up");
    let locked = cluster.dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let h = cluster.hosts();
    let inventory = cluster.inventory(
        &[(
            "node04",
            format!(
                "{{ address = \"{}\", port = {}, vars = {{ updir = \"{}\" }} }}",
                h[3].address,
                h[3].port,
                locked.display()
            ),
        )],
        "",
    );
    // Default updir for every other host.
    let text = std::fs::read_to_string(&inventory).unwrap().replacen(
        "[defaults]\n",
        &format!("[defaults]\nvars = {{ updir = \"{}\" }}\n", up.display()),
        1,
    );
    std::fs::write(&inventory, text).unwrap();
    (cluster, inventory, up)
}

#[test]
fn put_and_get_fan_out_with_per_host_results() {
    let (_cluster, inventory, up) = transfer_cluster(250);
    let inv = inventory.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("payload.bin");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "put",
        local.to_str().unwrap(),
        "{{updir}}/{{name}}.bin",
    ]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 4, "{}", text(&out.stderr));
    for name in ["node01", "node02", "node03"] {
        assert_eq!(results[name]["outcome"], "ok");
        assert_eq!(results[name]["bytes"], 5_000_000);
        assert!(
            std::fs::read(up.join(format!("{name}.bin"))).unwrap() == data,
            "{name}"
        );
    }
    assert_eq!(results["node04"]["outcome"], "error");
    assert_eq!(results["node04"]["error"]["kind"], "permission-denied");
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(out.status.code(), Some(3));

    // get: each host's copy in its own directory.
    let dest = work.path().join("fetched");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "get",
        "{{updir}}/{{name}}.bin",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    for name in ["node01", "node02", "node03"] {
        let got = std::fs::read(dest.join(name).join(format!("{name}.bin"))).unwrap();
        assert!(got == data, "{name}");
    }
    let line = text(&out.stdout);
    assert!(line.contains("=== node04: error in "), "{line}");
    assert!(line.contains("no such file or directory"), "{line}");
    assert!(
        line.contains("=== node01: ok, 1 file, 4.8 MiB in "),
        "{line}"
    );

    // A template for the local side, and a recursive get.
    let tree = up.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/x"), "x").unwrap();
    harness::run(
        std::process::Command::new("chown")
            .args(["-R", "rexec-test:"])
            .arg(&tree),
    );
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "-l",
        "node01,node02",
        "get",
        "-r",
        tree.to_str().unwrap(),
        &format!("{}/{{{{name}}}}-copy", work.path().display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(work.path().join("node02-copy/tree/sub/x")).unwrap(),
        "x"
    );
}

#[test]
fn transfer_errors_seen_locally_stop_before_connecting() {
    let (cluster, inventory, _) = transfer_cluster(260);
    let inv = inventory.to_str().unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "put",
        "/no/such/local/file",
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read /no/such/local/file"),
        "{}",
        text(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "put",
        dir.path().to_str().unwrap(),
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is a directory: use put -r"),
        "{}",
        text(&out.stderr)
    );
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "put",
        "--stream",
        dir.path().to_str().unwrap(),
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !cluster.servers[0].log().contains("Connection from"),
        "something connected"
    );
    // `--` makes `put` a command name again.
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-l",
        "node01",
        "--",
        "put",
        "a",
        "b",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results["node01"]["outcome"], "exited-nonzero");
}

#[test]
fn host_key_checking_off_is_loud() {
    let cluster = Cluster::start(1, 1, 270);
    let inventory = cluster.inventory(&[], "");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "-q",
        "--host-key-policy",
        "off",
        "--known-hosts",
        "/dev/null",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(
        stderr.contains("accepted without checking (policy off)"),
        "{stderr}"
    );
}

/// `--generate`: the man page and the completions cover every long option `--help`
/// lists (they are made from the same clap definitions), the bash script parses, and an
/// unknown kind is a usage error.
#[test]
fn generate_prints_the_man_page_and_completions() {
    let help = rexec(&["--help"]);
    assert!(help.status.success());
    let help = text(&help.stdout);
    // The long option of each option line (`  -i, --inventory <FILE>`, `      --raw`).
    let options: std::collections::BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .find(|w| w.len() > 2 && w.starts_with("--"))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        options.contains("--forks") && options.contains("--generate"),
        "{options:?}"
    );

    let man = rexec(&["--generate", "man"]);
    assert!(man.status.success(), "{}", text(&man.stderr));
    let man = text(&man.stdout);
    assert!(man.contains(".TH rexec 1"), "{man}");
    for option in &options {
        // roff escapes the dashes: \-\-forks.
        let escaped = option.replace('-', "\\-");
        assert!(man.contains(&escaped), "{option} missing from the man page");
    }

    let bash = rexec(&["--generate", "complete-bash"]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    for option in &options {
        assert!(
            script.contains(option.as_str()),
            "{option} missing from bash completion"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rexec.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    // Sourced, it registers a completion function for rexec.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p rexec", path.display()))
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", text(&registered.stderr));
    assert!(text(&registered.stdout).contains("rexec"));

    for kind in [
        "complete-zsh",
        "complete-fish",
        "complete-elvish",
        "complete-powershell",
    ] {
        let out = rexec(&["--generate", kind]);
        assert!(out.status.success(), "{kind}: {}", text(&out.stderr));
        // fish spells options `-l forks`, the others `--forks`.
        let script = text(&out.stdout);
        for option in &options {
            let name = &option[2..];
            assert!(
                script.contains(option.as_str()) || script.contains(&format!("-l {name}")),
                "{option} missing from {kind}"
            );
        }
    }

    let bad = rexec(&["--generate", "complete-tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    let message = text(&bad.stderr);
    assert!(message.contains("'--generate <KIND>'"), "{message}");
    assert!(
        message.contains("[possible values: man, complete-bash"),
        "{message}"
    );
}
