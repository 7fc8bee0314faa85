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

/// A source an upload reads from: at least [`Read`], and, where the system can tell, a
/// read of what is already in memory that never waits for a disk.
pub(crate) trait UploadSource: Read + Send + 'static {
    /// Reads into `buf` only what can be read without waiting for a device: `Some(n)`
    /// bytes (0 at the end of the source), or `None` when the data is not in memory
    /// (then nothing was read). The default knows nothing and says `None`.
    fn read_cached(&mut self, _buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Ok(None)
    }

    /// Whether every read is from memory (never waits for a device), so that plain
    /// reads may run on a runtime thread.
    fn in_memory(&self) -> bool {
        false
    }
}

/// A local file: `preadv2(RWF_NOWAIT)` at the file's position (Linux 4.14+), which
/// copies from the page cache and fails with `EAGAIN` instead of reading the disk.
impl UploadSource for std::fs::File {
    #[cfg(target_os = "linux")]
    fn read_cached(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        use rustix::io::{preadv2, Errno, ReadWriteFlags};
        // u64::MAX: the file's own position, advanced by what is read.
        match preadv2(
            &*self,
            &mut [std::io::IoSliceMut::new(buf)],
            u64::MAX,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) => Ok(Some(n)),
            // Not cached, or a file system without RWF_NOWAIT: the blocking pool reads.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(None),
            Err(Errno::INTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// tmpfs and ramfs hold their files in memory (and tmpfs does not take
    /// `RWF_NOWAIT` before Linux 6.x): `f_type` from `fstatfs`, as in `linux/magic.h`.
    #[cfg(target_os = "linux")]
    fn in_memory(&self) -> bool {
        const TMPFS_MAGIC: u64 = 0x0102_1994;
        const RAMFS_MAGIC: u64 = 0x8584_58f6;
        rustix::fs::fstatfs(self).is_ok_and(|s| {
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            let kind = s.f_type as u64;
            kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
        })
    }
}

/// Bytes in memory: always readable at once.
impl UploadSource for std::io::Cursor<Vec<u8>> {
    fn read_cached(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.read(buf).map(Some)
    }

    fn in_memory(&self) -> bool {
        true
    }
}

/// Reads from `R`: what is in memory (the page cache) on the calling thread, the rest on
/// the blocking pool, one chunk ahead of what was asked for (at most one chunk held beyond
/// what the caller holds). A hop to the blocking pool per chunk cost a 20-host put of 64
/// MiB 0.5 s of client CPU and 10% of its wall time on a quiet machine, where every chunk
/// came from the page cache.
pub(super) struct OffThreadReader<R> {
    idle: Option<R>,
    /// The next chunk being read: gives the reader back with the bytes (short only at
    /// the end of the source).
    ahead: Option<JoinHandle<(R, std::io::Result<Vec<u8>>)>>,
    eof: bool,
    /// The source is in memory ([`UploadSource::in_memory`]): plain reads, here.
    in_memory: bool,
}

impl<R: UploadSource> OffThreadReader<R> {
    pub(super) fn new(reader: R) -> OffThreadReader<R> {
        OffThreadReader {
            in_memory: reader.in_memory(),
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
            match self.read_cached(len)? {
                Ok(chunk) => return Ok(chunk),
                // The disk: this chunk, then one ahead, on the blocking pool.
                Err((chunk, filled)) => self.start_from(chunk, filled),
            }
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

    /// The next `len` bytes read here, without a hop, as far as memory holds them:
    /// `Ok(chunk)` complete (or short at the end of the source), or `Err((chunk,
    /// filled))` with the first `filled` bytes read and the rest to come from a device.
    #[allow(clippy::type_complexity)]
    fn read_cached(&mut self, len: usize) -> std::io::Result<Result<Vec<u8>, (Vec<u8>, usize)>> {
        let mut chunk = vec![0u8; len];
        let Some(reader) = self.idle.as_mut() else {
            return Ok(Err((chunk, 0)));
        };
        let mut filled = 0;
        while filled < len {
            let rest = chunk.get_mut(filled..).unwrap_or_default();
            let read = if self.in_memory {
                match reader.read(rest) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => other.map(Some)?,
                }
            } else {
                reader.read_cached(rest)?
            };
            match read {
                Some(0) => {
                    self.eof = true;
                    break;
                }
                Some(n) => filled += n,
                None => return Ok(Err((chunk, filled))),
            }
        }
        chunk.truncate(filled);
        Ok(Ok(chunk))
    }

    fn start(&mut self, len: usize) {
        // Allocated here, not on the blocking thread: the chunk is freed on a runtime
        // thread once sent. Allocated on blocking threads, a 20-host put peaked about
        // 40 MiB higher (suspected: memory freed into other threads' malloc arenas).
        self.start_from(vec![0u8; len], 0);
    }

    /// Reads the rest of `chunk`, from `filled` on, on the blocking pool.
    fn start_from(&mut self, mut chunk: Vec<u8>, mut filled: usize) {
        let Some(mut reader) = self.idle.take() else {
            return;
        };
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let result = loop {
                if filled == chunk.len() {
                    break Ok(());
                }
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

/// Chunks a [`QueuedWriter`] may hold before its caller waits (SSH data packets are at
/// most 32 KiB: 2 MiB, the channel's window).
const QUEUE: usize = 64;

/// Writes a file for a synchronous callback (a command's output, which cannot await): the
/// chunks go through a bounded queue to a thread of the blocking pool that writes them.
/// The caller waits only when the disk is [`QUEUE`] chunks behind the network.
pub(super) struct QueuedWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    done: Option<JoinHandle<(std::fs::File, std::io::Result<()>)>>,
}

impl QueuedWriter {
    pub(super) fn new(file: std::fs::File) -> QueuedWriter {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let done = tokio::task::spawn_blocking(move || {
            let mut file = file;
            // Ends when the sender is dropped, or at the first error (which drops the
            // receiver, so that the next write says so).
            let result = rx.iter().try_for_each(|data| file.write_all(&data));
            (file, result)
        });
        QueuedWriter {
            tx: Some(tx),
            done: Some(done),
        }
    }

    /// Queues a copy of `data`; false once the writer has stopped on an error (which
    /// [`QueuedWriter::finish`] returns).
    pub(super) fn write(&self, data: &[u8]) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(data.to_vec()).is_ok())
    }

    /// Waits until every queued chunk is written; the file back, or the first error.
    pub(super) async fn finish(mut self) -> std::io::Result<std::fs::File> {
        drop(self.tx.take());
        let done = self
            .done
            .take()
            .ok_or_else(|| std::io::Error::other("the local writer was lost"))?;
        let (file, result) = done.await.map_err(std::io::Error::other)?;
        result.map(|()| file)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a file through the reader in chunks while parts of it are dropped from the
    /// page cache (so some chunks come from memory on the calling thread, some from the
    /// blocking pool, some split between the two): the bytes arrive whole and in order.
    #[tokio::test]
    async fn a_partly_cached_file_is_read_whole_and_in_order() {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        let path = dir.path().join("source");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        // Evict every other megabyte: the chunks of 300,000 bytes straddle the edges.
        #[cfg(target_os = "linux")]
        for start in [0u64, 2_000_000] {
            let len = std::num::NonZeroU64::new(1_000_000);
            rustix::fs::fadvise(&file, start, len, rustix::fs::Advice::DontNeed).unwrap();
        }
        let mut reader = OffThreadReader::new(file);
        let mut got = Vec::new();
        loop {
            let chunk = reader.read(300_000).await.unwrap();
            got.extend_from_slice(&chunk);
            if chunk.len() < 300_000 {
                break;
            }
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
        assert!(reader.read(300_000).await.unwrap().is_empty());
    }
}
