//! How every Kafka client of the sink (the consumer, the dead-letter producer, the start-up and
//! `doctor` probes) authenticates: what `[kafka.properties]` sets (TLS, SASL PLAIN, SCRAM,
//! OAUTHBEARER with OIDC, GSSAPI: librdkafka does it all), or, with `kafka.auth =
//! "aws_msk_iam"`, Amazon MSK's IAM scheme: SASL_SSL OAUTHBEARER whose token is a SigV4-presigned
//! `kafka-cluster:Connect` URL, base64url-encoded, in the format of AWS's
//! `aws-msk-iam-sasl-signer` libraries, signed with the AWS credential chain of `[s3]`.
//!
//! librdkafka asks for a token through `ClientContext::generate_oauth_token`, on whatever thread
//! serves the client's queue (a runtime worker, for the stream consumer), at start and at 80% of
//! the last token's lifetime. That call must not wait on the network, so a task keeps the latest
//! credentials at hand (the chain's providers renew them before they expire) and the callback only
//! signs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::{AwsCredential, AwsCredentialProvider};
use rdkafka::client::OAuthToken;
use rdkafka::ClientConfig;

use crate::config::{Config, KafkaAuth};

/// Who signs the tokens, for `check`, `doctor` and the log: never a secret.
pub const USER_AGENT: &str = concat!("kafka-parquet-sink/", env!("CARGO_PKG_VERSION"));

/// How often the credentials are asked for again: the providers answer from their cache until
/// shortly before expiry, so this only bounds how stale a renewal can be.
const CREDENTIAL_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{key}: {why}")]
    Config { key: &'static str, why: String },
    #[error("s3.credentials: the AWS credentials for the MSK IAM token: {0}")]
    Credentials(#[source] object_store::Error),
}

/// The authentication every client context of the sink carries. Cheap to clone.
#[derive(Clone, Default)]
pub struct Auth {
    msk: Option<Arc<MskIam>>,
}

struct MskIam {
    region: String,
    lifetime: Duration,
    /// Where the credentials come from (`check`, `doctor`, error messages).
    source: String,
    latest: Arc<Mutex<Arc<AwsCredential>>>,
    refresher: tokio::task::AbortHandle,
}

impl Drop for MskIam {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Auth {
    /// The authentication `kafka.auth` asks for. With `aws_msk_iam`, `credentials` gives the
    /// chain's provider (the store's, [`crate::store::aws_credentials`]); its first answer is
    /// awaited here, so no client ever waits for one. Must run inside the runtime.
    pub async fn from_config(
        config: &Config,
        credentials: impl FnOnce() -> Result<(AwsCredentialProvider, String), String>,
    ) -> Result<Auth, AuthError> {
        let k = &config.kafka;
        if k.auth == KafkaAuth::Properties {
            return Ok(Auth::default());
        }
        let region = if k.aws_region.is_empty() { config.s3.region.clone() } else { k.aws_region.clone() };
        let (provider, source) = credentials().map_err(|why| AuthError::Config { key: "s3.credentials", why })?;
        let first = provider.get_credential().await.map_err(AuthError::Credentials)?;
        let latest = Arc::new(Mutex::new(first));
        let (cache, p) = (latest.clone(), provider.clone());
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(CREDENTIAL_POLL).await;
                match p.get_credential().await {
                    Ok(c) => *cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c,
                    Err(e) => tracing::warn!(error = %e, "could not renew the AWS credentials of the MSK IAM token; signing with the current ones"),
                }
            }
        })
        .abort_handle();
        let lifetime = Duration::from_secs(k.token_lifetime_secs);
        Ok(Auth { msk: Some(Arc::new(MskIam { region, lifetime, source, latest, refresher })) })
    }

    /// What the clients authenticate with, for `check` and `doctor`; `None` for
    /// `[kafka.properties]`.
    pub fn describe(&self) -> Option<String> {
        self.msk.as_ref().map(|m| format!("AWS MSK IAM, region {}, credentials: {}", m.region, m.source))
    }

    pub fn is_msk_iam(&self) -> bool {
        self.msk.is_some()
    }

    /// Sets what the scheme needs on a client's configuration (after `[kafka.properties]`).
    pub fn configure(&self, cfg: &mut ClientConfig) {
        if self.msk.is_some() {
            cfg.set("security.protocol", "SASL_SSL").set("sasl.mechanism", "OAUTHBEARER");
        }
    }

    /// A token for librdkafka's refresh callback.
    pub fn token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(m) = &self.msk else {
            return Err("no token source: set sasl.oauthbearer.method = \"oidc\" or kafka.auth = \"aws_msk_iam\"".into());
        };
        let credential = m.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let now = Utc::now();
        let token = msk_token(&credential, &m.region, now, m.lifetime);
        let lifetime_ms = now.timestamp_millis() + i64::try_from(m.lifetime.as_millis()).unwrap_or(i64::MAX);
        tracing::debug!(region = %m.region, expires_ms = lifetime_ms, "signed an MSK IAM token");
        Ok(OAuthToken { token, principal_name: credential.key_id.clone(), lifetime_ms })
    }
}

/// The MSK IAM token: `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
/// presigned with SigV4 (service `kafka-cluster`, `X-Amz-SignedHeaders=host`, the payload hash of
/// an empty body, the session token as `X-Amz-Security-Token`), `User-Agent` appended after
/// signing, all base64url-encoded without padding: what `aws-msk-iam-sasl-signer` produces.
pub fn msk_token(c: &AwsCredential, region: &str, now: DateTime<Utc>, lifetime: Duration) -> String {
    use base64::Engine as _;
    let host = format!("kafka.{region}.amazonaws.com");
    let (date, amz_date) = (now.format("%Y%m%d").to_string(), now.format("%Y%m%dT%H%M%SZ").to_string());
    let scope = format!("{date}/{region}/kafka-cluster/aws4_request");
    let mut params: Vec<(&str, String)> = vec![
        ("Action", "kafka-cluster:Connect".into()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".into()),
        ("X-Amz-Credential", format!("{}/{scope}", c.key_id)),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", lifetime.as_secs().to_string()),
        ("X-Amz-SignedHeaders", "host".into()),
    ];
    if let Some(token) = &c.token {
        params.push(("X-Amz-Security-Token", token.clone()));
    }
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect();
    let query = query.join("&");
    let canonical = format!("GET\n/\n{query}\nhost:{host}\n\nhost\n{}", hex(&sha256(b"")));
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&sha256(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", c.secret_key).as_bytes(), date.as_bytes());
    for part in [region, "kafka-cluster", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    let url = format!("https://{host}/?{query}&X-Amz-Signature={signature}&User-Agent={}", uri_encode(USER_AGENT));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// The token for fixed credentials and time, against a signature computed independently
    /// (Python's hmac and hashlib, the algorithm of scripts/aws_stub.py's verifier).
    #[test]
    fn the_token_is_a_presigned_connect_url() -> Result<(), Box<dyn std::error::Error>> {
        let c = AwsCredential { key_id: "AKIDEXAMPLE".into(), secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(), token: Some("tok/en+1".into()) };
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:20:30Z")?.with_timezone(&Utc);
        let token = msk_token(&c, "eu-west-1", now, Duration::from_secs(900));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'), "base64url without padding: {token}");
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token)?)?;
        let expected = "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIDEXAMPLE%2F20261201%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20261201T102030Z\
            &X-Amz-Expires=900&X-Amz-Security-Token=tok%2Fen%2B1&X-Amz-SignedHeaders=host\
            &X-Amz-Signature=SIGNATURE&User-Agent=kafka-parquet-sink%2F";
        let (head, tail) = expected.split_once("SIGNATURE").ok_or("template")?;
        assert!(url.starts_with(head) && url.contains(tail), "the URL's parameters, in order:\n{url}\n{expected}");
        let signature = url.split("X-Amz-Signature=").nth(1).and_then(|s| s.split('&').next()).ok_or("no signature")?;
        assert_eq!(signature, "c5b331390b56cb823eeb14a9825bb1ce0fb9888d3b75c403ec43356b86a5d17b", "SigV4 signature");
        Ok(())
    }

    #[test]
    fn sigv4_encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("kafka-cluster:Connect"), "kafka-cluster%3AConnect");
        assert_eq!(uri_encode("a b/c~d_e.f"), "a%20b%2Fc~d_e.f");
    }
}
