//! Local file I/O for transfers, off the runtime's worker threads: a download's writes
//! ([`OffThreadWriter`]), an upload's reads ([`OffThreadReader`]) and the fsync and
//! rename at the end ([`off_thread`]) run on tokio's blocking pool, a block at a time,
//! one block in flight while the network carries the next. A worker thread that waited
//! for a slow disk (or for writeback of a full page cache) would stall every other host
//! scheduled on it.

use std::io::{Read, Write};

use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// Bytes gathered before one hop to the blocking pool (two SFTP reads of 255 KiB): the
/// hop costs microseconds, a block takes longer to write; with one block in flight and
/// one gathering, a download holds at most about 1 MiB here.
const BLOCK: usize = 512 * 1024;

/// What a block's write gives back: the writer, the result, and the block (to be freed on
/// a runtime thread).
type BlockWritten<W> = (W, std::io::Result<()>, Vec<Vec<u8>>);

/// Writes to `W` on the blocking pool, in order, one block at a time.
pub(super) struct OffThreadWriter<W> {
    /// The writer when no block is in flight.
    idle: Option<W>,
    /// The block in flight: it gives the writer back with the result.
    busy: Option<JoinHandle<BlockWritten<W>>>,
    /// Data gathered for the next block.
    pending: Vec<Vec<u8>>,
    pending_len: usize,
}

impl<W: Write + Send + 'static> OffThreadWriter<W> {
    pub(super) fn new(writer: W) -> OffThreadWriter<W> {
        OffThreadWriter {
            idle: Some(writer),
            busy: None,
            pending: Vec::new(),
            pending_len: 0,
        }
    }

    /// Queues `data`; once a block has gathered, waits for the block before it (if still
    /// being written) and hands this one to the blocking pool. An error of an earlier
    /// block comes back here.
    pub(super) async fn write(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= BLOCK {
            self.send().await?;
        }
        Ok(())
    }

    /// Writes what is left and gives the writer back once every block is written.
    pub(super) async fn finish(mut self) -> std::io::Result<W> {
        self.send().await?;
        self.wait().await?;
        self.idle
            .take()
            .ok_or_else(|| std::io::Error::other("the local writer was lost"))
    }

    async fn wait(&mut self) -> std::io::Result<()> {
        if let Some(busy) = self.busy.take() {
            let (writer, result, block) = busy.await.map_err(std::io::Error::other)?;
            self.idle = Some(writer);
            // Freed here, on a runtime thread like its allocation (see the reader).
            drop(block);
            result?;
        }
        Ok(())
    }

    async fn send(&mut self) -> std::io::Result<()> {
        self.wait().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(mut writer) = self.idle.take() else {
            return Err(std::io::Error::other("the local writer was lost"));
        };
        let block = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let result = block.iter().try_for_each(|data| writer.write_all(data));
            (writer, result, block)
        }));
        Ok(())
    }
}

/// Reads from `R` on the blocking pool, one chunk ahead of what was asked for (at most
/// one chunk held beyond what the caller holds).
pub(super) struct OffThreadReader<R> {
    idle: Option<R>,
    /// The next chunk being read: gives the reader back with the bytes (short only at
    /// the end of the source).
    ahead: Option<JoinHandle<(R, std::io::Result<Vec<u8>>)>>,
    eof: bool,
}

impl<R: Read + Send + 'static> OffThreadReader<R> {
    pub(super) fn new(reader: R) -> OffThreadReader<R> {
        OffThreadReader {
            idle: Some(reader),
            ahead: None,
            eof: false,
        }
    }

    /// The next `len` bytes of the source (fewer only at its end; empty past it). Starts
    /// reading the next `len` at once.
    pub(super) async fn read(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        if self.ahead.is_none() {
            if self.eof {
                return Ok(Vec::new());
            }
            self.start(len);
        }
        let Some(ahead) = self.ahead.take() else {
            return Err(std::io::Error::other("the local reader was lost"));
        };
        let (reader, result) = ahead.await.map_err(std::io::Error::other)?;
        self.idle = Some(reader);
        let chunk = result?;
        if chunk.len() < len {
            self.eof = true;
        } else {
            self.start(len);
        }
        Ok(chunk)
    }

    fn start(&mut self, len: usize) {
        let Some(mut reader) = self.idle.take() else {
            return;
        };
        // Allocated here, not on the blocking thread: the chunk is freed on a runtime
        // thread once sent. Allocated on blocking threads, a 20-host put peaked about
        // 40 MiB higher (suspected: memory freed into other threads' malloc arenas).
        let mut chunk = vec![0u8; len];
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let mut filled = 0;
            let result = loop {
                match reader.read(chunk.get_mut(filled..).unwrap_or_default()) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == chunk.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(filled);
            (reader, result.map(|()| chunk))
        }));
    }
}

/// Runs blocking local file work (fsync, rename, metadata) on the blocking pool.
pub(super) async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        Error::new(ErrorKind::LocalIo, "a local file operation did not finish").with_source(e)
    })?
}
