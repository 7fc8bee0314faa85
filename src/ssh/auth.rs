//! Credentials: private key files (loaded and decrypted once, shared by every connection)
//! and their OpenSSH user certificates, the ssh-agent, and a password used for password and
//! keyboard-interactive authentication.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::{ssh_key, Certificate, PrivateKey};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::ssh::key_file::{self, DecryptError};
use crate::ssh::known_hosts::{describe_key, fingerprint, unix_time};

/// Decodes the text of a key file, asking `passphrase` only when the key is encrypted.
fn decode_key(
    path: &Path,
    text: &str,
    passphrase: impl FnOnce() -> Result<Option<Secret>>,
) -> Result<PrivateKey> {
    let fail = |msg: String| Error::new(ErrorKind::KeyFile, msg);
    let unusable = |e: russh::keys::Error| {
        fail(format!(
            "key file {} is not a usable private key",
            path.display()
        ))
        .with_source(e)
    };
    let no_passphrase = || {
        fail(format!(
            "key file {} is encrypted and no passphrase was given",
            path.display()
        ))
    };
    let wrong_passphrase = || fail(format!("wrong passphrase for key file {}", path.display()));

    // Legacy PEM and encrypted PKCS#8: decrypted here, then decoded by russh.
    if let Some(encrypted) = key_file::classify(text) {
        let passphrase = passphrase()?.ok_or_else(no_passphrase)?;
        let plain =
            key_file::decrypt(&encrypted, passphrase.expose().as_bytes()).map_err(|e| match e {
                DecryptError::WrongPassphrase => wrong_passphrase(),
                DecryptError::Unsupported(what) => fail(format!(
                    "key file {} is encrypted with an unsupported {what}",
                    path.display()
                )),
                DecryptError::Malformed(what) => {
                    fail(format!("key file {} is damaged: {what}", path.display()))
                }
            })?;
        return russh::keys::decode_secret_key(&plain, None).map_err(unusable);
    }

    // OpenSSH's format (and PuTTY's): russh decrypts these itself.
    match russh::keys::decode_secret_key(text, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            // The file, not the passphrase, chooses the cost of bcrypt-pbkdf.
            if let Some(rounds) = openssh_kdf_rounds(text).filter(|r| *r > MAX_BCRYPT_ROUNDS) {
                return Err(fail(format!(
                    "key file {} asks for {rounds} bcrypt-pbkdf rounds to decrypt (at most \
                     {MAX_BCRYPT_ROUNDS}; ssh-keygen's default is 16)",
                    path.display()
                )));
            }
            let passphrase = passphrase()?.ok_or_else(no_passphrase)?;
            russh::keys::decode_secret_key(text, Some(passphrase.expose())).map_err(|e| {
                match e {
                    // ssh-key reports a cipher it lacks like failed check bytes: name it.
                    russh::keys::Error::SshKey(ssh_key::Error::Crypto) => {
                        match openssh_cipher(text)
                            .filter(|c| !OPENSSH_CIPHERS.contains(&c.as_str()))
                        {
                            Some(cipher) => fail(format!(
                                "key file {} is encrypted with an unsupported cipher {cipher} \
                                 (supported: {})",
                                path.display(),
                                OPENSSH_CIPHERS.join(", ")
                            )),
                            // The check bytes after decryption differ.
                            None => wrong_passphrase(),
                        }
                    }
                    other => unusable(other),
                }
            })
        }
        Err(e) => Err(unusable(e)),
    }
}

/// The ciphers of OpenSSH-format keys that russh (through ssh-key) decrypts.
const OPENSSH_CIPHERS: [&str; 9] = [
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];

/// The most bcrypt-pbkdf rounds accepted for an OpenSSH-format key (each takes about 7 ms
/// here; `ssh-keygen -a` defaults to 16).
const MAX_BCRYPT_ROUNDS: u32 = 4096;

/// The bcrypt-pbkdf rounds an OpenSSH-format key file asks for, if it is one.
fn openssh_kdf_rounds(text: &str) -> Option<u32> {
    match ssh_key::PrivateKey::from_openssh(text).ok()?.kdf() {
        ssh_key::Kdf::Bcrypt { rounds, .. } => Some(*rounds),
        _ => None,
    }
}

/// The cipher an OpenSSH-format key file names, if it is one.
fn openssh_cipher(text: &str) -> Option<String> {
    let key = ssh_key::PrivateKey::from_openssh(text).ok()?;
    Some(key.cipher().as_str().to_owned())
}

/// An OpenSSH user certificate (`ssh-keygen -s CA -I ID -n PRINCIPALS key.pub` writes
/// `key-cert.pub`): a public key signed by a certificate authority that servers trust
/// through `TrustedUserCAKeys`, so that no authorized_keys entry is needed. Cloning is
/// cheap.
#[derive(Clone)]
pub struct UserCertificate {
    path: PathBuf,
    certificate: Arc<Certificate>,
}

impl UserCertificate {
    /// Reads a certificate file (one line, `ssh-ed25519-cert-v01@openssh.com AAAA...`, as
    /// `ssh-keygen -s` writes it). Nothing is checked against the clock or a user here:
    /// the server decides (an expired certificate or one for other principals is still
    /// offered, and described in the error when it is refused).
    ///
    /// # Errors
    /// [`ErrorKind::KeyFile`] naming the file: unreadable, not an OpenSSH certificate, or
    /// a host certificate.
    pub fn from_file(path: impl AsRef<Path>) -> Result<UserCertificate> {
        let path = path.as_ref();
        let fail = |msg: String| Error::new(ErrorKind::KeyFile, msg);
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(format!("cannot read certificate file {}", path.display())).with_source(e)
        })?;
        let certificate = Certificate::from_openssh(text.trim()).map_err(|e| {
            fail(format!(
                "certificate file {} is not an openssh certificate",
                path.display()
            ))
            .with_source(e)
        })?;
        if !certificate.cert_type().is_user() {
            return Err(fail(format!(
                "certificate file {} holds a host certificate, not a user certificate",
                path.display()
            )));
        }
        Ok(UserCertificate {
            path: path.to_owned(),
            certificate: Arc::new(certificate),
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key ID (`ssh-keygen -I`).
    pub fn key_id(&self) -> &str {
        self.certificate.key_id()
    }

    /// The principals (`ssh-keygen -n`): the user names it is valid for.
    pub fn principals(&self) -> &[String] {
        self.certificate.valid_principals()
    }

    /// The SHA-256 fingerprint of the certified public key (`SHA256:...`).
    pub fn fingerprint(&self) -> String {
        self.certificate
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    /// The SHA-256 fingerprint of the certificate authority's key.
    pub fn ca_fingerprint(&self) -> String {
        self.certificate
            .signature_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    pub(crate) fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// What was offered, for an authentication error: the key ID, the principals (and
    /// whether `user` is among them), the validity when it is limited or over, the CA.
    pub(crate) fn describe(&self, user: &str) -> String {
        describe_user_certificate(&self.certificate, user)
    }
}

impl fmt::Debug for UserCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCertificate")
            .field("path", &self.path)
            .field("key_id", &self.key_id())
            .field("principals", &self.principals())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// `ID "alice"; principals ["alice"]; valid until ...; CA ssh-ed25519 SHA256:...`, with
/// what the client can already tell the server will refuse (expired, not yet valid,
/// `user` not among the principals).
pub(crate) fn describe_user_certificate(certificate: &Certificate, user: &str) -> String {
    let mut parts = vec![format!("ID {:?}", certificate.key_id())];
    let principals = certificate.valid_principals();
    if principals.is_empty() {
        parts.push("no principals".to_owned());
    } else if principals.iter().any(|p| p == user) {
        parts.push(format!("principals {principals:?}"));
    } else {
        parts.push(format!("principals {principals:?}, not {user:?}"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now < certificate.valid_after() {
        parts.push(format!(
            "not valid before {}",
            unix_time(certificate.valid_after())
        ));
    } else if now >= certificate.valid_before() {
        parts.push(format!(
            "expired at {}",
            unix_time(certificate.valid_before())
        ));
    } else if certificate.valid_before() != u64::MAX {
        parts.push(format!(
            "valid until {}",
            unix_time(certificate.valid_before())
        ));
    }
    parts.push(format!("CA {}", describe_key(certificate.signature_key())));
    parts.join("; ")
}

/// Where an identity's certificate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CertificateSource {
    /// `KEY-cert.pub` found next to the key file.
    BesideKey,
    /// Given with [`Identity::with_certificate`].
    Explicit,
}

/// A private key loaded from a file, with its user certificate if it has one. Cloning is
/// cheap: the key is shared.
#[derive(Clone)]
pub struct Identity {
    path: PathBuf,
    key: Arc<PrivateKey>,
    certificate: Option<(UserCertificate, CertificateSource)>,
}

impl Identity {
    /// Loads a private key file (ed25519, ecdsa or rsa), decrypting it with `passphrase`
    /// when it is encrypted. Formats, as `ssh-keygen` reads them:
    /// - OpenSSH's own (`-----BEGIN OPENSSH PRIVATE KEY-----`), plain or encrypted with
    ///   the ciphers russh implements (aes*-ctr, aes*-cbc, aes*-gcm, chacha20-poly1305);
    /// - PEM (`RSA PRIVATE KEY`, `EC PRIVATE KEY`), plain or with `Proc-Type:
    ///   4,ENCRYPTED` and `DEK-Info` AES-128-CBC, AES-192-CBC, AES-256-CBC, DES-EDE3-CBC
    ///   or DES-CBC (`ssh-keygen -m PEM`, `openssl rsa/ec -aes256`);
    /// - PKCS#8 (`PRIVATE KEY`), plain or `ENCRYPTED PRIVATE KEY` with PBES2: PBKDF2
    ///   (HMAC-SHA1 or SHA-2) or scrypt, and AES-CBC, AES-GCM, DES-EDE3-CBC or DES-CBC
    ///   (`ssh-keygen -m PKCS8`, `openssl pkcs8 -topk8`);
    /// - PuTTY's `.ppk`, as russh reads it (not tested here).
    ///
    /// Like OpenSSH, a file that group or others may read is refused.
    ///
    /// # Errors
    /// [`ErrorKind::KeyFile`] naming the file: unreadable, too open, encrypted without a
    /// passphrase, wrong passphrase (the decrypted bytes fail their padding or structure
    /// check), a cipher or key derivation that is not supported (named), or not a
    /// private key.
    pub fn from_file(path: impl AsRef<Path>, passphrase: Option<&Secret>) -> Result<Identity> {
        Identity::from_file_with(path, || Ok(passphrase.cloned()))
    }

    /// Like [`Identity::from_file`], but asks `passphrase` for the passphrase only when the
    /// file turns out to be encrypted (e.g. to prompt on the terminal).
    ///
    /// # Errors
    /// As [`Identity::from_file`], and whatever `passphrase` returns.
    pub fn from_file_with(
        path: impl AsRef<Path>,
        passphrase: impl FnOnce() -> Result<Option<Secret>>,
    ) -> Result<Identity> {
        let path = path.as_ref();
        let fail = |msg: String| Error::new(ErrorKind::KeyFile, msg);
        let meta = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read key file {}", path.display())).with_source(e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "permissions {mode:04o} for key file {} are too open: it must not be \
                 readable by group or others (chmod 600)",
                path.display()
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            fail(format!("cannot read key file {}", path.display())).with_source(e)
        })?);
        let key = decode_key(path, &text, passphrase)?;
        let mut identity = Identity {
            path: path.to_owned(),
            key: Arc::new(key),
            certificate: None,
        };
        identity.certificate = identity
            .certificate_beside()
            .map(|c| (c, CertificateSource::BesideKey));
        Ok(identity)
    }

    /// The certificate OpenSSH loads for a key file: `KEY-cert`, else `KEY-cert.pub`. A
    /// file that is missing is no certificate; one that cannot be used (not a user
    /// certificate, or for another key) is skipped with a warning.
    fn certificate_beside(&self) -> Option<UserCertificate> {
        let mut base = self.path.clone().into_os_string();
        base.push("-cert");
        let bare = PathBuf::from(base);
        let with_pub = {
            let mut p = bare.clone().into_os_string();
            p.push(".pub");
            PathBuf::from(p)
        };
        let path = [bare, with_pub].into_iter().find(|p| p.exists())?;
        match UserCertificate::from_file(&path).and_then(|c| self.check_certificate(c)) {
            Ok(certificate) => {
                tracing::debug!(
                    "key file {}: certificate {}",
                    self.path.display(),
                    path.display()
                );
                Some(certificate)
            }
            Err(e) => {
                tracing::warn!("not using {}: {e:#}", path.display());
                None
            }
        }
    }

    /// `certificate` if it certifies this identity's key.
    fn check_certificate(&self, certificate: UserCertificate) -> Result<UserCertificate> {
        if certificate.certificate().public_key() != self.key.public_key().key_data() {
            return Err(Error::new(
                ErrorKind::KeyFile,
                format!(
                    "certificate file {} certifies key {}, not the key of {} ({})",
                    certificate.path().display(),
                    describe_key(certificate.certificate().public_key()),
                    self.path.display(),
                    describe_key(self.key.public_key().key_data())
                ),
            ));
        }
        Ok(certificate)
    }

    /// This identity with the user certificate in `path` (OpenSSH's `CertificateFile` for
    /// one key), replacing a `KEY-cert.pub` found next to the key file.
    ///
    /// # Errors
    /// As [`UserCertificate::from_file`], and [`ErrorKind::KeyFile`] when the certificate
    /// is for another key.
    pub fn with_certificate(mut self, path: impl AsRef<Path>) -> Result<Identity> {
        let certificate = self.check_certificate(UserCertificate::from_file(path)?)?;
        self.certificate = Some((certificate, CertificateSource::Explicit));
        Ok(self)
    }

    /// The user certificate offered with this key: `KEY-cert.pub` (or `KEY-cert`) found
    /// next to the key file when it was loaded, or the one given to
    /// [`Identity::with_certificate`].
    pub fn certificate(&self) -> Option<&UserCertificate> {
        self.certificate.as_ref().map(|(c, _)| c)
    }

    /// The certificate to offer, unless it was found next to the key and `explicit_given`
    /// (OpenSSH loads `KEY-cert.pub` only when no `CertificateFile` is given).
    pub(crate) fn certificate_to_offer(&self, explicit_given: bool) -> Option<&UserCertificate> {
        match &self.certificate {
            Some((c, CertificateSource::Explicit)) => Some(c),
            Some((c, CertificateSource::BesideKey)) if !explicit_given => Some(c),
            _ => None,
        }
    }

    /// The file the key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public key's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.public_key())
    }

    pub(crate) fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    pub(crate) fn is_rsa(&self) -> bool {
        matches!(self.key.algorithm(), russh::keys::Algorithm::Rsa { .. })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .field(
                "certificate",
                &self.certificate().map(UserCertificate::path),
            )
            .finish()
    }
}

/// Where to find an ssh-agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Agent {
    /// The socket named by `SSH_AUTH_SOCK`, if set (the default).
    #[default]
    FromEnv,
    /// This socket.
    Socket(PathBuf),
    /// Do not use an agent.
    Off,
}

/// An authentication method rexec can use (OpenSSH's names in `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `publickey`: identity files, then the agent's keys.
    PublicKey,
    /// `keyboard-interactive`, answered with the password.
    KeyboardInteractive,
    /// `password`.
    Password,
}

impl AuthMethod {
    /// The default order: public key, keyboard-interactive, password (OpenSSH's, without
    /// the methods rexec does not implement).
    pub const DEFAULT_ORDER: [AuthMethod; 3] = [
        AuthMethod::PublicKey,
        AuthMethod::KeyboardInteractive,
        AuthMethod::Password,
    ];

    /// The method OpenSSH calls `name` (`publickey`, `keyboard-interactive`, `password`);
    /// `None` for another (`gssapi-with-mic`, `hostbased`: not implemented by rexec).
    pub fn from_openssh_name(name: &str) -> Option<AuthMethod> {
        match name {
            "publickey" => Some(AuthMethod::PublicKey),
            "keyboard-interactive" => Some(AuthMethod::KeyboardInteractive),
            "password" => Some(AuthMethod::Password),
            _ => None,
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::PublicKey => "publickey",
            AuthMethod::KeyboardInteractive => "keyboard-interactive",
            AuthMethod::Password => "password",
        })
    }
}

/// What rexec may use to log in. Cheap to clone; meant to be built once and shared by
/// every connection of a run (encrypted keys are decrypted once).
///
/// Methods are tried in the order of [`Credentials::methods`] (by default
/// [`AuthMethod::DEFAULT_ORDER`]), skipping those the server does not allow:
/// - public key:
///   1. each certificate added with [`Credentials::certificate`] (OpenSSH's
///      `CertificateFile`), signed by the identity file or else the agent key that holds
///      its private key;
///   2. each identity file, in the order given: its certificate first (see
///      [`Identity::certificate`]; one found next to the key file is not offered when
///      certificates were added with [`Credentials::certificate`], as in OpenSSH), then
///      the plain key;
///   3. the ssh-agent: the certificates it holds, then its keys (with
///      [`Credentials::identities_only`], only those allowed by the identity files,
///      certificate files and [`Credentials::agent_public_key_file`]); when a password is
///      set and the server allows password or keyboard-interactive authentication, only
///      until five attempts in all have been refused, so that the password is the sixth:
///      sshd disconnects at its `MaxAuthTries` (6 by default);
///
///   a certificate already offered is not offered again (the agent may hold one given as
///   a file too);
/// - keyboard-interactive, answering the prompts with the password;
/// - password.
#[derive(Clone)]
pub struct Credentials {
    identities: Vec<Identity>,
    certificates: Vec<UserCertificate>,
    agent: Agent,
    password: Option<Secret>,
    identities_only: bool,
    /// Agent keys that may be offered under `identities_only` (public halves of
    /// configured identity files rexec could not load itself).
    agent_allowed: Vec<russh::keys::PublicKey>,
    methods: Vec<AuthMethod>,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            identities: Vec::new(),
            certificates: Vec::new(),
            agent: Agent::default(),
            password: None,
            identities_only: false,
            agent_allowed: Vec::new(),
            methods: AuthMethod::DEFAULT_ORDER.to_vec(),
        }
    }
}

impl Credentials {
    /// No identities, the agent from `SSH_AUTH_SOCK`, no password.
    pub fn new() -> Credentials {
        Credentials::default()
    }

    /// Adds a loaded key.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identities.push(identity);
        self
    }

    /// Adds a user certificate whose private key is one of the identity files or a key
    /// in the ssh-agent (OpenSSH's `CertificateFile`). Offered before everything else.
    #[must_use]
    pub fn certificate(mut self, certificate: UserCertificate) -> Self {
        self.certificates.push(certificate);
        self
    }

    /// Adds OpenSSH's default key files that exist and are not encrypted
    /// (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`). Files that cannot be used are skipped
    /// with a debug log: they are defaults, not requests.
    #[must_use]
    pub fn default_identities(mut self) -> Self {
        let Some(home) = home::home_dir() else {
            return self;
        };
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = home.join(".ssh").join(name);
            if !path.exists() {
                continue;
            }
            match Identity::from_file(&path, None) {
                Ok(id) => self.identities.push(id),
                Err(e) => tracing::debug!("skipping default key: {e:#}"),
            }
        }
        self
    }

    /// Chooses the ssh-agent.
    #[must_use]
    pub fn agent(mut self, agent: Agent) -> Self {
        self.agent = agent;
        self
    }

    /// Sets the password for password and keyboard-interactive authentication.
    #[must_use]
    pub fn password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// Offer only the identity files, and of the agent's keys only those allowed by
    /// [`Credentials::agent_public_key_file`] (OpenSSH's `IdentitiesOnly`).
    #[must_use]
    pub fn identities_only(mut self, on: bool) -> Self {
        self.identities_only = on;
        self
    }

    /// Under [`Credentials::identities_only`], lets the agent sign with the key whose
    /// public half is in `path` (an identity file's `.pub`, for a key the agent holds but
    /// rexec does not load itself). Returns whether the file held a public key.
    pub fn agent_public_key_file(&mut self, path: &Path) -> bool {
        let key = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| russh::keys::PublicKey::from_openssh(text.trim()).ok());
        match key {
            Some(key) => {
                self.agent_allowed.push(key);
                true
            }
            None => false,
        }
    }

    /// The methods to try, in order (duplicates dropped).
    #[must_use]
    pub fn methods(mut self, methods: &[AuthMethod]) -> Self {
        self.methods.clear();
        for m in methods {
            if !self.methods.contains(m) {
                self.methods.push(*m);
            }
        }
        self
    }

    pub(crate) fn method_order(&self) -> &[AuthMethod] {
        &self.methods
    }

    /// Whether the agent may offer `key`.
    pub(crate) fn agent_may_offer(&self, key: &russh::keys::PublicKey) -> bool {
        !self.identities_only
            || self
                .agent_allowed
                .iter()
                .any(|k| k.key_data() == key.key_data())
    }

    pub(crate) fn identities(&self) -> &[Identity] {
        &self.identities
    }

    pub(crate) fn certificates(&self) -> &[UserCertificate] {
        &self.certificates
    }

    pub(crate) fn agent_setting(&self) -> &Agent {
        &self.agent
    }

    pub(crate) fn password_secret(&self) -> Option<&Secret> {
        self.password.as_ref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("identities", &self.identities)
            .field("certificates", &self.certificates)
            .field("agent", &self.agent)
            .field("password", &self.password)
            .field("identities_only", &self.identities_only)
            .field("methods", &self.methods)
            .finish()
    }
}
