//! Everything the CLI draws: per-host blocks, live lines, folded groups, JSON lines, the
//! progress bar and the summary. The pool only emits events; this module alone writes to
//! the terminal, and one host's output is written whole under one lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rexec::inventory::range::fold;
use rexec::pool::timeout_phase;
use rexec::{Event, ExitStatus, HostResult, Outcome, Output, Stream};
use serde_json::json;

use crate::cli::args::{seconds, OutputMode};

pub struct Reporter {
    mode: OutputMode,
    bar: Option<ProgressBar>,
    sanitize: bool,
    failed: AtomicUsize,
    in_flight: AtomicUsize,
    done: AtomicUsize,
    total: usize,
    /// --stream: partial lines per (host, stream).
    partial: Mutex<HashMap<(String, bool), Vec<u8>>>,
    out_dir: Option<PathBuf>,
    started: Instant,
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
            failed: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            total,
            partial: Mutex::new(HashMap::new()),
            out_dir,
            started: Instant::now(),
        }
    }

    /// Writes to stdout above the progress bar, whole.
    fn print(&self, bytes: &[u8]) {
        let write = || {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
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
            let failed = self.failed.load(Ordering::Relaxed);
            let running = self.in_flight.load(Ordering::Relaxed);
            let done = self.done.load(Ordering::Relaxed);
            bar.set_message(format!(
                "{done}/{} hosts, {failed} failed, {running} running",
                self.total
            ));
        }
    }

    /// A host got a slot.
    fn host_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.update_bar();
    }

    /// A host finished with `outcome` (the bar is updated by the caller after printing).
    fn host_finished(&self, outcome: Outcome) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn event(&self, event: Event<'_, Output>) {
        match event {
            Event::Connecting { .. } => self.host_started(),
            Event::Running { .. } => {}
            Event::Finished(result) => {
                self.host_finished(result.outcome());
                match self.mode {
                    OutputMode::PerHost => self.print(&self.block(result)),
                    OutputMode::Stream => self.finish_stream(result),
                    OutputMode::Json => {
                        let mut line = json_line(result, self.out_dir.as_deref()).to_string();
                        line.push('\n');
                        self.print(line.as_bytes());
                    }
                    OutputMode::Group => {}
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                self.update_bar();
            }
        }
    }

    /// --stream: complete lines of a host's chunk, printed as `host | line`.
    pub fn stream_chunk(&self, host: &str, stream: Stream, data: &[u8]) {
        let is_err = stream == Stream::Stderr;
        let mut lines = Vec::new();
        if let Ok(mut partial) = self.partial.lock() {
            let buf = partial.entry((host.to_owned(), is_err)).or_default();
            buf.extend_from_slice(data);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                lines.push(line);
            }
        }
        if !lines.is_empty() {
            let mut text = Vec::new();
            for line in lines {
                text.extend_from_slice(host.as_bytes());
                text.extend_from_slice(b" | ");
                text.extend_from_slice(&self.clean(&line));
            }
            if is_err {
                self.eprint(&text);
            } else {
                self.print(&text);
            }
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
        if result.outcome() != Outcome::Ok {
            self.eprint(format!("{} | [{}]\n", result.host, describe(result)).as_bytes());
        }
    }

    /// Replaces control characters (but newline and tab) when writing to a terminal.
    fn clean(&self, bytes: &[u8]) -> Vec<u8> {
        if !self.sanitize {
            return bytes.to_vec();
        }
        sanitize(bytes)
    }

    fn block(&self, result: &HostResult<Output>) -> Vec<u8> {
        let mut text = format!("=== {}: {}\n", result.host, describe(result)).into_bytes();
        let output = match &result.result {
            Ok(o) => Some(o),
            Err(e) => e.output(),
        };
        if let Some(o) = output {
            text.extend_from_slice(&self.clean(&o.stdout));
            if !o.stdout.is_empty() && !o.stdout.ends_with(b"\n") {
                text.push(b'\n');
            }
            if !o.stderr.is_empty() {
                text.extend_from_slice(format!("--- {} stderr:\n", result.host).as_bytes());
                text.extend_from_slice(&self.clean(&o.stderr));
                if !o.stderr.ends_with(b"\n") {
                    text.push(b'\n');
                }
            }
        }
        text
    }

    /// --group: hosts with identical stdout, stderr and status in one block each, in the
    /// order their first host appears.
    pub fn print_groups(&self, results: &[HostResult<Output>]) {
        type Key<'a> = (String, &'a [u8], &'a [u8]);
        let mut groups: Vec<(Key<'_>, Vec<String>)> = Vec::new();
        for r in results {
            let (out, err): (&[u8], &[u8]) = match &r.result {
                Ok(o) => (&o.stdout, &o.stderr),
                Err(e) => match e.output() {
                    Some(o) => (&o.stdout, &o.stderr),
                    None => (b"", b""),
                },
            };
            let key = (describe_short(r), out, err);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hosts)) => hosts.push(r.host.clone()),
                None => groups.push((key, vec![r.host.clone()])),
            }
        }
        let mut text = Vec::new();
        for ((status, out, err), hosts) in groups {
            text.extend_from_slice(
                format!("=== {} ({}): {}\n", fold(&hosts), hosts.len(), status).as_bytes(),
            );
            text.extend_from_slice(&self.clean(out));
            if !out.is_empty() && !out.ends_with(b"\n") {
                text.push(b'\n');
            }
            if !err.is_empty() {
                text.extend_from_slice(b"--- stderr:\n");
                text.extend_from_slice(&self.clean(err));
                if !err.ends_with(b"\n") {
                    text.push(b'\n');
                }
            }
        }
        self.print(&text);
    }

    /// The end of a run: the JSON summary object, or the summary on stderr.
    pub fn finish(&self, outcomes: &[(String, Outcome)], quiet: bool) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        let count = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
        if self.mode == OutputMode::Json {
            let mut counts = serde_json::Map::new();
            for outcome in Outcome::ALL {
                if count(outcome) > 0 {
                    counts.insert(outcome.as_str().to_owned(), json!(count(outcome)));
                }
            }
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|(_, o)| *o != Outcome::Ok)
                .map(|(h, _)| h.as_str())
                .collect();
            let summary = json!({
                "summary": {
                    "hosts": outcomes.len(),
                    "outcomes": counts,
                    "failed_hosts": failed,
                    "elapsed_ms": elapsed.as_millis() as u64,
                    "exit_code": rexec::RunExit::of(outcomes.iter().map(|(_, o)| *o)).code(),
                }
            });
            self.print(format!("{summary}\n").as_bytes());
            return;
        }
        if quiet {
            return;
        }
        let counts: Vec<String> = Outcome::ALL
            .into_iter()
            .filter(|o| count(*o) > 0)
            .map(|o| format!("{} {o}", count(o)))
            .collect();
        let mut text = format!(
            "--- {} host{} in {}: {}\n",
            outcomes.len(),
            if outcomes.len() == 1 { "" } else { "s" },
            seconds(elapsed),
            counts.join(", ")
        );
        for outcome in Outcome::ALL.into_iter().filter(|o| *o != Outcome::Ok) {
            let hosts: Vec<String> = outcomes
                .iter()
                .filter(|(_, o)| *o == outcome)
                .map(|(h, _)| h.clone())
                .collect();
            if !hosts.is_empty() {
                text.push_str(&format!("    {outcome}: {}\n", fold(&hosts)));
            }
        }
        self.eprint(text.as_bytes());
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
        match event {
            Event::Connecting { .. } => self.host_started(),
            Event::Running { .. } => {}
            Event::Finished(r) => {
                let outcome = Outcome::of_result(&r.result);
                self.host_finished(outcome);
                let secs = seconds(r.timings.total);
                let line = if self.mode == OutputMode::Json {
                    let mut v = json!({
                        "host": r.host,
                        "outcome": outcome.as_str(),
                        "timings_ms": {
                            "connect": r.timings.connect.as_millis() as u64,
                            "run": r.timings.run.as_millis() as u64,
                            "total": r.timings.total.as_millis() as u64,
                        },
                    });
                    match &r.result {
                        Ok(s) => {
                            v["files"] = json!(s.files);
                            v["dirs"] = json!(s.dirs);
                            v["symlinks"] = json!(s.symlinks);
                            v["bytes"] = json!(s.bytes);
                            v["skipped"] = json!(s.skipped);
                        }
                        Err(e) => {
                            v["error"] =
                                json!({"kind": e.kind().as_str(), "message": e.full_message()});
                        }
                    }
                    format!("{v}\n")
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
                        Err(e) => format!(
                            "=== {}: {outcome} in {secs}: {}\n",
                            r.host,
                            e.full_message()
                        ),
                    }
                };
                self.print(line.as_bytes());
                self.update_bar();
            }
        }
    }
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
        let file = if stream == Stream::Stdout { &out } else { &err };
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

/// `ok (exit 0) in 0.31s`, `timed-out in 1.00s: timed out after 1s running the command`.
pub fn describe(result: &HostResult<Output>) -> String {
    let secs = seconds(result.timings.total);
    match &result.result {
        Ok(o) => format!(
            "{} ({}) in {secs}",
            result.outcome(),
            status_text(&o.status)
        ),
        Err(e) => format!("{} in {secs}: {}", result.outcome(), e.full_message()),
    }
}

/// The outcome and its detail, without timings (what --group compares).
fn describe_short(result: &HostResult<Output>) -> String {
    let outcome = result.outcome();
    match &result.result {
        Ok(o) => format!("{outcome} ({})", status_text(&o.status)),
        Err(e) => format!("{outcome}: {}", e.full_message()),
    }
}

fn json_line(result: &HostResult<Output>, out_dir: Option<&Path>) -> serde_json::Value {
    let mut v = json!({
        "host": result.host,
        "outcome": result.outcome().as_str(),
        "timings_ms": {
            "connect": result.timings.connect.as_millis() as u64,
            "run": result.timings.run.as_millis() as u64,
            "total": result.timings.total.as_millis() as u64,
        },
    });
    let output = match &result.result {
        Ok(o) => Some(o),
        Err(e) => {
            v["error"] = json!({
                "kind": e.kind().as_str(),
                "message": e.full_message(),
                "phase": timeout_phase(e).or_else(|| e.phase().map(|p| p.as_str())),
            });
            e.output()
        }
    };
    if let Some(o) = output {
        match &o.status {
            ExitStatus::Exited(c) => v["exit_code"] = json!(c),
            ExitStatus::Signaled {
                signal,
                core_dumped,
                ..
            } => {
                v["signal"] = json!(signal);
                v["core_dumped"] = json!(core_dumped);
            }
            ExitStatus::Unknown => {}
        }
        match out_dir {
            Some(dir) => {
                v["stdout_file"] = json!(dir.join(format!("{}.out", result.host)));
                v["stderr_file"] = json!(dir.join(format!("{}.err", result.host)));
            }
            None => {
                put_bytes(&mut v, "stdout", &o.stdout);
                put_bytes(&mut v, "stderr", &o.stderr);
                v["stdout_truncated"] = json!(o.stdout_truncated);
                v["stderr_truncated"] = json!(o.stderr_truncated);
            }
        }
    }
    v
}

/// Text as a string; bytes that are not UTF-8 as `<field>_base64`.
fn put_bytes(v: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => v[field] = json!(s),
        Err(_) => {
            v[format!("{field}_base64")] = json!(data_encoding::BASE64.encode(bytes));
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
