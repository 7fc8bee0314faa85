//! Jump hosts (`proxy_jump`, `-J`, [`rexec::JumpHost`]) and `proxy_command`, against
//! real sshd servers in network namespaces: the targets sit in a namespace that the test
//! process has no route to (checked in each test: a direct TCP connect fails), so a
//! command that reaches them went through the bastion. The target sees the bastion's
//! address in `SSH_CONNECTION`, which the tests check too.

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::cli::{json_lines, text};
use harness::netns::{
    direct_connect_fails, direct_connects_all_fail, ensure_installed, log_count, Topology,
};
use harness::{eventually, HostCertificateSpec, Sshd, SshdConfig, TEST_USER};
use rexec::{
    Agent, ConnectOptions, Credentials, ErrorKind, Identity, Inventory, JumpHost, Jumps,
    KnownHosts, Outcome, Pool, Session, TargetBuilder,
};

/// Bastions in namespaces 1..=hops (one each), target servers in namespace hops + 1,
/// all accepting one user key and recorded in one known_hosts file. Fields drop in
/// order: servers before the namespaces they run in.
struct Lab {
    targets: Vec<Sshd>,
    bastions: Vec<Sshd>,
    topology: Topology,
    dir: tempfile::TempDir,
    key: PathBuf,
    known_hosts: PathBuf,
}

/// One target address.
#[derive(Clone)]
struct TargetAddress {
    address: String,
    port: u16,
}

impl Lab {
    fn new(hops: usize, servers: usize, per_server: usize, target: SshdConfig) -> Lab {
        Lab::with_bastions(hops, servers, per_server, target, SshdConfig::default())
    }

    fn with_bastions(
        hops: usize,
        servers: usize,
        per_server: usize,
        target: SshdConfig,
        bastion: SshdConfig,
    ) -> Lab {
        let topology = Topology::new(hops + 1);
        let level = hops + 1;
        topology.add_addresses(level, servers * per_server);
        let bastions: Vec<Sshd> = (1..=hops)
            .map(|l| topology.sshd(l, vec![topology.address(l, 0)], bastion.clone()))
            .collect();
        let targets: Vec<Sshd> = (0..servers)
            .map(|s| {
                let addresses = (s * per_server..(s + 1) * per_server)
                    .map(|i| topology.address(level, i))
                    .collect();
                topology.sshd(level, addresses, target.clone())
            })
            .collect();
        let key = bastions[0].user_key.clone();
        for server in bastions.iter().skip(1).chain(&targets) {
            server.authorize(&key);
        }
        let dir = tempfile::tempdir().unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let lines: String = bastions
            .iter()
            .chain(&targets)
            .map(Sshd::known_hosts_lines)
            .collect();
        std::fs::write(&known_hosts, lines).unwrap();
        Lab {
            targets,
            bastions,
            topology,
            dir,
            key,
            known_hosts,
        }
    }

    fn target_addresses(&self) -> Vec<TargetAddress> {
        self.targets
            .iter()
            .flat_map(|s| {
                s.addresses.iter().map(|a| TargetAddress {
                    address: a.clone(),
                    port: s.port,
                })
            })
            .collect()
    }

    /// `rexec-test@ADDRESS:PORT,...` for every bastion, first hop first.
    fn jump_spec(&self) -> String {
        self.bastions
            .iter()
            .map(|b| format!("{TEST_USER}@{}:{}", b.addresses[0], b.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// rexec on `host` through every bastion (`-J`), as the test user with the lab's key
    /// and known_hosts, no agent, then `extra`.
    fn run_through(&self, host: &str, extra: &[&str]) -> Output {
        let spec = self.jump_spec();
        let mut args = vec![
            "-H",
            host,
            "-u",
            TEST_USER,
            "-I",
            self.key.to_str().unwrap(),
            "--known-hosts",
            self.known_hosts.to_str().unwrap(),
            "--no-agent",
            "-J",
            &spec,
        ];
        args.extend_from_slice(extra);
        rexec(&args)
    }

    fn hops(&self) -> Vec<JumpHost> {
        JumpHost::parse_list(&self.jump_spec()).unwrap()
    }

    fn credentials(&self) -> Credentials {
        let mut creds = Credentials::new();
        creds = creds
            .identity(Identity::from_file(&self.key, None).unwrap())
            .agent(Agent::Off);
        creds
    }

    fn options(&self, target: &TargetAddress) -> ConnectOptions {
        ConnectOptions::new(target.address.clone())
            .port(target.port)
            .user(TEST_USER)
            .credentials(self.credentials())
            .known_hosts(KnownHosts::file(&self.known_hosts))
            .connect_timeout(Duration::from_secs(10))
            .proxy_jump(self.hops())
    }

    /// An inventory `t01`, `t02`... of every target address, with `defaults` lines
    /// added to `[defaults]`.
    fn inventory(&self, defaults: &str) -> PathBuf {
        let mut text = format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\n\
             known_hosts = \"{}\"\nconnect_timeout = \"10s\"\n{defaults}\n[hosts]\n",
            self.key.display(),
            self.known_hosts.display()
        );
        for (i, t) in self.target_addresses().iter().enumerate() {
            text.push_str(&format!(
                "t{:02} = {{ address = \"{}\", port = {} }}\n",
                i + 1,
                t.address,
                t.port
            ));
        }
        let path = self
            .dir
            .path()
            .join(format!("hosts-{}.toml", harness::random_u64()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The address a target sees connections through the last bastion come from.
    fn last_bastion_inside(&self) -> String {
        self.topology.gateway(self.bastions.len() + 1)
    }
}

fn rexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("REXEC_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// TCP connections in state established from this namespace to `address:port`.
fn established_to(address: &str, port: u16) -> usize {
    let out = Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            "dst",
            &format!("{address}:{port}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The processes whose command line contains `marker` (not zombies: a zombie's command
/// line is empty), as pids.
fn processes_with(marker: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn one_hop_reaches_a_target_that_has_no_route_from_the_test() {
    let lab = Lab::new(1, 1, 1, SshdConfig::default());
    let target = lab.target_addresses()[0].clone();
    let bastion = &lab.bastions[0];
    assert!(
        direct_connect_fails(&target.address, target.port),
        "the target must not be reachable without the jump"
    );
    assert!(!direct_connect_fails(&bastion.addresses[0], bastion.port));

    let rt = runtime();
    rt.block_on(async {
        // Without the jump: unreachable.
        let direct = lab
            .options(&target)
            .proxy_jump(Vec::new())
            .connect_timeout(Duration::from_secs(2));
        let e = Session::connect(&direct).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Connect | ErrorKind::Timeout),
            "{e:#}"
        );

        let session = Session::connect(&lab.options(&target)).await.unwrap();
        let out = session
            .raw_command("echo $SSH_CONNECTION")
            .output()
            .await
            .unwrap()
            .check()
            .unwrap();
        // The target saw the connection come from the bastion's side of its link.
        assert!(
            out.stdout_lossy()
                .starts_with(&format!("{} ", lab.last_bastion_inside())),
            "{}",
            out.stdout_lossy()
        );
        session.close().await.unwrap();
    });
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 1);
}

#[test]
fn two_hops_from_the_command_line() {
    let lab = Lab::new(2, 1, 1, SshdConfig::default());
    let target = lab.target_addresses()[0].clone();
    let second = &lab.bastions[1];
    assert!(direct_connect_fails(&target.address, target.port));
    assert!(direct_connect_fails(&second.addresses[0], second.port));

    let host = format!("{}:{}", target.address, target.port);
    let out = lab.run_through(&host, &["--json", "echo $SSH_CONNECTION"]);
    let (results, summary) = json_lines(&out);
    let r = &results[&host];
    assert_eq!(r["outcome"], "ok", "{r} {}", text(&out.stderr));
    assert!(
        r["stdout"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} ", lab.last_bastion_inside())),
        "{r}"
    );
    assert_eq!(summary["exit_code"], 0);
    // Each bastion saw exactly one connection: hop 2 rode a channel through hop 1 (its
    // log shows the connection coming from hop 1's side of their link).
    for b in &lab.bastions {
        assert_eq!(
            log_count(b, "Accepted publickey for rexec-test"),
            1,
            "{}",
            b.log()
        );
    }
    let from_first = format!("Connection from {} ", lab.topology.gateway(2));
    assert_eq!(log_count(second, &from_first), 1, "{}", second.log());

    // The second hop's host key unknown: the error names hop 2.
    let without_second: String = lab.bastions[..1]
        .iter()
        .chain(&lab.targets)
        .map(Sshd::known_hosts_lines)
        .collect();
    std::fs::write(&lab.known_hosts, without_second).unwrap();
    let out = lab.run_through(&host, &["--json", "true"]);
    let (results, summary) = json_lines(&out);
    let r = &results[&host];
    assert_eq!(r["outcome"], "host-key-rejected", "{r}");
    assert_eq!(r["error"]["kind"], "host-key-unknown", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    let second_name = format!("{}:{}", second.addresses[0], second.port);
    assert!(
        message.starts_with(&format!("jump host {second_name} (hop 2 of 2): "))
            && message.contains("is not in known_hosts"),
        "{message}"
    );
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(log_count(second, "Accepted publickey"), 1);
}

#[test]
fn fifty_targets_share_capped_connections_to_one_bastion() {
    let lab = Lab::new(1, 5, 10, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let inventory = lab.inventory(&format!("proxy_jump = \"{}\"", lab.jump_spec()));
    let hosts = Inventory::from_file(&inventory, &Default::default()).unwrap();
    let targets = TargetBuilder::new()
        .agent(Agent::Off)
        .build_all(hosts.hosts())
        .unwrap();
    assert_eq!(targets.len(), 50);
    let addresses: Vec<(String, u16)> = targets
        .iter()
        .map(|t| (t.connect.hostname().to_owned(), t.connect.port_number()))
        .collect();
    assert!(
        direct_connects_all_fail(&addresses),
        "the targets must not be reachable without the jump"
    );

    let rt = runtime();
    rt.block_on(async {
        // All 50 connected at once: 50 channels at 10 per connection is 5 connections,
        // one handshake and authentication each.
        let jumps = Jumps::new();
        assert_eq!(jumps.channels_per_connection(), 10);
        let pool = Pool::from_targets(targets.clone())
            .concurrency(64)
            .jumps(jumps.clone());
        let sessions = pool.connect_all(|_| {}).await;
        assert_eq!(sessions.connected(), 50);
        assert_eq!(jumps.connections(), 5);
        // The kernel agrees: 5 TCP connections to the bastion from this process's
        // namespace, and the bastion serves 5 authenticated connections.
        assert_eq!(
            established_to(&bastion.addresses[0], bastion.port),
            5,
            "{}",
            bastion.log()
        );
        let results = sessions.run("echo $SSH_CONNECTION").await;
        for r in &results {
            assert_eq!(r.outcome(), Outcome::Ok, "{:?}", r.result);
            let out = r.result.as_ref().unwrap().stdout_lossy();
            assert!(
                out.starts_with(&format!("{} ", lab.last_bastion_inside())),
                "{out}"
            );
        }
        assert_eq!(log_count(bastion, "Connection from"), 5);
        assert_eq!(log_count(bastion, "Accepted publickey"), 5);

        // No session uses them any more: the connections close.
        drop(sessions);
        assert!(eventually(Duration::from_secs(10), || jumps.connections() == 0));

        // A cap of 50: one connection carries all 50.
        let jumps = Jumps::with_channels_per_connection(50);
        let pool = Pool::from_targets(targets.clone())
            .concurrency(64)
            .jumps(jumps.clone());
        let sessions = pool.connect_all(|_| {}).await;
        assert_eq!(sessions.connected(), 50);
        assert_eq!(jumps.connections(), 1);
        sessions.close().await;

        // A cap of 1, 50 targets at once: 50 connections to the bastion, opened one
        // after another, none of them dropped by the bastion's MaxStartups (10).
        let jumps = Jumps::with_channels_per_connection(1);
        let pool = Pool::from_targets(targets.clone())
            .concurrency(64)
            .jumps(jumps.clone());
        let sessions = pool.connect_all(|_| {}).await;
        assert_eq!(sessions.connected(), 50);
        assert_eq!(jumps.connections(), 50);
        sessions.close().await;
    });
    assert_eq!(log_count(bastion, "Connection from"), 56);
    // Paced: the bastion never started dropping unauthenticated connections.
    assert_eq!(log_count(bastion, "MaxStartups"), 0, "{}", bastion.log());
    // The bastion's connection processes are gone.
    assert!(eventually(Duration::from_secs(10), || {
        harness::descendants(bastion.pid()).is_empty()
    }));

    // The command line gets the sharing by itself.
    let out = rexec(&["-i", inventory.to_str().unwrap(), "--json", "true"]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results.len(), 50);
    assert_eq!(summary["exit_code"], 0, "{}", text(&out.stdout));
    let connections = log_count(bastion, "Connection from") - 56;
    assert!(
        (1..=5).contains(&connections),
        "50 targets took {connections} bastion connections"
    );
}

/// A target behind a bastion that `-J none` reaches directly: the jump host of the
/// host's own inventory entry (nothing listens there) is not used: the command line wins
/// over the whole inventory. No namespace needed: the target is on loopback.
#[test]
fn jump_none_on_the_command_line_turns_the_inventorys_jump_off() {
    let server = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, server.known_hosts_lines()).unwrap();
    let inventory = dir.path().join("hosts.toml");
    std::fs::write(
        &inventory,
        format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\n\
             known_hosts = \"{}\"\n[hosts]\nweb1 = {{ address = \"127.0.0.1\", port = {}, \
             proxy_jump = \"{TEST_USER}@127.0.0.1:1\" }}\n",
            server.user_key.display(),
            known_hosts.display(),
            server.port
        ),
    )
    .unwrap();
    let inventory = inventory.to_str().unwrap();
    let out = rexec(&["-i", inventory, "--json", "true"]);
    let (results, _) = json_lines(&out);
    assert_eq!(
        results["web1"]["outcome"],
        "unreachable",
        "{}",
        text(&out.stdout)
    );
    let message = results["web1"]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("jump host 127.0.0.1:1 (hop 1 of 1): "),
        "{message}"
    );
    let out = rexec(&["-i", inventory, "-J", "none", "--json", "true"]);
    let (results, summary) = json_lines(&out);
    assert_eq!(results["web1"]["outcome"], "ok", "{}", text(&out.stdout));
    assert_eq!(summary["exit_code"], 0);
}

/// The topology's guard deletes its namespaces and links, also when the test using it
/// panics.
#[test]
fn topology_leaves_no_namespace_behind() {
    let names = |id: u32| -> Vec<String> {
        let list = text(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        );
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("rxj{id}n")))
            .map(str::to_owned)
            .collect()
    };
    let topology = Topology::new(2);
    let id = topology.id;
    assert_eq!(names(id).len(), 2);
    drop(topology);
    assert!(names(id).is_empty());

    let id = std::sync::Mutex::new(0);
    let panicked = std::panic::catch_unwind(|| {
        let topology = Topology::new(2);
        *id.lock().unwrap() = topology.id;
        panic!("a failing test");
    });
    assert!(panicked.is_err());
    let id = *id.lock().unwrap();
    assert!(names(id).is_empty());
    let links = text(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(!links.contains(&format!("rxj{id}a")), "{links}");
}

/// A bastion whose key is not recorded, then recorded with another key: refused with
/// the hop named, once for all the targets behind it.
#[test]
fn bastion_host_key_unknown_or_changed() {
    let lab = Lab::new(1, 1, 2, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let bastion_name = format!("{}:{}", bastion.addresses[0], bastion.port);
    let targets_only: String = lab.targets.iter().map(Sshd::known_hosts_lines).collect();
    let cases = [
        (String::new(), "host-key-unknown", "is not in known_hosts"),
        (
            // The target's host key where the bastion's should be.
            lab.targets[0]
                .known_hosts_lines()
                .lines()
                .next()
                .unwrap()
                .replace(
                    &format!("[{}]:{}", lab.targets[0].addresses[0], lab.targets[0].port),
                    &format!("[{}]:{}", bastion.addresses[0], bastion.port),
                )
                + "\n",
            "host-key-changed",
            "HOST KEY CHANGED",
        ),
    ];
    for (n, (bastion_line, kind, says)) in cases.iter().enumerate() {
        std::fs::write(&lab.known_hosts, format!("{bastion_line}{targets_only}")).unwrap();
        let inventory = lab.inventory(&format!("proxy_jump = \"{}\"", lab.jump_spec()));
        let out = rexec(&["-i", inventory.to_str().unwrap(), "--json", "true"]);
        let (results, summary) = json_lines(&out);
        for host in ["t01", "t02"] {
            let r = &results[host];
            assert_eq!(r["outcome"], "host-key-rejected", "{r}");
            assert_eq!(r["error"]["kind"], *kind, "{r}");
            let message = r["error"]["message"].as_str().unwrap();
            let prefix = format!("jump host {bastion_name} (hop 1 of 1): ");
            assert!(
                message.starts_with(&prefix) && message.contains(says),
                "{message}"
            );
        }
        assert_eq!(summary["exit_code"], 3);
        // Tried once for both targets.
        assert_eq!(
            log_count(bastion, "Connection from"),
            n + 1,
            "{}",
            bastion.log()
        );
        assert_eq!(log_count(bastion, "Accepted publickey"), 0);
    }
    // The text output names the target, then the hop.
    let inventory = lab.inventory(&format!("proxy_jump = \"{}\"", lab.jump_spec()));
    let out = rexec(&["-i", inventory.to_str().unwrap(), "-l", "t01", "true"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("=== t01: host-key-rejected")
            && stdout.contains(&format!(
                ": jump host {bastion_name} (hop 1 of 1): HOST KEY CHANGED"
            )),
        "{stdout}"
    );

    // A Jumps shared across runs remembers the failure until told to forget it.
    let targets_only: String = lab.targets.iter().map(Sshd::known_hosts_lines).collect();
    std::fs::write(&lab.known_hosts, &targets_only).unwrap();
    let target = lab.target_addresses()[0].clone();
    let jumps = Jumps::new();
    runtime().block_on(async {
        let e = Session::connect_with(&lab.options(&target), &jumps)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HostKeyUnknown, "{e:#}");
        let all: String = std::iter::once(bastion)
            .chain(&lab.targets)
            .map(Sshd::known_hosts_lines)
            .collect();
        std::fs::write(&lab.known_hosts, all).unwrap();
        let again = Session::connect_with(&lab.options(&target), &jumps)
            .await
            .unwrap_err();
        assert_eq!(again.kind(), ErrorKind::HostKeyUnknown, "{again:#}");
        jumps.forget_failures();
        let session = Session::connect_with(&lab.options(&target), &jumps)
            .await
            .unwrap();
        session.close().await.unwrap();
    });
    assert_eq!(log_count(bastion, "Accepted publickey"), 1);
}

#[test]
fn bastion_auth_failure_names_the_hop() {
    let lab = Lab::new(1, 1, 1, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let bastion_name = format!("{}:{}", bastion.addresses[0], bastion.port);
    // A key the target accepts and the bastion does not.
    let key = harness::keygen(lab.dir.path(), "target_only", "ed25519", "");
    lab.targets[0].authorize(&key);
    let target = lab.target_addresses()[0].clone();
    let host = format!("{}:{}", target.address, target.port);
    let out = rexec(&[
        "-H",
        &host,
        "-u",
        TEST_USER,
        "-I",
        key.to_str().unwrap(),
        "--known-hosts",
        lab.known_hosts.to_str().unwrap(),
        "--no-agent",
        "-J",
        &lab.jump_spec(),
        "--json",
        "true",
    ]);
    let (results, summary) = json_lines(&out);
    let r = &results[&host];
    assert_eq!(r["outcome"], "auth-failed", "{r}");
    assert_eq!(r["error"]["kind"], "auth", "{r}");
    assert_eq!(r["error"]["phase"], "auth", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "jump host {bastion_name} (hop 1 of 1): authentication failed for user \"rexec-test\""
        )),
        "{message}"
    );
    assert_eq!(summary["exit_code"], 3);

    // The library: a hop with credentials of its own (none at all here).
    let rt = runtime();
    rt.block_on(async {
        let mut nothing = Credentials::new();
        nothing = nothing.agent(Agent::Off);
        let hop = JumpHost::new(bastion.addresses[0].clone())
            .port(bastion.port)
            .user(TEST_USER)
            .credentials(nothing);
        let options = lab.options(&target).proxy_jump(vec![hop]);
        let e = Session::connect(&options).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e:#}");
        assert_eq!(Outcome::of_error(&e), Outcome::AuthFailed);
        assert!(
            e.to_string()
                .starts_with(&format!("{host}: jump host {bastion_name} (hop 1 of 1): ")),
            "{e}"
        );
    });
}

#[test]
fn a_target_the_bastion_cannot_reach_is_unreachable_with_the_bastions_reason() {
    let lab = Lab::new(1, 1, 1, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let bastion_name = format!("{}:{}", bastion.addresses[0], bastion.port);
    let target = lab.target_addresses()[0].clone();
    // Nothing listens on port 1 of the target's address.
    let host = format!("{}:1", target.address);
    let out = lab.run_through(&host, &["--json", "true"]);
    let (results, summary) = json_lines(&out);
    let r = &results[&host];
    assert_eq!(r["outcome"], "unreachable", "{r}");
    assert_eq!(r["error"]["kind"], "connect", "{r}");
    assert_eq!(r["error"]["phase"], "connect", "{r}");
    assert_eq!(
        r["error"]["message"],
        format!(
            "cannot connect to {host} through {bastion_name}: it refused the direct-tcpip \
             channel (connect failed: Connection refused)"
        )
    );
    assert_eq!(summary["exit_code"], 3);
}

#[test]
fn proxy_command_carries_the_connection_and_is_reaped() {
    ensure_installed("socat", "socat");
    let lab = Lab::new(1, 1, 1, SshdConfig::default());
    let target = lab.target_addresses()[0].clone();
    let ns = lab.topology.namespace(2);
    // socat run inside the targets' namespace: another way in than the bastion.
    let proxy = format!("ip netns exec {ns} socat - TCP:%h:%p");
    let inventory = lab.inventory(&format!("proxy_command = \"{proxy}\""));
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "--json",
        "echo $SSH_CONNECTION",
    ]);
    let (results, _) = json_lines(&out);
    let r = &results["t01"];
    assert_eq!(r["outcome"], "ok", "{r} {}", text(&out.stderr));
    assert!(
        r["stdout"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} ", target.address)),
        "{r}"
    );
    let socat = format!("socat - TCP:{}:{}", target.address, target.port);
    assert!(eventually(Duration::from_secs(10), || processes_with(
        &socat
    )
    .is_empty()));

    // A command that fails: its status and stderr are in the message (and the tokens
    // %r %h %p %n %% were expanded).
    let inventory = lab
        .inventory("proxy_command = \"sh -c 'echo no way to %r@%h:%p for %n, 100%% >&2; exit 3'\"");
    let out = rexec(&["-i", inventory.to_str().unwrap(), "--json", "true"]);
    let (results, _) = json_lines(&out);
    let r = &results["t01"];
    assert_eq!(r["outcome"], "unreachable", "{r}");
    assert_eq!(r["error"]["kind"], "connect", "{r}");
    assert_eq!(
        r["error"]["message"],
        format!(
            "proxy command \"sh -c 'echo no way to {TEST_USER}@{0}:{1} for t01, 100% >&2; \
             exit 3'\" exited with status 3 before sending anything; its stderr: \"no way to \
             {TEST_USER}@{0}:{1} for t01, 100%\"",
            target.address, target.port
        )
    );

    // A command that hangs: the connect deadline ends it, and it is killed and reaped.
    let marker = format!("1000.{}", harness::random_u64() % 1_000_000);
    let rt = runtime();
    rt.block_on(async {
        let options = ConnectOptions::new(target.address.clone())
            .port(target.port)
            .credentials(lab.credentials())
            .known_hosts(KnownHosts::file(&lab.known_hosts))
            .connect_timeout(Duration::from_secs(5))
            .proxy_command(format!("sleep {marker}"));
        let connecting = tokio::spawn(async move { Session::connect(&options).await });
        // Polled for as long as the deadline lasts: under load the spawn can be slow.
        let mut pid = None;
        for _ in 0..250 {
            if let Some(p) = processes_with(&format!("sleep {marker}")).first() {
                pid = Some(*p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = pid.expect("the proxy command started");
        let e = connecting.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e:#}");
        assert_eq!(Outcome::of_error(&e), Outcome::Unreachable);
        assert_eq!(
            e.message(),
            format!("timed out after 5s waiting for proxy command \"sleep {marker}\" to connect")
        );
        // Gone, not even a zombie: the test process reaped it.
        let proc_dir = format!("/proc/{pid}");
        let mut gone = false;
        for _ in 0..400 {
            if !Path::new(&proc_dir).exists() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(gone, "the proxy command {pid} was not reaped");
    });
}

/// A command stopped by its deadline on a root login (sshd ignores `signal` for root
/// sessions: the reaper script runs on a second channel of the target connection) and
/// `put`/`get`, all through the bastion.
#[test]
fn deadline_stop_and_transfers_through_a_jump() {
    let lab = Lab::new(
        1,
        1,
        1,
        SshdConfig {
            root_login: true,
            ..SshdConfig::default()
        },
    );
    let target = lab.target_addresses()[0].clone();
    let host = format!("{}:{}", target.address, target.port);
    let base = |user: &str| -> Vec<String> {
        vec![
            "-H".into(),
            host.clone(),
            "-u".into(),
            user.into(),
            "-I".into(),
            lab.key.display().to_string(),
            "--known-hosts".into(),
            lab.known_hosts.display().to_string(),
            "--no-agent".into(),
            "-J".into(),
            lab.jump_spec(),
            "--json".into(),
        ]
    };
    let marker = format!("1000.{}", harness::random_u64() % 1_000_000);
    let mut args = base("root");
    args.extend(["-t".into(), "2s".into(), format!("sleep {marker}")]);
    let out = rexec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (results, _) = json_lines(&out);
    assert_eq!(
        results[&host]["outcome"],
        "timed-out",
        "{}",
        text(&out.stdout)
    );
    assert!(eventually(Duration::from_secs(10), || processes_with(
        &format!("sleep {marker}")
    )
    .is_empty()));

    let remote_dir = lab.targets[0].user_dir("up");
    let local = lab.dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    let mut args = base(TEST_USER);
    args.extend([
        "put".into(),
        local.display().to_string(),
        remote_dir.display().to_string(),
    ]);
    let out = rexec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (results, _) = json_lines(&out);
    assert_eq!(results[&host]["outcome"], "ok", "{}", text(&out.stdout));
    assert_eq!(
        std::fs::read(remote_dir.join("payload.bin")).unwrap(),
        payload
    );

    let down = lab.dir.path().join("down");
    let mut args = base(TEST_USER);
    args.extend([
        "get".into(),
        remote_dir.join("payload.bin").display().to_string(),
        down.display().to_string(),
    ]);
    let out = rexec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (results, _) = json_lines(&out);
    assert_eq!(results[&host]["outcome"], "ok", "{}", text(&out.stdout));
    assert_eq!(
        std::fs::read(down.join(&host).join("payload.bin")).unwrap(),
        payload
    );
}

#[test]
fn jump_host_lists_parse_as_openssh_writes_them() {
    let hops = JumpHost::parse_list("bastion, ops@b2:2222 ,ssh://u@[fe80::1]:22,u@x@h").unwrap();
    let shown: Vec<(String, Option<&str>, String)> = hops
        .iter()
        .map(|h| (h.host().to_owned(), h.user_name(), h.display_name()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("bastion".to_owned(), None, "bastion".to_owned()),
            ("b2".to_owned(), Some("ops"), "b2:2222".to_owned()),
            ("fe80::1".to_owned(), Some("u"), "fe80::1".to_owned()),
            ("h".to_owned(), Some("u@x"), "h".to_owned()),
        ]
    );
    assert!(JumpHost::parse_list("none").unwrap().is_empty());
    assert!(JumpHost::parse_list("NONE").unwrap().is_empty());
    for bad in [
        "", "a,,b", "@h", "h:0", "h:99999", "h:x", "u@", "a b", "[::1", "h/x",
    ] {
        let e = JumpHost::parse_list(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let many = vec!["h"; 17].join(",");
    assert!(JumpHost::parse_list(&many).is_err());
}

#[test]
fn inventory_proxy_keys_are_checked_and_the_narrower_layer_decides() {
    let parse = |text: &str| Inventory::parse(text, "hosts.toml", &Default::default());
    let e = parse("[hosts]\nweb1 = { proxy_jump = \"b:0\" }\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("hosts.toml:2:23: proxy_jump: invalid jump host \"b:0\""),
        "{e}"
    );
    let e = parse("[hosts]\nweb1 = { proxy_command = \"nc %h %x\" }\n").unwrap_err();
    assert!(e.to_string().contains("unknown token %x"), "{e}");
    let e = parse("[hosts]\nweb1 = { proxy_jump = \"b\", proxy_command = \"nc %h %p\" }\n")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("set proxy_jump or proxy_command, not both"),
        "{e}"
    );

    let inventory = parse(
        "[defaults]\nproxy_command = \"nc %h %p\"\n\
         [groups.inside]\nhosts = [\"web1\", \"web2\", \"web3\"]\nproxy_jump = \"ops@b1:2222,b2\"\n\
         [hosts]\nweb1 = {}\nweb2 = { proxy_jump = \"none\" }\nweb3 = { proxy_command = \"none\" }\nweb4 = {}\n",
    )
    .unwrap();
    let targets = TargetBuilder::new()
        .agent(Agent::Off)
        .build_all(inventory.hosts())
        .unwrap();
    let route = |i: usize| {
        let c = &targets[i].connect;
        (
            c.jump_hosts()
                .iter()
                .map(JumpHost::display_name)
                .collect::<Vec<_>>(),
            c.proxy_command_line().map(str::to_owned),
        )
    };
    assert_eq!(
        route(0),
        (vec!["b1:2222".to_owned(), "b2".to_owned()], None)
    );
    assert_eq!(route(1), (vec![], None));
    assert_eq!(route(2), (vec![], None));
    assert_eq!(route(3), (vec![], Some("nc %h %p".to_owned())));

    // -J wins over the whole inventory like the other flags (here: over [defaults]'s
    // proxy_command and a host's own proxy_jump).
    let overrides = rexec::HostSettings {
        proxy_jump: Some("b9".to_owned()),
        ..Default::default()
    };
    let inventory = Inventory::parse(
        "[defaults]\nproxy_command = \"nc %h %p\"\n\
         [hosts]\nweb1 = {}\nweb2 = { proxy_jump = \"b1\" }\n",
        "hosts.toml",
        &overrides,
    )
    .unwrap();
    for host in inventory.hosts() {
        assert_eq!(
            host.settings.proxy_jump.as_deref(),
            Some("b9"),
            "{}",
            host.name
        );
        assert_eq!(host.settings.proxy_command, None);
    }
}

#[test]
fn bad_jump_flag_is_a_usage_error() {
    let out = rexec(&["-H", "web1", "-J", "b:0", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("rexec: -J/--jump: invalid jump host \"b:0\""),
        "{}",
        text(&out.stderr)
    );
}

/// The hook the OpenSSH configuration uses: a hop written as an alias (`bastion`) gets
/// its address, port and user from the resolver, and the rest from the target.
#[test]
fn a_jump_host_resolver_turns_an_alias_into_the_bastion() {
    let lab = Lab::new(1, 1, 2, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let inventory = lab.inventory("proxy_jump = \"bastion\"");
    let hosts = Inventory::from_file(&inventory, &Default::default()).unwrap();
    let (address, port) = (bastion.addresses[0].clone(), bastion.port);
    let mut builder = TargetBuilder::new();
    builder = builder
        .agent(Agent::Off)
        .jump_host_resolver(move |mut hop| {
            assert_eq!(hop.settings.user, None);
            assert_eq!(hop.settings.port, None);
            match hop.name.as_str() {
                "bastion" => {
                    hop.settings.address = Some(address.clone());
                    hop.settings.port = Some(port);
                    hop.settings.user = Some(TEST_USER.to_owned());
                    Ok(hop)
                }
                other => Err(rexec::Error::new(
                    ErrorKind::InvalidInput,
                    format!("no such alias {other:?}"),
                )),
            }
        });
    let targets = builder.build_all(hosts.hosts()).unwrap();
    let hop = &targets[0].connect.jump_hosts()[0];
    assert_eq!(hop.display_name(), "bastion");
    assert_eq!(hop.host(), bastion.addresses[0]);
    assert_eq!(hop.port_number(), bastion.port);

    let rt = runtime();
    rt.block_on(async {
        let pool = Pool::from_targets(targets.clone()).concurrency(8);
        let results = pool.run("echo $SSH_CONNECTION").await;
        for r in &results {
            assert_eq!(r.outcome(), Outcome::Ok, "{:?}", r.result);
            let out = r.result.as_ref().unwrap().stdout_lossy();
            assert!(
                out.starts_with(&format!("{} ", lab.last_bastion_inside())),
                "{out}"
            );
        }
    });
    // Both targets rode one connection, authenticated with the target's key file.
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 1);

    // Errors name the hop as written.
    let targets_only: String = lab.targets.iter().map(Sshd::known_hosts_lines).collect();
    std::fs::write(&lab.known_hosts, targets_only).unwrap();
    rt.block_on(async {
        let e = Session::connect(&targets[0].connect).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HostKeyUnknown, "{e:#}");
        assert!(
            e.to_string()
                .starts_with("t01: jump host bastion (hop 1 of 1): "),
            "{e}"
        );
    });

    // A resolver's error fails the target's build, naming the target.
    let hosts = Inventory::parse(
        "[hosts]\nweb1 = { proxy_jump = \"nowhere\" }\n",
        "hosts.toml",
        &Default::default(),
    )
    .unwrap();
    let e = builder.build(&hosts.hosts()[0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        "web1: jump host nowhere: no such alias \"nowhere\""
    );
}

/// A bastion that accepts the TCP connection and never speaks: the hop's own handshake
/// deadline ends the attempt, and the error names the hop and the phase.
#[test]
fn a_silent_bastion_fails_the_target_on_the_hops_handshake_deadline() {
    harness::setup();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepted connections are held, silent, until the test ends.
    let held = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        // Reads the client's banner, answers nothing; returns when the client closes.
        while std::io::Read::read(&mut &stream, &mut buf).unwrap_or(0) > 0 {}
    });
    let mut creds = Credentials::new();
    creds = creds.agent(Agent::Off);
    let hop = JumpHost::parse(&format!("{TEST_USER}@127.0.0.1:{port}")).unwrap();
    let options = ConnectOptions::new("10.0.0.1")
        .credentials(creds)
        .handshake_timeout(Duration::from_secs(1))
        .proxy_jump(vec![hop]);
    let e = runtime().block_on(Session::connect(&options)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:#}");
    assert_eq!(e.phase(), Some(rexec::Phase::Handshake), "{e:#}");
    assert!(
        e.to_string().starts_with(&format!(
            "10.0.0.1: jump host 127.0.0.1:{port} (hop 1 of 1): timed out after 1s"
        )),
        "{e}"
    );
    held.join().unwrap();
}

/// `ProxyJump` and `ProxyCommand` from an OpenSSH configuration (`-F`): the target and
/// the bastion are `Host` aliases, the hop resolves through the configuration as with
/// `ssh -J`, and OpenSSH's own `ssh` reaches the target with the same file. The
/// command line and the inventory win over the configuration.
#[test]
fn ssh_config_proxy_jump_and_proxy_command_with_aliases() {
    ensure_installed("socat", "socat");
    let lab = Lab::new(1, 1, 2, SshdConfig::default());
    let bastion = &lab.bastions[0];
    let targets = lab.target_addresses();
    let ns = lab.topology.namespace(2);
    let config = lab.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName {}\n  Port {}\n\n\
             Host inner\n  HostName {}\n  Port {}\n  ProxyJump bastion\n\n\
             Host viacommand\n  HostName {}\n  Port {}\n  ProxyCommand ip netns exec {ns} socat - TCP:%h:%p\n\n\
             Host *\n  User {TEST_USER}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile none\n  IdentitiesOnly yes\n  BatchMode yes\n  \
             StrictHostKeyChecking yes\n",
            bastion.addresses[0],
            bastion.port,
            targets[0].address,
            targets[0].port,
            targets[1].address,
            targets[1].port,
            lab.key.display(),
            lab.known_hosts.display(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // The line numbers of ProxyJump and ProxyCommand in the file above.
    let (jump_line, command_line) = (8, 13);

    let out = rexec(&[
        "-F",
        config,
        "-H",
        "inner,viacommand",
        "--json",
        "echo $SSH_CONNECTION",
    ]);
    let (results, summary) = json_lines(&out);
    assert_eq!(
        summary["exit_code"],
        0,
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let inner = results["inner"]["stdout"].as_str().unwrap();
    assert!(
        inner.starts_with(&format!("{} ", lab.last_bastion_inside())),
        "{inner}"
    );
    // The proxy command connected from inside the targets' namespace, not through the
    // bastion.
    let via = results["viacommand"]["stdout"].as_str().unwrap();
    assert!(
        !via.starts_with(&format!("{} ", lab.last_bastion_inside()))
            && via
                .trim_end()
                .ends_with(&format!(" {} {}", targets[1].address, targets[1].port)),
        "{via}"
    );
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 1);

    // OpenSSH reads the same file the same way.
    let out = Command::new("ssh")
        .args(["-F", config, "inner", "echo $SSH_CONNECTION"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let theirs = text(&out.stdout);
    assert!(
        theirs.starts_with(&format!("{} ", lab.last_bastion_inside()))
            && theirs
                .trim_end()
                .ends_with(&format!(" {} {}", targets[0].address, targets[0].port)),
        "{theirs}"
    );
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 2);

    // Where the values came from.
    let out = rexec(&[
        "-F",
        config,
        "-H",
        "inner,viacommand",
        "--show-config",
        "--json",
    ]);
    let shown: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown[0]["settings"]["proxy_jump"]["value"], "bastion");
    assert_eq!(
        shown[0]["settings"]["proxy_jump"]["origin"],
        format!("ssh_config {config}:{jump_line}")
    );
    assert_eq!(
        shown[1]["settings"]["proxy_command"]["origin"],
        format!("ssh_config {config}:{command_line}")
    );

    // -J none wins over the file: the target is then really unreachable.
    let out = rexec(&[
        "-F",
        config,
        "-H",
        "inner",
        "-J",
        "none",
        "--connect-timeout",
        "2s",
        "--json",
        "true",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(
        results["inner"]["outcome"],
        "unreachable",
        "{}",
        text(&out.stdout)
    );
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 2);

    // Command-line options apply to the hop above the file (its StrictHostKeyChecking
    // and UserKnownHostsFile): the bastion's key is learned into the --known-hosts file.
    let learned = lab.dir.path().join("learned_known_hosts");
    let targets_only: String = lab.targets.iter().map(Sshd::known_hosts_lines).collect();
    std::fs::write(&learned, &targets_only).unwrap();
    let out = rexec(&[
        "-F",
        config,
        "-H",
        "inner",
        "--known-hosts",
        learned.to_str().unwrap(),
        "--host-key-policy",
        "accept-new",
        "--json",
        "true",
    ]);
    let (results, _) = json_lines(&out);
    assert_eq!(results["inner"]["outcome"], "ok", "{}", text(&out.stdout));
    let now = std::fs::read_to_string(&learned).unwrap();
    assert!(
        now.starts_with(&targets_only)
            && now.contains(&format!("[{}]:{} ", bastion.addresses[0], bastion.port)),
        "{now}"
    );

    // A hop that no `Host` block names is used as written (no lookup beyond loopback
    // here: the test sends no traffic off the machine); the error names the hop.
    let out = rexec(&[
        "-F",
        config,
        "-H",
        "inner",
        "-J",
        "127.0.0.1:1",
        "--json",
        "true",
    ]);
    let (results, _) = json_lines(&out);
    let message = results["inner"]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("jump host 127.0.0.1:1 (hop 1 of 1): ")
            && message.contains("connection refused"),
        "{message}"
    );
}

/// A bastion that forbids forwarding (`AllowTcpForwarding no`): the target is
/// unreachable, with the bastion's refusal in the message, and the bastion's connection
/// (authenticated) is not the one blamed.
#[test]
fn a_bastion_that_forbids_forwarding_is_named_with_its_refusal() {
    let lab = Lab::with_bastions(
        1,
        1,
        1,
        SshdConfig::default(),
        SshdConfig {
            extra: vec!["AllowTcpForwarding no".to_owned()],
            ..SshdConfig::default()
        },
    );
    let bastion = &lab.bastions[0];
    let bastion_name = format!("{}:{}", bastion.addresses[0], bastion.port);
    let target = lab.target_addresses()[0].clone();
    let e = runtime()
        .block_on(Session::connect(&lab.options(&target)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect, "{e:#}");
    assert_eq!(e.phase(), Some(rexec::Phase::Connect), "{e:#}");
    assert_eq!(Outcome::of_error(&e), Outcome::Unreachable);
    let host = format!("{}:{}", target.address, target.port);
    assert!(
        e.message().starts_with(&format!(
            "cannot connect to {host} through {bastion_name}: it refused the direct-tcpip \
             channel (administratively prohibited"
        )),
        "{e}"
    );
    assert_eq!(log_count(bastion, "Accepted publickey for rexec-test"), 1);
}

/// The first hop's own `ProxyJump` in ssh_config is followed, as OpenSSH does (`ssh -J b2
/// t` reaches `b2` as `ssh b2` would, through `b2`'s own jump host); a loop of jump hosts
/// and a jump host's `ProxyCommand` are refused before connecting.
#[test]
fn a_first_hops_own_proxy_jump_is_followed_as_openssh_does() {
    let lab = Lab::new(2, 1, 1, SshdConfig::default());
    let (first, second) = (&lab.bastions[0], &lab.bastions[1]);
    let target = lab.target_addresses()[0].clone();
    let config = lab.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host b1\n  HostName {}\n  Port {}\n\n\
             Host b2\n  HostName {}\n  Port {}\n  ProxyJump b1\n\n\
             Host t\n  HostName {}\n  Port {}\n  ProxyJump b2\n\n\
             Host loop1\n  ProxyJump loop2\n\nHost loop2\n  ProxyJump loop1\n\n\
             Host viacmd\n  ProxyCommand nc %h %p\n\n\
             Host *\n  User {TEST_USER}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile none\n  IdentitiesOnly yes\n  BatchMode yes\n  \
             StrictHostKeyChecking yes\n",
            first.addresses[0],
            first.port,
            second.addresses[0],
            second.port,
            target.address,
            target.port,
            lab.key.display(),
            lab.known_hosts.display(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    assert!(direct_connect_fails(&second.addresses[0], second.port));

    let out = rexec(&["-F", config, "-H", "t", "--json", "echo $SSH_CONNECTION"]);
    let (results, summary) = json_lines(&out);
    assert_eq!(
        summary["exit_code"],
        0,
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let seen = results["t"]["stdout"].as_str().unwrap();
    assert!(
        seen.starts_with(&format!("{} ", lab.last_bastion_inside())),
        "{seen}"
    );
    // b2 was reached through b1: one login on each.
    for b in &lab.bastions {
        assert_eq!(
            log_count(b, "Accepted publickey for rexec-test"),
            1,
            "{}",
            b.log()
        );
    }
    let from_first = format!("Connection from {} ", lab.topology.gateway(2));
    assert_eq!(log_count(second, &from_first), 1, "{}", second.log());

    // OpenSSH reaches the target the same way with the same file.
    let out = Command::new("ssh")
        .args(["-F", config, "t", "echo $SSH_CONNECTION"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("{} ", lab.last_bastion_inside())),
        "{}",
        text(&out.stdout)
    );

    // -J b2 on the command line: b2's own ProxyJump b1 is still followed.
    let host = format!("{}:{}", target.address, target.port);
    let out = rexec(&["-F", config, "-H", &host, "-J", "b2", "--json", "true"]);
    let (results, _) = json_lines(&out);
    assert_eq!(results[&host]["outcome"], "ok", "{}", text(&out.stdout));

    // A loop of jump hosts, and a ProxyCommand on a jump host: refused, nothing connects.
    let before: usize = lab
        .bastions
        .iter()
        .map(|b| log_count(b, "Connection from"))
        .sum();
    for (jump, expected) in [
        ("loop1", "ProxyJump chain is more than 8 hosts deep"),
        ("viacmd", "a ProxyCommand for a jump host is not supported"),
    ] {
        let out = rexec(&["-F", config, "-H", &host, "-J", jump, "true"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("jump host {jump}")) || err.contains("jump host loop"),
            "{err}"
        );
        assert!(err.contains(expected), "{err}");
    }
    let after: usize = lab
        .bastions
        .iter()
        .map(|b| log_count(b, "Connection from"))
        .sum();
    assert_eq!(before, after);
}

/// Issue 12 as one fleet host: named by a `Host` alias in ssh_config, behind a bastion
/// (`ProxyJump`), logging in with a user certificate only (`TrustedUserCAKeys`, no
/// authorized_keys), its host key vouched for by a host CA (`@cert-authority`, principal
/// = the `HostKeyAlias`), and running a command and a `put` as root through sudo.
#[test]
fn a_fleet_host_behind_the_bastion_with_certificates_sudo_and_ssh_config() {
    let cas = tempfile::tempdir().unwrap();
    let user_ca = harness::keygen(cas.path(), "user_ca", "ed25519", "");
    let host_ca = harness::keygen(cas.path(), "host_ca", "ed25519", "");
    let lab = Lab::new(
        1,
        1,
        1,
        SshdConfig {
            authorized_keys: false,
            extra: vec![format!(
                "TrustedUserCAKeys {}",
                user_ca.with_extension("pub").display()
            )],
            host_certificate: Some(HostCertificateSpec {
                ca: host_ca.clone(),
                args: ["-h", "-n", "fleet-target"].map(String::from).to_vec(),
            }),
            ..SshdConfig::default()
        },
    );
    let bastion = &lab.bastions[0];
    let target = lab.target_addresses()[0].clone();
    assert!(direct_connect_fails(&target.address, target.port));
    // known_hosts: the bastion's own key, and only the host CA for the target.
    let host_ca_line = std::fs::read_to_string(host_ca.with_extension("pub")).unwrap();
    std::fs::write(
        &lab.known_hosts,
        format!(
            "{}@cert-authority fleet-* {host_ca_line}",
            bastion.known_hosts_lines()
        ),
    )
    .unwrap();
    let config = lab.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName {}\n  Port {}\n\n\
             Host fleet1\n  HostName {}\n  Port {}\n  ProxyJump bastion\n  \
             HostKeyAlias fleet-target\n\n\
             Host *\n  User {TEST_USER}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile none\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n",
            bastion.addresses[0],
            bastion.port,
            target.address,
            target.port,
            lab.key.display(),
            lab.known_hosts.display(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["-F", config, "-H", "fleet1", "--json"];
        all.extend_from_slice(args);
        let out = rexec(&all);
        let (results, summary) = json_lines(&out);
        (results["fleet1"].clone(), summary, out)
    };

    // Without a user certificate the target refuses the key (no authorized_keys).
    let (r, _, out) = run(&["id -un"]);
    assert_eq!(r["outcome"], "auth-failed", "{r} {}", text(&out.stderr));

    // KEY-cert.pub next to the key file is loaded, as OpenSSH does.
    harness::run(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&user_ca)
            .args(["-I", "fleet", "-n", TEST_USER])
            .arg(lab.key.with_extension("pub")),
    );
    let _sudoers =
        harness::sudo::Sudoers::new("fleet", &format!("{TEST_USER} ALL=(ALL:ALL) NOPASSWD: ALL"));
    let (r, summary, out) = run(&["--become", "id -un"]);
    assert_eq!(r["outcome"], "ok", "{r} {}", text(&out.stderr));
    assert_eq!(r["stdout"], "root\n");
    assert_eq!(summary["exit_code"], 0);
    let log = lab.targets[0].log();
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey for rexec-test"))
        .collect();
    assert_eq!(accepted.len(), 1, "{log}");
    assert!(
        accepted[0].contains(&format!("from {} ", lab.last_bastion_inside()))
            && accepted[0].contains("ED25519-CERT"),
        "{log}"
    );

    // put through sudo, through the jump: lands owned by root with the mode asked for.
    let local = lab.dir.path().join("payload");
    std::fs::write(&local, b"fleet payload\n").unwrap();
    let remote = format!("/root/rexec-fleet-{}", harness::random_u64());
    let (r, _, out) = run(&[
        "--become",
        "put",
        "--mode",
        "640",
        local.to_str().unwrap(),
        &remote,
    ]);
    let landed = std::fs::read(&remote);
    let meta = std::fs::metadata(&remote);
    let _ = std::fs::remove_file(&remote);
    assert_eq!(r["outcome"], "ok", "{r} {}", text(&out.stderr));
    assert_eq!(landed.unwrap(), b"fleet payload\n");
    let meta = meta.unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o640
    );

    // The CA vouches only for the names its line matches: for other names the target's
    // certificate proves nothing, and strict checking refuses it.
    std::fs::write(
        &lab.known_hosts,
        format!(
            "{}@cert-authority other-* {host_ca_line}",
            bastion.known_hosts_lines()
        ),
    )
    .unwrap();
    let (r, summary, _) = run(&["true"]);
    assert_eq!(r["outcome"], "host-key-rejected", "{r}");
    assert_eq!(summary["exit_code"], 3);
}

/// A proxy command that sends an SSH banner and then stalls: the handshake deadline ends
/// the host, and the command's process group is killed then, not left running after rexec
/// exits (the SSH transport still held its stream; found by a new user's probe).
#[test]
fn a_proxy_command_that_stalls_after_its_banner_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!(
        "{}.{}",
        90 + harness::random_u64() % 9,
        harness::random_u64() % 1000
    );
    let config = dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host stall1 stall2\n  HostName 127.0.0.1\n  \
             ProxyCommand sh -c 'echo SSH-2.0-stalling; sleep {marker}'\n"
        ),
    )
    .unwrap();
    let out = rexec(&[
        "-F",
        config.to_str().unwrap(),
        "-H",
        "stall1,stall2",
        "--connect-timeout",
        "1s",
        "--json",
        "true",
    ]);
    let (results, _) = json_lines(&out);
    for host in ["stall1", "stall2"] {
        assert_eq!(
            results[host]["outcome"],
            "unreachable",
            "{}",
            text(&out.stdout)
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || processes_with(&format!(
            "sleep {marker}"
        ))
        .is_empty()),
        "left running: {:?}",
        processes_with(&format!("sleep {marker}"))
    );
}
