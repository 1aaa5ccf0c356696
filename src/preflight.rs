//! Start-up checks, before anything is consumed: each dependency is reached once with the
//! configured address and credentials, and every failure is reported with the key to fix.

use std::time::Duration;

use crate::config::{Config, RegistryConfig, Tolerance};
use crate::source::Auth;
use crate::decode::registry::{with_causes, Registry, RegistryError};
use crate::decode::tls_probe::tls_refusal;
use crate::store::{Store, StoreError};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Every problem found, one line each naming the key (empty: all reachable).
pub async fn check(config: &Config, store: &mut Store, auth: &Auth) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(check_kafka(config, auth).await);
    if let Err(e) = check_registry(config).await {
        problems.push(e);
    }
    match store.probe().await {
        Err(e) => problems.push(store_problem(config, store, &e)),
        Ok(()) => problems.extend(table_problem(config, store.location(), store.conditional())),
    }
    problems
}

/// A Delta table's log needs a store that refuses a second put of one key: two writers of a
/// version (a commit and a compaction, two members) would otherwise both "win", the later put
/// replacing the earlier, and the earlier writer go on from a state the log no longer holds.
/// delta-rs refuses such a store too unless told it is unsafe.
fn table_problem(config: &Config, location: &str, conditional: bool) -> Option<String> {
    (config.output.format == crate::config::Format::Delta && !conditional).then(|| {
        format!(
            "output.format: {location} does not refuse a conditional put (If-None-Match: *) of an existing key, which a Delta table's log needs so that two writers never both write one version: use a store that does (AWS S3, Google Cloud Storage, Azure Blob Storage, MinIO, SeaweedFS, a local directory), or output.format = \"files\""
        )
    })
}

async fn check_kafka(config: &Config, auth: &Auth) -> Vec<String> {
    let (k, auth) = (config.kafka.clone(), auth.clone());
    let dlq = (config.errors.tolerance == Tolerance::All).then(|| config.errors.dead_letter_topic.clone());
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let (_, md) = crate::source::probe(&k, &auth, &k.group_id, KAFKA_TIMEOUT)?;
        let mut problems = Vec::new();
        let exists = |t: &str| md.topics().iter().any(|mt| mt.name() == t && !mt.partitions().is_empty());
        for t in &k.topics {
            if crate::config::KafkaConfig::is_pattern(t) {
                if !md.topics().iter().any(|mt| k.subscribes_to(mt.name())) {
                    tracing::warn!(pattern = %t, "kafka.topics: no topic matches the pattern yet; consuming starts when one is created");
                }
            } else if !exists(t) {
                tracing::warn!(topic = %t, "kafka.topics: topic does not exist yet; consuming starts when it is created");
            }
        }
        if let Some(t) = dlq {
            if !exists(&t) {
                problems.push(format!(
                    "errors.dead_letter_topic: topic {t:?} does not exist: create it (records that cannot be written go there)"
                ));
            }
        }
        Ok(problems)
    })
    .await;
    match found {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => vec![e],
        Err(e) => vec![format!("kafka: the check did not finish: {e}")],
    }
}

async fn check_registry(config: &Config) -> Result<(), String> {
    let r = &config.schema_registry;
    let registry = Registry::new(r, None).map_err(|e| format!("schema_registry: {e}"))?;
    let reason = match registry.ping().await {
        Ok(()) => return Ok(()),
        Err(RegistryError::Request { reason, .. }) => reason,
        Err(e) => e.to_string(),
    };
    if let Some(problem) = registry_problem(r, &reason) {
        return Err(problem);
    }
    // A refused client certificate can reach the HTTP client as a bare close: ask the TLS
    // handshake itself.
    if let Some(problem) = tls_refusal(r).await.and_then(|alert| registry_problem(r, &alert)) {
        return Err(problem);
    }
    Err(format!("schema_registry.url: the registry at {} did not answer ({reason}): check the URL and that it is running", r.url))
}

/// The key to fix for a registry failure that names its cause (`None`: it does not).
fn registry_problem(r: &RegistryConfig, reason: &str) -> Option<String> {
    if reason.contains("401") || reason.contains("403") {
        let key = if r.bearer_token.is_empty() { "schema_registry.username" } else { "schema_registry.bearer_token" };
        Some(format!("{key}: the registry at {} refused the credentials ({reason})", r.url))
    } else if reason.contains("invalid peer certificate") {
        Some(format!("schema_registry.ca_file: the registry's certificate at {} is not trusted ({reason}): give the CA that signed it", r.url))
    } else if ["CertificateRequired", "BadCertificate", "UnknownCA"].iter().any(|a| reason.contains(a)) {
        Some(format!(
            "schema_registry.client_cert_file: the registry at {} wants a client certificate it trusts (mutual TLS) ({reason}): set client_cert_file and client_key_file",
            r.url
        ))
    } else {
        None
    }
}

fn store_problem(config: &Config, store: &Store, e: &StoreError) -> String {
    let s3 = &config.s3;
    let endpoint = if s3.endpoint.is_empty() { "AWS" } else { s3.endpoint.as_str() };
    if !matches!(config.location(), Ok(crate::config::Location::S3 { .. })) {
        // The store's client refuses plain HTTP before any request (an emulator's or a private
        // endpoint's http:// URL): the message is deep in the error's causes.
        if !s3.allow_http && with_causes(&e.source).contains("URL scheme is not allowed") {
            return format!("s3.allow_http: {} is reached over plain http://: set allow_http = true (or use https)", store.location());
        }
        return format!("output.url: cannot write to {} ({})", store.location(), e.source);
    }
    let by = store.credentials().map(|c| format!(" (credentials: {c})")).unwrap_or_default();
    let text = e.source.to_string();
    // Checked in this order: a typed refusal, then a missing bucket, then a refusal the server
    // only spelt out in its message.
    let typed_refusal = matches!(e.source, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. });
    let missing =
        text.contains("NoSuchBucket") || text.contains("does not exist") || matches!(e.source, object_store::Error::NotFound { .. });
    let worded_refusal = ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"].iter().any(|w| text.contains(w));
    if typed_refusal || (!missing && worded_refusal) {
        format!(
            "s3.access_key_id: {endpoint} refused the credentials for bucket {:?}{by} ({text}): check the key pair and its rights",
            s3.bucket
        )
    } else if missing {
        format!("s3.bucket: bucket {:?} does not exist at {endpoint}: create it or fix the name", s3.bucket)
    } else {
        format!(
            "s3.endpoint: cannot write to bucket {:?} at {endpoint} ({text}): check the endpoint and that the store is running",
            s3.bucket
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutputConfig;
    use crate::metrics::Metrics;

    /// A gs:// lake whose endpoint is http:// (an emulator's) with `s3.allow_http` off: the
    /// client refuses before connecting, and the problem names the key.
    #[tokio::test]
    async fn plain_http_to_a_cloud_store_names_allow_http() -> Result<(), Box<dyn std::error::Error>> {
        let mut config = Config { output: OutputConfig { url: "gs://bucket/bronze".into(), prefix: String::new(), ..OutputConfig::default() }, ..Config::default() };
        let key = r#"{"gcs_base_url": "http://127.0.0.1:1", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#;
        config.s3.env.insert("GOOGLE_SERVICE_ACCOUNT_KEY".into(), key.into());
        let mut store = Store::open(&config, Metrics::new()?)?;
        let e = store.probe().await.err().ok_or("the probe over http:// succeeded")?;
        let problem = store_problem(&config, &store, &e);
        assert!(problem.starts_with("s3.allow_http: gs://bucket/bronze"), "{problem}");
        config.s3.allow_http = true;
        let problem = store_problem(&config, &store, &e);
        assert!(problem.starts_with("output.url: cannot write to gs://bucket/bronze"), "with allow_http set: {problem}");
        Ok(())
    }

    /// A Delta table on a store that replaces an object a conditional put should have left is
    /// refused in one line naming the key; files mode goes on, and a store that refuses is fine.
    #[test]
    fn a_delta_table_needs_a_store_that_refuses_a_second_put() {
        let mut config = Config::default();
        assert_eq!(table_problem(&config, "s3://datalake/bronze", false), None, "files mode rides a store without conditional puts");
        config.output.format = crate::config::Format::Delta;
        assert_eq!(table_problem(&config, "s3://datalake/bronze", true), None, "a store that refuses is fine");
        let line = table_problem(&config, "s3://datalake/bronze", false).unwrap_or_default();
        assert!(line.starts_with("output.format: s3://datalake/bronze does not refuse a conditional put"), "{line}");
    }
}
