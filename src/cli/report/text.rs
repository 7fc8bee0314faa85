//! Text output: per-host blocks (the default), `--stream` lines, `--group` folding,
//! `--out-dir` files, and the one-line description of a host's result.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rexec::__cli::fold;
use rexec::{ExitStatus, HostResult, Outcome, Output, OutputStream};

use crate::cli::args::seconds;
use crate::cli::spool::Block;

use super::*;

impl Reporter {
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

    pub(super) fn finish_stream(&self, result: &HostResult<Output>) {
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
    pub(super) fn clean<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !self.sanitize {
            return std::borrow::Cow::Borrowed(bytes);
        }
        std::borrow::Cow::Owned(sanitize(bytes))
    }

    pub(super) fn write_block(
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

pub(super) fn status_text(status: &ExitStatus) -> String {
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
pub(super) fn describe_as(result: &HostResult<Output>, cut: Option<(bool, bool)>) -> String {
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
pub(super) fn describe_short(result: &HostResult<Output>) -> String {
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
