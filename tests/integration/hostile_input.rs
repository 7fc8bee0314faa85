//! Hostile and unusual input to the inventory, host lists, durations and ranges: always an
//! error naming where (`file:line:column` for a file), never a panic, never an injection,
//! never an allocation sized by the input's numbers.

use std::process::{Command, Output};
use std::time::Duration;

use proptest::prelude::*;
use rexec::__cli::parse_duration;
use rexec::{ErrorKind, HostSettings, Inventory};
use rexec::{MAX_DURATION, MAX_HOSTS};

fn parse(text: &str) -> rexec::Result<Inventory> {
    Inventory::parse(text, "hosts.toml", &HostSettings::default())
}

fn err(text: &str) -> String {
    let e = parse(text).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    e.to_string()
}

fn rexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Where `needle` starts in `text`, as `line:column` (both from 1).
fn position(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

#[test]
fn a_nul_byte_in_any_inventory_value_is_an_error_at_its_position() {
    // `@` marks where the value with the NUL byte begins; it is removed before parsing.
    let values = [
        r#"address = @"a\u0000b""#,
        r#"user = @"a\u0000b""#,
        r#"identity_files = ["ok", @"a\u0000b"]"#,
        r#"known_hosts = @"a\u0000b""#,
        r#"password_env = @"A\u0000B""#,
        r#"host_key_policy = @"strict\u0000""#,
        r#"transport = @"ssh\u0000""#,
        r#"connect_timeout = @"10s\u0000""#,
        r#"command_timeout = @"\u00001s""#,
        r#"vars = { x = @"safe\u0000; reboot" }"#,
        r#"vars = { @"x\u0000" = "v" }"#,
    ];
    for value in values {
        for section in ["[defaults]", "[hosts.h1]", "[groups.g]"] {
            let marked = format!("[hosts]\nh0 = {{}}\n{section}\n{value}\n");
            let at = position(&marked, "@");
            let text = marked.replace('@', "");
            let message = err(&text);
            assert!(
                message.starts_with(&format!("hosts.toml:{at}: ")),
                "{section} {value}: {message}"
            );
            assert!(message.contains("NUL byte"), "{section} {value}: {message}");
        }
    }
    // Names: hosts, groups, group members and nested groups.
    for marked in [
        "[hosts]\n@\"web\\u0000\" = {}\n",
        "[hosts]\nh = {}\n[groups.@\"g\\u0000\"]\n",
        "[groups.g]\nhosts = [@\"h\\u0000\"]\n",
        "[hosts]\nh = {}\n[groups.g]\ngroups = [@\"x\\u0000\"]\n",
    ] {
        let at = position(marked, "@");
        let message = err(&marked.replace('@', ""));
        assert!(
            message.starts_with(&format!("hosts.toml:{at}: ")),
            "{marked}: {message}"
        );
        assert!(message.contains("NUL byte"), "{marked}: {message}");
    }
    // A raw NUL byte in the text, wherever it is (in a comment too).
    let text = "# hosts\n[hosts]\nweb1 = { user = \"u\" } # x\n";
    assert_eq!(
        err("# a\0b\n[hosts]\nweb1 = {}\n"),
        "hosts.toml:1:4: the file contains a NUL byte"
    );
    for at in 0..=text.len() {
        let mut bad = text.to_owned();
        bad.insert(at, '\0');
        assert!(err(&bad).starts_with("hosts.toml:"), "{bad:?}");
    }
}

#[test]
fn a_nul_byte_in_a_host_list_or_in_settings_from_a_program_is_an_error() {
    for list in [
        "web\0",
        "us\0er@web1",
        "web1:22\0",
        "web1,\0,web2",
        "[::1\0]:22",
    ] {
        let e = Inventory::from_host_list(list, &HostSettings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{list:?}");
        assert!(e.to_string().contains("NUL byte"), "{list:?}: {e}");
    }
    let mut over = HostSettings::default();
    over.vars.insert("x".into(), "a\0b".into());
    for result in [
        Inventory::from_host_list("web1", &over),
        Inventory::parse("[hosts]\nweb1 = {}\n", "f", &over),
    ] {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "settings: vars.x contains a NUL byte");
    }
}

#[test]
fn a_nul_byte_in_an_inventory_stops_the_cli_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.toml");
    let marker = dir.path().join("ran");
    std::fs::write(
        &path,
        "[hosts]\nhere = { transport = \"local\", vars = { x = \"a\\u0000b\" } }\n",
    )
    .unwrap();
    let command = format!("touch {} {{x}}", marker.display());
    let out = rexec(&["-i", path.to_str().unwrap(), &command]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "rexec: {}:2:44: vars.x contains a NUL byte\n",
            path.display()
        )
    );
    assert!(!marker.exists());
}

#[test]
fn durations_on_the_command_line_never_panic_and_are_bounded() {
    for (bad, why) in [
        (
            "100000000000000000000",
            "longer than the maximum of 365 days",
        ),
        ("1e30", "expected a number of seconds"),
        ("366d", "longer than the maximum of 365 days"),
        (
            "99999999999999999999999h",
            "longer than the maximum of 365 days",
        ),
        ("0", "must be more than zero"),
        ("0ms", "must be more than zero"),
        ("nan", "expected a number of seconds"),
        ("inf", "expected a number of seconds"),
        ("soon", "expected a number of seconds"),
    ] {
        for option in ["-t", "--connect-timeout"] {
            let out = rexec(&["-H", "web1", option, bad, "--list-hosts"]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{option} {bad}: {}",
                stderr(&out)
            );
            let text = stderr(&out);
            assert!(
                text.starts_with(&format!("rexec: invalid duration {bad:?}: {why}")),
                "{option} {bad}: {text}"
            );
        }
    }
    for negative in [
        &["-t", "-5"][..],
        &["--timeout=-5"],
        &["--connect-timeout=-0.5"],
    ] {
        let mut args = vec!["-H", "web1", "--list-hosts"];
        args.extend(negative);
        let out = rexec(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).starts_with("rexec: invalid duration \"-"),
            "{}",
            stderr(&out)
        );
    }
    for good in ["500ms", "10s", "2m", "1h", "1h30m", "1.5", "90", "365d"] {
        let out = rexec(&["-H", "web1", "-t", good, "--list-hosts"]);
        assert_eq!(out.status.code(), Some(0), "{good}: {}", stderr(&out));
    }
}

#[test]
fn durations_in_the_inventory_are_bounded_with_their_position() {
    let timeout = |value: &str| {
        parse(&format!("[hosts]\na = {{ command_timeout = {value} }}\n"))
            .map(|inv| inv.hosts()[0].settings.command_timeout.unwrap())
    };
    assert_eq!(timeout("\"1h30m\"").unwrap(), Duration::from_secs(5400));
    assert_eq!(timeout("1.5").unwrap(), Duration::from_millis(1500));
    assert_eq!(timeout("\"2.5\"").unwrap(), Duration::from_millis(2500));
    assert_eq!(timeout("31536000").unwrap(), MAX_DURATION);
    for (value, why) in [
        (
            "1e30",
            "invalid duration 1000000000000000000000000000000: longer than the maximum of 365 days",
        ),
        (
            "31536001",
            "invalid duration 31536001: longer than the maximum of 365 days",
        ),
        (
            "\"366d\"",
            "invalid duration \"366d\": longer than the maximum of 365 days",
        ),
        ("nan", "invalid duration NaN: expected a number of seconds"),
        (
            "inf",
            "invalid duration inf: longer than the maximum of 365 days",
        ),
        ("-inf", "invalid duration -inf: must be more than zero"),
        ("-1", "invalid duration -1: must be more than zero"),
        ("0", "invalid duration 0: must be more than zero"),
        ("0.0", "invalid duration 0: must be more than zero"),
        (
            "1e-12",
            "invalid duration 0.000000000001: must be more than zero",
        ),
        (
            "true",
            "invalid duration boolean: expected a number of seconds",
        ),
        (
            "[1]",
            "invalid duration array: expected a number of seconds",
        ),
    ] {
        let e = timeout(value).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .starts_with(&format!("hosts.toml:2:25: {why}")),
            "{value}: {e}"
        );
    }
}

fn toml_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_is_a_bounded_duration_or_an_error(text in ".{0,40}") {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(!d.is_zero() && d <= MAX_DURATION, "{text:?} -> {d:?}");
        }
    }

    #[test]
    fn duration_like_strings_are_bounded_or_errors(
        text in "[0-9]{0,30}(\\.[0-9]{0,12})?[ ]?(ns|us|ms|s|m|h|d|w|y|M|x|)([0-9]{0,25}[a-z]{0,3}){0,3}"
    ) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(!d.is_zero() && d <= MAX_DURATION, "{text:?} -> {d:?}");
        }
    }

    #[test]
    fn any_number_in_the_inventory_is_a_bounded_duration_or_an_error(
        f in any::<f64>(),
        i in any::<i64>(),
    ) {
        for value in [toml_float(f), i.to_string()] {
            let text = format!("[hosts]\na = {{ connect_timeout = {value} }}\n");
            match parse(&text) {
                Ok(inv) => {
                    let d = inv.hosts()[0].settings.connect_timeout.unwrap();
                    prop_assert!(!d.is_zero() && d <= MAX_DURATION, "{value} -> {d:?}");
                }
                Err(e) => prop_assert!(
                    e.to_string().starts_with("hosts.toml:2:25: invalid duration"),
                    "{value}: {e}"
                ),
            }
        }
    }

    #[test]
    fn a_nul_byte_anywhere_in_a_host_list_is_an_error(
        items in proptest::collection::vec("(u[a-z]{0,3}@)?[a-z]{1,6}[0-9]{0,3}(:[0-9]{2,4})?", 1..6),
        at in any::<proptest::sample::Index>(),
    ) {
        let mut list = items.join(",");
        list.insert(at.index(list.len() + 1), '\0');
        let e = Inventory::from_host_list(&list, &HostSettings::default()).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn a_range_too_large_is_an_error_before_anything_is_allocated() {
    // Once an abort on a 240 GB allocation.
    let out = rexec(&["-H", "a[1-99999]b[1-99999]", "--list-hosts"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "rexec: host list item \"a[1-99999]b[1-99999]\": invalid host range \
         \"a[1-99999]b[1-99999]\": expands to more than 100000 names (the most one run takes)\n"
    );
    let out = rexec(&["-H", "h[1-100000]", "--list-hosts", "-l", "h[99999-100000]"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "h99999\nh100000\n");
    for (list, message) in [
        (
            "h[1-100001]",
            "expands to more than 100000 names (the most one run takes)",
        ),
        (
            "a[1-50000],b[1-50001]",
            "the host list has more than 100000 hosts (the most one run takes)",
        ),
        (
            "x[1-99999999999999999999999999999999]",
            "expands to more than 100000 names (the most one run takes)",
        ),
    ] {
        let e = Inventory::from_host_list(list, &HostSettings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().ends_with(message), "{list}: {e}");
    }
    assert_eq!(
        Inventory::from_host_list("a[1-50000],b[1-50000]", &HostSettings::default())
            .unwrap()
            .hosts()
            .len(),
        MAX_HOSTS
    );
    // In a file: through [hosts], and through hosts that groups introduce.
    assert_eq!(
        err("[hosts]\n\"a[1-60000]\" = {}\n\"b[1-40001]\" = {}\n"),
        "hosts.toml:3:1: more than 100000 hosts (the most one run takes)"
    );
    assert_eq!(
        err("[hosts]\n\"a[1-60000]\" = {}\n[groups.g]\nhosts = [\"a[1-10]\", \"b[1-40001]\"]\n"),
        "hosts.toml:4:21: more than 100000 hosts (the most one run takes)"
    );
    // A name too long to be a host name, and a range that would make one.
    let long = "a".repeat(256);
    assert!(err(&format!("[hosts]\n{long} = {{}}\n")).contains("longer than 255 characters"));
    assert!(err(&format!("[hosts]\nh = {{ address = \"{long}\" }}\n"))
        .contains("longer than 255 characters"));
    assert!(parse(&format!("[hosts]\n{} = {{}}\n", &long[1..])).is_ok());
    let e = Inventory::from_host_list(
        &format!("{}[1-9]", "a".repeat(255)),
        &HostSettings::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("longer than 255 characters"), "{e}");
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    // A chain of 20,000 nested groups: g0 contains g1 contains ... g19999 holds the host.
    let n = 20_000;
    let mut text = String::from("[hosts]\nh = {}\n");
    for i in 0..n - 1 {
        text.push_str(&format!("[groups.g{i}]\ngroups = [\"g{}\"]\n", i + 1));
    }
    text.push_str(&format!("[groups.g{}]\nhosts = [\"h\"]\n", n - 1));
    let inv = parse(&text).unwrap();
    assert_eq!(inv.hosts()[0].groups.len(), n);
    assert_eq!(inv.select("g0").unwrap().len(), 1);
    // The same chain closed into a cycle.
    let cyclic = text.replace(
        &format!("[groups.g{}]\nhosts = [\"h\"]\n", n - 1),
        &format!("[groups.g{}]\ngroups = [\"g0\"]\n", n - 1),
    );
    let message = err(&cyclic);
    assert!(
        message.starts_with("hosts.toml:3:9: groups contain each other: g0 -> g1 -> "),
        "{}",
        &message[..100]
    );
    assert!(message.ends_with(&format!("g{} -> g0", n - 1)));
    // Deeply nested TOML values and a range with many brackets.
    let deep = format!(
        "[hosts]\na = {{ vars = {{ x = {}{} }} }}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(err(&deep).starts_with("hosts.toml:"));
    let brackets = format!("a{}", "[1]".repeat(100_000));
    assert!(Inventory::from_host_list(&brackets, &HostSettings::default()).is_err());
}
