//! Private keys encrypted with a passphrase, in the two PEM forms OpenSSL writes:
//!
//! - PKCS#8 `BEGIN ENCRYPTED PRIVATE KEY` with PBES2 (PBKDF2 or scrypt, AES-CBC or
//!   3DES-CBC): what `openssl genpkey -aes256`, `openssl req` without `-nodes` and
//!   `openssl pkcs8 -topk8 -v2 aes-256-cbc` write. PBES1 (`-v1`, the default of
//!   OpenSSL 1.0's `pkcs8 -topk8`) is refused with the command that converts it.
//! - The older OpenSSL form: `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` with
//!   `Proc-Type: 4,ENCRYPTED` and `DEK-Info: <cipher>,<iv>` headers, what
//!   `openssl rsa -aes256 -traditional`, OpenSSL 1.x's `openssl genrsa -aes256` and
//!   Ruby's `OpenSSL::PKey#export(cipher, passphrase)` (Fluentd's certificate
//!   generator) write. Its key is OpenSSL's `EVP_BytesToKey` with MD5, one round, the
//!   first 8 bytes of the IV as salt; AES-128/192/256-CBC and DES-EDE3-CBC are read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyInit, KeyIvInit};
use md5::{Digest, Md5};
use pkcs8::der::Decode;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

/// The first private key block of a PEM file: its label, headers and bytes.
#[derive(Debug)]
pub(super) struct KeyBlock {
    label: String,
    headers: Vec<(String, String)>,
    der: Vec<u8>,
}

impl KeyBlock {
    /// Finds the first `BEGIN ... PRIVATE KEY` block in `text`; `Err` with the reason
    /// when one is there but cannot be read, `Ok(None)` when there is none.
    pub(super) fn find(text: &str) -> Result<Option<KeyBlock>, String> {
        let mut lines = text.lines().map(str::trim);
        let label = loop {
            let Some(line) = lines.next() else {
                return Ok(None);
            };
            if let Some(label) = line
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
                && label.ends_with("PRIVATE KEY")
            {
                break label.to_string();
            }
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = String::new();
        for line in lines.by_ref() {
            if line == end {
                let der = BASE64
                    .decode(&body)
                    .map_err(|e| format!("the {label} block is not valid Base64 ({e})"))?;
                return Ok(Some(KeyBlock {
                    label,
                    headers,
                    der,
                }));
            }
            match line.split_once(':') {
                Some((name, value)) if body.is_empty() => {
                    headers.push((name.trim().to_string(), value.trim().to_string()));
                }
                _ => body.push_str(line),
            }
        }
        Err(format!("the {label} block has no `{end}` line"))
    }

    /// Whether a passphrase is needed to read the key.
    pub(super) fn is_encrypted(&self) -> bool {
        self.label == "ENCRYPTED PRIVATE KEY"
            || self
                .headers
                .iter()
                .any(|(n, v)| n == "Proc-Type" && v.ends_with("ENCRYPTED"))
    }

    /// How the key is encrypted, for messages.
    pub(super) fn describe(&self) -> String {
        match self.header("DEK-Info") {
            Some(dek) => format!(
                "`BEGIN {}` with `DEK-Info: {}`",
                self.label,
                dek.split(',').next().unwrap_or(dek)
            ),
            None => format!("`BEGIN {}`", self.label),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Decrypts the key with `passphrase`. The error is what the user must do.
    pub(super) fn decrypt(
        &self,
        passphrase: &str,
        convert: &str,
    ) -> Result<PrivateKeyDer<'static>, Refusal> {
        if self.label == "ENCRYPTED PRIVATE KEY" {
            return self.decrypt_pkcs8(passphrase, convert);
        }
        let der = self.decrypt_legacy(passphrase, convert)?;
        // A wrong passphrase leaves bytes that are not one DER structure (unless its
        // padding happens to look right, which the parse below catches too).
        if pkcs8::der::Document::from_der(&der).is_err() {
            return Err(Refusal::WrongPassphrase);
        }
        Ok(match self.label.as_str() {
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
            _ => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        })
    }

    fn decrypt_pkcs8(
        &self,
        passphrase: &str,
        convert: &str,
    ) -> Result<PrivateKeyDer<'static>, Refusal> {
        // What cannot be parsed is, in practice, a scheme other than PBES2 (PKCS#12's
        // PBE-SHA1-3DES, say, which OpenSSL 1.0 wrote by default).
        let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&self.der).map_err(|e| {
            Refusal::Unsupported(format!(
                "it is encrypted with a scheme nagare cannot decrypt (not PBES2: {e}; PBES2 with AES or 3DES is supported); convert it: {convert}"
            ))
        })?;
        let plain = info.decrypt(passphrase).map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed)
            | pkcs8::Error::Asn1(_) => Refusal::WrongPassphrase,
            other => Refusal::Unsupported(format!(
                "it is encrypted with a scheme nagare cannot decrypt ({other}; PBES2 with AES or 3DES is supported); convert it: {convert}"
            )),
        })?;
        // Only a whole PrivateKeyInfo proves the passphrase was right.
        if pkcs8::PrivateKeyInfoRef::from_der(plain.as_bytes()).is_err() {
            return Err(Refusal::WrongPassphrase);
        }
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )))
    }

    fn decrypt_legacy(&self, passphrase: &str, convert: &str) -> Result<Vec<u8>, Refusal> {
        let dek = self.header("DEK-Info").ok_or_else(|| {
            Refusal::Unreadable("`Proc-Type: 4,ENCRYPTED` without a `DEK-Info` header".into())
        })?;
        let (cipher, iv) = dek
            .split_once(',')
            .ok_or_else(|| Refusal::Unreadable(format!("`DEK-Info: {dek}` has no IV")))?;
        let iv = hex::decode(iv.trim())
            .map_err(|_| Refusal::Unreadable(format!("`DEK-Info: {dek}`: the IV is not hex")))?;
        let key_len = match cipher {
            "AES-128-CBC" => 16,
            "AES-192-CBC" | "DES-EDE3-CBC" => 24,
            "AES-256-CBC" => 32,
            other => {
                return Err(Refusal::Unsupported(format!(
                    "it is encrypted with {other}, which nagare cannot decrypt (AES-128/192/256-CBC and DES-EDE3-CBC are supported); convert it: {convert}"
                )));
            }
        };
        let salt = iv.get(..8).ok_or_else(|| {
            Refusal::Unreadable(format!("`DEK-Info: {dek}`: the IV is too short"))
        })?;
        let key = bytes_to_key(passphrase.as_bytes(), salt, key_len);
        let plain = match cipher {
            "AES-128-CBC" => cbc_decrypt::<aes::Aes128>(&key, &iv, &self.der),
            "AES-192-CBC" => cbc_decrypt::<aes::Aes192>(&key, &iv, &self.der),
            "AES-256-CBC" => cbc_decrypt::<aes::Aes256>(&key, &iv, &self.der),
            _ => cbc_decrypt::<des::TdesEde3>(&key, &iv, &self.der),
        };
        plain.ok_or(Refusal::WrongPassphrase)
    }
}

/// Why an encrypted key could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The passphrase does not decrypt the key.
    WrongPassphrase,
    /// The key is encrypted in a way nagare does not read; the message says how to
    /// convert it.
    Unsupported(String),
    /// The block is damaged.
    Unreadable(String),
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and one round: `D1 = MD5(pass + salt)`,
/// `Dn = MD5(Dn-1 + pass + salt)`, concatenated up to `len` bytes.
fn bytes_to_key(passphrase: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut last: Vec<u8> = Vec::new();
    while key.len() < len {
        let mut h = Md5::new();
        h.update(&last);
        h.update(passphrase);
        h.update(salt);
        last = h.finalize().to_vec();
        key.extend_from_slice(&last);
    }
    key.truncate(len);
    key
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>>
where
    C: BlockCipherDecrypt + KeyInit,
{
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .ok()?
        .decrypt_padded_vec::<Pkcs7>(data)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_key_is_openssls() {
        // `openssl enc -aes-256-cbc -P -md md5 -pass pass:secret -S 0102030405060708`
        // (OpenSSL 3.0) prints this key: the same derivation, one round of MD5.
        let key = bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        assert_eq!(
            key,
            hex::decode("C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144BCCEC4A1AA2879AB")
                .unwrap()
        );
        assert_eq!(
            bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 24),
            key[..24]
        );
    }

    #[test]
    fn blocks_are_found_with_their_headers() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAEC\n-----END RSA PRIVATE KEY-----\n";
        let block = KeyBlock::find(text).unwrap().unwrap();
        assert_eq!(block.label, "RSA PRIVATE KEY");
        assert!(block.is_encrypted());
        assert_eq!(block.der, vec![0, 1, 2]);
        assert_eq!(
            block.describe(),
            "`BEGIN RSA PRIVATE KEY` with `DEK-Info: AES-256-CBC`"
        );
        assert!(KeyBlock::find("nothing here").unwrap().is_none());
        let err = KeyBlock::find("-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(err.contains("no `-----END PRIVATE KEY-----` line"), "{err}");
    }
}
