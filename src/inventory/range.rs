//! Host ranges: `web[01-20]`, `db[1-3,7]`, `rack[1-2]-node[01-04]` expand to names; and the
//! reverse, folding a list of names into that form for display (`web[01-12,15]`).

use crate::error::{Error, ErrorKind, Result};

/// The most names one range expression may produce; a typo like `[1-99999999]` is caught.
pub const MAX_EXPANSION: usize = 100_000;

/// Whether `pattern` contains a `[...]` range.
pub fn is_range(pattern: &str) -> bool {
    pattern.contains('[')
}

/// Expands every `[a-b,c]` part of `pattern`, in order. A pattern without brackets is
/// returned as is. Numbers keep the zero padding of the range's start (`[01-10]`).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for an unclosed bracket, an empty or reversed range, a
/// non-numeric bound, or more than [`MAX_EXPANSION`] names.
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid host range {pattern:?}: {why}"),
        )
    };
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| bad("missing ]"))?;
    let (prefix, body, rest) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if body.is_empty() {
        return Err(bad("empty []"));
    }
    let mut items = Vec::new();
    for part in body.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let num = |s: &str| {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
                Err(bad(&format!(
                    "{part:?} is not a number or a range of numbers"
                )))
            } else {
                s.parse::<u64>().map_err(|_| bad("number too large"))
            }
        };
        let (a, b) = (num(lo)?, num(hi)?);
        if a > b {
            return Err(bad(&format!("{part:?} runs backwards")));
        }
        if b - a >= MAX_EXPANSION as u64 {
            return Err(bad("expands to too many names"));
        }
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        for n in a..=b {
            items.push(format!("{n:0width$}"));
            if items.len() > MAX_EXPANSION {
                return Err(bad("expands to too many names"));
            }
        }
    }
    let tails = expand(rest)?;
    let mut out = Vec::with_capacity(items.len() * tails.len());
    for item in &items {
        for tail in &tails {
            out.push(format!("{prefix}{item}{tail}"));
            if out.len() > MAX_EXPANSION {
                return Err(bad("expands to too many names"));
            }
        }
    }
    Ok(out)
}

/// Folds names into range form, keeping first-appearance order of the groups:
/// `["web01","web02","web03","web07","db1"]` becomes `"web[01-03,07],db1"`. Numbers as
/// wide as a zero-padded one (`web10` beside `web01`) join its padded group.
pub fn fold(names: &[String]) -> String {
    // Names split at their last number, grouped by (prefix, suffix) in first-seen order.
    let mut families: Vec<((&str, &str), Vec<&str>)> = Vec::new();
    // Names without digits, with the number of families seen before them.
    let mut plain: Vec<(usize, &str)> = Vec::new();
    for name in names {
        match split_number(name) {
            Some((prefix, digits, suffix)) => {
                match families.iter_mut().find(|(k, _)| *k == (prefix, suffix)) {
                    Some((_, members)) => members.push(digits),
                    None => families.push(((prefix, suffix), vec![digits])),
                }
            }
            None => plain.push((families.len(), name)),
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut plain_iter = plain.into_iter().peekable();
    for (index, ((prefix, suffix), members)) in families.into_iter().enumerate() {
        while let Some((_, name)) = plain_iter.next_if(|(at, _)| *at <= index) {
            parts.push(name.to_owned());
        }
        let padded_widths: Vec<usize> = members
            .iter()
            .filter(|d| d.len() > 1 && d.starts_with('0'))
            .map(|d| d.len())
            .collect();
        // (width, numbers): width 0 means unpadded.
        let mut groups: Vec<(usize, Vec<u64>)> = Vec::new();
        for digits in members {
            let width = if padded_widths.contains(&digits.len()) {
                digits.len()
            } else {
                0
            };
            let n = digits.parse::<u64>().unwrap_or(0);
            match groups.iter_mut().find(|(w, _)| *w == width) {
                Some((_, nums)) => nums.push(n),
                None => groups.push((width, vec![n])),
            }
        }
        for (width, nums) in groups {
            parts.push(fold_numbers(prefix, suffix, width, nums));
        }
    }
    parts.extend(plain_iter.map(|(_, name)| name.to_owned()));
    parts.join(",")
}

fn fold_numbers(prefix: &str, suffix: &str, width: usize, mut nums: Vec<u64>) -> String {
    nums.sort_unstable();
    nums.dedup();
    // Runs of consecutive numbers, as (start, end).
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for n in nums {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => runs.push((n, n)),
        }
    }
    if let [(single, end)] = runs.as_slice() {
        if single == end {
            return format!("{prefix}{single:0width$}{suffix}");
        }
    }
    let spans: Vec<String> = runs
        .iter()
        .map(|&(start, end)| {
            if start == end {
                format!("{start:0width$}")
            } else {
                format!("{start:0width$}-{end:0width$}")
            }
        })
        .collect();
    format!("{prefix}[{}]{suffix}", spans.join(","))
}

/// Splits at the last run of digits: `web01.dc1` is ("web01.dc", "1", "")... the last run.
fn split_number(name: &str) -> Option<(&str, &str, &str)> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = name[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    Some((&name[..start], &name[start..end], &name[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn expands_padded_lists_and_products() {
        assert_eq!(
            expand("web[01-03]").unwrap(),
            s(&["web01", "web02", "web03"])
        );
        assert_eq!(
            expand("db[1-3,7]").unwrap(),
            s(&["db1", "db2", "db3", "db7"])
        );
        assert_eq!(
            expand("r[1-2]n[08-09].x").unwrap(),
            s(&["r1n08.x", "r1n09.x", "r2n08.x", "r2n09.x"])
        );
        assert_eq!(expand("plain").unwrap(), s(&["plain"]));
        assert_eq!(
            expand("127.0.0.[2-3]").unwrap(),
            s(&["127.0.0.2", "127.0.0.3"])
        );
    }

    #[test]
    fn rejects_bad_ranges() {
        for bad in [
            "web[",
            "web[]",
            "web[3-1]",
            "web[a-b]",
            "web[1-999999999]",
            "w[1-]",
        ] {
            assert_eq!(
                expand(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn folds_back() {
        let names = s(&["web01", "web02", "web03", "web07", "db1", "lb", "web12"]);
        assert_eq!(fold(&names), "web[01-03,07,12],db1,lb");
        assert_eq!(fold(&s(&["a1", "a2"])), "a[1-2]");
        assert_eq!(fold(&s(&["127.0.0.2", "127.0.0.3"])), "127.0.0.[2-3]");
        assert_eq!(fold(&s(&["x"])), "x");
        let expanded = expand("n[01-20]").unwrap();
        assert_eq!(fold(&expanded), "n[01-20]");
        assert_eq!(fold(&expand("n[1-12]").unwrap()), "n[1-12]");
        assert_eq!(fold(&s(&["n01", "n10", "n1", "n100"])), "n[01,10],n[1,100]");
    }
}
