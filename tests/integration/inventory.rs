//! The inventory format: every shipped example parses; settings layer as documented;
//! invalid input fails with file, line and column; selection patterns.

use std::time::Duration;

use rexec::{ErrorKind, HostKeyPolicy, HostSettings, Inventory, Transport};

fn parse(text: &str) -> rexec::Result<Inventory> {
    Inventory::parse(text, "hosts.toml", &HostSettings::default())
}

fn err(text: &str) -> String {
    let e = parse(text).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    e.to_string()
}

fn names(inv: &Inventory, pattern: &str) -> Vec<String> {
    inv.select(pattern)
        .unwrap()
        .iter()
        .map(|h| h.name.clone())
        .collect()
}

#[test]
fn every_shipped_inventory_parses() {
    let mut count = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/inventory")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let inv = Inventory::from_file(&path, &HostSettings::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!inv.hosts().is_empty(), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 2);
}

#[test]
fn the_example_inventory_means_what_its_comments_say() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/inventory/example.toml");
    let inv = Inventory::from_file(path, &HostSettings::default()).unwrap();
    let web03 = inv.hosts().iter().find(|h| h.name == "web03").unwrap();
    assert_eq!(web03.settings.user.as_deref(), Some("deploy"));
    assert_eq!(web03.var("role").as_deref(), Some("frontend"));
    assert_eq!(web03.var("env").as_deref(), Some("prod"));
    assert_eq!(web03.groups, ["web", "prod"]);
    let db7 = inv.hosts().iter().find(|h| h.name == "db7").unwrap();
    assert_eq!(db7.settings.user.as_deref(), Some("postgres"));
    assert_eq!(
        db7.settings.command_timeout,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        db7.settings.password_env.as_deref(),
        Some("BACKUP_PASSWORD")
    );
    assert_eq!(db7.settings.become_enabled, Some(true));
    assert_eq!(db7.settings.become_user.as_deref(), Some("backup"));
    assert_eq!(
        db7.settings.become_password_env.as_deref(),
        Some("BACKUP_SUDO_PASSWORD")
    );
    assert_eq!(web03.settings.become_enabled, None);
    let lb1 = inv.hosts().iter().find(|h| h.name == "lb1").unwrap();
    assert_eq!((lb1.hostname(), lb1.port()), ("lb1.example.net", 2222));
    let control = inv.hosts().iter().find(|h| h.name == "control").unwrap();
    assert_eq!(control.transport(), Transport::Local);
    assert_eq!(names(&inv, "prod").len(), 13 + 4 + 1);
}

#[test]
fn settings_layer_defaults_then_groups_then_host() {
    let inv = parse(
        r#"
[defaults]
user = "d"
port = 2200
connect_timeout = 3
vars = { a = "default", b = "default" }

[hosts]
h1 = { vars = { b = "host" } }
h2 = { user = "own", port = 22 }
"r[1-2]" = {}

[groups.g1]
hosts = ["h1", "h2"]
user = "g1"
host_key_policy = "accept-new"
vars = { a = "g1" }

[groups.g2]
groups = ["g1"]
hosts = ["extra"]
user = "g2"
"#,
    )
    .unwrap();
    let by = |n: &str| inv.hosts().iter().find(|h| h.name == n).unwrap().clone();
    let h1 = by("h1");
    assert_eq!(h1.settings.user.as_deref(), Some("g2"));
    assert_eq!(h1.port(), 2200);
    assert_eq!(h1.settings.host_key_policy, Some(HostKeyPolicy::AcceptNew));
    assert_eq!(h1.var("a").as_deref(), Some("g1"));
    assert_eq!(h1.var("b").as_deref(), Some("host"));
    assert_eq!(h1.var("name").as_deref(), Some("h1"));
    assert_eq!(h1.settings.connect_timeout, Some(Duration::from_secs(3)));
    let h2 = by("h2");
    assert_eq!((h2.settings.user.as_deref(), h2.port()), (Some("own"), 22));
    assert_eq!(by("extra").groups, ["g2"]);
    assert_eq!(by("r2").settings.user.as_deref(), Some("d"));
    let order: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(order, ["h1", "h2", "r1", "r2", "extra"]);
}

#[test]
/// Issue 12: command line > inventory (host, group, defaults) > ssh_config > defaults.
fn command_line_overrides_win_over_the_whole_inventory() {
    let over = HostSettings {
        user: Some("cli".into()),
        ..HostSettings::default()
    };
    let inv = Inventory::parse(
        "[defaults]\nuser = \"d\"\n[hosts]\na = {}\nb = { user = \"own\" }\n",
        "f",
        &over,
    )
    .unwrap();
    assert_eq!(inv.hosts()[0].settings.user.as_deref(), Some("cli"));
    assert_eq!(inv.hosts()[1].settings.user.as_deref(), Some("cli"));
}

#[test]
fn errors_name_file_line_and_column() {
    assert_eq!(
        err("[hosts]\nweb1 = { prot = 22 }\n"),
        "hosts.toml:2:10: unknown field `prot`, expected one of `address`, `port`, `user`, \
         `identity_files`, `certificate_files`, `password_env`, `host_key_policy`, \
         `known_hosts`, `connect_timeout`, `command_timeout`, `keepalive`, `keepalive_max`, \
         `transport`, `become`, `become_user`, `become_password_env`, `proxy_jump`, \
         `proxy_command`, `vars`"
    );
    assert!(
        err("[hosts\nweb1 = {}\n").starts_with("hosts.toml:1:"),
        "{}",
        err("[hosts\n")
    );
    assert_eq!(
        err("[hosts]\nweb1 = { port = 70000 }\n"),
        "hosts.toml:2:17: port 70000 is out of range (1 to 65535)"
    );
    assert_eq!(
        err("[hosts]\nweb1 = { port = 0 }\n"),
        "hosts.toml:2:17: port 0 is out of range (1 to 65535)"
    );
    assert_eq!(
        err("[hosts]\n\"web[01-03]\" = {}\nweb02 = {}\n"),
        "hosts.toml:3:1: duplicate host \"web02\" (first defined at hosts.toml:2:1)"
    );
    assert_eq!(
        err("[hosts]\n\"-oProxyCommand=x\" = {}\n"),
        "hosts.toml:2:1: host name \"-oProxyCommand=x\" begins with '-'"
    );
    assert_eq!(
        err("[hosts]\n\"a;b\" = {}\n"),
        "hosts.toml:2:1: host name \"a;b\" contains a character that is not allowed (';')"
    );
    assert_eq!(
        err("[hosts]\n\"a b\" = {}\n"),
        "hosts.toml:2:1: host name \"a b\" contains whitespace (' ')"
    );
    assert_eq!(
        err("[hosts]\n\"a\\u0007\" = {}\n"),
        "hosts.toml:2:1: host name \"a\\u{7}\" contains a control character ('\\u{7}')"
    );
    assert_eq!(
        err("[hosts]\na = { user = \"$(reboot)\" }\n"),
        "hosts.toml:2:14: user name \"$(reboot)\" contains a character that is not allowed ('$')"
    );
    assert_eq!(
        err("[hosts]\na = { user = \"-l\" }\n"),
        "hosts.toml:2:14: user name \"-l\" begins with '-'"
    );
    assert_eq!(
        err("[groups.g]\ngroups = [\"g\"]\n"),
        "hosts.toml:2:11: group \"g\" names itself"
    );
    assert_eq!(
        err("[groups.a]\ngroups = [\"b\"]\n[groups.b]\ngroups = [\"a\"]\n"),
        "hosts.toml:1:9: groups contain each other: a -> b -> a"
    );
    assert_eq!(
        err("[groups.a]\ngroups = [\"nope\"]\n"),
        "hosts.toml:2:11: unknown group \"nope\""
    );
    assert_eq!(
        err("[hosts]\na = { host_key_policy = \"maybe\" }\n"),
        "hosts.toml:2:25: unknown host key policy \"maybe\" (expected strict, accept-new or off)"
    );
    assert_eq!(
        err("[hosts]\n\"w[3-1]\" = {}\n"),
        "hosts.toml:2:1: invalid host range \"w[3-1]\": \"3-1\" runs backwards"
    );
    assert_eq!(
        err("[hosts]\na = { connect_timeout = \"soon\" }\n"),
        "hosts.toml:2:25: invalid duration \"soon\": expected a number of seconds, or a \
         number with a unit: 500ms, 10s, 2m, 1h, 1h30m"
    );
    assert_eq!(
        err("[hosts]\na = { transport = \"telnet\" }\n"),
        "hosts.toml:2:19: unknown transport \"telnet\" (expected ssh or local)"
    );
    assert_eq!(
        err("[hosts]\nweb = {}\n[groups.web]\n"),
        "hosts.toml:3:9: \"web\" is both a host and a group"
    );
    assert!(err("[hostz]\n").contains("unknown field `hostz`"));
}

#[test]
fn selection_patterns() {
    let inv = parse(
        r#"
[hosts]
"web[01-05]" = {}
"db[1-3]" = {}
lb = {}
[groups.web]
hosts = ["web[01-05]"]
[groups.db]
hosts = ["db[1-3]"]
[groups.prod]
hosts = ["web01", "web02", "db1", "lb"]
"#,
    )
    .unwrap();
    assert_eq!(names(&inv, "all").len(), 9);
    assert_eq!(
        names(&inv, "web,db1"),
        ["web01", "web02", "web03", "web04", "web05", "db1"]
    );
    assert_eq!(
        names(&inv, "web:!web03"),
        ["web01", "web02", "web04", "web05"]
    );
    assert_eq!(names(&inv, "web:&prod"), ["web01", "web02"]);
    assert_eq!(names(&inv, "db*"), ["db1", "db2", "db3"]);
    assert_eq!(names(&inv, "web[02-03],lb"), ["web02", "web03", "lb"]);
    assert_eq!(names(&inv, "!web"), ["db1", "db2", "db3", "lb"]);
    assert_eq!(names(&inv, "&prod:!lb"), ["web01", "web02", "db1"]);
    for (bad, msg) in [
        (
            "nope",
            "host pattern \"nope\" matches no host in the inventory",
        ),
        (
            "web:!nope",
            "host pattern \"!nope\" matches no host in the inventory",
        ),
        (
            "web[04-07]",
            "host pattern \"web[04-07]\": not in the inventory: web[06-07]",
        ),
        ("web:!web", "host pattern \"web:!web\" selects no host"),
    ] {
        let e = inv.select(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), msg);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failed");
    std::fs::write(&file, "web03\n# comment\ndb2\n").unwrap();
    assert_eq!(
        names(&inv, &format!("@{}", file.display())),
        ["web03", "db2"]
    );
    assert_eq!(
        names(&inv, &format!("web:!@{}", file.display())),
        ["web01", "web02", "web04", "web05"]
    );
}

#[test]
fn host_lists_without_a_file() {
    let inv = Inventory::from_host_list(
        "web1,web2:2222,deploy@db1,n[1-2],[::1]:2200",
        &HostSettings::default(),
    )
    .unwrap();
    let hosts = inv.hosts();
    let got: Vec<(&str, u16, Option<&str>)> = hosts
        .iter()
        .map(|h| (h.name.as_str(), h.port(), h.settings.user.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("web1", 22, None),
            ("web2:2222", 2222, None),
            ("db1", 22, Some("deploy")),
            ("n1", 22, None),
            ("n2", 22, None),
            ("[::1]:2200", 2200, None),
        ]
    );
    for bad in [
        "-oProxyCommand=x",
        "a;b",
        "web1:99999",
        "bad user@h",
        "a,a",
        "",
    ] {
        let e = Inventory::from_host_list(bad, &HostSettings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

#[test]
fn keepalive_keys_layer_like_the_other_settings() {
    let inv = Inventory::parse(
        "[defaults]\nkeepalive = \"5s\"\nkeepalive_max = 4\n[hosts]\na = {}\nb = { keepalive = 1 }\n",
        "hosts.toml",
        &rexec::HostSettings::default(),
    )
    .unwrap();
    let a = &inv.hosts()[0].settings;
    let b = &inv.hosts()[1].settings;
    assert_eq!(a.keepalive, Some(std::time::Duration::from_secs(5)));
    assert_eq!(a.keepalive_max, Some(4));
    assert_eq!(b.keepalive, Some(std::time::Duration::from_secs(1)));
    assert_eq!(b.keepalive_max, Some(4));
    let err = Inventory::parse(
        "[hosts]\na = { keepalive_max = 0 }\n",
        "hosts.toml",
        &rexec::HostSettings::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hosts.toml:2:23: keepalive_max 0 is out of range (1 to 1000)"
    );
}
