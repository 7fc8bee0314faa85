//! Rolling runs against fleets of real sshd servers: batches observed in order (every
//! host's command appends `start NAME` / `end NAME` to a log on this machine), the failure
//! budget stopping new starts, `--max-fail-on`, `--pause` and `--stagger` gaps, Ctrl-C
//! during a rollout, `put` in batches, and the library's rollout options.

use crate::harness;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::cli::{json_lines, rexec, rexec_command, text};
use harness::Cluster;
use rexec::{
    Batches, Event, FailureBudget, HostCount, HostSettings, Inventory, Outcome, Pool,
    TargetBuilder, Template,
};

/// A directory the test user can write (for the log), removed at the end.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A command that logs `start NAME TIME`, sleeps 0.3 s (so overlapping batches would
/// show), logs `end NAME TIME`, and exits 1 on the hosts named in `failing`.
fn logged_command(log: &Path, failing: &[&str]) -> String {
    let log = log.display();
    let fail = if failing.is_empty() {
        String::new()
    } else {
        format!(
            "case {{{{name}}}} in {}) exit 1;; esac; ",
            failing.join("|")
        )
    };
    format!(
        "echo start {{{{name}}}} $(date +%s.%N) >> {log}; sleep 0.3; \
         echo end {{{{name}}}} $(date +%s.%N) >> {log}; {fail}true"
    )
}

/// The log's lines as (kind, host, seconds since the epoch), in file order.
fn log_lines(log: &Path) -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let kind = words.next().unwrap().to_owned();
            let host = words.next().unwrap().to_owned();
            let time: f64 = words.next().unwrap().parse().unwrap();
            (kind, host, time)
        })
        .collect()
}

fn names(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("node{i:02}")).collect()
}

/// Asserts that no host of a batch starts before every host of the previous batch ended.
fn assert_batches_in_order(log: &[(String, String, f64)], batches: &[Vec<String>]) {
    let position = |kind: &str, host: &str| {
        log.iter()
            .position(|(k, h, _)| k == kind && h == host)
            .unwrap_or_else(|| panic!("no {kind} {host} in {log:?}"))
    };
    for pair in batches.windows(2) {
        let last_end = pair[0].iter().map(|h| position("end", h)).max().unwrap();
        let first_start = pair[1].iter().map(|h| position("start", h)).min().unwrap();
        assert!(
            last_end < first_start,
            "batch {:?} started before {:?} ended: {log:?}",
            pair[1],
            pair[0]
        );
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn batches_run_in_order_and_the_last_size_repeats() {
    let cluster = Cluster::start(1, 9, 600);
    let inventory = cluster.inventory(&[], "");
    let dir = shared_dir();
    let log = dir.path().join("log");
    // 9 hosts, `1,2,50%`: 1, 2, 4 (50% of 9, rounded down), then 4 repeats: 2 left.
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "--batch",
        "1,2,50%",
        &logged_command(&log, &[]),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 9);
    assert_eq!(summary["batches"]["sizes"], serde_json::json!([1, 2, 4, 2]));
    assert_eq!(summary["batches"]["completed"], 4);
    assert!(summary.get("budget").is_none(), "{summary}");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 18, "{lines:?}");
    assert_batches_in_order(
        &lines,
        &[names(1..=1), names(2..=3), names(4..=7), names(8..=9)],
    );
    // Within a batch the hosts run at once (forks 64): batch 3's four hosts overlap.
    let starts_of_3 = names(4..=7)
        .iter()
        .map(|h| {
            lines
                .iter()
                .position(|(k, x, _)| k == "start" && x == h)
                .unwrap()
        })
        .max()
        .unwrap();
    let first_end_of_3 = names(4..=7)
        .iter()
        .map(|h| {
            lines
                .iter()
                .position(|(k, x, _)| k == "end" && x == h)
                .unwrap()
        })
        .min()
        .unwrap();
    assert!(starts_of_3 < first_end_of_3, "{lines:?}");

    // --forks still bounds a batch: with -f 1 nothing overlaps at all.
    let log1 = dir.path().join("log1");
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "-q",
        "-f",
        "1",
        "--batch",
        "50%",
        "-l",
        "node0[1-5]",
        &logged_command(&log1, &[]),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let kinds: Vec<String> = log_lines(&log1)
        .into_iter()
        .map(|(k, h, _)| format!("{k} {h}"))
        .collect();
    let expected: Vec<String> = names(1..=5)
        .iter()
        .flat_map(|h| [format!("start {h}"), format!("end {h}")])
        .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn the_failure_budget_stops_new_hosts_and_batches() {
    let cluster = Cluster::start(1, 8, 620);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let dir = shared_dir();
    let log = dir.path().join("log");
    let failed_hosts = dir.path().join("failed");
    // Batches of 2; node02 fails (1 failure: within the budget), node03 fails in batch 2
    // (2 > 1): node04 still runs with it, nodes 05-08 never start.
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--batch",
        "2",
        "--max-fail",
        "1",
        "--failed-hosts",
        failed_hosts.to_str().unwrap(),
        &logged_command(&log, &["node02", "node03"]),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    let outcome = |h: &str| results[h]["outcome"].as_str().unwrap().to_owned();
    assert_eq!(
        names(1..=8).iter().map(|h| outcome(h)).collect::<Vec<_>>(),
        [
            "ok",
            "exited-nonzero",
            "exited-nonzero",
            "ok",
            "not-started",
            "not-started",
            "not-started",
            "not-started"
        ]
    );
    assert_eq!(
        results["node05"]["error"]["message"],
        "not started: the rollout stopped when 2 hosts had failed (at most 1 allowed)"
    );
    let ran: Vec<String> = log_lines(&log)
        .into_iter()
        .filter(|(k, _, _)| k == "start")
        .map(|(_, h, _)| h)
        .collect();
    let mut ran_sorted = ran.clone();
    ran_sorted.sort();
    assert_eq!(
        ran_sorted,
        names(1..=4),
        "hosts after the stop ran: {ran:?}"
    );
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(summary["outcomes"]["not-started"], 4);
    assert_eq!(summary["batches"]["sizes"], serde_json::json!([2, 2, 2, 2]));
    assert_eq!(summary["batches"]["completed"], 1);
    let budget = &summary["budget"];
    assert_eq!(budget["max_fail"], "1");
    assert_eq!(budget["allowed"], 1);
    assert_eq!(budget["failed"], 2);
    assert_eq!(budget["exceeded"], true);
    assert_eq!(budget["stopped_in_batch"], 2);
    assert_eq!(budget["not_started"], 4);
    assert_eq!(budget["counted"].as_array().unwrap().len(), 11, "{budget}");
    assert_eq!(
        std::fs::read_to_string(&failed_hosts).unwrap(),
        "node02\nnode03\nnode05\nnode06\nnode07\nnode08\n"
    );

    // The same run as text: the summary says where the rollout stopped and lists the
    // hosts that never started.
    let log = dir.path().join("log-text");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--batch",
        "2",
        "--max-fail",
        "1",
        &logged_command(&log, &["node02", "node03"]),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "--- rollout stopped: 2 hosts failed (budget --max-fail 1) in batch 2/4; \
             4 hosts not started: node[05-08]\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("    not-started: node[05-08]\n"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains(
        "=== node05: not-started in 0.00s: not started: the rollout stopped when 2 hosts had failed"
    ));

    // A percentage: 25% of 8 hosts is 2 failures allowed, so the same run goes on.
    let log = dir.path().join("log-percent");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--batch",
        "2",
        "--max-fail",
        "25%",
        &logged_command(&log, &["node02", "node03"]),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (_, summary) = json_lines(&out);
    assert_eq!(summary["budget"]["allowed"], 2);
    assert_eq!(summary["budget"]["exceeded"], false);
    assert_eq!(
        summary["budget"]["stopped_in_batch"],
        serde_json::Value::Null
    );
    assert_eq!(summary["batches"]["completed"], 4);
    assert_eq!(log_lines(&log).len(), 16);
}

#[test]
fn fail_fast_and_max_fail_on_in_the_sliding_window() {
    let cluster = Cluster::start(1, 6, 640);
    let closed = harness::free_port();
    // node03 is unreachable (nothing listens there).
    let inventory = cluster.inventory(
        &[(
            "node03",
            format!("{{ address = \"127.0.0.1\", port = {closed} }}"),
        )],
        "",
    );
    let inv = inventory.to_str().unwrap();
    let dir = shared_dir();

    // --fail-fast without --batch: node02's exit 1 stops every later start (-f 1: one
    // host at a time, so which hosts were running is known).
    let log = dir.path().join("log");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-f",
        "1",
        "--fail-fast",
        &logged_command(&log, &["node02"]),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    assert_eq!(results["node01"]["outcome"], "ok");
    assert_eq!(results["node02"]["outcome"], "exited-nonzero");
    for h in names(3..=6) {
        assert_eq!(results[&h]["outcome"], "not-started", "{h}");
    }
    let ran: Vec<String> = log_lines(&log)
        .into_iter()
        .filter(|(k, _, _)| k == "start")
        .map(|(_, h, _)| h)
        .collect();
    assert_eq!(ran, ["node01", "node02"]);
    assert!(summary.get("batches").is_none(), "{summary}");
    assert_eq!(summary["budget"]["max_fail"], "0");
    assert_eq!(
        summary["budget"]["stopped_in_batch"],
        serde_json::Value::Null
    );

    // Only `unreachable` counts: node02's exit 1 passes, node03 stops the run.
    let log = dir.path().join("log-on");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-f",
        "1",
        "--fail-fast",
        "--max-fail-on",
        "unreachable,auth-failed",
        &logged_command(&log, &["node02"]),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "--- rollout stopped: 1 host failed (budget --fail-fast); 3 hosts not started: \
             node[04-06]\n"
        ),
        "{stderr}"
    );
    let ran: Vec<String> = log_lines(&log)
        .into_iter()
        .filter(|(k, _, _)| k == "start")
        .map(|(_, h, _)| h)
        .collect();
    assert_eq!(ran, ["node01", "node02"]);

    // Named outcomes that never happen: every host runs, the exit code is the usual one.
    let log = dir.path().join("log-all");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-l",
        "all:!node03",
        "--max-fail",
        "0",
        "--max-fail-on",
        "timed-out",
        &logged_command(&log, &["node02"]),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 5);
    assert_eq!(
        summary["budget"]["counted"],
        serde_json::json!(["timed-out"])
    );
    assert_eq!(summary["budget"]["failed"], 0);
    assert_eq!(log_lines(&log).len(), 10);
}

#[test]
fn pause_and_stagger_space_out_starts() {
    let cluster = Cluster::start(1, 4, 660);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let dir = shared_dir();

    // --pause 1.5s: batch 2 starts at least 1.5 s after batch 1's last host ended.
    let log = dir.path().join("log");
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "--batch",
        "2",
        "--pause",
        "1.5s",
        &logged_command(&log, &[]),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = log_lines(&log);
    let time = |kind: &str, host: &str| {
        lines
            .iter()
            .find(|(k, h, _)| k == kind && h == host)
            .unwrap()
            .2
    };
    let batch1_end = time("end", "node01").max(time("end", "node02"));
    let batch2_start = time("start", "node03").min(time("start", "node04"));
    assert!(
        batch2_start - batch1_end >= 1.5,
        "pause of only {:.3}s: {lines:?}",
        batch2_start - batch1_end
    );

    // --stagger 0.7s: host k starts connecting at least k x 0.7 s after rexec started, so
    // its command starts no earlier (without the stagger all four start at once).
    let log = dir.path().join("log-stagger");
    let before = now();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "-q",
        "--stagger",
        "0.7s",
        &logged_command(&log, &[]),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = log_lines(&log);
    for (k, host) in names(1..=4).iter().enumerate() {
        let start = lines
            .iter()
            .find(|(kind, h, _)| kind == "start" && h == host)
            .unwrap()
            .2;
        assert!(
            start - before >= 0.7 * k as f64,
            "{host} started {:.3}s after rexec: {lines:?}",
            start - before
        );
    }
}

#[test]
fn ctrl_c_during_a_rollout_pause_exits_130_with_every_host() {
    let cluster = Cluster::start(1, 3, 680);
    let inventory = cluster.inventory(&[], "");
    let dir = shared_dir();
    let log = dir.path().join("log");
    let mut child = rexec_command(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "--batch",
        "1",
        "--pause",
        "60s",
        "--max-fail",
        "1",
        &logged_command(&log, &[]),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // node01's result is printed when batch 1 ends; the pause follows.
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"host\":\"node01\""), "{first}");
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut outcomes = Vec::new();
    let mut summary = serde_json::Value::Null;
    for line in first.lines().chain(rest.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v.get("summary") {
            Some(s) => summary = s.clone(),
            None => outcomes.push((
                v["host"].as_str().unwrap().to_owned(),
                v["outcome"].as_str().unwrap().to_owned(),
                v["error"]["message"].as_str().unwrap_or("").to_owned(),
            )),
        }
    }
    outcomes.sort();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert_eq!(outcomes[0].1, "ok");
    for (host, outcome, message) in &outcomes[1..] {
        assert_eq!(outcome, "not-started", "{host}");
        assert_eq!(message, "not started: the run was interrupted", "{host}");
    }
    assert_eq!(summary["exit_code"], 130);
    // Interrupted, not stopped by the budget.
    assert_eq!(summary["budget"]["exceeded"], false);
    let ran: Vec<String> = log_lines(&log).into_iter().map(|(_, h, _)| h).collect();
    assert_eq!(ran, ["node01", "node01"]);
}

#[test]
fn put_runs_in_batches_under_a_budget() {
    let cluster = Cluster::start(1, 5, 700);
    let dir = shared_dir();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o777)).unwrap();
    // node02's destination directory does not exist: its upload fails.
    let all = names(1..=5);
    let overrides: Vec<(&str, String)> = all
        .iter()
        .zip(cluster.hosts())
        .map(|(name, h)| {
            let path = match name.as_str() {
                "node02" => "/nonexistent-rexec-dir/f".to_owned(),
                _ => format!("{}/{name}", dest.display()),
            };
            let entry = format!(
                "{{ address = \"{}\", port = {}, vars = {{ dest = \"{path}\" }} }}",
                h.address, h.port
            );
            (name.as_str(), entry)
        })
        .collect();
    let inventory = cluster.inventory(&overrides, "");
    let local = dir.path().join("payload");
    std::fs::write(&local, "payload\n").unwrap();
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "--batch",
        "2",
        "--fail-fast",
        "put",
        local.to_str().unwrap(),
        "{{dest}}",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, summary) = json_lines(&out);
    assert_eq!(results["node01"]["outcome"], "ok");
    assert_ne!(results["node02"]["outcome"], "ok");
    for h in names(3..=5) {
        assert_eq!(results[&h]["outcome"], "not-started");
        assert!(!dest.join(&h).exists(), "{h} was uploaded");
    }
    assert_eq!(
        std::fs::read_to_string(dest.join("node01")).unwrap(),
        "payload\n"
    );
    assert_eq!(summary["batches"]["sizes"], serde_json::json!([2, 2, 1]));
    assert_eq!(summary["batches"]["completed"], 0);
    assert_eq!(summary["budget"]["stopped_in_batch"], 1);
}

#[test]
fn bad_rollout_options_are_usage_errors_before_connecting() {
    // Nothing listens on this port: a run that connected would fail with exit 3.
    let port = harness::free_port().to_string();
    let host = format!("127.0.0.1:{port}");
    let cases: &[(&[&str], &str)] = &[
        (&["--batch", "0"], "--batch: a batch of 0 hosts never ends"),
        (
            &["--batch", "0%"],
            "--batch: a batch of 0% hosts never ends",
        ),
        (&["--batch", "150%"], "--batch: \"150%\" is more than 100%"),
        (
            &["--batch", "1,,2"],
            "--batch: \"\" is not a number of hosts",
        ),
        (&["--batch", "x"], "--batch: \"x\" is not a number of hosts"),
        (
            &["--max-fail", "-1"],
            "--max-fail: \"-1\" is not a number of hosts",
        ),
        (
            &["--max-fail", "101%"],
            "--max-fail: \"101%\" is more than 100%",
        ),
        (
            &["--max-fail", "1.5"],
            "--max-fail: \"1.5\" is not a number of hosts",
        ),
        (
            &["--max-fail", "1", "--max-fail-on", "unreachable,bogus"],
            "--max-fail-on: unknown outcome \"bogus\" (one of ok, exited-nonzero,",
        ),
        (
            &["--fail-fast", "--max-fail-on", "ok"],
            "--max-fail-on: ok cannot count as a failure",
        ),
        (
            &["--max-fail-on", "unreachable"],
            "--max-fail-on needs --max-fail N or --fail-fast",
        ),
        (&["--stagger", "0"], "invalid duration \"0\""),
        (
            &["--batch", "2", "--pause", "soon"],
            "invalid duration \"soon\"",
        ),
        (&["--pause", "1s"], "--pause needs --batch"),
    ];
    for (options, message) in cases {
        let mut args = vec!["-H", &host, "--no-agent"];
        args.extend_from_slice(options);
        args.push("true");
        let out = rexec(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{options:?}: {stderr}");
        assert!(stderr.contains(message), "{options:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{options:?}");
    }
    // --fail-fast with --max-fail is refused by the parser.
    let out = rexec(&["-H", &host, "--fail-fast", "--max-fail", "1", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("'--fail-fast' cannot be used with '--max-fail <N[%]>'"),
        "{stderr}"
    );
}

fn library_targets(cluster: &Cluster) -> Vec<rexec::Target> {
    let inventory =
        Inventory::from_file(cluster.inventory(&[], ""), &HostSettings::default()).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    builder.build_all(inventory.hosts()).unwrap()
}

#[tokio::test]
async fn a_closure_rollout_with_a_failure_budget() {
    let cluster = Cluster::start(1, 7, 720);
    let targets = library_targets(&cluster);
    let events = Mutex::new(Vec::new());
    let pool = Pool::from_targets(targets.clone())
        .concurrency(8)
        .batches("1,2".parse::<Batches>().unwrap())
        .max_failures(FailureBudget::new(HostCount::hosts(1)));
    // Batches 1 | 2-3 | 4-5 | 6-7; node03 and node04 fail: the second failure (batch 3)
    // exceeds the budget, node05 finishes with it, node06-07 never start.
    let results = pool
        .map(|session, target| async move {
            let fail = matches!(target.name(), "node03" | "node04");
            let out = session
                .raw_command(if fail { "exit 7" } else { "echo fine" })
                .output()
                .await?
                .check()?;
            Ok(out.stdout_lossy().trim().to_owned())
        })
        .observe(|event| {
            let tag = match event {
                Event::BatchStarted { batch, hosts, .. } => format!("start {batch} {hosts}"),
                Event::BatchFinished { batch, failed, .. } => {
                    format!("end {batch} failed {failed}")
                }
                Event::BudgetExceeded {
                    failed,
                    allowed,
                    batch,
                    batches,
                } => format!("exceeded {failed}>{allowed} in {batch:?}/{batches}"),
                Event::RolloutStopped {
                    failed,
                    not_started,
                    ..
                } => format!("stopped {failed} {not_started}"),
                _ => return,
            };
            events.lock().unwrap().push(tag);
        })
        .await;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome()).collect();
    // The report's outcomes are the closure's results classified.
    assert!(results
        .iter()
        .all(|r| r.outcome() == Outcome::of_result(&r.result)));
    assert_eq!(results.exit_code(), rexec::RunExit::CouldNotRun);
    assert_eq!(
        outcomes,
        [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::ExitedNonZero,
            Outcome::ExitedNonZero,
            Outcome::Ok,
            Outcome::NotStarted,
            Outcome::NotStarted
        ]
    );
    assert_eq!(
        rexec::RunExit::of(outcomes.iter().copied()),
        rexec::RunExit::CouldNotRun
    );
    assert_eq!(
        events.into_inner().unwrap(),
        [
            "start 1 1",
            "end 1 failed 0",
            "start 2 2",
            "end 2 failed 1",
            "start 3 2",
            "exceeded 2>1 in Some(3)/4",
            "stopped 2 2"
        ]
    );

    // The stagger: host k connects at least k x 300 ms after the run began.
    let pool = Pool::from_targets(targets[..4].to_vec())
        .concurrency(8)
        .stagger(Duration::from_millis(300));
    let began = Instant::now();
    let connecting = Mutex::new(Vec::new());
    let results = pool
        .run("true")
        .observe(|event| {
            if let Event::Connecting { index, .. } = event {
                connecting.lock().unwrap().push((index, began.elapsed()));
            }
        })
        .await;
    assert!(results.iter().all(|r| r.outcome() == Outcome::Ok));
    let mut connecting = connecting.into_inner().unwrap();
    connecting.sort();
    assert_eq!(connecting.len(), 4);
    for (index, at) in connecting {
        assert!(
            at >= Duration::from_millis(300) * index as u32,
            "host {index} connected after {at:?}"
        );
    }
}

#[tokio::test]
async fn runs_on_kept_sessions_roll_out_too() {
    let cluster = Cluster::start(1, 4, 740);
    let targets = library_targets(&cluster);
    let pool = Pool::from_targets(targets)
        .concurrency(8)
        .batches(Batches::of(2))
        .max_failures(FailureBudget::fail_fast());
    let sessions = pool.connect_all(|_| {}).await;
    assert_eq!(sessions.connected(), 4);
    // A non-zero exit counts for Sessions::run (classified as a command).
    let command = Template::parse("case {{name}} in node01) exit 3;; esac").unwrap();
    let results = sessions.run(&command).await;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome()).collect();
    sessions.close().await;
    assert_eq!(outcomes[0], Outcome::ExitedNonZero, "{results:?}");
    assert_eq!(outcomes[1], Outcome::Ok);
    assert_eq!(outcomes[2..], [Outcome::NotStarted, Outcome::NotStarted]);
}

#[test]
fn the_progress_bar_shows_the_batch_and_the_stop() {
    let cluster = Cluster::start(1, 4, 760);
    let inventory = cluster.inventory(&[], "");
    // Batches 1 | 2-3 | 4: node02 fails while node03 still runs for a while, so the bar
    // shows the stop; node04 never starts.
    let command = "case {{name}} in node01) sleep 1;; node02) sleep 0.3; exit 1;; \
                   node03) sleep 1.5;; esac";
    let mut line = String::from(env!("CARGO_BIN_EXE_rexec"));
    for a in [
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--batch",
        "1,2",
        "--fail-fast",
        command,
    ] {
        line.push(' ');
        line.push_str(&rexec::shell_quote(a));
    }
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(shown.contains("batch 1/3: 0/4 hosts, "), "{shown:?}");
    assert!(
        shown.contains("batch 2/3: failure budget exceeded, no new hosts: "),
        "{shown:?}"
    );
    assert!(
        shown.contains(
            "--- rollout stopped: 1 host failed (budget --fail-fast) in batch 2/3; \
             1 host not started: node04"
        ),
        "{shown:?}"
    );
}
