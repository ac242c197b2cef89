//! TLS to the APM Server (feature `https`): rustls with ring, Mozilla's roots or
//! `server_ca_cert_file`, and `verify_server_cert = false`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::{Error, Stream, Timed, TlsOptions};

pub(super) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if !options.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else if let Some(path) = &options.pinned_cert_file {
        let pinned = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("server_cert {path:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("server_cert {path:?} holds no PEM certificate"))?
            .map_err(|e| format!("server_cert {path:?}: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                pinned: pinned.into_owned(),
                any: AnyCertificate(provider),
            }))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &options.ca_cert_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("server_ca_cert_file {path:?}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("server_ca_cert_file {path:?}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("server_ca_cert_file {path:?}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "server_ca_cert_file {path:?} holds no PEM certificate"
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

pub(super) fn wrap<'h>(
    config: &Arc<ClientConfig>,
    host: &str,
    timed: Timed<'h>,
) -> Result<Stream<'h>, Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Setup(format!("TLS server name {host:?}: {e}")))?;
    let conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| Error::Setup(format!("TLS: {e}")))?;
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, timed))))
}

/// `server_cert`: the server's certificate must be exactly the pinned one; the handshake's
/// signatures are checked against it as usual.
#[derive(Debug)]
struct PinnedCertificate {
    pinned: CertificateDer<'static>,
    any: AnyCertificate,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

/// `verify_server_cert = false`: any certificate is accepted, but the handshake's
/// signatures are still checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
