//! Shards: a stable share of the selected hosts, so that N copies of rexec on N machines
//! split one run (`--shard I/N`, 1-based like Playwright's and Jest's `--shard=1/3`).
//!
//! The rule: the k-th selected host (0-based, in selection order) goes to shard
//! `(k mod N) + 1`. Shards are balanced to one host, disjoint, together exactly the
//! selection, and the same for the same inventory and pattern.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

/// One share of a run: shard `index` of `count`, both 1-based (`1 <= index <= count`).
///
/// ```
/// use rexec::Shard;
///
/// let shard: Shard = "2/3".parse()?;
/// let hosts = ["a", "b", "c", "d", "e"];
/// assert_eq!(shard.select(hosts), ["b", "e"]);
/// # Ok::<(), rexec::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` of `count` (1-based).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `count` is 0 or `index` is not from 1 to `count`;
    /// for index 0 the message tells how to convert a 0-based index (Kubernetes'
    /// `JOB_COMPLETION_INDEX`).
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        let text = format!("{index}/{count}");
        if count == 0 {
            return Err(invalid(&text, "the number of shards N must be at least 1"));
        }
        if index == 0 {
            return Err(invalid(
                &text,
                &format!(
                    "shards are numbered from 1 to N (1/{count} to {count}/{count}); \
                     from a 0-based index such as Kubernetes' JOB_COMPLETION_INDEX, use \
                     --shard $((JOB_COMPLETION_INDEX+1))/{count}"
                ),
            ));
        }
        if index > count {
            return Err(invalid(
                &text,
                &format!("the shard must be from 1 to {count}"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard's number, from 1 to [`Shard::count`].
    pub fn index(self) -> usize {
        self.index
    }

    /// The number of shards.
    pub fn count(self) -> usize {
        self.count
    }

    /// Whether the host at `position` (0-based, in selection order) belongs to this
    /// shard: `position mod count == index - 1`.
    pub fn contains(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// This shard's items, in their order: every `count`-th item from item `index - 1`.
    pub fn select<T>(self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| self.contains(*k))
            .map(|(_, item)| item)
            .collect()
    }

    /// How many of `total` selected hosts this shard gets: `total / count`, plus one for
    /// the first `total mod count` shards.
    pub fn len_of(self, total: usize) -> usize {
        total / self.count + usize::from(self.index - 1 < total % self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N`: two decimal whole numbers (`1/4`).
    fn from_str(text: &str) -> Result<Shard> {
        let number = |part: &str| -> Option<usize> {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((number(i)?, number(n)?)));
        match parsed {
            Some((index, count)) => Shard::new(index, count),
            None => Err(invalid(
                text,
                "expected I/N, two whole numbers with 1 <= I <= N (like 1/4)",
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn invalid(text: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("--shard {text}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_balanced_and_cover_the_selection() {
        for total in 0..40usize {
            for count in 1..9usize {
                let mut seen = vec![0u32; total];
                let mut sizes = Vec::new();
                for index in 1..=count {
                    let shard = Shard::new(index, count).unwrap();
                    let got = shard.select(0..total);
                    assert_eq!(got.len(), shard.len_of(total), "{shard} of {total}");
                    for k in &got {
                        seen[*k] += 1;
                    }
                    sizes.push(got.len());
                }
                assert!(seen.iter().all(|&n| n == 1), "{total} hosts in {count}");
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn the_rule_is_k_mod_n_plus_one() {
        let names = ["h0", "h1", "h2", "h3", "h4", "h5", "h6"];
        assert_eq!(Shard::new(1, 3).unwrap().select(names), ["h0", "h3", "h6"]);
        assert_eq!(Shard::new(2, 3).unwrap().select(names), ["h1", "h4"]);
        assert_eq!(Shard::new(3, 3).unwrap().select(names), ["h2", "h5"]);
        assert_eq!(Shard::new(1, 1).unwrap().select(names), names);
    }

    #[test]
    fn parsing() {
        let s: Shard = "3/4".parse().unwrap();
        assert_eq!((s.index(), s.count()), (3, 4));
        assert_eq!(s.to_string(), "3/4");
        assert_eq!(" 1 / 2 ".parse::<Shard>().unwrap().to_string(), "1/2");
        for (bad, says) in [
            ("0/0", "N must be at least 1"),
            ("1/0", "N must be at least 1"),
            ("5/4", "from 1 to 4"),
            ("0/4", "--shard $((JOB_COMPLETION_INDEX+1))/4"),
            ("a/b", "expected I/N"),
            ("-1/3", "expected I/N"),
            ("+1/3", "expected I/N"),
            ("1/3/", "expected I/N"),
            ("1", "expected I/N"),
            ("", "expected I/N"),
            ("1/99999999999999999999999", "expected I/N"),
            ("١/٣", "expected I/N"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let message = e.to_string();
            assert!(message.contains(says), "{bad}: {message}");
            assert!(message.starts_with(&format!("--shard {bad}")), "{message}");
        }
    }
}
