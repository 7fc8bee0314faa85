//! Authentication against a real sshd: key files of each type, encrypted keys, the agent,
//! password and keyboard-interactive, and the errors when they fail.

use crate::harness;

use std::os::unix::fs::PermissionsExt;

use harness::{SshAgent, Sshd, SshdConfig};
use rexec::{Agent, Credentials, ErrorKind, Identity, Secret, Session};

async fn whoami(sshd: &Sshd, creds: Credentials) -> rexec::Result<String> {
    let session = Session::connect(&sshd.bare_options().credentials(creds)).await?;
    let out = session.raw_command("id -un").output().await?;
    Ok(out.stdout_lossy().trim().to_owned())
}

fn with_identity(id: Identity) -> Credentials {
    let mut c = Credentials::new();
    c = c.identity(id).agent(Agent::Off);
    c
}

#[tokio::test]
async fn key_files_of_each_type_log_in() {
    let sshd = Sshd::start();
    for t in ["ed25519", "ecdsa", "rsa"] {
        let key = sshd.new_user_key(&format!("id_{t}"), t, "");
        let id = Identity::from_file(&key, None).unwrap();
        assert_eq!(
            whoami(&sshd, with_identity(id)).await.unwrap(),
            harness::TEST_USER,
            "{t}"
        );
    }
}

#[tokio::test]
async fn an_encrypted_key_needs_the_right_passphrase() {
    let sshd = Sshd::start();
    let key = sshd.new_user_key("id_enc", "ed25519", "correct horse");
    let id = Identity::from_file(&key, Some(&Secret::new("correct horse"))).unwrap();
    assert_eq!(
        whoami(&sshd, with_identity(id)).await.unwrap(),
        harness::TEST_USER
    );

    let err = Identity::from_file(&key, Some(&Secret::new("wrong"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for key file {}", key.display())
    );

    let err = Identity::from_file(&key, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert!(
        err.to_string()
            .contains("is encrypted and no passphrase was given"),
        "{err}"
    );
}

#[tokio::test]
async fn an_encrypted_rsa_key_logs_in() {
    let sshd = Sshd::start();
    let key = sshd.new_user_key("id_rsa_enc", "rsa", "pass phrase");
    let id = Identity::from_file(&key, Some(&Secret::new("pass phrase"))).unwrap();
    assert_eq!(
        whoami(&sshd, with_identity(id)).await.unwrap(),
        harness::TEST_USER
    );
}

#[tokio::test]
async fn a_key_file_readable_by_others_is_refused() {
    let sshd = Sshd::start();
    let key = sshd.new_user_key("id_open", "ed25519", "");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::from_file(&key, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert_eq!(
        err.to_string(),
        format!(
            "permissions 0644 for key file {} are too open: it must not be readable by group \
             or others (chmod 600)",
            key.display()
        )
    );
}

#[tokio::test]
async fn the_agent_signs_for_its_keys() {
    let sshd = Sshd::start();
    let agent = SshAgent::start();
    let key = sshd.new_user_key("id_agent", "ed25519", "");
    let rsa = sshd.new_user_key("id_agent_rsa", "rsa", "");
    agent.add(&rsa);
    agent.add(&key);
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(agent.socket.clone()));
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);

    // An agent with only a key the server does not know: auth fails, naming the agent.
    let other = SshAgent::start();
    let stranger = harness::keygen(sshd.dir.path(), "id_stranger", "ed25519", "");
    other.add(&stranger);
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(other.socket.clone()));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("tried: agent (1 keys)"), "{err}");
}

#[tokio::test]
async fn an_unreachable_agent_is_an_agent_error() {
    let sshd = Sshd::start();
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(sshd.dir.path().join("no-such-agent.sock")));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Agent);
    assert!(
        err.to_string().contains("cannot reach the ssh-agent"),
        "{err}"
    );
}

#[tokio::test]
async fn password_right_and_wrong() {
    let sshd = Sshd::start();
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off).password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);

    let mut creds = Credentials::new();
    creds = creds
        .agent(Agent::Off)
        .password(Secret::new("not the password"));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "127.0.0.1:{}: authentication failed for user \"rexec-test\"",
            sshd.port
        )),
        "{msg}"
    );
    assert!(msg.contains("tried: password;"), "{msg}");
    assert!(
        msg.contains("the server allows: publickey,password"),
        "{msg}"
    );
    assert!(!msg.contains("not the password"));
}

fn pam_server() -> Sshd {
    Sshd::start_with(SshdConfig {
        use_pam: true,
        password_auth: false,
        kbd_interactive: true,
        ..SshdConfig::default()
    })
}

#[tokio::test]
async fn keyboard_interactive_answers_with_the_password() {
    let sshd = pam_server();
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off).password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);

    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off).password(Secret::new("wrong"));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(
        err.to_string().contains("tried: keyboard-interactive;"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("allows: publickey,keyboard-interactive"),
        "{err}"
    );
}

#[tokio::test]
async fn methods_are_tried_in_order_until_one_works() {
    let sshd = Sshd::start();
    let stranger = harness::keygen(sshd.dir.path(), "id_unknown", "ed25519", "");
    let mut creds = Credentials::new();
    creds = creds
        .identity(Identity::from_file(&stranger, None).unwrap())
        .agent(Agent::Off)
        .password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);

    let mut creds = Credentials::new();
    creds = creds
        .identity(Identity::from_file(&stranger, None).unwrap())
        .agent(Agent::Off)
        .password(Secret::new("wrong"));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "tried: publickey {}, password;",
            stranger.display()
        )),
        "{err}"
    );
}

/// Without the `none` request (skipped when a key file comes first, issue 13), the first
/// key's refusal is what tells rexec the allowed methods: a server that takes no public
/// keys at all must still get the password.
#[tokio::test]
async fn a_key_file_first_still_falls_back_to_the_password_on_a_server_without_publickey() {
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["PubkeyAuthentication no".into()],
        ..SshdConfig::default()
    });
    let key = sshd.new_user_key("id_refused", "ed25519", "");
    let mut creds = Credentials::new();
    creds = creds
        .identity(Identity::from_file(&key, None).unwrap())
        .agent(Agent::Off)
        .password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);
}

#[tokio::test]
async fn no_credentials_at_all_says_so() {
    let sshd = Sshd::start();
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off);
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(
        err.to_string()
            .contains("nothing (no key, agent or password available)"),
        "{err}"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let secret = Secret::new("hunter2-very-secret");
    let mut creds = Credentials::new();
    creds = creds.password(secret.clone());
    let shown = format!(
        "{secret:?} {creds:?} {:?}",
        rexec::ConnectOptions::new("h").credentials(creds.clone())
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

/// An agent holding `strangers` keys the server does not know, then (if given) one it does.
fn agent_with(sshd: &Sshd, strangers: usize, authorized: Option<&std::path::Path>) -> SshAgent {
    let agent = SshAgent::start();
    for i in 0..strangers {
        let key = harness::keygen(sshd.dir.path(), &format!("id_many{i}"), "ed25519", "");
        agent.add(&key);
    }
    if let Some(key) = authorized {
        agent.add(key);
    }
    agent
}

const TOO_MANY: &str = "the server closed the connection after 6 authentication attempts (too \
     many keys offered? sshd's MaxAuthTries is 6 by default; try --no-agent or an explicit -I \
     key file)";

/// Regression: with more agent keys than MaxAuthTries, sshd cut the connection before the
/// password's turn and rexec reported a lost connection.
#[tokio::test]
async fn a_password_gets_its_turn_after_many_agent_keys() {
    let sshd = Sshd::start();
    let agent = agent_with(&sshd, 8, None);
    let mut creds = Credentials::new();
    creds = creds
        .agent(Agent::Socket(agent.socket.clone()))
        .password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);
    let log = sshd.log();
    assert!(log.contains("Accepted password for rexec-test"), "{log}");
    // Five keys refused, the sixth attempt is the password.
    assert_eq!(log.matches("Failed publickey").count(), 5, "{log}");

    // With a wrong password the error says which keys were held back.
    let mut creds = Credentials::new();
    creds = creds
        .agent(Agent::Socket(agent.socket.clone()))
        .password(Secret::new("wrong"));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:#}");
    assert!(
        err.to_string().ends_with(&format!(
            "{TOO_MANY}; it said \"Too many authentication failures\"; tried: agent (5 of 8 \
             keys; the rest held back so that the password gets its turn within sshd's \
             MaxAuthTries), password"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn keyboard_interactive_gets_its_turn_after_many_agent_keys() {
    let sshd = pam_server();
    let agent = agent_with(&sshd, 8, None);
    let mut creds = Credentials::new();
    creds = creds
        .agent(Agent::Socket(agent.socket.clone()))
        .password(Sshd::password());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);
    assert!(
        sshd.log()
            .contains("Accepted keyboard-interactive/pam for rexec-test"),
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn too_many_agent_keys_without_a_password_is_an_auth_failure_that_says_why() {
    let sshd = Sshd::start();
    let agent = agent_with(&sshd, 8, None);
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(agent.socket.clone()));
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:#}");
    assert_eq!(rexec::Outcome::of_error(&err), rexec::Outcome::AuthFailed);
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: {TOO_MANY}; it said \"Too many authentication failures\"; tried: \
             agent (6 of 8 keys)",
            sshd.port
        )
    );
    // sshd logs it from another process, maybe after the client has seen the close.
    assert!(
        harness::eventually(std::time::Duration::from_secs(20), || sshd
            .log()
            .contains("maximum authentication attempts exceeded")),
        "{}",
        sshd.log()
    );

    // The command line: auth-failed, exit 3 (it was connection-lost, exit 4).
    let known_hosts = sshd.known_hosts.display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args([
            "-H",
            &format!("{}@127.0.0.1:{}", harness::TEST_USER, sshd.port),
        ])
        .args(["--known-hosts", &known_hosts, "--json", "true"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"outcome\":\"auth-failed\""), "{stdout}");
    assert!(stdout.contains(TOO_MANY), "{stdout}");
}

/// Without a password every agent key is offered: a server allowing more tries takes the
/// eighth.
#[tokio::test]
async fn the_eighth_agent_key_logs_in_when_the_server_allows_ten_tries() {
    let sshd = Sshd::start_with(SshdConfig {
        extra: vec!["MaxAuthTries 10".into()],
        ..SshdConfig::default()
    });
    let good = sshd.new_user_key("id_eighth", "ed25519", "");
    let agent = agent_with(&sshd, 7, Some(&good));
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(agent.socket.clone()));
    assert_eq!(whoami(&sshd, creds).await.unwrap(), harness::TEST_USER);
    assert_eq!(sshd.log().matches("Failed publickey").count(), 7);
}
