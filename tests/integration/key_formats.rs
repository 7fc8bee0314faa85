//! Encrypted private keys in every format `ssh-keygen` reads, made by `ssh-keygen` and
//! `openssl` themselves: OpenSSH's format with each cipher, legacy PEM (`Proc-Type:
//! 4,ENCRYPTED`, `DEK-Info`) with each cipher, and encrypted PKCS#8 (PBES2 with PBKDF2 or
//! scrypt). Each key logs into a real sshd with the right passphrase; the wrong one is
//! "wrong passphrase", none is "encrypted and no passphrase". Regression: four of these
//! five formats were refused, legacy PEM with an EC key as "wrong passphrase" with the
//! right passphrase.

use crate::harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Sshd;
use rexec::{Agent, Credentials, ErrorKind, Identity, Secret, Session};

const PASSPHRASE: &str = "correct horse 1";

/// Installs openssl if this machine lacks it.
fn ensure_openssl() {
    let present = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        harness::run(Command::new("apt-get").args(["update", "-qq"]));
        harness::run(
            Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "install",
                    "-y",
                    "-qq",
                    "openssl",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
}

fn sh(script: &str) -> String {
    harness::run(Command::new("sh").args(["-ec", script]))
}

/// How a test key is made: a shell script that writes the private key to `$K` (and may
/// use `$P`, the passphrase, and `$D`, a scratch directory).
struct Case {
    name: &'static str,
    script: &'static str,
    /// Where the public key comes from: ssh-keygen reads the private key, or (ed25519 in
    /// PKCS#8, which OpenSSH 9.2 cannot read) the raw key from openssl.
    public: Public,
}

#[derive(Clone, Copy)]
enum Public {
    SshKeygen,
    OpensslEd25519,
    /// ssh-keygen reads the unencrypted `$D/plain` (it cannot decrypt the key itself).
    Plain,
}

const RSA: &str = "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $D/plain";
const P256: &str = "openssl ecparam -genkey -name prime256v1 -noout -out $D/plain";
const P384: &str = "openssl ecparam -genkey -name secp384r1 -noout -out $D/plain";
const P521: &str = "openssl ecparam -genkey -name secp521r1 -noout -out $D/plain";

fn cases() -> Vec<Case> {
    use Public::*;
    let c = |name, script, public| Case {
        name,
        script,
        public,
    };
    vec![
        // OpenSSH's own format, each cipher ssh-keygen can write.
        c("openssh ed25519 aes256-ctr", "ssh-keygen -q -t ed25519 -N \"$P\" -f $K", SshKeygen),
        c("openssh rsa aes256-ctr", "ssh-keygen -q -t rsa -b 2048 -N \"$P\" -f $K", SshKeygen),
        c("openssh ecdsa aes128-cbc", "ssh-keygen -q -t ecdsa -Z aes128-cbc -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes256-gcm", "ssh-keygen -q -t ed25519 -Z aes256-gcm@openssh.com -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 chacha20-poly1305", "ssh-keygen -q -t ed25519 -Z chacha20-poly1305@openssh.com -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes128-gcm", "ssh-keygen -q -t ed25519 -Z aes128-gcm@openssh.com -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes128-ctr", "ssh-keygen -q -t ed25519 -Z aes128-ctr -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes192-ctr", "ssh-keygen -q -t ed25519 -Z aes192-ctr -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes192-cbc", "ssh-keygen -q -t ed25519 -Z aes192-cbc -N \"$P\" -f $K", SshKeygen),
        c("openssh ed25519 aes256-cbc", "ssh-keygen -q -t ed25519 -Z aes256-cbc -N \"$P\" -f $K", SshKeygen),
        // Legacy PEM from ssh-keygen (AES-128-CBC).
        c("pem rsa ssh-keygen", "ssh-keygen -q -t rsa -b 2048 -m PEM -N \"$P\" -f $K", SshKeygen),
        c("pem ecdsa-256 ssh-keygen", "ssh-keygen -q -t ecdsa -b 256 -m PEM -N \"$P\" -f $K", SshKeygen),
        c("pem ecdsa-384 ssh-keygen", "ssh-keygen -q -t ecdsa -b 384 -m PEM -N \"$P\" -f $K", SshKeygen),
        c("pem ecdsa-521 ssh-keygen", "ssh-keygen -q -t ecdsa -b 521 -m PEM -N \"$P\" -f $K", SshKeygen),
        // Legacy PEM from openssl, each cipher.
        c("pem rsa aes-128-cbc", "$RSA; openssl rsa -traditional -aes128 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem rsa aes-192-cbc", "$RSA; openssl rsa -traditional -aes192 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem rsa aes-256-cbc", "$RSA; openssl rsa -traditional -aes256 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem rsa des-ede3-cbc", "$RSA; openssl rsa -traditional -des3 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem ecdsa-256 aes-256-cbc", "$P256; openssl ec -aes256 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem ecdsa-384 aes-192-cbc", "$P384; openssl ec -aes192 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem ecdsa-521 des-ede3-cbc", "$P521; openssl ec -des3 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pem ecdsa-256 aes-128-cbc", "$P256; openssl ec -aes128 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        // Single DES: OpenSSL 3 keeps it in its legacy provider (and ssh-keygen, on the
        // default provider, cannot read the result).
        c("pem rsa des-cbc", "$RSA; openssl rsa -traditional -des -provider legacy -provider default -in $D/plain -passout \"pass:$P\" -out $K; grep -q 'DEK-Info: DES-CBC,' $K", Plain),
        // Encrypted PKCS#8 from ssh-keygen (PBES2, PBKDF2-HMAC-SHA256, AES-128-CBC).
        c("pkcs8 rsa ssh-keygen", "ssh-keygen -q -t rsa -b 2048 -m PKCS8 -N \"$P\" -f $K", SshKeygen),
        c("pkcs8 ecdsa ssh-keygen", "ssh-keygen -q -t ecdsa -m PKCS8 -N \"$P\" -f $K", SshKeygen),
        // Encrypted PKCS#8 from openssl: its defaults, other PRFs, ciphers and scrypt.
        c("pkcs8 rsa openssl pkey -aes256", "$RSA; openssl pkey -aes256 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 rsa openssl rsa -aes256", "$RSA; openssl rsa -aes256 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 rsa default", "$RSA; openssl pkcs8 -topk8 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 rsa aes-128-cbc hmacWithSHA1", "$RSA; openssl pkcs8 -topk8 -v2 aes-128-cbc -v2prf hmacWithSHA1 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 rsa des-ede3-cbc", "$RSA; openssl pkcs8 -topk8 -v2 des3 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 ecdsa-256 aes-256-cbc", "$P256; openssl pkcs8 -topk8 -v2 aes-256-cbc -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 ecdsa-384 aes-192-cbc hmacWithSHA512", "$P384; openssl pkcs8 -topk8 -v2 aes-192-cbc -v2prf hmacWithSHA512 -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 ecdsa-521 scrypt", "$P521; openssl pkcs8 -topk8 -scrypt -in $D/plain -passout \"pass:$P\" -out $K", SshKeygen),
        c("pkcs8 ed25519 aes-256-cbc", "openssl genpkey -algorithm ed25519 -out $D/plain; openssl pkcs8 -topk8 -v2 aes-256-cbc -in $D/plain -passout \"pass:$P\" -out $K", OpensslEd25519),
        c("pkcs8 ed25519 scrypt", "openssl genpkey -algorithm ed25519 -out $D/plain; openssl pkcs8 -topk8 -scrypt -in $D/plain -passout \"pass:$P\" -out $K", OpensslEd25519),
    ]
}

/// Makes the key of `case` in `dir` (mode 0600) and its `.pub`; returns the key path.
fn make_key(dir: &Path, index: usize, case: &Case) -> PathBuf {
    let scratch = dir.join(format!("scratch{index}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let key = dir.join(format!("key{index}"));
    let script = case
        .script
        .replace("$RSA", RSA)
        .replace("$P256", P256)
        .replace("$P384", P384)
        .replace("$P521", P521);
    harness::run(
        Command::new("sh")
            .args(["-ec", &script])
            .env("K", &key)
            .env("P", PASSPHRASE)
            .env("D", &scratch),
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = match case.public {
        Public::SshKeygen => harness::run(
            Command::new("ssh-keygen")
                .arg("-y")
                .arg("-P")
                .arg(PASSPHRASE)
                .arg("-f")
                .arg(&key),
        ),
        Public::OpensslEd25519 => {
            let der = Command::new("openssl")
                .args(["pkey", "-pubout", "-outform", "DER", "-passin"])
                .arg(format!("pass:{PASSPHRASE}"))
                .arg("-in")
                .arg(&key)
                .output()
                .unwrap();
            assert!(der.status.success());
            // SubjectPublicKeyInfo of ed25519: 12 bytes of header, then the 32-byte key.
            let raw = &der.stdout[der.stdout.len() - 32..];
            let mut blob = Vec::new();
            for part in [&b"ssh-ed25519"[..], raw] {
                blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
                blob.extend_from_slice(part);
            }
            format!("ssh-ed25519 {}\n", data_encoding::BASE64.encode(&blob))
        }
        Public::Plain => {
            let plain = scratch.join("plain");
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o600)).unwrap();
            harness::run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&plain))
        }
    };
    std::fs::write(key.with_extension("pub"), public).unwrap();
    key
}

async fn whoami(sshd: &Sshd, id: Identity) -> rexec::Result<String> {
    let mut creds = Credentials::new();
    creds = creds.identity(id).agent(Agent::Off);
    let session = Session::connect(&sshd.bare_options().credentials(creds)).await?;
    let out = session.raw_command("id -un").output().await?;
    Ok(out.stdout_lossy().trim().to_owned())
}

/// The table: format × key type × cipher, each against the same server.
#[tokio::test]
async fn encrypted_keys_of_every_format_log_in_with_the_right_passphrase_only() {
    ensure_openssl();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (index, case) in cases().iter().enumerate() {
        let key = make_key(dir.path(), index, case);
        sshd.authorize(&key);

        // The right passphrase: logs in, with the key ssh-keygen sees.
        match Identity::from_file(&key, Some(&Secret::new(PASSPHRASE))) {
            Ok(id) => {
                let expected = sh(&format!("ssh-keygen -l -f {}.pub", key.display()));
                if !expected.contains(&id.fingerprint()) {
                    failures.push(format!(
                        "{}: fingerprint {} is not ssh-keygen's {expected}",
                        case.name,
                        id.fingerprint()
                    ));
                }
                match whoami(&sshd, id).await {
                    Ok(user) if user == harness::TEST_USER => {}
                    other => failures.push(format!("{}: login: {other:?}", case.name)),
                }
            }
            Err(e) => failures.push(format!("{}: right passphrase: {e:#}", case.name)),
        }

        // A wrong one: KeyFile, "wrong passphrase".
        match Identity::from_file(&key, Some(&Secret::new("correct horse 2"))) {
            Err(e)
                if e.kind() == ErrorKind::KeyFile
                    && e.to_string()
                        == format!("wrong passphrase for key file {}", key.display()) => {}
            other => failures.push(format!("{}: wrong passphrase: {other:?}", case.name)),
        }

        // None: KeyFile, "encrypted and no passphrase".
        match Identity::from_file(&key, None) {
            Err(e)
                if e.kind() == ErrorKind::KeyFile
                    && e.to_string()
                        == format!(
                            "key file {} is encrypted and no passphrase was given",
                            key.display()
                        ) => {}
            other => failures.push(format!("{}: no passphrase: {other:?}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same key files unencrypted (PEM and PKCS#8 from openssl and ssh-keygen) still load
/// without asking for a passphrase.
#[tokio::test]
async fn unencrypted_pem_and_pkcs8_keys_log_in_without_a_passphrase() {
    ensure_openssl();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let plain = [
        Case {
            name: "pem rsa",
            script: "ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f $K",
            public: Public::SshKeygen,
        },
        Case {
            name: "pem ecdsa",
            script: "$P384; cp $D/plain $K",
            public: Public::SshKeygen,
        },
        Case {
            name: "pkcs8 rsa",
            script: "$RSA; cp $D/plain $K",
            public: Public::SshKeygen,
        },
        Case {
            name: "pkcs8 ecdsa",
            script: "ssh-keygen -q -t ecdsa -m PKCS8 -N '' -f $K",
            public: Public::SshKeygen,
        },
    ];
    for (index, case) in plain.iter().enumerate() {
        let key = make_key(dir.path(), index, case);
        sshd.authorize(&key);
        let asked = std::cell::Cell::new(false);
        let id = Identity::from_file_with(&key, || {
            asked.set(true);
            Ok(None)
        })
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        assert!(!asked.get(), "{}: asked for a passphrase", case.name);
        assert_eq!(
            whoami(&sshd, id).await.unwrap(),
            harness::TEST_USER,
            "{}",
            case.name
        );
    }
}

/// A cipher or scheme rexec cannot decrypt is named, never called a wrong passphrase.
#[test]
fn an_unsupported_cipher_is_named() {
    ensure_openssl();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "$RSA; openssl rsa -traditional -camellia256 -in $D/plain -passout \"pass:$P\" -out $K",
            "is encrypted with an unsupported cipher CAMELLIA-256-CBC",
        ),
        (
            "$P256; openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in $D/plain -passout \"pass:$P\" -out $K",
            "is encrypted with an unsupported encryption pbeWithSHAAnd3-KeyTripleDES-CBC (PKCS#12)",
        ),
        (
            "$P256; openssl pkcs8 -topk8 -v2 camellia-256-cbc -in $D/plain -passout \"pass:$P\" -out $K",
            "is encrypted with an unsupported encryption PBES2 with PBKDF2 with camellia-256-cbc",
        ),
        (
            "ssh-keygen -q -t ed25519 -Z 3des-cbc -N \"$P\" -f $K",
            "is encrypted with an unsupported cipher 3des-cbc (supported: aes128-ctr,",
        ),
    ];
    for (index, (script, expected)) in cases.iter().enumerate() {
        let key = make_key(
            dir.path(),
            index,
            &Case {
                name: "unsupported",
                script,
                public: Public::SshKeygen,
            },
        );
        let err = Identity::from_file(&key, Some(&Secret::new(PASSPHRASE))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyFile, "{err:#}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("key file {} {expected}", key.display())),
            "{message}"
        );
    }
}

/// The command line with `--key-passphrase-env`: a legacy PEM key and an encrypted PKCS#8
/// key log in; a wrong passphrase stops the run before it starts (exit 2) saying so.
#[test]
fn the_command_line_reads_encrypted_pem_and_pkcs8_keys() {
    ensure_openssl();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        Case {
            name: "pem ecdsa",
            script: "$P256; openssl ec -aes256 -in $D/plain -passout \"pass:$P\" -out $K",
            public: Public::SshKeygen,
        },
        Case {
            name: "pkcs8 rsa",
            script: "$RSA; openssl pkcs8 -topk8 -in $D/plain -passout \"pass:$P\" -out $K",
            public: Public::SshKeygen,
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let key = make_key(dir.path(), index, case);
        sshd.authorize(&key);
        let rexec = |passphrase: &str| {
            Command::new(env!("CARGO_BIN_EXE_rexec"))
                .args([
                    "-H",
                    &format!("{}@127.0.0.1:{}", harness::TEST_USER, sshd.port),
                ])
                .arg("--known-hosts")
                .arg(&sshd.known_hosts)
                .arg("-I")
                .arg(&key)
                .args([
                    "--no-agent",
                    "--key-passphrase-env",
                    "REXEC_TEST_PASSPHRASE",
                ])
                .args(["--json", "id -un"])
                .env("REXEC_TEST_PASSPHRASE", passphrase)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        };
        let out = rexec(PASSPHRASE);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", case.name);
        assert!(
            stdout.contains("\"outcome\":\"ok\""),
            "{}: {stdout}",
            case.name
        );
        assert!(
            stdout.contains(harness::TEST_USER),
            "{}: {stdout}",
            case.name
        );

        // Keys are loaded before anything connects: a wrong passphrase stops the run.
        let out = rexec("not it");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {out:?}", case.name);
        assert!(
            stderr.contains(&format!("wrong passphrase for key file {}", key.display())),
            "{}: {stderr}",
            case.name
        );
    }
}

/// An OpenSSH-format key whose key derivation would run for years (2^32 - 1 bcrypt rounds)
/// is refused at once, naming the cost.
#[test]
fn a_key_asking_for_endless_key_derivation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = harness::keygen(dir.path(), "id_costly", "ed25519", PASSPHRASE);
    let text = std::fs::read_to_string(&key).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut blob = data_encoding::BASE64.decode(body.as_bytes()).unwrap();
    // "openssh-key-v1\0", string "aes256-ctr", string "bcrypt", then the kdf options:
    // uint32 length, string salt (16 bytes), uint32 rounds.
    let at = 15 + (4 + 10) + (4 + 6) + 4 + (4 + 16);
    assert_eq!(&blob[at..at + 4], &16u32.to_be_bytes(), "unexpected layout");
    blob[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let encoded = data_encoding::BASE64.encode(&blob);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(70)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        &key,
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    // A hang guard: a thread that may never return does not hold the test.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = key.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Identity::from_file(&path, Some(&Secret::new(PASSPHRASE))));
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("hung deriving the key")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert_eq!(
        err.to_string(),
        format!(
            "key file {} asks for 4294967295 bcrypt-pbkdf rounds to decrypt (at most 4096; \
             ssh-keygen's default is 16)",
            key.display()
        )
    );
}
