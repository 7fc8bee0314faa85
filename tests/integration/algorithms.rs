//! Algorithm negotiation against real sshd servers limited to one algorithm: servers that
//! offer only NIST-curve key exchange (older or FIPS-configured ones) are reached, and a
//! server with nothing in common is refused once (never retried) with an error that names
//! what each side offered, for each category (key exchange, host key, cipher, mac).

use crate::harness;

use harness::{Sshd, SshdConfig};
use rexec::{
    ErrorKind, HostSettings, Inventory, Outcome, Phase, Pool, Session, Target, TargetBuilder,
};

fn server(extra: &[&str], host_key_types: Vec<&'static str>) -> Sshd {
    Sshd::start_with(SshdConfig {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        host_key_types,
        ..SshdConfig::default()
    })
}

async fn whoami(sshd: &Sshd) -> rexec::Result<String> {
    let session = Session::connect(&sshd.options()).await?;
    let out = session.raw_command("id -un").output().await?;
    Ok(out.stdout_lossy().trim().to_owned())
}

/// Regression: a server offering only ecdh-sha2-nistp* was refused.
#[tokio::test]
async fn servers_offering_only_nist_curve_key_exchange_are_reached() {
    for kex in [
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
    ] {
        let sshd = server(&[&format!("KexAlgorithms {kex}")], vec!["ed25519"]);
        assert_eq!(
            whoami(&sshd)
                .await
                .unwrap_or_else(|e| panic!("{kex}: {e:#}")),
            harness::TEST_USER,
            "{kex}"
        );
    }
}

/// A FIPS-like server: NIST curves for everything (kex, ECDSA host key), AES-GCM or
/// AES-CTR with SHA-2 MACs.
#[tokio::test]
async fn a_fips_like_server_is_reached() {
    let sshd = server(
        &[
            "KexAlgorithms ecdh-sha2-nistp384,ecdh-sha2-nistp256",
            "HostKeyAlgorithms ecdsa-sha2-nistp256",
            "Ciphers aes128-gcm@openssh.com",
            "MACs hmac-sha2-256",
        ],
        vec!["ecdsa"],
    );
    assert_eq!(whoami(&sshd).await.unwrap(), harness::TEST_USER);
}

/// One target for `sshd`, for the pool.
fn target(sshd: &Sshd) -> Vec<Target> {
    let over = HostSettings {
        address: Some("127.0.0.1".into()),
        port: Some(sshd.port),
        user: Some(harness::TEST_USER.into()),
        identity_files: Some(vec![sshd.user_key.clone()]),
        known_hosts: Some(sshd.known_hosts.clone()),
        ..HostSettings::default()
    };
    let inventory = Inventory::from_host_list("h0", &over).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    builder.build_all(inventory.hosts()).unwrap()
}

/// Connects through the pool (3 attempts allowed) and checks: one connection reached the
/// server, the outcome is `error`, the error is Protocol in the handshake, and its message
/// starts with `expected` and names the server's list `server_offers`. Returns the message.
async fn refused_once(sshd: &Sshd, expected: &str, server_offers: &str) -> String {
    let targets = target(sshd);
    let pool = Pool::from_targets(targets)
        .concurrency(1)
        .connect_attempts(3);
    let results = pool.run("true").await;
    let err = results[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:#}");
    assert_eq!(err.phase(), Some(Phase::Handshake), "{err:#}");
    assert_eq!(results[0].outcome(), Outcome::Error);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("h0: {expected}: rexec offers ")),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("; the server offers {server_offers}")),
        "{message}"
    );
    // Not retried: the server saw one connection.
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1,
        "{}",
        sshd.log()
    );
    message
}

#[tokio::test]
async fn no_common_key_exchange_names_both_lists_and_is_not_retried() {
    // sntrup761x25519 is OpenSSH's post-quantum method before 9.9; russh lacks it.
    let sshd = server(
        &["KexAlgorithms sntrup761x25519-sha512@openssh.com"],
        vec!["ed25519"],
    );
    let message = refused_once(
        &sshd,
        "no common key exchange algorithm with the server",
        "sntrup761x25519-sha512@openssh.com",
    )
    .await;
    assert!(
        message.contains(
            "rexec offers mlkem768x25519-sha256,curve25519-sha256,\
             curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,\
             ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn no_common_host_key_algorithm_names_both_lists() {
    // A DSA host key: OpenSSH 9.2 still serves it when asked to; rexec does not take it.
    let sshd = server(&["HostKeyAlgorithms ssh-dss"], vec!["dsa"]);
    let message = refused_once(
        &sshd,
        "no common host key algorithm with the server",
        "ssh-dss",
    )
    .await;
    assert!(
        message.contains("rexec offers ssh-ed25519,ecdsa-sha2-nistp256,"),
        "{message}"
    );
    assert!(message.contains("rsa-sha2-512,rsa-sha2-256"), "{message}");
}

#[tokio::test]
async fn no_common_cipher_names_both_lists() {
    let sshd = server(&["Ciphers aes128-cbc,3des-cbc"], vec!["ed25519"]);
    let message = refused_once(
        &sshd,
        "no common cipher with the server",
        "aes128-cbc,3des-cbc",
    )
    .await;
    assert!(message.contains("aes256-gcm@openssh.com"), "{message}");
    assert!(
        message.contains("chacha20-poly1305@openssh.com"),
        "{message}"
    );
    assert!(message.contains("aes128-ctr"), "{message}");
}

#[tokio::test]
async fn no_common_mac_names_both_lists() {
    // A cipher that needs a MAC, and only SHA-1 MACs, which rexec does not offer.
    let sshd = server(
        &[
            "Ciphers aes128-ctr",
            "MACs hmac-sha1,hmac-sha1-etm@openssh.com",
        ],
        vec!["ed25519"],
    );
    let message = refused_once(
        &sshd,
        "no common mac with the server",
        "hmac-sha1,hmac-sha1-etm@openssh.com",
    )
    .await;
    assert!(
        message.contains(
            "rexec offers hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,\
             hmac-sha2-512,hmac-sha2-256;"
        ),
        "{message}"
    );
}
