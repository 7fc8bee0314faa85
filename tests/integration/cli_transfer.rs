//! `rexec put` and `rexec get` as a user runs them, against a real sshd: what is refused
//! before connecting, special files in trees, in-place mode, `~/`, and Ctrl-C or a
//! deadline in the middle of an upload (through a throttling TCP proxy, so that the
//! upload is surely still running when the signal or the deadline comes).

use crate::harness;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{eventually, Sshd};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// rexec logging in to `sshd` (through `port`, which may be a proxy's) with the
/// harness's key, strict host key checking and no agent, then `args`.
fn rexec_command(sshd: &Sshd, port: u16, args: &[&str]) -> Command {
    let known_hosts = sshd.dir.path().join(format!("known_hosts-{port}"));
    std::fs::write(
        &known_hosts,
        sshd.known_hosts_lines()
            .replace(&format!("]:{} ", sshd.port), &format!("]:{port} ")),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rexec"));
    cmd.args(["-H", &format!("127.0.0.1:{port}"), "-u", harness::TEST_USER])
        .arg("-I")
        .arg(&sshd.user_key)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--no-agent")
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("REXEC_LOG")
        .stdin(Stdio::null());
    cmd
}

fn rexec(sshd: &Sshd, args: &[&str]) -> Output {
    rexec_command(sshd, sshd.port, args).output().unwrap()
}

/// The single host's JSON object.
fn json_result(out: &Output) -> Value {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v.get("host").is_some())
        .unwrap_or_else(|| panic!("no result: {}", text(&out.stderr)))
}

fn nothing_connected(sshd: &Sshd) -> bool {
    !sshd.log().contains("Connection from")
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rexec-"))
        .collect()
}

/// A read-only tmpfs, unmounted on drop.
struct ReadOnlyFs {
    dir: tempfile::TempDir,
}

impl ReadOnlyFs {
    fn mount() -> ReadOnlyFs {
        let dir = tempfile::tempdir().unwrap();
        harness::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
                .arg(dir.path()),
        );
        ReadOnlyFs { dir }
    }
}

impl Drop for ReadOnlyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Issue: `put /dev/zero /tmp/x` connected and streamed zeros until the deadline.
#[test]
fn local_problems_of_put_and_get_stop_before_connecting() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let expect_refused = |args: &[&str], wanted: &str| {
        let out = rexec(&sshd, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(wanted),
            "{args:?}: {}",
            text(&out.stderr)
        );
    };
    expect_refused(
        &["put", "/dev/zero", "/tmp/x"],
        "/dev/zero is a character device: put sends regular files and directories, and each \
         host reads the source on its own, while a device, FIFO or socket has no fixed content \
         or size",
    );
    let fifo = work.path().join("fifo");
    harness::run(Command::new("mkfifo").arg(&fifo));
    expect_refused(&["put", fifo.to_str().unwrap(), "/tmp/x"], "is a FIFO");
    // A name that is not UTF-8 anywhere in a tree.
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(
        tree.join("sub")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
        "x",
    )
    .unwrap();
    expect_refused(
        &["put", "-r", tree.to_str().unwrap(), "/tmp/x"],
        "1 name under",
    );
    expect_refused(
        &["put", "-r", tree.to_str().unwrap(), "/tmp/x"],
        r#"is not valid UTF-8: "#,
    );
    // get: LOCAL_DIR below a regular file, or on a read-only file system.
    let file = work.path().join("file");
    std::fs::write(&file, "").unwrap();
    let below_file = file.join("logs");
    expect_refused(
        &["get", "/etc/hostname", below_file.to_str().unwrap()],
        &format!(
            "cannot create {}: {} is not a directory",
            below_file.display(),
            file.display()
        ),
    );
    let ro = ReadOnlyFs::mount();
    let logs = ro.dir.path().join("logs");
    expect_refused(
        &["get", "/etc/hostname", logs.to_str().unwrap()],
        &format!(
            "cannot create {}: cannot write to {}: read-only file system",
            logs.display(),
            ro.dir.path().display()
        ),
    );
    expect_refused(
        &["get", "/etc/hostname", ro.dir.path().to_str().unwrap()],
        &format!("cannot write to {}", ro.dir.path().display()),
    );
    // With placeholders, each host's directory is checked.
    let template = format!("{}/{{{{name}}}}", ro.dir.path().display());
    expect_refused(&["get", "/etc/hostname", &template], "cannot write to");
    assert!(nothing_connected(&sshd), "something connected");
    assert_eq!(std::fs::read_dir(ro.dir.path()).unwrap().count(), 0);
}

#[test]
fn special_files_in_a_tree_are_skipped_and_reported() {
    let sshd = Sshd::start();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "a").unwrap();
    let fifo = tree.join("pipe");
    harness::run(Command::new("mkfifo").arg(&fifo));

    let dest = up.join("copy");
    let out = rexec(
        &sshd,
        &["put", "-r", tree.to_str().unwrap(), dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(": ok, 1 file, 1 B, 1 special file skipped in "),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("skipping special file {}", fifo.display())),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a");
    assert!(!dest.join("pipe").exists());

    let out = rexec(
        &sshd,
        &[
            "--json",
            "put",
            "-r",
            tree.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    let r = json_result(&out);
    assert_eq!(
        (r["outcome"].as_str(), r["files"].as_u64()),
        (Some("ok"), Some(1))
    );
    assert_eq!(r["skipped"], 1);
}

/// Removes a path in the test user's home when dropped.
struct InHome(PathBuf);

impl Drop for InHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn inplace_writes_where_the_directory_is_not_writable_and_tilde_is_home() {
    let sshd = Sshd::start();
    let locked = sshd.dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let conf = locked.join("app.conf");
    std::fs::write(&conf, "old").unwrap();
    harness::run(
        Command::new("chown")
            .arg(format!("{}:", harness::TEST_USER))
            .arg(&conf),
    );
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("app.conf");
    std::fs::write(&local, "new").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = rexec(
        &sshd,
        &["put", local.to_str().unwrap(), conf.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "cannot create a temporary file in {} (directory not writable); rexec writes to a \
             temporary file and renames it over the destination so that an interrupted \
             transfer never leaves a partial file; use --inplace to write the destination \
             directly",
            locked.display()
        )),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(&conf).unwrap(), b"old");
    let out = rexec(
        &sshd,
        &[
            "put",
            "--inplace",
            local.to_str().unwrap(),
            conf.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(&conf).unwrap(), b"new");
    // get --inplace as well (into a fresh local directory: a plain write).
    let fetched = work.path().join("fetched");
    let out = rexec(
        &sshd,
        &[
            "get",
            "--inplace",
            conf.to_str().unwrap(),
            fetched.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // The host's name in a -H list is what was written: address and port.
    let host = format!("127.0.0.1:{}", sshd.port);
    assert_eq!(
        std::fs::read(fetched.join(&host).join("app.conf")).unwrap(),
        b"new"
    );

    // `~/` is the login directory.
    let line = harness::run(Command::new("getent").args(["passwd", harness::TEST_USER]));
    let home = PathBuf::from(line.trim().split(':').nth(5).unwrap());
    let name = format!("rexec-cli-tilde-{:x}", harness::random_u64());
    let _cleanup = InHome(home.join(&name));
    let out = rexec(
        &sshd,
        &["put", local.to_str().unwrap(), &format!("~/{name}")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(home.join(&name)).unwrap(), b"new");
    let out = rexec(
        &sshd,
        &["get", &format!("~/{name}"), fetched.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        std::fs::read(fetched.join(host).join(&name)).unwrap(),
        b"new"
    );
}

/// A TCP proxy to `port` on 127.0.0.1 passing client-to-server bytes at `bytes_per_sec`
/// (and the other way unthrottled). Its threads end when the connection does; the
/// listener thread ends with the test process.
fn throttled_proxy(port: u16, bytes_per_sec: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pump(client, server, Some(bytes_per_sec)));
            std::thread::spawn(move || pump(server2, client2, None));
        }
    });
    proxy_port
}

fn pump(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buf = vec![0u8; 16 * 1024];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// A 200 MB sparse local file and the server directory it goes to.
fn big_upload(sshd: &Sshd) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    (work, big, sshd.user_dir("up"))
}

/// Issue: after Ctrl-C the upload kept sending for 3 s, rexec exited, and an 85 MB
/// `.NAME.rexec-*.tmp` stayed on the server, unmentioned.
#[test]
fn ctrl_c_stops_a_put_and_removes_its_temporary_file() {
    let sshd = Sshd::start();
    let (_work, big, up) = big_upload(&sshd);
    let proxy = throttled_proxy(sshd.port, 20_000_000);
    let dest = up.join("big");
    let child = rexec_command(
        &sshd,
        proxy,
        &[
            "--json",
            "put",
            big.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Mid-transfer: the temporary file is there and growing.
    let started = eventually(Duration::from_secs(30), || {
        std::fs::read_dir(&up).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name().to_string_lossy().contains(".rexec-")
                && e.metadata().is_ok_and(|m| m.len() > 2_000_000)
        })
    });
    assert!(started, "the upload did not start");
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let r = json_result(&out);
    assert_eq!(r["outcome"], "interrupted", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "interrupted: the upload of {} stopped after ",
            dest.display()
        )),
        "{message}"
    );
    assert!(!message.contains("could not be removed"), "{message}");
    // Removed before rexec exited.
    assert_eq!(temp_files(&up), Vec::<String>::new());
    assert!(!dest.exists());
}

#[test]
fn a_deadline_stops_a_put_and_removes_its_temporary_file() {
    let sshd = Sshd::start();
    let (_work, big, up) = big_upload(&sshd);
    let proxy = throttled_proxy(sshd.port, 20_000_000);
    let dest = up.join("big");
    let out = rexec_command(
        &sshd,
        proxy,
        &[
            "--json",
            "-t",
            "4s",
            "put",
            big.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let r = json_result(&out);
    assert_eq!(r["outcome"], "timed-out", "{r}");
    assert_eq!(r["error"]["kind"], "timeout");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "the transfer timed out after 4.00s: the upload of {} stopped after ",
            dest.display()
        )),
        "{message}"
    );
    assert_eq!(temp_files(&up), Vec::<String>::new());
    assert!(!dest.exists());
}
