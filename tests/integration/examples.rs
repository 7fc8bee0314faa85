//! Every example in `examples/` runs against real sshd servers, as a script author would
//! run it: the six-line quickstart exactly as the README shows it, and the others with
//! the arguments their docs give. The examples are built by `cargo test` (or here, once,
//! when a test binary runs alone).

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use harness::cli::{answer_prompt, on_a_terminal};
use harness::{Cluster, TEST_USER};

/// The built example `name` (target/debug/examples/NAME next to this test binary).
fn example(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/examples-HASH -> target/debug/examples/NAME
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    if !path.exists() {
        BUILD.call_once(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--examples", "--quiet"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success());
        });
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn run(name: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(example(name))
        .args(args)
        .current_dir(cwd)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory the test user can write on the "remote" side (the same machine).
fn remote_dir(cluster: &Cluster) -> PathBuf {
    let dir = cluster.dir.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    harness::run(Command::new("chown").arg(TEST_USER).arg(&dir));
    // The test user must reach it through the temporary directory.
    harness::run(Command::new("chmod").arg("755").arg(cluster.dir.path()));
    dir
}

const WEB_GROUPS: &str =
    "\n[groups.web]\nhosts = [\"node01\", \"node02\", \"node03\", \"node04\"]\n";

/// The six lines, with `node03` standing in for `web03`: one host fails the
/// check, the failure is printed as `host: outcome`, the upload reaches every selected
/// host and the exit code is the run's (1: a command exited non-zero).
#[test]
fn the_quickstart_runs_as_written() {
    let cluster = Cluster::start(1, 5, 1400);
    let inventory = cluster.inventory(&[], WEB_GROUPS);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.tar.gz"), b"the release\n").unwrap();
    let remote = remote_dir(&cluster);
    let node02 = &cluster.hosts()[1].address;
    // Fails on node02 only (its address is the server side of SSH_CONNECTION).
    let check = format!("case \"$SSH_CONNECTION\" in *' {node02} '*) exit 3;; esac");
    let destination = format!("{}/", remote.display());
    let out = run(
        "quickstart",
        &[
            inventory.to_str().unwrap(),
            "web:!node03",
            &check,
            "app.tar.gz",
            &destination,
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "node02: exited-nonzero\n");
    assert_eq!(
        std::fs::read(remote.join("app.tar.gz")).unwrap(),
        b"the release\n"
    );

    // An upload that fails on a host is an error naming it: `?` on check().
    let out = run(
        "quickstart",
        &[
            inventory.to_str().unwrap(),
            "web:!node03",
            "true",
            "app.tar.gz",
            "/nonexistent-dir/",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("3 of 3 hosts failed: node01 (")
            && stderr.contains("node02 (")
            && stderr.contains("node04 ("),
        "{stderr}"
    );
    // A missing local file fails before anything connects.
    let out = run(
        "quickstart",
        &[
            inventory.to_str().unwrap(),
            "web",
            "true",
            "missing.tar.gz",
            "/tmp/",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read missing.tar.gz"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn group_failures_retries_the_failed_hosts_only() {
    let cluster = Cluster::start(1, 4, 1420);
    let inventory = cluster.inventory(&[], WEB_GROUPS);
    let work = tempfile::tempdir().unwrap();
    let remote = remote_dir(&cluster);
    // Fails the first time on node02 and node04, then succeeds (a marker per host).
    let command = format!(
        "case {{{{name}}}} in node02|node04) [ -e {dir}/{{{{name}}}} ] || {{ touch {dir}/{{{{name}}}}; exit 5; }};; esac",
        dir = remote.display()
    );
    let out = run(
        "group_failures",
        &[inventory.to_str().unwrap(), "web", &command],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "retry node02: ok\nretry node04: ok\n");
    assert!(
        text(&out.stderr).contains("node02: exited 5"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn as_completed_reuse_and_custom_workflow_run() {
    let cluster = Cluster::start(1, 3, 1440);
    let inventory = cluster.inventory(&[], "");
    let inventory = inventory.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();

    let out = run("as_completed", &[inventory, "echo {{name}}"], work.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "ok node01: node01",
            "ok node02: node02",
            "ok node03: node03"
        ]
    );

    let before = cluster.servers[0]
        .log()
        .matches("Accepted publickey")
        .count();
    let out = run(
        "reuse",
        &[inventory, "all", "2", "echo $SSH_CONNECTION"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("connected 3/3 hosts in "), "{stdout}");
    assert!(
        stdout.contains("run 1: 3/3 ok in ") && stdout.contains("run 2: 3/3 ok in "),
        "{stdout}"
    );
    // Three connections for two runs.
    let log = cluster.servers[0].log();
    assert_eq!(
        log.matches("Accepted publickey").count() - before,
        3,
        "{log}"
    );

    let out = run("custom_workflow", &[inventory], work.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for n in ["node01", "node02", "node03"] {
        assert!(stdout.contains(&format!("{n}: written (")), "{stdout}");
    }
}

#[test]
fn rollout_and_run_one_run() {
    let cluster = Cluster::start(1, 3, 1460);
    let inventory = cluster.inventory(&[], "");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("rexec-rollout-example.txt");
    std::fs::write(&file, b"v2\n").unwrap();
    let out = run(
        "rollout",
        &[
            inventory.to_str().unwrap(),
            "all",
            file.to_str().unwrap(),
            "cat /tmp/rexec-rollout-example.txt",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    // Batches of 1 then 25% of 3 (at least one host): 1 | 1 | 1.
    assert!(
        stderr.contains("batch 1/3: 1 hosts") && stderr.contains("batch 3/3: 1 hosts"),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        3,
        "{}",
        text(&out.stdout)
    );
    let uploaded = std::fs::read("/tmp/rexec-rollout-example.txt");
    let _ = std::fs::remove_file("/tmp/rexec-rollout-example.txt");
    assert_eq!(uploaded.unwrap(), b"v2\n");

    // One host through Session directly: key and known_hosts from the environment.
    let host = &cluster.hosts()[0];
    let out = Command::new(example("run_one"))
        .args([
            format!("{}:{}", host.address, host.port).as_str(),
            "echo",
            "hello from",
            "run_one",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .env("REXEC_USER", TEST_USER)
        .env("REXEC_IDENTITY", &cluster.user_key)
        .env("REXEC_KNOWN_HOSTS", &cluster.known_hosts)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from run_one\n");
}

/// `sudo_deploy` as its doc runs it, answering its prompt on a terminal (util-linux
/// `script`): the file lands owned by root with mode 0640 in a directory only root may
/// write, the reload runs as root on every host; then a wrong password is reported per
/// host as sudo's refusal, and the destination is left as it was.
#[test]
fn sudo_deploy_installs_as_root_after_one_prompt() {
    use std::os::unix::fs::MetadataExt;
    let _sudoers =
        harness::sudo::Sudoers::new("example", &format!("{TEST_USER} ALL=(ALL:ALL) ALL"));
    let password = harness::setup();
    let cluster = Cluster::start(1, 2, 1480);
    let inventory = cluster.inventory(&[], "");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.conf"), b"port = 8080\n").unwrap();
    // Root's directory: the test user cannot write it.
    let etc = tempfile::Builder::new()
        .prefix("rexec-deploy-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        etc.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let remote = etc.path().join("app.conf");
    let deploy = |answer: &str| -> String {
        let line = [
            example("sudo_deploy").display().to_string(),
            inventory.display().to_string(),
            "app.conf".to_owned(),
            remote.display().to_string(),
            format!("test \"$(id -u)\" = 0 && cat {}", remote.display()),
        ]
        .iter()
        .map(|a| rexec::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
        let shown = answer_prompt(
            on_a_terminal(&line).current_dir(work.path()),
            "BECOME password:",
            answer,
        );
        assert!(!shown.contains(answer), "the password was echoed: {shown}");
        shown
    };
    let shown = deploy(password);
    for host in ["node01", "node02"] {
        assert!(shown.contains(&format!("{host}: deployed")), "{shown}");
    }
    let meta = std::fs::metadata(&remote).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o640));
    assert_eq!(std::fs::read(&remote).unwrap(), b"port = 8080\n");

    std::fs::write(work.path().join("app.conf"), b"port = 9090\n").unwrap();
    let shown = deploy("not-the-password");
    for host in ["node01", "node02"] {
        assert!(shown.contains(&format!("{host}: sudo refused")), "{shown}");
    }
    assert_eq!(std::fs::read(&remote).unwrap(), b"port = 8080\n");
}
