//! Host ranges: `web[01-20]`, `db[1-3,7]`, `rack[1-2]-node[01-04]` expand to names; and the
//! reverse, folding a list of names into that form for display (`web[01-12,15]`).
//!
//! Numbers are handled as digit strings, never parsed into a machine integer, so a name
//! such as `h123456789012345678901234` folds and expands like `h7`. A bracket holding a
//! `:` is an IPv6 literal (`[::1]:[2222-2223]`), kept as written.

use std::cmp::Ordering;
use std::collections::HashSet;

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{MAX_HOSTS, MAX_NAME_LENGTH};

/// The most names one range expression may produce: [`MAX_HOSTS`]. The count is computed
/// before anything is allocated, so a typo like `a[1-99999]b[1-99999]` is an error, not
/// an attempt to allocate ten billion names.
pub const MAX_EXPANSION: usize = MAX_HOSTS;

/// Whether `pattern` contains a `[...]` range (a bracket that is not an IPv6 literal).
/// An unclosed `[` counts, so that [`expand`] reports it.
pub fn is_range(pattern: &str) -> bool {
    let mut rest = pattern;
    while let Some((_, after)) = rest.split_once('[') {
        match after.split_once(']') {
            Some((body, tail)) if body.contains(':') => rest = tail,
            _ => return true,
        }
    }
    false
}

/// Expands every `[a-b,c]` part of `pattern`, in order (the first bracket varies
/// slowest). A pattern without ranges is returned as is. Numbers keep the zero padding of
/// the range's start (`[01-10]`) and may have any number of digits. Brackets holding a
/// `:` are IPv6 literals and stay as written.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for an unclosed bracket, an empty or reversed range, a
/// non-numeric bound, more than `MAX_EXPANSION` (100,000) names or names longer than
/// [`MAX_NAME_LENGTH`] (both computed before expanding).
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid host range {pattern:?}: {why}"),
        )
    };
    let segments = parse(pattern).map_err(bad)?;
    if !segments.iter().any(|s| matches!(s, Segment::Choice(_))) {
        return Ok(vec![pattern.to_owned()]);
    }
    let mut count: usize = 1;
    let mut longest: usize = 0;
    for segment in &segments {
        match segment {
            Segment::Literal(text) => longest = longest.saturating_add(text.len()),
            Segment::Choice(spans) => {
                let n = spans
                    .iter()
                    .try_fold(0usize, |sum, s| sum.checked_add(s.count))
                    .unwrap_or(usize::MAX);
                count = count.saturating_mul(n);
                let widest = spans.iter().map(Span::widest).max().unwrap_or(0);
                longest = longest.saturating_add(widest);
            }
        }
    }
    if count > MAX_EXPANSION {
        return Err(bad(format!(
            "expands to more than {MAX_EXPANSION} names (the most one run takes)"
        )));
    }
    if longest > MAX_NAME_LENGTH {
        return Err(bad(format!(
            "expands to names longer than {MAX_NAME_LENGTH} characters"
        )));
    }
    let mut names = vec![String::new()];
    for segment in &segments {
        match segment {
            Segment::Literal(text) => names.iter_mut().for_each(|n| n.push_str(text)),
            Segment::Choice(spans) => {
                let items: Vec<String> = spans.iter().flat_map(Span::items).collect();
                let mut next = Vec::with_capacity(names.len().saturating_mul(items.len()));
                for name in &names {
                    for item in &items {
                        next.push(format!("{name}{item}"));
                    }
                }
                names = next;
            }
        }
    }
    Ok(names)
}

/// A piece of a range pattern.
enum Segment<'a> {
    /// Text kept as written.
    Literal(&'a str),
    /// A `[...]` bracket: its comma-separated numbers and spans.
    Choice(Vec<Span<'a>>),
}

/// One `a-b` (or `a`) inside a bracket.
struct Span<'a> {
    /// The start as written (`01`).
    lo: &'a str,
    /// The end without leading zeros.
    hi: &'a str,
    /// How many numbers it holds (at most `MAX_EXPANSION + 1`: more is not counted).
    count: usize,
    /// The zero padding: the start's width when it begins with `0`, else 0.
    width: usize,
}

impl Span<'_> {
    fn widest(&self) -> usize {
        self.width.max(self.hi.len())
    }

    fn items(&self) -> impl Iterator<Item = String> + '_ {
        let mut digits = canonical(self.lo).as_bytes().to_vec();
        (0..self.count).map(move |_| {
            let text = pad(&String::from_utf8_lossy(&digits), self.width);
            increment(&mut digits);
            text
        })
    }
}

fn parse(pattern: &str) -> std::result::Result<Vec<Segment<'_>>, String> {
    let mut segments = Vec::new();
    let mut rest = pattern;
    while let Some((before, after)) = rest.split_once('[') {
        let (body, tail) = after.split_once(']').ok_or("missing ]")?;
        segments.push(Segment::Literal(before));
        if body.contains(':') {
            // An IPv6 literal, `[::1]`.
            segments.extend([
                Segment::Literal("["),
                Segment::Literal(body),
                Segment::Literal("]"),
            ]);
        } else {
            segments.push(Segment::Choice(parse_body(body)?));
        }
        rest = tail;
    }
    segments.push(Segment::Literal(rest));
    Ok(segments)
}

fn parse_body(body: &str) -> std::result::Result<Vec<Span<'_>>, String> {
    if body.is_empty() {
        return Err("empty []".to_owned());
    }
    let mut spans = Vec::new();
    for part in body.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !numeric(lo) || !numeric(hi) {
            return Err(format!("{part:?} is not a number or a range of numbers"));
        }
        if compare(lo, hi) == Ordering::Greater {
            return Err(format!("{part:?} runs backwards"));
        }
        let count = difference(canonical(hi), canonical(lo))
            .and_then(|d| d.checked_add(1))
            .filter(|n| *n <= MAX_EXPANSION)
            .unwrap_or(MAX_EXPANSION + 1);
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        spans.push(Span {
            lo,
            hi: canonical(hi),
            count,
            width,
        });
    }
    Ok(spans)
}

/// Digits without leading zeros (`"0"` for zero).
fn canonical(digits: &str) -> &str {
    let t = digits.trim_start_matches('0');
    if t.is_empty() && !digits.is_empty() {
        "0"
    } else {
        t
    }
}

/// Numeric order of two digit strings of any length.
fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (canonical(a), canonical(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `hi - lo` for canonical digit strings with `hi >= lo`, or `None` when it does not fit
/// a `usize`.
fn difference(hi: &str, lo: &str) -> Option<usize> {
    let mut out: Vec<u8> = Vec::with_capacity(hi.len());
    let mut borrow = 0u8;
    let mut lo_digits = lo.bytes().rev();
    for h in hi.bytes().rev() {
        let l = lo_digits.next().unwrap_or(b'0') - b'0' + borrow;
        let h = h - b'0';
        if h >= l {
            out.push(h - l);
            borrow = 0;
        } else {
            out.push(h + 10 - l);
            borrow = 1;
        }
    }
    // Most significant first, leading zeros dropped.
    while out.last() == Some(&0) {
        out.pop();
    }
    if out.len() > 19 {
        return None;
    }
    out.iter().rev().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(*d))
    })
}

/// Adds one to ASCII digits in place (`"09"` becomes `"10"`, `"99"` becomes `"100"`).
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

fn pad(digits: &str, width: usize) -> String {
    format!("{digits:0>width$}")
}

/// Splits `text` at each `separator` outside `[...]` (`db[1-3,7],web1` is two parts).
pub(crate) fn split_outside_brackets(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// Folds names into range form, keeping first-appearance order of the groups:
/// `["web01","web02","web03","web07","db1"]` becomes `"web[01-03,07],db1"`. Numbers as
/// wide as a zero-padded one (`web10` beside `web01`) join its padded group; numbers of
/// any length fold. Duplicates appear once. Expanding each comma-separated part of the
/// result (outside brackets) with [`expand`] gives back exactly the set of names, and so
/// does selecting it with `-l` / [`crate::Inventory::select`].
pub fn fold(names: &[String]) -> String {
    let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
    // Names split at their last number, grouped by (prefix, suffix) in first-seen order.
    let mut families: IndexMap<(&str, &str), Vec<&str>> = IndexMap::new();
    // Names without digits, with the number of families seen before them.
    let mut plain: Vec<(usize, &str)> = Vec::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        match split_number(name) {
            Some((prefix, digits, suffix)) => {
                families.entry((prefix, suffix)).or_default().push(digits)
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
        let padded_widths: HashSet<usize> = members
            .iter()
            .filter(|d| d.len() > 1 && d.starts_with('0'))
            .map(|d| d.len())
            .collect();
        // width -> numbers: width 0 means unpadded.
        let mut groups: IndexMap<usize, Vec<&str>> = IndexMap::new();
        for digits in members {
            let width = if padded_widths.contains(&digits.len()) {
                digits.len()
            } else {
                0
            };
            groups.entry(width).or_default().push(digits);
        }
        for (_, numbers) in groups {
            parts.push(fold_numbers(prefix, suffix, numbers));
        }
    }
    parts.extend(plain_iter.map(|(_, name)| name.to_owned()));
    parts.join(",")
}

/// `numbers` are all of one padded width, or all unpadded: written as they are, each run
/// of consecutive ones as `start-end`.
fn fold_numbers(prefix: &str, suffix: &str, mut numbers: Vec<&str>) -> String {
    numbers.sort_unstable_by(|a, b| compare(a, b).then_with(|| a.cmp(b)));
    numbers.dedup();
    // Runs of consecutive numbers, as (start, end).
    let mut runs: Vec<(&str, &str)> = Vec::new();
    for n in numbers {
        match runs.last_mut() {
            Some((_, end)) if successor(end) == n.as_bytes() => *end = n,
            _ => runs.push((n, n)),
        }
    }
    if let [(single, end)] = runs.as_slice() {
        if single == end {
            return format!("{prefix}{single}{suffix}");
        }
    }
    let spans: Vec<String> = runs
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_owned()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    format!("{prefix}[{}]{suffix}", spans.join(","))
}

fn successor(digits: &str) -> Vec<u8> {
    let mut next = digits.as_bytes().to_vec();
    increment(&mut next);
    next
}

/// Splits at the last run of digits: `web01.dc1` is ("web01.dc", "1", "").
fn split_number(name: &str) -> Option<(&str, &str, &str)> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let (head, suffix) = name.split_at(end);
    let start = head
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (prefix, digits) = head.split_at(start);
    Some((prefix, digits, suffix))
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
        assert_eq!(
            expand("n[08-11]").unwrap(),
            s(&["n08", "n09", "n10", "n11"])
        );
        assert_eq!(
            expand("n[98-101]").unwrap(),
            s(&["n98", "n99", "n100", "n101"])
        );
        assert_eq!(expand("n[0-1]").unwrap(), s(&["n0", "n1"]));
        assert_eq!(
            expand("h[123456789012345678901234-123456789012345678901235]").unwrap(),
            s(&["h123456789012345678901234", "h123456789012345678901235"])
        );
        assert_eq!(
            expand("h[99999999999999999999999-100000000000000000000000]").unwrap(),
            s(&["h99999999999999999999999", "h100000000000000000000000"])
        );
        assert_eq!(
            expand("[::1]:[2222-2223]").unwrap(),
            s(&["[::1]:2222", "[::1]:2223"])
        );
        assert_eq!(expand("[::1]:22").unwrap(), s(&["[::1]:22"]));
        assert!(!is_range("[::1]:22"));
        assert!(is_range("[::1]:[1-2]"));
        assert!(is_range("a[1-2"));
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
            "a[1-99999]b[1-99999]",
            "a[1-2]b[1-99999]",
            "x[1-99999999999999999999999999999999999]",
            "[1-10][1-10][1-10][1-10][1-10][1-10]",
        ] {
            assert_eq!(
                expand(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        assert_eq!(expand("w[1-100000]").unwrap().len(), 100_000);
        assert_eq!(expand("a[1-2]b[1-50000]").unwrap().len(), 100_000);
        let long = format!("{}[1-2]", "a".repeat(255));
        assert!(expand(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 255"));
    }

    #[test]
    fn folds_back() {
        let names = s(&["web01", "web02", "web03", "web07", "db1", "lb", "web12"]);
        assert_eq!(fold(&names), "web[01-03,07,12],db1,lb");
        assert_eq!(fold(&s(&["a1", "a2"])), "a[1-2]");
        assert_eq!(fold(&s(&["127.0.0.2", "127.0.0.3"])), "127.0.0.[2-3]");
        assert_eq!(fold(&s(&["x"])), "x");
        assert_eq!(fold(&s(&["x", "x"])), "x");
        let expanded = expand("n[01-20]").unwrap();
        assert_eq!(fold(&expanded), "n[01-20]");
        assert_eq!(fold(&expand("n[1-12]").unwrap()), "n[1-12]");
        assert_eq!(fold(&s(&["n01", "n10", "n1", "n100"])), "n[01,10],n[1,100]");
        // Numbers longer than any machine integer (they once folded to `h0`).
        assert_eq!(
            fold(&s(&[
                "h123456789012345678901234",
                "h123456789012345678901235"
            ])),
            "h[123456789012345678901234-123456789012345678901235]"
        );
        assert_eq!(
            fold(&s(&["[::1]:2222", "[::1]:2223", "::1", "::2"])),
            "[::1]:[2222-2223],::[1-2]"
        );
    }
}
