//! Decrypting the private key formats that russh does not decrypt itself, so that every
//! encrypted key `ssh-keygen` reads can be used:
//!
//! - legacy PEM (`-----BEGIN RSA PRIVATE KEY-----` / `EC PRIVATE KEY` with the RFC 1421
//!   headers `Proc-Type: 4,ENCRYPTED` and `DEK-Info: CIPHER,IV`), as written by
//!   `ssh-keygen -m PEM` and `openssl rsa/ec -aes256`: the key is OpenSSL's
//!   `EVP_BytesToKey` (MD5, one round, the IV's first 8 bytes as salt), the cipher a CBC
//!   mode (AES-128/192/256, DES-EDE3, DES) with PKCS#7 padding;
//! - encrypted PKCS#8 (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, RFC 5958 / RFC 8018), as
//!   written by `ssh-keygen -m PKCS8` and `openssl pkcs8 -topk8`: PBES2 with PBKDF2
//!   (HMAC-SHA1/224/256/384/512) or scrypt, and AES-CBC, AES-GCM, DES-EDE3-CBC or DES-CBC.
//!
//! Decryption yields the plain DER key, handed back as the unencrypted PEM text russh's
//! decoder reads. Crypto primitives come from RustCrypto crates; this module only picks
//! them and checks the result.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
use md5::{Digest, Md5};
use pkcs8::der::{self, Decode, Reader};
use pkcs8::spki::{AlgorithmIdentifierRef, ObjectIdentifier};
use zeroize::Zeroizing;

/// What a key file holds, as far as encryption goes.
pub(crate) enum Encrypted {
    /// Legacy PEM with `Proc-Type: 4,ENCRYPTED`.
    LegacyPem(pem::Pem),
    /// `ENCRYPTED PRIVATE KEY`: the DER of an `EncryptedPrivateKeyInfo`.
    Pkcs8(Vec<u8>),
}

/// Why a key could not be decrypted.
#[derive(Debug)]
pub(crate) enum DecryptError {
    /// The padding or the structure of the plaintext is wrong: a wrong passphrase.
    WrongPassphrase,
    /// The file names a cipher or key derivation this module does not implement.
    Unsupported(String),
    /// The file's encryption headers or structure are damaged.
    Malformed(String),
}

/// Finds out whether `text` is a key in one of the encrypted formats of this module.
/// Anything else (plain PEM and PKCS#8, the OpenSSH format encrypted or not, PuTTY) is
/// left to russh.
pub(crate) fn classify(text: &str) -> Option<Encrypted> {
    if !text.contains("-----BEGIN ") {
        return None;
    }
    let block = pem::parse(text).ok()?;
    if block.tag() == "ENCRYPTED PRIVATE KEY" {
        return Some(Encrypted::Pkcs8(block.into_contents()));
    }
    let encrypted = block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("4,ENCRYPTED"));
    if encrypted {
        return Some(Encrypted::LegacyPem(block));
    }
    None
}

/// Decrypts `key` with `passphrase`; returns the unencrypted PEM text of the same key.
pub(crate) fn decrypt(
    key: &Encrypted,
    passphrase: &[u8],
) -> Result<Zeroizing<String>, DecryptError> {
    match key {
        Encrypted::LegacyPem(block) => decrypt_legacy(block, passphrase),
        Encrypted::Pkcs8(der) => decrypt_pkcs8(der, passphrase),
    }
}

fn decrypt_legacy(block: &pem::Pem, passphrase: &[u8]) -> Result<Zeroizing<String>, DecryptError> {
    let dek_info = block
        .headers()
        .get("DEK-Info")
        .ok_or_else(|| DecryptError::Malformed("the DEK-Info header is missing".to_owned()))?;
    let (cipher, iv_hex) = dek_info.split_once(',').ok_or_else(|| {
        DecryptError::Malformed(format!("the DEK-Info header {dek_info:?} has no IV"))
    })?;
    let cipher = cipher.trim().to_ascii_uppercase();
    let iv = data_encoding::HEXUPPER_PERMISSIVE
        .decode(iv_hex.trim().as_bytes())
        .map_err(|_| {
            DecryptError::Malformed(format!("the DEK-Info IV {:?} is not hex", iv_hex.trim()))
        })?;
    let body = block.contents();
    let plain = match cipher.as_str() {
        "AES-128-CBC" => cbc_decrypt::<aes::Aes128>(passphrase, &iv, body)?,
        "AES-192-CBC" => cbc_decrypt::<aes::Aes192>(passphrase, &iv, body)?,
        "AES-256-CBC" => cbc_decrypt::<aes::Aes256>(passphrase, &iv, body)?,
        "DES-EDE3-CBC" => cbc_decrypt::<des::TdesEde3>(passphrase, &iv, body)?,
        "DES-CBC" => cbc_decrypt::<des::Des>(passphrase, &iv, body)?,
        _ => {
            return Err(DecryptError::Unsupported(format!(
                "cipher {cipher} (supported: AES-128-CBC, AES-192-CBC, AES-256-CBC, \
                 DES-EDE3-CBC, DES-CBC)"
            )))
        }
    };
    // Padding that checks out by chance (about 1 in 256 with a wrong passphrase) still
    // leaves bytes that are not one DER SEQUENCE spanning exactly the plaintext.
    if !is_one_der_sequence(&plain) {
        return Err(DecryptError::WrongPassphrase);
    }
    Ok(pem_text(block.tag(), &plain))
}

/// CBC decryption with OpenSSL's legacy key derivation; the IV's first 8 bytes are the
/// salt.
fn cbc_decrypt<C>(
    passphrase: &[u8],
    iv: &[u8],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError>
where
    C: aes::cipher::BlockCipherDecrypt + aes::cipher::KeyInit,
    cbc::Decryptor<C>: KeyIvInit,
{
    let key_len = <C as aes::cipher::KeySizeUser>::key_size();
    let iv_len = <cbc::Decryptor<C> as aes::cipher::IvSizeUser>::iv_size();
    if iv.len() != iv_len {
        return Err(DecryptError::Malformed(format!(
            "the DEK-Info IV has {} bytes, the cipher needs {iv_len}",
            iv.len()
        )));
    }
    let salt = iv.get(..8).ok_or_else(|| {
        DecryptError::Malformed("the DEK-Info IV is shorter than 8 bytes".to_owned())
    })?;
    let key = evp_bytes_to_key(passphrase, salt, key_len);
    let decryptor = cbc::Decryptor::<C>::new_from_slices(&key, iv)
        .map_err(|_| DecryptError::Malformed("bad key or IV length".to_owned()))?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = decryptor
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| DecryptError::WrongPassphrase)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and one iteration: `D_i = MD5(D_{i-1} || pass ||
/// salt)`, concatenated until `len` bytes.
fn evp_bytes_to_key(passphrase: &[u8], salt: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut previous: Option<Zeroizing<[u8; 16]>> = None;
    while key.len() < len {
        let mut md5 = Md5::new();
        if let Some(p) = &previous {
            md5.update(p.as_slice());
        }
        md5.update(passphrase);
        md5.update(salt);
        let digest: Zeroizing<[u8; 16]> = Zeroizing::new(md5.finalize().into());
        key.extend_from_slice(digest.as_slice());
        previous = Some(digest);
    }
    key.truncate(len);
    key
}

fn is_one_der_sequence(bytes: &[u8]) -> bool {
    let mut reader = match der::SliceReader::new(bytes) {
        Ok(r) => r,
        Err(_) => return false,
    };
    reader
        .sequence(|seq| {
            seq.drain(seq.remaining_len())?;
            Ok::<(), der::Error>(())
        })
        .is_ok()
        && reader.is_finished()
}

fn decrypt_pkcs8(der_bytes: &[u8], passphrase: &[u8]) -> Result<Zeroizing<String>, DecryptError> {
    let info = match pkcs8::EncryptedPrivateKeyInfoRef::from_der(der_bytes) {
        Ok(info) => info,
        // The scheme did not parse: name what the file asks for.
        Err(_) => return Err(describe_unsupported(der_bytes)),
    };
    if let Some(pbes2) = info.encryption_algorithm.pbes2() {
        check_kdf_cost(&pbes2.kdf)?;
    }
    let plain = match info.decrypt(passphrase) {
        Ok(doc) => doc,
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed)) => {
            return Err(DecryptError::WrongPassphrase)
        }
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm {
            oid,
        })) => return Err(DecryptError::Unsupported(algorithm_name(&oid))),
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::NoPbes1CryptSupport)) => {
            return Err(DecryptError::Unsupported(format!(
                "scheme {} (PBES1)",
                algorithm_name(&info.encryption_algorithm.oid())
            )))
        }
        Err(pkcs8::Error::EncryptedPrivateKey(e)) => {
            return Err(DecryptError::Malformed(e.to_string()))
        }
        // The plaintext is not DER: the padding matched by chance.
        Err(pkcs8::Error::Asn1(_)) => return Err(DecryptError::WrongPassphrase),
        Err(e) => return Err(DecryptError::Malformed(e.to_string())),
    };
    if !is_one_der_sequence(plain.as_bytes()) {
        return Err(DecryptError::WrongPassphrase);
    }
    Ok(pem_text("PRIVATE KEY", plain.as_bytes()))
}

/// The most PBKDF2 iterations accepted (openssl and ssh-keygen use 2048; ten million take
/// about ten seconds).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The most memory scrypt may take (128 × r × N bytes; openssl's default: 16 MiB).
const MAX_SCRYPT_MEMORY: u128 = 1 << 30;

/// The most scrypt lanes accepted (each repeats the whole computation; openssl uses 1).
const MAX_SCRYPT_PARALLELIZATION: u16 = 16;

/// Refuses key derivation parameters that would take minutes or more memory than the
/// machine has: the file, not the passphrase, chooses them.
fn check_kdf_cost(kdf: &pkcs8::pkcs5::pbes2::Kdf) -> Result<(), DecryptError> {
    use pkcs8::pkcs5::pbes2::Kdf;
    match kdf {
        Kdf::Pbkdf2(params) if params.iteration_count > MAX_PBKDF2_ITERATIONS => {
            Err(DecryptError::Unsupported(format!(
                "key derivation cost (PBKDF2 with {} iterations; at most {MAX_PBKDF2_ITERATIONS})",
                params.iteration_count
            )))
        }
        Kdf::Scrypt(params) => {
            let memory = 128 * u128::from(params.block_size) * u128::from(params.cost_parameter);
            if memory > MAX_SCRYPT_MEMORY || params.parallelization > MAX_SCRYPT_PARALLELIZATION {
                Err(DecryptError::Unsupported(format!(
                    "key derivation cost (scrypt with N={}, r={}, p={}: {} MiB; at most {} MiB \
                     and p={MAX_SCRYPT_PARALLELIZATION})",
                    params.cost_parameter,
                    params.block_size,
                    params.parallelization,
                    memory >> 20,
                    MAX_SCRYPT_MEMORY >> 20
                )))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// For an `EncryptedPrivateKeyInfo` whose scheme the crate could not parse: the names of
/// the scheme, and for PBES2 of its key derivation and cipher.
fn describe_unsupported(der_bytes: &[u8]) -> DecryptError {
    let parsed = der::SliceReader::new(der_bytes).and_then(|mut reader| {
        reader.sequence(|seq| {
            let scheme: AlgorithmIdentifierRef<'_> = seq.decode()?;
            seq.drain(seq.remaining_len())?;
            let mut names = vec![algorithm_name(&scheme.oid)];
            if scheme.oid == PBES2 {
                if let Some(params) = scheme.parameters {
                    let inner = params.decode_as::<Pbes2Names>()?;
                    names.push(algorithm_name(&inner.kdf));
                    names.push(algorithm_name(&inner.cipher));
                }
            }
            Ok(names)
        })
    });
    match parsed {
        Ok(names) => DecryptError::Unsupported(format!(
            "encryption {} (supported: PBES2 with PBKDF2 or scrypt and AES-CBC, AES-GCM, \
             DES-EDE3-CBC or DES-CBC)",
            names.join(" with ")
        )),
        Err(e) => DecryptError::Malformed(format!("the encrypted PKCS#8 structure: {e}")),
    }
}

/// The OIDs of PBES2's two algorithm identifiers.
struct Pbes2Names {
    kdf: ObjectIdentifier,
    cipher: ObjectIdentifier,
}

impl<'a> der::DecodeValue<'a> for Pbes2Names {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, _header: der::Header) -> der::Result<Self> {
        let kdf: AlgorithmIdentifierRef<'_> = reader.decode()?;
        let cipher: AlgorithmIdentifierRef<'_> = reader.decode()?;
        Ok(Pbes2Names {
            kdf: kdf.oid,
            cipher: cipher.oid,
        })
    }
}

impl der::FixedTag for Pbes2Names {
    const TAG: der::Tag = der::Tag::Sequence;
}

const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");

/// A readable name for the OIDs an encrypted key names (RFC 8018, RFC 7292, NIST).
fn algorithm_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.5.13" => "PBES2",
        "1.2.840.113549.1.5.12" => "PBKDF2",
        "1.3.6.1.4.1.11591.4.11" => "scrypt",
        "1.2.840.113549.1.5.1" => "pbeWithMD2AndDES-CBC",
        "1.2.840.113549.1.5.3" => "pbeWithMD5AndDES-CBC",
        "1.2.840.113549.1.5.4" => "pbeWithMD2AndRC2-CBC",
        "1.2.840.113549.1.5.6" => "pbeWithMD5AndRC2-CBC",
        "1.2.840.113549.1.5.10" => "pbeWithSHA1AndDES-CBC",
        "1.2.840.113549.1.5.11" => "pbeWithSHA1AndRC2-CBC",
        "1.2.840.113549.1.12.1.1" => "pbeWithSHAAnd128BitRC4",
        "1.2.840.113549.1.12.1.2" => "pbeWithSHAAnd40BitRC4",
        "1.2.840.113549.1.12.1.3" => "pbeWithSHAAnd3-KeyTripleDES-CBC (PKCS#12)",
        "1.2.840.113549.1.12.1.4" => "pbeWithSHAAnd2-KeyTripleDES-CBC (PKCS#12)",
        "1.2.840.113549.1.12.1.5" => "pbeWithSHAAnd128BitRC2-CBC (PKCS#12)",
        "1.2.840.113549.1.12.1.6" => "pbeWithSHAAnd40BitRC2-CBC (PKCS#12)",
        "2.16.840.1.101.3.4.1.2" => "aes-128-cbc",
        "2.16.840.1.101.3.4.1.22" => "aes-192-cbc",
        "2.16.840.1.101.3.4.1.42" => "aes-256-cbc",
        "2.16.840.1.101.3.4.1.6" => "aes-128-gcm",
        "2.16.840.1.101.3.4.1.46" => "aes-256-gcm",
        "1.2.840.113549.3.7" => "des-ede3-cbc",
        "1.3.14.3.2.7" => "des-cbc",
        "1.2.840.113549.3.2" => "rc2-cbc",
        "1.2.392.200011.61.1.1.1.2" => "camellia-128-cbc",
        "1.2.392.200011.61.1.1.1.3" => "camellia-192-cbc",
        "1.2.392.200011.61.1.1.1.4" => "camellia-256-cbc",
        "1.2.410.200046.1.1.2" => "aria-128-cbc",
        "1.2.156.10197.1.104.2" => "sm4-cbc",
        "1.2.840.113549.2.7" => "hmacWithSHA1",
        "1.2.840.113549.2.8" => "hmacWithSHA224",
        "1.2.840.113549.2.9" => "hmacWithSHA256",
        "1.2.840.113549.2.10" => "hmacWithSHA384",
        "1.2.840.113549.2.11" => "hmacWithSHA512",
        other => return format!("OID {other}"),
    };
    name.to_owned()
}

/// The unencrypted PEM text of `der_bytes` under `label`.
fn pem_text(label: &str, der_bytes: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(data_encoding::BASE64_MIME.encode(der_bytes));
    let mut text = Zeroizing::new(String::with_capacity(body.len() + 2 * label.len() + 40));
    text.push_str("-----BEGIN ");
    text.push_str(label);
    text.push_str("-----\n");
    text.push_str(&body);
    if !body.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("-----END ");
    text.push_str(label);
    text.push_str("-----\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypted_info(scheme: pkcs8::pkcs5::pbes2::Parameters) -> Vec<u8> {
        use pkcs8::der::Encode;
        let data = pkcs8::der::asn1::OctetString::new(vec![0u8; 64]).unwrap();
        let info = pkcs8::EncryptedPrivateKeyInfo {
            encryption_algorithm: pkcs8::pkcs5::EncryptionScheme::Pbes2(scheme),
            encrypted_data: data,
        };
        info.to_der().unwrap()
    }

    /// A file that asks PBKDF2 for 100 million iterations is refused before deriving.
    #[test]
    fn costly_pbkdf2_parameters_are_refused() {
        let scheme = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
            100_000_000,
            &[7; 16],
            [9; 16],
        )
        .unwrap();
        match decrypt_pkcs8(&encrypted_info(scheme), b"anything") {
            Err(DecryptError::Unsupported(what)) => assert_eq!(
                what,
                "key derivation cost (PBKDF2 with 100000000 iterations; at most 10000000)"
            ),
            other => panic!("{other:?}"),
        }
    }

    /// A file that asks scrypt for a terabyte is refused before anything is derived.
    #[test]
    fn costly_scrypt_parameters_are_refused() {
        let params = pkcs8::pkcs5::scrypt::Params::new(30, 8, 1).unwrap();
        let scheme =
            pkcs8::pkcs5::pbes2::Parameters::generate_scrypt_aes256cbc(params, &[7; 16], [9; 16])
                .unwrap();
        match decrypt_pkcs8(&encrypted_info(scheme), b"anything") {
            Err(DecryptError::Unsupported(what)) => assert_eq!(
                what,
                "key derivation cost (scrypt with N=1073741824, r=8, p=1: 1048576 MiB; at most \
                 1024 MiB and p=16)"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -P -md md5 -S 0102030405060708 -pass pass:secret`
        let key = evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        assert_eq!(
            data_encoding::HEXUPPER.encode(&key),
            "C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144BCCEC4A1AA2879AB"
        );
    }
}
