//! Host key verification against a real sshd under each policy: unknown, changed,
//! type-mismatched, revoked, hashed and wildcard entries, concurrent learning.

use crate::harness;

use std::fs;
use std::process::Command;

use harness::{Sshd, SshdConfig};
use rexec::{Agent, Credentials, ErrorKind, HostKeyPolicy, KnownHosts, Session};

fn public_line(key: &std::path::Path) -> String {
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
}

async fn connect(sshd: &Sshd, policy: HostKeyPolicy) -> rexec::Result<Session> {
    Session::connect(&sshd.options().host_key_policy(policy)).await
}

/// Replaces the server's known_hosts with a different key of `key_type` for the host,
/// after `comment_lines` comment lines.
fn record_other_key(sshd: &Sshd, key_type: &str, comment_lines: usize) -> String {
    let other = harness::keygen(sshd.dir.path(), &format!("other_{key_type}"), key_type, "");
    let mut text = "# a comment\n".repeat(comment_lines);
    text.push_str(&format!(
        "[127.0.0.1]:{} {}\n",
        sshd.port,
        public_line(&other)
    ));
    fs::write(&sshd.known_hosts, &text).unwrap();
    text
}

#[tokio::test]
async fn a_recorded_key_is_accepted() {
    let sshd = Sshd::start();
    let s = connect(&sshd, HostKeyPolicy::Strict).await.unwrap();
    assert_eq!(
        s.raw_command("echo hi").output().await.unwrap().stdout,
        b"hi\n"
    );
}

#[tokio::test]
async fn an_unknown_key_is_refused_under_strict() {
    let sshd = Sshd::start();
    fs::write(&sshd.known_hosts, "").unwrap();
    let err = connect(&sshd, HostKeyPolicy::Strict).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "127.0.0.1:{}: host key ssh-ed25519 SHA256:",
            sshd.port
        )),
        "{msg}"
    );
    assert!(msg.contains("is not in known_hosts"), "{msg}");
    // Refused before authentication: the server never saw a login attempt.
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}

#[tokio::test]
async fn accept_new_learns_an_unknown_key_once() {
    let sshd = Sshd::start();
    fs::remove_file(&sshd.known_hosts).unwrap();
    connect(&sshd, HostKeyPolicy::AcceptNew).await.unwrap();
    let learned = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert_eq!(learned, sshd.known_hosts_lines());
    // Now known: strict accepts it, and accept-new does not write it again.
    connect(&sshd, HostKeyPolicy::Strict).await.unwrap();
    connect(&sshd, HostKeyPolicy::AcceptNew).await.unwrap();
    assert_eq!(fs::read_to_string(&sshd.known_hosts).unwrap(), learned);
}

#[tokio::test]
async fn accept_new_from_many_connections_at_once_writes_one_line() {
    let sshd = Sshd::start();
    fs::write(&sshd.known_hosts, "# existing without newline").unwrap();
    let opts = sshd.options().host_key_policy(HostKeyPolicy::AcceptNew);
    let connects = (0..16).map(|_| Session::connect(&opts));
    for r in futures::future::join_all(connects).await {
        r.unwrap();
    }
    let text = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert_eq!(
        text,
        format!("# existing without newline\n{}", sshd.known_hosts_lines())
    );
}

#[tokio::test]
async fn off_accepts_an_unknown_key_without_recording_it() {
    let sshd = Sshd::start();
    fs::write(&sshd.known_hosts, "").unwrap();
    connect(&sshd, HostKeyPolicy::Off).await.unwrap();
    assert_eq!(fs::read_to_string(&sshd.known_hosts).unwrap(), "");
}

#[tokio::test]
async fn a_changed_key_is_refused_with_its_file_and_line() {
    let sshd = Sshd::start();
    let before = record_other_key(&sshd, "ed25519", 2);
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = connect(&sshd, policy).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{policy}");
        let msg = err.to_string();
        assert!(
            msg.contains("HOST KEY CHANGED: the server offered ssh-ed25519 SHA256:"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("recorded at {}:3", sshd.known_hosts.display())),
            "{msg}"
        );
        assert_eq!(
            fs::read_to_string(&sshd.known_hosts).unwrap(),
            before,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn a_key_of_another_type_than_recorded_counts_as_changed() {
    let sshd = Sshd::start();
    // The server offers ed25519; only an ecdsa key is recorded for it.
    let before = record_other_key(&sshd, "ecdsa", 0);
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = connect(&sshd, policy).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{policy}: {err}");
        assert!(err.to_string().contains(":1;"), "{err}");
        assert_eq!(
            fs::read_to_string(&sshd.known_hosts).unwrap(),
            before,
            "{policy}: learned"
        );
    }
}

#[tokio::test]
async fn a_server_with_several_key_types_matches_any_recorded_one() {
    let sshd = Sshd::start_with(SshdConfig {
        host_key_types: vec!["ecdsa", "ed25519"],
        ..SshdConfig::default()
    });
    // Only the ecdsa key is recorded. rexec would prefer ed25519, but like OpenSSH it
    // asks first for the algorithms recorded for the host, so the server shows its ecdsa
    // key and the connection succeeds.
    let lines = sshd.known_hosts_lines();
    let ecdsa_only: String = lines
        .lines()
        .filter(|l| l.contains("ecdsa"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ecdsa_only.lines().count(), 1);
    fs::write(&sshd.known_hosts, &ecdsa_only).unwrap();
    connect(&sshd, HostKeyPolicy::Strict).await.unwrap();
}

#[tokio::test]
async fn off_accepts_a_changed_key_but_never_sends_a_password() {
    let sshd = Sshd::start();
    record_other_key(&sshd, "ed25519", 0);
    // Key authentication still works.
    let s = connect(&sshd, HostKeyPolicy::Off).await.unwrap();
    assert!(s.raw_command("true").status().await.unwrap().success());
    // A password is withheld from a server whose key did not match.
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off).password(Sshd::password());
    let opts = sshd
        .bare_options()
        .credentials(creds)
        .host_key_policy(HostKeyPolicy::Off);
    let err = Session::connect(&opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(
        err.to_string()
            .contains("password (disabled: the host key did not match)"),
        "{err}"
    );
    assert!(
        !sshd.log().contains("Failed password"),
        "a password was sent"
    );
}

#[tokio::test]
async fn hashed_entries_are_matched() {
    let sshd = Sshd::start();
    harness::run(
        Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&sshd.known_hosts),
    );
    let text = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    assert!(!text.contains("127.0.0.1"));
    connect(&sshd, HostKeyPolicy::Strict).await.unwrap();
}

#[tokio::test]
async fn wildcards_tabs_and_negation_follow_openssh() {
    let sshd = Sshd::start();
    let host_key = public_line(&sshd.host_keys[0]).replace(' ', "\t");
    fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.?]:*,other\t{host_key}\n"),
    )
    .unwrap();
    connect(&sshd, HostKeyPolicy::Strict).await.unwrap();
    fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.*]:*,![127.0.0.1]:{} {host_key}\n", sshd.port),
    )
    .unwrap();
    let err = connect(&sshd, HostKeyPolicy::Strict).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
}

#[tokio::test]
async fn a_revoked_key_is_refused_even_when_also_recorded() {
    let sshd = Sshd::start();
    let host_key = public_line(&sshd.host_keys[0]);
    let mut text = sshd.known_hosts_lines();
    text.push_str(&format!("@revoked * {host_key}\n"));
    fs::write(&sshd.known_hosts, &text).unwrap();
    for policy in [
        HostKeyPolicy::Strict,
        HostKeyPolicy::AcceptNew,
        HostKeyPolicy::Off,
    ] {
        let err = connect(&sshd, policy).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{policy}");
        assert!(err.to_string().contains("is marked @revoked in"), "{err}");
        assert!(err.to_string().contains(":2"), "{err}");
    }
}

#[tokio::test]
async fn several_known_hosts_files_are_all_read_and_the_first_is_written() {
    let sshd = Sshd::start();
    let first = sshd.dir.path().join("kh_user");
    let global = sshd.known_hosts.clone();
    let opts = sshd
        .options()
        .known_hosts(KnownHosts::files([first.clone(), global]))
        .host_key_policy(HostKeyPolicy::AcceptNew);
    Session::connect(&opts).await.unwrap();
    assert!(
        !first.exists(),
        "a key known from the second file was learned again"
    );
    fs::write(&sshd.known_hosts, "").unwrap();
    Session::connect(&opts).await.unwrap();
    assert_eq!(
        fs::read_to_string(&first).unwrap(),
        sshd.known_hosts_lines()
    );
}
