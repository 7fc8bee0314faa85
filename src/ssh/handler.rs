//! The russh client handler: the host key check and its verdict, and how the connection
//! ended.

use std::sync::{Arc, Mutex};

use russh::client::{self, DisconnectReason};
use russh::keys::PublicKeyOrCertificate;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::diagnosis::{ending_of, Diagnosis, Ending};
use crate::ssh::jump::OpenFailures;
use crate::ssh::known_hosts::{
    describe_key, fingerprint, CertificateStatus, HostKeyPolicy, HostKeyStatus, KnownHosts,
    Recorded,
};

/// What the host key check decided, kept for after the handshake.
#[derive(Default)]
pub(crate) struct HostKeyVerdict {
    pub(crate) rejection: Option<Error>,
    /// Policy off and the key differs from the recorded one: no passwords.
    pub(crate) mismatch_accepted: bool,
}

pub(crate) struct ClientHandler {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) known_hosts: KnownHosts,
    /// The files as read before the handshake (taken by the first key check).
    pub(crate) snapshot: Option<Result<Recorded>>,
    pub(crate) policy: HostKeyPolicy,
    pub(crate) verdict: Arc<Mutex<HostKeyVerdict>>,
    /// Why the connection ended, for the requests that then fail.
    pub(crate) diagnosis: Arc<Diagnosis>,
    /// Channel open failures with the server's descriptions (for jumps).
    pub(crate) open_failures: Arc<OpenFailures>,
}

impl ClientHandler {
    fn reject(&self, error: Error) -> bool {
        if let Ok(mut v) = self.verdict.lock() {
            v.rejection = Some(error);
        }
        false
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let snapshot = match self.snapshot.take() {
            Some(s) => s,
            // A later key exchange (rekey): read the files again.
            None => {
                let known_hosts = self.known_hosts.clone();
                tokio::task::spawn_blocking(move || known_hosts.read())
                    .await
                    .map_err(|_| russh::Error::Inconsistent)?
            }
        };
        let recorded = match snapshot {
            Ok(recorded) => recorded,
            Err(e) => return Ok(self.reject(e)),
        };
        // A host certificate is checked first; one that is not accepted leaves its plain
        // key to be checked like any host key, as OpenSSH does (the reason is kept for
        // the messages).
        let (key, certificate_problem) = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (key.clone(), None),
            PublicKeyOrCertificate::Certificate(cert) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match recorded.check_certificate(&self.host, self.port, cert, now) {
                    CertificateStatus::Valid(at) => {
                        tracing::debug!(
                            "{}: host certificate {:?} ({}) signed by the CA at {at}",
                            self.host,
                            cert.key_id(),
                            describe_key(cert.public_key())
                        );
                        return Ok(true);
                    }
                    CertificateStatus::Revoked(message) => {
                        return Ok(self.reject(Error::new(ErrorKind::HostKeyChanged, message)))
                    }
                    CertificateStatus::Invalid(reason) => (
                        russh::keys::PublicKey::new(cert.public_key().clone(), ""),
                        Some(reason),
                    ),
                }
            }
        };
        let fp = fingerprint(&key);
        let algo = key.algorithm().to_string();
        // "REASON; " before a message about the plain key of a certificate not accepted.
        let because = certificate_problem
            .as_deref()
            .map_or(String::new(), |reason| format!("{reason}; "));
        let its = if certificate_problem.is_some() {
            "its plain key"
        } else {
            "host key"
        };
        let status = recorded.check(&self.host, self.port, &key);
        match (status, self.policy) {
            (HostKeyStatus::Known(at), _) => {
                if certificate_problem.is_some() {
                    tracing::warn!(
                        "{}: {because}accepted because {its} {algo} {fp} is recorded at {at}",
                        self.host
                    );
                }
                Ok(true)
            }
            (HostKeyStatus::Revoked(at), _) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyChanged,
                format!("{because}{its} {algo} {fp} is marked @revoked in {at}"),
            ))),
            (HostKeyStatus::Changed(at), HostKeyPolicy::Off) => {
                tracing::warn!(
                    "{}: {because}{its} {algo} {fp} differs from the one recorded at {at}; \
                     accepted because host key checking is off; password authentication disabled",
                    self.host
                );
                if let Ok(mut v) = self.verdict.lock() {
                    v.mismatch_accepted = true;
                }
                Ok(true)
            }
            (HostKeyStatus::Changed(at), _) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyChanged,
                format!(
                    "{because}HOST KEY CHANGED: the server offered {algo} {fp}, which does not \
                     match the key recorded at {at}; refusing to connect (someone may be \
                     intercepting the connection; if the host was really reinstalled, remove \
                     that line)"
                ),
            ))),
            (HostKeyStatus::Unknown, HostKeyPolicy::Strict) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyUnknown,
                format!(
                    "{because}{its} {algo} {fp} is not in known_hosts ({}){}",
                    self.known_hosts.display_paths(),
                    if certificate_problem.is_some() {
                        // accept-new would not learn it either (below).
                        " either; refusing under the strict policy (renew the certificate \
                         or record the key)"
                    } else {
                        "; refusing under the strict policy (use accept-new to learn it)"
                    }
                ),
            ))),
            // rexec differs from OpenSSH here, which learns the plain key: a host that
            // presents a certificate for a name an @cert-authority line covers is meant to
            // be checked by its CA, and a learned key would hide the fault for good.
            (HostKeyStatus::Unknown, HostKeyPolicy::AcceptNew) if certificate_problem.is_some() => {
                Ok(self.reject(Error::new(
                    ErrorKind::HostKeyUnknown,
                    format!(
                        "{because}{its} {algo} {fp} is not in known_hosts ({}) either; \
                         refusing under accept-new, which does not learn the key of a host \
                         whose certificate failed (renew the certificate or record the key)",
                        self.known_hosts.display_paths(),
                    ),
                )))
            }
            (HostKeyStatus::Unknown, HostKeyPolicy::AcceptNew) => {
                let (known_hosts, host, port) =
                    (self.known_hosts.clone(), self.host.clone(), self.port);
                let learn_key = key.clone();
                let learned =
                    tokio::task::spawn_blocking(move || known_hosts.learn(&host, port, &learn_key))
                        .await
                        .map_err(|_| russh::Error::Inconsistent)?;
                match learned {
                    Ok(HostKeyStatus::Unknown) | Ok(HostKeyStatus::Known(_)) => {
                        tracing::info!("{}: learned host key {algo} {fp}", self.host);
                        Ok(true)
                    }
                    Ok(HostKeyStatus::Changed(at)) | Ok(HostKeyStatus::Revoked(at)) => Ok(self
                        .reject(Error::new(
                            ErrorKind::HostKeyChanged,
                            format!(
                                "{because}HOST KEY CHANGED: the server offered {algo} {fp}, but \
                                 another key was recorded at {at} meanwhile; refusing to connect"
                            ),
                        ))),
                    Err(e) => Ok(self.reject(e)),
                }
            }
            (HostKeyStatus::Unknown, HostKeyPolicy::Off) => {
                tracing::warn!(
                    "{}: {because}{its} {algo} {fp} accepted without checking (policy off)",
                    self.host
                );
                Ok(true)
            }
        }
    }

    async fn channel_open_failure(
        &mut self,
        _channel: russh::ChannelId,
        reason: russh::ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.open_failures.record(reason.code(), description);
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                tracing::debug!(
                    "{}: the server disconnected ({:?}): {}",
                    self.host,
                    info.reason_code,
                    info.message
                );
                self.diagnosis
                    .set(if matches!(info.reason_code, russh::Disconnect::MACError) {
                        Ending::Integrity
                    } else {
                        Ending::ServerDisconnect {
                            reason: format!("{:?}", info.reason_code),
                            message: info.message,
                        }
                    });
                Ok(())
            }
            DisconnectReason::Error(e) => {
                tracing::debug!("{}: connection ended: {e}", self.host);
                self.diagnosis.set(ending_of(&e));
                Err(e)
            }
        }
    }
}
