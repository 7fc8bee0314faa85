//! The inventory: `hosts.toml` (or a `-H` host list) parsed into validated [`Host`]s, with
//! defaults, nested groups, host ranges, per-host and per-group settings and variables.
//! Every error names the file, line and column, and happens before any connection.
//!
//! Hostile or unusual input is an error, never a panic, an injection or a silent loss: a
//! NUL byte anywhere, a duration past [`MAX_DURATION`], more than [`MAX_HOSTS`] hosts, a
//! name longer than [`MAX_NAME_LENGTH`]. Loading, duplicate detection, group resolution
//! and selection take time linear in the input (hash maps, no per-name scans).
//!
//! Where things live: `model` (the host model: [`Host`], [`HostSettings`], [`Origin`],
//! [`Transport`], the limits), `file` (the `hosts.toml` format: parsing and validation),
//! `host_list` (`-H` lists), `pattern` (`-l` selection), `range` (`node[01-12]`),
//! `duration`, `shard`; this file holds [`Inventory`].

mod duration;
mod file;
mod host_list;
mod model;
mod pattern;
pub mod range;
mod shard;

use std::collections::HashMap;
use std::path::Path;

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind, Result};

pub use duration::{parse_duration, MAX_DURATION};
pub use model::{Host, HostSettings, Origin, Transport, MAX_HOSTS, MAX_NAME_LENGTH};
pub use pattern::select;
pub use shard::Shard;

pub(crate) use file::{check_host_name, check_user, parse_port};
use file::{check_overrides, Parser};

/// A validated inventory: hosts in file order and groups with their resolved members.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    hosts: Vec<Host>,
    groups: IndexMap<String, Vec<usize>>,
    /// Host name -> index into `hosts`.
    by_name: HashMap<String, usize>,
}

impl Inventory {
    /// Reads and validates a `hosts.toml` with no command-line overrides:
    /// [`Inventory::from_file`] with default [`HostSettings`].
    ///
    /// # Errors
    /// As [`Inventory::from_file`].
    pub fn load(path: impl AsRef<Path>) -> Result<Inventory> {
        Inventory::from_file(path, &HostSettings::default())
    }

    /// Reads and validates a `hosts.toml`. `overrides` (from the command line) win over
    /// every setting of the file: `[defaults]`, groups and hosts (as `ssh -l USER` wins
    /// over ssh_config's `User`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] with `file:line:column` for any invalid content (a NUL
    /// byte in any value, more than [`MAX_HOSTS`] hosts, a duration past
    /// [`MAX_DURATION`]...), and `file: the inventory has no hosts` for a file without
    /// hosts; [`ErrorKind::LocalIo`] when the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>, overrides: &HostSettings) -> Result<Inventory> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot read inventory {}", path.display()),
            )
            .with_source(e)
        })?;
        Parser::new(&text, &path.display().to_string(), path.parent()).parse(overrides)
    }

    /// Parses inventory text; `file` names it in errors. Relative paths in it are taken
    /// relative to the current directory (from [`Inventory::from_file`]: to the file's
    /// directory).
    ///
    /// # Errors
    /// As [`Inventory::from_file`].
    pub fn parse(text: &str, file: &str, overrides: &HostSettings) -> Result<Inventory> {
        Parser::new(text, file, None).parse(overrides)
    }

    /// An inventory from a comma-separated list like
    /// `web1,web2:2222,deploy@db1,node[1-4],[::1]:2200,10.0.0.5:[2222-2223]`.
    ///
    /// Each item is `[user@]endpoint`; ranges expand (also in the port). A host's name is
    /// the endpoint as written: `web1`, `web2:2222` (its address is then `web2` and its
    /// port 2222), `[::1]:2200` (address `::1`), `::1` for a bare IPv6 address (also when
    /// written `[::1]`). Two items with the same name are a duplicate; the same address
    /// with two ports is two hosts.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid name, address, user or port, a NUL byte,
    /// a duplicate, an empty list, or more than [`MAX_HOSTS`] hosts.
    pub fn from_host_list(list: &str, overrides: &HostSettings) -> Result<Inventory> {
        check_overrides(overrides)?;
        host_list::parse(list, overrides)
    }

    /// All hosts, in inventory order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Group names with their members' indexes into [`Inventory::hosts`].
    pub fn groups(&self) -> &IndexMap<String, Vec<usize>> {
        &self.groups
    }

    /// The index into [`Inventory::hosts`] of the host called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The hosts matching `pattern` (see [`select`]), in inventory order.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the pattern is invalid or a part of it matches
    /// nothing.
    pub fn select(&self, pattern: &str) -> Result<Vec<&Host>> {
        select(self, pattern)
    }

    /// Adds a host whose name is not yet taken (callers check).
    fn push(&mut self, host: Host) {
        self.by_name.insert(host.name.clone(), self.hosts.len());
        self.hosts.push(host);
    }
}

#[cfg(test)]
mod tests {
    use super::{HostSettings, Inventory, Origin, Parser};

    /// Every setting read from the file names it through one shared string (10,000 hosts
    /// times a few settings each made as many copies), and a range key's settings reach
    /// every host of the range (they are moved out after the last one).
    #[test]
    fn origins_share_the_file_name_and_ranges_share_settings() {
        let text =
            "[defaults]\nuser = \"u\"\n[hosts]\n\"n[1-3]\" = { port = 2 }\nm = { port = 3 }\n";
        let inventory = Inventory::parse(text, "f.toml", &HostSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut files = Vec::new();
        for host in inventory.hosts() {
            for origin in host.settings.origins.values() {
                match origin {
                    Origin::Inventory { file, .. } => files.push(file.clone()),
                    other => panic!("{other}"),
                }
            }
        }
        assert_eq!(files.len(), 8);
        assert!(files.iter().all(|f| std::sync::Arc::ptr_eq(f, &files[0])));
        assert_eq!(&*files[0], "f.toml");
        let ports: Vec<(String, u16, Option<String>)> = inventory
            .hosts()
            .iter()
            .map(|h| (h.name.clone(), h.port(), h.settings.user.clone()))
            .collect();
        let u = Some("u".to_owned());
        assert_eq!(
            ports,
            [
                ("n1".to_owned(), 2, u.clone()),
                ("n2".to_owned(), 2, u.clone()),
                ("n3".to_owned(), 2, u.clone()),
                ("m".to_owned(), 3, u)
            ]
        );
        assert_eq!(
            inventory.hosts()[2]
                .settings
                .origins
                .get("port")
                .map(ToString::to_string),
            Some("inventory f.toml:4".to_owned())
        );
    }

    /// The indexed line and column are those of counting newlines from the start.
    #[test]
    fn positions_match_counting_from_the_start() {
        let text = "[hosts]\n\na = { port = 1 }\r\nb = {}\nlast line without newline é x";
        let parser = Parser::new(text, "f.toml", None);
        for offset in 0..=text.len() + 3 {
            let before = text.get(..offset).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before
                .rfind('\n')
                .map_or(before.len(), |i| before.len() - i - 1)
                + 1;
            if text.is_char_boundary(offset.min(text.len())) {
                assert_eq!(parser.line_of(offset.min(text.len())), line, "{offset}");
                assert_eq!(
                    parser.at(offset..offset),
                    format!("f.toml:{line}:{col}"),
                    "{offset}"
                );
            }
        }
    }
}
