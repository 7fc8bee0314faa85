//! Walking trees before a transfer, so that what cannot be copied faithfully is refused
//! before anything is written: the local source of `put` (names that are not UTF-8,
//! special files) and the remote listing of `get -r` (unsafe or mangled names).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{join, local_error, safe_name, RemoteKind, Sftp, TransferOptions, TransferStats};
use crate::error::{Error, ErrorKind, Result};

/// How many offending paths an error lists before "and N more".
const LISTED: usize = 3;

/// One thing `put` will send, in an order where every directory comes before what is in
/// it.
pub(super) struct LocalEntry {
    /// The local path.
    pub(super) path: PathBuf,
    /// The path below the source root, `/`-separated UTF-8 (empty for the root).
    pub(super) relative: String,
    pub(super) kind: LocalKind,
    /// `symlink_metadata` (the root: `metadata`, following a link given as the source).
    pub(super) meta: std::fs::Metadata,
}

pub(super) enum LocalKind {
    File,
    Dir,
    /// A symbolic link and its target text.
    Symlink(String),
}

/// What `put` will send from a local path.
pub(super) struct LocalPlan {
    pub(super) entries: Vec<LocalEntry>,
    /// Special files inside a tree, not sent.
    pub(super) skipped: Vec<PathBuf>,
}

impl LocalPlan {
    pub(super) fn stats(&self) -> TransferStats {
        let mut stats = TransferStats {
            skipped: self.skipped.len() as u64,
            ..TransferStats::default()
        };
        for e in &self.entries {
            match e.kind {
                LocalKind::File => {
                    stats.files += 1;
                    stats.bytes += e.meta.len();
                }
                LocalKind::Dir => stats.dirs += 1,
                LocalKind::Symlink(_) => stats.symlinks += 1,
            }
        }
        stats
    }
}

/// "a FIFO", "a character device"...: what a local file that is neither a regular file
/// nor a directory is.
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Walks the local source of `put`: a regular file, or with `recursive` a directory tree
/// (symbolic links inside it are kept as links; special files are skipped). Refuses,
/// before anything is sent, a source that is a device, FIFO or socket, and any name or
/// link target inside the tree that is not UTF-8.
pub(super) fn scan_local(root: &Path, options: &TransferOptions) -> Result<LocalPlan> {
    let meta = std::fs::metadata(root).map_err(|e| local_error(e, "cannot read", root))?;
    let mut plan = LocalPlan {
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    if meta.is_file() {
        plan.entries.push(LocalEntry {
            path: root.to_owned(),
            relative: String::new(),
            kind: LocalKind::File,
            meta,
        });
        return Ok(plan);
    }
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is {}: put sends regular files and directories, and each host reads the \
                 source on its own, while a device, FIFO or socket has no fixed content or \
                 size (copy it to a regular file first)",
                root.display(),
                special_kind(&meta)
            ),
        ));
    }
    if !options.recursive {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is a directory (copy it recursively)", root.display()),
        ));
    }
    let mut not_utf8: Vec<String> = Vec::new();
    plan.entries.push(LocalEntry {
        path: root.to_owned(),
        relative: String::new(),
        kind: LocalKind::Dir,
        meta,
    });
    // A directory's entry is added when its parent is listed, its own entries only
    // when it is popped: parents always come before their children.
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, relative)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| local_error(e, "cannot list", &dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| local_error(e, "cannot list", &dir))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let Some(utf8) = name.to_str() else {
                not_utf8.push(format!("{path:?}"));
                continue;
            };
            let rel = join(&relative, utf8);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| local_error(e, "cannot read", &path))?;
            let kind = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(|e| local_error(e, "cannot read link", &path))?;
                match target.to_str() {
                    Some(t) => LocalKind::Symlink(t.to_owned()),
                    None => {
                        not_utf8.push(format!("the target of link {path:?}"));
                        continue;
                    }
                }
            } else if meta.is_dir() {
                subdirs.push((path.clone(), rel.clone()));
                LocalKind::Dir
            } else if meta.is_file() {
                LocalKind::File
            } else {
                plan.skipped.push(path);
                continue;
            };
            plan.entries.push(LocalEntry {
                path,
                relative: rel,
                kind,
                meta,
            });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    if !not_utf8.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} under {} {} not valid UTF-8: {}; rexec's SFTP library carries names as \
                 UTF-8 text, so they cannot be sent exactly, and nothing was sent (rename them \
                 first)",
                names(not_utf8.len()),
                root.display(),
                is_are(not_utf8.len()),
                listed(&not_utf8)
            ),
        ));
    }
    Ok(plan)
}

/// "1 name" / "3 names".
fn names(n: usize) -> String {
    if n == 1 {
        "1 name".to_owned()
    } else {
        format!("{n} names")
    }
}

fn is_are(n: usize) -> &'static str {
    if n == 1 {
        "is"
    } else {
        "are"
    }
}

/// The first few items, then how many more.
fn listed(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LISTED {
        text.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    text
}

/// The name `put` gives a source inside an existing remote directory: the source's own
/// file name, which must be UTF-8.
pub(super) fn remote_name_of(local: &Path) -> Result<String> {
    let name = local.file_name().unwrap_or(OsStr::new("upload"));
    name.to_str().map(str::to_owned).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the name of {local:?} is not valid UTF-8: rexec's SFTP library carries names \
                 as UTF-8 text, so it cannot be sent under that name (give the remote file \
                 name explicitly, or rename it first)"
            ),
        )
    })
}

impl Sftp {
    /// Checks a local source for [`Sftp::put_with`] without connecting and says what it
    /// would send (for progress totals, and to fail before connecting to many hosts).
    ///
    /// The source must be a regular file, or a directory with
    /// [`TransferOptions::recursive`]. A device, FIFO or socket is refused: every host
    /// reads the source on its own, and such a file has no fixed content or size. Inside a
    /// tree, special files are skipped (counted in [`TransferStats::skipped`] and logged
    /// as warnings, once, here) and every name and symbolic link target must be UTF-8,
    /// since the SFTP library carries names as text.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] / [`ErrorKind::PermissionDenied`] / [`ErrorKind::LocalIo`]
    /// naming the local path; [`ErrorKind::InvalidInput`] for a special file, a directory
    /// without `recursive`, or names that are not UTF-8 (listed).
    pub fn check_local_source(
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let plan = scan_local(local.as_ref(), options)?;
        for path in &plan.skipped {
            tracing::warn!(
                "skipping special file {} (devices, FIFOs and sockets are not copied)",
                path.display()
            );
        }
        Ok(plan.stats())
    }

    /// Lists a remote tree, checking every name before anything is written locally.
    /// Returns the entries, parents before children, and how many special files it skips.
    pub(super) async fn plan_remote_tree(&self, root: &str) -> Result<(Vec<PlannedEntry>, u64)> {
        let mut plan = Vec::new();
        let mut skipped = 0;
        let mut mangled: Vec<String> = Vec::new();
        let mut stack = vec![(root.to_owned(), PathBuf::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut seen = HashSet::new();
            for entry in self.read_dir(&dir).await? {
                let remote = join(&dir, &entry.name);
                // russh-sftp puts U+FFFD where a name had bytes that are not UTF-8; such a
                // name does not reach the file. A name really holding U+FFFD does.
                if entry.name.contains(char::REPLACEMENT_CHARACTER)
                    && self.raw.lstat(remote.as_str()).await.is_err()
                {
                    mangled.push(format!("{remote:?}"));
                    continue;
                }
                if !safe_name(&entry.name) || !seen.insert(entry.name.clone()) {
                    return Err(self.fail(Error::new(
                        ErrorKind::Sftp,
                        format!(
                            "refusing the name {:?} sent by the server in {dir} (empty, `.`, `..`, \
                             containing `/`, or a duplicate)",
                            entry.name
                        ),
                    )));
                }
                let rel_path = rel.join(&entry.name);
                let mut target = None;
                match entry.metadata.kind {
                    RemoteKind::Dir => stack.push((remote.clone(), rel_path.clone())),
                    RemoteKind::Other => {
                        tracing::warn!(
                            "{}: skipping special file {remote} (devices, FIFOs and sockets \
                             are not copied)",
                            self.host
                        );
                        skipped += 1;
                        continue;
                    }
                    RemoteKind::Symlink => {
                        let text = self.read_link(&remote).await?;
                        if text.contains(char::REPLACEMENT_CHARACTER) {
                            mangled.push(format!("the target of link {remote:?}"));
                            continue;
                        }
                        target = Some(text);
                    }
                    RemoteKind::File => {}
                }
                plan.push(PlannedEntry {
                    remote,
                    relative: rel_path,
                    kind: entry.metadata.kind,
                    size: if entry.metadata.kind == RemoteKind::File {
                        entry.metadata.size
                    } else {
                        0
                    },
                    mode: entry.metadata.mode,
                    mtime: entry.metadata.mtime,
                    target,
                });
            }
        }
        if !mangled.is_empty() {
            return Err(self.fail(Error::new(
                ErrorKind::Sftp,
                format!(
                    "{} under {root} on the server {} not valid UTF-8 (shown with U+FFFD): {}; \
                     rexec's SFTP library decodes names as UTF-8 text and cannot reach such \
                     files, so nothing was copied (rename them on the server first)",
                    names(mangled.len()),
                    is_are(mangled.len()),
                    listed(&mangled)
                ),
            )));
        }
        // Parents before children.
        plan.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok((plan, skipped))
    }

    /// The target text of remote symbolic link `path`.
    async fn read_link(&self, path: &str) -> Result<String> {
        Ok(self
            .raw
            .readlink(path)
            .await
            .map_err(|e| self.fail(super::sftp_error(e, "cannot read link", path)))?
            .files
            .into_iter()
            .next()
            .map(|f| f.filename)
            .unwrap_or_default())
    }
}

pub(super) struct PlannedEntry {
    pub(super) remote: String,
    pub(super) relative: PathBuf,
    pub(super) kind: RemoteKind,
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) mtime: u32,
    /// A symbolic link's target text.
    pub(super) target: Option<String>,
}

/// Creates `path` as a real directory, or accepts an existing real directory; refuses a
/// symlink or anything else in its place, so nothing is written through a link.
pub(super) fn ensure_real_dir(path: &Path, mode: u32) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::LocalIo,
            format!("{} exists and is not a directory", path.display()),
        )),
        Err(_) => {
            std::fs::create_dir(path).map_err(|e| local_error(e, "cannot create", path))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| local_error(e, "cannot set the mode of", path))
        }
    }
}
