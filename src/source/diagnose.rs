//! Why a connection to the brokers failed, in one line naming the key to fix: what `run`'s
//! start-up check and `doctor` print. librdkafka reports a failed TLS handshake, a refused SASL
//! login or token, a protocol mismatch as client errors (text), and says of every certificate
//! problem only "certificate verify failed"; for those the broker's certificate is fetched again
//! here with OpenSSL (the library librdkafka uses, with the same CA settings) to say which one:
//! an unknown CA, a hostname mismatch, an expired certificate.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use super::auth::Auth;
use crate::config::KafkaConfig;

/// A client context that keeps the client errors it is told of, for [`explain`].
pub struct Probe {
    pub auth: Auth,
    errors: Mutex<Vec<String>>,
}

impl Probe {
    pub fn new(auth: Auth) -> Self {
        Self { auth, errors: Mutex::new(Vec::new()) }
    }

    /// The client errors so far, oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn record(&self, line: &str) {
        self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line.to_string());
    }
}

impl ClientContext for Probe {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "kafka client error while probing");
        self.record(reason);
    }

    /// librdkafka tells of a failed connection (TLS, SASL) in `FAIL` log lines, not always as an
    /// error event: keep those too, and leave the one-line verdict to [`explain`].
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, log_message, "librdkafka while probing");
        use rdkafka::config::RDKafkaLogLevel as L;
        if fac == "FAIL" || matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            self.record(log_message);
        }
    }

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.auth.token()
    }
}

impl ConsumerContext for Probe {}

/// The first client error that says why the brokers could not be used, as one line naming the
/// key to fix; `None` when none does (the broker is not there, or answered too late).
pub fn explain(errors: &[String], k: &KafkaConfig, auth: &Auth) -> Option<String> {
    let prop = |key: &str| k.properties.get(key).map(String::as_str);
    let mechanism = prop("sasl.mechanism").or(prop("sasl.mechanisms"));
    errors.iter().find_map(|raw| {
        let why = tidy(raw);
        let has = |s: &str| why.contains(s);
        if has("certificate verify failed") {
            return Some(certificate_problem(k).unwrap_or_else(|| {
                format!("kafka.properties.ssl.ca.location: the broker's certificate could not be verified ({why}): give the CA that signed it")
            }));
        }
        if has("alert bad certificate") || has("alert certificate required") || has("alert unknown ca") || has("alert number 42") || has("alert number 116") {
            let given = ["ssl.certificate.location", "ssl.certificate.pem", "ssl.keystore.location"].iter().find_map(|key| prop(key).map(|v| (*key, v)));
            return Some(match given {
                Some((key, v)) => format!(
                    "kafka.properties.{key}: the broker refused the client certificate {v:?} ({why}): it must be signed by a CA the broker trusts"
                ),
                None => format!(
                    "kafka.properties.ssl.certificate.location: the broker requires a client certificate (mutual TLS) and none is set ({why}): set ssl.certificate.location and ssl.key.location"
                ),
            });
        }
        if has("connecting to a SSL listener?") || has("connecting to a PLAINTEXT broker listener?") {
            let protocol = prop("security.protocol").unwrap_or("plaintext");
            return Some(format!("kafka.properties.security.protocol: {protocol:?} does not match the broker's listener ({why})"));
        }
        if has("Must supply an unexpired token") {
            let endpoint = prop("sasl.oauthbearer.token.endpoint.url").unwrap_or("sasl.oauthbearer.config");
            return Some(format!(
                "kafka.properties.sasl.oauthbearer.token.endpoint.url: the token from {endpoint} has already expired ({why}): check the identity provider's token lifetime and this machine's clock"
            ));
        }
        let oauth = auth.is_msk_iam() || mechanism.is_some_and(|m| m.eq_ignore_ascii_case("oauthbearer"));
        if has("Failed to acquire SASL OAUTHBEARER token") || has("Failed to retrieve OIDC token") || has("OIDC") && has("token") && !has("SASL authentication error") {
            if let Some(described) = auth.describe() {
                return Some(format!("s3.credentials: cannot sign the MSK IAM token ({described}): {why}"));
            }
            let endpoint = prop("sasl.oauthbearer.token.endpoint.url").unwrap_or("the token endpoint");
            return Some(format!(
                "kafka.properties.sasl.oauthbearer.client.secret: no token from {endpoint} for client {:?} ({why}): check sasl.oauthbearer.client.id and client.secret",
                prop("sasl.oauthbearer.client.id").unwrap_or("")
            ));
        }
        if has("Unsupported SASL mechanism") || has("SASL mechanism") && has("not supported") {
            return Some(format!("kafka.properties.sasl.mechanism: the broker's listener does not offer it ({why})"));
        }
        if has("SASL authentication error") || has("SASL authentication failed") {
            if oauth {
                if let Some(described) = auth.describe() {
                    return Some(format!(
                        "kafka.auth: the broker refused the MSK IAM token ({described}; {why}): check kafka.aws_region and that the identity may kafka-cluster:Connect"
                    ));
                }
                let source = prop("sasl.oauthbearer.token.endpoint.url").map_or("sasl.oauthbearer.config".to_string(), |u| format!("the token from {u}"));
                return Some(format!("kafka.properties.sasl.oauthbearer.token.endpoint.url: the broker refused {source} ({why})"));
            }
            let mechanism = mechanism.unwrap_or("GSSAPI");
            return Some(format!(
                "kafka.properties.sasl.password: the broker refused user {:?} with {mechanism} ({why}): check sasl.username and sasl.password",
                prop("sasl.username").unwrap_or("")
            ));
        }
        if has("SSL handshake failed") {
            return Some(format!("kafka.properties.ssl.ca.location: the TLS handshake with the broker failed ({why})"));
        }
        None
    })
}

/// librdkafka's error without the broker name in front or its timing behind:
/// `sasl_ssl://h:9093/bootstrap: SASL authentication error: ... (after 3ms in state AUTH_REQ)`.
fn tidy(raw: &str) -> String {
    let mut s = raw;
    if let Some(i) = s.find("/bootstrap: ").or_else(|| s.find("]: ")) {
        s = &s[i + s[i..].find(": ").map_or(0, |j| j + 2)..];
    }
    if let Some(i) = s.rfind(" (after ") {
        s = &s[..i];
    }
    s.trim().to_string()
}

/// Connects to the first bootstrap server with the configured CA and says what is wrong with the
/// certificate it presents; `None` if nothing is (or it cannot be reached).
fn certificate_problem(k: &KafkaConfig) -> Option<String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let prop = |key: &str| k.properties.get(key).map(String::as_str);
    let server = k.bootstrap_servers.split(',').next()?.trim().trim_start_matches("ssl://").trim_start_matches("sasl_ssl://");
    let (host, _) = server.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = server.to_socket_addrs().ok()?.next()?;
    let mut b = SslConnector::builder(SslMethod::tls_client()).ok()?;
    let ca = prop("ssl.ca.location").filter(|l| *l != "probe");
    match ca {
        Some(path) if std::path::Path::new(path).is_dir() => b.load_verify_locations(None, Some(std::path::Path::new(path))).ok()?,
        Some(path) => b.set_ca_file(path).ok()?,
        None => b.set_default_verify_paths().ok()?,
    }
    if let Some(pem) = prop("ssl.ca.pem") {
        for cert in openssl::x509::X509::stack_from_pem(pem.as_bytes()).ok()? {
            b.cert_store_mut().add_cert(cert).ok()?;
        }
    }
    // Complete the handshake whatever the verdict, then read the verdict.
    b.set_verify(SslVerifyMode::NONE);
    let connector = b.build();
    let check_host = prop("ssl.endpoint.identification.algorithm").is_none_or(|a| a.eq_ignore_ascii_case("https"));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut config = connector.configure().ok()?.verify_hostname(check_host);
    config.set_verify(SslVerifyMode::NONE);
    let tls = config.connect(host, stream).ok()?;
    let ssl = tls.ssl();
    let verdict = ssl.verify_result();
    if verdict == openssl::x509::X509VerifyResult::OK {
        return None;
    }
    let cert = ssl.peer_certificate()?;
    let name = |n: &openssl::x509::X509NameRef| {
        n.entries().filter_map(|e| e.data().to_string().ok()).collect::<Vec<_>>().join(", ")
    };
    let subject = name(cert.subject_name());
    let issuer = name(cert.issuer_name());
    let trusted = match ca {
        Some(path) => format!("ssl.ca.location ({path})"),
        None if prop("ssl.ca.pem").is_some() => "ssl.ca.pem".to_string(),
        None => "the system's CA roots".to_string(),
    };
    let raw = verdict.as_raw();
    // OpenSSL's X509_V_ERR_* codes.
    Some(match raw {
        9 | 10 => format!(
            "kafka.bootstrap_servers: the broker at {server} presents a certificate (subject {subject:?}) {} {} ({}): the cluster's certificate must be renewed",
            if raw == 10 { "that expired on" } else { "not valid before" },
            if raw == 10 { cert.not_after().to_string() } else { cert.not_before().to_string() },
            verdict.error_string()
        ),
        62 | 64 => {
            let names: Vec<String> = cert
                .subject_alt_names()
                .map(|s| {
                    s.iter()
                        .filter_map(|n| n.dnsname().map(str::to_string).or_else(|| n.ipaddress().map(|ip| format!("{ip:?}"))))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "kafka.bootstrap_servers: the broker's certificate is for {} (subject {subject:?}), not {host:?}: connect by a name it carries (a test cluster may set kafka.properties.ssl.endpoint.identification.algorithm = \"none\")",
                if names.is_empty() { subject.clone() } else { names.join(", ") }
            )
        }
        2 | 18 | 19 | 20 | 21 => format!(
            "kafka.properties.ssl.ca.location: the broker's certificate (issuer {issuer:?}) is not signed by a CA in {trusted} ({}): give the cluster's CA certificate",
            verdict.error_string()
        ),
        _ => format!("kafka.properties.ssl.ca.location: the broker's certificate (subject {subject:?}) failed verification: {}", verdict.error_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(props: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig { properties: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..KafkaConfig::default() }
    }

    #[test]
    fn each_refusal_names_its_key() {
        let scram = kafka(&[("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.username", "kps")]);
        let cases = [
            (&scram, "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 322ms in state AUTH_REQ)", "kafka.properties.sasl.password: the broker refused user \"kps\" with SCRAM-SHA-512 (SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512)"),
            (&kafka(&[]), "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)", "kafka.properties.ssl.certificate.location: the broker requires a client certificate"),
            (&kafka(&[("security.protocol", "ssl")]), "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener? (after 18ms in state SSL_HANDSHAKE)", "kafka.properties.security.protocol: \"ssl\" does not match"),
            (&kafka(&[("sasl.mechanism", "OAUTHBEARER"), ("sasl.oauthbearer.token.endpoint.url", "http://idp/token")]), "sasl_ssl://h:1/bootstrap: SASL authentication error: {\"status\":\"invalid_token\"} (after 3ms in state AUTH_REQ)", "kafka.properties.sasl.oauthbearer.token.endpoint.url: the broker refused the token from http://idp/token"),
        ];
        for (k, error, want) in cases {
            let got = explain(&[error.to_string()], k, &Auth::default()).unwrap_or_default();
            assert!(got.starts_with(want), "for {error:?}\n got: {got}\nwant: {want}...");
        }
        assert_eq!(explain(&["1/1 brokers are down".into()], &kafka(&[]), &Auth::default()), None, "an absent broker is not explained here");
    }
}
