//! Signing a certificate login: russh's `authenticate_certificate_with` sends the
//! certificate and asks a [`russh::Signer`] for the signature, which comes from the private
//! key of an identity file or from a key in the ssh-agent.
//!
//! russh's own file-key certificate method signs RSA keys with SHA-1 only
//! (`ssh-rsa-cert-v01@openssh.com`), which OpenSSH refuses since 8.8; these signers honour
//! the SHA-2 hash the server asked for.

use std::future::Future;
use std::sync::Arc;

use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::signature::Signer as _;
use russh::keys::ssh_key::encoding::Encode;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::ssh_key::{HashAlg, Signature};
use russh::keys::{PrivateKey, PublicKey};

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// The connection's event loop is gone.
    #[error(transparent)]
    Send(#[from] russh::SendError),
    /// The key could not sign, or the signature not be encoded.
    #[error("cannot sign with the key: {0}")]
    Key(String),
    /// The agent refused or failed.
    #[error(transparent)]
    Agent(#[from] russh::keys::Error),
}

/// Signs with a private key in memory.
pub(crate) struct KeySigner {
    pub(crate) key: Arc<PrivateKey>,
}

impl russh::Signer for KeySigner {
    type Error = SignError;

    fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let signed = append_signature(&self.key, hash_alg, to_sign);
        async move { signed }
    }
}

/// `to_sign` followed by the SSH signature blob over it (as a length-prefixed string, as
/// russh's agent client appends it).
fn append_signature(
    key: &PrivateKey,
    hash_alg: Option<HashAlg>,
    mut to_sign: Vec<u8>,
) -> Result<Vec<u8>, SignError> {
    let key_error = |e: &dyn std::fmt::Display| SignError::Key(e.to_string());
    let signature: Signature = match key.key_data() {
        KeypairData::Rsa(rsa) => (rsa, hash_alg).try_sign(&to_sign),
        _ => key.try_sign(&to_sign),
    }
    .map_err(|e| key_error(&e))?;
    let blob = signature.encode_vec().map_err(|e| key_error(&e))?;
    blob.encode(&mut to_sign).map_err(|e| key_error(&e))?;
    Ok(to_sign)
}

/// Signs with the agent's plain key `key`, for a certificate given as a file whose private
/// key is in the agent: OpenSSH's agent looks identities up by the exact blob, so it is
/// asked with the plain key, as OpenSSH's client does.
pub(crate) struct AgentKeySigner<'a> {
    pub(crate) agent: &'a mut AgentClient<tokio::net::UnixStream>,
    pub(crate) key: PublicKey,
}

impl russh::Signer for AgentKeySigner<'_> {
    type Error = SignError;

    fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let identity = AgentIdentity::from(self.key.clone());
        async move {
            self.agent
                .sign_request(&identity, hash_alg, to_sign)
                .await
                .map_err(SignError::from)
        }
    }
}
