//! `TlsFront`: a TLS-terminating front for a plain HTTP server (osmem, or a proxy in
//! front of it), as a load balancer or an ingress terminates TLS before a cluster.
//!
//! It accepts TLS with the certificate it is given (rustls), optionally requires a
//! client certificate signed by a given CA, and copies bytes both ways to the
//! upstream address. Handshakes that fail are counted, with rustls' reason, so a
//! test can tell that a client was refused and why.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::oneshot;

/// The front; stops when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Starts a front on a free port of 127.0.0.1 relaying to `upstream`
    /// (`127.0.0.1:PORT`), serving `cert`/`key` (PEM files); with `client_ca`, only
    /// clients with a certificate that CA signed are let through.
    pub fn start(upstream: SocketAddr, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("the front's certificate file")
            .collect::<Result<_, _>>()
            .expect("the front's certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("the front's key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).expect("the client CA file") {
                    roots
                        .add(cert.expect("a client CA"))
                        .expect("a usable client CA");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(
            builder
                .with_single_cert(certs, key)
                .expect("the front's certificate and key"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the TLS front");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let seen = failures.clone();
        let thread = std::thread::Builder::new()
            .name("tls-front".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the front's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, acceptor, upstream, seen) => {}
                    }
                });
            })
            .expect("the front's thread");
        TlsFront {
            addr,
            failures,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://localhost:PORT` (the name test certificates are made for).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Why each failed handshake failed, in order.
    pub fn failed_handshakes(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: SocketAddr,
    failures: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(conn).await {
                Ok(tls) => tls,
                Err(e) => {
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string());
                    return;
                }
            };
            let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}
