//! Certificates for TLS tests, made when a test starts (nothing checked in that expires).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::harness;
use cache_core::{Error, Result};

/// A fresh certificate authority, a server certificate it signed for `127.0.0.1` and
/// `localhost`, and a client certificate it signed (for mutual TLS), as PEM files in a
/// temporary directory that is removed when this is dropped.
///
/// ```no_run
/// use cache_testing::TlsFiles;
///
/// # fn demo() -> cache_core::Result<()> {
/// let files = TlsFiles::generate()?;
/// assert!(files.ca_file().exists());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TlsFiles {
    dir: tempfile::TempDir,
}

fn certificate_error(err: rcgen::Error) -> Error {
    Error::Harness {
        reason: format!("could not make a test certificate: {err}"),
        source: None,
    }
}

impl TlsFiles {
    /// Makes a new authority and the certificates it signs.
    pub fn generate() -> Result<TlsFiles> {
        let dir = tempfile::Builder::new()
            .prefix("cachemere-tls-")
            .tempdir()
            .map_err(harness("could not create a temporary directory"))?;
        let files = TlsFiles { dir };

        let ca_key = KeyPair::generate().map_err(certificate_error)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cachemere test authority");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(certificate_error)?;
        files.write("ca.crt", &ca_cert.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        // A cluster node presents its server certificate to the other nodes as a client too.
        for (name, purposes) in [
            (
                "server",
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            ("client", vec![ExtendedKeyUsagePurpose::ClientAuth]),
        ] {
            let key = KeyPair::generate().map_err(certificate_error)?;
            let mut params = CertificateParams::new(["127.0.0.1".to_owned(), "localhost".into()])
                .map_err(certificate_error)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("cachemere test {name}"));
            params.extended_key_usages = purposes;
            let cert = params.signed_by(&key, &issuer).map_err(certificate_error)?;
            files.write(&format!("{name}.crt"), &cert.pem())?;
            files.write(&format!("{name}.key"), &key.serialize_pem())?;
        }
        Ok(files)
    }

    fn write(&self, name: &str, pem: &str) -> Result<()> {
        std::fs::write(self.dir.path().join(name), pem)
            .map_err(harness(format!("could not write {name}")))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The authority's certificate (PEM), for `REDIS_TLS_CA_FILE`.
    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// The client certificate (PEM), for `REDIS_TLS_CERT_FILE`.
    pub fn client_cert_file(&self) -> PathBuf {
        self.path("client.crt")
    }

    /// The client certificate's key (PEM), for `REDIS_TLS_KEY_FILE`.
    pub fn client_key_file(&self) -> PathBuf {
        self.path("client.key")
    }

    /// The server certificate (PEM).
    pub fn server_cert_file(&self) -> PathBuf {
        self.path("server.crt")
    }

    /// The server certificate's key (PEM).
    pub fn server_key_file(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
