//! Walking trees before a transfer: the remote listing of `get -r`, checked before anything
//! is written, and local directories.

use super::*;

impl Sftp {
    /// Lists a remote tree, checking every name before anything is written locally.
    pub(super) async fn plan_remote_tree(&self, root: &str) -> Result<Vec<PlannedEntry>> {
        let mut plan = Vec::new();
        let mut stack = vec![(root.to_owned(), PathBuf::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut seen: HashMap<String, ()> = HashMap::new();
            for entry in self.read_dir(&dir).await? {
                if !safe_name(&entry.name) || seen.insert(entry.name.clone(), ()).is_some() {
                    return Err(self.fail(Error::new(
                        ErrorKind::Sftp,
                        format!(
                            "refusing the name {:?} sent by the server in {dir} (empty, `.`, `..`, \
                             containing `/`, or a duplicate)",
                            entry.name
                        ),
                    )));
                }
                let remote = join(&dir, &entry.name);
                let rel_path = rel.join(&entry.name);
                match entry.metadata.kind {
                    RemoteKind::Dir => stack.push((remote.clone(), rel_path.clone())),
                    RemoteKind::Other => {
                        tracing::warn!("{}: skipping special file {remote}", self.host);
                        continue;
                    }
                    _ => {}
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
                });
            }
        }
        // Parents before children.
        plan.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(plan)
    }
}

pub(super) struct PlannedEntry {
    pub(super) remote: String,
    pub(super) relative: PathBuf,
    pub(super) kind: RemoteKind,
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) mtime: u32,
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

pub(super) fn local_tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(_) if entry.file_type().is_ok_and(|t| t.is_symlink()) => {}
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
