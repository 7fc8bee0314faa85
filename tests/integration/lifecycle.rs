//! Every command ends on time and cleanly, whatever the session, the server or the
//! command does: stopping commands as root, as a plain user and under ForceCommand (where
//! OpenSSH ignores the `signal` request), the end of a command whose background job holds
//! its output, stdin that is never read, a channel closed without an exit status, and a
//! server that never closes the channel.

use crate::harness;

use std::time::Duration;

use harness::{eventually, Sshd, SshdConfig, TEST_USER};
use rexec::{
    Agent, ConnectOptions, Credentials, ErrorKind, ExitStatus, Identity, KnownHosts, Phase, Session,
};
use tokio_util::sync::CancellationToken;

/// Processes of any user whose command line contains `pattern`.
fn processes(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        // pgrep -f also matches a shell whose command line holds the pattern as text.
        .filter(|l| !l.contains("pgrep"))
        .collect()
}

fn gone(pattern: &str) -> bool {
    eventually(Duration::from_secs(10), || processes(pattern).is_empty())
}

async fn gone_async(pattern: &str) -> bool {
    let p = pattern.to_owned();
    tokio::task::spawn_blocking(move || gone(&p)).await.unwrap()
}

async fn seen_async(pattern: &str) -> bool {
    let p = pattern.to_owned();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || !processes(&p).is_empty())
    })
    .await
    .unwrap()
}

fn marker(prefix: u32) -> String {
    format!("sleep {prefix}{:05}", harness::random_u64() % 100_000)
}

/// The kinds of session OpenSSH treats differently.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The test user (sshd honours `signal` requests).
    Plain,
    /// root (sshd ignores `signal` requests).
    Root,
    /// The test user under a ForceCommand that runs the requested command through a
    /// wrapper script (sshd ignores `signal` requests).
    Forced,
    /// root under that ForceCommand.
    ForcedRoot,
}

const KINDS: [Kind; 4] = [Kind::Plain, Kind::Root, Kind::Forced, Kind::ForcedRoot];

/// A server for `kind`, and the directory holding its ForceCommand script.
fn server(kind: Kind) -> (Sshd, tempfile::TempDir) {
    let mut config = SshdConfig {
        root_login: true,
        ..SshdConfig::default()
    };
    let scripts = tempfile::Builder::new()
        .prefix("rexec-force-")
        .tempdir()
        .unwrap();
    if matches!(kind, Kind::Forced | Kind::ForcedRoot) {
        // An audit-style wrapper: logs, then runs the original command in a child shell
        // (not exec'd, so the command is not the session leader).
        let dir = scripts.path();
        let script = dir.join("wrap.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$SSH_ORIGINAL_COMMAND\" >/dev/null\n/bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        config
            .extra
            .push(format!("ForceCommand {}", script.display()));
    }
    (Sshd::start_with(config), scripts)
}

fn user_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Plain | Kind::Forced => TEST_USER,
        Kind::Root | Kind::ForcedRoot => "root",
    }
}

async fn connect_as(sshd: &Sshd, user: &str) -> Session {
    Session::connect(&sshd.options().user(user)).await.unwrap()
}

#[tokio::test]
async fn a_timeout_stops_the_command_on_every_kind_of_session() {
    futures::future::join_all(KINDS.map(|kind| async move {
        let (sshd, _scripts) = server(kind);
        let s = connect_as(&sshd, user_of(kind)).await;
        let m = marker(43);
        // A compound command with a background child: the whole group must go.
        let mut command = s.raw_command(format!("echo started; ({m}) & {m}; echo never"));
        command.timeout(Duration::from_secs(8));
        let (result, seen) = tokio::join!(command.output(), seen_async(&m));
        assert!(seen, "{kind:?}: the command never ran");
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{kind:?}: {err:#}");
        assert_eq!(err.phase(), Some(Phase::Command));
        let out = err.output().unwrap();
        assert_eq!(out.stdout, b"started\n", "{kind:?}");
        // The process-id marker never shows in the output.
        assert_eq!(out.stderr, b"", "{kind:?}");
        assert!(!out.may_still_be_running, "{kind:?}: {err:#}");
        assert!(!err.message().contains("may still be running"), "{err:#}");
        assert!(
            gone_async(&m).await,
            "{kind:?}: left behind: {:?}",
            processes(&m)
        );
        // The session is still usable.
        let out = s.raw_command("echo ok").output().await.unwrap();
        assert_eq!(out.stdout, b"ok\n");
    }))
    .await;
}

#[tokio::test]
async fn cancelling_stops_the_command_and_keeps_its_output_on_every_kind_of_session() {
    futures::future::join_all(KINDS.map(|kind| async move {
        let (sshd, _scripts) = server(kind);
        let s = connect_as(&sshd, user_of(kind)).await;
        let m = marker(44);
        let token = CancellationToken::new();
        let mut command = s.raw_command(format!("echo started; trap '' TERM; {m}; echo never"));
        command
            .cancel_on(token.clone())
            .kill_grace(Duration::from_millis(500));
        let cancel_when_seen = async {
            let seen = seen_async(&m).await;
            token.cancel();
            seen
        };
        let (result, seen) = tokio::join!(command.output(), cancel_when_seen);
        assert!(seen, "{kind:?}");
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted, "{kind:?}: {err:#}");
        assert_eq!(err.output().unwrap().stdout, b"started\n", "{kind:?}");
        assert!(!err.output().unwrap().may_still_be_running, "{kind:?}");
        assert!(
            gone_async(&m).await,
            "{kind:?}: left behind: {:?}",
            processes(&m)
        );
    }))
    .await;
}

#[tokio::test]
async fn dropping_the_future_stops_the_command_on_every_kind_of_session() {
    futures::future::join_all(KINDS.map(|kind| async move {
        let (sshd, _scripts) = server(kind);
        let s = connect_as(&sshd, user_of(kind)).await;
        let m = marker(45);
        let mut command = s.raw_command(format!("{m}; echo never"));
        command.kill_grace(Duration::from_millis(500));
        tokio::select! {
            _ = command.output() => panic!("{kind:?}: the command finished by itself"),
            seen = seen_async(&m) => assert!(seen, "{kind:?}: never started"),
        }
        // The future is dropped here, with the session still open.
        assert!(
            gone_async(&m).await,
            "{kind:?}: left behind: {:?}",
            processes(&m)
        );
    }))
    .await;
}

#[tokio::test]
async fn a_forced_command_that_ignores_the_request_is_reported_as_maybe_running() {
    for user in [TEST_USER, "root"] {
        let m = marker(46);
        let sshd = Sshd::start_with(SshdConfig {
            root_login: true,
            extra: vec![format!("ForceCommand {m}")],
            ..SshdConfig::default()
        });
        let s = connect_as(&sshd, user).await;
        let err = s
            .raw_command("echo this is never run")
            .timeout(Duration::from_secs(2))
            .output()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{user}: {err:#}");
        assert!(err.output().unwrap().may_still_be_running, "{user}");
        assert!(
            err.message()
                .contains("the remote command may still be running"),
            "{user}: {err:#}"
        );
        // rexec said so because it is true: the forced command is still there.
        assert!(
            !processes(&m).is_empty(),
            "{user}: the message was not needed"
        );
        let killed = sshd.kill_leftovers();
        assert!(!killed.is_empty());
        assert!(gone(&m));
    }
}

#[tokio::test]
async fn a_background_job_holding_the_output_does_not_hold_the_result() {
    for user in [TEST_USER, "root"] {
        let (sshd, _scripts) = server(Kind::Plain);
        let s = connect_as(&sshd, user).await;
        let m = marker(47);
        let out = s
            .raw_command(format!("echo started; {m} & exit 0"))
            .timeout(Duration::from_secs(20))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Exited(0), "{user}");
        assert_eq!(out.stdout, b"started\n");
        assert!(out.output_open_after_exit, "{user}");
        assert!(out.note().unwrap().contains("background process"));
        // Like OpenSSH's ssh, rexec does not kill what the command left in the
        // background; it only stops waiting for it.
        assert!(!processes(&m).is_empty());
        sshd.kill_leftovers();
        assert!(gone(&m));
    }
}

#[tokio::test]
async fn stdin_that_is_never_read_does_not_hold_the_result() {
    let (sshd, _scripts) = server(Kind::Plain);
    let s = connect_as(&sshd, TEST_USER).await;
    let big = bytes::Bytes::from(vec![b'x'; 64 * 1024 * 1024]);
    let out = s
        .raw_command("sleep 1; exit 3")
        .stdin(big.clone())
        .timeout(Duration::from_secs(20))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(3));
    // Without a timeout too.
    let out = s.raw_command("exit 4").stdin(big).output().await.unwrap();
    assert_eq!(out.status, ExitStatus::Exited(4));
}

#[tokio::test]
async fn stdin_is_still_delivered_whole_while_output_is_read() {
    let (sshd, _scripts) = server(Kind::Root);
    let s = connect_as(&sshd, "root").await;
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = s
        .raw_command("cat; echo done >&2")
        .stdin(data.clone())
        .output()
        .await
        .unwrap();
    assert!(out.stdout == data, "stdin did not come back whole");
    assert_eq!(out.stderr, b"done\n");
}

#[tokio::test]
async fn a_channel_closed_without_an_exit_status_is_no_status() {
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["ChannelTimeout session:command=2s".to_owned()],
        ..SshdConfig::default()
    });
    let s = connect_as(&sshd, TEST_USER).await;
    let m = marker(48);
    let out = s
        .raw_command(format!("echo started; {m}"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Unknown, "{out:?}");
    assert_eq!(out.stdout, b"started\n");
    assert!(out.may_still_be_running);
    assert_eq!(
        out.note().unwrap(),
        "the server closed the channel without an exit status; the remote command may still \
         be running"
    );
    assert_eq!(
        rexec::Outcome::of_status(&out.status),
        rexec::Outcome::NoStatus
    );
    sshd.kill_leftovers();
}

/// A russh server whose sessions send output, an exit status and EOF, and never close
/// the channel: behaviour sshd does not produce.
mod never_closes {
    use std::sync::Arc;

    use russh::server::{Auth, Msg, Session};
    use russh::{Channel, ChannelId};

    pub struct Handler;

    impl russh::server::Handler for Handler {
        type Error = russh::Error;

        async fn auth_publickey(
            &mut self,
            _: &str,
            _: russh::server::VerifiedPublicKey<'_>,
        ) -> Result<Auth, Self::Error> {
            Ok(Auth::Accept)
        }

        async fn channel_open_session(
            &mut self,
            _channel: Channel<Msg>,
            reply: russh::server::ChannelOpenHandle,
            _session: &mut Session,
        ) -> Result<(), Self::Error> {
            reply.accept().await;
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: ChannelId,
            _data: &[u8],
            session: &mut Session,
        ) -> Result<(), Self::Error> {
            session.channel_success(channel)?;
            session.data(channel, b"hello\n".to_vec())?;
            session.exit_status_request(channel, 5)?;
            session.eof(channel)?;
            Ok(())
        }
    }

    /// Serves one connection on `listener` with `key`.
    pub async fn serve(listener: tokio::net::TcpListener, key: russh::keys::PrivateKey) {
        let config = Arc::new(russh::server::Config {
            keys: vec![key],
            ..Default::default()
        });
        while let Ok((socket, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(session) = russh::server::run_stream(config, socket, Handler).await {
                    let _ = session.await;
                }
            });
        }
    }
}

#[tokio::test]
async fn a_server_that_never_closes_the_channel_does_not_hold_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let host_key = harness::keygen(dir.path(), "host", "ed25519", "");
    let user_key = harness::keygen(dir.path(), "user", "ed25519", "");
    let key = russh::keys::load_secret_key(&host_key, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let mut p = public.split_whitespace();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            p.next().unwrap(),
            p.next().unwrap()
        ),
    )
    .unwrap();
    let server = tokio::spawn(never_closes::serve(listener, key));
    let mut creds = Credentials::new();
    creds = creds
        .identity(Identity::from_file(&user_key, None).unwrap())
        .agent(Agent::Off);
    let options = ConnectOptions::new("127.0.0.1")
        .port(port)
        .user("anyone")
        .credentials(creds)
        .known_hosts(KnownHosts::file(&known));
    let s = Session::connect(&options).await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        s.raw_command("anything")
            .timeout(Duration::from_secs(10))
            .output(),
    )
    .await
    .expect("hung")
    .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(5));
    assert_eq!(out.stdout, b"hello\n");
    // The output itself was closed (EOF came): nothing was left open by a process.
    assert!(!out.output_open_after_exit);
    server.abort();
}
