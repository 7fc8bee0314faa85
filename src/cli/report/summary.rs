//! The end-of-run summary: counts per outcome and the hosts of each, as text or JSON.

use std::time::Duration;

use rexec::__cli::fold;
use rexec::Outcome;
use rexec::Shard;
use serde_json::json;

use crate::cli::args::seconds;

/// What a sharded run's JSON summary records: `"shard":{"index":I,"count":N,
/// "selected":TOTAL}`, TOTAL being the hosts selected before sharding.
#[derive(Debug, Clone, Copy)]
pub struct ShardSummary {
    pub shard: Shard,
    pub selected: usize,
}

/// Each outcome that occurs, with its count, in [`Outcome::ALL`] order.
pub(super) fn outcome_counts(outcomes: &[(String, Outcome)]) -> Vec<(Outcome, usize)> {
    let mut counts = [0usize; Outcome::ALL.len()];
    for (_, outcome) in outcomes {
        if let Some(i) = Outcome::ALL.iter().position(|o| o == outcome) {
            if let Some(n) = counts.get_mut(i) {
                *n += 1;
            }
        }
    }
    Outcome::ALL
        .into_iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The `--json` summary object of a run (hosts in the order given; for a shard, every
/// host of the shard in its selection order).
pub fn summary_json(
    outcomes: &[(String, Outcome)],
    elapsed: Duration,
    exit: rexec::RunExit,
    shard: Option<ShardSummary>,
) -> serde_json::Value {
    let mut by_outcome = serde_json::Map::new();
    for (outcome, n) in outcome_counts(outcomes) {
        by_outcome.insert(outcome.as_str().to_owned(), json!(n));
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o != Outcome::Ok)
        .map(|(h, _)| h.as_str())
        .collect();
    let mut summary = json!({
        "hosts": outcomes.len(),
        "outcomes": by_outcome,
        "failed_hosts": failed,
        "elapsed_ms": elapsed.as_millis() as u64,
        "exit_code": exit.code(),
    });
    if let (Some(s), Some(fields)) = (shard, summary.as_object_mut()) {
        // Where each failed host stood in the selection before sharding (the k of the
        // shard rule), so that a merge lists them in one run's order.
        let (count, first) = (s.shard.count(), s.shard.index() - 1);
        let positions: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, (_, o))| *o != Outcome::Ok)
            .map(|(k, _)| k * count + first)
            .collect();
        fields.insert(
            "shard".into(),
            json!({
                "index": s.shard.index(),
                "count": count,
                "selected": s.selected,
                "failed_positions": positions,
            }),
        );
    }
    json!({ "summary": summary })
}

/// The summary printed on stderr at the end of a run: counts per outcome, then the hosts
/// of each failing outcome as a folded list.
pub fn summary_text(outcomes: &[(String, Outcome)], elapsed: Duration) -> String {
    let counts = outcome_counts(outcomes);
    let listed: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {o}")).collect();
    let mut text = format!(
        "--- {} host{} in {}",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        seconds(elapsed),
    );
    // No hosts (a shard that got none): no list.
    if !listed.is_empty() {
        text.push_str(": ");
        text.push_str(&listed.join(", "));
    }
    text.push('\n');
    for (outcome, _) in counts.iter().filter(|(o, _)| *o != Outcome::Ok) {
        let hosts: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o == outcome)
            .map(|(h, _)| h.clone())
            .collect();
        text.push_str(&format!("    {outcome}: {}\n", summary_list(&hosts)));
    }
    text
}

/// Characters of folded host names a summary line shows before it says how many more.
pub(super) const SUMMARY_LIST_WIDTH: usize = 200;

/// A summary line's hosts: folded, or when that is longer than [`SUMMARY_LIST_WIDTH`],
/// the first hosts whose folded list fits and `and N more` (a few hundred scattered
/// failures in a large fleet would otherwise make a line of kilobytes; `--failed-hosts`
/// and the JSON summary list every one).
pub(super) fn summary_list(hosts: &[String]) -> String {
    let all = fold(hosts);
    if all.len() <= SUMMARY_LIST_WIDTH {
        return all;
    }
    let prefix = |n: usize| fold(hosts.get(..n).unwrap_or(hosts));
    // The longest prefix whose fold fits (at least one host); each fold is linear.
    let (mut fits, mut too_long) = (1, hosts.len());
    while fits + 1 < too_long {
        let mid = fits + (too_long - fits) / 2;
        if prefix(mid).len() <= SUMMARY_LIST_WIDTH {
            fits = mid;
        } else {
            too_long = mid;
        }
    }
    format!("{} and {} more", prefix(fits), hosts.len() - fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_fold_and_stop_at_their_width() {
        let names = |numbers: &mut dyn Iterator<Item = usize>| -> Vec<String> {
            numbers.map(|i| format!("n{i:05}")).collect()
        };
        // 10,000 hosts, all failed, fold to one range.
        assert_eq!(summary_list(&names(&mut (1..=10_000))), "n[00001-10000]");
        // 300 scattered ones: the first that fit, then how many more.
        let scattered = names(&mut (1..=300).map(|i| i * 33));
        let line = summary_list(&scattered);
        assert!(line.starts_with("n[00033,00066,00099,"), "{line}");
        let (folded, more) = line.split_once("] and ").unwrap();
        assert!(folded.len() < SUMMARY_LIST_WIDTH, "{line}");
        let shown = folded.matches(',').count() + 1;
        assert_eq!(more, format!("{} more", 300 - shown));
        assert!(shown > 20, "{line}");
    }
}
