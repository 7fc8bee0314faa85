//! Library log lines (warnings by default; `REXEC_LOG=info|debug|trace` for more) on
//! stderr, written above the progress bar when one is drawn.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;
use tracing_subscriber::filter::LevelFilter;

static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

/// Log lines are printed above this bar from now on.
pub fn attach_bar(bar: &ProgressBar) {
    if let Ok(mut slot) = BAR.get_or_init(|| Mutex::new(None)).lock() {
        *slot = Some(bar.clone());
    }
}

pub fn init() {
    let level = match std::env::var("REXEC_LOG").as_deref() {
        Ok("error") => LevelFilter::ERROR,
        Ok("info") => LevelFilter::INFO,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        Ok("off") => LevelFilter::OFF,
        _ => LevelFilter::WARN,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_writer(|| LineWriter(Vec::new()))
        .try_init();
}

/// Buffers one event and writes it whole when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let mut line = b"rexec: ".to_vec();
        line.extend_from_slice(&self.0);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        let bar = BAR
            .get()
            .and_then(|m| m.lock().ok())
            .and_then(|slot| slot.clone());
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
