//! The `rexec` binary ends on time and says what happened: outcomes and exit codes by
//! phase, causes shown once, no-status and background-job notes, stdin that is never read,
//! root hosts, a reader that goes away, a resolver that never answers, local problems,
//! and the knobs (--kill-grace, --max-output, --retries, --keepalive, REXEC_LOG).

use crate::harness;

use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::cli::{json_lines, output_with_peak_rss, rexec, rexec_command, text};
use harness::{eventually, Cluster, Sshd, SshdConfig, TEST_USER};

/// Processes whose command line starts with `pattern` (anchored: rexec's own command
/// line holds the pattern too, further in).
fn processes(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", &format!("^{pattern}")])
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_owned)
        .collect()
}

fn marker(prefix: u32) -> String {
    format!("sleep {prefix}{:05}", harness::random_u64() % 100_000)
}

/// An inventory for one sshd: `node01` as the test user, `root01` as root.
fn inventory_for(sshd: &Sshd, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("hosts.toml");
    std::fs::write(
        &path,
        format!(
            "[defaults]\naddress = \"127.0.0.1\"\nport = {}\nidentity_files = [\"{}\"]\n\
             known_hosts = \"{}\"\n{extra}\n[hosts]\nnode01 = {{ user = \"{TEST_USER}\" }}\n\
             root01 = {{ user = \"root\" }}\n",
            sshd.port,
            sshd.user_key.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn deadlines_before_the_command_are_could_not_run_and_name_their_phase() {
    // A listener that never speaks: the handshake deadline passes; the command never ran.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let closed = harness::free_port();
    let list = format!("127.0.0.1:{port},127.0.0.2:{closed}");
    let out = rexec(&[
        "-H",
        &list,
        "--no-agent",
        "--json",
        "--connect-timeout",
        "1s",
        "--known-hosts",
        "/dev/null",
        "true",
    ]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 2, "{}", text(&out.stderr));
    let silent_host = results
        .values()
        .find(|r| r["error"]["kind"] == "timeout")
        .unwrap_or_else(|| panic!("{results:?}"));
    assert_eq!(silent_host["outcome"], "unreachable");
    assert_eq!(silent_host["error"]["phase"], "handshake");
    assert!(silent_host["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("timed out after 1s waiting for the ssh banner"));
    // The refused one: its cause is shown, once.
    let refused = results
        .values()
        .find(|r| r["error"]["kind"] == "connect")
        .unwrap();
    assert_eq!(refused["outcome"], "unreachable");
    assert_eq!(
        refused["error"]["message"],
        format!("cannot connect to 127.0.0.2:{closed}: connection refused")
    );
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(out.status.code(), Some(3));
    // The same in text.
    let out = rexec(&[
        "-H",
        &format!("127.0.0.1:{closed}"),
        "--no-agent",
        "--known-hosts",
        "/dev/null",
        "true",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(": unreachable in ")
            && stdout.contains(&format!(
                "s: cannot connect to 127.0.0.1:{closed}: connection refused\n"
            )),
        "{stdout}"
    );
    assert_eq!(stdout.matches("connection refused").count(), 1, "{stdout}");
    assert_eq!(out.status.code(), Some(3));
    drop(silent);
}

#[test]
fn no_status_and_background_jobs_are_said_in_text_and_json() {
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["ChannelTimeout session:command=2s".to_owned()],
        root_login: true,
        ..SshdConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory_for(&sshd, dir.path(), "");
    let inv = inventory.to_str().unwrap();
    let m = marker(50);
    let out = rexec(&["-i", inv, "-l", "node01", "--no-agent", "--json", &m]);
    let (results, summary) = json_lines(&out);
    let r = &results["node01"];
    assert_eq!(r["outcome"], "no-status", "{r}");
    assert_eq!(
        r["note"],
        "the server closed the channel without an exit status; the remote command may still \
         be running"
    );
    assert_eq!(r["may_still_be_running"], true);
    assert!(r.get("exit_code").is_none());
    assert_eq!(summary["exit_code"], 4);
    sshd.kill_leftovers();
    let out = rexec(&["-i", inv, "-l", "node01", "--no-agent", &m]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "=== node01: no-status (no exit status) in ")
            && stdout.contains("s: the server closed the channel without an exit status; the remote command may still be running\n"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(4));
    sshd.kill_leftovers();

    // A background job holding stdout: exit status reported, with a note, well before -t.
    let m = marker(51);
    for host in ["node01", "root01"] {
        let out = rexec(&[
            "-i",
            inv,
            "-l",
            host,
            "--no-agent",
            "--json",
            "-t",
            "60",
            &format!("echo started; {m} & exit 0"),
        ]);
        let (results, summary) = json_lines(&out);
        let r = &results[host];
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["stdout"], "started\n");
        assert_eq!(r["output_open_after_exit"], true);
        assert!(r["note"].as_str().unwrap().contains("background process"));
        assert_eq!(summary["exit_code"], 0);
        sshd.kill_leftovers();
    }
}

#[test]
fn stdin_that_is_not_read_ends_with_the_command_and_is_held_once() {
    let cluster = Cluster::start(1, 9, 300);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let data = cluster.dir.path().join("stdin.bin");
    std::fs::write(&data, vec![b'x'; 64 * 1024 * 1024]).unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "-l",
        "node01",
        "--no-agent",
        "--json",
        "-t",
        "30",
        "--stdin",
        data.to_str().unwrap(),
        "sleep 1; exit 3",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(
        results["node01"]["outcome"],
        "exited-nonzero",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(results["node01"]["exit_code"], 3);
    // 100 MB to 9 hosts is held once (it peaked at 1.9 GB when each host had a copy).
    std::fs::write(&data, vec![b'y'; 100 * 1024 * 1024]).unwrap();
    let (out, peak_kib) = output_with_peak_rss(&mut rexec_command(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--stdin",
        data.to_str().unwrap(),
        "wc -c",
    ]));
    let (results, summary) = json_lines(&out);
    assert_eq!(summary["exit_code"], 0, "{}", text(&out.stderr));
    for r in results.values() {
        assert_eq!(r["stdout"], "104857600\n");
    }
    assert!(
        peak_kib < 400 * 1024,
        "peak memory {} MiB for 100 MiB of stdin",
        peak_kib / 1024
    );
}

#[test]
fn root_hosts_are_stopped_on_timeout_and_keep_their_output_on_ctrl_c() {
    let sshd = Sshd::start_with(SshdConfig {
        root_login: true,
        ..SshdConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory_for(&sshd, dir.path(), "");
    let inv = inventory.to_str().unwrap();
    let m = marker(52);
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-t",
        "4",
        &format!("echo started; {m}"),
    ]);
    let (results, summary) = json_lines(&out);
    for host in ["node01", "root01"] {
        let r = &results[host];
        assert_eq!(r["outcome"], "timed-out", "{r}");
        assert_eq!(r["stdout"], "started\n");
        assert_eq!(r["may_still_be_running"], false, "{r}");
    }
    assert_eq!(summary["exit_code"], 4);
    assert!(
        eventually(Duration::from_secs(10), || processes(&m).is_empty()),
        "{:?}",
        processes(&m)
    );

    // Ctrl-C: every interrupted host keeps its output so far.
    for _ in 0..3 {
        let m = marker(53);
        let child = rexec_command(&["-i", inv, "--no-agent", "--json"])
            .arg(format!("echo started; {m}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(20), || processes(&m).len() >= 2));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        let (results, _) = json_lines(&out);
        for host in ["node01", "root01"] {
            assert_eq!(results[host]["outcome"], "interrupted", "{}", results[host]);
            assert_eq!(results[host]["stdout"], "started\n", "{}", results[host]);
        }
        assert!(eventually(Duration::from_secs(10), || processes(&m).is_empty()));
    }
}

#[test]
fn a_reader_that_goes_away_stops_the_run_without_a_panic() {
    // --list-hosts into a closed pipe.
    let mut child = rexec_command(&["-H", "n[1-20000]", "--list-hosts"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(&first, b"n1\n");
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );

    // --stream of an endless command: rexec stops it and exits.
    let cluster = Cluster::start(1, 2, 320);
    let inventory = cluster.inventory(&[], "");
    let token = format!("yes rexec-reader-{}", harness::random_u64() % 100_000);
    let mut child = rexec_command(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--stream",
        &token,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut line).unwrap();
    drop(stdout);
    let done = eventually(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
    }
    assert!(done, "rexec kept running after its reader went away");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("stdout was closed by its reader"),
        "{stderr}"
    );
    assert!(eventually(Duration::from_secs(10), || processes(&token).is_empty()));
}

#[test]
fn an_unset_password_variable_is_reported_once_without_a_host_name() {
    let out = rexec(&[
        "-H",
        "a,b,c",
        "--password-env",
        "REXEC_TEST_SURELY_UNSET",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: --password-env REXEC_TEST_SURELY_UNSET: the environment variable \
         REXEC_TEST_SURELY_UNSET is not set (or not UTF-8)\n"
    );
}

/// A network namespace whose resolver is a UDP socket that never answers: a name lookup
/// there blocks until glibc gives up (timeout:30 attempts:1).
struct SilentResolver {
    name: String,
}

impl SilentResolver {
    fn start() -> SilentResolver {
        let name = format!("rexec-dns-{}", harness::random_u64() % 1_000_000);
        harness::run(std::process::Command::new("ip").args(["netns", "add", &name]));
        harness::run(
            std::process::Command::new("ip")
                .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]),
        );
        let etc = std::path::PathBuf::from(format!("/etc/netns/{name}"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
        )
        .unwrap();
        SilentResolver { name }
    }
}

impl Drop for SilentResolver {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

#[test]
fn a_resolver_that_never_answers_does_not_hold_the_exit() {
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        harness::run(
            std::process::Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "install",
                    "-y",
                    "-qq",
                    "iproute2",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    let ns = SilentResolver::start();
    // The silent DNS server, inside the namespace: receives queries, never answers.
    let mut server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1',53))\nprint('ready',flush=True)\n\
             while True: s.recvfrom(4096)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(server.stdout.as_mut().unwrap(), &mut ready).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_rexec")])
        .args([
            "-H",
            "never-answered.invalid",
            "--no-agent",
            "--json",
            "--connect-timeout",
            "2s",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    let (results, summary) = json_lines(&out);
    let r = &results["never-answered.invalid"];
    assert_eq!(r["outcome"], "unreachable", "{r}");
    assert_eq!(r["error"]["phase"], "connect");
    assert_eq!(summary["exit_code"], 3);
    // The lookup would have blocked for 30 s: rexec exited before it returned.
    assert!(
        took < Duration::from_secs(25),
        "rexec waited for the resolver: {took:?}"
    );
}

#[test]
fn knobs_max_output_kill_grace_and_keepalive_work() {
    let cluster = Cluster::start(1, 1, 330);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "--max-output",
        "1KB",
        "head -c 3000000 /dev/zero | tr '\\0' a; echo e >&2; exit 3",
    ]);
    let (results, _) = json_lines(&out);
    let r = &results["node01"];
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(r["stdout_truncated"], true);
    assert_eq!(r["stderr"], "e\n");
    assert_eq!(r["stderr_truncated"], false);
    let out = rexec(&["-i", inv, "--no-agent", "--max-output", "10", "seq 1000"]);
    assert!(
        text(&out.stdout).ends_with("; stdout cut at --max-output\n1\n2\n3\n4\n5\n"),
        "{}",
        text(&out.stdout)
    );

    // --kill-grace: a command that ignores TERM is killed that long after it.
    let m = marker(54);
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "-t",
        "4",
        "--kill-grace",
        "1s",
        &format!("trap '' TERM; {m}"),
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results["node01"]["outcome"], "timed-out");
    assert_eq!(results["node01"]["signal"], "KILL", "{}", results["node01"]);
    assert!(eventually(Duration::from_secs(10), || processes(&m).is_empty()));

    // Bad values are usage errors.
    for bad in [
        &["--max-output", "lots"][..],
        &["--kill-grace", "soon"][..],
        &["--keepalive", "0"][..],
        &["--keepalive-max", "0"][..],
        &["--retries", "-1"][..],
    ] {
        let mut args = vec!["-i", inv];
        args.extend_from_slice(bad);
        args.push("true");
        let out = rexec(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("rexec: "),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn keepalive_notices_a_frozen_server_in_about_interval_times_max() {
    let cluster = Cluster::start(1, 1, 340);
    let inventory = cluster.inventory(&[], "");
    let m = marker(55);
    let mut child = rexec_command(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "--keepalive",
        "1s",
        "--keepalive-max",
        "2",
        &format!("echo started; {m}"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    assert!(eventually(Duration::from_secs(20), || !processes(&m).is_empty()));
    // Freeze every process of the server: the peer goes silent, the TCP connection stays.
    let frozen = harness::descendants(cluster.servers[0].pid());
    assert!(frozen.len() >= 2, "{frozen:?}");
    for p in &frozen {
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &p.to_string()])
            .status();
    }
    // Default keepalive would take 15 s x 3; with 1 s x 2 it is a few seconds. The hang
    // guard is far from both.
    let done = eventually(Duration::from_secs(25), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    for p in &frozen {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &p.to_string()])
            .status();
    }
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        done,
        "the frozen connection was not noticed: {}",
        text(&out.stderr)
    );
    let (results, _) = json_lines(&out);
    assert_eq!(
        results["node01"]["outcome"], "connection-lost",
        "{}",
        results["node01"]
    );
    cluster.servers[0].kill_leftovers();
}

#[test]
fn retries_apply_only_to_drops_before_authentication() {
    // A server that accepts and closes at once, counting connections.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let host = format!("127.0.0.1:{port}");
    for (retries, attempts) in [("0", 1), ("2", 3)] {
        count.store(0, Ordering::SeqCst);
        let out = rexec(&[
            "-H",
            &host,
            "--no-agent",
            "--known-hosts",
            "/dev/null",
            "--json",
            "--retries",
            retries,
            "true",
        ]);
        let (results, _) = json_lines(&out);
        assert_eq!(results.len(), 1, "{}", text(&out.stderr));
        assert_eq!(
            count.load(Ordering::SeqCst),
            attempts,
            "--retries {retries}"
        );
    }
    // A refused connection is never retried (nothing listens: one attempt, fast).
    let closed = harness::free_port();
    let out = rexec(&[
        "-H",
        &format!("127.0.0.1:{closed}"),
        "--no-agent",
        "--json",
        "--retries",
        "5",
        "true",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results.values().next().unwrap()["error"]["kind"], "connect");
}

#[test]
fn the_russh_log_is_reachable_and_holds_no_secret() {
    let sshd = Sshd::start_with(SshdConfig {
        password_auth: true,
        ..SshdConfig::default()
    });
    let password = harness::setup();
    let out = rexec_command(&[
        "-H",
        &format!("{TEST_USER}@127.0.0.1:{}", sshd.port),
        "--no-agent",
        "--known-hosts",
        sshd.known_hosts.to_str().unwrap(),
        "--password-env",
        "REXEC_TEST_PW",
        "echo logged-in",
    ])
    .env("REXEC_LOG", "trace")
    .env("REXEC_TEST_PW", password)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    // russh's own log lines (through the log crate) are there...
    assert!(
        stderr.contains("russh") || stderr.to_lowercase().contains("kex"),
        "no russh log: {}",
        &stderr[..stderr.len().min(2000)]
    );
    // ...but never the password.
    assert!(!stderr.contains(password), "the password is in the log");
    assert!(!text(&out.stdout).contains(password));
}

#[test]
fn usage_errors_have_one_format_and_options_work_after_put_and_get() {
    // An unknown option before the command is a usage error, not part of the command.
    // (Not `--bogus`: clap would suggest `--become-user` for it.)
    let out = rexec(&["-H", "h", "--xyzzy", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: unexpected argument '--xyzzy' found\n\
         rexec: tip: to pass '--xyzzy' as a value, use '-- --xyzzy'\n\
         Try 'rexec --help' for more information.\n"
    );
    let out = rexec(&["-H", "h"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: no command given\nTry 'rexec --help' for more information.\n"
    );
    // After the first word, options belong to the command.
    let out = rexec(&["-H", "h", "--list-hosts", "ls", "--bogus"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Global options after put/get.
    let closed = harness::free_port();
    let out = rexec(&[
        "-H",
        &format!("127.0.0.1:{closed}"),
        "put",
        "Cargo.toml",
        "/tmp/x",
        "--json",
        "--no-agent",
    ]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 1, "{}", text(&out.stderr));
    assert_eq!(summary["exit_code"], 3);
}

#[test]
fn a_fan_out_put_shares_one_buffer_budget() {
    // 20 uploads at once of 16 MiB each: 16 writes of 255 KiB in flight each would be
    // 80 MiB of chunks (twice that with the queued packets); the shared 32 MiB budget
    // keeps the process near 64 MiB (README, "File transfer").
    let cluster = Cluster::start(2, 10, 1500);
    let inventory = cluster.inventory(&[], "");
    let local = cluster.dir.path().join("fleet.bin");
    let data: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&local, &data).unwrap();
    let remote = tempfile::Builder::new()
        .prefix("rexec-budget-")
        .tempdir_in("/tmp")
        .unwrap();
    let chown = std::process::Command::new("chown")
        .arg(format!("{TEST_USER}:"))
        .arg(remote.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let dest = remote.path().join("fleet.bin");
    let (out, peak_kib) = output_with_peak_rss(&mut rexec_command(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "-q",
        "-f",
        "20",
        "put",
        "--no-fsync",
        local.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Every host wrote the same path (one user, one machine): the last rename left a
    // whole copy and no temporary file.
    assert!(std::fs::read(&dest).unwrap() == data, "the copy differs");
    let left: Vec<_> = std::fs::read_dir(remote.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    // Measured: 52-58 MiB; 88-97 MiB with no budget.
    assert!(
        peak_kib < 80 * 1024,
        "20 uploads of 16 MiB peaked at {} MiB",
        peak_kib / 1024
    );
}

#[test]
fn large_outputs_are_written_without_a_second_copy() {
    let cluster = Cluster::start(1, 1, 350);
    let inventory = cluster.inventory(&[], "");
    let inv = inventory.to_str().unwrap();
    // --json: 64 MiB of NUL bytes (valid UTF-8, escaped as \u0000 while written). A copy
    // into a JSON value and its text peaked at 2 GB for 256 MiB.
    let (out, peak_kib) = output_with_peak_rss(&mut rexec_command(&[
        "-i",
        inv,
        "--no-agent",
        "--json",
        "head -c 67108864 /dev/zero",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = out.stdout.split(|b| *b == b'\n').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(first).unwrap();
    assert_eq!(v["stdout"].as_str().unwrap().len(), 64 * 1024 * 1024);
    assert!(
        peak_kib < 200 * 1024,
        "--json peaked at {} MiB for 64 MiB of output",
        peak_kib / 1024
    );
    // --stream: 200 MB of short lines are printed as they come, nothing kept.
    let (out, peak_kib) = output_with_peak_rss(&mut rexec_command(&[
        "-i",
        inv,
        "--no-agent",
        "--stream",
        "-q",
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 200000000",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // 109-byte lines: 1,834,862 whole ones and a last 42-byte piece (ended with a newline).
    assert_eq!(
        out.stdout.len(),
        200_000_000 + 1_834_863 * "node01 | ".len() + 1
    );
    assert!(
        peak_kib < 100 * 1024,
        "--stream peaked at {} MiB for 200 MB of output",
        peak_kib / 1024
    );
    // One 30 MB line: printed in 1 MiB pieces, each prefixed, every byte there (the line
    // search is linear: this took 15-23 s when each chunk rescanned the whole line).
    let out = rexec(&[
        "-i",
        inv,
        "--no-agent",
        "--stream",
        "-q",
        "head -c 30000000 /dev/zero | tr '\\0' x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pieces = 30_000_000usize.div_ceil(1024 * 1024);
    assert_eq!(
        out.stdout.len(),
        30_000_000 + pieces * ("node01 | ".len() + 1)
    );
    assert_eq!(
        out.stdout.iter().filter(|b| **b == b'x').count(),
        30_000_000
    );
}
