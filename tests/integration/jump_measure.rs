//! A measurement, not a test (ignored by default; README "Jump hosts", "Sharing and
//! caps"): 50 targets behind one bastion with several caps on channels per bastion
//! connection, and 10 targets each sending 50 MB of stdout through the bastion with caps
//! 1 and 10. It prints wall-clock times and the bastion's connection counts.
//!
//!     cargo test --test jump_measure -- --ignored --nocapture
use crate::harness;
use harness::netns::{log_count, Topology};
use harness::{Sshd, SshdConfig, TEST_USER};
use rexec::{Agent, Inventory, Jumps, Pool, TargetBuilder};
use std::time::{Duration, Instant};

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn measure_caps() {
    let topo = Topology::new(2);
    topo.add_addresses(2, 50);
    let bastion = topo.sshd(1, vec![topo.address(1, 0)], SshdConfig::default());
    let targets: Vec<Sshd> = (0..5)
        .map(|s| {
            topo.sshd(
                2,
                (s * 10..s * 10 + 10).map(|i| topo.address(2, i)).collect(),
                SshdConfig::default(),
            )
        })
        .collect();
    for t in &targets {
        t.authorize(&bastion.user_key);
    }
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("kh");
    let lines: String = std::iter::once(&bastion)
        .chain(&targets)
        .map(Sshd::known_hosts_lines)
        .collect();
    std::fs::write(&kh, lines).unwrap();
    let mut text = format!("[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\nproxy_jump = \"{TEST_USER}@{}:{}\"\n[hosts]\n", bastion.user_key.display(), kh.display(), bastion.addresses[0], bastion.port);
    let mut i = 0;
    for t in &targets {
        for a in &t.addresses {
            i += 1;
            text.push_str(&format!(
                "t{i:02} = {{ address = \"{a}\", port = {} }}\n",
                t.port
            ));
        }
    }
    let inv_path = dir.path().join("hosts.toml");
    std::fs::write(&inv_path, text).unwrap();
    let inv = Inventory::from_file(&inv_path, &Default::default()).unwrap();
    let all = TargetBuilder::new()
        .agent(Agent::Off)
        .build_all(inv.hosts())
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..3 {
        for cap in [1usize, 5, 10, 25, 50] {
            let before = log_count(&bastion, "Connection from");
            let pool = Pool::from_targets(all.clone())
                .concurrency(64)
                .jumps(Jumps::with_channels_per_connection(cap));
            let t = Instant::now();
            let results = rt.block_on(async { pool.run("true").await });
            let el = t.elapsed();
            assert!(results.iter().all(|r| r.outcome() == rexec::Outcome::Ok));
            std::thread::sleep(Duration::from_millis(300));
            println!(
                "round {round} true x50 cap {cap:2}: {:.2}s, {} bastion connections",
                el.as_secs_f64(),
                log_count(&bastion, "Connection from") - before
            );
        }
        let ten: Vec<_> = all.iter().step_by(5).cloned().collect();
        for cap in [1usize, 10] {
            let pool = Pool::from_targets(ten.clone())
                .concurrency(64)
                .jumps(Jumps::with_channels_per_connection(cap));
            let t = Instant::now();
            let results = rt.block_on(async {
                pool.run("head -c 50000000 /dev/zero")
                    .configure(|_, c| {
                        c.max_output(0);
                    })
                    .await
            });
            let el = t.elapsed();
            assert!(results.iter().all(|r| r.outcome() == rexec::Outcome::Ok));
            println!(
                "round {round} 50MB stdout x10 cap {cap:2}: {:.2}s",
                el.as_secs_f64()
            );
        }
    }
    drop(targets);
    drop(bastion);
    drop(topo);
}
