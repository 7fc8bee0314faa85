//! Network namespaces for jump host tests: a chain of namespaces, each linked only to
//! the one before it by a veth pair, so that a server in namespace 2 is unreachable from
//! the test (in the root namespace) except through a server in namespace 1.
//!
//! ```text
//! root (test) --10.201.X.0/24-- ns 1 (bastion) --10.202.X.0/24-- ns 2 (targets) -- ...
//!        .1                     .2          .1                  .2, .3, ...
//! ```
//!
//! Link `k` joins level `k - 1` (the root namespace for `k = 1`) to level `k` on
//! `10.(200 + k).X.0/24`: `.1` on the upper side, `.2` and up on the lower side. No
//! namespace forwards packets, and the root namespace has a route to link 1 only, so
//! addresses on link 2 and beyond can only be reached by a process inside a namespace.
//! `X` is claimed by creating namespace `rxjXn1` (creation fails if it exists), so tests
//! running at once get distinct subnets. Everything is deleted on drop.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{run, Sshd, SshdConfig};

pub struct Topology {
    pub id: u32,
    pub levels: usize,
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

fn ip_ok(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Topology {
    /// `levels` namespaces in a chain below the root namespace.
    pub fn new(levels: usize) -> Topology {
        assert!((1..=5).contains(&levels));
        super::setup();
        let start = (super::random_u64() % 250) as u32;
        for attempt in 0..250 {
            let id = (start + attempt) % 250 + 1;
            if !ip_ok(&["netns", "add", &format!("rxj{id}n1")]) {
                continue;
            }
            let topology = Topology { id, levels };
            topology.build();
            return topology;
        }
        panic!("no free namespace id");
    }

    pub fn namespace(&self, level: usize) -> String {
        format!("rxj{}n{level}", self.id)
    }

    /// Address `index` (0, 1, ...) on the lower side of link `level` (in namespace
    /// `level`).
    pub fn address(&self, level: usize, index: usize) -> String {
        assert!(index < 250);
        format!("10.{}.{}.{}", 200 + level, self.id, 2 + index)
    }

    /// The upper side of link `level` (in the namespace above it).
    pub fn gateway(&self, level: usize) -> String {
        format!("10.{}.{}.1", 200 + level, self.id)
    }

    fn build(&self) {
        for level in 1..=self.levels {
            let ns = self.namespace(level);
            if level > 1 {
                ip(&["netns", "add", &ns]);
            }
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            let upper = format!("rxj{}a{level}", self.id);
            let lower = format!("rxj{}b{level}", self.id);
            ip(&[
                "link", "add", &upper, "type", "veth", "peer", "name", &lower,
            ]);
            ip(&["link", "set", &lower, "netns", &ns]);
            if level > 1 {
                ip(&["link", "set", &upper, "netns", &self.namespace(level - 1)]);
            }
            let upper_address = format!("{}/24", self.gateway(level));
            self.in_level(level - 1, &["addr", "add", &upper_address, "dev", &upper]);
            self.in_level(level - 1, &["link", "set", &upper, "up"]);
            let lower_address = format!("{}/24", self.address(level, 0));
            self.in_level(level, &["addr", "add", &lower_address, "dev", &lower]);
            self.in_level(level, &["link", "set", &lower, "up"]);
        }
    }

    /// Runs `ip ARGS` in namespace `level` (0: the root namespace).
    fn in_level(&self, level: usize, args: &[&str]) {
        if level == 0 {
            ip(args);
        } else {
            let ns = self.namespace(level);
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        }
    }

    /// Adds addresses `1..count` on the lower side of link `level` (address 0 is always
    /// there).
    pub fn add_addresses(&self, level: usize, count: usize) {
        let lower = format!("rxj{}b{level}", self.id);
        for i in 1..count {
            let address = format!("{}/24", self.address(level, i));
            self.in_level(level, &["addr", "add", &address, "dev", &lower]);
        }
    }

    /// An sshd inside namespace `level`, listening on `addresses` of it.
    pub fn sshd(&self, level: usize, addresses: Vec<String>, config: SshdConfig) -> Sshd {
        Sshd::start_with(SshdConfig {
            addresses,
            netns: Some(self.namespace(level)),
            ..config
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of each veth pair, and with it the pair.
        let _ = ip_ok(&["link", "del", &format!("rxj{}a1", self.id)]);
        for level in (1..=self.levels).rev() {
            let _ = ip_ok(&["netns", "del", &self.namespace(level)]);
        }
    }
}

/// Whether a TCP connection from the test process to `address:port` fails (refused,
/// unreachable, or no answer within 2 s).
pub fn direct_connect_fails(address: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{address}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

/// Whether direct TCP connections from the test process to every one of `targets` fail,
/// tried all at once (each may wait its 2 s).
pub fn direct_connects_all_fail(targets: &[(String, u16)]) -> bool {
    std::thread::scope(|scope| {
        let tries: Vec<_> = targets
            .iter()
            .map(|(address, port)| scope.spawn(move || direct_connect_fails(address, *port)))
            .collect();
        tries.into_iter().all(|t| t.join().unwrap())
    })
}

/// Whether a socket listens on `address:port` in the network namespace of process `pid`
/// (its /proc/PID/net/tcp).
pub fn is_listening_in(pid: u32, address: &str, port: u16) -> bool {
    let Ok(ip) = address.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let o = ip.octets();
    let local = format!(
        "{:02X}{:02X}{:02X}{:02X}:{port:04X}",
        o[3], o[2], o[1], o[0]
    );
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (local_field, state) = (fields.nth(1), fields.nth(1));
        local_field == Some(local.as_str()) && state == Some("0A")
    })
}

/// Lines of a server's log containing `needle`.
pub fn log_count(sshd: &Sshd, needle: &str) -> usize {
    sshd.log().lines().filter(|l| l.contains(needle)).count()
}

/// Installs a Debian package when `binary` is missing.
pub fn ensure_installed(binary: &str, package: &str) {
    if Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        return;
    }
    let lock = fs::File::create("/var/lib/rexec-test/apt.lock").unwrap();
    lock.lock().unwrap();
    let install = || {
        Command::new("apt-get")
            .args([
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "-qq",
                package,
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .unwrap()
            .success()
    };
    if !install() {
        run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update", "-qq"]));
        assert!(install(), "cannot install {package}");
    }
}
