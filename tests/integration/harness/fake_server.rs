//! A small in-process SSH server (russh's server API) for peer behaviour OpenSSH's sshd
//! will not produce: a command channel that closes without an exit status, EOF and close
//! in odd orders, an exit signal, SFTP directory listings with names no file system holds,
//! and SFTP replies larger than any limit.
//!
//! It listens on 127.0.0.1 with a free port, accepts any user key, and has an Ed25519 host
//! key written into its own known_hosts file, so rexec connects with strict checking.
//! Dropping it stops the listener and every connection it served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rexec::{Agent, ConnectOptions, Credentials, Identity, KnownHosts};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Sig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// One step of what the server does after accepting an exec request, in order.
#[derive(Clone, Debug)]
pub enum Step {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Eof,
    ExitStatus(u32),
    ExitSignal(Sig, bool),
    Close,
    /// Drop the whole connection (no close for the channel).
    Disconnect,
    /// Keep the channel as it is until the client goes away.
    Hang,
}

/// A remote file system entry for the SFTP side: a name as raw bytes and its kind.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub dir: bool,
}

impl Entry {
    pub fn file(name: impl Into<Vec<u8>>) -> Entry {
        Entry {
            name: name.into(),
            dir: false,
        }
    }
}

/// What the SFTP subsystem answers.
#[derive(Clone, Debug, Default)]
pub enum SftpScript {
    /// No SFTP subsystem: the request is refused.
    #[default]
    Refused,
    /// `/tree` is a directory listing these entries (once, then EOF); every entry is empty.
    Listing(Vec<Entry>),
    /// `/tree` is a directory whose READDIR reply announces a packet of this many bytes
    /// (then sends that header only and keeps the channel open).
    OversizedReaddir(u32),
}

/// What the server does.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub exec: Vec<Step>,
    pub sftp: SftpScript,
}

pub struct FakeServer {
    pub port: u16,
    pub known_hosts: PathBuf,
    pub user_key: PathBuf,
    /// The exec requests received, as command lines.
    pub commands: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl FakeServer {
    /// Starts the server on the current tokio runtime.
    pub async fn start(script: Script) -> FakeServer {
        let dir = tempfile::tempdir().unwrap();
        let host_key = super::keygen(dir.path(), "host_ed25519", "ed25519", "");
        let user_key = super::keygen(dir.path(), "user_ed25519", "ed25519", "");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let known_hosts = dir.path().join("known_hosts");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut parts = public.split_whitespace();
        std::fs::write(
            &known_hosts,
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ),
        )
        .unwrap();
        let config = Arc::new(russh::server::Config {
            keys: vec![russh::keys::load_secret_key(&host_key, None).unwrap()],
            auth_rejection_time: std::time::Duration::ZERO,
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            inactivity_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        });
        let commands = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = commands.clone();
        let task = tokio::spawn(async move {
            // Each connection's session runs in this set: aborting the accept loop drops
            // the set, which aborts them.
            let mut sessions = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let handler = Connection {
                    script: script.clone(),
                    commands: seen.clone(),
                    channels: HashMap::new(),
                    tasks: JoinSet::new(),
                };
                let config = config.clone();
                sessions.spawn(async move {
                    if let Ok(running) = russh::server::run_stream(config, socket, handler).await {
                        let handle = running.handle();
                        let _guard = DisconnectOnDrop(handle);
                        let _ = running.await;
                    }
                });
            }
        });
        FakeServer {
            port,
            known_hosts,
            user_key,
            commands,
            task,
            _dir: dir,
        }
    }

    /// Options for rexec: the user key, strict host key checking against this server's
    /// known_hosts, no agent.
    pub fn options(&self) -> ConnectOptions {
        let mut creds = Credentials::new();
        creds = creds
            .identity(Identity::from_file(&self.user_key, None).unwrap())
            .agent(Agent::Off);
        ConnectOptions::new("127.0.0.1")
            .port(self.port)
            .user("fake")
            .credentials(creds)
            .known_hosts(KnownHosts::file(&self.known_hosts))
            .connect_timeout(std::time::Duration::from_secs(10))
    }

    /// The key file and known_hosts for the CLI (`-i`, `--known-hosts`).
    pub fn files(&self) -> (&Path, &Path) {
        (&self.user_key, &self.known_hosts)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ends a session whose task is aborted (russh runs the session itself on a task of
/// its own).
struct DisconnectOnDrop(russh::server::Handle);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        let handle = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "bye".into(), "".into())
                    .await;
            });
        }
    }
}

struct Connection {
    script: Arc<Script>,
    commands: Arc<Mutex<Vec<String>>>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Per-channel work; dropped (aborted) with the connection.
    tasks: JoinSet<()>,
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.commands
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(data).into_owned());
        session.channel_success(channel)?;
        let steps = self.script.exec.clone();
        let handle = session.handle();
        // Keep the channel object alive for as long as the steps run.
        let kept = self.channels.remove(&channel);
        self.tasks.spawn(async move {
            let _kept = kept;
            for step in steps {
                let sent = match step {
                    Step::Stdout(bytes) => handle.data(channel, bytes).await.is_ok(),
                    Step::Stderr(bytes) => handle.extended_data(channel, 1, bytes).await.is_ok(),
                    Step::Eof => handle.eof(channel).await.is_ok(),
                    Step::ExitStatus(code) => {
                        handle.exit_status_request(channel, code).await.is_ok()
                    }
                    Step::ExitSignal(sig, core) => handle
                        .exit_signal_request(channel, sig, core, String::new(), String::new())
                        .await
                        .is_ok(),
                    Step::Close => handle.close(channel).await.is_ok(),
                    Step::Disconnect => {
                        let _ = handle
                            .disconnect(
                                russh::Disconnect::ByApplication,
                                "going away".into(),
                                "".into(),
                            )
                            .await;
                        false
                    }
                    Step::Hang => {
                        std::future::pending::<()>().await;
                        false
                    }
                };
                if !sent {
                    return;
                }
            }
        });
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let script = self.script.sftp.clone();
        match (name, self.channels.remove(&channel)) {
            ("sftp", Some(ch)) if !matches!(script, SftpScript::Refused) => {
                session.channel_success(channel)?;
                self.tasks.spawn(async move {
                    let _ = serve_sftp(ch.into_stream(), script).await;
                });
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }
}

// SFTP version 3 (draft-ietf-secsh-filexfer-02), written by hand so that names can be any
// bytes and lengths any number.
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_LSTAT: u8 = 7;
const FXP_FSTAT: u8 = 8;
const FXP_OPENDIR: u8 = 11;
const FXP_READDIR: u8 = 12;
const FXP_REALPATH: u8 = 16;
const FXP_STAT: u8 = 17;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_NAME: u8 = 104;
const FXP_ATTRS: u8 = 105;
const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
const FX_NO_SUCH_FILE: u32 = 2;
const FX_OP_UNSUPPORTED: u32 = 8;

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Size, permissions and times.
fn put_attrs(out: &mut Vec<u8>, dir: bool) {
    out.extend_from_slice(&(1u32 | 4 | 8).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    let mode: u32 = if dir { 0o040755 } else { 0o100644 };
    out.extend_from_slice(&mode.to_be_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
}

fn packet(kind: u8, id: Option<u32>, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    let len = 1 + id.map_or(0, |_| 4) + body.len();
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.push(kind);
    if let Some(id) = id {
        p.extend_from_slice(&id.to_be_bytes());
    }
    p.extend_from_slice(body);
    p
}

fn status(id: u32, code: u32) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    put_string(&mut body, b"fake");
    put_string(&mut body, b"");
    packet(FXP_STATUS, Some(id), &body)
}

fn take_string(body: &[u8]) -> Vec<u8> {
    let Some(len) = body.get(..4) else {
        return Vec::new();
    };
    let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
    body.get(4..4 + len).unwrap_or_default().to_vec()
}

async fn serve_sftp(
    mut stream: russh::ChannelStream<Msg>,
    script: SftpScript,
) -> std::io::Result<()> {
    let entries = match &script {
        SftpScript::Listing(entries) => entries.clone(),
        _ => Vec::new(),
    };
    let mut listed: HashMap<Vec<u8>, bool> = HashMap::new();
    loop {
        let len = stream.read_u32().await? as usize;
        if len == 0 || len > 1 << 20 {
            return Ok(());
        }
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        let kind = buf[0];
        if kind == FXP_INIT {
            stream
                .write_all(&packet(FXP_VERSION, None, &3u32.to_be_bytes()))
                .await?;
            continue;
        }
        let id = u32::from_be_bytes(buf.get(1..5).unwrap_or(&[0; 4]).try_into().unwrap());
        let body = buf.get(5..).unwrap_or_default();
        let reply = match kind {
            FXP_REALPATH => {
                let mut b = 1u32.to_be_bytes().to_vec();
                put_string(&mut b, b"/");
                put_string(&mut b, b"/");
                put_attrs(&mut b, true);
                packet(FXP_NAME, Some(id), &b)
            }
            FXP_STAT | FXP_LSTAT => {
                let path = take_string(body);
                let dir = if path == b"/tree" || path == b"/" {
                    Some(true)
                } else {
                    entries
                        .iter()
                        .find(|e| {
                            let mut full = b"/tree/".to_vec();
                            full.extend_from_slice(&e.name);
                            full == path
                        })
                        .map(|e| e.dir)
                };
                match dir {
                    Some(dir) => {
                        let mut b = Vec::new();
                        put_attrs(&mut b, dir);
                        packet(FXP_ATTRS, Some(id), &b)
                    }
                    None => status(id, FX_NO_SUCH_FILE),
                }
            }
            FXP_FSTAT => {
                let mut b = Vec::new();
                put_attrs(&mut b, false);
                packet(FXP_ATTRS, Some(id), &b)
            }
            FXP_OPENDIR => {
                let path = take_string(body);
                let mut b = Vec::new();
                put_string(&mut b, &path);
                listed.insert(path, false);
                packet(FXP_HANDLE, Some(id), &b)
            }
            FXP_READDIR => {
                let handle = take_string(body);
                let done = listed.get(&handle).copied().unwrap_or(true);
                if done {
                    status(id, FX_EOF)
                } else if let SftpScript::OversizedReaddir(len) = script {
                    // The header of a NAME packet of `len` bytes, and nothing more.
                    let mut p = len.to_be_bytes().to_vec();
                    p.push(FXP_NAME);
                    p.extend_from_slice(&id.to_be_bytes());
                    stream.write_all(&p).await?;
                    stream.flush().await?;
                    std::future::pending::<Vec<u8>>().await
                } else {
                    listed.insert(handle.clone(), true);
                    let mut b = Vec::new();
                    let in_tree = handle == b"/tree";
                    let shown: Vec<&Entry> = if in_tree {
                        entries.iter().collect()
                    } else {
                        Vec::new()
                    };
                    b.extend_from_slice(&(shown.len() as u32).to_be_bytes());
                    for e in shown {
                        put_string(&mut b, &e.name);
                        put_string(&mut b, &e.name);
                        put_attrs(&mut b, e.dir);
                    }
                    packet(FXP_NAME, Some(id), &b)
                }
            }
            FXP_OPEN => {
                let mut b = Vec::new();
                put_string(&mut b, b"file");
                packet(FXP_HANDLE, Some(id), &b)
            }
            FXP_READ => status(id, FX_EOF),
            FXP_CLOSE => status(id, FX_OK),
            _ => status(id, FX_OP_UNSUPPORTED),
        };
        stream.write_all(&reply).await?;
        stream.flush().await?;
    }
}
