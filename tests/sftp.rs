//! SFTP put and get against a real sshd: sizes around chunk boundaries and large files
//! checked by hash, trees with empty folders and symlinks, modes and times, errors, and
//! transfers cut off mid-way that leave the destination as it was.

mod harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
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
    options.progress(Arc::new(move |done, total| {
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
    plain.preserve(false);
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
    rec.recursive(true);
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
    options.progress(Arc::new(move |done, _| {
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
    assert!(s.command("true").status().await.unwrap().success());
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
    options.progress(Arc::new(move |done, _| {
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
