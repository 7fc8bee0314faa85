//! Host certificates against a real sshd (`HostCertificate`, signed with `ssh-keygen -s`):
//! `@cert-authority` lines in known_hosts, each way a certificate fails, `@revoked` keys and
//! CAs, under each policy; and the same cases run through OpenSSH's own `ssh`, whose
//! decisions rexec must match.

use crate::harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::cli::{json_lines, rexec, text};
use harness::{HostCertificateSpec, Sshd, SshdConfig};
use rexec::{ErrorKind, HostKeyPolicy, KnownHosts, Session};

const EXPIRED: &str = "20200101000000Z:20200102000000Z";
const FUTURE: &str = "20990101000000Z:20990102000000Z";

/// `TYPE BASE64` of a public key file.
fn public_line(public: &Path) -> String {
    let text = fs::read_to_string(public).unwrap();
    let mut parts = text.split_whitespace();
    format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
}

/// `ssh-ed25519 SHA256:...` of a public key file.
fn fingerprint(public: &Path) -> String {
    let out = harness::run(Command::new("ssh-keygen").arg("-lf").arg(public));
    let fields: Vec<&str> = out.split_whitespace().collect();
    let algo = match *fields.last().unwrap() {
        "(ED25519)" => "ssh-ed25519",
        "(RSA)" => "ssh-rsa",
        "(ECDSA)" => "ecdsa-sha2-nistp256",
        other => panic!("{other}"),
    };
    format!("{algo} {}", fields[1])
}

/// A CA key pair in `dir`.
fn new_ca(dir: &Path, name: &str) -> PathBuf {
    harness::keygen(dir, name, "ed25519", "")
}

/// A server whose host keys are signed by `ca` with `args` (e.g. `-h -n 127.0.0.1`).
fn server(ca: &Path, args: &[&str], host_key_types: Vec<&'static str>) -> Sshd {
    Sshd::start_with(SshdConfig {
        host_key_types,
        host_certificate: Some(HostCertificateSpec {
            ca: ca.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }),
        ..SshdConfig::default()
    })
}

fn cert_authority_line(pattern: &str, ca: &Path) -> String {
    format!(
        "@cert-authority {pattern} {}\n",
        public_line(&ca.with_extension("pub"))
    )
}

fn plain_line(sshd: &Sshd, public: &Path) -> String {
    format!("[127.0.0.1]:{} {}\n", sshd.port, public_line(public))
}

async fn connect(sshd: &Sshd, known_hosts: &Path, policy: HostKeyPolicy) -> rexec::Result<String> {
    let options = sshd
        .options()
        .known_hosts(KnownHosts::file(known_hosts))
        .host_key_policy(policy);
    let session = Session::connect(&options).await?;
    let out = session.raw_command("echo ok").output().await?;
    Ok(String::from_utf8(out.stdout).unwrap())
}

fn host_public(sshd: &Sshd) -> PathBuf {
    sshd.host_keys[0].with_extension("pub")
}

#[tokio::test]
async fn a_valid_host_certificate_is_accepted_with_only_the_ca_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    // Each key type: the certificate algorithm is negotiated for it (rsa-sha2-512-cert for
    // RSA), and only the CA is in known_hosts.
    for key_type in ["ed25519", "ecdsa", "rsa"] {
        let sshd = server(&ca, &["-h", "-n", "127.0.0.1"], vec![key_type]);
        for pattern in [
            "127.0.0.1".to_owned(),
            format!("[127.0.0.1]:{}", sshd.port),
            "*".to_owned(),
            "127.0.0.*,!10.0.0.1".to_owned(),
        ] {
            let kh = dir.path().join(format!("kh-{key_type}"));
            let text = format!("# only a CA\n{}", cert_authority_line(&pattern, &ca));
            fs::write(&kh, &text).unwrap();
            for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
                let out = connect(&sshd, &kh, policy).await;
                assert_eq!(out.unwrap(), "ok\n", "{key_type} {pattern} {policy}");
                // Nothing learned: the certificate was accepted, not its plain key.
                assert_eq!(fs::read_to_string(&kh).unwrap(), text);
            }
        }
    }
}

#[tokio::test]
async fn a_ca_line_for_other_hosts_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    let sshd = server(&ca, &["-h", "-n", "127.0.0.1"], vec!["ed25519"]);
    let kh = dir.path().join("kh");
    fs::write(&kh, cert_authority_line("*.example.com,!127.0.0.1", &ca)).unwrap();
    let err = connect(&sshd, &kh, HostKeyPolicy::Strict)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
    // No @cert-authority line matches the host, so no certificate algorithm was offered:
    // the server showed its plain key.
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "127.0.0.1:{}: host key {} is not in known_hosts ({}); refusing under the strict \
             policy (use accept-new to learn it)",
            sshd.port,
            fingerprint(&host_public(&sshd)),
            kh.display()
        )
    );
}

/// The certificate authorities of a test: `host_ca` (ed25519) and `rsa_ca` are trusted
/// for 127.0.0.1, `other_ca` is not.
struct Cas {
    host_ca: PathBuf,
    rsa_ca: PathBuf,
    other_ca: PathBuf,
}

impl Cas {
    fn new(dir: &Path) -> Cas {
        Cas {
            host_ca: new_ca(dir, "host_ca"),
            rsa_ca: harness::keygen(dir, "rsa_ca", "rsa", ""),
            other_ca: new_ca(dir, "other_ca"),
        }
    }

    fn get(&self, name: &str) -> &Path {
        match name {
            "host_ca" => &self.host_ca,
            "rsa_ca" => &self.rsa_ca,
            "other_ca" => &self.other_ca,
            other => panic!("{other}"),
        }
    }

    /// The two `@cert-authority` lines for 127.0.0.1.
    fn trusted_lines(&self) -> String {
        format!(
            "{}{}",
            cert_authority_line("127.0.0.1", &self.host_ca),
            cert_authority_line("127.0.0.1", &self.rsa_ca)
        )
    }
}

/// One way a certificate can fail, and the reason rexec gives.
struct Failing {
    name: &'static str,
    sign: Vec<&'static str>,
    /// The CA that signs (see [`Cas`]).
    signer: &'static str,
    reason: fn(&Sshd, &Path) -> String,
}

fn failing_cases() -> Vec<Failing> {
    vec![
        Failing {
            name: "expired",
            sign: vec!["-h", "-n", "127.0.0.1", "-V", EXPIRED],
            signer: "host_ca",
            reason: |_, _| {
                "host certificate \"rexec-test-host\" expired at 2020-01-02T00:00:00Z".to_owned()
            },
        },
        Failing {
            name: "not yet valid",
            sign: vec!["-h", "-n", "127.0.0.1", "-V", FUTURE],
            signer: "host_ca",
            reason: |_, _| {
                "host certificate \"rexec-test-host\" is not valid before 2099-01-01T00:00:00Z"
                    .to_owned()
            },
        },
        Failing {
            name: "wrong principal",
            sign: vec!["-h", "-n", "other,web1.example.com"],
            signer: "host_ca",
            reason: |_, _| {
                "host certificate \"rexec-test-host\" is for principals [\"other\", \
                 \"web1.example.com\"], not \"127.0.0.1\""
                    .to_owned()
            },
        },
        Failing {
            name: "user certificate",
            sign: vec!["-n", "127.0.0.1"],
            signer: "host_ca",
            reason: |_, _| {
                "host certificate \"rexec-test-host\" is a user certificate, not a host \
                 certificate"
                    .to_owned()
            },
        },
        Failing {
            name: "unknown CA",
            sign: vec!["-h", "-n", "127.0.0.1"],
            signer: "other_ca",
            reason: |sshd, signer| {
                format!(
                    "host certificate \"rexec-test-host\" is signed by CA {}, which no \
                     @cert-authority line for [127.0.0.1]:{} or 127.0.0.1 names",
                    fingerprint(&signer.with_extension("pub")),
                    sshd.port
                )
            },
        },
        Failing {
            name: "sha-1 signature",
            sign: vec!["-h", "-n", "127.0.0.1", "-t", "ssh-rsa"],
            signer: "rsa_ca",
            reason: |_, _| {
                "host certificate \"rexec-test-host\" is signed with ssh-rsa, which OpenSSH's \
                 CASignatureAlgorithms does not allow by default"
                    .to_owned()
            },
        },
    ]
}

/// Every failing certificate under every policy: the plain key inside is then checked
/// like any host key, as in OpenSSH (a recorded plain key lets it in, another recorded key
/// is a changed key; off: accepted), except that accept-new does not learn it: strict and
/// accept-new refuse it, naming the certificate's fault.
#[tokio::test]
async fn a_failing_certificate_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::new(dir.path());
    for case in failing_cases() {
        let signer = cas.get(case.signer);
        let sshd = server(signer, &case.sign, vec!["ed25519"]);
        let kh = dir.path().join("kh");
        let ca_only = cas.trusted_lines();
        let reason = (case.reason)(&sshd, signer);
        let plain = fingerprint(&host_public(&sshd));

        // strict, nothing else recorded: refused, with the certificate's fault.
        fs::write(&kh, &ca_only).unwrap();
        let err = connect(&sshd, &kh, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyUnknown, "{}", case.name);
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{}: {reason}; its plain key {plain} is not in known_hosts ({}) \
                 either; refusing under the strict policy (renew the certificate or record \
                 the key)",
                sshd.port,
                kh.display()
            ),
            "{}",
            case.name
        );
        assert!(!sshd.log().contains("Accepted publickey"), "{}", case.name);

        // accept-new: refused too, with the fault, and nothing learned (OpenSSH would
        // learn the plain key).
        fs::write(&kh, &ca_only).unwrap();
        let err = connect(&sshd, &kh, HostKeyPolicy::AcceptNew)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyUnknown, "{}", case.name);
        assert_eq!(
            err.to_string(),
            format!(
                "127.0.0.1:{}: {reason}; its plain key {plain} is not in known_hosts ({}) \
                 either; refusing under accept-new, which does not learn the key of a host \
                 whose certificate failed (renew the certificate or record the key)",
                sshd.port,
                kh.display()
            ),
            "{}",
            case.name
        );
        assert_eq!(fs::read_to_string(&kh).unwrap(), ca_only, "{}", case.name);
        assert!(!sshd.log().contains("Accepted publickey"), "{}", case.name);

        // off: accepted, nothing written.
        fs::write(&kh, &ca_only).unwrap();
        let out = connect(&sshd, &kh, HostKeyPolicy::Off).await;
        assert_eq!(out.unwrap(), "ok\n", "{}", case.name);
        assert_eq!(fs::read_to_string(&kh).unwrap(), ca_only, "{}", case.name);

        // The plain key recorded as well: accepted under strict.
        fs::write(
            &kh,
            format!("{ca_only}{}", plain_line(&sshd, &host_public(&sshd))),
        )
        .unwrap();
        let out = connect(&sshd, &kh, HostKeyPolicy::Strict).await;
        assert_eq!(out.unwrap(), "ok\n", "{}", case.name);

        // Another plain key recorded: changed, refused under strict and accept-new.
        let other = harness::keygen(
            dir.path(),
            &format!("other-{}", case.name.replace(' ', "-")),
            "ed25519",
            "",
        );
        fs::write(
            &kh,
            format!(
                "{ca_only}{}",
                plain_line(&sshd, &other.with_extension("pub"))
            ),
        )
        .unwrap();
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
            let err = connect(&sshd, &kh, policy).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{}", case.name);
            assert_eq!(
                err.to_string(),
                format!(
                    "127.0.0.1:{}: {reason}; HOST KEY CHANGED: the server offered {plain}, \
                     which does not match the key recorded at {}:3; refusing to connect \
                     (someone may be intercepting the connection; if the host was really \
                     reinstalled, remove that line)",
                    sshd.port,
                    kh.display()
                ),
                "{}",
                case.name
            );
        }
    }
}

/// A revoked CA or a revoked certified key is refused under every policy, whatever else
/// is recorded.
#[tokio::test]
async fn revoked_cas_and_keys_are_refused_under_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    let sshd = server(&ca, &["-h", "-n", "127.0.0.1"], vec!["ed25519"]);
    let kh = dir.path().join("kh");
    let host = host_public(&sshd);
    let cases = [
        (
            format!(
                "{}@revoked * {}\n",
                cert_authority_line("127.0.0.1", &ca),
                public_line(&ca.with_extension("pub"))
            ),
            format!(
                "host certificate \"rexec-test-host\" is signed by CA {}, which is marked \
                 @revoked in {}:2",
                fingerprint(&ca.with_extension("pub")),
                kh.display()
            ),
        ),
        (
            format!(
                "@revoked\t*\t{}\n{}{}",
                public_line(&host),
                cert_authority_line("127.0.0.1", &ca),
                plain_line(&sshd, &host)
            ),
            format!(
                "host certificate \"rexec-test-host\" certifies key {}, which is marked \
                 @revoked in {}:1",
                fingerprint(&host),
                kh.display()
            ),
        ),
    ];
    for (text, reason) in cases {
        for policy in [
            HostKeyPolicy::Strict,
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::Off,
        ] {
            fs::write(&kh, &text).unwrap();
            let err = connect(&sshd, &kh, policy).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::HostKeyChanged);
            assert_eq!(
                err.to_string(),
                format!("127.0.0.1:{}: {reason}", sshd.port)
            );
            assert_eq!(fs::read_to_string(&kh).unwrap(), text);
        }
    }
    assert!(!sshd.log().contains("Accepted publickey"));
}

/// A certificate with a critical option (ssh-keygen puts none in host certificates, so it
/// is made with ssh-key and served by sshd): refused as OpenSSH refuses it.
#[tokio::test]
async fn a_host_certificate_with_critical_options_is_not_accepted() {
    use rexec_test_cert::sign_with_critical_option;
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    // The harness's own host key is ECDSA; ours is an ed25519 key with the crafted
    // certificate (rexec offers certificate algorithms first, so sshd presents it).
    let host_key = harness::keygen(dir.path(), "crafted_host", "ed25519", "");
    let cert = dir.path().join("crafted_host-cert.pub");
    sign_with_critical_option(&ca, &host_key.with_extension("pub"), &cert);
    let sshd = Sshd::start_with(SshdConfig {
        host_key_types: vec!["ecdsa"],
        extra: vec![
            format!("HostKey {}", host_key.display()),
            format!("HostCertificate {}", cert.display()),
        ],
        ..SshdConfig::default()
    });
    let kh = dir.path().join("kh");
    fs::write(&kh, cert_authority_line("127.0.0.1", &ca)).unwrap();
    let err = connect(&sshd, &kh, HostKeyPolicy::Strict)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: host certificate \"crafted\" has critical options (force-command), \
             which OpenSSH refuses in a host certificate; its plain key {} is not in \
             known_hosts ({}) either; refusing under the strict policy (renew the \
             certificate or record the key)",
            sshd.port,
            fingerprint(&host_key.with_extension("pub")),
            kh.display()
        )
    );
}

mod rexec_test_cert {
    use std::path::Path;

    use russh::keys::ssh_key::certificate::{Builder, CertType};
    use russh::keys::ssh_key::{PrivateKey, PublicKey};

    /// A host certificate for `public` signed by `ca` with a `force-command` critical
    /// option, valid forever for 127.0.0.1.
    pub fn sign_with_critical_option(ca: &Path, public: &Path, out: &Path) {
        let ca = PrivateKey::from_openssh(std::fs::read_to_string(ca).unwrap()).unwrap();
        let public = PublicKey::from_openssh(&std::fs::read_to_string(public).unwrap()).unwrap();
        let mut builder =
            Builder::new([7u8; 32].to_vec(), public.key_data().clone(), 0, u64::MAX).unwrap();
        builder.cert_type(CertType::Host).unwrap();
        builder.key_id("crafted").unwrap();
        builder.valid_principal("127.0.0.1").unwrap();
        builder.critical_option("force-command", "true").unwrap();
        let cert = builder.sign(&ca).unwrap();
        std::fs::write(out, cert.to_openssh().unwrap()).unwrap();
    }
}

/// OpenSSH's `ssh` on the same server and known_hosts: whether it connects, and the
/// known_hosts file afterwards.
fn openssh_decides(sshd: &Sshd, known_hosts: &Path, policy: &str) -> (bool, String) {
    let status = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&sshd.user_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o"])
        .arg(format!("StrictHostKeyChecking={policy}"))
        .args(["-o", "ConnectTimeout=20", "-p"])
        .arg(sshd.port.to_string())
        .arg(format!("{}@127.0.0.1", harness::TEST_USER))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    (status.success(), fs::read_to_string(known_hosts).unwrap())
}

/// The same cases through OpenSSH 9.2's `ssh` and through rexec, with the same
/// known_hosts file: they decide alike (connect or not, and what accept-new writes). The
/// differences, all documented: with checking off, OpenSSH records new keys and lets a
/// revoked key in with passwords disabled; rexec records nothing and refuses revoked keys.
/// Under accept-new, OpenSSH learns the plain key of a host whose certificate failed;
/// rexec refuses it.
#[tokio::test]
async fn rexec_decides_as_openssh_does() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::new(dir.path());
    let ca = cas.host_ca.clone();
    let mut servers: Vec<(String, Sshd, PathBuf)> = vec![(
        "valid".to_owned(),
        server(&ca, &["-h", "-n", "127.0.0.1"], vec!["ed25519"]),
        ca.clone(),
    )];
    for case in failing_cases() {
        let signer = cas.get(case.signer);
        servers.push((
            case.name.to_owned(),
            server(signer, &case.sign, vec!["ed25519"]),
            signer.to_owned(),
        ));
    }
    let mut compared = 0;
    for (name, sshd, signer) in &servers {
        let host = host_public(sshd);
        let other = harness::keygen(
            dir.path(),
            &format!("k-{}", name.replace(' ', "-")),
            "ed25519",
            "",
        );
        let ca_line = cas.trusted_lines();
        let files = [
            ("ca only", ca_line.clone(), false),
            (
                "ca and plain key",
                format!("{ca_line}{}", plain_line(sshd, &host)),
                false,
            ),
            (
                "ca and another key",
                format!(
                    "{ca_line}{}",
                    plain_line(sshd, &other.with_extension("pub"))
                ),
                false,
            ),
            (
                "revoked ca",
                format!(
                    "{ca_line}@revoked * {}\n",
                    public_line(&signer.with_extension("pub"))
                ),
                true,
            ),
            (
                "revoked key",
                format!("{ca_line}@revoked * {}\n", public_line(&host)),
                true,
            ),
        ];
        for (file_name, text, revoked) in &files {
            for (policy, openssh_policy) in [
                (HostKeyPolicy::Strict, "yes"),
                (HostKeyPolicy::AcceptNew, "accept-new"),
                (HostKeyPolicy::Off, "no"),
            ] {
                let theirs = dir.path().join("kh-openssh");
                let ours = dir.path().join("kh-rexec");
                fs::write(&theirs, text).unwrap();
                fs::write(&ours, text).unwrap();
                let (ssh_ok, ssh_file) = openssh_decides(sshd, &theirs, openssh_policy);
                let rexec_ok = connect(sshd, &ours, policy).await.is_ok();
                let rexec_file = fs::read_to_string(&ours).unwrap();
                let what = format!("{name} / {file_name} / {policy}");
                if policy == HostKeyPolicy::Off && *revoked {
                    // OpenSSH: warns and connects with passwords disabled; rexec refuses.
                    assert!(ssh_ok && !rexec_ok, "{what}");
                    continue;
                }
                if policy == HostKeyPolicy::AcceptNew && name != "valid" && *file_name == "ca only"
                {
                    // OpenSSH learns the plain key of a failing certificate; rexec refuses.
                    assert!(ssh_ok && !rexec_ok, "{what}");
                    assert_eq!(&rexec_file, text, "{what}");
                    assert_ne!(&ssh_file, text, "{what}");
                    continue;
                }
                assert_eq!(rexec_ok, ssh_ok, "{what}");
                if policy != HostKeyPolicy::Off {
                    assert_eq!(rexec_file, ssh_file, "{what}");
                } else {
                    assert_eq!(&rexec_file, text, "{what}");
                }
                compared += 1;
            }
        }
    }
    // 7 servers x 5 files x 3 policies, less the 14 revoked-and-off cases and the 6
    // failing certificates under accept-new with only the CAs recorded.
    assert_eq!(compared, 7 * 5 * 3 - 14 - 6);
}

#[test]
fn the_command_line_names_the_certificate_fault() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    let sshd = server(
        &ca,
        &["-h", "-n", "127.0.0.1", "-V", EXPIRED],
        vec!["ed25519"],
    );
    let kh = dir.path().join("kh");
    fs::write(&kh, cert_authority_line("127.0.0.1", &ca)).unwrap();
    let target = format!("{}@127.0.0.1:{}", harness::TEST_USER, sshd.port);
    for policy in ["strict", "accept-new"] {
        let out = rexec(&[
            "-H",
            &target,
            "--no-agent",
            "-I",
            sshd.user_key.to_str().unwrap(),
            "--known-hosts",
            kh.to_str().unwrap(),
            "--host-key-policy",
            policy,
            "--json",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let (results, _) = json_lines(&out);
        let r = &results[&format!("127.0.0.1:{}", sshd.port)];
        assert_eq!(r["outcome"], "host-key-rejected", "{r}");
        assert_eq!(r["error"]["kind"], "host-key-unknown", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "host certificate \"rexec-test-host\" expired at 2020-01-02T00:00:00Z; its \
                 plain key {} is not in known_hosts ({}) either",
                fingerprint(&host_public(&sshd)),
                kh.display()
            )),
            "{message}"
        );
        assert_eq!(
            fs::read_to_string(&kh).unwrap(),
            cert_authority_line("127.0.0.1", &ca)
        );
    }
}

/// With `HostKeyAlias` the alias is the host name a certificate is checked for (its
/// principals and the `@cert-authority` patterns), as in OpenSSH.
#[tokio::test]
async fn the_host_key_alias_is_the_name_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "host_ca");
    let sshd = server(&ca, &["-h", "-n", "web1.example"], vec!["ed25519"]);
    let kh = dir.path().join("kh");
    let text = cert_authority_line("web1.example", &ca);
    fs::write(&kh, &text).unwrap();
    let options = |alias: Option<&str>| {
        let o = sshd
            .options()
            .known_hosts(KnownHosts::file(&kh))
            .host_key_policy(HostKeyPolicy::Strict);
        match alias {
            Some(a) => o.host_key_alias(a),
            None => o,
        }
    };
    let session = Session::connect(&options(Some("web1.example")))
        .await
        .unwrap();
    let out = session.raw_command("echo ok").output().await.unwrap();
    assert_eq!(out.stdout, b"ok\n");
    assert_eq!(fs::read_to_string(&kh).unwrap(), text);

    // Another alias: the certificate is not for it.
    fs::write(&kh, cert_authority_line("*", &ca)).unwrap();
    let err = Session::connect(&options(Some("web2.example")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
    assert!(
        err.to_string().contains(
            "host certificate \"rexec-test-host\" is for principals [\"web1.example\"], not \
             \"web2.example\"; its plain key"
        ),
        "{err}"
    );
    // No alias: checked for the address connected to.
    let err = Session::connect(&options(None)).await.unwrap_err();
    assert!(
        err.to_string().contains(
            "host certificate \"rexec-test-host\" is for principals [\"web1.example\"], not \
             \"127.0.0.1\"; its plain key"
        ),
        "{err}"
    );
}
