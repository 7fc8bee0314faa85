//! The progress bar: hosts done, failed and running from the pool's tally; bytes and
//! throughput for transfers.

use indicatif::ProgressStyle;
use rexec::Tally;

use super::*;

impl Reporter {
    pub(super) fn update_bar(&self) {
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
    pub(super) fn tally(&self, tally: Tally) {
        if let Ok(mut t) = self.tally.lock() {
            *t = tally;
        }
        self.update_bar();
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
}
