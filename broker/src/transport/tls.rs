//! TLS of a listener: loading the PEM files into a rustls `ServerConfig`,
//! reloading it when the files change, classifying handshake failures and
//! reading the client certificate's identity.
//!
//! The live config sits in an `ArcSwap` read once per accepted connection,
//! so a reload affects new connections only. Reloads come from `notify`
//! watching the files' parent directories (Kubernetes swaps a `..data`
//! symlink there), debounced; a set of files that does not load is refused
//! with an error log and the previous config stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CertIdentity, Failure};
use crate::config::{ClientAuth, TlsConfig};
use crate::error::ConfigError;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The TLS state of one listener.
pub(super) struct Tls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// SHA-256 over the loaded files' bytes: unchanged files are not reloaded.
    digest: parking_lot::Mutex<[u8; 32]>,
    /// Expiry (Unix seconds) of the server certificate in use, for the
    /// rotation alert; `None` if x509-parser could not read it.
    not_after: parking_lot::Mutex<Option<i64>>,
}

/// What loading the files produced.
struct Loaded {
    config: Arc<ServerConfig>,
    digest: [u8; 32],
    not_after: Option<i64>,
}

/// A file that could not be used.
struct LoadError {
    key: &'static str,
    file: PathBuf,
    reason: String,
}

impl Tls {
    /// Loads every file of `files`; the error names the listener and file.
    pub fn load(listener: &str, files: &TlsConfig) -> Result<Tls, ConfigError> {
        let loaded = build(files).map_err(|e| ConfigError::Invalid {
            key: e.key,
            reason: format!("listener `{listener}`: {}: {}", e.file.display(), e.reason),
        })?;
        Ok(Tls {
            files: files.clone(),
            current: ArcSwap::from(loaded.config),
            digest: parking_lot::Mutex::new(loaded.digest),
            not_after: parking_lot::Mutex::new(loaded.not_after),
        })
    }

    /// When the server certificate in use expires (Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        *self.not_after.lock()
    }

    /// The config for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reloads the files; keeps the current config if they do not load.
    fn reload(&self, listener: &str) {
        match build(&self.files) {
            Ok(loaded) => {
                let mut last = self.digest.lock();
                if *last == loaded.digest {
                    return;
                }
                *last = loaded.digest;
                self.current.store(loaded.config);
                *self.not_after.lock() = loaded.not_after;
                tracing::info!(listener, "TLS files reloaded");
            }
            Err(e) => tracing::error!(
                listener,
                file = %e.file.display(),
                error = %e.reason,
                "TLS files not reloaded; keeping the previous certificates"
            ),
        }
    }

    fn watched_dirs(&self) -> Vec<PathBuf> {
        let f = &self.files;
        let mut dirs: Vec<PathBuf> = [
            Some(&f.cert),
            Some(&f.key),
            f.client_ca.as_ref(),
            f.crl.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

fn read(key: &'static str, file: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(file).map_err(|e| LoadError {
        key,
        file: file.to_owned(),
        reason: format!("cannot read: {e}"),
    })
}

/// Builds a server config from the files, with the digest of their bytes
/// and the server certificate's expiry.
fn build(f: &TlsConfig) -> Result<Loaded, LoadError> {
    let mut digest = Sha256::new();
    let bad = |key: &'static str, file: &Path, reason: String| LoadError {
        key,
        file: file.to_owned(),
        reason,
    };

    let cert_pem = read("listeners.tls.cert", &f.cert)?;
    digest.update(&cert_pem);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("listeners.tls.cert", &f.cert, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            "listeners.tls.cert",
            &f.cert,
            "no CERTIFICATE block".into(),
        ));
    }

    let key_pem = read("listeners.tls.key", &f.key)?;
    digest.update(&key_pem);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            "listeners.tls.key",
            &f.key,
            format!("no usable private key: {e}"),
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("listeners.tls", &f.cert, e.to_string()))?;

    let builder = match (&f.client_ca, f.client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let ca_pem = read("listeners.tls.client_ca", ca)?;
            digest.update(&ca_pem);
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert =
                    cert.map_err(|e| bad("listeners.tls.client_ca", ca, format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad("listeners.tls.client_ca", ca, e.to_string()))?;
            }
            // An empty bundle must never mean "verify nothing".
            if roots.is_empty() {
                return Err(bad(
                    "listeners.tls.client_ca",
                    ca,
                    "no CA certificate".into(),
                ));
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if let Some(crl) = &f.crl {
                let crl_pem = read("listeners.tls.crl", crl)?;
                digest.update(&crl_pem);
                let crls: Vec<CertificateRevocationListDer<'static>> =
                    CertificateRevocationListDer::pem_slice_iter(&crl_pem)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad("listeners.tls.crl", crl, format!("bad PEM: {e}")))?;
                if crls.is_empty() {
                    return Err(bad("listeners.tls.crl", crl, "no X509 CRL block".into()));
                }
                verifier = verifier.with_crls(crls);
            }
            if f.client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| {
                let (key, file) = match &f.crl {
                    Some(crl) => ("listeners.tls.crl", crl),
                    None => ("listeners.tls.client_ca", ca),
                };
                bad(key, file, e.to_string())
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    // The first certificate of the chain is the server's own.
    let not_after = chain.first().and_then(|c| {
        x509_parser::parse_x509_certificate(c.as_ref())
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    });
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        bad(
            "listeners.tls.key",
            &f.key,
            format!("with {}: {e}", f.cert.display()),
        )
    })?;
    Ok(Loaded {
        config: Arc::new(config),
        digest: digest.finalize().into(),
        not_after,
    })
}

/// Watches the directories of `tls`'s files and reloads on change until
/// `stop` fires. A watcher that cannot start is logged; the listener then
/// keeps its start-up certificates.
pub(super) fn spawn_reloader(
    tls: Arc<Tls>,
    listener: Arc<str>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let Some(watcher) = crate::watch::watch_dirs(&tls.watched_dirs(), &listener, |_| true, tx)
    else {
        return;
    };
    tasks.spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until the directory has been quiet for a while
            // (a secret swap touches several files).
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(DEBOUNCE) => break,
                    got = rx.recv() => if got.is_none() { return },
                }
            }
            let tls = tls.clone();
            let name = listener.clone();
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || tls.reload(&name)).await;
        }
    });
}

/// The counter reason of a failed handshake.
pub(super) fn classify(e: &std::io::Error) -> Failure {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) else {
        return Failure::Io;
    };
    match tls {
        TlsError::NoCertificatesPresented => Failure::CertMissing,
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Failure::CertExpired,
            CertificateError::UnknownIssuer => Failure::CertUnknownCa,
            CertificateError::Revoked => Failure::CertRevoked,
            _ => Failure::CertInvalid,
        },
        _ => Failure::TlsProtocol,
    }
}

/// The identity of the verified client certificate, if one was presented.
pub(super) fn identity(conn: &ServerConnection) -> Option<CertIdentity> {
    let der = conn.peer_certificates()?.first()?;
    Some(identity_of(der.as_ref()))
}

/// The identity fields of a DER certificate.
fn identity_of(der: &[u8]) -> CertIdentity {
    let sha256 = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut id = CertIdentity {
        info: starling_auth::CertInfo {
            sha256,
            ..Default::default()
        },
        not_after_unix: None,
    };
    // rustls already verified the certificate, so it parses; if x509-parser
    // disagrees, the connection still gets the fingerprint.
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
        id.not_after_unix = Some(cert.validity().not_after.timestamp());
        id.info.cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned);
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        id.info.san_dns.push((*d).to_owned())
                    }
                    x509_parser::extensions::GeneralName::URI(u) => {
                        id.info.san_uri.push((*u).to_owned())
                    }
                    _ => {}
                }
            }
        }
    }
    id
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn identity_has_cn_sans_and_fingerprint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["dev-1.example".to_owned()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://plant/sensor/1".try_into().unwrap(),
        ));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "sensor-1");
        let cert = p.self_signed(&key).unwrap();
        let id = identity_of(cert.der());
        assert_eq!(id.info.cn.as_deref(), Some("sensor-1"));
        assert_eq!(id.info.san_dns, ["dev-1.example"]);
        assert_eq!(id.info.san_uri, ["spiffe://plant/sensor/1"]);
        assert_eq!(id.info.sha256.len(), 64);
        assert_eq!(identity_of(b"not a certificate").info.cn, None);
    }

    #[test]
    fn server_cert_expiry_is_read_and_follows_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let write = |year: i32| {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["broker.example".to_owned()]).unwrap();
            p.not_after = rcgen::date_time_ymd(year, 1, 2);
            std::fs::write(&cert, p.self_signed(&k).unwrap().pem()).unwrap();
            std::fs::write(&key, k.serialize_pem()).unwrap();
        };
        write(2030);
        let files = TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
            client_auth: ClientAuth::None,
            crl: None,
        };
        let tls = Tls::load("mqtts", &files).unwrap();
        // 2030-01-02T00:00:00Z
        assert_eq!(tls.not_after(), Some(1_893_542_400));
        write(2031);
        tls.reload("mqtts");
        // 2031-01-02T00:00:00Z
        assert_eq!(tls.not_after(), Some(1_925_078_400));
    }

    #[test]
    fn a_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, "not PEM").unwrap();
        let files = TlsConfig {
            cert: cert.clone(),
            key: dir.path().join("missing.key"),
            client_ca: None,
            client_auth: ClientAuth::None,
            crl: None,
        };
        let err = Tls::load("mqtts", &files).err().unwrap().to_string();
        assert!(
            err.contains("listeners.tls.cert") && err.contains("mqtts"),
            "{err}"
        );
        assert!(err.contains("tls.crt"), "{err}");
    }
}
