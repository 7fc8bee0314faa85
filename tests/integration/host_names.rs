//! Host names: what `-H` items are called, duplicates, and that every name rexec writes
//! (`--failed-hosts`, JSON `host`, folded summaries) selects exactly those hosts again
//! through `-l` / `Inventory::select`, for every kind of name.

use crate::harness;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use proptest::prelude::*;
use rexec::__cli::{expand, fold};
use rexec::{ErrorKind, HostSettings, Inventory};

fn list(text: &str) -> Inventory {
    Inventory::from_host_list(text, &HostSettings::default()).unwrap()
}

fn list_err(text: &str) -> String {
    let e = Inventory::from_host_list(text, &HostSettings::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    e.to_string()
}

fn names(inv: &Inventory, pattern: &str) -> Vec<String> {
    inv.select(pattern)
        .unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
        .iter()
        .map(|h| h.name.clone())
        .collect()
}

fn all_names(inv: &Inventory) -> Vec<String> {
    inv.hosts().iter().map(|h| h.name.clone()).collect()
}

fn rexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Splits folded text at commas outside brackets, as `-l` does, and expands each part.
fn expand_folded(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .flat_map(|p| expand(p).unwrap_or_else(|e| panic!("{p:?} of {text:?}: {e}")))
        .collect()
}

#[test]
fn an_items_name_is_what_was_written_minus_the_user() {
    let inv = list(
        "web1,deploy@web2:2222,root@10.0.0.5:2222,root@10.0.0.5:2223,[::1]:2200,::1,\
         [::2],0:0:0:0:0:0:0:3,n[1-2]:[8000-8001]",
    );
    let got: Vec<(&str, &str, u16, Option<&str>)> = inv
        .hosts()
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.hostname(),
                h.port(),
                h.settings.user.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("web1", "web1", 22, None),
            ("web2:2222", "web2", 2222, Some("deploy")),
            ("10.0.0.5:2222", "10.0.0.5", 2222, Some("root")),
            ("10.0.0.5:2223", "10.0.0.5", 2223, Some("root")),
            ("[::1]:2200", "::1", 2200, None),
            ("::1", "::1", 22, None),
            ("::2", "::2", 22, None),
            ("0:0:0:0:0:0:0:3", "0:0:0:0:0:0:0:3", 22, None),
            ("n1:8000", "n1", 8000, None),
            ("n1:8001", "n1", 8001, None),
            ("n2:8000", "n2", 8000, None),
            ("n2:8001", "n2", 8001, None),
        ]
    );
    // The command line's port applies where an item gives none.
    let over = HostSettings {
        port: Some(2000),
        ..HostSettings::default()
    };
    let inv = Inventory::from_host_list("a,b:3000", &over).unwrap();
    assert_eq!(inv.hosts()[0].port(), 2000);
    assert_eq!(inv.hosts()[1].port(), 3000);
}

#[test]
fn the_same_name_twice_is_a_duplicate_and_two_ports_are_two_hosts() {
    for (text, message) in [
        (
            "web1,web1",
            "host list item \"web1\": host \"web1\" is listed twice (first in \"web1\")",
        ),
        (
            "a@web1:22,b@web1:22",
            "host list item \"b@web1:22\": host \"web1:22\" is listed twice (first in \"a@web1:22\")",
        ),
        (
            "::1,[::1]",
            "host list item \"[::1]\": host \"::1\" is listed twice (first in \"::1\")",
        ),
        (
            "web[1-3],web2",
            "host list item \"web2\": host \"web2\" is listed twice (first in \"web[1-3]\")",
        ),
        (
            "h[1,1]",
            "host list item \"h[1,1]\": host \"h1\" is listed twice (first in \"h[1,1]\")",
        ),
    ] {
        assert_eq!(list_err(text), message);
    }
    assert_eq!(
        all_names(&list("web1,web1:22,[::1]:22,[::1]:23,::1")),
        ["web1", "web1:22", "[::1]:22", "[::1]:23", "::1"]
    );
    for bad in [
        "a:b:c",
        "web1:",
        "web1:0",
        "web1:65536",
        "[::1]x",
        "[::1",
        "[web1]:22",
        "fe80::1%lo",
        "db[1-3",
    ] {
        list_err(bad);
    }
    // Through the binary, which once refused this as "listed twice".
    let out = rexec(&[
        "-H",
        "root@10.0.0.5:2222,root@10.0.0.5:2223",
        "--list-hosts",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout_lines(&out), ["10.0.0.5:2222", "10.0.0.5:2223"]);
    // A comma inside a range does not split the item.
    assert_eq!(all_names(&list("db[1-2,7],x")), ["db1", "db2", "db7", "x"]);
}

/// One of every kind of name, with ranges: plain, padded, host:port, IPv4:port,
/// [IPv6]:port, bare IPv6 (short and long forms), and numbers longer than any integer.
const EVERY_KIND: &str = "web1,web2,web03,web1:2222,web1:2223,10.0.0.5:2222,10.0.0.5:2223,\
    10.0.0.6:2222,[::1]:2222,[::1]:2223,[fe80::1]:22,::1,::2,0:0:0:0:0:0:0:1,2001:db8::10,\
    n[1-3]:[8000-8001],h123456789012345678901234,h123456789012345678901235,lb";

#[test]
fn every_name_written_selects_exactly_its_hosts() {
    let inv = list(EVERY_KIND);
    let every = all_names(&inv);
    assert_eq!(every.len(), 24);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failed");
    // Each name alone, as -l NAME, as a --failed-hosts file, and as the exclusion of all.
    for name in &every {
        assert_eq!(names(&inv, name), [name.as_str()]);
        std::fs::write(&file, format!("{name}\n")).unwrap();
        assert_eq!(
            names(&inv, &format!("@{}", file.display())),
            [name.as_str()]
        );
        let rest: Vec<String> = every.iter().filter(|n| *n != name).cloned().collect();
        assert_eq!(names(&inv, &format!("all:!{name}")), rest, "all:!{name}");
        assert_eq!(names(&inv, &format!("{name}:&all")), [name.as_str()]);
    }
    // Subsets: every pair of neighbours, every other name, all; as files and folded.
    let mut subsets: Vec<Vec<String>> = every.windows(2).map(<[String]>::to_vec).collect();
    subsets.push(every.iter().step_by(2).cloned().collect());
    subsets.push(every.iter().skip(1).step_by(3).cloned().collect());
    subsets.push(every.clone());
    for subset in subsets {
        let lines: String = subset.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&file, lines).unwrap();
        assert_eq!(names(&inv, &format!("@{}", file.display())), subset);
        let folded = fold(&subset);
        assert_eq!(names(&inv, &folded), subset, "{folded}");
        std::fs::write(&file, format!("{folded}\n")).unwrap();
        assert_eq!(names(&inv, &format!("@{}", file.display())), subset);
    }
    assert_eq!(
        fold(&every),
        "web[1-2],web03,web1:[2222-2223],10.0.0.5:[2222-2223],10.0.0.6:2222,\
         [::1]:[2222-2223],[fe80::1]:22,::[1-2],0:0:0:0:0:0:0:1,2001:db8::10,n1:[8000-8001],\
         n2:[8000-8001],n3:[8000-8001],h[123456789012345678901234-123456789012345678901235],lb"
    );
    // Ranges of ports and of addresses select the names they expand to.
    assert_eq!(
        names(&inv, "10.0.0.5:[2222-2223]"),
        ["10.0.0.5:2222", "10.0.0.5:2223"]
    );
    assert_eq!(
        names(&inv, "[::1]:[2222-2223]"),
        ["[::1]:2222", "[::1]:2223"]
    );
    assert_eq!(names(&inv, "n[1-3]:8001:!n2:8001"), ["n1:8001", "n3:8001"]);
    let all_but_two: Vec<String> = every
        .iter()
        .filter(|n| *n != "web1:2222" && *n != "::1")
        .cloned()
        .collect();
    assert_eq!(names(&inv, "all:!web1:2222:!::1"), all_but_two);
    assert_eq!(
        names(&inv, "web*:!web1:2222"),
        ["web1", "web2", "web03", "web1:2223"]
    );
    for (pattern, message) in [
        (
            "10.0.0.5:[2222-2224]",
            "host pattern \"10.0.0.5:[2222-2224]\": not in the inventory: 10.0.0.5:2224",
        ),
        (
            "10.0.0.5:2224",
            "host pattern \"10.0.0.5:2224\" matches no host in the inventory",
        ),
        (
            "::3",
            "host pattern \"::3\" matches no host in the inventory",
        ),
        (
            "[::1]:2224",
            "host pattern \"[::1]:2224\" matches no host in the inventory",
        ),
    ] {
        assert_eq!(inv.select(pattern).unwrap_err().to_string(), message);
    }
    // A line of a host file is not read as another host file.
    std::fs::write(&file, "web1\n@/etc/hostname\n").unwrap();
    let e = inv.select(&format!("@{}", file.display())).unwrap_err();
    assert!(
        e.to_string().contains("a host file cannot name another"),
        "{e}"
    );
}

#[test]
fn colons_still_separate_groups_and_names_in_an_inventory() {
    let inv = Inventory::parse(
        "[hosts]\n\"web[01-05]\" = {}\n\"::1\" = { port = 2222 }\n\"db:5432\" = {}\n\
         [groups.web]\nhosts = [\"web[01-05]\"]\n",
        "hosts.toml",
        &HostSettings::default(),
    )
    .unwrap();
    assert_eq!(
        names(&inv, "web:!web03"),
        ["web01", "web02", "web04", "web05"]
    );
    assert_eq!(names(&inv, "::1"), ["::1"]);
    assert_eq!(names(&inv, "db:5432:web01"), ["web01", "db:5432"]);
    assert_eq!(names(&inv, "web:&web0[1-2]"), ["web01", "web02"]);
    let v6 = &inv.hosts()[5];
    assert_eq!((v6.hostname(), v6.port()), ("::1", 2222));
}

#[test]
fn an_empty_inventory_says_so() {
    for text in ["", "# nothing\n", "[hosts]\n", "[groups.g]\n"] {
        let e = Inventory::parse(text, "hosts.toml", &HostSettings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "hosts.toml: the inventory has no hosts");
    }
    let e = Inventory::default().select("all").unwrap_err();
    assert_eq!(e.to_string(), "the inventory has no hosts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.toml");
    std::fs::write(&path, "[defaults]\nuser = \"x\"\n").unwrap();
    let out = rexec(&["-i", path.to_str().unwrap(), "--list-hosts"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("rexec: {}: the inventory has no hosts\n", path.display())
    );
}

#[test]
fn a_hundred_thousand_hosts_load_dedupe_group_and_select_correctly() {
    let n = 100_000;
    let mut text = String::from("[hosts]\n");
    for i in 1..=n {
        text.push_str(&format!("h{i} = {{}}\n"));
    }
    for g in 0..4 {
        text.push_str(&format!("[groups.g{g}]\nhosts = ["));
        for i in (g * n / 4 + 1)..=((g + 1) * n / 4) {
            text.push_str(&format!("\"h{i}\","));
        }
        text.push_str("]\n");
    }
    text.push_str("[groups.every]\ngroups = [\"g0\", \"g1\", \"g2\", \"g3\"]\n");
    let inv = Inventory::parse(&text, "hosts.toml", &HostSettings::default()).unwrap();
    assert_eq!(inv.hosts().len(), n);
    assert_eq!(inv.groups()["every"].len(), n);
    assert_eq!(inv.hosts()[n - 1].groups, ["g3", "every"]);
    let selected = names(&inv, &format!("h[1-{}]:!g1", n / 2));
    assert_eq!(selected.len(), n / 4);
    assert_eq!(selected.first().unwrap(), "h1");
    assert_eq!(selected.last().unwrap(), &format!("h{}", n / 4));
    let odd: Vec<String> = (1..=n).step_by(2).map(|i| format!("h{i}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failed");
    std::fs::write(&file, odd.join("\n")).unwrap();
    assert_eq!(names(&inv, &format!("@{}", file.display())), odd);
    assert_eq!(names(&inv, &odd.join(",")), odd);
    assert_eq!(names(&inv, &fold(&odd)), odd);
    // A duplicate at the very end (through a range) is found and named.
    let duplicate = text.replace("[groups.g0]", "\"h[77777-77778]\" = {}\n[groups.g0]");
    let e = Inventory::parse(&duplicate, "hosts.toml", &HostSettings::default()).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "hosts.toml:100002:1: duplicate host \"h77777\" (first defined at hosts.toml:77778:1)"
        ),
        "{e}"
    );
    // The same as a host list, with a duplicate at the end.
    let every: Vec<String> = (1..=n)
        .map(|i| format!("10.{}.{}.{}:22", i / 65536, i / 256 % 256, i % 256))
        .collect();
    let inv = list(&every.join(","));
    assert_eq!(all_names(&inv), every);
    assert_eq!(names(&inv, &every[n - 1]), [every[n - 1].clone()]);
    let e = Inventory::from_host_list(
        &format!("{},{}", every.join(","), every[4242]),
        &HostSettings::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("is listed twice"), "{e}");
}

#[test]
fn the_binary_reads_back_its_failed_hosts_json_and_summaries() {
    // Nothing listens on these ports: every host fails at once (no server needed).
    let port = loop {
        let port = harness::free_port();
        if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let failed = dir.path().join("failed");
    let hosts = format!(
        "127.0.0.1:{port},127.0.0.1:{},[::1]:{port},::1,0:0:0:0:0:0:0:1,127.0.0.[1-2]",
        port + 1
    );
    let common = [
        "-H",
        hosts.as_str(),
        "-p",
        &port.to_string(),
        "--no-agent",
        "--known-hosts",
        known_hosts.to_str().unwrap(),
        "--connect-timeout",
        "5s",
    ]
    .map(str::to_owned);
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = common.iter().map(String::as_str).collect();
        args.extend(extra);
        rexec(&args)
    };
    let expected = vec![
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{}", port + 1),
        format!("[::1]:{port}"),
        "::1".to_owned(),
        "0:0:0:0:0:0:0:1".to_owned(),
        "127.0.0.1".to_owned(),
        "127.0.0.2".to_owned(),
    ];
    let listed = run(&["--list-hosts"]);
    assert_eq!(stdout_lines(&listed), expected);

    let out = run(&["--json", "--failed-hosts", failed.to_str().unwrap(), "true"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&failed).unwrap(),
        expected
            .iter()
            .map(|n| format!("{n}\n"))
            .collect::<String>()
    );
    let at_file = format!("@{}", failed.display());
    assert_eq!(
        stdout_lines(&run(&["--list-hosts", "-l", &at_file])),
        expected
    );
    let mut json_hosts = BTreeSet::new();
    for line in stdout_lines(&out) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(host) = v["host"].as_str() {
            json_hosts.insert(host.to_owned());
            assert_eq!(stdout_lines(&run(&["--list-hosts", "-l", host])), [host]);
        }
    }
    assert_eq!(json_hosts, expected.iter().cloned().collect());

    // The summary folds the failed hosts; the folded text selects them again.
    let out = run(&["true"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let folded = stderr
        .lines()
        .find_map(|l| l.strip_prefix("    unreachable: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        folded,
        format!(
            "127.0.0.1:[{port}-{}],[::1]:{port},::1,0:0:0:0:0:0:0:1,127.0.0.[1-2]",
            port + 1
        )
    );
    assert_eq!(
        stdout_lines(&run(&["--list-hosts", "-l", folded])),
        expected
    );
}

/// A name: prefix, a number (padded or not, up to 40 digits), suffix; or one without digits.
fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[a-z][a-z.-]{0,3}", "[0-9]{1,40}", "[a-z.-]{0,3}")
            .prop_map(|(p, d, s)| format!("{p}{d}{s}")),
        ("[a-c]", 0u64..30, 1usize..4).prop_map(|(p, n, w)| format!("{p}{n:0w$}")),
        // `all` is the keyword, not a host.
        "[a-z][a-z.-]{0,5}".prop_filter("the keyword all", |n| n != "all"),
        (0u16..20).prop_map(|n| format!("::{n}")),
        (1000u16..1020).prop_map(|p| format!("[::1]:{p}")),
        ("[a-b]", 0u8..3, 1000u16..1010).prop_map(|(h, i, p)| format!("{h}{i}:{p}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn folding_and_expanding_gives_back_the_same_set(
        names in proptest::collection::vec(name_strategy(), 1..40)
    ) {
        let folded = fold(&names);
        let back: BTreeSet<String> = expand_folded(&folded).into_iter().collect();
        let want: BTreeSet<String> = names.iter().cloned().collect();
        prop_assert_eq!(back, want, "{}", folded);
    }

    #[test]
    fn a_folded_subset_selects_exactly_that_subset(
        names in proptest::collection::vec(name_strategy(), 1..40),
        keep in proptest::collection::vec(any::<bool>(), 40),
    ) {
        let mut unique = Vec::new();
        let mut seen = BTreeSet::new();
        for n in &names {
            if seen.insert(n.clone()) {
                unique.push(n.clone());
            }
        }
        let inv = Inventory::from_host_list(&unique.join(","), &HostSettings::default())
            .map_err(|e| TestCaseError::fail(format!("{unique:?}: {e}")))?;
        let mut subset: Vec<String> = unique
            .iter()
            .zip(keep.iter().cycle())
            .filter(|(_, k)| **k)
            .map(|(n, _)| n.clone())
            .collect();
        if subset.is_empty() {
            subset.push(unique[0].clone());
        }
        let folded = fold(&subset);
        let got: BTreeSet<String> = names_of(&inv, &folded)?.into_iter().collect();
        let want: BTreeSet<String> = subset.iter().cloned().collect();
        prop_assert_eq!(got, want, "{}", folded);
        for name in &unique {
            prop_assert_eq!(names_of(&inv, name)?, vec![name.clone()]);
        }
    }
}

fn names_of(inv: &Inventory, pattern: &str) -> Result<Vec<String>, TestCaseError> {
    inv.select(pattern)
        .map(|hosts| hosts.iter().map(|h| h.name.clone()).collect())
        .map_err(|e| TestCaseError::fail(format!("{pattern:?}: {e}")))
}
