//! known_hosts: parsing OpenSSH's format (hashed names, wildcards, negation, `[host]:port`,
//! `@revoked`, `@cert-authority`, tabs), checking a server's key or host certificate under a
//! [`HostKeyPolicy`], and learning new keys safely when many connections learn at once.
//!
//! russh's own helpers are not used: they ignore `@revoked`, wildcards and tabs, and report
//! a known host offering a key of another type as unknown, which accept-new would then learn.

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Algorithm, Certificate, HashAlg, PublicKey};
use sha1::Sha1;

use crate::error::{Error, ErrorKind, Result};
use crate::glob::glob_match;

/// What to do with a server's host key.
///
/// Under every policy, a host certificate signed by a CA of a matching `@cert-authority`
/// line and valid for the host is accepted without its key being recorded, and a key or
/// CA marked `@revoked` is refused. A host certificate that is not valid (expired, other
/// principals, unknown CA, ...) leaves its plain key to be checked as below, the
/// certificate's fault named first, except that [`HostKeyPolicy::AcceptNew`] does not learn
/// that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// The key must already be recorded; an unknown or changed key is refused before
    /// authentication. The default, like OpenSSH's `StrictHostKeyChecking yes`.
    #[default]
    Strict,
    /// An unknown host's key is recorded in the first known_hosts file and accepted; a
    /// changed key is still refused. Like OpenSSH's `StrictHostKeyChecking accept-new`,
    /// except for the plain key of a host certificate that is not valid: refused, not
    /// learned (OpenSSH learns it).
    AcceptNew,
    /// No check but `@revoked`: any other key is accepted, and a warning is logged. With a
    /// key that differs from the recorded one, password and keyboard-interactive
    /// authentication are disabled, as OpenSSH does, so a password is never sent to an
    /// impostor.
    Off,
}

impl std::str::FromStr for HostKeyPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "strict" | "yes" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "off" | "no" => Ok(HostKeyPolicy::Off),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unknown host key policy {other:?} (expected strict, accept-new or off)"),
            )),
        }
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Off => "off",
        })
    }
}

/// Where a key was found: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    /// The known_hosts file.
    pub file: PathBuf,
    /// The line in it, counting from 1.
    pub line: usize,
}

impl fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The result of looking a server key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key is recorded for this host.
    Known(KeyLocation),
    /// Keys are recorded for this host but the offered one is not among them (this
    /// includes a recorded key of another type).
    Changed(KeyLocation),
    /// The key is marked `@revoked`.
    Revoked(KeyLocation),
    /// No key at all is recorded for this host.
    Unknown,
}

/// An ordered list of known_hosts files. The first one is where new keys are learned,
/// unless the list holds only global files ([`KnownHosts::user_and_global`] with no user
/// file): then nothing is learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
    /// How many of `files`, from the first, are the user's (written by accept-new).
    user_files: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

impl KnownHosts {
    /// OpenSSH's defaults: the user's files `~/.ssh/known_hosts` and
    /// `~/.ssh/known_hosts2`, the global files `/etc/ssh/ssh_known_hosts` and
    /// `/etc/ssh/ssh_known_hosts2`.
    pub fn default_files() -> KnownHosts {
        KnownHosts::user_and_global(
            KnownHosts::default_user_files(),
            KnownHosts::default_global_files(),
        )
    }

    /// OpenSSH's default user files (`UserKnownHostsFile`): `~/.ssh/known_hosts` and
    /// `~/.ssh/known_hosts2` (`~` is `$HOME`).
    pub fn default_user_files() -> Vec<PathBuf> {
        match home::home_dir() {
            Some(home) => vec![
                home.join(".ssh").join("known_hosts"),
                home.join(".ssh").join("known_hosts2"),
            ],
            None => Vec::new(),
        }
    }

    /// OpenSSH's default global files (`GlobalKnownHostsFile`): `/etc/ssh/ssh_known_hosts`
    /// and `/etc/ssh/ssh_known_hosts2`.
    pub fn default_global_files() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]
    }

    /// The user's files, then the global ones, all read; accept-new writes to the first
    /// user file, and learns nothing when there is none (OpenSSH's `UserKnownHostsFile
    /// none`).
    pub fn user_and_global(user: Vec<PathBuf>, global: Vec<PathBuf>) -> KnownHosts {
        let user_files = user.len();
        let mut files = user;
        files.extend(global);
        KnownHosts { files, user_files }
    }

    /// Just this file (read, and written by accept-new).
    pub fn file(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts {
            files: vec![path.into()],
            user_files: 1,
        }
    }

    /// These files, in order; the first is written by accept-new.
    pub fn files(paths: impl IntoIterator<Item = PathBuf>) -> KnownHosts {
        let files: Vec<PathBuf> = paths.into_iter().collect();
        KnownHosts {
            user_files: files.len(),
            files,
        }
    }

    /// The files, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.files
    }

    /// The files, comma-separated, for messages.
    pub(crate) fn display_paths(&self) -> String {
        self.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads every file once, for [`Recorded::check`] and [`Recorded::algorithms`].
    /// Missing files count as empty.
    ///
    /// # Errors
    /// [`ErrorKind::LocalIo`] when a file exists but cannot be read.
    pub(crate) fn read(&self) -> Result<Recorded> {
        let mut files = Vec::new();
        for file in &self.files {
            if let Some(indexed) = load(file)? {
                files.push((file.clone(), indexed));
            }
        }
        Ok(Recorded { files })
    }

    /// Looks `key` up for `host` on `port` (reading the files now).
    ///
    /// # Errors
    /// As [`KnownHosts::read`].
    pub(crate) fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<HostKeyStatus> {
        Ok(self.read()?.check(host, port, key))
    }

    /// Records `key` for `host`:`port` in the first file, unless by now (another connection
    /// may have learned it meanwhile) some key is recorded for the host. The file is locked
    /// while it is re-read and appended to, so concurrent learners in this and other
    /// processes never interleave lines. Returns the status found under the lock: `Unknown`
    /// means the key was written.
    ///
    /// # Errors
    /// [`ErrorKind::LocalIo`] when the file cannot be created, locked or written.
    pub(crate) fn learn(&self, host: &str, port: u16, key: &PublicKey) -> Result<HostKeyStatus> {
        let Some(path) = self.files.first().filter(|_| self.user_files > 0) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "no user known_hosts file to learn the host key into",
            ));
        };
        let io_err = |what: &str, e: std::io::Error| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot {what} known_hosts file {}", path.display()),
            )
            .with_source(e)
        };
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| io_err("create the directory of", e))?;
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| io_err("open", e))?;
        // Held until `file` is closed at the end of this function.
        file.lock().map_err(|e| io_err("lock", e))?;
        let status = self.check(host, port, key)?;
        if status != HostKeyStatus::Unknown {
            return Ok(status);
        }
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(|e| io_err("read", e))?;
        let encoded = key
            .to_openssh()
            .map_err(|e| io_err("encode a key for", std::io::Error::other(e)))?;
        let mut line = String::new();
        if !text.is_empty() && !text.ends_with(b"\n") {
            line.push('\n');
        }
        line.push_str(&lookup_name(host, port));
        line.push(' ');
        line.push_str(&encoded);
        line.push('\n');
        // One write of a whole line to an O_APPEND file: never torn, never interleaved.
        file.write_all(line.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| io_err("write", e))?;
        Ok(HostKeyStatus::Unknown)
    }
}

/// The contents of the known_hosts files, read once per connection and used twice: to
/// order host key algorithms before the handshake, and to check the server's key.
#[derive(Debug)]
pub(crate) struct Recorded {
    files: Vec<(PathBuf, Arc<Indexed>)>,
}

impl Recorded {
    /// Looks `key` up for `host` on `port`.
    pub(crate) fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = lookup_name(host, port);
        let mut first_recorded: Option<KeyLocation> = None;
        let mut known: Option<KeyLocation> = None;
        for (file, indexed) in &self.files {
            for entry in indexed.candidates(&name) {
                let location = || KeyLocation {
                    file: file.clone(),
                    line: entry.line,
                };
                let same_key = |e: &Line| e.key().map(|k| k.key_data() == key.key_data());
                match entry.marker {
                    // A revoked key is refused for every host, as OpenSSH does.
                    Marker::Revoked => {
                        if same_key(entry) == Some(true) {
                            return HostKeyStatus::Revoked(location());
                        }
                    }
                    Marker::CertAuthority => {}
                    Marker::None => {
                        if !host_matches(&name, &entry.hosts) {
                            continue;
                        }
                        let Some(same) = same_key(entry) else {
                            continue;
                        };
                        if same {
                            known.get_or_insert_with(location);
                        } else {
                            first_recorded.get_or_insert_with(location);
                        }
                    }
                }
            }
        }
        match (known, first_recorded) {
            (Some(at), _) => HostKeyStatus::Known(at),
            (None, Some(at)) => HostKeyStatus::Changed(at),
            (None, None) => HostKeyStatus::Unknown,
        }
    }

    /// The algorithms of the keys recorded for `host`:`port`, in file order.
    pub(crate) fn algorithms(&self, host: &str, port: u16) -> Vec<russh::keys::Algorithm> {
        let name = lookup_name(host, port);
        let mut algorithms = Vec::new();
        for (_, indexed) in &self.files {
            for entry in indexed.candidates(&name) {
                if entry.marker == Marker::None && host_matches(&name, &entry.hosts) {
                    let Some(key) = entry.key() else {
                        continue;
                    };
                    let algorithm = key.algorithm();
                    if !algorithms.contains(&algorithm) {
                        algorithms.push(algorithm);
                    }
                }
            }
        }
        algorithms
    }
}

/// What checking a host certificate against the `@cert-authority` and `@revoked` lines
/// found (OpenSSH's `check_host_key` with a certificate, sshconnect.c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertificateStatus {
    /// Signed by the CA of the `@cert-authority` line at this location, which matches
    /// the host, and valid for it now.
    Valid(KeyLocation),
    /// The certified key or the CA is marked `@revoked`: refused (the message says which).
    Revoked(String),
    /// Not accepted, for the reason given (a sentence starting with "host certificate").
    /// As OpenSSH does, the plain key inside is then checked like any host key.
    Invalid(String),
}

impl Recorded {
    /// Whether some `@cert-authority` line matches `host`:`port` (or, on a port other
    /// than 22, plain `host`, as OpenSSH retries without the port): then certificate host
    /// key algorithms are offered first, as OpenSSH does.
    pub(crate) fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        cert_lookup_names(host, port).iter().any(|name| {
            self.files.iter().any(|(_, indexed)| {
                indexed.candidates(name).any(|entry| {
                    entry.marker == Marker::CertAuthority
                        && host_matches(name, &entry.hosts)
                        && entry.key().is_some()
                })
            })
        })
    }

    /// Checks a host certificate presented by `host` on `port` at `now` (seconds since
    /// the Unix epoch), as OpenSSH 9.2 does (sshconnect.c `check_host_key`, sshkey.c
    /// `sshkey_cert_check_host`):
    ///
    /// - the certified key or the CA marked `@revoked` (on any line: rexec does not match
    ///   the host names of `@revoked` lines) refuses it;
    /// - the CA must be the key of an `@cert-authority` line whose patterns match
    ///   `[host]:port` (or, on a port other than 22, `host`);
    /// - the CA's signature must verify, with an algorithm in OpenSSH's default
    ///   `CASignatureAlgorithms` (no `ssh-rsa` SHA-1 or DSA signatures);
    /// - it must be a host certificate, valid at `now` (`valid_after <= now <
    ///   valid_before`), with `host` among its principals (any host when it lists none;
    ///   names compare exactly, lowercased host), and no critical options.
    pub(crate) fn check_certificate(
        &self,
        host: &str,
        port: u16,
        certificate: &Certificate,
        now: u64,
    ) -> CertificateStatus {
        let name = certificate_name(certificate);
        let subject = certificate.public_key();
        let ca = certificate.signature_key();
        let names = cert_lookup_names(host, port);

        for (file, indexed) in &self.files {
            for entry in indexed.candidates(&lookup_name(host, port)) {
                if entry.marker != Marker::Revoked {
                    continue;
                }
                let Some(revoked) = entry.key() else {
                    continue;
                };
                let at = KeyLocation {
                    file: file.clone(),
                    line: entry.line,
                };
                if revoked.key_data() == subject {
                    return CertificateStatus::Revoked(format!(
                        "{name} certifies key {}, which is marked @revoked in {at}",
                        describe_key(subject)
                    ));
                }
                if revoked.key_data() == ca {
                    return CertificateStatus::Revoked(format!(
                        "{name} is signed by CA {}, which is marked @revoked in {at}",
                        describe_key(ca)
                    ));
                }
            }
        }

        let authority = names.iter().find_map(|lookup| {
            self.files.iter().find_map(|(file, indexed)| {
                indexed.candidates(lookup).find_map(|entry| {
                    let trusted = entry.marker == Marker::CertAuthority
                        && host_matches(lookup, &entry.hosts)
                        && entry.key().is_some_and(|k| k.key_data() == ca);
                    trusted.then(|| KeyLocation {
                        file: file.clone(),
                        line: entry.line,
                    })
                })
            })
        });
        let Some(authority) = authority else {
            return CertificateStatus::Invalid(format!(
                "{name} is signed by CA {}, which no @cert-authority line for {} names",
                describe_key(ca),
                names.join(" or ")
            ));
        };

        // The CA's signature (ssh-key checks it together with the CA's fingerprint and a
        // time, which is taken inside the validity interval here: the interval is
        // checked below, with its own message).
        if certificate.valid_after() < certificate.valid_before() {
            let fingerprint = ca.fingerprint(HashAlg::Sha256);
            if certificate
                .validate_at(certificate.valid_after(), [&fingerprint])
                .is_err()
            {
                return CertificateStatus::Invalid(format!(
                    "{name} has a CA signature that does not verify"
                ));
            }
        }
        if !certificate.cert_type().is_host() {
            return CertificateStatus::Invalid(format!(
                "{name} is a user certificate, not a host certificate"
            ));
        }
        if now < certificate.valid_after() {
            return CertificateStatus::Invalid(format!(
                "{name} is not valid before {}",
                unix_time(certificate.valid_after())
            ));
        }
        if now >= certificate.valid_before() {
            return CertificateStatus::Invalid(format!(
                "{name} expired at {}",
                unix_time(certificate.valid_before())
            ));
        }
        let principal = host.to_ascii_lowercase();
        let principals = certificate.valid_principals();
        if !principals.is_empty() && !principals.contains(&principal) {
            return CertificateStatus::Invalid(format!(
                "{name} is for principals {principals:?}, not {principal:?}"
            ));
        }
        if !certificate.critical_options().is_empty() {
            let options: Vec<&str> = certificate
                .critical_options()
                .keys()
                .map(String::as_str)
                .collect();
            return CertificateStatus::Invalid(format!(
                "{name} has critical options ({}), which OpenSSH refuses in a host certificate",
                options.join(", ")
            ));
        }
        let signed_with = certificate.signature().algorithm();
        if matches!(signed_with, Algorithm::Rsa { hash: None } | Algorithm::Dsa) {
            return CertificateStatus::Invalid(format!(
                "{name} is signed with {}, which OpenSSH's CASignatureAlgorithms does not \
                 allow by default",
                signed_with.as_str()
            ));
        }
        CertificateStatus::Valid(authority)
    }
}

/// `host certificate "KEY-ID"`, for messages.
fn certificate_name(certificate: &Certificate) -> String {
    if certificate.key_id().is_empty() {
        "host certificate".to_owned()
    } else {
        format!("host certificate {:?}", certificate.key_id())
    }
}

/// `ssh-ed25519 SHA256:...`, for messages.
pub(crate) fn describe_key(key: &KeyData) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

/// A certificate time (seconds since the Unix epoch) as RFC 3339 in UTC; `forever` for
/// the largest value (ssh-keygen's "forever").
pub(crate) fn unix_time(seconds: u64) -> String {
    /// The first second of the year 10000, which humantime does not format.
    const YEAR_10000: u64 = 253_402_300_800;
    if seconds == u64::MAX {
        return "forever".to_owned();
    }
    if seconds >= YEAR_10000 {
        return format!("{seconds} seconds after 1970");
    }
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The names a certificate's CA is looked up under: `[host]:port`, then (on a port other
/// than 22) plain `host`, as OpenSSH retries "without port identifier".
fn cert_lookup_names(host: &str, port: u16) -> Vec<String> {
    let mut names = vec![lookup_name(host, port)];
    if port != 22 {
        names.push(host.to_ascii_lowercase());
    }
    names
}

/// The SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::LocalIo,
        format!("cannot read known_hosts file {}", path.display()),
    )
    .with_source(e)
}

/// What identifies one version of a file: any write changes the size or the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

type Cache = std::sync::Mutex<HashMap<PathBuf, (Stamp, Arc<Indexed>)>>;

/// A known_hosts file parsed and indexed once per version of the file, for the whole
/// process: a fan-out to N hosts otherwise reads and scans every line of an N-line file
/// for each of the N connections. A missing file is `None`.
///
/// The cache stays locked while a file is read and indexed: the first connections of a
/// run all start at once, and without the lock each of them (100 at `-f 100`) parsed its
/// own copy of a 10,000-line file (5 s of CPU and 270 MiB at 100 hosts). The others wait
/// for the one copy instead; later lookups only `stat` the file.
fn load(path: &Path) -> Result<Option<Arc<Indexed>>> {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    // A poisoned lock (a panic while indexing) only loses the cache.
    let mut map = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path, e)),
    };
    // Stamped before reading: a write racing with the read changes the stamp, so the
    // next connection reads again.
    let stamp = Stamp::of(&meta);
    if let Some((s, indexed)) = map.get(path) {
        if *s == stamp {
            return Ok(Some(indexed.clone()));
        }
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path, e)),
    };
    let indexed = Arc::new(Indexed::new(&String::from_utf8_lossy(&bytes)));
    map.insert(path.to_owned(), (stamp, indexed.clone()));
    Ok(Some(indexed))
}

/// One line of a known_hosts file. The key is decoded only when needed (the host matched,
/// or the line is `@revoked`): with hundreds of hosts in a file, decoding every key on
/// every connection made connecting quadratic in the fleet size.
#[derive(Debug)]
struct Line {
    marker: Marker,
    hosts: Box<str>,
    key_type: Box<str>,
    key_base64: Box<str>,
    line: usize,
}

impl Line {
    /// The key, or `None` for a line that does not parse (skipped, as OpenSSH does).
    fn key(&self) -> Option<PublicKey> {
        PublicKey::from_openssh(&format!("{} {}", self.key_type, self.key_base64)).ok()
    }
}

/// The lines of a file, with the lines that name hosts plainly indexed by name: a lookup
/// visits the lines recorded under its name plus the lines that need matching (hashed
/// names, wildcards, negations, markers), in file order.
#[derive(Debug)]
struct Indexed {
    lines: Vec<Line>,
    by_name: HashMap<String, Vec<usize>>,
    others: Vec<usize>,
}

impl Indexed {
    fn new(text: &str) -> Indexed {
        let mut indexed = Indexed {
            lines: Vec::new(),
            by_name: HashMap::new(),
            others: Vec::new(),
        };
        for entry in parse(text) {
            let i = indexed.lines.len();
            let plain = entry.marker == Marker::None
                && entry.hosts.split(',').all(|p| {
                    !p.is_empty() && !p.starts_with(['!', '|']) && !p.contains(['*', '?'])
                });
            if plain {
                let mut names: Vec<String> = entry
                    .hosts
                    .split(',')
                    .map(str::to_ascii_lowercase)
                    .collect();
                names.dedup();
                for name in names {
                    indexed.by_name.entry(name).or_default().push(i);
                }
            } else {
                indexed.others.push(i);
            }
            indexed.lines.push(entry);
        }
        indexed
    }

    /// The lines that may concern `name` (already lowercased), in file order.
    fn candidates<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Line> + 'a {
        let mut picked: Vec<usize> = self.others.clone();
        if let Some(named) = self.by_name.get(name) {
            picked.extend_from_slice(named);
            picked.sort_unstable();
            picked.dedup();
        }
        picked.into_iter().filter_map(|i| self.lines.get(i))
    }
}

fn parse(text: &str) -> impl Iterator<Item = Line> + '_ {
    text.lines().enumerate().filter_map(|(index, raw)| {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_ascii_whitespace();
        let mut first = fields.next()?;
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            m if m.starts_with('@') => return None,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = fields.next()?;
        }
        Some(Line {
            marker,
            hosts: first.into(),
            key_type: fields.next()?.into(),
            key_base64: fields.next()?.into(),
            line: index + 1,
        })
    })
}

/// OpenSSH's host list matching: comma-separated patterns with `*` and `?`, `!` negation
/// (a negated match vetoes the line), and hashed `|1|salt|hash` names.
fn host_matches(name: &str, hosts: &str) -> bool {
    let mut matched = false;
    for pattern in hosts.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_matches(name, hashed) {
                matched = true;
            }
            continue;
        }
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let hit = if pattern.contains(['*', '?']) {
            glob_match(&pattern.to_ascii_lowercase(), name)
        } else {
            // Most lines name hosts plainly: no allocation, no backtracking.
            pattern.eq_ignore_ascii_case(name)
        };
        if hit {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn hashed_matches(name: &str, hashed: &str) -> bool {
    let mut parts = hashed.splitn(2, '|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 15): the first connections of a run, all at once, each parsed
    /// their own copy of the file. Now one parses, the others get that copy, and a
    /// lookup through it finds the same key as a fresh parse.
    #[test]
    fn concurrent_first_loads_share_one_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key = russh::keys::ssh_key::PrivateKey::from(
            russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]),
        );
        let public = key.public_key().to_openssh().unwrap();
        let text: String = (0..2000)
            .map(|i| format!("[127.10.{}.{}]:2222 {public}\n", i / 250, i % 250 + 1))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let barrier = std::sync::Barrier::new(16);
        let loaded: Vec<Arc<Indexed>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        load(&path).unwrap().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &loaded[1..] {
            assert!(Arc::ptr_eq(&loaded[0], other), "parsed more than once");
        }
        let name = lookup_name("127.10.3.100", 2222);
        let cached: Vec<String> = loaded[0]
            .candidates(&name)
            .map(|l| format!("{l:?}"))
            .collect();
        let fresh = Indexed::new(&text);
        let parsed: Vec<String> = fresh.candidates(&name).map(|l| format!("{l:?}")).collect();
        assert_eq!(cached.len(), 1);
        assert_eq!(cached, parsed);
    }

    #[test]
    fn negation_vetoes() {
        assert!(host_matches("web1", "web*,!web2"));
        assert!(!host_matches("web2", "web*,!web2"));
    }

    #[test]
    fn hashed_name() {
        // The same construction as `ssh-keygen -H`; tests/ checks real ssh-keygen output.
        let name = "localhost";
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        let entry = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&hash));
        assert!(host_matches("localhost", &entry));
        assert!(!host_matches("otherhost", &entry));
    }

    mod certificates {
        use super::*;
        use russh::keys::ssh_key::certificate::{Builder, CertType};
        use russh::keys::ssh_key::private::Ed25519Keypair;
        use russh::keys::ssh_key::PrivateKey;

        fn key(seed: u8) -> PrivateKey {
            PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
        }

        fn line(marker: &str, hosts: &str, k: &PrivateKey) -> String {
            format!("{marker}{hosts} {}\n", k.public_key().to_openssh().unwrap())
        }

        fn recorded(text: &str) -> Recorded {
            Recorded {
                files: vec![(PathBuf::from("kh"), Arc::new(Indexed::new(text)))],
            }
        }

        /// A host certificate for `host_key` by `ca`, valid from 1000 to 2000, adjusted by
        /// `edit`.
        fn cert(
            ca: &PrivateKey,
            host_key: &PrivateKey,
            edit: impl FnOnce(&mut Builder),
        ) -> Certificate {
            cert_as(ca, host_key, CertType::Host, "h", edit)
        }

        /// As [`cert`], of type `cert_type` with key ID `key_id` (a builder field can be
        /// set only once).
        fn cert_as(
            ca: &PrivateKey,
            host_key: &PrivateKey,
            cert_type: CertType,
            key_id: &str,
            edit: impl FnOnce(&mut Builder),
        ) -> Certificate {
            let mut b = Builder::new(
                vec![1; 32],
                host_key.public_key().key_data().clone(),
                1000,
                2000,
            )
            .unwrap();
            b.cert_type(cert_type).unwrap();
            b.key_id(key_id).unwrap();
            b.valid_principal("web1").unwrap();
            edit(&mut b);
            b.sign(ca).unwrap()
        }

        fn invalid(status: CertificateStatus) -> String {
            match status {
                CertificateStatus::Invalid(reason) => reason,
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn the_ca_is_looked_up_with_and_then_without_the_port() {
            let (ca, host) = (key(1), key(2));
            let c = cert(&ca, &host, |_| {});
            let kh = recorded(&line("@cert-authority ", "web1", &ca));
            assert_eq!(
                kh.check_certificate("web1", 2222, &c, 1500),
                CertificateStatus::Valid(KeyLocation {
                    file: "kh".into(),
                    line: 1
                })
            );
            assert!(kh.has_cert_authority("web1", 2222));
            assert!(kh.has_cert_authority("WEB1", 22));
            assert!(!kh.has_cert_authority("web2", 22));
            let kh = recorded(&line("@cert-authority ", "[web1]:2222", &ca));
            assert!(matches!(
                kh.check_certificate("web1", 2222, &c, 1500),
                CertificateStatus::Valid(_)
            ));
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &c, 1500)),
                format!(
                    "host certificate \"h\" is signed by CA {}, which no @cert-authority line \
                     for web1 names",
                    describe_key(ca.public_key().key_data())
                )
            );
        }

        #[test]
        fn the_validity_interval_is_inclusive_of_its_start_only() {
            let (ca, host) = (key(1), key(2));
            let c = cert(&ca, &host, |_| {});
            let kh = recorded(&line("@cert-authority ", "*", &ca));
            assert!(matches!(
                kh.check_certificate("web1", 22, &c, 1000),
                CertificateStatus::Valid(_)
            ));
            assert!(matches!(
                kh.check_certificate("web1", 22, &c, 1999),
                CertificateStatus::Valid(_)
            ));
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &c, 999)),
                "host certificate \"h\" is not valid before 1970-01-01T00:16:40Z"
            );
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &c, 2000)),
                "host certificate \"h\" expired at 1970-01-01T00:33:20Z"
            );
        }

        #[test]
        fn principals_compare_exactly_and_none_means_any_host() {
            let (ca, host) = (key(1), key(2));
            let kh = recorded(&line("@cert-authority ", "*", &ca));
            let c = cert(&ca, &host, |_| {});
            // The host name is lowercased, as ssh does with the name typed.
            assert!(matches!(
                kh.check_certificate("WEB1", 22, &c, 1500),
                CertificateStatus::Valid(_)
            ));
            assert_eq!(
                invalid(kh.check_certificate("web1.example.com", 22, &c, 1500)),
                "host certificate \"h\" is for principals [\"web1\"], not \"web1.example.com\""
            );
            let mut b = Builder::new(
                vec![1; 32],
                host.public_key().key_data().clone(),
                0,
                u64::MAX,
            )
            .unwrap();
            b.cert_type(CertType::Host).unwrap();
            b.all_principals_valid().unwrap();
            let any = b.sign(&ca).unwrap();
            assert!(matches!(
                kh.check_certificate("anything", 22, &any, 1500),
                CertificateStatus::Valid(_)
            ));
        }

        #[test]
        fn critical_options_and_user_certificates_are_refused() {
            let (ca, host) = (key(1), key(2));
            let kh = recorded(&line("@cert-authority ", "*", &ca));
            let c = cert(&ca, &host, |b| {
                b.critical_option("source-address", "10.0.0.1").unwrap();
            });
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &c, 1500)),
                "host certificate \"h\" has critical options (source-address), which OpenSSH \
                 refuses in a host certificate"
            );
            let c = cert_as(&ca, &host, CertType::User, "h", |_| {});
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &c, 1500)),
                "host certificate \"h\" is a user certificate, not a host certificate"
            );
        }

        #[test]
        fn a_signature_that_does_not_verify_is_refused() {
            let (ca, host, other) = (key(1), key(2), key(3));
            let kh = recorded(&line("@cert-authority ", "*", &ca));
            // Signed by another CA, then the trusted CA's key put in its place.
            let signed = cert_as(&other, &host, CertType::Host, "forged", |_| {});
            let mut bytes = signed.to_bytes().unwrap();
            let ca_blob = ca.public_key().to_bytes().unwrap();
            let other_blob = other.public_key().to_bytes().unwrap();
            let at = bytes
                .windows(other_blob.len())
                .position(|w| w == other_blob.as_slice())
                .unwrap();
            bytes.splice(at..at + other_blob.len(), ca_blob);
            let forged = Certificate::from_bytes(&bytes).unwrap();
            assert_eq!(forged.signature_key(), ca.public_key().key_data());
            assert_eq!(
                invalid(kh.check_certificate("web1", 22, &forged, 1500)),
                "host certificate \"forged\" has a CA signature that does not verify"
            );
        }

        #[test]
        fn revoked_keys_and_cas_are_refused_whatever_the_host_pattern() {
            let (ca, host) = (key(1), key(2));
            let c = cert(&ca, &host, |_| {});
            let kh = recorded(&format!(
                "{}{}",
                line("@cert-authority ", "*", &ca),
                line("@revoked ", "elsewhere", &ca)
            ));
            assert_eq!(
                kh.check_certificate("web1", 22, &c, 1500),
                CertificateStatus::Revoked(format!(
                    "host certificate \"h\" is signed by CA {}, which is marked @revoked in kh:2",
                    describe_key(ca.public_key().key_data())
                ))
            );
            let kh = recorded(&format!(
                "{}{}",
                line("@revoked ", "*", &host),
                line("@cert-authority ", "*", &ca)
            ));
            assert_eq!(
                kh.check_certificate("web1", 22, &c, 1500),
                CertificateStatus::Revoked(format!(
                    "host certificate \"h\" certifies key {}, which is marked @revoked in kh:1",
                    describe_key(host.public_key().key_data())
                ))
            );
        }

        #[test]
        fn times_are_printed_in_utc() {
            assert_eq!(unix_time(0), "1970-01-01T00:00:00Z");
            assert_eq!(unix_time(u64::MAX), "forever");
            assert_eq!(unix_time(253_402_300_799), "9999-12-31T23:59:59Z");
            assert_eq!(
                unix_time(253_402_300_800),
                "253402300800 seconds after 1970"
            );
        }
    }

    #[test]
    fn a_lookup_visits_its_named_lines_and_every_line_that_needs_matching() {
        let text = "\
a.example ssh-ed25519 AAAA1
b.example,[B.example]:2222 ssh-ed25519 AAAA2
*.example ssh-ed25519 AAAA3
@revoked c.example ssh-ed25519 AAAA4
|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAA5
A.EXAMPLE ssh-rsa AAAA6
# comment
d.example,!a.example ssh-ed25519 AAAA7
";
        let indexed = Indexed::new(text);
        let lines =
            |name: &str| -> Vec<usize> { indexed.candidates(name).map(|l| l.line).collect() };
        assert_eq!(lines("a.example"), vec![1, 3, 4, 5, 6, 8]);
        assert_eq!(lines("[b.example]:2222"), vec![2, 3, 4, 5, 8]);
        assert_eq!(lines("z.example"), vec![3, 4, 5, 8]);
    }
}
