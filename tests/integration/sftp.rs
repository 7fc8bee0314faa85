//! SFTP put and get against a real sshd: sizes around chunk boundaries and large files
//! checked by hash, trees with empty folders and symlinks, modes and times, errors, and
//! transfers cut off mid-way that leave the destination as it was.

use crate::harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use harness::Sshd;
use rexec::{ErrorKind, Session, TransferOptions};
use sha2::{Digest, Sha256};

async fn connect(sshd: &Sshd) -> Session {
    Session::connect(&sshd.options()).await.unwrap()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(path: &Path) -> Vec<u8> {
    let mut h = Sha256::new();
    let mut f = fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_vec()
}

fn no_temp_files(dir: &Path) -> bool {
    fs::read_dir(dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".rexec-"))
}

#[tokio::test]
async fn files_of_every_size_round_trip_exactly() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let down = tempfile::tempdir().unwrap();
    for (i, size) in [0usize, 1, 32767, 32768, 32769, 10_000_000]
        .into_iter()
        .enumerate()
    {
        let local = down.path().join(format!("src{i}"));
        fs::write(&local, pattern(size, i as u64 + 7)).unwrap();
        let remote = format!("{}/file{i}", up.display());
        let stats = sftp.put(&local, &remote).await.unwrap();
        assert_eq!((stats.files, stats.bytes), (1, size as u64));
        assert_eq!(
            sha(Path::new(&remote)),
            sha(&local),
            "upload of {size} bytes"
        );
        let back = down.path().join(format!("back{i}"));
        let stats = sftp.get(&remote, &back).await.unwrap();
        assert_eq!(stats.bytes, size as u64);
        assert_eq!(sha(&back), sha(&local), "download of {size} bytes");
    }
    assert!(no_temp_files(&up) && no_temp_files(down.path()));
}

#[tokio::test]
async fn two_hundred_megabytes_up_and_down() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(fs::File::create(&local).unwrap());
        for i in 0..200 {
            f.write_all(&pattern(1_000_000, i)).unwrap();
        }
    }
    let seen = Arc::new(std::sync::Mutex::new((0u64, 0u64, 0usize)));
    let mut options = TransferOptions::new();
    let s2 = seen.clone();
    options = options.progress(Arc::new(move |done, total| {
        let mut g = s2.lock().unwrap();
        assert!(done >= g.0, "progress went backwards");
        *g = (done, total, g.2 + 1);
    }));
    let remote = format!("{}/big", up.display());
    sftp.put_with(&local, &remote, &options).await.unwrap();
    let (done, total, calls) = *seen.lock().unwrap();
    assert_eq!((done, total), (200_000_000, 200_000_000));
    assert!(calls > 100, "progress reported only {calls} times");
    assert!(no_temp_files(&up));
    assert_eq!(sha(Path::new(&remote)), sha(&local));
    let back = work.path().join("back");
    sftp.get(&remote, &back).await.unwrap();
    assert_eq!(sha(&back), sha(&local));
}

#[tokio::test]
async fn mode_and_modification_time_are_kept() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("script.sh");
    fs::write(&local, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o751)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    fs::File::options()
        .write(true)
        .open(&local)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let remote = format!("{}/script.sh", up.display());
    sftp.put(&local, &remote).await.unwrap();
    let m = fs::metadata(&remote).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o751, 1_500_000_000));
    let st = sftp.stat(&remote).await.unwrap();
    assert_eq!((st.mode, st.mtime, st.size), (0o751, 1_500_000_000, 18));
    let back = work.path().join("back.sh");
    sftp.get(&remote, &back).await.unwrap();
    let m = fs::metadata(&back).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o751, 1_500_000_000));
    // Without preserve: 0644 and now.
    let mut plain = TransferOptions::new();
    plain = plain.preserve(false);
    let remote2 = format!("{}/plain.sh", up.display());
    sftp.put_with(&local, &remote2, &plain).await.unwrap();
    let m = fs::metadata(&remote2).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o644);
    assert!(m.mtime() > 1_500_000_000);
}

#[tokio::test]
async fn an_existing_destination_is_replaced_atomically_and_directories_receive_files() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("conf");
    fs::write(&local, "new").unwrap();
    let remote = format!("{}/conf", up.display());
    sftp.write(&remote, b"old").await.unwrap();
    let inode_before = fs::metadata(&remote).unwrap().ino();
    sftp.put(&local, &remote).await.unwrap();
    assert_eq!(fs::read(&remote).unwrap(), b"new");
    // Replaced by rename: a new inode, never a half-written old one.
    assert_ne!(fs::metadata(&remote).unwrap().ino(), inode_before);
    // Into an existing directory: under the local name.
    sftp.put(&local, &up.display().to_string()).await.unwrap();
    assert_eq!(
        sftp.read(&format!("{}/conf", up.display())).await.unwrap(),
        b"new"
    );
    sftp.get(&remote, work.path().join("sub").as_path())
        .await
        .unwrap();
    fs::create_dir(work.path().join("into")).unwrap();
    sftp.get(&remote, work.path().join("into")).await.unwrap();
    assert_eq!(fs::read(work.path().join("into/conf")).unwrap(), b"new");
}

fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("top.txt"), "top").unwrap();
    fs::write(root.join("a/one.bin"), pattern(100_000, 3)).unwrap();
    fs::write(root.join("a/b/c/deep.txt"), "deep").unwrap();
    fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("a/outside")).unwrap();
}

fn assert_same_tree(want: &Path, got: &Path) {
    for rel in ["top.txt", "a/one.bin", "a/b/c/deep.txt"] {
        assert_eq!(
            fs::read(want.join(rel)).unwrap(),
            fs::read(got.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(got.join("empty").is_dir());
    assert_eq!(fs::read_dir(got.join("empty")).unwrap().count(), 0);
    assert_eq!(fs::metadata(got.join("a/b")).unwrap().mode() & 0o777, 0o750);
    // Symlinks are recreated as links with the same target, not followed.
    assert!(fs::symlink_metadata(got.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(got.join("link")).unwrap(),
        Path::new("a/b/c/deep.txt")
    );
    assert_eq!(
        fs::read_link(got.join("a/outside")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[tokio::test]
async fn directory_trees_round_trip_with_empty_folders_and_symlinks() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    build_tree(&tree);
    let mut rec = TransferOptions::new();
    rec = rec.recursive(true);
    let remote = format!("{}/copy", up.display());
    let stats = sftp.put_with(&tree, &remote, &rec).await.unwrap();
    assert_eq!((stats.files, stats.symlinks, stats.dirs), (3, 2, 5));
    assert_same_tree(&tree, Path::new(&remote));
    let back = work.path().join("back");
    let stats = sftp.get_with(&remote, &back, &rec).await.unwrap();
    assert_eq!((stats.files, stats.symlinks, stats.dirs), (3, 2, 5));
    assert_same_tree(&tree, &back);
    // Without recursive: a clear error, nothing sent.
    let err = sftp
        .put(&tree, &format!("{}/nope", up.display()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!up.join("nope").exists());
    let err = sftp
        .get(&remote, work.path().join("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn missing_files_and_denied_directories_are_named() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = sftp
        .get("/no/such/file", work.path().join("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: stat /no/such/file: no such file or directory",
            sshd.port
        )
    );
    assert!(!work.path().join("x").exists());
    // A directory the test user may not write to (owned by root, 0755).
    let locked = sshd.dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    let local = work.path().join("f");
    fs::write(&local, "data").unwrap();
    let dest = format!("{}/f", locked.display());
    let err = sftp.put(&local, &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("cannot write {dest}: permission denied")),
        "{err}"
    );
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 0);
    // A local file that does not exist: an error before anything is sent.
    let err = sftp
        .put(work.path().join("absent"), &dest)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn the_small_operations_a_script_needs() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let d = format!("{}/d", up.display());
    sftp.create_dir(&d, 0o700).await.unwrap();
    sftp.write(&format!("{d}/a"), b"alpha").await.unwrap();
    sftp.write(&format!("{d}/b"), b"beta").await.unwrap();
    let mut names: Vec<String> = sftp
        .read_dir(&d)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    sftp.rename(&format!("{d}/a"), &format!("{d}/b"))
        .await
        .unwrap();
    assert_eq!(sftp.read(&format!("{d}/b")).await.unwrap(), b"alpha");
    assert_eq!(
        sftp.stat(&format!("{d}/a")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    sftp.remove_file(&format!("{d}/b")).await.unwrap();
    sftp.remove_dir(&d).await.unwrap();
    assert!(!Path::new(&d).exists());
}

#[tokio::test]
async fn an_upload_cut_off_midway_leaves_the_old_file_and_no_temp_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let remote = format!("{}/data", up.display());
    sftp.write(&remote, b"the old contents").await.unwrap();
    let before = fs::read(&remote).unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("new");
    fs::write(&local, pattern(100_000_000, 9)).unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let k = killed.clone();
    let mut options = TransferOptions::new();
    let sshd_pid = sshd.pid();
    options = options.progress(Arc::new(move |done, _| {
        if done > 20_000_000 && !k.swap(true, Ordering::SeqCst) {
            kill_sftp_server_under(sshd_pid);
        }
    }));
    let err = sftp.put_with(&local, &remote, &options).await.unwrap_err();
    assert!(killed.load(Ordering::SeqCst));
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(err.to_string().contains("connection lost after"), "{err}");
    assert_eq!(fs::read(&remote).unwrap(), before, "the old file changed");
    assert!(
        no_temp_files(&up),
        "temp file left: {:?}",
        fs::read_dir(&up)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    // The connection itself is fine.
    assert!(s.raw_command("true").status().await.unwrap().success());
}

#[tokio::test]
async fn a_download_cut_off_midway_leaves_the_old_local_file() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let big = sshd.write_file("big", &pattern(100_000_000, 5));
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big");
    fs::write(&local, "old local contents").unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let k = killed.clone();
    let sshd_pid = sshd.pid();
    let mut options = TransferOptions::new();
    options = options.progress(Arc::new(move |done, _| {
        if done > 20_000_000 && !k.swap(true, Ordering::SeqCst) {
            kill_sftp_server_under(sshd_pid);
        }
    }));
    let err = sftp
        .get_with(big.to_str().unwrap(), &local, &options)
        .await
        .unwrap_err();
    assert!(killed.load(Ordering::SeqCst));
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert_eq!(fs::read(&local).unwrap(), b"old local contents");
    assert!(no_temp_files(work.path()));
}

/// Kills the sftp-server process serving this server's transfer (and only this one).
fn kill_sftp_server_under(sshd_pid: u32) {
    assert!(harness::kill_children_named(sshd_pid, "sftp-server") > 0);
}

/// A 1 MiB tmpfs, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        harness::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs"])
                .arg(dir.path()),
        );
        SmallFs { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_as_no_space_and_leaves_nothing_behind() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    fs::write(&big, pattern(3_000_000, 11)).unwrap();

    // Remote side full.
    let full = SmallFs::mount();
    let dest = format!("{}/big", full.dir.path().display());
    sftp.write(&dest, b"old").await.unwrap();
    let err = sftp.put(&big, &dest).await.unwrap_err();
    assert_eq!(err.kind(), rexec::ErrorKind::NoSpace, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("no space left on the device for {dest}")),
        "{err}"
    );
    assert_eq!(fs::read(&dest).unwrap(), b"old");
    assert!(no_temp_files(full.dir.path()));

    // Local side full.
    let remote = sshd.write_file("remote-big", &pattern(3_000_000, 12));
    let local_full = SmallFs::mount();
    let local = local_full.dir.path().join("copy");
    fs::write(&local, "old").unwrap();
    let err = sftp
        .get(remote.to_str().unwrap(), &local)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), rexec::ErrorKind::NoSpace, "{err}");
    assert_eq!(fs::read(&local).unwrap(), b"old");
    assert!(no_temp_files(local_full.dir.path()));
}

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes)
}

fn names_in(dir: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names: Vec<Vec<u8>> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    names
}

/// Issue: `put -r` of `caf\xe9.txt` and `caf\xe8.txt` reported "2 files" and left one
/// renamed file (both names became `caf\u{fffd}.txt`); `get -r` copied nothing.
#[tokio::test]
async fn names_that_are_not_utf8_are_refused_before_anything_is_written() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let mut rec = TransferOptions::new();
    rec = rec.recursive(true);

    // put -r: the whole local tree is scanned first; nothing reaches the server.
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("ok.txt"), "ok").unwrap();
    fs::write(tree.join(os(b"caf\xe9.txt")), "latin-1 e acute").unwrap();
    fs::write(tree.join("sub").join(os(b"caf\xe8.txt")), "latin-1 e grave").unwrap();
    let remote = format!("{}/copy", up.display());
    let err = sftp.put_with(&tree, &remote, &rec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "2 names under {} are not valid UTF-8",
            tree.display()
        )),
        "{msg}"
    );
    assert!(msg.contains(r#"tree/caf\xE9.txt""#), "{msg}");
    assert!(msg.contains(r#"tree/sub/caf\xE8.txt""#), "{msg}");
    assert!(msg.contains("nothing was sent"), "{msg}");
    assert!(!Path::new(&remote).exists(), "something was written");
    assert_eq!(
        rexec::Sftp::check_local_source(&tree, &rec)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    // A link whose target is not UTF-8 is refused the same way.
    let links = work.path().join("links");
    fs::create_dir(&links).unwrap();
    std::os::unix::fs::symlink(os(b"/tmp/caf\xe9"), links.join("link")).unwrap();
    let err = sftp
        .put_with(&links, &format!("{}/links", up.display()), &rec)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(r#"the target of link ""#), "{err}");
    assert!(!up.join("links").exists());

    // A single file whose name would be used on the server (the destination is a
    // directory) is refused; given an explicit UTF-8 name it is sent.
    let latin = work.path().join(os(b"caf\xe9.txt"));
    fs::write(&latin, "data").unwrap();
    let err = sftp
        .put(&latin, &up.display().to_string())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("is not valid UTF-8"), "{err}");
    assert!(names_in(&up).is_empty(), "{:?}", names_in(&up));
    sftp.put(&latin, &format!("{}/explicit.txt", up.display()))
        .await
        .unwrap();
    assert_eq!(fs::read(up.join("explicit.txt")).unwrap(), b"data");

    // get -r: the server sends `caf\xe9.txt` and `caf\xe8.txt`, which russh-sftp turns
    // into the same `caf\u{fffd}.txt`; refused as not UTF-8 before anything is written.
    let remote_tree = sshd.user_dir("remote-tree");
    fs::write(remote_tree.join("ok.txt"), "ok").unwrap();
    fs::write(remote_tree.join(os(b"caf\xe9.txt")), "a").unwrap();
    fs::write(remote_tree.join(os(b"caf\xe8.txt")), "b").unwrap();
    let listed = sftp.read_dir(remote_tree.to_str().unwrap()).await.unwrap();
    assert!(
        listed.iter().any(|e| e.name == "caf\u{fffd}.txt"),
        "{listed:?}"
    );
    let back = work.path().join("back");
    let err = sftp
        .get_with(remote_tree.to_str().unwrap(), &back, &rec)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sftp, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "2 names under {} on the server are not valid UTF-8",
            remote_tree.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("caf\u{fffd}.txt"), "{msg}");
    assert!(msg.contains("nothing was copied"), "{msg}");
    assert!(!back.exists(), "something was written");
}

/// A name that really holds U+FFFD (valid UTF-8) is not mistaken for a mangled one.
#[tokio::test]
async fn a_name_really_holding_the_replacement_character_round_trips() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("caf\u{fffd}.txt"), "replacement").unwrap();
    fs::write(tree.join("café.txt"), "utf-8").unwrap();
    let mut rec = TransferOptions::new();
    rec = rec.recursive(true);
    let remote = format!("{}/copy", up.display());
    let stats = sftp.put_with(&tree, &remote, &rec).await.unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(names_in(Path::new(&remote)), names_in(&tree));
    let back = work.path().join("back");
    let stats = sftp.get_with(&remote, &back, &rec).await.unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(names_in(&back), names_in(&tree));
    assert_eq!(
        fs::read(back.join("caf\u{fffd}.txt")).unwrap(),
        b"replacement"
    );
}

fn mkfifo(path: &Path) {
    harness::run(std::process::Command::new("mkfifo").arg(path));
}

/// Issue: `put /dev/zero /tmp/x` streamed zeros until the deadline.
#[tokio::test]
async fn devices_and_fifos_are_refused_as_sources_and_skipped_in_trees() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let guard = std::time::Duration::from_secs(30);
    let dest = format!("{}/x", up.display());
    let err = tokio::time::timeout(guard, sftp.put("/dev/zero", &dest))
        .await
        .expect("put of /dev/zero did not stop")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("/dev/zero is a character device: put sends regular files and directories"),
        "{err}"
    );
    let fifo = work.path().join("fifo");
    mkfifo(&fifo);
    let err = tokio::time::timeout(guard, sftp.put(&fifo, &dest))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("is a FIFO"), "{err}");
    assert!(
        err.to_string().contains("no fixed content or size"),
        "{err}"
    );
    let socket = work.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = sftp.put(&socket, &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("is a socket"), "{err}");
    assert!(names_in(&up).is_empty());

    // Inside a tree: skipped, and counted in the result.
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a.txt"), "a").unwrap();
    mkfifo(&tree.join("pipe"));
    let mut rec = TransferOptions::new();
    rec = rec.recursive(true);
    let checked = rexec::Sftp::check_local_source(&tree, &rec).unwrap();
    assert_eq!((checked.files, checked.skipped, checked.bytes), (1, 1, 1));
    let stats = tokio::time::timeout(guard, sftp.put_with(&tree, &dest, &rec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stats.files, stats.skipped), (1, 1));
    assert_eq!(names_in(Path::new(&dest)), [b"a.txt".to_vec()]);

    // The other way: a remote FIFO is refused by get, skipped by get -r.
    let remote_tree = sshd.user_dir("remote-tree");
    fs::write(remote_tree.join("b.txt"), "b").unwrap();
    mkfifo(&remote_tree.join("pipe"));
    let remote_fifo = remote_tree.join("pipe");
    let err = tokio::time::timeout(
        guard,
        sftp.get(remote_fifo.to_str().unwrap(), work.path().join("got")),
    )
    .await
    .expect("get of a FIFO did not stop")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("is not a regular file or directory"),
        "{err}"
    );
    assert!(!work.path().join("got").exists());
    let back = work.path().join("back");
    let stats = tokio::time::timeout(
        guard,
        sftp.get_with(remote_tree.to_str().unwrap(), &back, &rec),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((stats.files, stats.skipped), (1, 1));
    assert_eq!(names_in(&back), [b"b.txt".to_vec()]);
}

/// Removes a file in the test user's home when dropped.
struct InHome(PathBuf);

impl Drop for InHome {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn test_user_home() -> PathBuf {
    let line =
        harness::run(std::process::Command::new("getent").args(["passwd", harness::TEST_USER]));
    PathBuf::from(line.trim().split(':').nth(5).unwrap())
}

/// Issue: `~/x` was "no such file or directory"; as with scp and sftp it is the login
/// directory.
#[tokio::test]
async fn tilde_is_the_login_directory() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let sftp = s.sftp().await.unwrap();
    let home = test_user_home();
    let name = format!("rexec-tilde-{:x}", harness::random_u64());
    let _cleanup = (
        InHome(home.join(&name)),
        InHome(home.join(format!("{name}.d"))),
    );
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join(&name);
    fs::write(&local, "tilde").unwrap();

    sftp.put(&local, &format!("~/{name}")).await.unwrap();
    assert_eq!(fs::read(home.join(&name)).unwrap(), b"tilde");
    assert_eq!(sftp.stat("~").await.unwrap().kind, rexec::RemoteKind::Dir);
    let listed = sftp.read_dir("~").await.unwrap();
    assert!(listed.iter().any(|e| e.name == name), "{listed:?}");
    let back = work.path().join("back");
    sftp.get(&format!("~/{name}"), &back).await.unwrap();
    assert_eq!(fs::read(&back).unwrap(), b"tilde");
    // Errors name the resolved path.
    let err = sftp.stat(&format!("~/{name}.missing")).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "stat {}/{name}.missing: no such file",
            home.display()
        )),
        "{err}"
    );
    // `~` alone as a destination directory: the file goes inside under its own name.
    sftp.remove_file(&format!("~/{name}")).await.unwrap();
    assert!(!home.join(&name).exists());
    sftp.put(&local, "~").await.unwrap();
    assert_eq!(fs::read(home.join(&name)).unwrap(), b"tilde");
    // A tree under `~/`.
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("t"), "t").unwrap();
    let mut rec = TransferOptions::new();
    rec = rec.recursive(true);
    sftp.put_with(&tree, &format!("~/{name}.d"), &rec)
        .await
        .unwrap();
    assert_eq!(fs::read(home.join(format!("{name}.d/t"))).unwrap(), b"t");
    // `~user` is not expanded (a name like any other).
    assert_eq!(
        sftp.stat("~nobody-such/x").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
