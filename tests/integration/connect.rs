//! Connecting: deadlines per phase, unreachable ports, servers that never speak or drip,
//! and a dead peer noticed by keepalive.

use crate::harness;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use harness::Sshd;
use rexec::{ConnectOptions, ErrorKind, Phase, Session};

/// A guard against hangs: a test fails rather than hanging the suite.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("hung past its deadline")
}

#[tokio::test]
async fn a_port_nothing_listens_on_is_a_connect_error() {
    let port = harness::free_port();
    let err = Session::connect(&ConnectOptions::new("127.0.0.1").port(port))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    // The cause is shown once: by the alternate form and full_message, not by Display.
    assert_eq!(
        err.to_string(),
        format!("127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}")
    );
    assert_eq!(
        format!("{err:#}"),
        format!("127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}: connection refused")
    );
    assert_eq!(
        err.full_message(),
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "Connection refused (os error 111)"
    );
}

#[tokio::test]
async fn a_listener_that_never_sends_a_banner_times_out_in_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = ConnectOptions::new("127.0.0.1")
        .port(port)
        .handshake_timeout(Duration::from_secs(1));
    let err = within(Duration::from_secs(20), Session::connect(&opts))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.phase(), Some(Phase::Handshake));
    assert!(
        err.to_string()
            .contains("timed out after 1s waiting for the ssh banner"),
        "{err}"
    );
    drop(listener);
}

#[tokio::test]
async fn a_server_that_drips_one_byte_at_a_time_cannot_hold_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            // A banner that never ends: each byte resets any per-read timeout.
            for b in b"SSH-2.0-".iter().chain([b'x'; 200].iter()) {
                if sock.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let opts = ConnectOptions::new("127.0.0.1")
        .port(port)
        .handshake_timeout(Duration::from_secs(2));
    let err = within(Duration::from_secs(20), Session::connect(&opts))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.phase(), Some(Phase::Handshake));
}

#[tokio::test]
async fn a_dead_peer_is_noticed_by_keepalive() {
    let sshd = Sshd::start();
    let opts = sshd.options().keepalive(Duration::from_millis(500), 2);
    let s = Session::connect(&opts).await.unwrap();
    assert!(s.raw_command("true").status().await.unwrap().success());
    // Freeze every sshd process of this server: the peer stops answering but the TCP
    // connection stays open.
    let frozen = harness::descendants(sshd.pid());
    assert!(!frozen.is_empty());
    for pid in &frozen {
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap();
    }
    let result = within(Duration::from_secs(30), s.raw_command("sleep 60").output()).await;
    for pid in &frozen {
        Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()
            .unwrap();
    }
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(s.is_closed());
}
