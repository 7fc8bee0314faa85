//! Credentials: private key files (loaded and decrypted once, shared by every connection),
//! the ssh-agent, and a password used for password and keyboard-interactive authentication.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::{ssh_key, PrivateKey};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::ssh::key_file::{self, DecryptError};
use crate::ssh::known_hosts::fingerprint;

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

/// A private key loaded from a file. Cloning is cheap: the key is shared.
#[derive(Clone)]
pub struct Identity {
    path: PathBuf,
    key: Arc<PrivateKey>,
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
        Ok(Identity {
            path: path.to_owned(),
            key: Arc::new(key),
        })
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
/// - public key: each identity file, in the order given, then each key the ssh-agent
///   holds (with [`Credentials::identities_only`], only agent keys allowed by
///   [`Credentials::agent_public_key_file`]); when a password is set and the server allows
///   password or keyboard-interactive authentication, agent keys only until five attempts
///   in all have been refused, so that the password is the sixth: sshd disconnects at its
///   `MaxAuthTries` (6 by default);
/// - keyboard-interactive, answering the prompts with the password;
/// - password.
#[derive(Clone)]
pub struct Credentials {
    identities: Vec<Identity>,
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
    pub fn identity(&mut self, identity: Identity) -> &mut Self {
        self.identities.push(identity);
        self
    }

    /// Adds OpenSSH's default key files that exist and are not encrypted
    /// (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`). Files that cannot be used are skipped
    /// with a debug log: they are defaults, not requests.
    pub fn default_identities(&mut self) -> &mut Self {
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
    pub fn agent(&mut self, agent: Agent) -> &mut Self {
        self.agent = agent;
        self
    }

    /// Sets the password for password and keyboard-interactive authentication.
    pub fn password(&mut self, password: Secret) -> &mut Self {
        self.password = Some(password);
        self
    }

    /// Offer only the identity files, and of the agent's keys only those allowed by
    /// [`Credentials::agent_public_key_file`] (OpenSSH's `IdentitiesOnly`).
    pub fn identities_only(&mut self, on: bool) -> &mut Self {
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
    pub fn methods(&mut self, methods: &[AuthMethod]) -> &mut Self {
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
            .field("agent", &self.agent)
            .field("password", &self.password)
            .field("identities_only", &self.identities_only)
            .field("methods", &self.methods)
            .finish()
    }
}
