//! `-H` host lists: `web1,web2:2222,deploy@db1,node[1-4],[::1]:2200` into an [`Inventory`].
//!
//! A host's name is the item as written minus `user@`: `web1`, `web2:2222`, `[::1]:2200`,
//! and `::1` for a bare IPv6 address. Names are what every output shows and what `-l`
//! selects, so two ports on one address are two hosts.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{
    check_host_name, check_user, parse_port, range, Host, HostSettings, Inventory, Origin,
    MAX_HOSTS,
};

/// Where one expanded item connects, and what it is called.
#[derive(Debug, PartialEq)]
struct Endpoint {
    name: String,
    /// `None`: the name is the address.
    address: Option<String>,
    port: Option<u16>,
}

pub(super) fn parse(list: &str, overrides: &HostSettings) -> Result<Inventory> {
    let mut inventory = Inventory::default();
    let mut names: HashMap<String, &str> = HashMap::new();
    for item in split_items(list) {
        let bad = |why: String| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("host list item {item:?}: {why}"),
            )
        };
        if item.contains('\0') {
            return Err(bad("contains a NUL byte".to_owned()));
        }
        let (user, rest) = match item.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, item),
        };
        let mut settings = overrides.clone();
        if let Some(u) = user {
            check_user(u).map_err(bad)?;
            settings.user = Some(u.to_owned());
            settings.origins.insert("user", Origin::HostList);
        }
        let expanded = range::expand(rest).map_err(|e| bad(e.message().to_owned()))?;
        for text in expanded {
            let endpoint = endpoint(&text).map_err(bad)?;
            if let Some(first) = names.get(&endpoint.name) {
                return Err(bad(format!(
                    "host {:?} is listed twice (first in {first:?})",
                    endpoint.name
                )));
            }
            if inventory.hosts.len() >= MAX_HOSTS {
                return Err(bad(format!(
                    "the host list has more than {MAX_HOSTS} hosts (the most one run takes)"
                )));
            }
            names.insert(endpoint.name.clone(), item);
            let mut settings = settings.clone();
            if endpoint.address.is_some() {
                settings.address = endpoint.address;
                settings.origins.insert("address", Origin::HostList);
            }
            if endpoint.port.is_some() {
                settings.port = endpoint.port;
                settings.origins.insert("port", Origin::HostList);
            }
            inventory.push(Host {
                name: endpoint.name,
                groups: Vec::new(),
                settings,
                ssh_config: None,
            });
        }
    }
    if inventory.hosts.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the host list is empty",
        ));
    }
    Ok(inventory)
}

/// The items of a list: split at commas outside brackets (`db[1-3,7]` is one item),
/// trimmed, empty ones dropped.
fn split_items(list: &str) -> impl Iterator<Item = &str> {
    range::split_outside_brackets(list, ',')
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn endpoint(text: &str) -> std::result::Result<Endpoint, String> {
    if let Some(inner) = text.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: missing ]"))?;
        check_v6(v6)?;
        if after.is_empty() {
            return Ok(Endpoint {
                name: v6.to_owned(),
                address: None,
                port: None,
            });
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{text:?}: expected :PORT after ]"))?;
        return Ok(Endpoint {
            name: text.to_owned(),
            address: Some(v6.to_owned()),
            port: Some(parse_port(port)?),
        });
    }
    match text.matches(':').count() {
        0 => {
            check_host_name(text)?;
            Ok(Endpoint {
                name: text.to_owned(),
                address: None,
                port: None,
            })
        }
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            check_host_name(host)?;
            Ok(Endpoint {
                name: text.to_owned(),
                address: Some(host.to_owned()),
                port: Some(parse_port(port)?),
            })
        }
        _ => {
            check_v6(text).map_err(|e| {
                format!("{e} (an address with a port is written host:PORT or [IPv6]:PORT)")
            })?;
            Ok(Endpoint {
                name: text.to_owned(),
                address: None,
                port: None,
            })
        }
    }
}

fn check_v6(text: &str) -> std::result::Result<(), String> {
    text.parse::<Ipv6Addr>()
        .map(drop)
        .map_err(|_| format!("{text:?} is not an IPv6 address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, address: Option<&str>, port: Option<u16>) -> Endpoint {
        Endpoint {
            name: name.to_owned(),
            address: address.map(str::to_owned),
            port,
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("web1").unwrap(), ep("web1", None, None));
        assert_eq!(
            endpoint("web1:2222").unwrap(),
            ep("web1:2222", Some("web1"), Some(2222))
        );
        assert_eq!(
            endpoint("10.0.0.5:22").unwrap(),
            ep("10.0.0.5:22", Some("10.0.0.5"), Some(22))
        );
        assert_eq!(endpoint("::1").unwrap(), ep("::1", None, None));
        assert_eq!(endpoint("[::1]").unwrap(), ep("::1", None, None));
        assert_eq!(
            endpoint("[::1]:2222").unwrap(),
            ep("[::1]:2222", Some("::1"), Some(2222))
        );
        assert_eq!(
            endpoint("0:0:0:0:0:0:0:1").unwrap(),
            ep("0:0:0:0:0:0:0:1", None, None)
        );
        for bad in [
            "a:b:c",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:0",
            "[nope:]:22",
            "web1:",
            ":22",
            "web1:x",
            "fe80::1%lo",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    /// Name, address, port and user of a parsed host.
    type Parsed = (String, Option<String>, Option<u16>, Option<String>);

    fn hosts(list: &str) -> Vec<Parsed> {
        parse(list, &HostSettings::default())
            .unwrap_or_else(|e| panic!("{list:?}: {e}"))
            .hosts()
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.settings.address.clone(),
                    h.settings.port,
                    h.settings.user.clone(),
                )
            })
            .collect()
    }

    fn host(name: &str, address: Option<&str>, port: Option<u16>, user: Option<&str>) -> Parsed {
        (
            name.to_owned(),
            address.map(str::to_owned),
            port,
            user.map(str::to_owned),
        )
    }

    fn error(list: &str) -> String {
        let e = parse(list, &HostSettings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{list:?}");
        e.to_string()
    }

    #[test]
    fn items_users_and_whitespace() {
        assert_eq!(
            hosts(" web1 ,web2:2222,\tdeploy@db1\n"),
            [
                host("web1", None, None, None),
                host("web2:2222", Some("web2"), Some(2222), None),
                host("db1", None, None, Some("deploy")),
            ]
        );
        assert_eq!(
            hosts("root@[::1]:2222,ops@::1"),
            [
                host("[::1]:2222", Some("::1"), Some(2222), Some("root")),
                host("::1", None, None, Some("ops")),
            ]
        );
        // Empty items between commas are dropped.
        assert_eq!(
            hosts(",a,,b,"),
            [host("a", None, None, None), host("b", None, None, None)]
        );
        for bad in ["web 1", "web1;reboot", "-oProxyCommand=x", "web1/x", "é"] {
            assert!(
                error(bad).contains(&format!("{bad:?}")),
                "{bad}: {}",
                error(bad)
            );
        }
        assert!(
            error("@web1").contains("user name is empty"),
            "{}",
            error("@web1")
        );
        assert!(
            error("deploy@").contains("host name is empty"),
            "{}",
            error("deploy@")
        );
        assert!(error("web1\0").contains("NUL"), "{}", error("web1\0"));
        assert!(error(&"a".repeat(256)).contains("longer than 255"));
        assert_eq!(hosts(&"a".repeat(255))[0].0.len(), 255);
    }

    #[test]
    fn the_host_list_user_wins_and_is_marked() {
        let overrides = HostSettings {
            user: Some("cli".to_owned()),
            port: Some(2200),
            ..HostSettings::default()
        };
        let inventory = parse("deploy@web1:22,web2,::1", &overrides).unwrap();
        let [a, b, c] = inventory.hosts() else {
            panic!("three hosts")
        };
        assert_eq!(a.settings.user.as_deref(), Some("deploy"));
        assert_eq!(a.settings.origins.get("user"), Some(&Origin::HostList));
        assert_eq!(a.settings.port, Some(22));
        assert_eq!(a.settings.origins.get("port"), Some(&Origin::HostList));
        assert_eq!(b.settings.user.as_deref(), Some("cli"));
        assert_eq!(b.settings.origins.get("user"), None);
        assert_eq!(b.settings.port, Some(2200));
        assert_eq!(c.settings.port, Some(2200));
        assert_eq!(c.settings.address, None);
    }

    #[test]
    fn empty_lists() {
        for empty in ["", " ", ",", " , ,\t", "\n"] {
            assert!(error(empty).contains("the host list is empty"), "{empty:?}");
        }
    }

    #[test]
    fn ranges_in_names_and_ports() {
        assert_eq!(
            hosts("node[1-3]"),
            [
                host("node1", None, None, None),
                host("node2", None, None, None),
                host("node3", None, None, None),
            ]
        );
        // A comma inside a range does not separate items.
        let names: Vec<String> = hosts("db[1-2,7],x").into_iter().map(|h| h.0).collect();
        assert_eq!(names, ["db1", "db2", "db7", "x"]);
        assert_eq!(
            hosts("10.0.0.5:[2222-2223]"),
            [
                host("10.0.0.5:2222", Some("10.0.0.5"), Some(2222), None),
                host("10.0.0.5:2223", Some("10.0.0.5"), Some(2223), None),
            ]
        );
        assert_eq!(
            hosts("[::1]:[2200-2201]"),
            [
                host("[::1]:2200", Some("::1"), Some(2200), None),
                host("[::1]:2201", Some("::1"), Some(2201), None),
            ]
        );
        // The first bracket varies slowest; user@ applies to every expanded host.
        assert_eq!(
            hosts("u@h[1-2]:[22-23]"),
            [
                host("h1:22", Some("h1"), Some(22), Some("u")),
                host("h1:23", Some("h1"), Some(23), Some("u")),
                host("h2:22", Some("h2"), Some(22), Some("u")),
                host("h2:23", Some("h2"), Some(23), Some("u")),
            ]
        );
        assert_eq!(
            hosts("h:[08-09]")[1],
            host("h:09", Some("h"), Some(9), None)
        );
        for bad in [
            "web1:[0-1]",
            "web1:[65535-65536]",
            "h[3-1]",
            "h[1-",
            "h[]",
            "h[a-b]",
        ] {
            let e = error(bad);
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(
            error("web1:[0-1]").contains("port \"0\""),
            "{}",
            error("web1:[0-1]")
        );
        assert!(error("h[1-200000]").contains("host list item"));
    }

    #[test]
    fn ports() {
        assert_eq!(hosts("h:1")[0].2, Some(1));
        assert_eq!(hosts("h:65535")[0].2, Some(65535));
        assert_eq!(hosts("h:022")[0].2, Some(22));
        for bad in ["h:0", "h:65536", "h:-1", "h: 22", "h:4294967318"] {
            assert!(error(bad).contains("port"), "{bad}: {}", error(bad));
        }
    }

    #[test]
    fn ipv6_with_and_without_brackets() {
        assert_eq!(
            hosts("2001:db8::1"),
            [host("2001:db8::1", None, None, None)]
        );
        assert_eq!(
            hosts("[2001:db8::1]"),
            [host("2001:db8::1", None, None, None)]
        );
        assert_eq!(
            hosts("[2001:db8::1]:2222"),
            [host(
                "[2001:db8::1]:2222",
                Some("2001:db8::1"),
                Some(2222),
                None
            )]
        );
        assert_eq!(hosts("::ffff:10.0.0.1")[0].0, "::ffff:10.0.0.1");
        for bad in [
            "[::1]:22:33",
            "[web1]:22",
            "[::1]]",
            "2001:db8::1:22:",
            "fe80::1%eth0",
            "[fe80::1%eth0]:22",
            "::1:::2",
        ] {
            let e = error(bad);
            assert!(e.contains("host list item"), "{bad}: {e}");
        }
        assert!(error("a:b:c").contains("[IPv6]:PORT"), "{}", error("a:b:c"));
    }

    #[test]
    fn duplicates_are_named() {
        for (list, name) in [
            ("web1,web1", "web1"),
            ("::1,[::1]", "::1"),
            ("a@web1,b@web1", "web1"),
            ("node[1-3],node2", "node2"),
            ("h:[22-23],h:22", "h:22"),
            ("[::1]:22,[::1]:[21-23]", "[::1]:22"),
        ] {
            let e = error(list);
            assert!(
                e.contains(&format!("host {name:?} is listed twice")),
                "{list}: {e}"
            );
        }
        // Different names for one address are different hosts.
        assert_eq!(hosts("web1,web1:22").len(), 2);
        assert_eq!(hosts("::1,[::1]:22,0:0:0:0:0:0:0:1").len(), 3);
    }
}
