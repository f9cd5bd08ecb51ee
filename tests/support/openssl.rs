//! Certificates and keys made by the openssl command line, with keys encrypted the
//! ways users have them (`scripts/test` installs openssl).

pub use nagare_core::testing::openssl;

/// A folder with a CA (`ca.crt`) and two leaves it signed: `aggregator.crt` for
/// localhost and 127.0.0.1, its key `aggregator.key` encrypted as PKCS#8 with the
/// passphrase `aggregator-pass` (what `openssl req` writes without `-nodes`), and
/// `node.crt` for node-1, its key `node.key` in OpenSSL's older `Proc-Type:
/// 4,ENCRYPTED` form with `node-pass` (`openssl rsa -aes256 -traditional`).
pub fn encrypted_pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca",
    );
    std::fs::write(
        d.join("aggregator.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(d.join("node.ext"), "subjectAltName=DNS:node-1\n").unwrap();
    openssl(
        d,
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -passout pass:aggregator-pass -keyout aggregator.key -out aggregator.csr -subj /CN=localhost",
    );
    openssl(
        d,
        "req -newkey rsa:2048 -nodes -keyout node-plain.key -out node.csr -subj /CN=node-1",
    );
    openssl(
        d,
        "rsa -aes256 -traditional -in node-plain.key -passout pass:node-pass -out node.key",
    );
    for leaf in ["aggregator", "node"] {
        openssl(
            d,
            &format!(
                "x509 -req -in {leaf}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile {leaf}.ext -out {leaf}.crt"
            ),
        );
    }
    let aggregator_key = std::fs::read_to_string(d.join("aggregator.key")).unwrap();
    assert!(aggregator_key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let node_key = std::fs::read_to_string(d.join("node.key")).unwrap();
    assert!(node_key.contains("Proc-Type: 4,ENCRYPTED"), "{node_key}");
    dir
}
