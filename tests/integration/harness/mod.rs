//! The shared test harness: starts real OpenSSH `sshd` servers on 127.0.0.1 with a free
//! port, a temporary directory, generated host and user keys and their own
//! authorized_keys. Logins go to a dedicated local user, created on first use, whose login
//! shell is `/bin/sh` and whose home has no start-up files.
//!
//! Everything the tests need is installed here when missing (openssh-server), so no test
//! is ever skipped for lack of a server. The tests run as root.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rexec::{Agent, ConnectOptions, Credentials, Identity, KnownHosts, Secret};

pub const TEST_USER: &str = "rexec-test";
const STATE_DIR: &str = "/var/lib/rexec-test";

/// Runs a command and panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Machine-wide one-time setup, serialised across test processes by a file lock:
/// openssh-server installed, sshd's privilege separation directory, the test user with a
/// password. Returns the user's password.
pub fn setup() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        fs::create_dir_all(STATE_DIR).unwrap();
        fs::set_permissions(STATE_DIR, fs::Permissions::from_mode(0o700)).unwrap();
        let lock = fs::File::create(Path::new(STATE_DIR).join("setup.lock")).unwrap();
        lock.lock().unwrap();
        if !Path::new("/usr/sbin/sshd").exists() {
            run(Command::new("apt-get").args(["update", "-qq"]));
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "openssh-server", "openssh-client"])
                .env("DEBIAN_FRONTEND", "noninteractive"));
        }
        fs::create_dir_all("/run/sshd").unwrap();
        let password_file = Path::new(STATE_DIR).join("password");
        let user_exists = Command::new("id")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !user_exists || !password_file.exists() {
            if !user_exists {
                run(Command::new("useradd").args([
                    "--create-home",
                    "--shell",
                    "/bin/sh",
                    TEST_USER,
                ]));
            }
            let password = format!("pw-{:016x}", random_u64());
            run_with_stdin(
                &mut Command::new("chpasswd"),
                &format!("{TEST_USER}:{password}\n"),
            );
            fs::write(&password_file, &password).unwrap();
            fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
        }
        // No start-up files: tests measure rexec and sshd, not a shell's rc files.
        let home = home_of(TEST_USER);
        for f in [".bashrc", ".profile", ".bash_logout"] {
            let _ = fs::remove_file(home.join(f));
        }
        fs::read_to_string(&password_file)
            .unwrap()
            .trim()
            .to_owned()
    })
}

fn home_of(user: &str) -> PathBuf {
    let line = run(Command::new("getent").args(["passwd", user]));
    PathBuf::from(line.trim().split(':').nth(5).unwrap())
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u64::from_le_bytes(b)
}

/// Runs a command with `input` on its stdin and panics if it fails.
pub fn run_with_stdin(cmd: &mut Command, input: &str) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "{cmd:?} failed");
}

/// Generates a key pair with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, key_type: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", key_type, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if key_type == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
    path
}

/// What kind of server to start.
#[derive(Clone, Debug)]
pub struct SshdConfig {
    /// Host key types, e.g. ["ed25519"].
    pub host_key_types: Vec<&'static str>,
    /// UsePAM yes: keyboard-interactive answered through PAM.
    pub use_pam: bool,
    pub password_auth: bool,
    pub kbd_interactive: bool,
    /// Extra sshd_config lines.
    pub extra: Vec<String>,
    /// Loopback addresses to listen on (sshd takes at most 16).
    pub addresses: Vec<String>,
    /// Also let root log in with the server's user key (OpenSSH treats root sessions
    /// differently: it ignores `signal` requests for them).
    pub root_login: bool,
    /// The `Subsystem sftp` line (default on; off: a server without SFTP).
    pub sftp_subsystem: bool,
    /// Run the server inside this network namespace (`ip netns exec NAME sshd`; see
    /// `netns::Topology`). Default: none.
    pub netns: Option<String>,
    /// An authorized_keys file with the server's user key (default on; off:
    /// `AuthorizedKeysFile none`, so only certificates log in, with `TrustedUserCAKeys`
    /// among `extra`).
    pub authorized_keys: bool,
    /// Sign every host key with this CA and serve the certificates (`HostCertificate`).
    pub host_certificate: Option<HostCertificateSpec>,
}

/// How the harness signs its host keys: `ssh-keygen -s CA -I rexec-test-host ARGS KEY.pub`
/// (`args` usually holds `-h`, `-n PRINCIPALS` and `-V VALIDITY`).
#[derive(Clone, Debug)]
pub struct HostCertificateSpec {
    pub ca: PathBuf,
    pub args: Vec<String>,
}

impl Default for SshdConfig {
    fn default() -> Self {
        SshdConfig {
            host_key_types: vec!["ed25519"],
            use_pam: false,
            password_auth: true,
            kbd_interactive: false,
            extra: Vec::new(),
            addresses: vec!["127.0.0.1".to_owned()],
            root_login: false,
            sftp_subsystem: true,
            authorized_keys: true,
            host_certificate: None,
            netns: None,
        }
    }
}

/// A running sshd. Killed on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user_key: PathBuf,
    pub host_keys: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    pub addresses: Vec<String>,
    child: Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(SshdConfig::default())
    }

    pub fn start_with(config: SshdConfig) -> Sshd {
        setup();
        let dir = tempfile::Builder::new()
            .prefix("rexec-sshd-")
            .tempdir()
            .unwrap();
        // The test user reads authorized_keys and test files from here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut host_keys = Vec::new();
        for t in &config.host_key_types {
            host_keys.push(keygen(dir.path(), &format!("ssh_host_{t}_key"), t, ""));
        }
        let user_key = keygen(dir.path(), "id_user", "ed25519", "");
        let authorized = dir.path().join("authorized_keys");
        fs::copy(user_key.with_extension("pub"), &authorized).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();

        let mut host_certificates = Vec::new();
        if let Some(spec) = &config.host_certificate {
            for k in &host_keys {
                run(Command::new("ssh-keygen")
                    .args(["-q", "-s"])
                    .arg(&spec.ca)
                    .args(["-I", "rexec-test-host"])
                    .args(&spec.args)
                    .arg(k.with_extension("pub")));
                host_certificates.push(dir.path().join(format!(
                    "{}-cert.pub",
                    k.file_name().unwrap().to_str().unwrap()
                )));
            }
        }

        for attempt in 0..20 {
            let port = free_port();
            let config_path = dir.path().join("sshd_config");
            let mut text = format!(
                "Port {port}\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {authorized}\nStrictModes no\n\
                 UsePAM {pam}\nPasswordAuthentication {pw}\nKbdInteractiveAuthentication {kbd}\n\
                 PermitRootLogin {root}\nAllowUsers {TEST_USER}{also_root}\nMaxStartups 200:30:400\n\
                 MaxSessions 32\nLogLevel VERBOSE\nSetEnv {LEAK_TAG}={dir}\n",
                dir = dir.path().display(),
                authorized = if config.authorized_keys {
                    format!("{}/authorized_keys", dir.path().display())
                } else {
                    "none".to_owned()
                },
                root = if config.root_login { "prohibit-password" } else { "no" },
                also_root = if config.root_login { " root" } else { "" },
                pam = yes(config.use_pam),
                pw = yes(config.password_auth),
                kbd = yes(config.kbd_interactive),
            );
            if config.sftp_subsystem {
                text.push_str("Subsystem sftp /usr/lib/openssh/sftp-server\n");
            }
            for k in &host_keys {
                text.push_str(&format!("HostKey {}\n", k.display()));
            }
            for c in &host_certificates {
                text.push_str(&format!("HostCertificate {}\n", c.display()));
            }
            for a in &config.addresses {
                text.push_str(&format!("ListenAddress {a}\n"));
            }
            for line in &config.extra {
                text.push_str(line);
                text.push('\n');
            }
            fs::write(&config_path, text).unwrap();
            let log = fs::File::create(dir.path().join("sshd.log")).unwrap();
            let mut sshd_command = match &config.netns {
                // `ip netns exec` execs sshd: the child is the server itself.
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "/usr/sbin/sshd"]);
                    c
                }
                None => Command::new("/usr/sbin/sshd"),
            };
            let mut child = sshd_command
                .args(["-D", "-e", "-f"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            if config
                .addresses
                .iter()
                .all(|a| wait_listening(a, port, &mut child))
            {
                let known_hosts = dir.path().join("known_hosts");
                let mut sshd = Sshd {
                    dir,
                    port,
                    user_key,
                    host_keys,
                    known_hosts,
                    addresses: config.addresses.clone(),
                    child,
                };
                sshd.write_known_hosts();
                return sshd;
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("sshd did not start on port {port} (attempt {attempt}), retrying");
        }
        panic!(
            "sshd would not start; log:\n{}",
            fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
        );
    }

    /// `[address]:port <key>` lines for every address and host key, as in the harness's
    /// known_hosts.
    pub fn known_hosts_lines(&self) -> String {
        let mut text = String::new();
        for address in &self.addresses {
            for k in &self.host_keys {
                let public = fs::read_to_string(k.with_extension("pub")).unwrap();
                let mut parts = public.split_whitespace();
                text.push_str(&format!(
                    "[{address}]:{} {} {}\n",
                    self.port,
                    parts.next().unwrap(),
                    parts.next().unwrap()
                ));
            }
        }
        text
    }

    fn write_known_hosts(&mut self) {
        fs::write(&self.known_hosts, self.known_hosts_lines()).unwrap();
    }

    /// Options that log in as the test user with the server's user key, strict host key
    /// checking against the server's known_hosts, and no agent.
    pub fn options(&self) -> ConnectOptions {
        let mut creds = Credentials::new();
        creds = creds
            .identity(Identity::from_file(&self.user_key, None).unwrap())
            .agent(Agent::Off);
        self.bare_options().credentials(creds)
    }

    /// Like `options` but with no credentials at all.
    pub fn bare_options(&self) -> ConnectOptions {
        let mut creds = Credentials::new();
        creds = creds.agent(Agent::Off);
        ConnectOptions::new("127.0.0.1")
            .port(self.port)
            .user(TEST_USER)
            .credentials(creds)
            .known_hosts(KnownHosts::file(&self.known_hosts))
            .connect_timeout(Duration::from_secs(10))
    }

    pub fn password() -> Secret {
        Secret::new(setup())
    }

    /// A file in the server's directory, readable by the test user.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// Appends the public half of `private_key` to the server's authorized_keys.
    pub fn authorize(&self, private_key: &Path) {
        let public = fs::read_to_string(private_key.with_extension("pub")).unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .unwrap();
        f.write_all(public.as_bytes()).unwrap();
    }

    /// Generates a user key in the server's directory and authorizes it.
    pub fn new_user_key(&self, name: &str, key_type: &str, passphrase: &str) -> PathBuf {
        let key = keygen(self.dir.path(), name, key_type, passphrase);
        self.authorize(&key);
        key
    }

    /// A directory in the server's temp dir owned by the test user (for uploads).
    pub fn user_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        run(Command::new("chown").arg(format!("{TEST_USER}:")).arg(&p));
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Every session of a harness sshd carries `REXEC_TEST_SSHD=<its directory>` in its
/// environment (sshd_config `SetEnv`), so the processes a test left behind can be found.
pub const LEAK_TAG: &str = "REXEC_TEST_SSHD";

/// Processes whose environment has `REXEC_TEST_SSHD=<tag>`: the sessions of one harness
/// sshd and everything they started (unless it cleared its environment).
pub fn tagged_processes(tag: &str) -> Vec<(u32, String)> {
    let needle = format!("{LEAK_TAG}={tag}");
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

impl Sshd {
    /// The processes this server's sessions left running.
    pub fn leftovers(&self) -> Vec<(u32, String)> {
        tagged_processes(&self.dir.path().display().to_string())
    }

    /// Kills whatever this server's sessions left running (for tests that leave a process
    /// on purpose, e.g. one rexec cannot stop); returns what was killed.
    pub fn kill_leftovers(&self) -> Vec<(u32, String)> {
        let left = self.leftovers();
        for (pid, _) in &left {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        left
    }
}

impl Drop for Sshd {
    /// Stops the server, then asserts that no process of its sessions outlived the test
    /// (the leftovers are killed either way). Waits a few seconds first: a command being
    /// stopped may still be on its way out.
    fn drop(&mut self) {
        // The connections' own sshd processes end too (a test's sessions may still be
        // open: on a current-thread runtime they cannot close while this blocks), so
        // whatever only lived as long as its session (sftp-server) goes with them.
        let connections: Vec<u32> = descendants(self.child.id())
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sshd")
            })
            .collect();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in connections {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let tag = self.dir.path().display().to_string();
        if eventually(Duration::from_secs(10), || {
            tagged_processes(&tag).is_empty()
        }) {
            return;
        }
        let left = self.kill_leftovers();
        if !std::thread::panicking() {
            panic!("the test left processes running on its sshd: {left:?}");
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a socket listens on `address:port`, read from /proc/net/tcp so that checking
/// does not itself connect (tests count sshd's connections).
fn is_listening(address: &str, port: u16) -> bool {
    if address.contains(':') {
        return is_listening_v6(address, port);
    }
    let ip: std::net::Ipv4Addr = address.parse().unwrap();
    let o = ip.octets();
    let local = format!(
        "{:02X}{:02X}{:02X}{:02X}:{port:04X}",
        o[3], o[2], o[1], o[0]
    );
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (local_field, state) = (fields.nth(1), fields.nth(1));
        local_field == Some(local.as_str()) && state == Some("0A")
    })
}

fn wait_listening(address: &str, port: u16, child: &mut Child) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if is_listening(address, port) || netns::is_listening_in(child.id(), address, port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// An ssh-agent on a private socket, killed on drop.
pub struct SshAgent {
    pub socket: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    pub fn start() -> SshAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let out = run(Command::new("ssh-agent").arg("-a").arg(&socket).arg("-s"));
        let pid = out
            .split(';')
            .find_map(|part| part.trim().strip_prefix("SSH_AGENT_PID="))
            .unwrap()
            .parse()
            .unwrap();
        SshAgent {
            socket,
            pid,
            _dir: dir,
        }
    }

    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// Processes of the test user whose command line contains `pattern`.
pub fn remote_processes(pattern: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-u", TEST_USER, "-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits up to `limit` for `cond`; a guard against hangs, not a timing assertion.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Several sshd servers, each on several loopback addresses, that all accept one user key
/// and are all recorded in one known_hosts file: a fleet of hosts for fan-out tests.
pub struct Cluster {
    pub servers: Vec<Sshd>,
    pub user_key: PathBuf,
    pub known_hosts: PathBuf,
    pub dir: tempfile::TempDir,
}

/// One reachable host of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterHost {
    pub address: String,
    pub port: u16,
}

impl Cluster {
    /// `servers` servers with `per_server` addresses each, host numbers from `first` on
    /// (tests running at once use distinct ranges).
    pub fn start(servers: usize, per_server: usize, first: usize) -> Cluster {
        assert!(per_server <= 16);
        let dir = tempfile::tempdir().unwrap();
        let mut started = Vec::new();
        for s in 0..servers {
            // Host number n is 127.0.(n / 200).(n % 200 + 2): distinct, never .0 or .255.
            let addresses = (0..per_server)
                .map(|i| {
                    let n = first + s * per_server + i;
                    format!("127.0.{}.{}", n / 200, n % 200 + 2)
                })
                .collect();
            started.push(Sshd::start_with(SshdConfig {
                addresses,
                ..SshdConfig::default()
            }));
        }
        let user_key = started[0].user_key.clone();
        for server in &started[1..] {
            server.authorize(&user_key);
        }
        let known_hosts = dir.path().join("known_hosts");
        let lines: String = started.iter().map(Sshd::known_hosts_lines).collect();
        fs::write(&known_hosts, lines).unwrap();
        Cluster {
            servers: started,
            user_key,
            known_hosts,
            dir,
        }
    }

    pub fn hosts(&self) -> Vec<ClusterHost> {
        self.servers
            .iter()
            .flat_map(|s| {
                s.addresses.iter().map(|a| ClusterHost {
                    address: a.clone(),
                    port: s.port,
                })
            })
            .collect()
    }

    /// An inventory file with `nodeNN` for each host (`overrides` replace a host's
    /// entry by name), logging in as the test user with the cluster's key.
    pub fn inventory(&self, overrides: &[(&str, String)], extra: &str) -> PathBuf {
        let mut text = format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\n\
             known_hosts = \"{}\"\nconnect_timeout = \"10s\"\n\n[hosts]\n",
            self.user_key.display(),
            self.known_hosts.display()
        );
        for (i, h) in self.hosts().iter().enumerate() {
            let name = format!("node{:02}", i + 1);
            match overrides.iter().find(|(n, _)| *n == name) {
                Some((_, entry)) => text.push_str(&format!("{name} = {entry}\n")),
                None => text.push_str(&format!(
                    "{name} = {{ address = \"{}\", port = {} }}\n",
                    h.address, h.port
                )),
            }
        }
        text.push_str(extra);
        let path = self.dir.path().join("hosts.toml");
        fs::write(&path, text).unwrap();
        path
    }
}

/// Every descendant process of `root`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        let out = Command::new("pgrep")
            .args(["-P", &p.to_string()])
            .output()
            .unwrap();
        for child in String::from_utf8_lossy(&out.stdout).lines() {
            let c: u32 = child.trim().parse().unwrap();
            all.push(c);
            queue.push(c);
        }
    }
    all
}

/// Kills the descendants of `root` whose command name is `name`; returns how many.
pub fn kill_children_named(root: u32, name: &str) -> usize {
    let mut killed = 0;
    for pid in descendants(root) {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            killed += 1;
        }
    }
    killed
}

/// A second login user whose login shell is bash (the test user's is `/bin/sh`, dash),
/// with no start-up files. A server lets it in when started with
/// [`allow_bash_user`] among its `extra` lines; it logs in with the server's user key
/// (every user shares the server's authorized_keys).
pub const BASH_USER: &str = "rexec-test-bash";

/// Creates [`BASH_USER`] on first use (serialised across test processes like `setup`)
/// and returns its name.
pub fn bash_user() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        setup();
        let lock = fs::File::create(Path::new(STATE_DIR).join("setup.lock")).unwrap();
        lock.lock().unwrap();
        let exists = Command::new("id")
            .arg(BASH_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", BASH_USER]));
        }
        // No password, but not locked: sshd refuses keys for a locked account ("!").
        run(Command::new("usermod").args(["-p", "*", BASH_USER]));
        let home = home_of(BASH_USER);
        for f in [".bashrc", ".profile", ".bash_logout"] {
            let _ = fs::remove_file(home.join(f));
        }
    });
    BASH_USER
}

/// The sshd_config line that lets both the test user and [`BASH_USER`] log in.
pub fn allow_bash_user() -> String {
    format!("AllowUsers {TEST_USER} {BASH_USER}")
}

impl Sshd {
    /// Like `options`, logging in as `user` instead of the test user.
    pub fn options_as(&self, user: &str) -> ConnectOptions {
        self.options().user(user)
    }
}

pub mod cli;
pub mod fake_server;

/// `is_listening` for an IPv6 address (`"::1"` in `SshdConfig::addresses`), read from
/// /proc/net/tcp6: the address is four 32-bit words, each in host (little-endian) order.
fn is_listening_v6(address: &str, port: u16) -> bool {
    let ip: std::net::Ipv6Addr = address.parse().unwrap();
    let mut local = String::new();
    for word in ip.octets().chunks(4) {
        for byte in word.iter().rev() {
            local.push_str(&format!("{byte:02X}"));
        }
    }
    local.push_str(&format!(":{port:04X}"));
    let table = fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (local_field, state) = (fields.nth(1), fields.nth(1));
        local_field == Some(local.as_str()) && state == Some("0A")
    })
}

pub mod netns;
pub mod sudo;
