//! Peers that are not (quite) SSH servers: an HTTP server, junk lines, a TLS server hello,
//! a silent close; lines before the identification (allowed by RFC 4253 §4.2) in front of
//! a real sshd; and a byte flipped in transit by a proxy between rexec and a real sshd.
//! Small TCP helpers play the peers that sshd will not.

use crate::harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use harness::{Sshd, SshdConfig};
use rexec::{
    ConnectOptions, ErrorKind, HostSettings, Inventory, KnownHosts, Outcome, Phase, Pool, Session,
    Target, TargetBuilder,
};

/// A guard against hangs: a test fails rather than hanging the suite.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("hung past its deadline")
}

/// A listener that answers every connection with `serve` on its own thread; returns the
/// port and the number of connections accepted so far.
fn fake_peer(
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (u16, Arc<AtomicUsize>, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (count, serve) = (accepted.clone(), Arc::new(serve));
    let l = listener.try_clone().unwrap();
    thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let serve = serve.clone();
            thread::spawn(move || serve(stream));
        }
    });
    (port, accepted, listener)
}

/// Reads the client's identification line (up to "\n"), as a server would.
fn read_line(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
}

fn http_server(mut stream: TcpStream) {
    read_line(&mut stream);
    let _ = stream.write_all(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
          400 Bad Request",
    );
}

fn junk_lines(mut stream: TcpStream) {
    let _ = stream.write_all(b"hello\r\nthis is not \"ssh\"\r\n\x1b[31mred\r\n");
}

/// The start of a TLS 1.2 ServerHello record (a TLS server answering garbage would send
/// an alert; this one greets first), then silence until the client gives up.
const TLS_HELLO: &[u8] = &[
    0x16, 0x03, 0x03, 0x00, 0x31, 0x02, 0x00, 0x00, 0x2d, 0x03, 0x03, 0x5f, 0x1a, 0x2b, 0x3c,
];

fn tls_hello_then_close(mut stream: TcpStream) {
    let _ = stream.write_all(TLS_HELLO);
    read_line(&mut stream);
}

fn tls_hello_then_silence(mut stream: TcpStream) {
    let _ = stream.write_all(TLS_HELLO);
    // Keep the connection open past the client's deadline.
    let mut sink = [0u8; 64];
    while stream.read(&mut sink).is_ok_and(|n| n > 0) {}
}

/// A mail server: greets, answers the client's line, and waits for more.
fn smtp_server(mut stream: TcpStream) {
    let _ = stream.write_all(b"220 mail.example.com ESMTP Postfix\r\n");
    read_line(&mut stream);
    let _ = stream.write_all(b"502 5.5.2 Error: command not recognized\r\n");
    let mut sink = [0u8; 64];
    while stream.read(&mut sink).is_ok_and(|n| n > 0) {}
}

/// An SSH-1 only server: it says so, then closes on hearing version 2.
fn ssh1_server(mut stream: TcpStream) {
    let _ = stream.write_all(b"SSH-1.5-OldServer_1.2.3\r\n");
    read_line(&mut stream);
    let _ = stream.write_all(b"Protocol major versions differ.\n");
}

fn silent_close(stream: TcpStream) {
    drop(stream);
}

fn target(port: u16) -> Vec<Target> {
    let over = HostSettings {
        address: Some("127.0.0.1".into()),
        port: Some(port),
        user: Some(harness::TEST_USER.into()),
        ..HostSettings::default()
    };
    let inventory = Inventory::from_host_list("h0", &over).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    let mut targets = builder.build_all(inventory.hosts()).unwrap();
    targets[0].connect = targets[0]
        .connect
        .clone()
        .handshake_timeout(Duration::from_secs(2));
    targets
}

/// Through the pool with 3 attempts allowed: the error, and how many connections the peer
/// saw.
async fn through_pool(port: u16, accepted: &AtomicUsize) -> (rexec::Error, usize) {
    let pool = Pool::from_targets(target(port))
        .concurrency(1)
        .connect_attempts(3);
    let results = within(Duration::from_secs(60), async { pool.run("true").await }).await;
    let mut results = results.into_results();
    let err = results.remove(0).result.unwrap_err();
    // Every attempt ended after the peer had accepted it (the peer spoke or closed).
    (err, accepted.load(Ordering::SeqCst))
}

/// Regression: an HTTP server was tried three times and reported as a lost connection.
#[tokio::test]
async fn an_http_server_is_not_an_ssh_server_and_is_tried_once() {
    let (port, accepted, _l) = fake_peer(http_server);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(err.phase(), Some(Phase::Handshake));
    assert_eq!(
        err.to_string(),
        "h0: not an ssh server: it sent \"HTTP/1.1 400 Bad Request\""
    );
    assert_eq!(Outcome::of_error(&err), Outcome::Error);
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn junk_lines_then_close_are_not_an_ssh_server() {
    let (port, accepted, _l) = fake_peer(junk_lines);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(err.to_string(), "h0: not an ssh server: it sent \"hello\"");
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn a_tls_server_hello_is_not_an_ssh_server() {
    let quoted = "\\x16\\x03\\x03\\x001\\x02\\x00\\x00-\\x03\\x03_\\x1a+<";
    let (port, accepted, _l) = fake_peer(tls_hello_then_close);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(
        err.to_string(),
        format!("h0: not an ssh server: it sent \"{quoted}\"")
    );
    assert_eq!(connections, 1);

    // The same peer keeping the connection open: still named, not a timeout.
    let (port, accepted, _l) = fake_peer(tls_hello_then_silence);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(
        err.to_string(),
        format!("h0: not an ssh server: it sent \"{quoted}\"")
    );
    assert_eq!(connections, 1);
}

/// A text protocol that waits for more: named when the handshake deadline passes.
#[tokio::test]
async fn a_mail_server_is_not_an_ssh_server() {
    let (port, accepted, _l) = fake_peer(smtp_server);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(
        err.to_string(),
        "h0: not an ssh server: it sent \"220 mail.example.com ESMTP Postfix\" and no ssh \
         identification within 2s"
    );
    assert_eq!(connections, 1);
}

/// sshd's own refusal before the handshake (MaxStartups) names itself and is a drop
/// (retried by the pool, see tests/pool.rs), not "not an ssh server".
#[tokio::test]
async fn sshd_refusing_past_max_startups_is_a_drop() {
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["MaxStartups 1:100:1".into()],
        ..SshdConfig::default()
    });
    // One unauthenticated connection held open: sshd drops every further one.
    let held = TcpStream::connect(("127.0.0.1", sshd.port)).unwrap();
    let err = within(Duration::from_secs(30), Session::connect(&sshd.options()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err:#}");
    assert_eq!(err.phase(), Some(Phase::Handshake));
    // The command never ran: unreachable (exit 3), not a lost connection (4).
    assert_eq!(Outcome::of_error(&err), Outcome::Unreachable);
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: the server dropped the connection before the handshake: it said \
             \"Exceeded MaxStartups\"",
            sshd.port
        )
    );
    drop(held);
}

#[tokio::test]
async fn an_ssh1_server_is_named_and_tried_once() {
    let (port, accepted, _l) = fake_peer(ssh1_server);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(
        err.to_string(),
        "h0: the server does not speak ssh protocol version 2: it sent \
         \"SSH-1.5-OldServer_1.2.3\""
    );
    assert_eq!(connections, 1);
}

/// A peer that closes without a word may be a busy server: that one is retried.
#[tokio::test]
async fn a_silent_close_is_a_drop_and_is_retried() {
    let (port, accepted, _l) = fake_peer(silent_close);
    let (err, connections) = through_pool(port, &accepted).await;
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err:#}");
    assert_eq!(
        err.to_string(),
        "h0: the server closed the connection before sending its ssh identification"
    );
    assert_eq!(connections, 3);
}

/// Relays between a client and `upstream`; `first` is written to the client before
/// anything else, and `flip_at` (an offset in the server-to-client stream) gets its
/// lowest bit flipped.
fn proxy(upstream: u16, first: &'static [u8], flip_at: Option<usize>) -> (u16, TcpListener) {
    let (port, _count, listener) = fake_peer(move |mut client| {
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        if client.write_all(first).is_err() {
            return;
        }
        let (mut client_w, mut server_r) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let down = thread::spawn(move || {
            let mut offset = 0usize;
            let mut buf = [0u8; 16384];
            loop {
                let n = match server_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(at) = flip_at {
                    if at >= offset && at < offset + n {
                        buf[at - offset] ^= 0x01;
                    }
                }
                offset += n;
                if client_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = client_w.shutdown(std::net::Shutdown::Both);
        });
        let mut buf = [0u8; 16384];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
        let _ = down.join();
    });
    (port, listener)
}

/// Options for `sshd` reached through a proxy on `port`, with known_hosts for that port.
fn through(sshd: &Sshd, port: u16) -> ConnectOptions {
    let lines = sshd
        .known_hosts_lines()
        .replace(&format!("]:{} ", sshd.port), &format!("]:{port} "));
    let file = sshd.dir.path().join(format!("known_hosts_{port}"));
    std::fs::write(&file, lines).unwrap();
    sshd.options()
        .port(port)
        .known_hosts(KnownHosts::file(&file))
}

/// RFC 4253 §4.2: a server may send other lines before its identification.
#[tokio::test]
async fn lines_before_the_identification_are_allowed() {
    let sshd = Sshd::start();
    let (port, _l) = proxy(
        sshd.port,
        b"Welcome to the test host\r\nauthorized use only\r\n",
        None,
    );
    let session = within(
        Duration::from_secs(30),
        Session::connect(&through(&sshd, port)),
    )
    .await
    .unwrap();
    let out = session.raw_command("id -un").output().await.unwrap();
    assert_eq!(out.stdout_lossy().trim(), harness::TEST_USER);
}

/// Regression: a byte corrupted in transit was reported as "connection lost". Each
/// cipher family (AEAD, encrypt-then-MAC, encrypt-and-MAC) against a real sshd; the
/// byte is flipped in the server's output stream well after key exchange and login.
#[tokio::test]
async fn a_corrupted_byte_is_an_integrity_failure_not_a_lost_connection() {
    let configs = [
        ("chacha20-poly1305@openssh.com", "hmac-sha2-256"),
        ("aes256-gcm@openssh.com", "hmac-sha2-256"),
        ("aes128-gcm@openssh.com", "hmac-sha2-256"),
        ("aes256-ctr", "hmac-sha2-256-etm@openssh.com"),
        ("aes128-ctr", "hmac-sha2-512"),
    ];
    for (cipher, mac) in configs {
        let sshd = Sshd::start_with(SshdConfig {
            extra: vec![format!("Ciphers {cipher}"), format!("MACs {mac}")],
            ..SshdConfig::default()
        });
        let (port, _l) = proxy(sshd.port, b"", Some(300_000));
        let session = within(
            Duration::from_secs(30),
            Session::connect(&through(&sshd, port)),
        )
        .await
        .unwrap_or_else(|e| panic!("{cipher}: {e:#}"));
        let err = within(
            Duration::from_secs(60),
            session.raw_command("head -c 4000000 /dev/zero").output(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{cipher}: {err:#}");
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{port}: the data failed its integrity check (MAC): the connection \
                 was corrupted in transit"
            ),
            "{cipher} {mac}"
        );
        assert_eq!(Outcome::of_error(&err), Outcome::Error);
        assert!(session.is_closed());
    }
}
