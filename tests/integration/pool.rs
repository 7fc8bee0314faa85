//! The fan-out pool as a library: the closure API, results as they complete, the forks
//! bound, pacing and retries against sshd's MaxStartups, and cancellation.

use crate::harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use harness::{Cluster, Sshd, SshdConfig};
use rexec::{Event, HostSettings, Inventory, Outcome, Pool, Target, TargetBuilder, Template};

fn targets(cluster: &Cluster) -> Vec<Target> {
    let inventory =
        Inventory::from_file(cluster.inventory(&[], ""), &HostSettings::default()).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    builder.build_all(inventory.hosts()).unwrap()
}

/// `n` hosts that are all the same server (same address and port).
fn same_server_targets(sshd: &Sshd, n: usize) -> Vec<Target> {
    let list: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
    let over = HostSettings {
        address: Some("127.0.0.1".into()),
        port: Some(sshd.port),
        user: Some(harness::TEST_USER.into()),
        identity_files: Some(vec![sshd.user_key.clone()]),
        known_hosts: Some(sshd.known_hosts.clone()),
        ..HostSettings::default()
    };
    let inventory = Inventory::from_host_list(&list.join(","), &over).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    builder.build_all(inventory.hosts()).unwrap()
}

#[tokio::test]
async fn a_custom_workflow_runs_on_every_host_in_order() {
    let cluster = Cluster::start(1, 5, 160);
    let targets = targets(&cluster);
    let events = Mutex::new(Vec::new());
    let pool = Pool::from_targets(targets).concurrency(3);
    let results = pool
        .map(|session, target| async move {
            let who = session.raw_command("id -un").output().await?.check()?;
            let echo = session
                .raw_command("echo")
                .arg(target.name())
                .output()
                .await?;
            Ok((
                who.stdout_lossy().trim().to_owned(),
                echo.stdout_lossy().trim().to_owned(),
            ))
        })
        .observe(|event| {
            let tag = match event {
                Event::Connecting { .. } => "connecting",
                Event::Running { .. } => "running",
                Event::Finished(_) => "finished",
                _ => "batch or budget",
            };
            events.lock().unwrap().push(tag);
        })
        .await;
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        let name = format!("node{:02}", i + 1);
        assert_eq!(r.host, name);
        assert_eq!(r.index, i);
        let (who, echoed) = r.result.as_ref().unwrap();
        assert_eq!(
            (who.as_str(), echoed.as_str()),
            (harness::TEST_USER, name.as_str())
        );
        assert!(r.timings.total >= r.timings.connect);
    }
    let events = events.into_inner().unwrap();
    for tag in ["connecting", "running", "finished"] {
        assert_eq!(
            events.iter().filter(|e| **e == tag).count(),
            5,
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn results_come_as_hosts_finish() {
    let cluster = Cluster::start(1, 4, 170);
    let targets = targets(&cluster);
    let go = cluster.dir.path().join("go");
    let go_str = go.to_str().unwrap().to_owned();
    let pool = Pool::from_targets(targets).concurrency(4);
    let work = |session: Arc<rexec::Session>, target: Target| {
        let go = go_str.clone();
        async move {
            // node01 waits until the test has seen every other result.
            let line = if target.name() == "node01" {
                format!("while [ ! -e {go} ]; do sleep 0.05; done; echo last")
            } else {
                "echo early".to_owned()
            };
            session.raw_command(line).output().await
        }
    };
    let mut stream = pool.map(work).stream();
    let mut order = Vec::new();
    while let Some(result) = stream.next().await {
        order.push(result.host.clone());
        if order.len() == 3 {
            std::fs::write(&go, "").unwrap();
        }
    }
    assert_eq!(order.len(), 4);
    assert_eq!(order.last().unwrap(), "node01");
}

#[tokio::test]
async fn no_more_than_forks_hosts_run_at_once() {
    let cluster = Cluster::start(1, 8, 180);
    let targets = targets(&cluster);
    let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let template = Template::parse("sleep 0.2; echo {{name}}").unwrap();
    let pool = Pool::from_targets(targets).concurrency(3);
    let results = pool
        .run(&template)
        .observe(|event| match event {
            Event::Connecting { .. } => {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
            }
            Event::Finished(_) => {
                now.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        })
        .await;
    assert!(results.iter().all(|r| r.outcome() == Outcome::Ok));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

fn assert_all_ok(results: &[rexec::HostResult<rexec::Output>]) {
    for r in results {
        assert_eq!(
            r.outcome(),
            Outcome::Ok,
            "{}: {:?}",
            r.host,
            r.result.as_ref().err()
        );
    }
}

fn tight_server() -> Sshd {
    // sshd drops every unauthenticated connection beyond 2.
    Sshd::start_with(SshdConfig {
        extra: vec!["MaxStartups 2:100:2".into()],
        ..SshdConfig::default()
    })
}

#[tokio::test]
async fn pacing_keeps_a_burst_under_max_startups() {
    let sshd = tight_server();
    let targets = same_server_targets(&sshd, 12);
    let pool = Pool::from_targets(targets)
        .concurrency(12)
        .max_handshakes_per_server(1)
        .connect_attempts(1);
    let results = pool.run("true").await;
    assert_all_ok(&results);
    assert!(!sshd.log().contains("past MaxStartups"), "{}", sshd.log());
}

#[tokio::test]
async fn connections_dropped_before_authentication_are_retried() {
    let sshd = tight_server();
    let targets = same_server_targets(&sshd, 12);
    let pool = Pool::from_targets(targets)
        .concurrency(12)
        .max_handshakes_per_server(12)
        .connect_attempts(10);
    let results = pool.run("true").await;
    // sshd did drop connections, yet every host got through.
    assert!(
        sshd.log().contains("past MaxStartups"),
        "no drops happened: {}",
        sshd.log()
    );
    assert_all_ok(&results);
}

#[tokio::test]
async fn authentication_failures_are_not_retried() {
    let sshd = Sshd::start();
    let mut targets = same_server_targets(&sshd, 1);
    let stranger = harness::keygen(sshd.dir.path(), "stranger", "ed25519", "");
    let mut creds = rexec::Credentials::new();
    creds = creds
        .identity(rexec::Identity::from_file(&stranger, None).unwrap())
        .agent(rexec::Agent::Off);
    targets[0].connect = targets[0].connect.clone().credentials(creds);
    let pool = Pool::from_targets(targets)
        .concurrency(1)
        .connect_attempts(5);
    let results = pool.run("true").await;
    assert_eq!(results[0].outcome(), Outcome::AuthFailed);
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1,
        "{}",
        sshd.log()
    );
    assert_eq!(
        sshd.log().matches("Failed publickey").count(),
        1,
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn cancelling_interrupts_running_hosts_and_skips_the_rest() {
    let cluster = Cluster::start(1, 5, 190);
    let targets = targets(&cluster);
    let pool = Pool::from_targets(targets).concurrency(2);
    let token = pool.cancel_token();
    let marker = format!("sleep 39{:02}", harness::random_u64() % 100);
    let running = AtomicUsize::new(0);
    let results = pool
        .run(&marker)
        .observe(|event| {
            if let Event::Running { .. } = event {
                if running.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    let token = token.clone();
                    tokio::spawn(async move {
                        // Let both commands start on the servers.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        token.cancel();
                    });
                }
            }
        })
        .await;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome()).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Interrupted,
            Outcome::Interrupted,
            Outcome::NotStarted,
            Outcome::NotStarted,
            Outcome::NotStarted
        ]
    );
    assert!(harness::eventually(Duration::from_secs(10), || {
        harness::remote_processes(&marker).is_empty()
    }));
}

#[tokio::test]
async fn many_hosts_authenticate_through_one_agent() {
    let cluster = Cluster::start(4, 16, 400);
    let agent = harness::SshAgent::start();
    agent.add(&cluster.user_key);
    let inventory =
        Inventory::from_file(cluster.inventory(&[], ""), &HostSettings::default()).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Socket(agent.socket.clone()));
    // No key files: only the agent can sign.
    let hosts: Vec<rexec::Host> = inventory
        .hosts()
        .iter()
        .map(|h| {
            let mut h = h.clone();
            h.settings.identity_files = Some(Vec::new());
            h
        })
        .collect();
    let targets = builder.build_all(&hosts).unwrap();
    assert_eq!(targets.len(), 64);
    let pool = Pool::from_targets(targets).concurrency(64);
    let results = pool.run(&Template::parse("echo {{name}}").unwrap()).await;
    assert_all_ok(&results);
    for r in &results {
        assert_eq!(
            r.result.as_ref().unwrap().stdout,
            format!("{}\n", r.host).into_bytes()
        );
    }
}

/// `connect_all` + `Sessions::run`: two runs over the same connections (the client's
/// source port seen by the server does not change), a host that could not connect
/// reports its error in every run, and the sessions stay usable until closed.
#[tokio::test]
async fn sessions_are_reused_across_runs() {
    let cluster = Cluster::start(1, 3, 300);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = cluster.inventory(
        &[(
            "node03",
            format!("{{ address = \"127.0.0.1\", port = {closed_port} }}"),
        )],
        "",
    );
    let inventory = Inventory::from_file(path, &HostSettings::default()).unwrap();
    let mut builder = TargetBuilder::new();
    builder = builder.agent(rexec::Agent::Off);
    let targets = builder.build_all(inventory.hosts()).unwrap();

    let pool = Pool::from_targets(targets).concurrency(2);
    let connected = AtomicUsize::new(0);
    let sessions = pool
        .connect_all(|event| {
            if let Event::Finished(r) = event {
                if r.result.is_ok() {
                    connected.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .await;
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.connected(), 2);
    assert_eq!(connected.load(Ordering::SeqCst), 2);
    let failed: Vec<_> = sessions
        .iter()
        .filter_map(|(t, s, _)| s.err().map(|e| (t.name().to_owned(), e.kind())))
        .collect();
    assert_eq!(
        failed,
        vec![("node03".to_owned(), rexec::ErrorKind::Connect)]
    );

    let source_ports = |results: &[rexec::HostResult<rexec::Output>]| -> Vec<String> {
        results
            .iter()
            .take(2)
            .map(|r| {
                let out = r.result.as_ref().unwrap().stdout_lossy();
                // SSH_CONNECTION: client address, client port, server address, server port.
                out.split_whitespace().nth(1).unwrap().to_owned()
            })
            .collect()
    };
    let first = sessions.run("echo $SSH_CONNECTION").await;
    let second = sessions.run("echo $SSH_CONNECTION").await;
    for results in [&first, &second] {
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].host, "node01");
        assert_eq!(results[2].outcome(), Outcome::Unreachable);
        let e = results[2].result.as_ref().unwrap_err();
        assert_eq!(e.kind(), rexec::ErrorKind::Connect);
        assert!(e.to_string().starts_with("node03: "), "{e}");
        assert!(results[0].timings.connect.is_zero());
    }
    let ports = source_ports(&first);
    assert_ne!(ports[0], ports[1]);
    assert_eq!(ports, source_ports(&second), "the second run reconnected");

    sessions.close().await;
}

/// `CommandRun::stream` yields each host's command result as it finishes, with the
/// `{{name}}` placeholder of a template rendered per host.
#[tokio::test]
async fn command_results_stream_as_hosts_finish() {
    let cluster = Cluster::start(1, 3, 310);
    let targets = targets(&cluster);
    let go = cluster.dir.path().join("go");
    let line = format!(
        "if [ {{{{name}}}} = node01 ]; then while [ ! -e {} ]; do sleep 0.05; done; fi; echo {{{{name}}}}",
        go.display()
    );
    let line = Template::parse(&line).unwrap();
    let pool = Pool::from_targets(targets).concurrency(3);
    let mut stream = pool.run(&line).stream();
    let mut seen = Vec::new();
    while let Some(r) = stream.next().await {
        let out = r.result.as_ref().unwrap().stdout_lossy().trim().to_owned();
        assert_eq!(out, r.host);
        seen.push(r.host.clone());
        if seen.len() == 2 {
            std::fs::write(&go, "").unwrap();
        }
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.last().unwrap(), "node01");
}

/// `Pool::put` and `Pool::get`: one report type, per-host download directories,
/// progress events that add up to what moved, and a host whose settings could not be
/// made (a missing key file) failing alone, without connecting.
#[tokio::test]
async fn put_and_get_fan_out_with_progress_and_a_broken_host_alone() {
    let cluster = Cluster::start(1, 3, 330);
    let path = cluster.inventory(
        &[(
            "node03",
            format!(
                "{{ address = \"{}\", port = {}, identity_files = [\"/nonexistent/key\"] }}",
                cluster.hosts()[2].address,
                cluster.servers[0].port
            ),
        )],
        "",
    );
    let inventory = Inventory::load(&path).unwrap();
    // try_new refuses the broken host up front, naming it.
    let e = Pool::try_new(inventory.hosts()).unwrap_err();
    assert_eq!(e.kind(), rexec::ErrorKind::KeyFile, "{e:#}");
    assert!(e.to_string().starts_with("node03: "), "{e}");

    let pool = Pool::new(inventory.hosts());
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("payload.bin");
    std::fs::write(&local, vec![7u8; 300_000]).unwrap();
    let remote = cluster.dir.path().join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    harness::run(
        std::process::Command::new("chown")
            .arg(harness::TEST_USER)
            .arg(&remote),
    );
    harness::run(
        std::process::Command::new("chmod")
            .arg("755")
            .arg(cluster.dir.path()),
    );
    let moved = AtomicUsize::new(0);
    let report = pool
        .put(&local, format!("{}/{{{{name}}}}.bin", remote.display()))
        .observe(|event| {
            if let Event::Progress { bytes, .. } = event {
                moved.fetch_add(bytes as usize, Ordering::SeqCst);
            }
        })
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = report.iter().map(|r| r.outcome()).collect();
    assert_eq!(outcomes, [Outcome::Ok, Outcome::Ok, Outcome::AuthFailed]);
    assert_eq!(report.exit_code(), rexec::RunExit::CouldNotRun);
    assert_eq!(moved.load(Ordering::SeqCst), 600_000);
    for n in ["node01", "node02"] {
        assert_eq!(
            std::fs::read(remote.join(format!("{n}.bin")))
                .unwrap()
                .len(),
            300_000
        );
        assert_eq!(
            report
                .iter()
                .find(|r| r.host() == n)
                .unwrap()
                .result
                .as_ref()
                .unwrap()
                .bytes,
            300_000
        );
    }
    assert!(!remote.join("node03.bin").exists());
    // node03 never reached the server: two connections in all.
    assert_eq!(
        cluster.servers[0].log().matches("Connection from").count(),
        2
    );

    // get: each host's copy in its own directory; the broken host is left out.
    let down = work.path().join("down");
    let report = pool
        .subset(report.succeeded())
        .get(
            format!("{}/{{{{name}}}}.bin", remote.display()),
            down.to_str().unwrap(),
        )
        .await
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(report.len(), 2);
    for n in ["node01", "node02"] {
        assert_eq!(
            std::fs::read(down.join(n).join(format!("{n}.bin"))).unwrap(),
            vec![7u8; 300_000]
        );
    }
    // A local problem is an error before anything connects.
    let before = cluster.servers[0].log().matches("Connection from").count();
    let e = pool
        .put(work.path().join("missing"), "/tmp/")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), rexec::ErrorKind::NotFound);
    assert_eq!(
        cluster.servers[0].log().matches("Connection from").count(),
        before
    );
}

/// `apply_async(host, command).get(timeout)`: a timeout that passes leaves the command
/// running and the result still to come; an unknown host is an error at once.
#[tokio::test]
async fn apply_async_runs_one_host_and_get_waits_with_a_timeout() {
    let cluster = Cluster::start(1, 2, 340);
    let pool = Pool::from_targets(targets(&cluster));
    let go = cluster.dir.path().join("go");
    let line = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo done",
        go.display()
    );
    let mut pending = pool.apply_async("node02", line).unwrap();
    assert!(!pending.ready());
    assert_eq!(pending.successful(), None);
    let e = pending.get(Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(e.kind(), rexec::ErrorKind::Timeout);
    assert!(
        e.to_string().starts_with("node02: no result within 0.20s"),
        "{e}"
    );
    std::fs::write(&go, "").unwrap();
    let r = pending.get(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (r.host(), r.index(), r.outcome()),
        ("node02", 1, Outcome::Ok)
    );
    assert_eq!(r.result.as_ref().unwrap().stdout, b"done\n");
    assert!(pending.ready());
    assert_eq!(pending.successful(), Some(true));
    // A non-zero exit is a result, not an error of get().
    let mut failing = pool.apply_async("node01", "exit 4").unwrap();
    let r = failing.wait().await;
    assert_eq!(r.outcome(), Outcome::ExitedNonZero);
    assert_eq!(failing.successful(), Some(false));
    let e = pool.apply_async("node09", "true").unwrap_err();
    assert_eq!(e.kind(), rexec::ErrorKind::InvalidInput);
}

/// The observer's events are enough to draw a progress display: output chunks in order
/// before each host's end, and a tally after every start and end that agrees with the
/// report (the CLI's progress bar is drawn from it).
#[tokio::test]
async fn the_observer_sees_output_chunks_and_a_tally_that_matches_the_report() {
    let sshd = Sshd::start();
    let targets = same_server_targets(&sshd, 6);
    let template = Template::parse(
        "printf 'a-%s\\n' {{name}}; sleep 0.1; printf 'e\\n' >&2; printf 'b-%s\\n' {{name}}; \
         case {{name}} in h1|h4) exit 3;; esac",
    )
    .unwrap();
    let pool = Pool::from_targets(targets).concurrency(2);
    let seen = Mutex::new(Vec::<(usize, String, rexec::OutputStream, Vec<u8>)>::new());
    let finished = Mutex::new(Vec::<usize>::new());
    let tallies = Mutex::new(Vec::<rexec::Tally>::new());
    let report = pool
        .run(&template)
        .observe(|event| match event {
            Event::Output {
                index,
                host,
                stream,
                data,
            } => {
                assert!(
                    !finished.lock().unwrap().contains(&index),
                    "output after end"
                );
                seen.lock()
                    .unwrap()
                    .push((index, host.to_owned(), stream, data.to_vec()))
            }
            Event::Finished(r) => finished.lock().unwrap().push(r.index()),
            Event::Tally(t) => tallies.lock().unwrap().push(t),
            _ => {}
        })
        .observe_output()
        .await;
    assert_eq!(report.len(), 6);
    let seen = seen.into_inner().unwrap();
    for r in report.iter() {
        let out = r.result.as_ref().unwrap();
        // The chunks of each stream, joined, are the host's output exactly.
        for (stream, want) in [
            (rexec::OutputStream::Stdout, &out.stdout),
            (rexec::OutputStream::Stderr, &out.stderr),
        ] {
            let got: Vec<u8> = seen
                .iter()
                .filter(|(i, h, s, _)| *i == r.index() && h == r.host() && *s == stream)
                .flat_map(|(_, _, _, d)| d.clone())
                .collect();
            assert_eq!(&got, want, "{} {stream:?}", r.host());
        }
        assert_eq!(out.stdout_lossy(), format!("a-{0}\nb-{0}\n", r.host()));
    }
    let tallies = tallies.into_inner().unwrap();
    // One tally per start and one per end; never more running than the concurrency.
    assert_eq!(tallies.len(), 12, "{tallies:?}");
    assert!(tallies.iter().all(|t| t.total == 6 && t.running <= 2));
    assert!(tallies.windows(2).all(|w| w[0].done <= w[1].done));
    let last = tallies.last().unwrap();
    assert_eq!((last.done, last.running), (6, 0));
    assert_eq!(last.failed, report.failed().count());
    assert_eq!(last.failed, 2);
    // Without observe_output, no chunk reaches the observer, and the output is kept.
    let chunks = AtomicUsize::new(0);
    let report = pool
        .run("echo hi")
        .observe(|event| {
            if let Event::Output { .. } = event {
                chunks.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
    assert_eq!(chunks.load(Ordering::SeqCst), 0);
    assert!(report
        .iter()
        .all(|r| r.result.as_ref().unwrap().stdout == b"hi\n"));
}
