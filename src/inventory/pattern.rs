//! Host selection patterns, as in Ansible: terms separated by `,` or `:`; a plain term
//! adds hosts, `!term` removes them, `&term` keeps only hosts also in it. A term is `all`
//! (or `*`), a group, a host, a glob over host and group names (`web*`, `db?`), a range
//! (`web[01-05]`), or `@FILE` (one term per line, as written by `--failed-hosts`).

use crate::error::{Error, ErrorKind, Result};
use crate::glob::glob_match;
use crate::inventory::{range, Host, Inventory};

/// The hosts of `inventory` matching `pattern`, in inventory order.
///
/// Unions are taken first, then intersections, then exclusions, whatever their order
/// in the pattern (as Ansible does). A pattern with only exclusions or intersections
/// starts from all hosts.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when a term matches nothing, a range names hosts that are
/// not in the inventory, an `@FILE` cannot be read, or the result is empty.
pub fn select<'a>(inventory: &'a Inventory, pattern: &str) -> Result<Vec<&'a Host>> {
    let terms = split_terms(pattern)?;
    if terms.is_empty() {
        return Err(invalid(format!("empty host pattern {pattern:?}")));
    }
    let n = inventory.hosts().len();
    let mut union = vec![false; n];
    let mut any_union = false;
    let mut intersections: Vec<Vec<bool>> = Vec::new();
    let mut exclusions: Vec<Vec<bool>> = Vec::new();
    for term in &terms {
        let (op, body) = match term.chars().next() {
            Some('!') => ('!', &term[1..]),
            Some('&') => ('&', &term[1..]),
            _ => ('+', term.as_str()),
        };
        let set = match_term(inventory, body)?;
        if !set.iter().any(|b| *b) {
            return Err(invalid(format!(
                "host pattern {term:?} matches no host in the inventory"
            )));
        }
        match op {
            '!' => exclusions.push(set),
            '&' => intersections.push(set),
            _ => {
                any_union = true;
                for (u, s) in union.iter_mut().zip(set) {
                    *u |= s;
                }
            }
        }
    }
    if !any_union {
        union.iter_mut().for_each(|u| *u = true);
    }
    for set in intersections {
        for (u, s) in union.iter_mut().zip(set) {
            *u &= s;
        }
    }
    for set in exclusions {
        for (u, s) in union.iter_mut().zip(set) {
            *u &= !s;
        }
    }
    let selected: Vec<&Host> = inventory
        .hosts()
        .iter()
        .zip(&union)
        .filter_map(|(h, keep)| keep.then_some(h))
        .collect();
    if selected.is_empty() {
        return Err(invalid(format!("host pattern {pattern:?} selects no host")));
    }
    Ok(selected)
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

/// Splits at `,` and `:` outside brackets; expands `@FILE` terms.
fn split_terms(pattern: &str) -> Result<Vec<String>> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in pattern.chars() {
        match c {
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' | ':' if depth == 0 => terms.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    terms.push(current);
    let mut out = Vec::new();
    for term in terms.into_iter().map(|t| t.trim().to_owned()) {
        if term.is_empty() {
            continue;
        }
        let (prefix, body) = match term.chars().next() {
            Some(c @ ('!' | '&')) => (c.to_string(), term[1..].to_owned()),
            _ => (String::new(), term.clone()),
        };
        if let Some(file) = body.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::new(ErrorKind::LocalIo, format!("cannot read host file {file}"))
                    .with_source(e)
            })?;
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if lines.is_empty() {
                return Err(invalid(format!("host file {file} lists no host")));
            }
            for line in lines {
                for t in split_terms(line)? {
                    out.push(format!("{prefix}{t}"));
                }
            }
        } else {
            out.push(term);
        }
    }
    Ok(out)
}

fn match_term(inventory: &Inventory, term: &str) -> Result<Vec<bool>> {
    let hosts = inventory.hosts();
    let mut set = vec![false; hosts.len()];
    if term == "all" || term == "*" {
        set.iter_mut().for_each(|s| *s = true);
        return Ok(set);
    }
    if let Some(members) = inventory.groups().get(term) {
        for &m in members {
            if let Some(s) = set.get_mut(m) {
                *s = true;
            }
        }
        return Ok(set);
    }
    if term.contains('*') || term.contains('?') {
        for (s, h) in set.iter_mut().zip(hosts) {
            *s = glob_match(term, &h.name);
        }
        for (group, members) in inventory.groups() {
            if glob_match(term, group) {
                for &m in members {
                    if let Some(s) = set.get_mut(m) {
                        *s = true;
                    }
                }
            }
        }
        return Ok(set);
    }
    if range::is_range(term) {
        let mut missing = Vec::new();
        for name in range::expand(term)? {
            match hosts.iter().position(|h| h.name == name) {
                Some(i) => {
                    if let Some(s) = set.get_mut(i) {
                        *s = true;
                    }
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(invalid(format!(
                "host pattern {term:?}: not in the inventory: {}",
                range::fold(&missing)
            )));
        }
        return Ok(set);
    }
    for (s, h) in set.iter_mut().zip(hosts) {
        *s = h.name == term;
    }
    Ok(set)
}
