//! Privilege escalation through a real `sudo` (installed here when missing), configured
//! for the test user by drop-ins in /etc/sudoers.d: with and without a password, wrong
//! passwords, users not in sudoers, another target user, stdin, JSON and logs that never
//! show the password or the prompt, stopping (`-t`) with nothing left running, and put/get
//! as root.
//!
//! sudoers is machine-wide, so the tests of this file take turns ([`Sudoers`] holds a lock
//! while its drop-in exists) and every drop-in sets `timestamp_timeout=0`: no test depends
//! on credentials cached by another.

use crate::harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::cli::{answer_prompt, json_lines, on_a_terminal, rexec, rexec_command, text};
use harness::sudo::Sudoers;
use harness::{eventually, run, Sshd, SshdConfig, TEST_USER};
use rexec::{Become, ErrorKind, Secret, Session, TransferOptions};

fn with_password() -> String {
    format!("{TEST_USER} ALL=(ALL:ALL) ALL")
}

fn without_password() -> String {
    format!("{TEST_USER} ALL=(ALL:ALL) NOPASSWD: ALL")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `-H rexec-test@127.0.0.1:PORT --no-agent -I KEY --known-hosts FILE` for a server.
fn host_args(sshd: &Sshd, user: &str) -> Vec<String> {
    vec![
        "-H".into(),
        format!("{user}@127.0.0.1:{}", sshd.port),
        "--no-agent".into(),
        "-I".into(),
        sshd.user_key.display().to_string(),
        "--known-hosts".into(),
        sshd.known_hosts.display().to_string(),
    ]
}

fn rexec_with(args: &[String], extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let mut cmd = rexec_command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// The one host's JSON object.
fn json_host(out: &std::process::Output) -> serde_json::Value {
    let (hosts, _) = json_lines(out);
    assert_eq!(hosts.len(), 1, "{}", text(&out.stdout));
    hosts.into_values().next().unwrap()
}

#[test]
fn the_right_password_runs_the_command_as_root_and_the_prompt_is_not_shown() {
    // sudo's lecture (shown before the prompt) is sudo's talk, not the command's stderr.
    let _sudoers = Sudoers::new(
        "right",
        &format!("Defaults:{TEST_USER} lecture=always\n{}", with_password()),
    );
    let sshd = Sshd::start();
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let out = session
            .raw_command("id -un; echo \"home=$HOME\"; echo to-stderr >&2")
            .become_password(Sshd::password())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(out.stdout_lossy(), "root\nhome=/root\n");
        // Exactly what the command wrote: no prompt, no marker, no newline of sudo's.
        assert_eq!(out.stderr_lossy(), "to-stderr\n");
        // A non-zero exit is the command's own result, not a become failure.
        let out = session
            .raw_command("exit 7")
            .become_password(Sshd::password())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
    });
}

#[test]
fn a_wrong_password_is_become_failed_and_never_shown() {
    let _sudoers = Sudoers::new("wrong", &with_password());
    let sshd = Sshd::start();
    let args = host_args(&sshd, TEST_USER);
    let wrong = "not-the-password-1234";
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--json",
            "echo ran",
        ],
        &[("BECOME_PW", wrong), ("REXEC_LOG", "trace")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert_eq!(host["error"]["kind"], "become");
    let message = host["error"]["message"].as_str().unwrap();
    assert!(message.contains("incorrect password"), "{message}");
    assert!(message.contains("did not run"), "{message}");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(wrong), "the password was shown: {all}");
    assert!(
        !all.contains("sudo via rexec"),
        "the prompt was shown: {all}"
    );
    assert!(!all.contains("\"stdout\":\"ran"), "{all}");
    // The library says the same with its kind.
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let e = session
            .raw_command("echo ran")
            .sudo(Become::root().password(Secret::new(wrong)))
            .output()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Become, "{e:#}");
        let output = e.output().unwrap();
        assert!(output.stdout.is_empty());
        assert!(!output.stderr_lossy().contains("sudo via rexec"));
    });
}

#[test]
fn the_summary_and_exit_code_count_become_failed() {
    let _sudoers = Sudoers::new("summary", &with_password());
    let sshd = Sshd::start();
    let args = host_args(&sshd, TEST_USER);
    let out = rexec_with(&args, &["--become", "true"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("1 become-failed"), "{err}");
    let err = format!("{}{err}", text(&out.stdout));
    assert!(
        err.contains("sudo: a password is required and none was given"),
        "{err}"
    );
}

#[test]
fn a_host_that_needs_a_password_fails_clearly_without_one() {
    let _sudoers = Sudoers::new("needed", &with_password());
    let sshd = Sshd::start();
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become", "--json", "id -u"],
        &[],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert!(host["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a password is required"));
}

#[test]
fn a_user_not_in_sudoers_is_told_so() {
    let _sudoers = Sudoers::new("absent", "");
    let sshd = Sshd::start();
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["-b", "--become-pass-env", "BECOME_PW", "--json", "id -u"],
        &[("BECOME_PW", harness::setup())],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert_eq!(
        host["error"]["message"],
        format!("sudo: {TEST_USER} is not in the sudoers file; the command did not run")
    );
}

#[test]
fn sudo_missing_from_the_path_is_named() {
    let _sudoers = Sudoers::new("missing", &without_password());
    // The login shell cannot find sudo (as on a host without it).
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["ForceCommand PATH=/nonexistent; eval \"$SSH_ORIGINAL_COMMAND\"".into()],
        ..SshdConfig::default()
    });
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become", "--json", "id -u"],
        &[],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert!(host["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("sudo is not installed"));
}

#[test]
fn nopasswd_needs_no_password_and_a_given_one_is_not_sent() {
    let _sudoers = Sudoers::new("nopasswd", &without_password());
    let sshd = Sshd::start();
    let args = host_args(&sshd, TEST_USER);
    let out = rexec_with(&args, &["--become", "--json", "id -un"], &[]);
    assert_eq!(json_host(&out)["stdout"], "root\n", "{}", text(&out.stdout));
    // A password given to a sudo that does not ask: the command's stdin is exactly the
    // --stdin file (the password is never written into it).
    let input = sshd.write_file("input", b"line one\nline two\n\x00binary\xff");
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--stdin",
            input.to_str().unwrap(),
            "--json",
            "od -An -c",
        ],
        &[("BECOME_PW", harness::setup())],
    );
    let expected = run(Command::new("od").args(["-An", "-c"]).arg(&input));
    let host = json_host(&out);
    assert_eq!(host["outcome"], "ok", "{host}");
    assert_eq!(host["stdout"], expected);
}

#[test]
fn stdin_reaches_the_command_after_the_password() {
    let _sudoers = Sudoers::new("stdin", &with_password());
    let sshd = Sshd::start();
    let input = sshd.write_file("input", b"first\nsecond\n");
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--stdin",
            input.to_str().unwrap(),
            "--json",
            "id -un; cat",
        ],
        &[("BECOME_PW", harness::setup())],
    );
    let host = json_host(&out);
    assert_eq!(host["stdout"], "root\nfirst\nsecond\n", "{host}");
    assert!(!text(&out.stdout).contains(harness::setup()));
    assert!(!text(&out.stdout).contains("sudo via rexec"));
}

#[test]
fn become_user_runs_as_that_user_with_its_home() {
    let other = harness::bash_user();
    let _sudoers = Sudoers::new("other", &format!("{TEST_USER} ALL=({other}) NOPASSWD: ALL"));
    let sshd = Sshd::start();
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become-user", other, "--json", "id -un; echo $HOME"],
        &[],
    );
    let host = json_host(&out);
    assert_eq!(
        host["stdout"],
        format!("{other}\n/home/{other}\n"),
        "{host}"
    );
    // Not allowed to become root with that rule.
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become", "--json", "id"],
        &[],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    // sudo -n asks for a password before it checks the rule.
    assert_eq!(
        host["error"]["message"],
        "sudo: a password is required and none was given; the command did not run"
    );
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become", "--become-pass-env", "BECOME_PW", "--json", "id"],
        &[("BECOME_PW", harness::setup())],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert_eq!(
        host["error"]["message"],
        "sudo: the login user is not allowed to run /bin/sh as root (sudoers); the command \
         did not run"
    );
}

#[test]
fn the_inventory_turns_become_on_with_a_password_from_the_environment() {
    let _sudoers = Sudoers::new("inventory", &with_password());
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\n\
             become = true\nbecome_password_env = \"SUDO_PW_FOR_TEST\"\n\n[hosts]\n\
             web1 = {{ address = \"127.0.0.1\", port = {} }}\n\
             web2 = {{ address = \"127.0.0.1\", port = {}, become = false }}\n",
            sshd.user_key.display(),
            sshd.known_hosts.display(),
            sshd.port,
            sshd.port
        ),
    )
    .unwrap();
    let out = rexec_command(&[
        "-i",
        inventory.to_str().unwrap(),
        "--no-agent",
        "--json",
        "id -un",
    ])
    .env("SUDO_PW_FOR_TEST", harness::setup())
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let (hosts, _) = json_lines(&out);
    assert_eq!(hosts["web1"]["stdout"], "root\n", "{}", text(&out.stdout));
    assert_eq!(hosts["web2"]["stdout"], format!("{TEST_USER}\n"));
    // `become_user` alone does not turn sudo on; `--become` wins over the whole inventory
    // (command line > inventory), a host's own `become = false` included.
    fs::write(
        &inventory,
        format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\n\
             become_password_env = \"SUDO_PW_FOR_TEST\"\n\n[hosts]\n\
             web1 = {{ address = \"127.0.0.1\", port = {} }}\n\
             web2 = {{ address = \"127.0.0.1\", port = {}, become = false }}\n\
             web3 = {{ address = \"127.0.0.1\", port = {}, become_user = \"root\" }}\n",
            sshd.user_key.display(),
            sshd.known_hosts.display(),
            sshd.port,
            sshd.port,
            sshd.port
        ),
    )
    .unwrap();
    let run_with = |extra: &[&str]| {
        let mut args = vec!["-i", inventory.to_str().unwrap(), "--no-agent", "--json"];
        args.extend_from_slice(extra);
        args.push("id -un");
        let out = rexec_command(&args)
            .env("SUDO_PW_FOR_TEST", harness::setup())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (hosts, _) = json_lines(&out);
        ["web1", "web2", "web3"].map(|h| hosts[h]["stdout"].as_str().unwrap_or("").to_owned())
    };
    let me = format!("{TEST_USER}\n");
    assert_eq!(run_with(&[]), [me.clone(), me.clone(), me.clone()]);
    assert_eq!(
        run_with(&["--become"]),
        [
            "root\n".to_owned(),
            "root\n".to_owned(),
            "root\n".to_owned()
        ]
    );
    // A password in the inventory is not a key it knows.
    fs::write(&inventory, "[defaults]\nbecome_password = \"x\"\n").unwrap();
    let out = rexec(&["-i", inventory.to_str().unwrap(), "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("become_password"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ask_become_pass_prompts_once_on_the_terminal() {
    let _sudoers = Sudoers::new("ask", &with_password());
    let sshd = Sshd::start();
    let password = harness::setup();
    let line = format!(
        "{} -H {TEST_USER}@127.0.0.1:{} --no-agent -I {} --known-hosts {} -b -K --json 'id -un'",
        env!("CARGO_BIN_EXE_rexec"),
        sshd.port,
        sshd.user_key.display(),
        sshd.known_hosts.display()
    );
    let shown = answer_prompt(&mut on_a_terminal(&line), "BECOME password:", password);
    assert!(shown.contains("\"stdout\":\"root\\n\""), "{shown}");
    assert!(
        !shown.contains(password),
        "the password was echoed: {shown}"
    );
    assert_eq!(shown.matches("BECOME password:").count(), 1, "{shown}");
}

#[test]
fn the_password_is_not_in_trace_logs_or_json() {
    let _sudoers = Sudoers::new("logs", &with_password());
    let sshd = Sshd::start();
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--json",
            "id -un",
        ],
        &[("BECOME_PW", harness::setup()), ("REXEC_LOG", "trace")],
    );
    assert_eq!(json_host(&out)["stdout"], "root\n");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(harness::setup()), "the password was logged");
    assert!(!all.contains("sudo via rexec"), "the prompt was shown");
}

/// `-t` stops a command run through sudo, its background job included, on a plain login
/// (sshd honours `signal`, but only for the login user's processes) and on a root login
/// (sshd ignores `signal`): nothing is left running.
#[test]
fn a_deadline_stops_everything_the_command_started_as_root() {
    let _sudoers = Sudoers::new("stop", &with_password());
    let sshd = Sshd::start_with(SshdConfig {
        root_login: true,
        ..SshdConfig::default()
    });
    // Root's login shell here is bash with a slow ~/.bashrc (about 0.4 s), which the
    // reaper's channel pays too: a longer deadline leaves the stop its time to confirm.
    for (login, password, timeout) in [
        (TEST_USER, Some(harness::setup()), "4s"),
        ("root", None, "8s"),
    ] {
        let tag = format!("{}", 3000 + harness::random_u64() % 999);
        let marker = format!("sleep {tag}.5");
        let mut extra = vec!["--become", "-t", timeout, "--json"];
        if password.is_some() {
            extra.extend(["--become-pass-env", "BECOME_PW"]);
        }
        let command = format!("{marker} & trap '' TERM; {marker}");
        extra.push(&command);
        let mut all: Vec<String> = host_args(&sshd, login);
        all.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = rexec_command(&all.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(p) = password {
            cmd.env("BECOME_PW", p);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let running_as = |uid: &str| {
            Command::new("pgrep")
                .args(["-u", uid, "-f", &format!("^{marker}$")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        // The command runs as root (through sudo), not as the login user.
        assert!(
            eventually(Duration::from_secs(20), || running_as("0")),
            "{login}: the command never ran as root"
        );
        let out = child.wait_with_output().unwrap();
        let host = json_host(&out);
        assert_eq!(host["outcome"], "timed-out", "{login}: {host}");
        assert_eq!(host["may_still_be_running"], false, "{login}: {host}");
        assert!(
            !host["stderr"].as_str().unwrap().contains("sudo via rexec"),
            "{host}"
        );
        let left = || {
            let out = Command::new("pgrep")
                .args(["-a", "-f", &format!("^{marker}$")])
                .output()
                .unwrap();
            text(&out.stdout)
        };
        assert!(
            eventually(Duration::from_secs(10), || left().is_empty()),
            "{login}: left running: {}",
            left()
        );
    }
}

/// Ctrl-C (the pool's cancellation) stops a command run through sudo as well.
#[test]
fn cancelling_stops_a_command_run_through_sudo() {
    let _sudoers = Sudoers::new("cancel", &without_password());
    let sshd = Sshd::start();
    let marker = format!("sleep {}.25", 4000 + harness::random_u64() % 999);
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let cancel = token.clone();
        let command = format!("{marker}; echo not-reached");
        let run = async {
            session
                .raw_command(command.as_str())
                .become_user("root")
                .kill_grace(Duration::from_millis(500))
                .cancel_on(token)
                .output()
                .await
        };
        let stop = async {
            let started = tokio::task::spawn_blocking({
                let marker = marker.clone();
                move || {
                    eventually(Duration::from_secs(20), || {
                        Command::new("pgrep")
                            .args(["-u", "root", "-f", &format!("^{marker}$")])
                            .stdout(Stdio::null())
                            .status()
                            .unwrap()
                            .success()
                    })
                }
            })
            .await
            .unwrap();
            assert!(started);
            cancel.cancel();
        };
        let (result, ()) = tokio::join!(run, stop);
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Interrupted, "{e:#}");
        assert!(!e.output().unwrap().may_still_be_running, "{e:#}");
    });
    let left = Command::new("pgrep")
        .args(["-f", &format!("^{marker}$")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(!left.success(), "{marker} is still running");
}

fn owner_and_mode(path: &Path) -> (u32, u32) {
    let m = fs::metadata(path).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

#[test]
fn put_as_root_lands_owned_by_root_with_the_mode_replacing_atomically() {
    let _sudoers = Sudoers::new("put", &with_password());
    let sshd = Sshd::start();
    // A directory only root may write, holding a root-owned file to replace.
    let dest_dir = sshd.dir.path().join("etc-app");
    fs::create_dir(&dest_dir).unwrap();
    fs::set_permissions(&dest_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let dest = dest_dir.join("app.conf");
    fs::write(&dest, "old contents\n").unwrap();
    let old_inode = fs::metadata(&dest).unwrap().ino();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("app.conf");
    fs::write(&local, "new contents\n").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o640)).unwrap();
    // Without sudo the login user cannot write there.
    let args = host_args(&sshd, TEST_USER);
    let out = rexec_with(
        &args,
        &["put", local.to_str().unwrap(), dest.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&dest).unwrap(), "old contents\n");
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--json",
            "put",
            local.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
        &[("BECOME_PW", harness::setup())],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&dest).unwrap(), "new contents\n");
    assert_eq!(owner_and_mode(&dest), (0, 0o640));
    // Replaced by a rename (a new inode), not rewritten in place.
    assert_ne!(fs::metadata(&dest).unwrap().ino(), old_inode);
    let names: Vec<String> = fs::read_dir(&dest_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["app.conf".to_owned()], "temporary files left");
    assert!(!text(&out.stdout).contains(harness::setup()));
    // Into an existing directory, under its own name; --no-preserve gives 0644.
    fs::remove_file(&dest).unwrap();
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "put",
            "--no-preserve",
            local.to_str().unwrap(),
            dest_dir.to_str().unwrap(),
        ],
        &[("BECOME_PW", harness::setup())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(owner_and_mode(&dest), (0, 0o644));
    // A wrong password leaves the destination alone.
    fs::write(&dest, "kept\n").unwrap();
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--json",
            "put",
            local.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
        &[("BECOME_PW", "wrong-password")],
    );
    assert_eq!(json_host(&out)["outcome"], "become-failed");
    assert_eq!(fs::read_to_string(&dest).unwrap(), "kept\n");
    let names = fs::read_dir(&dest_dir).unwrap().count();
    assert_eq!(names, 1);
}

#[test]
fn put_as_another_user_lands_owned_by_that_user() {
    let other = harness::bash_user();
    let _sudoers = Sudoers::new(
        "put-other",
        &format!("{TEST_USER} ALL=({other}) NOPASSWD: ALL"),
    );
    let sshd = Sshd::start();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("notes.txt");
    fs::write(&local, "for the other user\n").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o600)).unwrap();
    // `~/` is the target user's home with become.
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &[
            "--become-user",
            other,
            "put",
            local.to_str().unwrap(),
            "~/rexec-sudo-notes.txt",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let landed = PathBuf::from(format!("/home/{other}/rexec-sudo-notes.txt"));
    let uid: u32 = run(Command::new("id").args(["-u", other]))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(owner_and_mode(&landed), (uid, 0o600));
    assert_eq!(fs::read_to_string(&landed).unwrap(), "for the other user\n");
    fs::remove_file(&landed).unwrap();
}

/// A service user without a home (`nobody`: /nonexistent) still takes absolute paths
/// (a `cd` to the missing home failed every transfer, found by a new user's probe).
#[test]
fn put_and_get_as_a_user_without_a_home_take_absolute_paths() {
    let home = run(Command::new("getent").args(["passwd", "nobody"]));
    assert!(home.contains(":/nonexistent:"), "{home}");
    assert!(!Path::new("/nonexistent").exists());
    let _sudoers = Sudoers::new("nobody", &format!("{TEST_USER} ALL=(nobody) NOPASSWD: ALL"));
    let sshd = Sshd::start();
    let shared = tempfile::tempdir().unwrap();
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("spool.txt");
    fs::write(&local, "for nobody\n").unwrap();
    let remote = shared.path().join("spool.txt");
    let args = host_args(&sshd, TEST_USER);
    let out = rexec_with(
        &args,
        &[
            "--become-user",
            "nobody",
            "put",
            "--mode",
            "644",
            local.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(owner_and_mode(&remote), (65534, 0o644));
    assert_eq!(fs::read_to_string(&remote).unwrap(), "for nobody\n");
    let fetched = tempfile::tempdir().unwrap();
    let out = rexec_with(
        &args,
        &[
            "--become-user",
            "nobody",
            "get",
            remote.to_str().unwrap(),
            fetched.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(out_host_dir(fetched.path()).join("spool.txt")).unwrap(),
        "for nobody\n"
    );
    // A relative path does need the home, and says so.
    let out = rexec_with(
        &args,
        &[
            "--become-user",
            "nobody",
            "put",
            local.to_str().unwrap(),
            "spool.txt",
        ],
        &[],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("can't cd to /nonexistent"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn get_reads_a_root_only_file() {
    let _sudoers = Sudoers::new("get", &with_password());
    let sshd = Sshd::start();
    let secret_dir = sshd.dir.path().join("private");
    fs::create_dir(&secret_dir).unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let remote = secret_dir.join("shadow.conf");
    let contents: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&remote, &contents).unwrap();
    fs::set_permissions(&remote, fs::Permissions::from_mode(0o600)).unwrap();
    let local = tempfile::tempdir().unwrap();
    let args = host_args(&sshd, TEST_USER);
    // As the login user: permission denied.
    let out = rexec_with(
        &args,
        &[
            "get",
            remote.to_str().unwrap(),
            local.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "get",
            remote.to_str().unwrap(),
            local.path().to_str().unwrap(),
        ],
        &[("BECOME_PW", harness::setup())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let host = out_host_dir(local.path());
    let got = host.join("shadow.conf");
    assert_eq!(fs::read(&got).unwrap(), contents);
    assert_eq!(fs::metadata(&got).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(&got).unwrap().mtime(),
        fs::metadata(&remote).unwrap().mtime()
    );
    // A missing file is not-found, and no temporary file stays behind.
    let out = rexec_with(
        &args,
        &[
            "--become",
            "--become-pass-env",
            "BECOME_PW",
            "--json",
            "get",
            secret_dir.join("missing").to_str().unwrap(),
            local.path().to_str().unwrap(),
        ],
        &[("BECOME_PW", harness::setup())],
    );
    let j = json_host(&out);
    assert_eq!(j["error"]["kind"], "not-found", "{j}");
    assert_eq!(fs::read_dir(&host).unwrap().count(), 1);
}

/// The one per-host directory `get` made under `dir`.
fn out_host_dir(dir: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

#[test]
fn library_put_and_get_through_sudo() {
    let _sudoers = Sudoers::new("library", &without_password());
    let sshd = Sshd::start();
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("payload.bin");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(&file, &data).unwrap();
    let dest = sshd.dir.path().join("payload.bin");
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut options = TransferOptions::new();
        let progress = seen.clone();
        options = options.progress(std::sync::Arc::new(move |done, _| {
            progress.store(done, std::sync::atomic::Ordering::Relaxed)
        }));
        let stats = session
            .sudo_put(&file, dest.to_str().unwrap(), &Become::root(), &options)
            .await
            .unwrap();
        assert_eq!(stats.bytes, data.len() as u64);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::Relaxed),
            data.len() as u64
        );
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert_eq!(fs::metadata(&dest).unwrap().uid(), 0);
        let back = local.path().join("back.bin");
        let stats = session
            .sudo_get(dest.to_str().unwrap(), &back, &Become::root(), &options)
            .await
            .unwrap();
        assert_eq!(stats.bytes, data.len() as u64);
        assert_eq!(fs::read(&back).unwrap(), data);
        // A local disk that fills up (a 1 MiB tmpfs; the file is 5 MB): the error says
        // so, the run ends, and no temporary file stays.
        let small = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(small.path()));
        let full = session
            .sudo_get(
                dest.to_str().unwrap(),
                small.path().join("back.bin"),
                &Become::root(),
                &TransferOptions::new(),
            )
            .await;
        let left: Vec<_> = fs::read_dir(small.path()).unwrap().collect();
        let _ = Command::new("umount").arg(small.path()).status();
        let e = full.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSpace, "{e:#}");
        assert!(e.to_string().contains("cannot write"), "{e:#}");
        assert!(left.is_empty(), "left behind: {left:?}");
        // Directories are refused: single files only.
        let e = session
            .sudo_put(
                local.path(),
                dest.to_str().unwrap(),
                &Become::root(),
                &options,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:#}");
        let e = session
            .sudo_get(
                sshd.dir.path().to_str().unwrap(),
                local.path(),
                &Become::root(),
                &options,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:#}");
    });
}

#[test]
fn recursive_transfers_and_pty_are_refused_with_become_before_connecting() {
    let local = tempfile::tempdir().unwrap();
    let out = rexec(&[
        "-H",
        "127.0.0.1:1",
        "--become",
        "put",
        "-r",
        local.path().to_str().unwrap(),
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("put -r with --become is not supported"));
    let file = local.path().join("f");
    fs::write(&file, "x").unwrap();
    let out = rexec(&[
        "-H",
        "127.0.0.1:1",
        "--become",
        "put",
        "--inplace",
        file.to_str().unwrap(),
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--inplace does not apply with --become"));
    let out = rexec(&["-H", "127.0.0.1:1", "--become", "--pty", "id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--pty cannot be combined with --become"));
}

/// Ctrl-C on the command line stops a command run as root through sudo (the password
/// asked again by the reaper's sudo): nothing is left running, and while it ran the
/// password was in no process's command line.
#[test]
fn ctrl_c_stops_a_command_run_through_sudo_and_the_password_is_never_in_argv() {
    let _sudoers = Sudoers::new("ctrl-c", &with_password());
    let sshd = Sshd::start();
    let password = harness::setup();
    let marker = format!("sleep {}.75", 5000 + harness::random_u64() % 999);
    let mut all = host_args(&sshd, TEST_USER);
    all.extend(
        ["--become", "--become-pass-env", "BECOME_PW", "--json"]
            .iter()
            .map(|s| s.to_string()),
    );
    all.push(format!("echo started; {marker} & {marker}"));
    let child = rexec_command(&all.iter().map(String::as_str).collect::<Vec<_>>())
        .env("BECOME_PW", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let as_root = || {
        let out = Command::new("pgrep")
            .args(["-u", "0", "-f", &format!("^{marker}$")])
            .output()
            .unwrap();
        text(&out.stdout).lines().count()
    };
    assert!(
        eventually(Duration::from_secs(20), || as_root() == 2),
        "the command never ran as root"
    );
    let with_password = Command::new("pgrep")
        .args(["-a", "-f", password])
        .output()
        .unwrap();
    assert!(
        !with_password.status.success(),
        "the password is in a command line: {}",
        text(&with_password.stdout)
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let host = json_host(&out);
    assert_eq!(host["outcome"], "interrupted", "{host}");
    assert_eq!(host["stdout"], "started\n", "{host}");
    let left = || {
        let out = Command::new("pgrep")
            .args(["-a", "-f", &format!("^{marker}$")])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert!(
        eventually(Duration::from_secs(10), || left().is_empty()),
        "left running: {}",
        left()
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains(password) && !all.contains("sudo via rexec"),
        "{all}"
    );
}

/// Neither `Debug` of a command run through sudo nor of its `Become` shows the password.
#[test]
fn debug_output_never_shows_the_become_password() {
    let sshd = Sshd::start();
    let secret = "debug-secret-4711";
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let mut cmd = session.raw_command("id");
        cmd.become_user("postgres")
            .become_password(Secret::new(secret));
        let shown = format!("{cmd:?} {:?}", Become::root().password(Secret::new(secret)));
        assert!(!shown.contains(secret), "{shown}");
        assert!(
            shown.contains("postgres") && shown.contains("<redacted>"),
            "{shown}"
        );
    });
}

/// Cancelling an upload through sudo half-way leaves the destination as it was and no
/// temporary file behind (the script removes it when stopped).
#[test]
fn a_cancelled_upload_through_sudo_leaves_the_destination_and_no_temporary_file() {
    let _sudoers = Sudoers::new("put-cancel", &with_password());
    let sshd = Sshd::start();
    let dest_dir = sshd.dir.path().join("conf");
    fs::create_dir(&dest_dir).unwrap();
    let dest = dest_dir.join("big.bin");
    fs::write(&dest, "old\n").unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("big.bin");
    let f = fs::File::create(&file).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    runtime().block_on(async {
        let session = Session::connect(&sshd.options()).await.unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let cancel = token.clone();
        let mut options = TransferOptions::new();
        options = options
            .cancel_on(token)
            .progress(std::sync::Arc::new(move |done, _| {
                if done >= 1 << 20 {
                    cancel.cancel();
                }
            }));
        let e = session
            .sudo_put(
                &file,
                dest.to_str().unwrap(),
                &Become::root().password(Sshd::password()),
                &options,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Interrupted, "{e:#}");
    });
    assert_eq!(fs::read_to_string(&dest).unwrap(), "old\n");
    let names: Vec<String> = fs::read_dir(&dest_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["big.bin".to_owned()], "temporary files left");
}

/// `put --mode` sets the uploaded file's permission bits, through sudo and without it.
#[test]
fn put_mode_sets_the_permission_bits() {
    let _sudoers = Sudoers::new("put-mode", &without_password());
    let sshd = Sshd::start();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("f.txt");
    fs::write(&local, "x\n").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o644)).unwrap();
    let args = host_args(&sshd, TEST_USER);
    let root_dest = sshd.dir.path().join("as-root.txt");
    let out = rexec_with(
        &args,
        &[
            "--become",
            "put",
            "--mode",
            "0600",
            local.to_str().unwrap(),
            root_dest.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(owner_and_mode(&root_dest), (0, 0o600));
    // Without sudo, into a directory the login user owns.
    let own = sshd.dir.path().join("own");
    fs::create_dir(&own).unwrap();
    run(Command::new("chown").arg(TEST_USER).arg(&own));
    let out = rexec_with(
        &args,
        &[
            "put",
            "--mode",
            "640",
            local.to_str().unwrap(),
            own.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let uid: u32 = run(Command::new("id").args(["-u", TEST_USER]))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(owner_and_mode(&own.join("f.txt")), (uid, 0o640));
    // Not octal: a usage error before connecting.
    let out = rexec(&["-H", "127.0.0.1:1", "put", "--mode", "0689", "a", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not an octal file mode"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn requiretty_is_named() {
    let _sudoers = Sudoers::new(
        "requiretty",
        &format!("Defaults:{TEST_USER} requiretty\n{}", without_password()),
    );
    let sshd = Sshd::start();
    let out = rexec_with(
        &host_args(&sshd, TEST_USER),
        &["--become", "--json", "id -u"],
        &[],
    );
    let host = json_host(&out);
    assert_eq!(host["outcome"], "become-failed", "{host}");
    assert_eq!(
        host["error"]["message"],
        "sudo: this host's sudoers requires a tty (requiretty) and rexec runs sudo without \
         one; the command did not run"
    );
}

/// Bad `become_user` / `become_password_env` values are usage errors naming the file and
/// line, before anything connects.
#[test]
fn bad_become_settings_in_the_inventory_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.toml");
    for (line, what) in [
        ("become_user = \"-x\"", "begins with '-'"),
        ("become_user = \"a b\"", "become_user"),
        (
            "become_password_env = \"NOT-A-NAME\"",
            "is not an environment variable name",
        ),
        ("become = \"yes\"", "expected a boolean"),
    ] {
        fs::write(
            &inventory,
            format!("[hosts]\nh1 = {{}}\n\n[defaults]\n{line}\n"),
        )
        .unwrap();
        let out = rexec(&["-i", inventory.to_str().unwrap(), "true"]);
        assert_eq!(out.status.code(), Some(2), "{line}");
        let err = text(&out.stderr);
        assert!(err.contains("hosts.toml:5"), "{line}: {err}");
        assert!(err.contains(what), "{line}: {err}");
    }
    // An unset password variable is named once, before connecting.
    let out = rexec_command(&[
        "-H",
        "127.0.0.1:1",
        "-b",
        "--become-pass-env",
        "REXEC_NO_SUCH_VAR",
        "true",
    ])
    .env_remove("REXEC_NO_SUCH_VAR")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: --become-pass-env REXEC_NO_SUCH_VAR: the environment variable \
         REXEC_NO_SUCH_VAR is not set (or not UTF-8)\n"
    );
    // On the command line too.
    let out = rexec(&["-H", "h1", "--become-user", "a b", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid become user \"a b\""),
        "{}",
        text(&out.stderr)
    );
}
