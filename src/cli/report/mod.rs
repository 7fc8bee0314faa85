//! Everything the CLI draws: per-host blocks, live lines, folded groups, JSON lines, the
//! progress bar and the summary. The pool only emits events; this module alone writes to
//! the terminal, and one host's output is written whole under one lock, straight from
//! the host's buffers (no second copy, also for JSON).
//!
//! When stdout goes away (EPIPE: `rexec ... | head`), the reporter stops writing and
//! cancels [`Reporter::closed`], which the run turns into a stop of every host.
//!
//! Here: the [`Reporter`] and its event handlers. `bar` draws the progress bar from the
//! pool's [`Event::Tally`]; `rollout` adds batches and the failure budget; `text` writes
//! per-host blocks, `--stream` lines, `--group` and `--out-dir`; `json` the `--json`
//! lines; `summary` the end-of-run summary; `sanitize` makes remote bytes harmless on a
//! terminal.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rexec::{Event, Outcome, Output, Tally};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::args::{seconds, OutputMode};
use crate::cli::spool::Block;

mod bar;
mod json;
mod rollout;
mod sanitize;
mod summary;
mod text;

pub use sanitize::sanitize;
pub use summary::{summary_json, summary_text, ShardSummary};
pub use text::{human_bytes, out_dir_writer};

use json::{timings_json, write_json_line};
use rollout::RolloutView;
use summary::summary_list;

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
