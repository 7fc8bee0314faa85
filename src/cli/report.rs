//! Everything the CLI draws: per-host blocks, live lines, folded groups, JSON lines, the
//! progress bar and the summary. The pool only emits events; this module alone writes to
//! the terminal, and one host's output is written whole under one lock, straight from
//! the host's buffers (no second copy, also for JSON).
//!
//! When stdout goes away (EPIPE: `rexec ... | head`), the reporter stops writing and
//! cancels [`Reporter::closed`], which the run turns into a stop of every host.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rexec::__cli::fold;
use rexec::Shard;
use rexec::{Event, ExitStatus, HostResult, Outcome, Output, OutputStream, Tally};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::args::{seconds, OutputMode, Rollout};
use crate::cli::spool::Block;

/// `--stream`: a line longer than this is printed in pieces of this size, each as its own
/// `host | ` line, so memory stays bounded whatever the output.
pub const MAX_STREAM_LINE: usize = 1024 * 1024;

pub struct Reporter {
    mode: OutputMode,
    bar: Option<ProgressBar>,
    sanitize: bool,
    /// Where the run stands, from the pool's [`Event::Tally`].
    tally: Mutex<Tally>,
    /// --stream: the unfinished line per (host, is stderr).
    partial: Mutex<HashMap<(String, bool), Vec<u8>>>,
    /// The default mode: each running host's output (see [`Block`]).
    blocks: Mutex<HashMap<String, Arc<Mutex<Block>>>>,
    out_dir: Option<PathBuf>,
    started: Instant,
    closed: CancellationToken,
    shard: Option<ShardSummary>,
    rollout: Option<RolloutView>,
}

/// What a rolling run (`--batch`, `--max-fail`) adds to the progress bar and the summary,
/// from the pool's batch and budget events.
struct RolloutView {
    options: Rollout,
    /// Batch sizes for the selected hosts (empty without --batch).
    sizes: Vec<usize>,
    allowed: usize,
    state: Mutex<RolloutState>,
}

#[derive(Default)]
struct RolloutState {
    /// The batch in progress, from 1 (0 before the first).
    batch: usize,
    completed: usize,
    exceeded: bool,
    /// From the pool's last event of a stopped run: the budget-counted failures, the
    /// batch where the budget was exceeded and how many hosts never started.
    stopped: Option<(usize, Option<usize>, usize)>,
}

impl Reporter {
    pub fn new(mode: OutputMode, total: usize, quiet: bool, out_dir: Option<PathBuf>) -> Reporter {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            crate::cli::log::attach_bar(&bar);
            bar
        });
        Reporter {
            mode,
            bar,
            sanitize: std::io::stdout().is_terminal(),
            tally: Mutex::new(Tally {
                total,
                ..Tally::default()
            }),
            partial: Mutex::new(HashMap::new()),
            blocks: Mutex::new(HashMap::new()),
            out_dir,
            started: Instant::now(),
            closed: CancellationToken::new(),
            shard: None,
            rollout: None,
        }
    }

    /// A rolling run over `total` hosts: the bar shows the batch, the summary the budget.
    #[must_use]
    pub fn rollout(mut self, options: &Rollout, total: usize) -> Reporter {
        if options.batches.is_some() || options.budget.is_some() {
            self.rollout = Some(RolloutView {
                sizes: options
                    .batches
                    .as_ref()
                    .map(|b| b.split(total))
                    .unwrap_or_default(),
                allowed: options.budget.as_ref().map_or(0, |b| b.allowed(total)),
                options: options.clone(),
                state: Mutex::default(),
            });
        }
        self
    }

    /// Batch and budget events; whether `event` was one.
    fn rollout_event<T>(&self, event: &Event<'_, T>) -> bool {
        let Some(view) = &self.rollout else {
            return false;
        };
        let Ok(mut state) = view.state.lock() else {
            return false;
        };
        match event {
            Event::BatchStarted { batch, .. } => state.batch = *batch,
            Event::BatchFinished { .. } => state.completed += 1,
            Event::BudgetExceeded { .. } => state.exceeded = true,
            Event::RolloutStopped {
                failed,
                batch,
                not_started,
                ..
            } => state.stopped = Some((*failed, *batch, *not_started)),
            _ => return false,
        }
        drop(state);
        self.update_bar();
        true
    }

    /// `batch 2/5: ` for the bar.
    fn batch_prefix(&self) -> String {
        let Some(view) = &self.rollout else {
            return String::new();
        };
        let Ok(state) = view.state.lock() else {
            return String::new();
        };
        let mut text = String::new();
        if !view.sizes.is_empty() && state.batch > 0 {
            text.push_str(&format!("batch {}/{}: ", state.batch, view.sizes.len()));
        }
        if state.exceeded {
            text.push_str("failure budget exceeded, no new hosts: ");
        }
        text
    }

    /// Cancelled when stdout was closed by its reader.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Writes to stdout above the progress bar, whole, under one lock. A closed stdout
    /// (EPIPE) cancels [`Reporter::closed`]; nothing is written after that.
    fn write_out(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
        if self.closed.is_cancelled() {
            return;
        }
        let run = || {
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            write(&mut out).and_then(|()| out.flush())
        };
        let result = match &self.bar {
            Some(bar) => bar.suspend(run),
            None => run(),
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.closed.cancel();
            }
        }
    }

    fn print(&self, bytes: &[u8]) {
        self.write_out(|w| w.write_all(bytes));
    }

    fn eprint(&self, bytes: &[u8]) {
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn update_bar(&self) {
        if let Some(bar) = &self.bar {
            let Ok(t) = self.tally.lock().map(|t| *t) else {
                return;
            };
            bar.set_message(format!(
                "{}{}/{} hosts, {} failed, {} running",
                self.batch_prefix(),
                t.done,
                t.total,
                t.failed,
                t.running
            ));
        }
    }

    /// The pool's count of the run: the bar shows it.
    fn tally(&self, tally: Tally) {
        if let Ok(mut t) = self.tally.lock() {
            *t = tally;
        }
        self.update_bar();
    }

    pub fn event(&self, event: Event<'_, Output>) {
        if self.rollout_event(&event) {
            return;
        }
        match event {
            Event::Tally(t) => self.tally(t),
            Event::Finished(result) => {
                match self.mode {
                    OutputMode::PerHost => {
                        let block = self
                            .blocks
                            .lock()
                            .ok()
                            .and_then(|mut b| b.remove(&result.host));
                        let mut block = block.as_ref().and_then(|b| b.lock().ok());
                        self.write_out(|w| self.write_block(w, result, block.as_deref_mut()))
                    }
                    OutputMode::Stream => self.finish_stream(result),
                    OutputMode::Json => self.write_out(|w| {
                        write_json_line(w, result, self.out_dir.as_deref())?;
                        w.write_all(b"\n")
                    }),
                    OutputMode::Group => {}
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            _ => {}
        }
    }

    /// The default mode: a data callback that keeps `host`'s output in its block, at most
    /// `cap` bytes per stream, until the host's result is printed (give the command
    /// `max_output(0)`: the block holds the output, not the result).
    pub fn block_for(&self, host: &str, cap: Option<usize>) -> rexec::DataCallback {
        let block = Block::new(cap);
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.insert(host.to_owned(), block.clone());
        }
        Arc::new(move |stream, data| {
            if let Ok(mut b) = block.lock() {
                b.push(stream, data);
            }
        })
    }

    /// --stream: the complete lines of a host's chunk, printed as `host | line`; the
    /// unfinished rest waits for the next chunk (a line over [`MAX_STREAM_LINE`] is
    /// printed in pieces). Only the new bytes are searched for line ends.
    pub fn stream_chunk(&self, host: &str, stream: OutputStream, data: &[u8]) {
        let is_err = stream == OutputStream::Stderr;
        // Prefixed lines go straight into one buffer: no allocation per line.
        let mut text = Vec::new();
        let mut add = |line: &[u8]| {
            text.extend_from_slice(host.as_bytes());
            text.extend_from_slice(b" | ");
            text.extend_from_slice(&self.clean(line));
        };
        if let Ok(mut partial) = self.partial.lock() {
            let buf = partial.entry((host.to_owned(), is_err)).or_default();
            let mut rest = data;
            if let Some(end) = memchr::memchr(b'\n', rest) {
                let (line, after) = rest.split_at(end + 1);
                if buf.is_empty() {
                    add(line);
                } else {
                    buf.extend_from_slice(line);
                    add(buf.as_slice());
                    // A long line's capacity is not kept for the next ones.
                    *buf = Vec::new();
                }
                rest = after;
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', rest) {
                    add(rest.get(start..=end).unwrap_or_default());
                    start = end + 1;
                }
                rest = rest.get(start..).unwrap_or_default();
            }
            buf.extend_from_slice(rest);
            while buf.len() >= MAX_STREAM_LINE {
                let mut piece: Vec<u8> = buf.drain(..MAX_STREAM_LINE).collect();
                piece.push(b'\n');
                add(&piece);
            }
        }
        if text.is_empty() {
            return;
        }
        if is_err {
            self.eprint(&text);
        } else {
            self.print(&text);
        }
    }

    fn finish_stream(&self, result: &HostResult<Output>) {
        for is_err in [false, true] {
            let rest = self
                .partial
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&(result.host.clone(), is_err)));
            if let Some(rest) = rest.filter(|r| !r.is_empty()) {
                let mut text = format!("{} | ", result.host).into_bytes();
                text.extend_from_slice(&self.clean(&rest));
                text.push(b'\n');
                if is_err {
                    self.eprint(&text);
                } else {
                    self.print(&text);
                }
            }
        }
        let note = match &result.result {
            Ok(o) => o.note(),
            Err(_) => None,
        };
        if result.outcome() != Outcome::Ok || note.is_some() {
            self.eprint(format!("{} | [{}]\n", result.host, describe(result)).as_bytes());
        }
    }

    /// Replaces control characters (but newline and tab) when writing to a terminal.
    fn clean<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !self.sanitize {
            return std::borrow::Cow::Borrowed(bytes);
        }
        std::borrow::Cow::Owned(sanitize(bytes))
    }

    fn write_block(
        &self,
        w: &mut dyn Write,
        result: &HostResult<Output>,
        block: Option<&mut Block>,
    ) -> io::Result<()> {
        let cut = block
            .as_ref()
            .map(|b| (b.stdout.truncated(), b.stderr.truncated()));
        w.write_all(format!("=== {}: {}\n", result.host, describe_as(result, cut)).as_bytes())?;
        if let Some(b) = block {
            b.stdout.write_to(w, self.sanitize, true)?;
            if !b.stdout.is_empty() && !b.stdout.ends_with_newline() {
                w.write_all(b"\n")?;
            }
            if !b.stderr.is_empty() {
                w.write_all(format!("--- {} stderr:\n", result.host).as_bytes())?;
                b.stderr.write_to(w, self.sanitize, true)?;
                if !b.stderr.ends_with_newline() {
                    w.write_all(b"\n")?;
                }
            }
            return Ok(());
        }
        let output = match &result.result {
            Ok(o) => Some(o),
            Err(e) => e.output(),
        };
        if let Some(o) = output {
            w.write_all(&self.clean(&o.stdout))?;
            if !o.stdout.is_empty() && !o.stdout.ends_with(b"\n") {
                w.write_all(b"\n")?;
            }
            if !o.stderr.is_empty() {
                w.write_all(format!("--- {} stderr:\n", result.host).as_bytes())?;
                w.write_all(&self.clean(&o.stderr))?;
                if !o.stderr.ends_with(b"\n") {
                    w.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    /// --group: hosts with identical stdout, stderr and status in one block each, in the
    /// order their first host appears.
    pub fn print_groups(&self, results: &[HostResult<Output>]) {
        type Key<'a> = (String, &'a [u8], &'a [u8]);
        let mut groups: Vec<(Key<'_>, Vec<String>)> = Vec::new();
        let mut index: HashMap<Key<'_>, usize> = HashMap::new();
        for r in results {
            let (out, err): (&[u8], &[u8]) = match &r.result {
                Ok(o) => (&o.stdout, &o.stderr),
                Err(e) => match e.output() {
                    Some(o) => (&o.stdout, &o.stderr),
                    None => (b"", b""),
                },
            };
            let key = (describe_short(r), out, err);
            match index.get(&key) {
                Some(&i) => {
                    if let Some((_, hosts)) = groups.get_mut(i) {
                        hosts.push(r.host.clone());
                    }
                }
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![r.host.clone()]));
                }
            }
        }
        self.write_out(|w| {
            for ((status, out, err), hosts) in &groups {
                w.write_all(
                    format!("=== {} ({}): {}\n", fold(hosts), hosts.len(), status).as_bytes(),
                )?;
                w.write_all(&self.clean(out))?;
                if !out.is_empty() && !out.ends_with(b"\n") {
                    w.write_all(b"\n")?;
                }
                if !err.is_empty() {
                    w.write_all(b"--- stderr:\n")?;
                    w.write_all(&self.clean(err))?;
                    if !err.ends_with(b"\n") {
                        w.write_all(b"\n")?;
                    }
                }
            }
            Ok(())
        });
    }

    /// A sharded run: its summary records the shard (see [`ShardSummary`]).
    pub fn with_shard(mut self, shard: Option<ShardSummary>) -> Reporter {
        self.shard = shard;
        self
    }

    /// The end of a run: the JSON summary object, or the summary on stderr.
    pub fn finish(&self, outcomes: &[(String, Outcome)], exit: rexec::RunExit, quiet: bool) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        if self.mode == OutputMode::Json {
            let mut summary = summary_json(outcomes, elapsed, exit, self.shard);
            if let Some(fields) = summary.get_mut("summary").and_then(|s| s.as_object_mut()) {
                self.rollout_json(fields, outcomes);
            }
            self.print(format!("{summary}\n").as_bytes());
            return;
        }
        if quiet {
            return;
        }
        let mut text = summary_text(outcomes, elapsed);
        if self.closed.is_cancelled() {
            text.push_str(
                "    stdout was closed by its reader: the running commands were stopped\n",
            );
        }
        text.push_str(&self.rollout_summary(outcomes));
        self.eprint(text.as_bytes());
    }

    /// `--- rollout stopped: 3 hosts failed (budget --max-fail 2) in batch 2/5; 40 hosts
    /// not started: node[11-50]`, when the budget stopped the run.
    fn rollout_summary(&self, outcomes: &[(String, Outcome)]) -> String {
        let Some(view) = &self.rollout else {
            return String::new();
        };
        let Ok(state) = view.state.lock() else {
            return String::new();
        };
        let Some((failed, batch, not_started)) = state.stopped else {
            return String::new();
        };
        let plural = |n: usize| if n == 1 { "host" } else { "hosts" };
        let mut text = format!(
            "--- rollout stopped: {} {} failed (budget {})",
            failed,
            plural(failed),
            view.options.budget_flag
        );
        if let Some(batch) = batch {
            text.push_str(&format!(" in batch {batch}/{}", view.sizes.len()));
        }
        text.push_str(&format!(
            "; {not_started} {} not started",
            plural(not_started)
        ));
        let never: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::NotStarted)
            .map(|(h, _)| h.clone())
            .collect();
        if !never.is_empty() {
            text.push_str(&format!(": {}", summary_list(&never)));
        }
        text.push('\n');
        text
    }

    /// The JSON summary's `batches` (with --batch) and `budget` (with --max-fail).
    fn rollout_json(
        &self,
        summary: &mut serde_json::Map<String, serde_json::Value>,
        outcomes: &[(String, Outcome)],
    ) {
        let Some(view) = &self.rollout else { return };
        let Ok(state) = view.state.lock() else { return };
        if view.options.batches.is_some() {
            summary.insert(
                "batches".into(),
                json!({"sizes": view.sizes, "completed": state.completed}),
            );
        }
        if let Some(budget) = &view.options.budget {
            let counted: Vec<&str> = budget.counted().iter().map(|o| o.as_str()).collect();
            let (_, batch, not_started) = state.stopped.unwrap_or((0, None, 0));
            // The pool's rule, applied to the run's outcomes.
            let failed = outcomes.iter().filter(|(_, o)| budget.counts(*o)).count();
            summary.insert(
                "budget".into(),
                json!({
                    "max_fail": budget.limit().to_string(),
                    "allowed": view.allowed,
                    "counted": counted,
                    "failed": failed,
                    "exceeded": state.stopped.is_some(),
                    "stopped_in_batch": batch,
                    "not_started": not_started,
                }),
            );
        }
    }

    /// Transfers: a progress bar in bytes with throughput.
    pub fn bytes_mode(&self, total_bytes: Option<u64>) {
        if let Some(bar) = &self.bar {
            match total_bytes {
                Some(total) => bar.set_length(total),
                None => bar.unset_length(),
            }
            bar.set_position(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }

    /// Transfers: `n` more bytes moved.
    pub fn add_bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Transfers: one host's line (or JSON object) as it finishes.
    pub fn transfer_event(&self, event: Event<'_, rexec::TransferStats>) {
        if self.rollout_event(&event) {
            return;
        }
        match event {
            Event::Tally(t) => self.tally(t),
            Event::Finished(r) => {
                let outcome = r.outcome();
                let secs = seconds(r.timings.total);
                let line = if self.mode == OutputMode::Json {
                    let mut v = serde_json::Map::new();
                    v.insert("host".into(), json!(r.host));
                    v.insert("outcome".into(), json!(outcome.as_str()));
                    match &r.result {
                        Ok(s) => {
                            v.insert("files".into(), json!(s.files));
                            v.insert("dirs".into(), json!(s.dirs));
                            v.insert("symlinks".into(), json!(s.symlinks));
                            v.insert("bytes".into(), json!(s.bytes));
                            v.insert("skipped".into(), json!(s.skipped));
                        }
                        Err(e) => {
                            v.insert(
                                "error".into(),
                                json!({"kind": e.kind().as_str(), "message": e.full_message()}),
                            );
                        }
                    }
                    v.insert("timings_ms".into(), timings_json(&r.timings));
                    format!("{}\n", serde_json::Value::Object(v))
                } else {
                    match &r.result {
                        Ok(s) => format!(
                            "=== {}: ok, {} file{}, {}{} in {secs}\n",
                            r.host,
                            s.files,
                            if s.files == 1 { "" } else { "s" },
                            human_bytes(s.bytes),
                            match s.skipped {
                                0 => String::new(),
                                1 => ", 1 special file skipped".to_owned(),
                                n => format!(", {n} special files skipped"),
                            }
                        ),
                        Err(e) => {
                            format!(
                                "=== {}: {outcome} in {secs}: {}\n",
                                r.host,
                                e.full_message()
                            )
                        }
                    }
                };
                self.print(line.as_bytes());
            }
            _ => {}
        }
    }
}

/// What a sharded run's JSON summary records: `"shard":{"index":I,"count":N,
/// "selected":TOTAL}`, TOTAL being the hosts selected before sharding.
#[derive(Debug, Clone, Copy)]
pub struct ShardSummary {
    pub shard: Shard,
    pub selected: usize,
}

/// Each outcome that occurs, with its count, in [`Outcome::ALL`] order.
fn outcome_counts(outcomes: &[(String, Outcome)]) -> Vec<(Outcome, usize)> {
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
const SUMMARY_LIST_WIDTH: usize = 200;

/// A summary line's hosts: folded, or when that is longer than [`SUMMARY_LIST_WIDTH`],
/// the first hosts whose folded list fits and `and N more` (a few hundred scattered
/// failures in a large fleet would otherwise make a line of kilobytes; `--failed-hosts`
/// and the JSON summary list every one).
fn summary_list(hosts: &[String]) -> String {
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

fn timings_json(t: &rexec::Timings) -> serde_json::Value {
    json!({
        "connect": t.connect.as_millis() as u64,
        "run": t.run.as_millis() as u64,
        "total": t.total.as_millis() as u64,
    })
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units.get(unit).copied().unwrap_or("B"))
    }
}

/// Opens DIR/<host>.out and DIR/<host>.err and returns a callback that appends to them.
pub fn out_dir_writer(dir: &Path, host: &str) -> std::io::Result<rexec::DataCallback> {
    let out = Mutex::new(File::create(dir.join(format!("{host}.out")))?);
    let err = Mutex::new(File::create(dir.join(format!("{host}.err")))?);
    Ok(Arc::new(move |stream, data| {
        let file = if stream == OutputStream::Stdout {
            &out
        } else {
            &err
        };
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(data);
        }
    }))
}

fn status_text(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Exited(c) => format!("exit {c}"),
        other => other.to_string(),
    }
}

/// `ok (exit 0) in 0.31s`, `timed-out in 1.00s: timed out after 1s running the command`,
/// `no-status (no exit status) in 2.00s: the server closed the channel ...`.
pub fn describe(result: &HostResult<Output>) -> String {
    describe_as(result, None)
}

/// [`describe`], with whether stdout and stderr were cut at --max-output given by `cut`
/// when the output was kept outside the result (the default mode's blocks).
fn describe_as(result: &HostResult<Output>, cut: Option<(bool, bool)>) -> String {
    let secs = seconds(result.timings.total);
    match &result.result {
        Ok(o) => {
            let mut text = format!(
                "{} ({}) in {secs}",
                result.outcome(),
                status_text(&o.status)
            );
            if let Some(note) = o.note() {
                text.push_str(&format!(": {note}"));
            }
            let (stdout_cut, stderr_cut) = cut.unwrap_or((o.stdout_truncated, o.stderr_truncated));
            for (cut, stream) in [(stdout_cut, "stdout"), (stderr_cut, "stderr")] {
                if cut {
                    text.push_str(&format!("; {stream} cut at --max-output"));
                }
            }
            text
        }
        Err(e) => format!("{} in {secs}: {}", result.outcome(), e.full_message()),
    }
}

/// The outcome and its detail, without timings (what --group compares).
fn describe_short(result: &HostResult<Output>) -> String {
    let outcome = result.outcome();
    match &result.result {
        Ok(o) => {
            let mut text = format!("{outcome} ({})", status_text(&o.status));
            if let Some(note) = o.note() {
                text.push_str(&format!(": {note}"));
            }
            text
        }
        Err(e) => format!("{outcome}: {}", e.full_message()),
    }
}

/// Writes a serializable value as JSON to `w`.
fn json_to(w: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *w, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => io::Error::from(kind),
        None => io::Error::other(e),
    })
}

/// One host's JSON object, in the README's key order, written straight to `w`: output
/// that is UTF-8 is escaped as it is written, other output is base64-encoded in pieces,
/// so no second copy of a large output is made.
fn write_json_line(
    w: &mut dyn Write,
    result: &HostResult<Output>,
    out_dir: Option<&Path>,
) -> io::Result<()> {
    w.write_all(b"{\"host\":")?;
    json_to(w, &result.host)?;
    w.write_all(b",\"outcome\":")?;
    json_to(w, &result.outcome().as_str())?;
    let output = match &result.result {
        Ok(o) => Some(o),
        Err(e) => e.output(),
    };
    if let Some(o) = output {
        match &o.status {
            ExitStatus::Exited(c) => {
                w.write_all(format!(",\"exit_code\":{c}").as_bytes())?;
            }
            ExitStatus::Signaled {
                signal,
                core_dumped,
                ..
            } => {
                w.write_all(b",\"signal\":")?;
                json_to(w, signal)?;
                w.write_all(format!(",\"core_dumped\":{core_dumped}").as_bytes())?;
            }
            ExitStatus::Unknown => {}
        }
    }
    match &result.result {
        Err(e) => {
            let error = json!({
                "kind": e.kind().as_str(),
                "phase": timeout_phase(e).or_else(|| e.phase().map(|p| p.as_str())),
                "message": e.full_message(),
            });
            w.write_all(b",\"error\":")?;
            json_to(w, &error)?;
        }
        Ok(o) => {
            if let Some(note) = o.note() {
                w.write_all(b",\"note\":")?;
                json_to(w, &note)?;
            }
        }
    }
    if let Some(o) = output {
        match out_dir {
            Some(dir) => {
                w.write_all(b",\"stdout_file\":")?;
                json_to(w, &dir.join(format!("{}.out", result.host)))?;
                w.write_all(b",\"stderr_file\":")?;
                json_to(w, &dir.join(format!("{}.err", result.host)))?;
            }
            None => {
                write_bytes_field(w, "stdout", &o.stdout)?;
                write_bytes_field(w, "stderr", &o.stderr)?;
            }
        }
        w.write_all(
            format!(
                ",\"stdout_truncated\":{},\"stderr_truncated\":{},\
                 \"output_open_after_exit\":{},\"may_still_be_running\":{}",
                o.stdout_truncated,
                o.stderr_truncated,
                o.output_open_after_exit,
                o.may_still_be_running
            )
            .as_bytes(),
        )?;
    }
    w.write_all(b",\"timings_ms\":")?;
    json_to(w, &timings_json(&result.timings))?;
    w.write_all(b"}")
}

/// `"field":"text"` for UTF-8, `"field_base64":"..."` otherwise, streamed.
fn write_bytes_field(w: &mut dyn Write, field: &str, bytes: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            w.write_all(format!(",\"{field}\":").as_bytes())?;
            json_to(w, &text)
        }
        Err(_) => {
            w.write_all(format!(",\"{field}_base64\":\"").as_bytes())?;
            // Whole 3-byte groups per piece, so the pieces join into one valid encoding.
            for piece in bytes.chunks(3 * 16 * 1024) {
                w.write_all(data_encoding::BASE64.encode(piece).as_bytes())?;
            }
            w.write_all(b"\"")
        }
    }
}

/// Makes remote output harmless on a terminal: control characters other than newline and
/// tab become `^X` (ESC becomes `^[`), C1 controls `\u{..}`; invalid UTF-8 is replaced.
pub fn sanitize(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            // A pty's line ends.
            '\r' if chars.peek() == Some(&'\n') => {}
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => out.push_str("^?"),
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// For timeouts: the phase, as text (`connect`, `handshake`, `auth`, `command`).
fn timeout_phase(error: &rexec::Error) -> Option<&'static str> {
    (error.kind() == rexec::ErrorKind::Timeout)
        .then(|| error.phase().map(rexec::Phase::as_str))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(stdout: &[u8]) -> HostResult<Output> {
        let out = Output::new(
            "web01",
            ExitStatus::Exited(0),
            stdout.to_vec(),
            b"err".to_vec(),
        );
        HostResult::from_command(0, "web01", Ok(out), rexec::Timings::default())
    }

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

    #[test]
    fn json_lines_keep_the_readme_order_and_stream_base64() {
        let mut buf = Vec::new();
        write_json_line(&mut buf, &result(b"hi\n"), None).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("{\"host\":\"web01\",\"outcome\":\"ok\",\"exit_code\":0,\"stdout\":\"hi\\n\",\"stderr\":\"err\""),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timings_ms"]["total"], 0);
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        let mut buf = Vec::new();
        write_json_line(&mut buf, &result(&binary), None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let decoded = data_encoding::BASE64
            .decode(v["stdout_base64"].as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(decoded, binary);
    }
    // Output sanitizing (issue 14): what reaches a terminal from a remote host.

    fn clean(bytes: &[u8]) -> String {
        String::from_utf8(sanitize(bytes)).expect("sanitize writes UTF-8")
    }

    #[test]
    fn sanitize_shows_control_characters_in_caret_notation() {
        assert_eq!(clean(b"a\x00b\x07c\x08d\x7fe"), "a^@b^Gc^Hd^?e");
        assert_eq!(clean(b"\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
        // Title change and clear-screen sequences are defused the same way.
        assert_eq!(clean(b"\x1b]0;owned\x07"), "^[]0;owned^G");
        assert_eq!(clean(b"\x1b[2J\x1bc"), "^[[2J^[c");
        assert_eq!(clean(b"\x1f\x01"), "^_^A");
    }

    #[test]
    fn sanitize_keeps_text_newlines_and_tabs() {
        assert_eq!(clean(b"one\ttwo\nthree\n"), "one\ttwo\nthree\n");
        assert_eq!(clean("héllo ✓ 日本\n".as_bytes()), "héllo ✓ 日本\n");
        assert_eq!(clean(b""), "");
    }

    #[test]
    fn sanitize_drops_cr_only_before_lf() {
        assert_eq!(clean(b"a\r\nb\r\n"), "a\nb\n");
        // A lone CR would move the cursor back over what was written: shown instead.
        assert_eq!(clean(b"safe\rrm -rf"), "safe^Mrm -rf");
        assert_eq!(clean(b"a\r\r\n"), "a^M\n");
        assert_eq!(clean(b"end\r"), "end^M");
    }

    #[test]
    fn sanitize_escapes_c1_controls_and_replaces_invalid_utf8() {
        // U+009B (CSI) written as UTF-8 is a C1 control.
        assert_eq!(clean("x\u{9b}31my".as_bytes()), "x\\u{9b}31my");
        assert_eq!(clean("\u{80}\u{9f}".as_bytes()), "\\u{80}\\u{9f}");
        // The lone byte 0x9b is not UTF-8: replaced, never passed through.
        assert_eq!(clean(b"x\x9b31my"), "x\u{fffd}31my");
        assert_eq!(clean(b"\xff\xfe\n"), "\u{fffd}\u{fffd}\n");
        // A truncated multi-byte sequence at the end.
        assert_eq!(clean(b"ok\xe2\x9c"), "ok\u{fffd}");
        // U+00A0 is printable and kept.
        assert_eq!(clean("a\u{a0}b".as_bytes()), "a\u{a0}b");
    }

    #[test]
    fn sanitize_keeps_very_long_lines_whole() {
        let line: Vec<u8> = b"0123456789abcdef".repeat(1 << 16);
        let mut input = line.clone();
        input.extend_from_slice(b"\x1b\r\n");
        let out = sanitize(&input);
        assert_eq!(out.len(), line.len() + 3);
        assert_eq!(&out[..line.len()], &line[..]);
        assert_eq!(&out[line.len()..], b"^[\n");
    }

    proptest::proptest! {
        #[test]
        fn sanitized_output_is_utf8_without_terminal_controls(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)
        ) {
            let out = String::from_utf8(sanitize(&bytes));
            proptest::prop_assert!(out.is_ok());
            for c in out.unwrap().chars() {
                let code = c as u32;
                proptest::prop_assert!(
                    c == '\n' || c == '\t' || (code >= 0x20 && code != 0x7f
                        && !(0x80..=0x9f).contains(&code)),
                    "{c:?} left in the output"
                );
            }
        }

        #[test]
        fn sanitize_changes_nothing_in_plain_text(text in "[ -~\n\t]{0,300}") {
            proptest::prop_assert_eq!(sanitize(text.as_bytes()), text.as_bytes());
        }
    }
}
