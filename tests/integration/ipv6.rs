//! IPv6 end to end: a real sshd listening on `::1` only, reached through `-H '[::1]:PORT'`,
//! `-H ::1 -p PORT` and inventory addresses; known_hosts lines are `[::1]:PORT key`.

use crate::harness;

use std::process::{Command, Output};

use harness::{Sshd, SshdConfig, TEST_USER};

fn v6_server() -> Sshd {
    Sshd::start_with(SshdConfig {
        addresses: vec!["::1".to_owned()],
        ..SshdConfig::default()
    })
}

fn rexec(sshd: &Sshd, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args([
            "-u",
            TEST_USER,
            "-I",
            sshd.user_key.to_str().unwrap(),
            "--known-hosts",
            sshd.known_hosts.to_str().unwrap(),
            "--no-agent",
            "--connect-timeout",
            "10s",
        ])
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

fn json_results(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("host").is_some())
        .collect()
}

#[test]
fn a_host_list_reaches_sshd_on_ipv6_loopback() {
    let sshd = v6_server();
    assert!(
        std::fs::read_to_string(&sshd.known_hosts)
            .unwrap()
            .starts_with(&format!("[::1]:{} ", sshd.port)),
        "the harness records [::1]:PORT"
    );
    let port = sshd.port.to_string();
    let bracketed = format!("[::1]:{port}");
    let out = rexec(
        &sshd,
        &[
            "-H",
            &bracketed,
            "--json",
            "echo {{name}} {{host}} {{port}}; id -un",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = json_results(&out);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["host"], bracketed.as_str());
    assert_eq!(
        results[0]["stdout"],
        format!("[::1]:{port} ::1 {port}\n{TEST_USER}\n").as_str()
    );
    // A bare address with the port from -p is named `::1`.
    let out = rexec(&sshd, &["-H", "::1", "-p", &port, "--json", "echo ok"]);
    assert_eq!(out.status.code(), Some(0));
    let results = json_results(&out);
    assert_eq!(results[0]["host"], "::1");
    assert_eq!(results[0]["stdout"], "ok\n");
}

#[test]
fn inventory_addresses_reach_sshd_on_ipv6_loopback_and_failures_read_back() {
    let sshd = v6_server();
    let closed = harness::free_port();
    let inventory = sshd.dir.path().join("hosts.toml");
    std::fs::write(
        &inventory,
        format!(
            "[hosts]\n\"::1\" = {{ port = {port} }}\nv6 = {{ address = \"::1\", port = {port} }}\n\
             shut = {{ address = \"::1\", port = {closed} }}\n",
            port = sshd.port
        ),
    )
    .unwrap();
    let failed = sshd.dir.path().join("failed");
    let out = rexec(
        &sshd,
        &[
            "-i",
            inventory.to_str().unwrap(),
            "--json",
            "--failed-hosts",
            failed.to_str().unwrap(),
            "echo {{name}}",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = json_results(&out);
    // JSON lines come as hosts finish, in any order.
    let mut ok: Vec<(&str, &str)> = results
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .map(|r| (r["host"].as_str().unwrap(), r["stdout"].as_str().unwrap()))
        .collect();
    ok.sort();
    assert_eq!(ok, [("::1", "::1\n"), ("v6", "v6\n")]);
    assert_eq!(std::fs::read_to_string(&failed).unwrap(), "shut\n");

    // With a port of its own per host through -H: the one on the closed port fails, and
    // its name reads back through -l @FILE.
    let list = format!("[::1]:{},[::1]:{closed}", sshd.port);
    let out = rexec(
        &sshd,
        &[
            "-H",
            &list,
            "--failed-hosts",
            failed.to_str().unwrap(),
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(&failed).unwrap(),
        format!("[::1]:{closed}\n")
    );
    let at_file = format!("@{}", failed.display());
    let out = rexec(&sshd, &["-H", &list, "-l", &at_file, "--json", "true"]);
    let results = json_results(&out);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["host"], format!("[::1]:{closed}").as_str());
}
