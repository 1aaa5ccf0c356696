//! Why an https:// registry refused us, when the HTTP client could not say.
//!
//! In TLS 1.3 a client's handshake is over before the server has checked the client's
//! certificate; a server that wants another one answers with an alert and closes. An HTTP client
//! that has already handed the connection to its request may only see the close ("connection was
//! not ready"), so the alert that names the fix is lost. This probe does the handshake alone,
//! with the same roots and client certificate as the registry client, sends nothing, and reads:
//! the server's next bytes are then its alert (or nothing, when it accepted us).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::registry::with_causes;
use crate::config::RegistryConfig;

/// How long the probe waits for the server's alert once its own handshake is done.
const ALERT_WAIT: Duration = Duration::from_secs(3);

/// The TLS error the registry at `c.url` answers a handshake with, if any (`None`: not https,
/// unreachable, or the server accepted the handshake).
pub async fn tls_refusal(c: &RegistryConfig) -> Option<String> {
    let url = url::Url::parse(&c.url).ok().filter(|u| u.scheme() == "https")?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default()?;
    let config = client_config(c).ok()?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let wait = ALERT_WAIT.max(Duration::from_millis(c.timeout_ms));
    let tcp = tokio::time::timeout(wait, tokio::net::TcpStream::connect((host.as_str(), port))).await.ok()?.ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = match tokio::time::timeout(wait, connector.connect(name, tcp)).await.ok()? {
        Ok(tls) => tls,
        Err(e) => return Some(with_causes(&e)),
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(ALERT_WAIT, tls.read(&mut byte)).await {
        Ok(Err(e)) => Some(with_causes(&e)),
        // Data, a clean close, or silence: the server did not refuse the handshake.
        Ok(Ok(_)) | Err(_) => None,
    }
}

/// The registry client's TLS settings, as rustls takes them: the built-in roots plus
/// `ca_file`, and the client certificate when one is configured.
fn client_config(c: &RegistryConfig) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if !c.ca_file.is_empty() {
        for cert in CertificateDer::pem_file_iter(&c.ca_file).map_err(|e| e.to_string())? {
            roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    if c.client_cert_file.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let chain = CertificateDer::pem_file_iter(&c.client_cert_file)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(&c.client_key_file).map_err(|e| e.to_string())?;
    builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())
}
