//! `rexec merge FILE...`: the `--json` lines of several runs (the shards of one run, or
//! runs made by hand) read back and combined into the summary, `--failed-hosts` file and
//! exit code one rexec would have given. Nothing is written unless every input is
//! complete and the inputs fit together; problems name the file and line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rexec::{Error, ErrorKind, Outcome, RunExit};
use serde::Deserialize;

use super::report::{summary_json, summary_text};

/// The options `rexec merge` takes (besides its files); any other is a usage error.
pub const OPTIONS: [&str; 3] = ["json", "failed_hosts", "quiet"];

/// What `rexec merge` was asked to do.
#[derive(Debug)]
pub struct MergeConfig {
    /// Files of `--json` lines; `-` is stdin.
    pub files: Vec<PathBuf>,
    /// Print the combined summary object on stdout instead of the text on stderr.
    pub json: bool,
    /// Write the hosts that did not succeed here.
    pub failed_hosts: Option<PathBuf>,
    /// No text summary.
    pub quiet: bool,
}

/// Where a line came from: `file:line`.
#[derive(Debug, Clone)]
struct At {
    file: String,
    line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One line of `--json` output: a host's result or the summary. Other keys are ignored
/// (the output of a host is skipped, not kept).
#[derive(Deserialize)]
struct Line {
    host: Option<String>,
    outcome: Option<String>,
    summary: Option<SummaryLine>,
}

#[derive(Deserialize)]
struct SummaryLine {
    hosts: usize,
    failed_hosts: Vec<String>,
    elapsed_ms: u64,
    exit_code: u8,
    shard: Option<ShardLine>,
}

#[derive(Deserialize, Clone, PartialEq, Eq)]
struct ShardLine {
    index: usize,
    count: usize,
    selected: usize,
    /// Where each failed host stood in the selection before sharding.
    #[serde(default)]
    failed_positions: Vec<usize>,
}

/// One run read back: its hosts (the failed ones first, in the run's order) and summary.
struct Run {
    /// Where its summary line is.
    at: At,
    /// The failed hosts first, in the run's order.
    outcomes: Vec<(String, Outcome)>,
    elapsed: Duration,
    exit: RunExit,
    shard: Option<ShardLine>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

fn exit_of_code(code: u8) -> Option<RunExit> {
    [
        RunExit::Success,
        RunExit::CommandFailed,
        RunExit::Usage,
        RunExit::CouldNotRun,
        RunExit::Incomplete,
        RunExit::Interrupted,
        RunExit::OutputClosed,
    ]
    .into_iter()
    .find(|e| e.code() == code)
}

fn outcome_of_name(name: &str) -> Option<Outcome> {
    Outcome::ALL.into_iter().find(|o| o.as_str() == name)
}

/// Reads the runs of one input: host lines, each run ended by its summary line (several
/// runs may follow each other, as `cat a.jsonl b.jsonl` gives).
fn read_runs(name: &str, input: impl Read) -> Result<Vec<Run>, Error> {
    let mut runs = Vec::new();
    let mut hosts: Vec<(String, Outcome, usize)> = Vec::new();
    let mut lines = 0;
    for (i, line) in BufReader::new(input).lines().enumerate() {
        let at = At {
            file: name.to_owned(),
            line: i + 1,
        };
        lines = i + 1;
        let line = line.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{at}: cannot read the line"),
            )
            .with_source(e)
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| {
            bad(format!(
                "{at}: not a line of rexec --json output: {e} (a truncated or damaged file?)"
            ))
        })?;
        match (parsed.host, parsed.outcome, parsed.summary) {
            (Some(host), Some(outcome), None) => {
                let outcome = outcome_of_name(&outcome)
                    .ok_or_else(|| bad(format!("{at}: {host}: unknown outcome {outcome:?}")))?;
                hosts.push((host, outcome, at.line));
            }
            (None, None, Some(summary)) => {
                runs.push(close_run(at, std::mem::take(&mut hosts), summary)?);
            }
            _ => {
                return Err(bad(format!(
                    "{at}: neither a host's result (\"host\" and \"outcome\") nor a \
                     summary (\"summary\")"
                )))
            }
        }
    }
    if lines == 0 {
        return Err(bad(format!("{name}: empty: no rexec --json output")));
    }
    if let Some((host, _, line)) = hosts.first() {
        return Err(bad(format!(
            "{name}: ends without a summary line after {} host line{} (from line {line}, \
             {host}): an interrupted or truncated run?",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" }
        )));
    }
    if runs.is_empty() {
        return Err(bad(format!("{name}: no summary line")));
    }
    Ok(runs)
}

/// Checks a run's host lines against its summary line.
fn close_run(
    at: At,
    hosts: Vec<(String, Outcome, usize)>,
    summary: SummaryLine,
) -> Result<Run, Error> {
    if summary.hosts != hosts.len() {
        return Err(bad(format!(
            "{at}: the summary counts {} hosts but {} host line{} come before it \
             (an incomplete file?)",
            summary.hosts,
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" }
        )));
    }
    let exit = exit_of_code(summary.exit_code)
        .ok_or_else(|| bad(format!("{at}: unknown exit code {}", summary.exit_code)))?;
    let mut outcome_of: HashMap<&str, Outcome> = HashMap::with_capacity(hosts.len());
    for (host, outcome, _) in &hosts {
        outcome_of.insert(host, *outcome);
    }
    // The failed hosts in the run's (selection) order, then the others.
    let mut outcomes = Vec::with_capacity(hosts.len());
    for host in &summary.failed_hosts {
        match outcome_of.get(host.as_str()) {
            Some(o) if *o != Outcome::Ok => outcomes.push((host.clone(), *o)),
            _ => {
                return Err(bad(format!(
                    "{at}: the summary lists {host} as failed, but no line before it says so"
                )))
            }
        }
    }
    let failed = hosts.iter().filter(|(_, o, _)| *o != Outcome::Ok).count();
    if failed != outcomes.len() {
        return Err(bad(format!(
            "{at}: {failed} host lines are not ok, but the summary lists {} failed hosts",
            outcomes.len()
        )));
    }
    outcomes.extend(
        hosts
            .into_iter()
            .filter(|(_, o, _)| *o == Outcome::Ok)
            .map(|(h, o, _)| (h, o)),
    );
    Ok(Run {
        at,
        outcomes,
        elapsed: Duration::from_millis(summary.elapsed_ms),
        exit,
        shard: summary.shard,
    })
}

/// Sharded runs: every shard 1..N of one split, once each, each with its share of the
/// selected hosts. Returns the runs in shard order.
fn check_shards(mut runs: Vec<Run>) -> Result<Vec<Run>, Error> {
    let Some(first) = runs
        .iter()
        .find_map(|r| r.shard.as_ref().map(|s| (s.clone(), r.at.clone())))
    else {
        return Ok(runs);
    };
    let (split, first_at) = first;
    let mut seen: HashMap<usize, At> = HashMap::new();
    for run in &runs {
        let Some(shard) = &run.shard else {
            return Err(bad(format!(
                "{}: not a sharded run, but {first_at} is shard {}/{}: merge the shards of \
                 one run, or runs without --shard",
                run.at, split.index, split.count
            )));
        };
        if shard.count != split.count || shard.selected != split.selected {
            return Err(bad(format!(
                "{}: shard {}/{} of {} selected hosts, but {first_at} is shard {}/{} of {}: \
                 not the same split",
                run.at,
                shard.index,
                shard.count,
                shard.selected,
                split.index,
                split.count,
                split.selected
            )));
        }
        let valid = rexec::Shard::new(shard.index, shard.count)
            .map_err(|e| bad(format!("{}: {}", run.at, e.message())))?;
        if let Some(other) = seen.insert(shard.index, run.at.clone()) {
            return Err(bad(format!(
                "shard {}/{} appears twice: {other} and {}",
                shard.index, shard.count, run.at
            )));
        }
        let failed = run
            .outcomes
            .iter()
            .filter(|(_, o)| *o != Outcome::Ok)
            .count();
        let positions_fit = shard.failed_positions.len() == failed
            && shard
                .failed_positions
                .iter()
                .all(|&k| k < shard.selected && valid.contains(k));
        if !shard.failed_positions.is_empty() && !positions_fit {
            return Err(bad(format!(
                "{}: the failed_positions of shard {}/{} do not fit its failed hosts",
                run.at, shard.index, shard.count
            )));
        }
        let expected = valid.len_of(shard.selected);
        if run.outcomes.len() != expected {
            return Err(bad(format!(
                "{}: shard {}/{} of {} selected hosts should hold {expected} hosts, but \
                 holds {}",
                run.at,
                shard.index,
                shard.count,
                shard.selected,
                run.outcomes.len()
            )));
        }
    }
    let missing: Vec<String> = (1..=split.count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{}", split.count))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "shard{} {} missing ({} of {} given)",
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() > 8 {
                let first: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
                format!("{} ... ({} in all) are", first.join(", "), missing.len())
            } else {
                format!(
                    "{} {}",
                    missing.join(", "),
                    if missing.len() == 1 { "is" } else { "are" }
                )
            },
            seen.len(),
            split.count
        )));
    }
    runs.sort_by_key(|r| r.shard.as_ref().map(|s| s.index));
    Ok(runs)
}

/// The runs combined: every host's outcome (failed hosts first, in run order), the
/// longest run's time and the merged exit code.
struct Merged {
    outcomes: Vec<(String, Outcome)>,
    elapsed: Duration,
    exit: RunExit,
}

/// Reads every input, checks them and combines them.
fn combine(config: &MergeConfig) -> Result<Merged, Error> {
    let mut runs = Vec::new();
    let mut stdin_used = false;
    for file in &config.files {
        if file.as_os_str() == "-" {
            if stdin_used {
                return Err(bad("merge: `-` (stdin) is given twice"));
            }
            stdin_used = true;
            runs.extend(read_runs("<stdin>", std::io::stdin().lock())?);
        } else {
            let input = std::fs::File::open(file).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("cannot read {}", file.display()),
                )
                .with_source(e)
            })?;
            runs.extend(read_runs(&file.display().to_string(), input)?);
        }
    }
    let runs = check_shards(runs)?;
    let mut where_is: HashMap<String, At> = HashMap::new();
    // Each host with its place in one run's order, where the shards recorded it.
    let mut outcomes: Vec<(Option<usize>, String, Outcome)> = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut exit = RunExit::Success;
    for run in runs {
        for (host, _) in &run.outcomes {
            if let Some(other) = where_is.insert(host.clone(), run.at.clone()) {
                return Err(bad(format!(
                    "host {host} appears twice: in the run ending at {other} and in the run \
                     ending at {}",
                    run.at
                )));
            }
        }
        elapsed = elapsed.max(run.elapsed);
        exit = exit.merge(run.exit);
        let positions = run
            .shard
            .map(|s| s.failed_positions)
            .unwrap_or_default()
            .into_iter();
        // The failed hosts come first in a run, in the order of their positions.
        let mut positions = positions.map(Some).chain(std::iter::repeat(None));
        outcomes.extend(run.outcomes.into_iter().map(|(h, o)| {
            (
                positions.next().flatten().filter(|_| o != Outcome::Ok),
                h,
                o,
            )
        }));
    }
    // The failed hosts first, in one run's (selection) order when every shard recorded
    // it, else in the order of the runs; the others after.
    let (mut failed, ok): (Vec<_>, Vec<_>) = outcomes
        .into_iter()
        .partition(|(_, _, o)| *o != Outcome::Ok);
    if failed.iter().all(|(k, _, _)| k.is_some()) {
        failed.sort_by_key(|(k, _, _)| *k);
    }
    failed.extend(ok);
    let failed: Vec<(String, Outcome)> = failed.into_iter().map(|(_, h, o)| (h, o)).collect();
    let exit = exit.merge(RunExit::of(failed.iter().map(|(_, o)| *o)));
    Ok(Merged {
        outcomes: failed,
        elapsed,
        exit,
    })
}

/// Runs `rexec merge`: prints the combined summary (text on stderr, or the JSON object on
/// stdout), writes `--failed-hosts`, and returns the merged exit code. An `Err` (exit 2)
/// means the inputs were unreadable, incomplete or did not fit together; nothing was
/// printed or written then.
pub fn run(config: &MergeConfig) -> Result<RunExit, Error> {
    let Merged {
        outcomes,
        elapsed,
        exit,
    } = combine(config)?;
    if config.json {
        println!("{}", summary_json(&outcomes, elapsed, exit, None));
    } else if !config.quiet {
        eprint!("{}", summary_text(&outcomes, elapsed));
    }
    if let Some(path) = &config.failed_hosts {
        super::write_failed_hosts_to(Path::new(path), &outcomes)?;
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Result<Vec<Run>, Error> {
        read_runs("t.jsonl", text.as_bytes())
    }

    const ONE: &str = concat!(
        "{\"host\":\"a\",\"outcome\":\"ok\",\"exit_code\":0}\n",
        "{\"host\":\"b\",\"outcome\":\"exited-nonzero\",\"exit_code\":1}\n",
        "{\"summary\":{\"hosts\":2,\"outcomes\":{\"ok\":1,\"exited-nonzero\":1},",
        "\"failed_hosts\":[\"b\"],\"elapsed_ms\":5,\"exit_code\":1}}\n"
    );

    #[test]
    fn a_run_reads_back() {
        let r = runs(ONE).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].outcomes,
            [
                ("b".to_owned(), Outcome::ExitedNonZero),
                ("a".to_owned(), Outcome::Ok)
            ]
        );
        assert_eq!(r[0].exit, RunExit::CommandFailed);
        // Two runs one after the other.
        assert_eq!(runs(&format!("{ONE}\n{ONE}")).unwrap().len(), 2);
    }

    #[test]
    fn damaged_input_names_the_line() {
        let cut = &ONE[..ONE.len() - 10];
        let e = runs(cut).err().unwrap().to_string();
        assert!(
            e.starts_with("t.jsonl:3: not a line of rexec --json output"),
            "{e}"
        );
        let e = runs(&ONE[..ONE.find("{\"summary").unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ends without a summary line after 2 host lines"),
            "{e}"
        );
        let e = runs("").err().unwrap().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = runs(&ONE.replacen("\"ok\",\"exit", "\"fine\",\"exit", 1))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("t.jsonl:1: a: unknown outcome \"fine\""),
            "{e}"
        );
        let e = runs(&ONE.replacen("\"hosts\":2", "\"hosts\":3", 1))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("t.jsonl:3: the summary counts 3 hosts but 2"),
            "{e}"
        );
        let e = runs("[1,2]\n").err().unwrap().to_string();
        assert!(e.starts_with("t.jsonl:1: not a line"), "{e}");
        let e = runs("{\"x\":1}\n").err().unwrap().to_string();
        assert!(e.starts_with("t.jsonl:1: neither"), "{e}");
    }
}
