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
}
