//! PEM files for TLS (certificates, private keys, CA bundles), read the same way by
//! every component that speaks TLS, with errors that name the setting and the file.
//! Private keys may be encrypted with a passphrase (`key`). `client`: the `tls:`
//! block of components that connect to servers ([`ClientTlsConfig`]) and the rustls
//! client settings it gives.

mod client;
mod key;

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::Secret;
pub use client::{ClientTlsConfig, ClientTlsError};
use key::{KeyBlock, Refusal};

/// A PEM file that could not be read or holds nothing usable.
#[derive(Debug, Error)]
#[error("cannot use {what} {path}: {reason}")]
pub struct PemError {
    /// Which setting named the file (`tls.cert_path`).
    pub what: &'static str,
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl PemError {
    /// The error for the file `path` of the setting `what`.
    pub fn new(what: &'static str, path: &Path, reason: impl ToString) -> Self {
        Self {
            what,
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Every certificate of a PEM file; an error if it holds none.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::new(what, path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(
            what,
            path,
            "no `-----BEGIN CERTIFICATE-----` block in it",
        ));
    }
    Ok(certs)
}

/// A private key file as a config names it, and the passphrase that decrypts it.
#[derive(Debug, Clone, Copy)]
pub struct KeyFile<'a> {
    /// The setting that names the file (`tls.private_key_path`).
    pub setting: &'static str,
    /// The file.
    pub path: &'a Path,
    /// The setting that holds the passphrase (`tls.private_key_passphrase`).
    pub passphrase_setting: &'static str,
    /// The passphrase, when one is set.
    pub passphrase: Option<&'a Secret>,
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 or SEC1; encrypted ones
/// (PKCS#8 PBES2, or OpenSSL's `Proc-Type: 4,ENCRYPTED`) with the passphrase.
pub fn load_key(file: KeyFile<'_>) -> Result<PrivateKeyDer<'static>, PemError> {
    let KeyFile {
        setting,
        path,
        passphrase_setting,
        passphrase,
    } = file;
    let fail = |reason: String| PemError::new(setting, path, reason);
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let block = KeyBlock::find(&String::from_utf8_lossy(&bytes)).map_err(&fail)?;
    match (block, passphrase) {
        (Some(block), Some(passphrase)) if block.is_encrypted() => {
            let convert = format!(
                "`openssl pkcs8 -topk8 -v2 aes-256-cbc -in {0} -out {0}.p8` (it asks for the old passphrase and a new one), then point {setting} at {0}.p8",
                path.display()
            );
            block
                .decrypt(passphrase.expose(), &convert)
                .map_err(|refusal| match refusal {
                    Refusal::WrongPassphrase => fail(format!(
                        "{passphrase_setting} does not decrypt the key ({}); check the passphrase",
                        block.describe()
                    )),
                    Refusal::Unsupported(why) | Refusal::Unreadable(why) => fail(why),
                })
        }
        (Some(block), None) if block.is_encrypted() => Err(fail(format!(
            "the key is encrypted ({}); give its passphrase in {passphrase_setting}",
            block.describe()
        ))),
        (Some(_), Some(_)) => Err(fail(format!(
            "the key is not encrypted, but {passphrase_setting} is set; remove {passphrase_setting}, or point {setting} at the encrypted key"
        ))),
        _ => PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            fail(format!(
                "{e} (a PKCS#8, PKCS#1 or SEC1 PEM key is needed; an encrypted one with {passphrase_setting})"
            ))
        }),
    }
}

/// The certificates of a CA bundle as trust roots.
pub fn load_roots(what: &'static str, path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| PemError::new(what, path, e))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::openssl;

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_certs("tls.ca_path", &empty).unwrap_err().to_string();
        assert!(e.starts_with("cannot use tls.ca_path "), "{e}");
        assert!(
            e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = load_key(KeyFile {
            setting: "tls.private_key_path",
            path: &empty,
            passphrase_setting: "tls.private_key_passphrase",
            passphrase: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tls.private_key_path") && e.contains("PKCS#8, PKCS#1 or SEC1"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = load_roots("tls.ca_path", &missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }

    fn key(path: &Path, passphrase: Option<&Secret>) -> Result<PrivateKeyDer<'static>, String> {
        load_key(KeyFile {
            setting: "tls.private_key_path",
            path,
            passphrase_setting: "tls.private_key_passphrase",
            passphrase,
        })
        .map_err(|e| e.to_string())
    }

    /// The PKCS#8 DER of an unencrypted PEM key, as openssl converts it.
    fn pkcs8_der(dir: &Path, file: &str) -> Vec<u8> {
        openssl(
            dir,
            &format!("pkcs8 -topk8 -nocrypt -in {file} -outform DER -out {file}.der"),
        );
        std::fs::read(dir.join(format!("{file}.der"))).unwrap()
    }

    /// A decrypted key as PKCS#8 DER: SEC1 and PKCS#1 keys are written out and
    /// converted by openssl, so that every form compares with the original.
    fn as_pkcs8(key: &PrivateKeyDer<'_>, dir: &Path, name: &str) -> Vec<u8> {
        let (der, kind) = match key {
            PrivateKeyDer::Pkcs8(k) => return k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Sec1(k) => (k.secret_sec1_der(), "ec"),
            PrivateKeyDer::Pkcs1(k) => (k.secret_pkcs1_der(), "rsa"),
            other => panic!("unexpected key form {other:?}"),
        };
        std::fs::write(dir.join(name), der).unwrap();
        openssl(
            dir,
            &format!("{kind} -inform DER -in {name} -out {name}.pem"),
        );
        pkcs8_der(dir, &format!("{name}.pem"))
    }

    #[test]
    fn keys_encrypted_by_openssl_in_every_usual_form_decrypt_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem",
        );
        openssl(
            d,
            "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem",
        );
        let ec = pkcs8_der(d, "ec.pem");
        let rsa = pkcs8_der(d, "rsa.pem");
        let pw = Secret::new("correct-horse");
        let out = "-passout pass:correct-horse -out";
        // The file, the key it holds, and the openssl command that wrote it.
        let forms = [
            (
                "p8-aes256.pem",
                &ec,
                "pkcs8 -topk8 -v2 aes-256-cbc -in ec.pem",
            ),
            (
                "p8-aes128-sha1.pem",
                &ec,
                "pkcs8 -topk8 -v2 aes-128-cbc -v2prf hmacWithSHA1 -in ec.pem",
            ),
            ("p8-des3.pem", &rsa, "pkcs8 -topk8 -v2 des3 -in rsa.pem"),
            ("p8-scrypt.pem", &ec, "pkcs8 -topk8 -scrypt -in ec.pem"),
            (
                "legacy-rsa-aes256.pem",
                &rsa,
                "rsa -aes256 -traditional -in rsa.pem",
            ),
            (
                "legacy-rsa-des3.pem",
                &rsa,
                "rsa -des3 -traditional -in rsa.pem",
            ),
            ("legacy-ec-aes128.pem", &ec, "ec -aes128 -in ec.pem"),
            ("legacy-ec-aes192.pem", &ec, "ec -aes192 -in ec.pem"),
        ];
        for (file, original, command) in forms {
            openssl(d, &format!("{command} {out} {file}"));
            let path = d.join(file);
            let decrypted = key(&path, Some(&pw)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(
                &as_pkcs8(&decrypted, d, &format!("{file}.plain")),
                original,
                "{file}"
            );
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&decrypted)
                .unwrap_or_else(|e| panic!("{file}: rustls cannot use the key: {e}"));

            let e = key(&path, Some(&Secret::new("wrong"))).unwrap_err();
            assert!(
                e.starts_with("cannot use tls.private_key_path ")
                    && e.contains(file)
                    && e.contains("tls.private_key_passphrase does not decrypt the key"),
                "{file}: {e}"
            );
            let e = key(&path, None).unwrap_err();
            assert!(
                e.contains(file)
                    && e.contains("the key is encrypted")
                    && e.contains("give its passphrase in tls.private_key_passphrase"),
                "{file}: {e}"
            );
            assert!(
                !e.contains("correct-horse"),
                "the passphrase is never printed"
            );
        }
        // genpkey writes PKCS#8 PBES2 with AES-256 by itself.
        openssl(
            d,
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -aes256 -pass pass:correct-horse -out gen.pem",
        );
        let generated = key(&d.join("gen.pem"), Some(&pw)).unwrap();
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&generated).unwrap();
    }

    #[test]
    fn encrypted_keys_nagare_cannot_read_say_how_to_convert_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pw = Secret::new("pw");
        openssl(
            d,
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem",
        );
        // PBES1, the default of OpenSSL 1.0's `pkcs8 -topk8`; and a cipher the older
        // PEM form allows that nagare does not read.
        openssl(
            d,
            "pkcs8 -topk8 -v1 PBE-SHA1-3DES -in ec.pem -passout pass:pw -out pbes1.pem",
        );
        openssl(
            d,
            "ec -camellia256 -in ec.pem -passout pass:pw -out camellia.pem",
        );
        for file in ["pbes1.pem", "camellia.pem"] {
            let path = d.join(file);
            let e = key(&path, Some(&pw)).unwrap_err();
            assert!(e.contains("nagare cannot decrypt"), "{file}: {e}");
            let convert = format!(
                "`openssl pkcs8 -topk8 -v2 aes-256-cbc -in {0} -out {0}.p8`",
                path.display()
            );
            assert!(e.contains(&convert), "{file}: {e}");
            // The command it gives does the job.
            openssl(
                d,
                &format!(
                    "pkcs8 -topk8 -v2 aes-256-cbc -in {file} -passin pass:pw -passout pass:pw -out {file}.p8"
                ),
            );
            key(&d.join(format!("{file}.p8")), Some(&pw)).unwrap();
        }
        // A passphrase for a key that has none is a mistake, and said to be one.
        let e = key(&d.join("ec.pem"), Some(&pw)).unwrap_err();
        assert!(
            e.contains("ec.pem")
                && e.contains("the key is not encrypted, but tls.private_key_passphrase is set"),
            "{e}"
        );
        key(&d.join("ec.pem"), None).unwrap();
    }
}
