//! SFTP when things are not as they should be: a destination directory rexec may not
//! write (and in-place mode), transfers cancelled mid-way, a server without the SFTP
//! subsystem, a login shell that prints text. All against a real sshd.

use crate::harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{Sshd, SshdConfig};
use rexec::{ErrorKind, Session, TransferOptions};
use tokio_util::sync::CancellationToken;

/// A hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

async fn connect(sshd: &Sshd) -> Session {
    Session::connect(&sshd.options()).await.unwrap()
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rexec-"))
        .collect()
}

/// A root-owned directory (the test user may not create files in it) holding `conf`, a
/// file the test user owns and may write.
fn locked_dir_with_writable_file(sshd: &Sshd) -> (PathBuf, PathBuf) {
    let locked = sshd.dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = locked.join("conf");
    fs::write(&conf, "old contents").unwrap();
    harness::run(
        Command::new("chown")
            .arg(format!("{}:", harness::TEST_USER))
            .arg(&conf),
    );
    (locked, conf)
}

#[tokio::test]
async fn an_unwritable_directory_is_named_and_in_place_mode_writes_the_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let (locked, conf) = locked_dir_with_writable_file(&sshd);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("conf");
    fs::write(&local, "new contents").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o640)).unwrap();
    let dest = conf.to_str().unwrap();
    let inode = fs::metadata(&conf).unwrap().ino();

    let err = sftp.put(&local, dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: cannot create a temporary file in {} (directory not writable); rexec \
             writes to a temporary file and renames it over the destination so that an \
             interrupted transfer never leaves a partial file; use --inplace to write the \
             destination directly",
            sshd.port,
            locked.display()
        )
    );
    assert_eq!(fs::read(&conf).unwrap(), b"old contents");

    let mut in_place = TransferOptions::new();
    in_place = in_place.in_place(true);
    let stats = sftp.put_with(&local, dest, &in_place).await.unwrap();
    assert_eq!(stats.bytes, 12);
    assert_eq!(fs::read(&conf).unwrap(), b"new contents");
    let m = fs::metadata(&conf).unwrap();
    // Written in place: the same file, mode from the source.
    assert_eq!((m.ino(), m.mode() & 0o7777), (inode, 0o640));
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 1);

    // A shorter source truncates; a new file in a writable directory is created.
    fs::write(&local, "short").unwrap();
    sftp.put_with(&local, dest, &in_place).await.unwrap();
    assert_eq!(fs::read(&conf).unwrap(), b"short");
    let up = sshd.user_dir("up");
    let fresh = format!("{}/fresh", up.display());
    sftp.put_with(&local, &fresh, &in_place).await.unwrap();
    assert_eq!(fs::read(&fresh).unwrap(), b"short");

    // A symbolic link at the destination is not written through.
    std::os::unix::fs::symlink(&fresh, up.join("link")).unwrap();
    let err = sftp
        .put_with(&local, &format!("{}/link", up.display()), &in_place)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("is a symbolic link"), "{err}");

    // Neither the directory nor a missing file is writable: the plain error.
    let err = sftp
        .put(&local, &format!("{}/missing", locked.display()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("cannot write"), "{err}");
}

/// `chattr +i` on a directory: even root cannot create files in it, while files already
/// in it stay writable. Cleared on drop.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        harness::run(Command::new("chattr").arg("+i").arg(dir));
        Immutable(dir.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_local_directory_that_refuses_new_files_is_named_and_in_place_mode_writes_the_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let remote = sshd.write_file("remote", b"fresh remote contents");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let local = dir.join("copy");
    fs::write(&local, "old").unwrap();
    let inode = fs::metadata(&local).unwrap().ino();
    let _immutable = Immutable::set(&dir);

    let err = sftp
        .get(remote.to_str().unwrap(), &local)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.to_string().contains(&format!(
            "cannot create a temporary file in local {} (directory not writable)",
            dir.display()
        )),
        "{err}"
    );
    assert!(err.to_string().contains("use --inplace"), "{err}");
    assert_eq!(fs::read(&local).unwrap(), b"old");

    let mut in_place = TransferOptions::new();
    in_place = in_place.in_place(true);
    sftp.get_with(remote.to_str().unwrap(), &local, &in_place)
        .await
        .unwrap();
    assert_eq!(fs::read(&local).unwrap(), b"fresh remote contents");
    assert_eq!(fs::metadata(&local).unwrap().ino(), inode);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

    // A local symbolic link at the destination is not written through.
    let target = work.path().join("target");
    fs::write(&target, "target").unwrap();
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = sftp
        .get_with(remote.to_str().unwrap(), &link, &in_place)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"target");
}

/// A 200 MB sparse file: reads fast, costs no disk.
fn sparse(path: &Path, len: u64) {
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// Cancels `token` once `after` bytes have moved.
fn cancel_after(
    options: &mut TransferOptions,
    token: &CancellationToken,
    after: u64,
) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let t = token.clone();
    *options = std::mem::take(options).cancel_on(token.clone());
    *options = std::mem::take(options).progress(Arc::new(move |done, _| {
        if done > after && !f.swap(true, Ordering::SeqCst) {
            t.cancel();
        }
    }));
    fired
}

/// Issue: after Ctrl-C the upload kept sending and an 85 MB `.NAME.rexec-*.tmp` stayed on
/// the server.
#[tokio::test]
async fn a_cancelled_upload_stops_and_removes_its_temporary_file_before_returning() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let remote = format!("{}/big", up.display());
    sftp.write(&remote, b"the old contents").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    sparse(&local, 200_000_000);
    let token = CancellationToken::new();
    let mut options = TransferOptions::new();
    let fired = cancel_after(&mut options, &token, 20_000_000);
    let err = tokio::time::timeout(GUARD, sftp.put_with(&local, &remote, &options))
        .await
        .expect("the cancelled upload did not return")
        .unwrap_err();
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "interrupted: the upload of {remote} stopped after "
        )),
        "{err}"
    );
    assert!(!err.to_string().contains("could not be removed"), "{err}");
    // Already gone when the call returned.
    assert_eq!(temp_files(&up), Vec::<String>::new());
    assert_eq!(fs::read(&remote).unwrap(), b"the old contents");
    // The session is still usable.
    assert_eq!(sftp.read(&remote).await.unwrap(), b"the old contents");

    // A tree: cancelled between files as well, the finished files stay.
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a-small"), "a").unwrap();
    sparse(&tree.join("b-big"), 200_000_000);
    sparse(&tree.join("c-big"), 200_000_000);
    let token = CancellationToken::new();
    let mut options = TransferOptions::new();
    options = options.recursive(true);
    cancel_after(&mut options, &token, 20_000_000);
    let copy = up.join("copy");
    let err = tokio::time::timeout(
        GUARD,
        sftp.put_with(&tree, copy.to_str().unwrap(), &options),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(err.to_string().contains("b-big"), "{err}");
    assert_eq!(temp_files(&copy), Vec::<String>::new());
    assert_eq!(fs::read(copy.join("a-small")).unwrap(), b"a");
    assert!(!copy.join("b-big").exists() && !copy.join("c-big").exists());
}

/// When the temporary file cannot be removed (here the connection is cut at the moment
/// of cancelling), the error names it.
#[tokio::test]
async fn a_temporary_file_that_cannot_be_removed_is_named() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let remote = format!("{}/big", up.display());
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    sparse(&local, 200_000_000);
    let token = CancellationToken::new();
    let mut options = TransferOptions::new();
    options = options.cancel_on(token.clone());
    let sshd_pid = sshd.pid();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    options = options.progress(Arc::new(move |done, _| {
        if done > 20_000_000 && !f.swap(true, Ordering::SeqCst) {
            // This server's per-connection processes: the connection is gone.
            for pid in harness::descendants(sshd_pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            token.cancel();
        }
    }));
    let err = tokio::time::timeout(GUARD, sftp.put_with(&local, &remote, &options))
        .await
        .unwrap()
        .unwrap_err();
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    let left = temp_files(&up);
    assert_eq!(left.len(), 1, "{left:?}");
    let temp = format!("{}/{}", up.display(), left[0]);
    assert!(
        err.to_string().ends_with(&format!(
            "; the temporary file {temp} could not be removed and remains on the server"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_cancelled_in_place_upload_names_the_incomplete_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let remote = format!("{}/big", up.display());
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    sparse(&local, 200_000_000);
    let token = CancellationToken::new();
    let mut options = TransferOptions::new();
    options = options.in_place(true);
    cancel_after(&mut options, &token, 20_000_000);
    let err = tokio::time::timeout(GUARD, sftp.put_with(&local, &remote, &options))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "{remote} was written in place and is now incomplete"
        )),
        "{err}"
    );
    let len = fs::metadata(&remote).unwrap().len();
    assert!(len < 200_000_000, "{len}");
}

#[tokio::test]
async fn a_cancelled_download_stops_and_removes_its_temporary_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let remote_dir = sshd.user_dir("remote");
    let remote = remote_dir.join("big");
    sparse(&remote, 200_000_000);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    fs::write(&local, "old local contents").unwrap();
    let token = CancellationToken::new();
    let mut options = TransferOptions::new();
    let fired = cancel_after(&mut options, &token, 20_000_000);
    let err = tokio::time::timeout(
        GUARD,
        sftp.get_with(remote.to_str().unwrap(), &local, &options),
    )
    .await
    .expect("the cancelled download did not return")
    .unwrap_err();
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "interrupted: the download of {} stopped after ",
            remote.display()
        )),
        "{err}"
    );
    assert_eq!(temp_files(work.path()), Vec::<String>::new());
    assert_eq!(temp_files(&remote_dir), Vec::<String>::new());
    assert_eq!(fs::read(&local).unwrap(), b"old local contents");
    assert_eq!(
        sftp.stat(remote.to_str().unwrap()).await.unwrap().size,
        200_000_000
    );
}

/// Issue: without `Subsystem sftp` the server refuses at once, but rexec waited 60 s and,
/// with `-t 5`, called it `timed-out`.
#[tokio::test]
async fn a_server_without_sftp_is_reported_at_once() {
    let sshd = Sshd::start_with(SshdConfig {
        sftp_subsystem: false,
        ..SshdConfig::default()
    });
    let s = connect(&sshd).await;
    // Well under russh-sftp's 60 s request timeout, which the old code waited for.
    let err = tokio::time::timeout(Duration::from_secs(20), s.sftp())
        .await
        .expect("waited for the refused subsystem")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Channel, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: the server refused the sftp subsystem (no Subsystem sftp in \
             sshd_config?)",
            sshd.port
        )
    );
    assert!(s.raw_command("true").status().await.unwrap().success());
}

const CHATTY_USER: &str = "rexec-chatty";

/// A user whose login shell is bash and whose `~/.bashrc` prints `hello` even for
/// non-interactive sessions (Debian's bash reads it for commands run by sshd). Home in a
/// temporary directory; the user is deleted on drop.
struct ChattyUser {
    _dir: tempfile::TempDir,
}

impl ChattyUser {
    fn create() -> ChattyUser {
        harness::setup();
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::write(home.join(".bashrc"), "echo hello\n").unwrap();
        // Left over from an interrupted run.
        let _ = Command::new("userdel").arg(CHATTY_USER).output();
        let mut created = false;
        for _ in 0..20 {
            let out = Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--shell",
                    "/bin/bash",
                    "--password",
                    "*",
                ])
                .arg("--home-dir")
                .arg(&home)
                .arg(CHATTY_USER)
                .output()
                .unwrap();
            if out.status.success() {
                created = true;
                break;
            }
            // Another process holds the password file's lock.
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(created, "useradd {CHATTY_USER} failed");
        harness::run(Command::new("chown").args(["-R", CHATTY_USER]).arg(&home));
        ChattyUser { _dir: dir }
    }
}

impl Drop for ChattyUser {
    fn drop(&mut self) {
        // userdel refuses while the user's sessions are still closing: wait for them.
        let deleted = harness::eventually(Duration::from_secs(20), || {
            Command::new("userdel")
                .arg(CHATTY_USER)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !deleted {
            let _ = Command::new("userdel")
                .args(["--force", CHATTY_USER])
                .output();
        }
    }
}

/// Issue: a login shell that prints text breaks SFTP, and rexec said "no sftp
/// subsystem?". The error now says what happened and quotes what came.
// Multi-threaded: the sessions' background tasks close their connections while the
// user's removal waits for them (on drop, which blocks its thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_shell_that_prints_text_is_named_as_the_cause() {
    let _user = ChattyUser::create();
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec![format!("AllowUsers {} {CHATTY_USER}", harness::TEST_USER)],
        ..SshdConfig::default()
    });
    let s = Session::connect(&sshd.options().user(CHATTY_USER))
        .await
        .unwrap();
    // The shell really prints for commands: what sftp-server's start meets.
    let out = s.raw_command("true").output().await.unwrap();
    assert_eq!(out.stdout, b"hello\n");
    let err = tokio::time::timeout(Duration::from_secs(20), s.sftp())
        .await
        .expect("waited for the broken start")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Channel, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: the server's login shell printed text before the SFTP protocol \
             started: make the shell's start-up files print nothing for non-interactive \
             sessions (received \"hello\\n\")",
            sshd.port
        )
    );
    // The test user, whose shell prints nothing, is fine on the same server.
    let fine = Session::connect(&sshd.options()).await.unwrap();
    assert!(fine.sftp().await.is_ok());
    drop(s);
}
