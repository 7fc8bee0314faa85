//! Host selection patterns, as in Ansible: terms separated by `,` or `:`; a plain term
//! adds hosts, `!term` removes them, `&term` keeps only hosts also in it. A term is `all`
//! (or `*`), a group, a host, a glob over host and group names (`web*`, `db?`), a range
//! (`web[01-05]`), or `@FILE` (one term per line, as written by `--failed-hosts`).
//!
//! Names may hold `:` (`web1:2222`, `[::1]:2222`, `::1`): a run of `:`-separated pieces
//! that is exactly a host name, a range naming existing hosts (`10.0.0.5:[2222-2223]`),
//! or an IPv6 address is one term; only otherwise does `:` separate terms.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use crate::error::{Error, ErrorKind, Result};
use crate::glob::glob_match;
use crate::inventory::{range, Host, Inventory};

/// The most `:` an IPv6 address holds (`1:2:3:4:5:6:7::`).
const IPV6_COLONS: usize = 8;

/// The hosts of `inventory` matching `pattern`, in inventory order.
///
/// Terms are separated by `,` (always) and by `:` (unless the pieces around it form one
/// host name, a range of existing names, or an IPv6 address: `web1:2222`,
/// `[::1]:[2222-2223]` and `0:0:0:0:0:0:0:1` are single terms; `web:!web03` is two).
/// Unions are taken first, then intersections, then exclusions, whatever their order in
/// the pattern (as Ansible does). A pattern with only exclusions or intersections starts
/// from all hosts. In `@FILE`, each line is read the same way (a line that is a host
/// name is that host); a line of the file is not itself read as `@FILE`.
///
/// Time is linear in the size of the pattern, its files and the inventory (globs
/// excepted: each glob term is matched against every name).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when the inventory is empty, a term matches nothing, a
/// range names hosts that are not in the inventory, an `@FILE` lists nothing, or the
/// result is empty; [`ErrorKind::LocalIo`] when an `@FILE` cannot be read.
pub fn select<'a>(inventory: &'a Inventory, pattern: &str) -> Result<Vec<&'a Host>> {
    let hosts = inventory.hosts();
    if hosts.is_empty() {
        return Err(invalid("the inventory has no hosts".to_owned()));
    }
    let splitter = Splitter::new(inventory);
    let mut terms = Vec::new();
    splitter.split(pattern, None, &mut terms)?;
    if terms.is_empty() {
        return Err(invalid(format!("empty host pattern {pattern:?}")));
    }
    let n = hosts.len();
    let mut union = vec![false; n];
    let mut any_union = false;
    let mut excluded = vec![false; n];
    // For intersections: how many `&` terms matched each host (each term counted once).
    let mut hits = vec![0usize; n];
    let mut last_hit = vec![0usize; n];
    let mut intersections = 0usize;
    let mut seen = HashSet::new();
    for term in &terms {
        if !seen.insert(term.as_str()) {
            continue;
        }
        let (op, body) = split_op(term);
        let matched = match_term(inventory, body)?;
        if matched.is_empty() {
            return Err(invalid(format!(
                "host pattern {term:?} matches no host in the inventory"
            )));
        }
        match op {
            Some('!') => mark(&mut excluded, &matched),
            Some(_) => {
                intersections += 1;
                for &i in &matched {
                    if let (Some(last), Some(count)) = (last_hit.get_mut(i), hits.get_mut(i)) {
                        if *last != intersections {
                            *last = intersections;
                            *count += 1;
                        }
                    }
                }
            }
            None => {
                any_union = true;
                mark(&mut union, &matched);
            }
        }
    }
    let selected: Vec<&Host> = hosts
        .iter()
        .zip(union.iter().zip(excluded.iter().zip(&hits)))
        .filter(|(_, (u, (x, h)))| (**u || !any_union) && !**x && **h == intersections)
        .map(|(host, _)| host)
        .collect();
    if selected.is_empty() {
        return Err(invalid(format!("host pattern {pattern:?} selects no host")));
    }
    Ok(selected)
}

fn mark(set: &mut [bool], indexes: &[usize]) {
    for &i in indexes {
        if let Some(s) = set.get_mut(i) {
            *s = true;
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

/// `!x` -> (Some('!'), "x"), `&x` -> (Some('&'), "x"), `x` -> (None, "x").
fn split_op(term: &str) -> (Option<char>, &str) {
    match term.strip_prefix('!') {
        Some(body) => (Some('!'), body),
        None => match term.strip_prefix('&') {
            Some(body) => (Some('&'), body),
            None => (None, term),
        },
    }
}

/// Splits patterns into terms, knowing the inventory's names.
struct Splitter<'a> {
    inventory: &'a Inventory,
    /// The most `:`-separated pieces one term can have.
    longest: usize,
    /// Whether any host name holds a `:` (else no joined range can name a host, and
    /// none is expanded to find out).
    colon_names: bool,
}

impl<'a> Splitter<'a> {
    fn new(inventory: &'a Inventory) -> Self {
        let name_colons = inventory
            .hosts()
            .iter()
            .map(|h| colons_outside_brackets(&h.name))
            .max()
            .unwrap_or(0);
        Splitter {
            inventory,
            longest: name_colons.max(IPV6_COLONS) + 1,
            colon_names: name_colons > 0,
        }
    }

    /// Appends the terms of `pattern` to `out`; `@FILE` terms are read unless `pattern`
    /// is itself a line of the file `from`.
    fn split(&self, pattern: &str, from: Option<&str>, out: &mut Vec<String>) -> Result<()> {
        for piece in range::split_outside_brackets(pattern, ',') {
            let segments = range::split_outside_brackets(piece, ':');
            let mut i = 0;
            while i < segments.len() {
                let rest = segments.get(i..).unwrap_or_default();
                let take = (2..=rest.len().min(self.longest))
                    .rev()
                    .find(|&len| self.is_one_term(&rest.get(..len).unwrap_or_default().join(":")))
                    .unwrap_or(1);
                let term = rest.get(..take).unwrap_or_default().join(":");
                i += take;
                let term = term.trim();
                if term.is_empty() {
                    continue;
                }
                let (op, body) = split_op(term);
                match (body.strip_prefix('@'), from) {
                    (Some(_), Some(file)) => {
                        return Err(invalid(format!(
                            "host file {file}: {term:?}: a host file cannot name another"
                        )))
                    }
                    (Some(file), None) => self.read_file(file, op, out)?,
                    (None, _) => out.push(term.to_owned()),
                }
            }
        }
        Ok(())
    }

    fn read_file(&self, file: &str, op: Option<char>, out: &mut Vec<String>) -> Result<()> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::new(ErrorKind::LocalIo, format!("cannot read host file {file}")).with_source(e)
        })?;
        let mut terms = Vec::new();
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                self.split(line, Some(file), &mut terms)?;
            }
        }
        if terms.is_empty() {
            return Err(invalid(format!("host file {file} lists no host")));
        }
        match op {
            Some(op) => out.extend(terms.into_iter().map(|t| format!("{op}{t}"))),
            None => out.extend(terms),
        }
        Ok(())
    }

    /// Whether `candidate` (several `:`-separated pieces) is one term: a host name, a
    /// range naming at least one existing host (the rest are reported missing), or an
    /// IPv6 address with or without a port.
    fn is_one_term(&self, candidate: &str) -> bool {
        let (_, body) = split_op(candidate.trim());
        if body.starts_with('@') || body.contains(['!', '&', '@']) {
            return false;
        }
        if self.inventory.position(body).is_some() {
            return true;
        }
        // `host:PORT` for a port that is not in the inventory: one term, reported as such.
        if let Some((host, port)) = body.split_once(':') {
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.contains('[')
                && !self.inventory.groups().contains_key(host)
            {
                return true;
            }
        }
        if self.colon_names && range::is_range(body) {
            return range::expand(body)
                .is_ok_and(|names| names.iter().any(|n| self.inventory.position(n).is_some()));
        }
        body.parse::<Ipv6Addr>().is_ok()
            || body
                .strip_prefix('[')
                .and_then(|inner| inner.split_once(']'))
                .is_some_and(|(v6, _)| v6.contains(':'))
    }
}

fn colons_outside_brackets(name: &str) -> usize {
    range::split_outside_brackets(name, ':').len() - 1
}

/// The indexes of the hosts `term` (without its `!`/`&`) names; empty when none.
fn match_term(inventory: &Inventory, term: &str) -> Result<Vec<usize>> {
    let hosts = inventory.hosts();
    if term == "all" || term == "*" {
        return Ok((0..hosts.len()).collect());
    }
    if let Some(members) = inventory.groups().get(term) {
        return Ok(members.clone());
    }
    if let Some(i) = inventory.position(term) {
        return Ok(vec![i]);
    }
    if term.contains(['*', '?']) {
        let mut matched: Vec<usize> = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| glob_match(term, &h.name))
            .map(|(i, _)| i)
            .collect();
        for (group, members) in inventory.groups() {
            if glob_match(term, group) {
                matched.extend(members);
            }
        }
        return Ok(matched);
    }
    if range::is_range(term) {
        let mut matched = Vec::new();
        let mut missing = Vec::new();
        for name in range::expand(term)? {
            match inventory.position(&name) {
                Some(i) => matched.push(i),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(invalid(format!(
                "host pattern {term:?}: not in the inventory: {}",
                range::fold(&missing)
            )));
        }
        return Ok(matched);
    }
    Ok(Vec::new())
}
