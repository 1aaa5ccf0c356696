//! A Confluent Schema Registry client for the one call the sink needs, `GET /schemas/ids/{id}`,
//! with a cache: each id is fetched once per process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::backoff::Backoff;
use crate::config::RegistryConfig;
use crate::health::Dependency;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema id {id} is not in the registry at {url}")]
    UnknownId { id: u32, url: String },
    #[error("subject {subject} has no schema in the registry at {url}")]
    UnknownSubject { subject: String, url: String },
    #[error("schema id {id} is a {kind} schema, only AVRO is supported")]
    NotAvro { id: u32, kind: String },
    #[error("registry request for schema id {id} failed: {reason}")]
    Request { id: u32, reason: String, retryable: bool },
}

impl RegistryError {
    pub fn retryable(&self) -> bool {
        matches!(self, RegistryError::Request { retryable: true, .. })
    }
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    /// Present in subject-version answers.
    id: Option<u32>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

/// How requests to the registry authenticate (the client certificate is the HTTP client's).
enum Credentials {
    Basic(String, String),
    Bearer(String),
}

/// An error and its causes (a TLS alert is a cause of reqwest's "error sending request").
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// At most this many unknown ids are remembered at once (16 bytes each).
const MAX_UNKNOWN_IDS: usize = 100_000;

pub struct Registry {
    base: String,
    http: reqwest::Client,
    /// Basic auth or a bearer token; never logged.
    auth: Option<Credentials>,
    cache: HashMap<u32, Arc<str>>,
    /// Ids the registry answered 404 for, and when: unknown without a request until
    /// `unknown_ttl` has passed (a schema id, once registered, never changes; one not yet
    /// registered may be later).
    unknown: HashMap<u32, Instant>,
    unknown_ttl: Duration,
    backoff: Backoff,
    max_attempts: u32,
    metrics: Option<Metrics>,
}

impl Registry {
    pub fn new(c: &RegistryConfig, metrics: Option<Metrics>) -> Result<Self, RegistryError> {
        let fail = |reason: String| RegistryError::Request { id: 0, reason, retryable: false };
        let mut http = reqwest::Client::builder().timeout(Duration::from_millis(c.timeout_ms));
        if !c.ca_file.is_empty() {
            let pem = std::fs::read(&c.ca_file).map_err(|e| fail(format!("schema_registry.ca_file {}: {e}", c.ca_file)))?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(format!("schema_registry.ca_file {}: {e}", c.ca_file)))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        if !c.client_cert_file.is_empty() {
            let read = |key: &str, path: &str| std::fs::read(path).map_err(|e| fail(format!("schema_registry.{key} {path}: {e}")));
            let mut pem = read("client_cert_file", &c.client_cert_file)?;
            pem.push(b'\n');
            pem.extend(read("client_key_file", &c.client_key_file)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| fail(format!("schema_registry.client_cert_file: not a PEM certificate and key ({e})")))?;
            http = http.identity(identity);
        }
        let http = http.build().map_err(|e| fail(format!("cannot build HTTP client: {}", with_causes(&e))))?;
        let auth = if !c.bearer_token.is_empty() {
            Some(Credentials::Bearer(c.bearer_token.clone()))
        } else {
            (!c.username.is_empty()).then(|| Credentials::Basic(c.username.clone(), c.password.clone()))
        };
        let backoff =
            Backoff { initial: Duration::from_millis(c.retry_initial_backoff_ms), max: Duration::from_millis(c.retry_max_backoff_ms) };
        Ok(Self {
            base: c.url.trim_end_matches('/').to_string(),
            http,
            auth,
            cache: HashMap::new(),
            unknown: HashMap::new(),
            unknown_ttl: Duration::from_millis(c.unknown_id_ttl_ms),
            backoff,
            max_attempts: c.retry_max_attempts,
            metrics,
        })
    }

    /// `GET {url}/subjects`: whether the registry answers (start-up check).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/subjects", self.base);
        let resp = self.get(&url).send().await.map_err(|e| RegistryError::Request { id: 0, reason: with_causes(&e), retryable: true })?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(RegistryError::Request { id: 0, reason: format!("HTTP {s} from {url}"), retryable: s.is_server_error() }),
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(url);
        match &self.auth {
            Some(Credentials::Basic(user, password)) => req.basic_auth(user, Some(password)),
            Some(Credentials::Bearer(token)) => req.bearer_auth(token),
            None => req,
        }
    }

    /// The writer schema (Avro JSON) of `id`, from the cache or the registry. Transient failures
    /// are retried with capped exponential backoff before they are returned.
    pub async fn schema(&mut self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(s) = self.cache.get(&id) {
            return Ok(s.clone());
        }
        let unknown = || RegistryError::UnknownId { id, url: self.base.clone() };
        if self.unknown.get(&id).is_some_and(|since| since.elapsed() < self.unknown_ttl) {
            return Err(unknown());
        }
        let path = format!("/schemas/ids/{id}");
        let body = match self.fetch_retrying(&path, id, unknown).await {
            Ok(body) => body,
            Err(e) => {
                if matches!(e, RegistryError::UnknownId { .. }) && !self.unknown_ttl.is_zero() {
                    // Bounded: a producer writing random ids must not grow this without limit.
                    // When full, the expired ids go; if half of it is still fresh, all of it
                    // goes: one scan per tens of thousands of ids, never one per record.
                    if self.unknown.len() >= MAX_UNKNOWN_IDS {
                        self.unknown.retain(|_, since| since.elapsed() < self.unknown_ttl);
                        if self.unknown.len() >= MAX_UNKNOWN_IDS / 2 {
                            self.unknown.clear();
                        }
                    }
                    self.unknown.insert(id, Instant::now());
                }
                return Err(e);
            }
        };
        self.unknown.remove(&id);
        let schema: Arc<str> = body.schema.into();
        self.cache.insert(id, schema.clone());
        Ok(schema)
    }

    /// The id of the latest schema registered under `subject` (its schema is cached too).
    pub async fn latest_id(&mut self, subject: &str) -> Result<u32, RegistryError> {
        let path = format!("/subjects/{subject}/versions/latest");
        let body = self
            .fetch_retrying(&path, 0, || RegistryError::UnknownSubject { subject: subject.to_string(), url: self.base.clone() })
            .await?;
        let id =
            body.id.ok_or_else(|| RegistryError::Request { id: 0, reason: format!("{path}: no id in the answer"), retryable: false })?;
        self.cache.entry(id).or_insert_with(|| body.schema.into());
        Ok(id)
    }

    async fn fetch_retrying(&self, path: &str, id: u32, not_found: impl Fn() -> RegistryError) -> Result<SchemaResponse, RegistryError> {
        let mut attempt = 1;
        loop {
            match self.fetch(path, id, &not_found).await {
                Ok(body) => {
                    if attempt > 1 {
                        if let Some(m) = &self.metrics {
                            m.health.up(Dependency::SchemaRegistry);
                        }
                    }
                    return Ok(body);
                }
                Err(e) if e.retryable() && (self.max_attempts == 0 || attempt < self.max_attempts) => {
                    if let Some(m) = &self.metrics {
                        m.health.down(Dependency::SchemaRegistry, &e);
                    }
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(path, attempt, wait_ms = wait.as_millis() as u64, error = %e, "registry request failed, retrying");
                    if let Some(m) = &self.metrics {
                        m.retries.with_label_values(&["registry"]).inc();
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch(&self, path: &str, id: u32, not_found: &impl Fn() -> RegistryError) -> Result<SchemaResponse, RegistryError> {
        let url = format!("{}{path}", self.base);
        let request_error = |reason: String, retryable: bool| RegistryError::Request { id, reason, retryable };
        let resp = self.get(&url).send().await.map_err(|e| request_error(e.to_string(), true))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(not_found());
        }
        if !status.is_success() {
            let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Err(request_error(format!("HTTP {status} from {url}"), retryable));
        }
        let body: SchemaResponse = resp.json().await.map_err(|e| request_error(format!("bad response body: {e}"), false))?;
        match body.schema_type.as_deref() {
            None | Some("AVRO") => Ok(body),
            Some(other) => Err(RegistryError::NotAvro { id: body.id.unwrap_or(id), kind: other.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{extract::Path, http::StatusCode, routing::get, Router};

    use super::*;

    /// A registry that knows id 5 only, counting the requests it answers.
    async fn registry(requests: Arc<AtomicUsize>) -> Result<String, std::io::Error> {
        let app = Router::new().route(
            "/schemas/ids/{id}",
            get(move |Path(id): Path<u32>| {
                let requests = requests.clone();
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    match id {
                        5 => (StatusCode::OK, r#"{"schema": "\"long\""}"#.to_string()),
                        _ => (StatusCode::NOT_FOUND, r#"{"error_code": 40403, "message": "Schema not found"}"#.to_string()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    #[tokio::test]
    async fn an_unknown_id_is_asked_once_per_ttl_and_a_known_one_once() -> Result<(), Box<dyn std::error::Error>> {
        for (ttl_ms, expected) in [(30_000, 2), (0, 4)] {
            let requests = Arc::new(AtomicUsize::new(0));
            let url = registry(requests.clone()).await?;
            let mut r = Registry::new(&RegistryConfig { url, unknown_id_ttl_ms: ttl_ms, ..Default::default() }, None)?;
            for _ in 0..3 {
                let e = r.schema(7).await.err().ok_or("id 7 is not in the registry")?;
                assert!(matches!(e, RegistryError::UnknownId { id: 7, .. }), "ttl {ttl_ms}: {e}");
            }
            assert_eq!(&*r.schema(5).await?, "\"long\"");
            assert_eq!(&*r.schema(5).await?, "\"long\"");
            // ttl 30 s: one request for id 7, one for id 5; ttl 0: three for id 7, one for id 5.
            assert_eq!(requests.load(Ordering::SeqCst), expected, "requests with unknown_id_ttl_ms = {ttl_ms}");
        }
        Ok(())
    }
}
