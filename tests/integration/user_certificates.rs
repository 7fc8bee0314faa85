//! User certificates against a real sshd that trusts a user CA (`TrustedUserCAKeys`) and
//! has no authorized_keys: `KEY-cert.pub` next to a key file, a certificate file given
//! explicitly, certificates in the ssh-agent, the order of offers, and the refusals.

use crate::harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::cli::{json_lines, rexec, text};
use harness::{SshAgent, Sshd, SshdConfig, TEST_USER};
use rexec::{Agent, Credentials, ErrorKind, Identity, Session, UserCertificate};

/// A server that lets in users whose certificates `ca` signed, and nothing else by key.
fn server(ca: &Path, extra: &[&str]) -> Sshd {
    let mut lines = vec![format!(
        "TrustedUserCAKeys {}",
        ca.with_extension("pub").display()
    )];
    lines.extend(extra.iter().map(|s| s.to_string()));
    Sshd::start_with(SshdConfig {
        authorized_keys: false,
        extra: lines,
        ..SshdConfig::default()
    })
}

/// `ssh-keygen -s CA -I ID ARGS KEY.pub`; returns `KEY-cert.pub`.
fn sign(ca: &Path, key: &Path, id: &str, args: &[&str]) -> PathBuf {
    harness::run(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(ca)
            .args(["-I", id])
            .args(args)
            .arg(key.with_extension("pub")),
    );
    cert_beside(key)
}

fn cert_beside(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// `ssh-ed25519 SHA256:...` of a public key file.
fn fingerprint(public: &Path) -> String {
    let out = harness::run(Command::new("ssh-keygen").arg("-lf").arg(public));
    let fields: Vec<&str> = out.split_whitespace().collect();
    format!("ssh-ed25519 {}", fields[1])
}

async fn whoami(sshd: &Sshd, creds: Credentials) -> rexec::Result<String> {
    let session = Session::connect(&sshd.bare_options().credentials(creds)).await?;
    let out = session.raw_command("whoami").output().await?;
    Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

fn with_identity(identity: Identity) -> Credentials {
    let mut creds = Credentials::new();
    creds = creds.identity(identity).agent(Agent::Off);
    creds
}

/// The line sshd logs for the login: the key type shows it was a certificate.
fn accepted_line(sshd: &Sshd) -> String {
    let log = sshd.log();
    log.lines()
        .find(|l| l.contains("Accepted publickey for rexec-test"))
        .unwrap_or_else(|| panic!("no login in the log:\n{log}"))
        .to_owned()
}

#[tokio::test]
async fn a_certificate_next_to_the_key_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    for (key_type, cert_type) in [
        ("ed25519", "ED25519-CERT"),
        ("ecdsa", "ECDSA-CERT"),
        ("rsa", "RSA-CERT"),
    ] {
        let sshd = server(&ca, &[]);
        let key = harness::keygen(dir.path(), &format!("id_{key_type}"), key_type, "");
        let identity = Identity::from_file(&key, None).unwrap();
        // Without a certificate the key alone is refused: there is no authorized_keys.
        let err = whoami(&sshd, with_identity(identity)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{key_type}");

        sign(&ca, &key, &format!("cert-{key_type}"), &["-n", TEST_USER]);
        let identity = Identity::from_file(&key, None).unwrap();
        let certificate = identity.certificate().unwrap();
        assert_eq!(certificate.path(), cert_beside(&key));
        assert_eq!(certificate.key_id(), format!("cert-{key_type}"));
        assert_eq!(certificate.principals(), [TEST_USER.to_owned()]);
        assert_eq!(certificate.fingerprint(), identity.fingerprint());
        assert_eq!(
            whoami(&sshd, with_identity(identity)).await.unwrap(),
            TEST_USER
        );
        let line = accepted_line(&sshd);
        assert!(line.contains(cert_type), "{key_type}: {line}");
        // RSA signs with SHA-2 (OpenSSH 9.2 refuses ssh-rsa-cert-v01's SHA-1).
        assert!(
            sshd.log()
                .contains(&format!("Accepted certificate ID \"cert-{key_type}\"")),
            "{}",
            sshd.log()
        );
    }
}

#[tokio::test]
async fn an_explicit_certificate_file_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let key = harness::keygen(dir.path(), "id_plain", "ed25519", "");
    let signed = sign(&ca, &key, "explicit", &["-n", TEST_USER]);
    let elsewhere = dir.path().join("elsewhere.cert");
    fs::rename(&signed, &elsewhere).unwrap();

    // Identity::with_certificate.
    let identity = Identity::from_file(&key, None).unwrap();
    assert!(identity.certificate().is_none());
    let identity = identity.with_certificate(&elsewhere).unwrap();
    assert_eq!(identity.certificate().unwrap().path(), elsewhere);
    assert_eq!(
        whoami(&sshd, with_identity(identity)).await.unwrap(),
        TEST_USER
    );

    // Credentials::certificate: matched to the identity file holding its key.
    let mut creds = with_identity(Identity::from_file(&key, None).unwrap());
    creds = creds.certificate(UserCertificate::from_file(&elsewhere).unwrap());
    assert_eq!(whoami(&sshd, creds).await.unwrap(), TEST_USER);

    // A certificate for another key.
    let other = harness::keygen(dir.path(), "id_other", "ed25519", "");
    let err = Identity::from_file(&other, None)
        .unwrap()
        .with_certificate(&elsewhere)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert_eq!(
        err.to_string(),
        format!(
            "certificate file {} certifies key {}, not the key of {} ({})",
            elsewhere.display(),
            fingerprint(&key.with_extension("pub")),
            other.display(),
            fingerprint(&other.with_extension("pub"))
        )
    );

    // Files that are not user certificates.
    let host_cert = sign(&ca, &other, "a-host", &["-h", "-n", "web1"]);
    let err = UserCertificate::from_file(&host_cert).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert_eq!(
        err.to_string(),
        format!(
            "certificate file {} holds a host certificate, not a user certificate",
            host_cert.display()
        )
    );
    let err = UserCertificate::from_file(key.with_extension("pub")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate file {} is not an openssh certificate",
            key.with_extension("pub").display()
        )
    );
    let err = UserCertificate::from_file(dir.path().join("missing")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read certificate file {}",
            dir.path().join("missing").display()
        )
    );
    // A host certificate next to a key file is not used (and the key still loads).
    assert!(Identity::from_file(&other, None)
        .unwrap()
        .certificate()
        .is_none());
}

/// sshd at `MaxAuthTries 1` disconnects after the first refusal: the certificate logs in
/// only because it is offered before the plain key (for a key file and in the agent).
#[tokio::test]
async fn the_certificate_is_offered_before_the_plain_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &["MaxAuthTries 1"]);
    let key = harness::keygen(dir.path(), "id_first", "ed25519", "");
    sign(&ca, &key, "first", &["-n", TEST_USER]);
    let identity = Identity::from_file(&key, None).unwrap();
    assert_eq!(
        whoami(&sshd, with_identity(identity)).await.unwrap(),
        TEST_USER
    );

    // The agent lists the key before the certificate (ssh-add adds them in that order).
    let agent = SshAgent::start();
    agent.add(&key);
    let listed = harness::run(
        Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", &agent.socket),
    );
    assert!(
        listed.lines().next().unwrap().starts_with("ssh-ed25519 "),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{listed}"
    );
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Socket(agent.socket.clone()));
    assert_eq!(whoami(&sshd, creds).await.unwrap(), TEST_USER);
}

#[tokio::test]
async fn certificates_held_by_the_agent_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    for key_type in ["ed25519", "rsa"] {
        let sshd = server(&ca, &[]);
        // The agent holds the key and its certificate (ssh-add loads KEY-cert.pub).
        let key = harness::keygen(dir.path(), &format!("id_agent_{key_type}"), key_type, "");
        sign(&ca, &key, &format!("agent-{key_type}"), &["-n", TEST_USER]);
        let agent = SshAgent::start();
        agent.add(&key);
        let mut creds = Credentials::new();
        creds = creds.agent(Agent::Socket(agent.socket.clone()));
        assert_eq!(whoami(&sshd, creds).await.unwrap(), TEST_USER, "{key_type}");
        assert!(
            sshd.log()
                .contains(&format!("Accepted certificate ID \"agent-{key_type}\"")),
            "{}",
            sshd.log()
        );

        // The agent holds only the key; the certificate is a file.
        let key = harness::keygen(dir.path(), &format!("id_file_{key_type}"), key_type, "");
        let signed = sign(&ca, &key, &format!("file-{key_type}"), &["-n", TEST_USER]);
        let elsewhere = dir.path().join(format!("file-{key_type}.cert"));
        fs::rename(&signed, &elsewhere).unwrap();
        let agent = SshAgent::start();
        agent.add(&key);
        let mut creds = Credentials::new();
        creds = creds
            .certificate(UserCertificate::from_file(&elsewhere).unwrap())
            .agent(Agent::Socket(agent.socket.clone()));
        assert_eq!(whoami(&sshd, creds).await.unwrap(), TEST_USER, "{key_type}");
        assert!(
            sshd.log()
                .contains(&format!("Accepted certificate ID \"file-{key_type}\"")),
            "{}",
            sshd.log()
        );
    }
}

/// The server only says no; the error says what was offered and what the client can tell
/// about it (principals, validity, CA).
#[tokio::test]
async fn refused_certificates_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let rogue = harness::keygen(dir.path(), "rogue_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let ca_fp = fingerprint(&ca.with_extension("pub"));
    let rogue_fp = fingerprint(&rogue.with_extension("pub"));
    let cases: [(&str, &Path, &[&str], String); 4] = [
        (
            "principal",
            &ca,
            &["-n", "other,root"],
            format!("ID \"principal\"; principals [\"other\", \"root\"], not \"rexec-test\"; CA {ca_fp}"),
        ),
        (
            "expired",
            &ca,
            &["-n", TEST_USER, "-V", "20200101000000Z:20200102000000Z"],
            format!(
                "ID \"expired\"; principals [\"rexec-test\"]; expired at 2020-01-02T00:00:00Z; \
                 CA {ca_fp}"
            ),
        ),
        (
            "future",
            &ca,
            &["-n", TEST_USER, "-V", "20990101000000Z:20990102000000Z"],
            format!(
                "ID \"future\"; principals [\"rexec-test\"]; not valid before \
                 2099-01-01T00:00:00Z; CA {ca_fp}"
            ),
        ),
        (
            "untrusted",
            &rogue,
            &["-n", TEST_USER],
            format!("ID \"untrusted\"; principals [\"rexec-test\"]; CA {rogue_fp}"),
        ),
    ];
    for (id, signer, args, described) in cases {
        let key = harness::keygen(dir.path(), &format!("id_{id}"), "ed25519", "");
        let cert = sign(signer, &key, id, args);
        let err = whoami(
            &sshd,
            with_identity(Identity::from_file(&key, None).unwrap()),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{id}");
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{}: authentication failed for user \"rexec-test\"; tried: \
                 certificate {} ({described}), publickey {}; the server allows: \
                 publickey,password",
                sshd.port,
                cert.display(),
                key.display()
            ),
            "{id}"
        );

        // The same from the agent.
        let agent = SshAgent::start();
        agent.add(&key);
        let mut creds = Credentials::new();
        creds = creds.agent(Agent::Socket(agent.socket.clone()));
        let err = whoami(&sshd, creds).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{}: authentication failed for user \"rexec-test\"; tried: \
                 certificate from the agent \"id_{id}\" ({described}), agent (1 keys); the \
                 server allows: publickey,password",
                sshd.port,
            ),
            "{id}"
        );

        // A key file and the agent holding the same certificate: offered once.
        let mut creds = with_identity(Identity::from_file(&key, None).unwrap());
        creds = creds.agent(Agent::Socket(agent.socket.clone()));
        let err = whoami(&sshd, creds).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{}: authentication failed for user \"rexec-test\"; tried: \
                 certificate {} ({described}), publickey {}, agent (1 keys); the server \
                 allows: publickey,password",
                sshd.port,
                cert.display(),
                key.display()
            ),
            "{id}"
        );
    }
}

/// As in OpenSSH, `KEY-cert.pub` is not offered when certificate files are given.
#[tokio::test]
async fn given_certificates_replace_the_ones_next_to_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let key = harness::keygen(dir.path(), "id_both", "ed25519", "");
    let expired = sign(
        &ca,
        &key,
        "given",
        &["-n", TEST_USER, "-V", "20200101000000Z:20200102000000Z"],
    );
    let given = dir.path().join("given.cert");
    fs::rename(&expired, &given).unwrap();
    let beside = sign(&ca, &key, "beside", &["-n", TEST_USER]);
    let identity = Identity::from_file(&key, None).unwrap();
    assert_eq!(identity.certificate().unwrap().path(), beside);

    // Alone, the certificate next to the key logs in.
    assert_eq!(
        whoami(&sshd, with_identity(identity.clone()))
            .await
            .unwrap(),
        TEST_USER
    );
    // With a certificate given, only that one is offered.
    let mut creds = with_identity(identity);
    creds = creds.certificate(UserCertificate::from_file(&given).unwrap());
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: authentication failed for user \"rexec-test\"; tried: certificate \
             {} (ID \"given\"; principals [\"rexec-test\"]; expired at 2020-01-02T00:00:00Z; \
             CA {}), publickey {}; the server allows: publickey,password",
            sshd.port,
            given.display(),
            fingerprint(&ca.with_extension("pub")),
            key.display()
        )
    );

    // A certificate whose key is neither a key file nor in the agent is named, not offered.
    let stray_key = harness::keygen(dir.path(), "id_stray", "ed25519", "");
    let stray = sign(&ca, &stray_key, "stray", &["-n", TEST_USER]);
    let mut creds = Credentials::new();
    creds = creds
        .certificate(UserCertificate::from_file(&stray).unwrap())
        .agent(Agent::Off);
    let err = whoami(&sshd, creds).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: authentication failed for user \"rexec-test\"; tried: certificate \
             {} (ID \"stray\"; principals [\"rexec-test\"]; CA {}): not offered, its private \
             key is neither an identity file nor in the ssh-agent; the server allows: \
             publickey,password",
            sshd.port,
            stray.display(),
            fingerprint(&ca.with_extension("pub")),
        )
    );
}

#[test]
fn the_command_line_and_the_inventory_take_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let key = harness::keygen(dir.path(), "id_cli", "ed25519", "");
    let signed = sign(&ca, &key, "cli", &["-n", TEST_USER]);
    let cert = dir.path().join("cli.cert");
    fs::rename(&signed, &cert).unwrap();
    let known_hosts = sshd.known_hosts.to_str().unwrap();
    let target = format!("{TEST_USER}@127.0.0.1:{}", sshd.port);

    // Without the certificate: refused, outcome auth-failed.
    let base = [
        "-H",
        target.as_str(),
        "--no-agent",
        "--known-hosts",
        known_hosts,
        "-I",
        key.to_str().unwrap(),
    ];
    let out = rexec(&[&base[..], &["--json", "whoami"]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, _) = json_lines(&out);
    let r = &results[&format!("127.0.0.1:{}", sshd.port)];
    assert_eq!(r["outcome"], "auth-failed", "{r}");
    assert_eq!(r["error"]["kind"], "auth", "{r}");

    let out = rexec(
        &[
            &base[..],
            &["--certificate", cert.to_str().unwrap(), "whoami"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(TEST_USER),
        "{}",
        text(&out.stdout)
    );

    // The inventory, with paths relative to its file.
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"id_cli\"]\n\
             certificate_files = [\"cli.cert\"]\nknown_hosts = \"{known_hosts}\"\n\n\
             [hosts]\nweb1 = {{ address = \"127.0.0.1\", port = {} }}\n",
            sshd.port
        ),
    )
    .unwrap();
    let out = rexec(&["-i", inventory.to_str().unwrap(), "--no-agent", "whoami"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(TEST_USER),
        "{}",
        text(&out.stdout)
    );

    // A certificate file that cannot be used stops before connecting (exit 2, as an
    // unusable key file).
    let connections = sshd.log().matches("Connection from").count();
    let out = rexec(
        &[
            &base[..],
            &["--certificate", key.to_str().unwrap(), "whoami"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(sshd.log().matches("Connection from").count(), connections);
    assert!(
        text(&out.stderr).contains(&format!(
            "certificate file {} is not an openssh certificate",
            key.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

/// ssh_config's `CertificateFile` (an absent one is skipped, as OpenSSH does), shown by
/// `--show-config` with its origin.
#[test]
fn ssh_config_certificate_files_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let key = harness::keygen(dir.path(), "id_cfg", "ed25519", "");
    let signed = sign(&ca, &key, "from-config", &["-n", TEST_USER]);
    let cert = dir.path().join("cfg.cert");
    fs::rename(&signed, &cert).unwrap();
    let config = dir.path().join("ssh_config");
    fs::write(
        &config,
        format!(
            "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
             IdentityFile {}\n  CertificateFile {}/absent.cert\n  CertificateFile {}\n  \
             UserKnownHostsFile {}\n",
            sshd.port,
            key.display(),
            dir.path().display(),
            cert.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let c = config.to_str().unwrap();

    let out = rexec(&["-H", "target", "-F", c, "--no-agent", "whoami"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(TEST_USER),
        "{}",
        text(&out.stdout)
    );
    assert!(
        sshd.log()
            .contains("Accepted certificate ID \"from-config\""),
        "{}",
        sshd.log()
    );

    let out = rexec(&["-H", "target", "-F", c, "--show-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = format!(
        "  certificate_files    {}/absent.cert {}  (ssh_config {c}:6)",
        dir.path().display(),
        cert.display()
    );
    assert!(
        text(&out.stdout).lines().any(|l| l == line),
        "missing {line:?} in:\n{}",
        text(&out.stdout)
    );

    // The command line replaces ssh_config's list (not merged with it): only the expired
    // certificate given is offered, and the login fails.
    let expired = dir.path().join("expired.cert");
    let signed = sign(
        &ca,
        &key,
        "expired",
        &["-n", TEST_USER, "-V", "20200101000000Z:20200102000000Z"],
    );
    fs::rename(&signed, &expired).unwrap();
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        c,
        "--no-agent",
        "--json",
        "--certificate",
        expired.to_str().unwrap(),
        "whoami",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, _) = json_lines(&out);
    assert_eq!(results["target"]["outcome"], "auth-failed");
    let message = results["target"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "tried: certificate {} (ID \"expired\"; principals [\"{TEST_USER}\"]; expired at \
             2020-01-02T00:00:00Z;",
            expired.display()
        )),
        "{message}"
    );
    assert!(!message.contains("cfg.cert"), "{message}");
}

/// `IdentitiesOnly yes`: the agent's certificates for keys that are not configured are not
/// offered, as OpenSSH does; without it they log in.
#[test]
fn identities_only_limits_the_agent_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = harness::keygen(dir.path(), "user_ca", "ed25519", "");
    let sshd = server(&ca, &[]);
    let in_agent = harness::keygen(dir.path(), "id_in_agent", "ed25519", "");
    sign(&ca, &in_agent, "in-agent", &["-n", TEST_USER]);
    let agent = SshAgent::start();
    agent.add(&in_agent);
    let configured = harness::keygen(dir.path(), "id_configured", "ed25519", "");
    let config = dir.path().join("ssh_config");
    let write = |identities_only: &str| {
        fs::write(
            &config,
            format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
                 IdentityFile {}\n  IdentityAgent {}\n  IdentitiesOnly {identities_only}\n  \
                 UserKnownHostsFile {}\n",
                sshd.port,
                configured.display(),
                agent.socket.display(),
                sshd.known_hosts.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    let c = config.to_str().unwrap();

    write("no");
    let out = rexec(&["-H", "target", "-F", c, "whoami"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        sshd.log().contains("Accepted certificate ID \"in-agent\""),
        "{}",
        sshd.log()
    );

    write("yes");
    let out = rexec(&["-H", "target", "-F", c, "--json", "whoami"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let (results, _) = json_lines(&out);
    let message = results["target"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "tried: publickey {}, agent (0 of 1 keys: IdentitiesOnly);",
            configured.display()
        )),
        "{message}"
    );
    assert!(!message.contains("certificate"), "{message}");
}
