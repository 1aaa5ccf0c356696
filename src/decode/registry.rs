//! A Confluent Schema Registry client for the one call the sink needs, `GET /schemas/ids/{id}`,
//! with a cache: each id is fetched once per process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema id {id} is not in the registry at {url}")]
    UnknownId { id: u32, url: String },
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
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

pub struct Registry {
    base: String,
    http: reqwest::Client,
    cache: HashMap<u32, Arc<str>>,
    backoff: Backoff,
    max_attempts: u32,
    metrics: Option<Metrics>,
}

impl Registry {
    pub fn new(url: &str, timeout: Duration, backoff: Backoff, max_attempts: u32, metrics: Option<Metrics>) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| RegistryError::Request {
            id: 0,
            reason: format!("cannot build HTTP client: {e}"),
            retryable: false,
        })?;
        Ok(Self { base: url.trim_end_matches('/').to_string(), http, cache: HashMap::new(), backoff, max_attempts, metrics })
    }

    /// The writer schema (Avro JSON) of `id`, from the cache or the registry. Transient failures
    /// are retried with capped exponential backoff before they are returned.
    pub async fn schema(&mut self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(s) = self.cache.get(&id) {
            return Ok(s.clone());
        }
        let mut attempt = 1;
        let schema = loop {
            match self.fetch(id).await {
                Ok(s) => break s,
                Err(e) if e.retryable() && attempt < self.max_attempts => {
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(schema_id = id, attempt, wait_ms = wait.as_millis() as u64, error = %e, "registry request failed, retrying");
                    if let Some(m) = &self.metrics {
                        m.retries.with_label_values(&["registry"]).inc();
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let schema: Arc<str> = schema.into();
        self.cache.insert(id, schema.clone());
        Ok(schema)
    }

    async fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let request_error = |reason: String, retryable: bool| RegistryError::Request { id, reason, retryable };
        let resp = self.http.get(&url).send().await.map_err(|e| request_error(e.to_string(), true))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownId { id, url: self.base.clone() });
        }
        if !status.is_success() {
            let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Err(request_error(format!("HTTP {status} from {url}"), retryable));
        }
        let body: SchemaResponse = resp.json().await.map_err(|e| request_error(format!("bad response body: {e}"), false))?;
        match body.schema_type.as_deref() {
            None | Some("AVRO") => Ok(body.schema),
            Some(other) => Err(RegistryError::NotAvro { id, kind: other.to_string() }),
        }
    }
}
