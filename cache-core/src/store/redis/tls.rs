//! `rediss://` (feature `tls`): the certificates a store's connections trust and present,
//! read from the `REDIS_TLS_*` files, and the diagnosis of an untrusted server.

use std::path::Path;

use redis::{ConnectionAddr, ConnectionInfo, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, shown};
use crate::error::{Error, Result};

/// The TLS settings of a store: what its `rediss://` connections trust and present.
#[derive(Clone, Debug, Default)]
pub(super) struct Tls {
    certificates: Option<TlsCertificates>,
    insecure: bool,
}

impl Tls {
    /// Reads and checks the files named by `config` (only when they are set).
    pub(super) fn from_config(config: &Config) -> Result<Tls> {
        let root_cert = config
            .tls_ca_file
            .as_deref()
            .map(|path| read_certificates("REDIS_TLS_CA_FILE", path))
            .transpose()?;
        let client_tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read_certificates("REDIS_TLS_CERT_FILE", cert)?,
                client_key: read_key(key)?,
            }),
            _ => None,
        };
        let certificates =
            (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
                client_tls,
                root_cert,
            });
        Ok(Tls {
            certificates,
            insecure: config.tls_insecure_skip_verify,
        })
    }

    /// The certificates to give a cluster client builder.
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        self.certificates.clone()
    }

    /// `info` with these settings, when it is a `rediss://` address.
    pub(super) fn apply(
        &self,
        info: ConnectionInfo,
    ) -> std::result::Result<ConnectionInfo, String> {
        let ConnectionAddr::TcpTls {
            host,
            port,
            tls_params,
            ..
        } = info.addr().clone()
        else {
            return Ok(info);
        };
        install_provider();
        let info = info.set_addr(ConnectionAddr::TcpTls {
            host,
            port,
            insecure: self.insecure,
            tls_params,
        });
        match &self.certificates {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone())
                .map(|client| client.get_connection_info().clone())
                .map_err(|err| err.to_string()),
            None => Ok(info),
        }
    }
}

/// redis-rs builds its TLS configurations with rustls's process-wide crypto provider; an
/// application that installed one keeps it, otherwise `ring` is installed. (rustls cannot
/// choose by itself when the application's dependencies enable more than one provider, and
/// would panic.)
fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| Error::Config {
        name,
        value: path.display().to_string(),
        reason: format!("could not read the file: {err}"),
    })
}

/// A PEM file holding at least one certificate, every one of them well formed.
fn read_certificates(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    let pem = read(name, path)?;
    let invalid = |reason: String| Error::Config {
        name,
        value: path.display().to_string(),
        reason,
    };
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|err| invalid(format!("not a PEM certificate: {err}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(
            "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(pem)
}

fn read_key(path: &Path) -> Result<Vec<u8>> {
    let pem = read("REDIS_TLS_KEY_FILE", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| Error::Config {
        name: "REDIS_TLS_KEY_FILE",
        value: path.display().to_string(),
        reason: format!("no PEM private key in the file: {err}"),
    })?;
    Ok(pem)
}

/// The configuration error for a certificate refused by either side, when that is why `err`
/// happened: the server's (checked against `REDIS_TLS_CA_FILE` or the system's roots), or the
/// client's (`REDIS_TLS_CERT_FILE`, missing or not trusted by the server).
pub(super) fn refused_certificate(err: &RedisError, config: &Config) -> Option<Error> {
    use rustls::AlertDescription as Alert;
    match tls_error(err)? {
        rustls::Error::InvalidCertificate(why) => {
            let trusted = match &config.tls_ca_file {
                Some(path) => format!("the authorities in {}", path.display()),
                None => "the system's root certificates".into(),
            };
            Some(Error::Config {
                name: "REDIS_TLS_CA_FILE",
                value: shown(&config.tls_ca_file),
                reason: format!(
                    "the server's certificate was refused ({why:?}); it is checked against \
                     {trusted}: set REDIS_TLS_CA_FILE to the authority that signed it"
                ),
            })
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate),
        ) => Some(client_refused(config, alert)),
        // What OpenSSL answers a certificate whose issuer's name is known but whose signature
        // is not that issuer's.
        rustls::Error::AlertReceived(alert @ Alert::DecryptError)
            if config.tls_cert_file.is_some() =>
        {
            Some(client_refused(config, alert))
        }
        _ => None,
    }
}

fn client_refused(config: &Config, alert: rustls::AlertDescription) -> Error {
    Error::Config {
        name: "REDIS_TLS_CERT_FILE",
        value: shown(&config.tls_cert_file),
        reason: match &config.tls_cert_file {
            None => format!(
                "the server requires a client certificate ({alert:?}): set \
                     REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE"
            ),
            Some(_) => format!(
                "the server refused the client certificate ({alert:?}): it must be signed \
                     by an authority the server trusts"
            ),
        },
    }
}

/// The TLS error somewhere in `err`'s chain of causes (redis-rs keeps an I/O error behind an
/// `Arc`; the I/O error keeps rustls's).
fn tls_error(err: &RedisError) -> Option<rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = source {
        let shared = error
            .downcast_ref::<Shared>()
            .map(|shared| &**shared as &(dyn std::error::Error + 'static));
        let io = [Some(error), shared]
            .into_iter()
            .flatten()
            .find_map(|error| error.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(error), shared, io].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(tls.clone());
            }
        }
        source = error.source();
    }
    None
}
