//! The algorithm preference lists offered in the key exchange.

/// host: one for each plain algorithm offered, in the same order, without the SHA-1
/// `ssh-rsa-cert-v01@openssh.com` that OpenSSH no longer offers by default.
pub(crate) fn certificate_algorithms(
    plain: &[russh::keys::Algorithm],
) -> Vec<russh::keys::Algorithm> {
    plain
        .iter()
        .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
        .cloned()
        .collect()
}

/// The key exchange methods offered, best first: russh's default order (the
/// post-quantum hybrid, curve25519, then finite-field Diffie-Hellman) with the NIST-curve
/// ECDH methods after curve25519, as OpenSSH orders them, so that servers limited to
/// them (older ones, FIPS configurations) are reached.
pub(crate) fn kex_order() -> Vec<russh::kex::Name> {
    use russh::kex::{
        CURVE25519, CURVE25519_PRE_RFC_8731, ECDH_SHA2_NISTP256, ECDH_SHA2_NISTP384,
        ECDH_SHA2_NISTP521,
    };
    let nist = [ECDH_SHA2_NISTP256, ECDH_SHA2_NISTP384, ECDH_SHA2_NISTP521];
    let mut order: Vec<russh::kex::Name> = russh::Preferred::default()
        .kex
        .iter()
        .filter(|n| !nist.contains(n))
        .copied()
        .collect();
    let after_curve25519 = order
        .iter()
        .rposition(|n| *n == CURVE25519 || *n == CURVE25519_PRE_RFC_8731)
        .map_or(0, |i| i + 1);
    order.splice(after_curve25519..after_curve25519, nist);
    order
}

/// The ciphers offered, best first: the AES-GCM modes first where the CPU has AES and
/// carry-less multiply instructions (they then cost a fraction of chacha20-poly1305 on
/// both ends: OpenSSH's sshd uses OpenSSL's AES-NI code), chacha20-poly1305 first
/// elsewhere, as OpenSSH orders them; then aes128-gcm (for servers limited to it, FIPS
/// configurations) and the CTR modes. The server picks the first one it also allows.
pub(crate) fn cipher_order() -> Vec<russh::cipher::Name> {
    use russh::cipher::{
        AES_128_CTR, AES_128_GCM, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305,
    };
    let (first, second) = if aes_in_hardware() {
        (AES_256_GCM, CHACHA20_POLY1305)
    } else {
        (CHACHA20_POLY1305, AES_256_GCM)
    };
    vec![
        first,
        second,
        AES_128_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ]
}

#[cfg(target_arch = "x86_64")]
fn aes_in_hardware() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn aes_in_hardware() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn aes_in_hardware() -> bool {
    false
}
