//! The authentication flow: which methods in which order, public keys from files, the
//! agent and certificates, keyboard-interactive and password.

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::PrivateKeyWithHashAlg;
use russh::MethodKind;
use russh::MethodSet;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::auth::{describe_user_certificate, Agent, AuthMethod};
use crate::ssh::connect_options::ConnectOptions;
use crate::ssh::diagnosis::{quote, Diagnosis, Ending, INTEGRITY_MESSAGE};
use crate::ssh::handler::ClientHandler;
use crate::ssh::session::russh_error;
use crate::ssh::signer::{AgentKeySigner, KeySigner};

/// Agent conversations in flight at once, across every connection of the process.
static AGENT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// sshd's default `MaxAuthTries`: it disconnects at this many failed attempts (the first
/// "none" request does not count; each refused public key does, queries included).
const DEFAULT_MAX_AUTH_TRIES: usize = 6;

/// What authentication has tried so far, for the error message.
#[derive(Default)]
struct Attempts {
    /// Methods tried, as shown to the user.
    tried: Vec<String>,
    /// Requests the server refused (what sshd counts against `MaxAuthTries`).
    failures: usize,
}

/// Asks the server which methods it allows, then tries ours in the documented order; when
/// the server closes the connection on the way, says so (and why, as far as known).
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    mismatch_accepted: bool,
    diagnosis: &Diagnosis,
) -> Result<()> {
    let mut attempts = Attempts::default();
    let result = try_methods(handle, options, mismatch_accepted, &mut attempts).await;
    let error = match result {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if !handle.is_closed() && error.kind() != ErrorKind::Disconnected {
        return Err(error);
    }
    let user = options.user.as_str();
    let said = match diagnosis.ending() {
        Some(Ending::Integrity) => return Err(Error::new(ErrorKind::Protocol, INTEGRITY_MESSAGE)),
        Some(Ending::ServerDisconnect { message, .. }) if !message.is_empty() => {
            format!("; it said \"{}\"", quote(message.as_bytes()))
        }
        _ => String::new(),
    };
    let tried = list_or_none(&attempts.tried);
    let message = if attempts.failures == 0 {
        format!(
            "the server closed the connection during authentication as {user:?}{said}; \
             tried: {tried}"
        )
    } else {
        format!(
            "the server closed the connection after {} authentication attempts (too many \
             keys offered? sshd's MaxAuthTries is {DEFAULT_MAX_AUTH_TRIES} by default; try \
             --no-agent or an explicit -I key file){said}; tried: {tried}",
            attempts.failures
        )
    };
    Err(Error::new(ErrorKind::Auth, message).with_source(error))
}

/// Where authentication stands: the methods the server still allows, and how many
/// public key failures may pass before the password's turn.
struct AuthState {
    allowed: Option<MethodSet>,
    key_failures_allowed: usize,
}

impl AuthState {
    fn allows(&self, m: MethodKind) -> bool {
        self.allowed.as_ref().is_none_or(|set| set.contains(&m))
    }
}

/// The methods in the order of [`Credentials::methods`] (by default: identity files and
/// agent keys, keyboard-interactive, password).
async fn try_methods(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    mismatch_accepted: bool,
    attempts: &mut Attempts,
) -> Result<()> {
    let user = options.user.as_str();
    let creds = &options.credentials;
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");
    let order = creds.method_order();

    // Like OpenSSH, ask with "none" first: the answer lists the methods the server allows,
    // so no attempt is spent on a method it would refuse (MaxAuthTries counts them).
    // Unless public keys come first and a key file is configured: then that key is the
    // first attempt anyway, and its answer lists the allowed methods just as well; this
    // saves a round trip. (sshd does not count "none" against MaxAuthTries, but it does
    // count a refused key, which is spent here either way.)
    // (Not for certificate files alone: one whose key is in no file nor agent is never
    // offered, and the error should still say what the server allows.)
    let keys_first =
        order.first() == Some(&AuthMethod::PublicKey) && !creds.identities().is_empty();
    let allowed = if keys_first {
        None
    } else {
        match handle.authenticate_none(user).await.map_err(auth_err)? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure {
                remaining_methods, ..
            } => Some(remaining_methods),
        }
    };
    let mut state = AuthState {
        allowed,
        key_failures_allowed: usize::MAX,
    };

    // A password the server may take, tried after the keys, gets its turn: agent keys
    // stop one attempt short of sshd's default MaxAuthTries, which would otherwise end the
    // connection first.
    let password_methods = [AuthMethod::KeyboardInteractive, AuthMethod::Password];
    let password_after_keys = order
        .iter()
        .position(|m| *m == AuthMethod::PublicKey)
        .is_some_and(|keys| {
            order
                .iter()
                .skip(keys)
                .any(|m| password_methods.contains(m))
        });
    let password_turn = creds.password_secret().is_some()
        && !mismatch_accepted
        && password_after_keys
        && (state.allows(MethodKind::KeyboardInteractive) || state.allows(MethodKind::Password));
    if password_turn {
        state.key_failures_allowed = DEFAULT_MAX_AUTH_TRIES - 1;
    }

    let mut mismatch_noted = false;
    for method in order {
        match method {
            AuthMethod::PublicKey => {
                if public_keys(handle, options, &mut state, attempts).await? {
                    return Ok(());
                }
            }
            AuthMethod::KeyboardInteractive | AuthMethod::Password => {
                // The password, unless the host key could not be verified.
                let Some(password) = creds.password_secret() else {
                    continue;
                };
                if mismatch_accepted {
                    if !mismatch_noted {
                        attempts
                            .tried
                            .push("password (disabled: the host key did not match)".to_owned());
                        mismatch_noted = true;
                    }
                    continue;
                }
                if *method == AuthMethod::KeyboardInteractive {
                    if !state.allows(MethodKind::KeyboardInteractive) {
                        continue;
                    }
                    attempts.tried.push("keyboard-interactive".to_owned());
                    match keyboard_interactive(handle, user, password.expose()).await? {
                        None => return Ok(()),
                        Some(remaining) => {
                            attempts.failures += 1;
                            state.allowed = Some(remaining);
                        }
                    }
                } else {
                    if !state.allows(MethodKind::Password) {
                        continue;
                    }
                    attempts.tried.push("password".to_owned());
                    match handle
                        .authenticate_password(user, password.expose())
                        .await
                        .map_err(auth_err)?
                    {
                        AuthResult::Success => return Ok(()),
                        AuthResult::Failure {
                            remaining_methods, ..
                        } => {
                            attempts.failures += 1;
                            state.allowed = Some(remaining_methods);
                        }
                    }
                }
            }
        }
    }

    if handle.is_closed() {
        return Err(Error::new(
            ErrorKind::Disconnected,
            "connection lost while authenticating",
        ));
    }
    let allowed = match &state.allowed {
        Some(set) => set
            .iter()
            .map(|m| <&str>::from(m).to_owned())
            .collect::<Vec<_>>()
            .join(","),
        None => "unknown".to_owned(),
    };
    let methods = if order == AuthMethod::DEFAULT_ORDER {
        String::new()
    } else {
        format!(
            " (methods configured: {})",
            order
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Err(Error::new(
        ErrorKind::Auth,
        format!(
            "authentication failed for user {user:?}; tried: {}{methods}; the server allows: \
             {allowed}",
            list_or_none(&attempts.tried)
        ),
    ))
}

/// Public key authentication: certificate files, identity files (each with its
/// certificate first), then the agent's certificates and keys within the budget. Whether
/// one was accepted.
async fn public_keys(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    state: &mut AuthState,
    attempts: &mut Attempts,
) -> Result<bool> {
    let user = options.user.as_str();
    let creds = &options.credentials;
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");

    let explicit_certificates = creds.certificates();
    let mut offered_certificates: Vec<Vec<u8>> = Vec::new();
    let mut agent: Option<AgentKeys> = None;
    let agent_socket = match creds.agent_setting() {
        Agent::Off => None,
        Agent::FromEnv => std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from),
        Agent::Socket(p) => Some(p.clone()),
    };

    // 1. Certificates given as files, each signed by the key file or else the agent key
    //    that holds its private key.
    for certificate in explicit_certificates {
        if !state.allows(MethodKind::PublicKey) {
            break;
        }
        let cert = certificate.certificate();
        let described = format!(
            "certificate {} ({})",
            certificate.path().display(),
            certificate.describe(user)
        );
        let file_key = creds
            .identities()
            .iter()
            .find(|id| id.key().public_key().key_data() == cert.public_key());
        let outcome = if let Some(identity) = file_key {
            attempts.tried.push(described);
            let mut signer = KeySigner {
                key: identity.key().clone(),
            };
            offer_certificate(handle, user, cert, &mut signer, ErrorKind::KeyFile).await?
        } else {
            if agent.is_none() {
                if let Some(socket) = &agent_socket {
                    agent = Some(AgentKeys::open(socket).await?);
                }
            }
            let agent_key = agent.as_ref().and_then(|a| {
                a.keys
                    .iter()
                    .find(|k| k.key_data() == cert.public_key())
                    .cloned()
            });
            match (agent.as_mut(), agent_key) {
                (Some(a), Some(key)) => {
                    attempts.tried.push(described);
                    let mut signer = AgentKeySigner {
                        agent: &mut a.client,
                        key,
                    };
                    offer_certificate(handle, user, cert, &mut signer, ErrorKind::Agent).await?
                }
                _ => {
                    attempts.tried.push(format!(
                        "{described}: not offered, its private key is neither an identity \
                         file nor in the ssh-agent"
                    ));
                    continue;
                }
            }
        };
        offered_certificates.push(cert.to_bytes().unwrap_or_default());
        match outcome {
            None => return Ok(true),
            Some(remaining) => {
                attempts.failures += 1;
                state.allowed = Some(remaining);
            }
        }
    }

    // 2. Identity files, all of them: the user named each one; a key's certificate first.
    for identity in creds.identities() {
        if let Some(certificate) = identity.certificate_to_offer(!explicit_certificates.is_empty())
        {
            let cert = certificate.certificate();
            let blob = cert.to_bytes().unwrap_or_default();
            if state.allows(MethodKind::PublicKey) && !offered_certificates.contains(&blob) {
                attempts.tried.push(format!(
                    "certificate {} ({})",
                    certificate.path().display(),
                    certificate.describe(user)
                ));
                let mut signer = KeySigner {
                    key: identity.key().clone(),
                };
                let outcome =
                    offer_certificate(handle, user, cert, &mut signer, ErrorKind::KeyFile).await?;
                offered_certificates.push(blob);
                match outcome {
                    None => return Ok(true),
                    Some(remaining) => {
                        attempts.failures += 1;
                        state.allowed = Some(remaining);
                    }
                }
            }
        }
        if !state.allows(MethodKind::PublicKey) {
            break;
        }
        let hash = if identity.is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(auth_err)?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(identity.key().clone(), hash);
        attempts
            .tried
            .push(format!("publickey {}", identity.path().display()));
        match handle
            .authenticate_publickey(user, key)
            .await
            .map_err(auth_err)?
        {
            AuthResult::Success => return Ok(true),
            AuthResult::Failure {
                remaining_methods, ..
            } => {
                attempts.failures += 1;
                state.allowed = Some(remaining_methods);
            }
        }
    }

    // 3. The agent: its certificates, then its keys, within the budget.
    if agent.is_none() && state.allows(MethodKind::PublicKey) {
        if let Some(socket) = &agent_socket {
            agent = Some(AgentKeys::open(socket).await?);
        }
    }
    if let Some(agent) = agent
        .as_mut()
        .filter(|_| state.allows(MethodKind::PublicKey))
    {
        for (cert, comment) in agent.certificates.clone() {
            if !state.allows(MethodKind::PublicKey)
                || attempts.failures >= state.key_failures_allowed
            {
                break;
            }
            let blob = cert.to_bytes().unwrap_or_default();
            if offered_certificates.contains(&blob) {
                continue;
            }
            // IdentitiesOnly: only certificates for a configured key, as OpenSSH.
            let plain = russh::keys::PublicKey::new(cert.public_key().clone(), "");
            let configured = creds
                .identities()
                .iter()
                .any(|id| id.key().public_key().key_data() == cert.public_key());
            if !configured && !creds.agent_may_offer(&plain) {
                continue;
            }
            attempts.tried.push(format!(
                "certificate from the agent {comment:?} ({})",
                describe_user_certificate(&cert, user)
            ));
            let outcome =
                offer_certificate(handle, user, &cert, &mut agent.client, ErrorKind::Agent).await?;
            offered_certificates.push(blob);
            match outcome {
                None => return Ok(true),
                Some(remaining) => {
                    attempts.failures += 1;
                    state.allowed = Some(remaining);
                }
            }
        }
        let total = agent.keys.len();
        let keys: Vec<_> = agent
            .keys
            .iter()
            .filter(|k| creds.agent_may_offer(k))
            .cloned()
            .collect();
        let usable = keys.len();
        let entry = attempts.tried.len();
        if total > 0 || agent.certificates.is_empty() {
            attempts.tried.push(if usable == total {
                format!("agent ({total} keys)")
            } else {
                format!("agent ({usable} of {total} keys: IdentitiesOnly)")
            });
        }
        let mut offered = 0;
        let mut held_back = false;
        for public in keys {
            if !state.allows(MethodKind::PublicKey) {
                break;
            }
            if attempts.failures >= state.key_failures_allowed {
                held_back = true;
                break;
            }
            offered += 1;
            let hash = if matches!(public.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(auth_err)?
                    .flatten()
            } else {
                None
            };
            match handle
                .authenticate_publickey_with(user, public, hash, &mut agent.client)
                .await
            {
                Ok(AuthResult::Success) => return Ok(true),
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) => {
                    attempts.failures += 1;
                    state.allowed = Some(remaining_methods);
                }
                // The server went away while the agent signed: not the agent's fault.
                Err(_) if handle.is_closed() => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        "connection lost while authenticating",
                    ))
                }
                Err(e) => {
                    return Err(
                        Error::new(ErrorKind::Agent, "the ssh-agent failed to sign").with_source(e)
                    )
                }
            }
        }
        if offered < usable {
            if let Some(entry) = attempts.tried.get_mut(entry) {
                *entry = if held_back {
                    format!(
                        "agent ({offered} of {total} keys; the rest held back so that the \
                         password gets its turn within sshd's MaxAuthTries)"
                    )
                } else {
                    format!("agent ({offered} of {total} keys)")
                };
            }
        }
    }
    Ok(false)
}

/// The ssh-agent's identities, split into certificates and plain keys, with the
/// connection to it (holding one of the process's agent slots).
struct AgentKeys {
    client: AgentClient<tokio::net::UnixStream>,
    certificates: Vec<(russh::keys::Certificate, String)>,
    keys: Vec<russh::keys::PublicKey>,
    _slot: Option<tokio::sync::SemaphorePermit<'static>>,
}

impl AgentKeys {
    async fn open(socket: &std::path::Path) -> Result<AgentKeys> {
        // At high fan-out an agent refuses connections (EAGAIN): a few at a time.
        let slot = AGENT_SLOTS.acquire().await.ok();
        let mut client = AgentClient::connect_uds(socket).await.map_err(|e| {
            Error::new(
                ErrorKind::Agent,
                format!("cannot reach the ssh-agent at {}", socket.display()),
            )
            .with_source(e)
        })?;
        let identities = client.request_identities().await.map_err(|e| {
            Error::new(ErrorKind::Agent, "cannot list the ssh-agent's keys").with_source(e)
        })?;
        let mut certificates = Vec::new();
        let mut keys = Vec::new();
        for identity in identities {
            match identity {
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    // A host certificate in the agent is no login (OpenSSH skips it too).
                    if certificate.cert_type().is_user() {
                        certificates.push((certificate, comment));
                    }
                }
                AgentIdentity::PublicKey { key, .. } => keys.push(key),
            }
        }
        Ok(AgentKeys {
            client,
            certificates,
            keys,
            _slot: slot,
        })
    }
}

/// Offers `certificate`, signed by `signer`: `None` when the server accepted it, or the
/// methods it still allows. A signer that fails is `failure_kind` (the key file's or the
/// agent's fault), unless the connection went away meanwhile.
async fn offer_certificate<S>(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    certificate: &russh::keys::Certificate,
    signer: &mut S,
    failure_kind: ErrorKind,
) -> Result<Option<MethodSet>>
where
    S: russh::Signer,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let hash = if matches!(certificate.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
        handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| russh_error(e, "authenticating"))?
            .flatten()
    } else {
        None
    };
    match handle
        .authenticate_certificate_with(user, certificate.clone(), hash, signer)
        .await
    {
        Ok(AuthResult::Success) => Ok(None),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => Ok(Some(remaining_methods)),
        Err(_) if handle.is_closed() => Err(Error::new(
            ErrorKind::Disconnected,
            "connection lost while authenticating",
        )),
        Err(e) => Err(Error::new(
            failure_kind,
            format!(
                "cannot sign with the key of certificate {:?}",
                certificate.key_id()
            ),
        )
        .with_source(e)),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing (no key, agent or password available)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Returns `None` on success, or the methods the server still allows.
async fn keyboard_interactive(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    password: &str,
) -> Result<Option<MethodSet>> {
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");
    let mut response = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(auth_err)?;
    // PAM asks for the password, then sends an empty round; a few more rounds are allowed
    // (banners, information), but a server that keeps asking is cut off.
    let mut password_sent = false;
    for _ in 0..8 {
        match response {
            KeyboardInteractiveAuthResponse::Success => return Ok(None),
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods, ..
            } => return Ok(Some(remaining_methods)),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let mut answers = Vec::with_capacity(prompts.len());
                for prompt in &prompts {
                    // Only a hidden prompt gets the password, and only once: a second
                    // request means the first answer was wrong, and an empty answer lets
                    // the server end the exchange with a failure.
                    if !prompt.echo && !password_sent {
                        answers.push(password.to_owned());
                        password_sent = true;
                    } else {
                        answers.push(String::new());
                    }
                }
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(auth_err)?;
            }
        }
    }
    Err(Error::new(
        ErrorKind::Auth,
        "keyboard-interactive authentication did not finish after 8 rounds",
    ))
}
