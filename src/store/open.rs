//! Opens the configured object store: S3 (credentials, encryption and object settings), GCS,
//! Azure or a local directory, from `output.url` or `[s3]`.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredentialProvider};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, ReqwestConnector};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::{Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, RetryConfig, TagSet};

use super::aws::{self, Credentials, Sts};
use super::{CredentialInfo, Naming, ObjectSettings, Store, StoreError};
use crate::config::{Config, Location, S3Config, Sse};
use crate::metrics::Metrics;

impl Store {
    /// The store `config` names (`output.url`, or `[s3]` and `output.prefix`), with its
    /// naming, object settings and credentials. Not yet probed: see [`Store::probe`].
    pub fn open(config: &Config, metrics: Metrics) -> Result<Store, StoreError> {
        let location = config.location().map_err(|why| configure(&config.output.url, why))?;
        let env = &config.s3.env;
        let (inner, credentials): (Arc<dyn ObjectStore>, Option<CredentialInfo>) = match &location {
            Location::S3 { bucket, .. } => {
                let (s3, info) = s3(&config.s3, bucket)?;
                (s3, Some(info))
            }
            Location::Gcs { bucket, .. } => {
                let b = GoogleCloudStorageBuilder::new().with_bucket_name(bucket).with_client_options(client_options(&config.s3)?);
                let b = settings_from(env).fold(b, |b, (k, v): (GoogleConfigKey, _)| b.with_config(k, v));
                (Arc::new(b.build().map_err(|e| StoreError { op: "configure", key: location.url(), source: e })?), None)
            }
            Location::Azure { container, .. } => {
                let b = MicrosoftAzureBuilder::new().with_container_name(container).with_client_options(client_options(&config.s3)?);
                let b = settings_from(env).fold(b, |b, (k, v): (AzureConfigKey, _)| b.with_config(k, v));
                (Arc::new(b.build().map_err(|e| StoreError { op: "configure", key: location.url(), source: e })?), None)
            }
            Location::Local { root, .. } => {
                std::fs::create_dir_all(root).map_err(|e| configure(&location.url(), format!("cannot create {}: {e}", root.display())))?;
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| StoreError { op: "configure", key: location.url(), source: e })?;
                // Deleting a partition's last file removes its emptied directories too.
                (Arc::new(fs.with_automatic_cleanup(true)), None)
            }
        };
        // The kernel reads a file:// root as a path of the machine, so a local table goes through
        // an unprefixed local store; the others through the same client as the data files.
        let tables: (Arc<dyn ObjectStore>, String) = match &location {
            Location::S3 { bucket, .. } => (inner.clone(), format!("s3://{bucket}/")),
            Location::Gcs { bucket, .. } => (inner.clone(), format!("gs://{bucket}/")),
            Location::Azure { container, .. } => (inner.clone(), format!("az://{container}/")),
            Location::Local { root, .. } => (Arc::new(LocalFileSystem::new()), format!("file://{}/", root.display())),
        };
        let mut store = Store::new(inner, location.prefix(), &config.s3, metrics).with_naming(Naming::new(&config.output));
        store.tables = tables;
        store.location = location.url();
        if matches!(location, Location::S3 { .. }) {
            store.put = object_settings(&config.s3);
        }
        store.credentials = credentials;
        store.metrics.health.object_store(store.location(), store.credentials().map(ToString::to_string));
        Ok(store)
    }
}

/// The variables a builder's config keys name (`GOOGLE_SERVICE_ACCOUNT` → `google_service_account`),
/// as object_store's `from_env` would take them, but from the config loader's copy.
fn settings_from<K: std::str::FromStr>(env: &std::collections::BTreeMap<String, String>) -> impl Iterator<Item = (K, &String)> {
    env.iter().filter_map(|(key, value)| key.to_ascii_lowercase().parse::<K>().ok().map(|k| (k, value)))
}

fn configure(key: &str, why: impl Into<String>) -> StoreError {
    let why: String = why.into();
    StoreError { op: "configure", key: key.to_string(), source: object_store::Error::Generic { store: "config", source: why.into() } }
}

/// Tags and storage class of every data file.
fn object_settings(c: &S3Config) -> ObjectSettings {
    let mut tags = TagSet::default();
    for (k, v) in &c.tags {
        tags.push(k, v);
    }
    let mut attributes = Attributes::new();
    if !c.storage_class.is_empty() {
        attributes.insert(Attribute::StorageClass, c.storage_class.clone().into());
    }
    ObjectSettings { tags, attributes }
}

/// The S3 client: bucket, endpoint, encryption, the credential chain and the canned ACL.
fn s3(c: &S3Config, bucket: &str) -> Result<(Arc<dyn ObjectStore>, CredentialInfo), StoreError> {
    let fail = |source| StoreError { op: "configure", key: bucket.to_string(), source };
    let options = client_options(c)?;
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&c.region)
        .with_virtual_hosted_style_request(!c.path_style)
        .with_client_options(options)
        // One quick internal retry; the visible, logged and counted retries are ours.
        .with_retry(RetryConfig {
            backoff: BackoffConfig { init_backoff: Duration::from_millis(50), max_backoff: Duration::from_millis(500), base: 2.0 },
            max_retries: 1,
            retry_timeout: Duration::from_secs(30),
        });
    if !c.endpoint.is_empty() {
        b = b.with_endpoint(&c.endpoint);
    }
    let kind = match c.sse {
        Sse::None => None,
        Sse::Aes256 => Some("AES256"),
        Sse::Kms => Some("aws:kms"),
        Sse::KmsDsse => Some("aws:kms:dsse"),
        Sse::CustomerKey => Some("sse-c"),
    };
    let setting = |name: &str| name.parse::<AmazonS3ConfigKey>().map_err(fail);
    if let Some(kind) = kind {
        b = b.with_config(setting("aws_server_side_encryption")?, kind);
    }
    if !c.sse_kms_key_id.is_empty() {
        b = b.with_config(setting("aws_sse_kms_key_id")?, &c.sse_kms_key_id);
    }
    if c.sse == Sse::CustomerKey {
        b = b.with_ssec_encryption(c.sse_customer_key.trim());
    }
    let (provider, info) = credential_provider(c, &b)?;
    b = b.with_credentials(provider.clone());
    if !c.acl.is_empty() {
        let acl = http::HeaderValue::from_str(&c.acl).map_err(|e| configure("s3.acl", e.to_string()))?;
        b = b.with_http_connector(AclConnector { acl, credentials: provider, region: c.region.clone() });
    }
    Ok((Arc::new(b.build().map_err(fail)?), info))
}

/// The credential chain of `[s3]` as the S3 client signs with it; `b` makes the providers of
/// the sources object_store has its own of (container credentials, instance metadata).
fn credential_provider(c: &S3Config, b: &AmazonS3Builder) -> Result<(AwsCredentialProvider, CredentialInfo), StoreError> {
    let fail = |source| StoreError { op: "configure", key: c.bucket.clone(), source };
    let sts = Sts::new(c, sts_client(c)?);
    let builder = b.clone();
    let base = move |settings: &[(AmazonS3ConfigKey, String)]| -> Result<AwsCredentialProvider, String> {
        let b = settings.iter().fold(builder, |b, (k, v)| b.with_config(*k, v));
        Ok(b.build().map_err(|e| e.to_string())?.credentials().clone())
    };
    let (credentials, info) = aws::resolve(c, &sts, base).map_err(|why| configure("s3.credentials", why))?;
    let provider: AwsCredentialProvider = match credentials {
        Credentials::Provider(p) => p,
        Credentials::Builder(settings) => {
            let b = settings.iter().fold(b.clone(), |b, (k, v)| b.with_config(*k, v));
            b.build().map_err(fail)?.credentials().clone()
        }
    };
    Ok((provider, info))
}

/// The AWS credentials of `[s3]` for another client (the MSK IAM token of `kafka.auth`): the
/// same chain, sources and renewal the S3 client has, whatever the output location.
pub fn aws_credentials(c: &S3Config) -> Result<(AwsCredentialProvider, CredentialInfo), StoreError> {
    let mut b = AmazonS3Builder::new().with_bucket_name(&c.bucket).with_region(&c.region).with_client_options(client_options(c)?);
    if !c.endpoint.is_empty() {
        b = b.with_endpoint(&c.endpoint);
    }
    credential_provider(c, &b)
}

/// HTTP settings of the store client: plain http only when allowed, extra CA roots from
/// `ca_file`.
fn client_options(c: &S3Config) -> Result<ClientOptions, StoreError> {
    let mut o = ClientOptions::new().with_allow_http(c.allow_http).with_timeout(Duration::from_secs(60));
    for cert in ca_certificates(c)? {
        o = o.with_root_certificate(cert);
    }
    Ok(o)
}

fn ca_certificates(c: &S3Config) -> Result<Vec<object_store::Certificate>, StoreError> {
    if c.ca_file.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |source: object_store::Error| StoreError { op: "read s3.ca_file", key: c.ca_file.clone(), source };
    let pem = std::fs::read(&c.ca_file).map_err(|e| bad(object_store::Error::Generic { store: "S3", source: Box::new(e) }))?;
    object_store::Certificate::from_pem_bundle(&pem).map_err(bad)
}

/// The client of STS (AssumeRole, web identity): the store's CA roots, http only when allowed.
fn sts_client(c: &S3Config) -> Result<reqwest::Client, StoreError> {
    let mut b = reqwest::Client::builder().timeout(aws::STS_TIMEOUT).https_only(!c.allow_http);
    if !c.ca_file.is_empty() {
        let pem = std::fs::read(&c.ca_file).map_err(|e| configure(&c.ca_file, format!("read s3.ca_file: {e}")))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| configure(&c.ca_file, format!("s3.ca_file: {e}")))? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| configure("s3.sts_endpoint", e.to_string()))
}

/// Adds `x-amz-acl` to every request that creates an object (a put, the start of a multipart
/// upload) and signs the request again, the header included: object_store has no canned ACL,
/// and S3 refuses `x-amz-*` headers outside the signature.
#[derive(Debug)]
struct AclConnector {
    acl: http::HeaderValue,
    credentials: AwsCredentialProvider,
    region: String,
}

impl HttpConnector for AclConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(AclService { inner, acl: self.acl.clone(), credentials: self.credentials.clone(), region: self.region.clone() }))
    }
}

#[derive(Debug)]
struct AclService {
    inner: HttpClient,
    acl: http::HeaderValue,
    credentials: AwsCredentialProvider,
    region: String,
}

#[async_trait::async_trait]
impl HttpService for AclService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if creates_object(&req) {
            let digest = req.headers().get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).map(str::to_string);
            req.headers_mut().insert("x-amz-acl", self.acl.clone());
            req.headers_mut().remove(http::header::AUTHORIZATION);
            let credential = self.credentials.get_credential().await.map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
            let signer = AwsAuthorizer::new(&credential, "s3", &self.region);
            match digest.as_deref().map(hex_bytes) {
                Some(Some(bytes)) => signer.try_authorize(&mut req, Some(&bytes)),
                _ => signer.with_sign_payload(false).try_authorize(&mut req, None),
            }
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        }
        self.inner.execute(req).await
    }
}

/// A single put (not a part, not a copy) or the start of a multipart upload, signed for S3.
fn creates_object(req: &HttpRequest) -> bool {
    if !req.headers().contains_key(http::header::AUTHORIZATION) {
        return false;
    }
    let query = req.uri().query().unwrap_or("");
    match *req.method() {
        http::Method::PUT => !query.contains("partNumber=") && !req.headers().contains_key("x-amz-copy-source") && !query.contains("tagging"),
        http::Method::POST => query.split('&').any(|p| p == "uploads" || p == "uploads="),
        _ => false,
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutputConfig;

    fn with_output(output: OutputConfig) -> Config {
        Config { output, ..Config::default() }
    }

    #[test]
    fn every_url_scheme_builds_its_store() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let local = with_output(OutputConfig { url: format!("file://{}/lake", dir.path().display()), prefix: String::new(), ..OutputConfig::default() });
        let store = Store::open(&local, Metrics::new()?)?;
        assert_eq!(store.location(), format!("file://{}/lake", dir.path().display()));
        assert!(dir.path().join("lake").is_dir(), "the directory is created");
        let mut gcs = with_output(OutputConfig { url: "gs://bucket/bronze".into(), prefix: String::new(), ..OutputConfig::default() });
        gcs.s3.env.insert("GOOGLE_SERVICE_ACCOUNT_KEY".into(), "{}".into());
        // object_store reads the service account key while building: a wrong one is an error
        // naming GCS, which shows the variable reached its builder.
        let err = Store::open(&gcs, Metrics::new()?).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("gs://bucket/bronze"), "{err}");
        let mut az = with_output(OutputConfig { url: "az://container/bronze".into(), prefix: String::new(), ..OutputConfig::default() });
        assert!(Store::open(&az, Metrics::new()?).is_err(), "Azure without an account name is refused");
        az.s3.env.insert("AZURE_STORAGE_ACCOUNT_NAME".into(), "devaccount".into());
        az.s3.env.insert("AZURE_STORAGE_ACCOUNT_KEY".into(), "a2V5".into());
        let store = Store::open(&az, Metrics::new()?)?;
        assert_eq!(store.location(), "az://container/bronze");
        let s3 = with_output(OutputConfig { url: "s3://other/x/${topic}".into(), prefix: String::new(), ..OutputConfig::default() });
        let store = Store::open(&s3, Metrics::new()?)?;
        assert_eq!(store.location(), "s3://other/x/${topic}");
        assert_eq!(store.key("t", None, 0, 5), "x/t/topics/t/partition=0/00000000000000000005.parquet");
        Ok(())
    }

    /// A local directory refuses a second create of a name, as S3 refuses a conditional put:
    /// the fencing of DESIGN.md holds on `file://` too.
    #[tokio::test]
    async fn a_local_directory_keeps_to_conditional_puts() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = with_output(OutputConfig { url: format!("file://{}", dir.path().display()), prefix: String::new(), ..OutputConfig::default() });
        let mut store = Store::open(&config, Metrics::new()?)?;
        store.probe().await?;
        assert!(store.conditional(), "the probe found no create-new semantics");
        let key = store.key("t", None, 0, 7);
        let super::super::Uploaded::Created { e_tag } = store.upload_new(&key, bytes::Bytes::from_static(b"first")).await? else {
            return Err("a new name must be created".into());
        };
        assert_eq!(store.upload_new(&key, bytes::Bytes::from_static(b"second")).await?, super::super::Uploaded::Exists);
        assert_eq!(std::fs::read(dir.path().join(&key))?, b"first", "a refused create left the file as it was");
        assert!(store.delete_if_ours(&key, e_tag.as_deref()).await?, "our own file, unchanged, is deleted");
        Ok(())
    }

    #[test]
    fn only_object_creating_requests_get_the_acl() -> Result<(), Box<dyn std::error::Error>> {
        let req = |method: &str, uri: &str| -> Result<HttpRequest, http::Error> {
            http::Request::builder().method(method).uri(uri).header("authorization", "AWS4-HMAC-SHA256 x").body(Vec::<u8>::new().into())
        };
        assert!(creates_object(&req("PUT", "http://s3/b/k.parquet")?));
        assert!(creates_object(&req("POST", "http://s3/b/k.parquet?uploads")?));
        assert!(!creates_object(&req("PUT", "http://s3/b/k.parquet?partNumber=1&uploadId=x")?));
        assert!(!creates_object(&req("POST", "http://s3/b/k.parquet?uploadId=x")?), "completing an upload");
        assert!(!creates_object(&req("GET", "http://s3/b/k.parquet")?));
        assert_eq!(hex_bytes("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex_bytes("UNSIGNED-PAYLOAD"), None);
        Ok(())
    }
}
