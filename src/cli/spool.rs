//! The default output mode's blocks: what a host printed, kept until the host finishes and
//! its block is printed whole. Each stream stays in memory up to [`IN_MEMORY`] bytes, then
//! goes to an unlinked temporary file, so a run's memory does not grow with the output.
//! `--max-output` is applied here as the library applies it: the first N bytes of each
//! stream are kept, the rest is read and dropped, and the stream is marked as cut.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::sync::{Arc, Mutex};

use rexec::OutputStream;

/// Bytes of one stream of one host held in memory before they go to a temporary file.
pub const IN_MEMORY: usize = 1024 * 1024;

/// One stream of one host: the bytes kept, in memory or in a temporary file.
#[derive(Default)]
pub struct Spool {
    /// The first bytes, once they went past [`IN_MEMORY`] (with what came after them).
    file: Option<File>,
    /// Bytes written to `file`.
    in_file: u64,
    /// The bytes after those in `file`.
    memory: Vec<u8>,
    /// Whether bytes past the cap were dropped.
    truncated: bool,
    kept: u64,
    last: Option<u8>,
}

impl Spool {
    fn push(&mut self, data: &[u8], cap: u64) {
        let room = cap.saturating_sub(self.kept);
        let take = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
        if take < data.len() {
            self.truncated = true;
        }
        let Some(data) = data.get(..take).filter(|d| !d.is_empty()) else {
            return;
        };
        self.kept += data.len() as u64;
        self.last = data.last().copied();
        if self.file.is_none() && self.memory.len() + data.len() > IN_MEMORY {
            match tempfile::tempfile() {
                Ok(file) => self.file = Some(file),
                // Kept in memory then: correct output before bounded memory.
                Err(e) => tracing::warn!("cannot create a temporary file for output: {e}"),
            }
            let memory = std::mem::take(&mut self.memory);
            self.append_to_file(&memory);
        }
        if self.file.is_some() && self.memory.is_empty() {
            self.append_to_file(data);
        } else {
            self.memory.extend_from_slice(data);
        }
    }

    /// Appends `data` to the file; what the file does not take stays in memory after it.
    fn append_to_file(&mut self, data: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            self.memory.extend_from_slice(data);
            return;
        };
        if let Err(e) = file.write_all(data) {
            tracing::warn!("cannot write output to a temporary file: {e}; keeping it in memory");
            // A failed write_all may have written a part: the file's position says how much.
            let written = file
                .stream_position()
                .map_or(0, |p| p.saturating_sub(self.in_file));
            let written = usize::try_from(written).unwrap_or(0).min(data.len());
            self.in_file += written as u64;
            self.memory
                .extend_from_slice(data.get(written..).unwrap_or_default());
            // Later bytes stay in memory too, after these.
            return;
        }
        self.in_file += data.len() as u64;
    }

    /// No bytes kept.
    pub fn is_empty(&self) -> bool {
        self.kept == 0
    }

    /// Whether the kept bytes end with a newline.
    pub fn ends_with_newline(&self) -> bool {
        self.last == Some(b'\n')
    }

    /// Whether bytes past `--max-output` were dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Writes the kept bytes to `w`; with `clean`, through [`super::report::sanitize`]
    /// piece by piece (a character or a `\r\n` split between pieces is kept whole). With
    /// `w_is_stdout` (`w` writes to stdout) and no cleaning, the temporary file goes to
    /// stdout in the kernel (`copy_file_range`, `splice` or `sendfile`), after `w` is
    /// flushed.
    pub fn write_to(
        &mut self,
        w: &mut dyn Write,
        clean: bool,
        w_is_stdout: bool,
    ) -> io::Result<()> {
        let mut cleaner = clean.then(Cleaner::default);
        if let Some(file) = self.file.as_mut() {
            file.rewind()?;
            let mut rest = file.take(self.in_file);
            if w_is_stdout && !clean {
                w.flush()?;
                // The lock is reentrant: the caller's lock on stdout is this thread's.
                io::copy(&mut rest, &mut io::stdout().lock())?;
                return w.write_all(&self.memory);
            }
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = rest.read(&mut buf)?;
                let Some(piece) = buf.get(..n).filter(|_| n > 0) else {
                    break;
                };
                write_piece(w, piece, cleaner.as_mut())?;
            }
        }
        write_piece(w, &self.memory, cleaner.as_mut())?;
        if let Some(c) = cleaner {
            w.write_all(&super::report::sanitize(&c.carry))?;
        }
        Ok(())
    }
}

/// For [`Spool::write_to`] with sanitizing: the end of the last piece that may belong to
/// the next one (an unfinished UTF-8 sequence, a `\r` before a `\n`).
#[derive(Default)]
struct Cleaner {
    carry: Vec<u8>,
}

fn write_piece(w: &mut dyn Write, piece: &[u8], cleaner: Option<&mut Cleaner>) -> io::Result<()> {
    let Some(c) = cleaner else {
        return w.write_all(piece);
    };
    let mut text = std::mem::take(&mut c.carry);
    text.extend_from_slice(piece);
    let mut cut = match std::str::from_utf8(&text) {
        Ok(_) => text.len(),
        // At most 3 bytes of a character cut off at the end.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => first_incomplete_tail(&text),
    };
    if cut > 0 && text.get(cut - 1) == Some(&b'\r') {
        cut -= 1;
    }
    c.carry = text.split_off(cut);
    w.write_all(&super::report::sanitize(&text))
}

/// Where an unfinished UTF-8 sequence at the end of `text` begins (`text.len()` if none):
/// for text that is not valid UTF-8 earlier on.
fn first_incomplete_tail(text: &[u8]) -> usize {
    let start = text.len().saturating_sub(3);
    for (i, b) in text.iter().enumerate().skip(start) {
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => continue,
        };
        if i + need > text.len() {
            return i;
        }
    }
    text.len()
}

/// One host's stdout and stderr, fed by the command's data callback.
pub struct Block {
    pub stdout: Spool,
    pub stderr: Spool,
    cap: u64,
}

impl Block {
    /// A block that keeps at most `cap` bytes per stream (`--max-output`).
    pub fn new(cap: Option<usize>) -> Arc<Mutex<Block>> {
        Arc::new(Mutex::new(Block {
            stdout: Spool::default(),
            stderr: Spool::default(),
            cap: cap.map_or(u64::MAX, |c| c as u64),
        }))
    }

    /// Keeps a chunk of `stream`.
    pub fn push(&mut self, stream: OutputStream, data: &[u8]) {
        let cap = self.cap;
        match stream {
            OutputStream::Stdout => self.stdout.push(data, cap),
            OutputStream::Stderr => self.stderr.push(data, cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(spool: &mut Spool, clean: bool) -> Vec<u8> {
        let mut out = Vec::new();
        spool.write_to(&mut out, clean, false).unwrap();
        out
    }

    #[test]
    fn a_spool_past_the_threshold_goes_to_a_file_and_comes_back_whole() {
        let mut spool = Spool::default();
        let data: Vec<u8> = (0..3 * IN_MEMORY + 5).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(32 * 1024 + 7) {
            spool.push(piece, u64::MAX);
        }
        assert!(spool.file.is_some());
        assert!(spool.memory.is_empty());
        assert_eq!(written(&mut spool, false), data);
        assert!(!spool.truncated());
    }

    #[test]
    fn the_cap_keeps_the_first_bytes_and_marks_the_cut() {
        let mut spool = Spool::default();
        spool.push(b"hello ", 8);
        spool.push(b"world", 8);
        assert_eq!(written(&mut spool, false), b"hello wo");
        assert!(spool.truncated());
        let mut exact = Spool::default();
        exact.push(b"12345678", 8);
        assert!(!exact.truncated());
    }

    #[test]
    fn sanitizing_keeps_characters_and_line_ends_split_between_pieces() {
        let mut text = "é\u{1b}x\r\n".repeat(200_000).into_bytes();
        text.extend_from_slice("ü".as_bytes());
        let mut spool = Spool::default();
        for piece in text.chunks(1000 * 1000 + 1) {
            spool.push(piece, u64::MAX);
        }
        assert_eq!(
            written(&mut spool, true),
            super::super::report::sanitize(&text)
        );
    }
}
