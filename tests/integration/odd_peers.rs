//! Peers that behave as OpenSSH's sshd never does, played by an in-process russh server
//! (`harness::fake_server`): a command channel closed without an exit status, EOF and
//! close before (or around) the status, an exit signal, SFTP listings with names no file
//! system holds, and an SFTP reply larger than any limit.

use crate::harness;

use std::path::Path;
use std::time::Duration;

use harness::cli::{rexec, text};
use harness::fake_server::{Entry, FakeServer, Script, SftpScript, Step};
use rexec::{ErrorKind, ExitStatus, Outcome, RunExit, Session, TransferOptions};
use russh::Sig;

/// A guard against hangs: a test fails rather than hanging the suite.
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("hung past its deadline")
}

async fn server(exec: Vec<Step>) -> (FakeServer, Session) {
    let server = FakeServer::start(Script {
        exec,
        ..Script::default()
    })
    .await;
    let session = within(Session::connect(&server.options())).await.unwrap();
    (server, session)
}

async fn run(exec: Vec<Step>) -> rexec::Result<rexec::Output> {
    let (server, session) = server(exec).await;
    let result = within(session.raw_command("work").output()).await;
    assert_eq!(server.commands.lock().unwrap().len(), 1);
    result
}

fn out(bytes: &[u8]) -> Step {
    Step::Stdout(bytes.to_vec())
}

#[tokio::test]
async fn a_channel_closed_without_an_exit_status_is_no_status_and_exit_4() {
    let output = run(vec![out(b"partial\n"), Step::Close]).await.unwrap();
    assert_eq!(output.status, ExitStatus::Unknown);
    assert!(!output.status.success());
    assert_eq!(output.status.code(), None);
    assert_eq!(output.stdout, b"partial\n");
    let outcome = Outcome::of_command(&Ok(output.clone()));
    assert_eq!(outcome, Outcome::NoStatus);
    assert_eq!(RunExit::of([outcome]).code(), 4);
    let note = output.note().unwrap_or_default();
    assert!(note.contains("without an exit status"), "{note}");
}

#[tokio::test]
async fn eof_and_close_with_no_status_ever_is_no_status() {
    let output = run(vec![out(b"a"), Step::Eof, Step::Close]).await.unwrap();
    assert_eq!(output.status, ExitStatus::Unknown);
    assert_eq!(output.stdout, b"a");
    assert_eq!(Outcome::of_command(&Ok(output)), Outcome::NoStatus);
}

#[tokio::test]
async fn an_exit_status_after_eof_but_before_close_is_reported() {
    let output = run(vec![
        out(b"out"),
        Step::Stderr(b"err".to_vec()),
        Step::Eof,
        Step::ExitStatus(3),
        Step::Close,
    ])
    .await
    .unwrap();
    assert_eq!(output.status, ExitStatus::Exited(3));
    assert_eq!(output.stdout, b"out");
    assert_eq!(output.stderr, b"err");
    assert!(!output.output_open_after_exit);
    assert_eq!(Outcome::of_command(&Ok(output)), Outcome::ExitedNonZero);
}

#[tokio::test]
async fn output_after_the_exit_status_belongs_to_the_result() {
    let output = run(vec![
        Step::ExitStatus(0),
        out(b"late out"),
        Step::Stderr(b"late err".to_vec()),
        Step::Eof,
        Step::Close,
    ])
    .await
    .unwrap();
    assert_eq!(output.status, ExitStatus::Exited(0));
    assert_eq!(output.stdout, b"late out");
    assert_eq!(output.stderr, b"late err");
}

#[tokio::test]
async fn a_status_without_close_is_reported_without_waiting_for_the_close() {
    // README "How a command ends": a server that sends the exit status and EOF but never
    // closes the channel is not waited for. Its output was closed (EOF), so it is not
    // flagged as output left open.
    let output = run(vec![out(b"x"), Step::ExitStatus(0), Step::Eof, Step::Hang])
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Exited(0));
    assert_eq!(output.stdout, b"x");
    assert!(!output.output_open_after_exit, "{output:?}");
    // Without EOF either, the output counts as still open after the exit.
    let output = run(vec![out(b"y"), Step::ExitStatus(5), Step::Hang])
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Exited(5));
    assert_eq!(output.stdout, b"y");
    assert!(output.output_open_after_exit, "{output:?}");
}

#[tokio::test]
async fn an_exit_signal_instead_of_a_status_is_killed_with_its_name() {
    let output = run(vec![
        out(b"before"),
        Step::ExitSignal(Sig::KILL, false),
        Step::Eof,
        Step::Close,
    ])
    .await
    .unwrap();
    assert_eq!(output.status.signal(), Some("KILL"), "{output:?}");
    assert_eq!(output.status.code(), None);
    assert_eq!(output.stdout, b"before");
    assert_eq!(Outcome::of_command(&Ok(output.clone())), Outcome::Killed);
    assert_eq!(Outcome::Killed.exit().code(), 4);

    let output = run(vec![Step::ExitSignal(Sig::SEGV, true), Step::Close])
        .await
        .unwrap();
    match &output.status {
        ExitStatus::Signaled {
            signal,
            core_dumped,
            ..
        } => {
            assert_eq!(signal, "SEGV");
            assert!(core_dumped);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reply_larger_than_max_output_is_cut_and_the_status_kept() {
    // One 8 MiB data message (russh splits it into packets of the client's size) and as
    // much on stderr, against a 64 KiB limit: the rest is read and dropped.
    let big = vec![b'o'; 8 << 20];
    let (_server, session) = server(vec![
        Step::Stdout(big.clone()),
        Step::Stderr(big),
        Step::ExitStatus(7),
        Step::Eof,
        Step::Close,
    ])
    .await;
    let output = within(session.raw_command("work").max_output(64 * 1024).output())
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Exited(7));
    assert_eq!(output.stdout.len(), 64 * 1024);
    assert_eq!(output.stderr.len(), 64 * 1024);
    assert!(output.stdout_truncated && output.stderr_truncated);
}

#[tokio::test]
async fn a_connection_dropped_before_the_status_is_an_error_not_a_result() {
    let result = run(vec![out(b"partial"), Step::Disconnect]).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
    assert_eq!(Outcome::of_command(&Err(error)), Outcome::ConnectionLost);
}

#[tokio::test]
async fn the_cli_exits_4_for_no_status_and_names_it() {
    let server = FakeServer::start(Script {
        exec: vec![out(b"partial\n"), Step::Close],
        ..Script::default()
    })
    .await;
    let (key, known_hosts) = server.files();
    let args: Vec<String> = [
        "-H",
        &format!("127.0.0.1:{}", server.port),
        "-u",
        "fake",
        "-I",
        key.to_str().unwrap(),
        "--known-hosts",
        known_hosts.to_str().unwrap(),
        "-F",
        "none",
        "--no-agent",
        "--json",
        "work",
    ]
    .map(str::to_owned)
    .to_vec();
    let output = within(tokio::task::spawn_blocking(move || {
        rexec(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }))
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("\"outcome\":\"no-status\""), "{stdout}");
    assert!(stdout.contains("partial"), "{stdout}");
}

// SFTP

/// `get -r /tree` into a fresh directory `dest` inside `root`; returns the result.
async fn get_tree(script: SftpScript, root: &Path) -> rexec::Result<rexec::TransferStats> {
    let server = FakeServer::start(Script {
        sftp: script,
        ..Script::default()
    })
    .await;
    let session = within(Session::connect(&server.options())).await.unwrap();
    let sftp = within(session.sftp()).await.unwrap();
    let dest = root.join("dest");
    std::fs::create_dir(&dest).unwrap();
    let mut options = TransferOptions::default();
    options = options.recursive(true);
    within(sftp.get_with("/tree", &dest, &options)).await
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_tree_of_plain_names_is_copied() {
    // The control case: the fake SFTP server is good enough for a real download.
    let root = tempfile::tempdir().unwrap();
    let stats = get_tree(
        SftpScript::Listing(vec![Entry::file("a.txt"), Entry::file("b.txt")]),
        root.path(),
    )
    .await
    .unwrap();
    assert_eq!(stats.files, 2, "{stats:?}");
    assert_eq!(
        tree(root.path()),
        ["dest", "dest/tree", "dest/tree/a.txt", "dest/tree/b.txt"]
    );
}

#[tokio::test]
async fn names_with_slashes_empty_or_duplicated_are_refused_and_nothing_is_written() {
    for bad in [
        b"../escape".to_vec(),
        b"a/b".to_vec(),
        b"/etc/passwd".to_vec(),
        b"..\\..".to_vec(),
        Vec::new(),
        b"ok.txt".to_vec(),
    ] {
        let root = tempfile::tempdir().unwrap();
        let error = get_tree(
            SftpScript::Listing(vec![Entry::file("ok.txt"), Entry::file(bad.clone())]),
            root.path(),
        )
        .await;
        let name = String::from_utf8_lossy(&bad).into_owned();
        if name == "..\\.." {
            // A backslash is an ordinary character on Unix: a file of that name.
            assert!(error.is_ok(), "{name:?}: {error:?}");
            assert_eq!(
                tree(root.path()),
                ["dest", "dest/tree", "dest/tree/..\\..", "dest/tree/ok.txt"]
            );
            continue;
        }
        let error = error.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Sftp, "{name:?}: {error}");
        assert!(
            error.to_string().contains("refusing the name"),
            "{name:?}: {error}"
        );
        assert!(
            error.to_string().contains(&format!("{name:?}")),
            "{name:?}: {error}"
        );
        // Names are all checked before anything is written.
        assert_eq!(tree(root.path()), ["dest"], "{name:?}");
    }
}

#[tokio::test]
async fn dot_and_dot_dot_entries_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let stats = get_tree(
        SftpScript::Listing(vec![
            Entry::file("."),
            Entry::file(".."),
            Entry::file("ok.txt"),
        ]),
        root.path(),
    )
    .await
    .unwrap();
    assert_eq!(stats.files, 1, "{stats:?}");
    assert_eq!(tree(root.path()), ["dest", "dest/tree", "dest/tree/ok.txt"]);
}

#[tokio::test]
async fn a_name_that_is_not_utf8_is_refused_with_the_documented_error() {
    let root = tempfile::tempdir().unwrap();
    let error = get_tree(
        SftpScript::Listing(vec![
            Entry::file("ok.txt"),
            Entry::file(b"caf\xe9".to_vec()),
        ]),
        root.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Sftp, "{error}");
    assert!(error.to_string().contains("not valid UTF-8"), "{error}");
    assert!(error.to_string().contains("nothing was copied"), "{error}");
    assert_eq!(tree(root.path()), ["dest"]);
}

#[tokio::test]
async fn a_very_long_name_fails_locally_without_escaping_the_destination() {
    let root = tempfile::tempdir().unwrap();
    let long = "x".repeat(4000);
    let result = get_tree(
        SftpScript::Listing(vec![Entry::file(long.as_str())]),
        root.path(),
    )
    .await;
    let error = result.unwrap_err();
    // The name is legal on the server, too long here (NAME_MAX 255): a local error.
    assert_eq!(error.kind(), ErrorKind::LocalIo, "{error}");
    for path in tree(root.path()) {
        assert!(path.starts_with("dest"), "{path}");
        assert!(!path.contains(&long), "{path}");
    }
}

#[tokio::test]
async fn an_oversized_sftp_reply_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    // A NAME packet that says it is 2 GiB long (russh-sftp's limit is 256 KiB).
    let error = get_tree(SftpScript::OversizedReaddir(0x7fff_ffff), root.path())
        .await
        .unwrap_err();
    // russh-sftp refuses the length before allocating and ends the SFTP stream; rexec
    // reports the listing's connection as lost, at once (not after a request timeout).
    assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
    assert!(error.to_string().contains("list /tree"), "{error}");
    assert_eq!(tree(root.path()), ["dest"]);
}
