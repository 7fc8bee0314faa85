//! Opening the `sftp` subsystem on a connection and learning what the server offers.

use super::*;
use crate::ssh::session::open_channel_on;

pub(super) async fn open_raw(
    connection: &Handle<ClientHandler>,
    host: &str,
) -> Result<(RawSftpSession, Features)> {
    {
        let host = host.to_owned();
        let channel = open_channel_on(connection, &host).await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| crate::ssh::session::russh_error(e, "starting sftp").with_host(&host))?;
        let config = russh_sftp::client::Config {
            max_concurrent_reads: READS_IN_FLIGHT,
            max_concurrent_writes: WRITES_IN_FLIGHT,
            request_timeout_secs: 60,
            ..Default::default()
        };
        let mut raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = raw.init().await.map_err(|e| {
            Error::new(
                ErrorKind::Channel,
                "the server did not start sftp (no sftp subsystem?)",
            )
            .with_source(e)
            .with_host(&host)
        })?;
        let has = |name: &str| version.extensions.contains_key(name);
        let mut chunk = DEFAULT_CHUNK;
        if has("limits@openssh.com") {
            if let Ok(limits) = raw.limits().await {
                let bounded = |v: u64| usize::try_from(v).ok().filter(|v| *v > 0);
                if let Some(w) = bounded(limits.max_write_len) {
                    chunk = chunk.min(w);
                }
                if let Some(r) = bounded(limits.max_read_len) {
                    chunk = chunk.min(r);
                }
                raw.set_limits(russh_sftp::client::rawsession::Limits::from(limits));
            }
        }
        let features = Features {
            posix_rename: has("posix-rename@openssh.com"),
            fsync: has("fsync@openssh.com"),
            statvfs: has("statvfs@openssh.com"),
            chunk,
        };
        Ok((raw, features))
    }
}
