//! The one typed configuration: defaults (the `Default` impls below, and nowhere else), then a
//! TOML file, then `KPS__SECTION__KEY` environment variables. Validated once, every error listed.
//! This is the only module that reads the environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod paths;
mod store;
mod table;
pub use store::*;
pub use table::*;

/// Prefix of environment variables that override file values: `KPS__FLUSH__MAX_RECORDS=5000`.
pub const ENV_PREFIX: &str = "KPS__";

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub schema_registry: RegistryConfig,
    pub s3: S3Config,
    pub output: OutputConfig,
    pub flush: FlushConfig,
    pub errors: ErrorsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub connect: ConnectConfig,
    pub table: TableConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    #[serde(deserialize_with = "string_or_list")]
    pub topics: Vec<String>,
    /// `earliest` or `latest`: where a partition without a committed offset starts.
    pub auto_offset_reset: String,
    /// Static group membership (`group.instance.id`): a restarted replica with the same id gets
    /// its partitions back at once, without a rebalance. Empty: dynamic membership.
    pub group_instance_id: String,
    /// Passed to librdkafka as they are (`session.timeout.ms = "45000"`): TLS
    /// (`security.protocol`, `ssl.*`), SASL (`sasl.*`: PLAIN, SCRAM, OAUTHBEARER with OIDC,
    /// GSSAPI), any other client setting.
    pub properties: BTreeMap<String, String>,
    /// How the sink authenticates to the brokers: `properties` (what `[kafka.properties]` sets),
    /// or `aws_msk_iam` (Amazon MSK IAM: SASL_SSL OAUTHBEARER with a SigV4-signed token from
    /// the AWS credential chain of `[s3]`, renewed before it expires).
    pub auth: KafkaAuth,
    /// With `auth = "aws_msk_iam"`: the cluster's region; empty: `s3.region`.
    pub aws_region: String,
    /// With `auth = "aws_msk_iam"`: how long a signed token is valid (60 .. 900 s, MSK's most);
    /// librdkafka asks for a new one at 80% of it.
    pub token_lifetime_secs: u64,
}

/// `kafka.auth`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaAuth {
    Properties,
    AwsMskIam,
}

/// librdkafka properties the sink sets itself; `[kafka.properties]` may not override them.
pub const RESERVED_PROPERTIES: &[&str] =
    &["bootstrap.servers", "group.id", "group.instance.id", "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset"];

impl KafkaConfig {
    /// A `kafka.topics` entry starting with `^` is a regular expression over topic names
    /// (librdkafka subscribes to every matching topic, existing or created later).
    pub fn is_pattern(entry: &str) -> bool {
        entry.starts_with('^')
    }

    /// Whether the topic is one of `topics`, by name or by pattern.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| if Self::is_pattern(t) { regex::Regex::new(t).is_ok_and(|r| r.is_match(topic)) } else { t == topic })
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "connect-minio-s3-sink".into(),
            topics: vec!["supabase-habit.public.tasks".into()],
            auto_offset_reset: "earliest".into(),
            group_instance_id: String::new(),
            properties: BTreeMap::new(),
            auth: KafkaAuth::Properties,
            aws_region: String::new(),
            token_lifetime_secs: 900,
        }
    }
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    /// HTTP basic auth (Confluent Cloud: the API key and secret); empty: none.
    pub username: String,
    pub password: String,
    /// PEM file of extra CA certificates for an https:// registry; empty: the system's roots.
    pub ca_file: String,
    /// Mutual TLS: PEM files of the client certificate (with its chain) and its private key,
    /// presented to an https:// registry that asks for one; empty: none.
    pub client_cert_file: String,
    pub client_key_file: String,
    /// `Authorization: Bearer` token (instead of basic auth); empty: none.
    pub bearer_token: String,
    /// Timeout of one registry request.
    pub timeout_ms: u64,
    /// Attempts of one schema lookup on transient errors before the error is fatal; 0: retry
    /// until the registry answers (an outage pauses the sink instead of stopping it).
    pub retry_max_attempts: u32,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// How long an id the registry answered 404 for is taken as unknown without asking again
    /// (each record of a broken producer would otherwise cost a round trip); 0: ask every time.
    pub unknown_id_ttl_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:8081".into(),
            username: String::new(),
            password: String::new(),
            ca_file: String::new(),
            client_cert_file: String::new(),
            client_key_file: String::new(),
            bearer_token: String::new(),
            timeout_ms: 10_000,
            retry_max_attempts: 0,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 30_000,
            unknown_id_ttl_ms: 30_000,
        }
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        shown.redact();
        f.debug_struct("RegistryConfig")
            .field("url", &shown.url)
            .field("username", &shown.username)
            .field("password", &shown.password)
            .field("bearer_token", &shown.bearer_token)
            .finish_non_exhaustive()
    }
}

impl RegistryConfig {
    fn redact(&mut self) {
        for secret in [&mut self.password, &mut self.bearer_token] {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
    }
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, an assertion key's passphrase, ...).
pub fn is_secret_property(key: &str) -> bool {
    ["password", "secret", "passphrase"].iter().any(|w| key.contains(w)) || key == "sasl.oauthbearer.config" || key == "ssl.key.pem"
}

pub(crate) const REDACTED: &str = "***";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// `files` (Parquet files, offsets in the group) or `delta` (a Delta Lake table per topic,
    /// offsets in its log; see `[table]`).
    pub format: Format,
    /// Where files go: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///absolute/dir`; the URL's path is the prefix. Empty: `s3.bucket` and `prefix`.
    pub url: String,
    /// Key prefix inside the bucket (with `url` empty); files go to
    /// `<prefix>/topics/<topic>/partition=<p>/`. `${topic}` is replaced by the topic.
    pub prefix: String,
    /// `offset`: `<start offset, 20 digits>.parquet`; `confluent`: the Confluent S3 sink's
    /// `<topic>+<partition>+<start offset>.<codec>.parquet`.
    pub file_naming: FileNaming,
    /// With `file_naming = "confluent"`: digits of the start offset (zero-padded), the
    /// connector's `filename.offset.zero.pad.width`.
    pub offset_pad_width: usize,
    /// With `file_naming = "confluent"`: the separator of topic, partition and offset, the
    /// connector's `file.delim`.
    pub file_delim: String,
    /// Parquet codec: `snappy`, `zstd`, `lz4` (LZ4_RAW), `gzip` or `none`.
    pub compression: Codec,
    /// Level of `zstd` (1..22) or `gzip` (0..9); 0: the codec's default (zstd 1, gzip 6).
    pub compression_level: i32,
    /// Add a `__kafka_headers` column: the record's headers as a list of key/value, values as
    /// bytes (the connector's `store.kafka.headers`).
    pub headers: bool,
    /// A record of a new schema version: `merge` keeps the open file when the versions
    /// reconcile (the file's schema becomes their union), `roll` closes it (flush reason
    /// `schema`), as every change did before.
    pub schema_change: SchemaChange,
    /// Rows per Parquet row group (at most).
    pub row_group_rows: usize,
    /// Target size of a Parquet data page.
    pub data_page_bytes: usize,
    /// Size a column chunk's dictionary may reach before the column falls back to plain
    /// encoding for the rest of the row group.
    pub dictionary_page_bytes: usize,
    /// Column layout of Debezium envelopes.
    pub layout: Layout,
    /// What to do with Avro record keys.
    pub key: KeyColumn,
    /// What to do with tombstones (records with a null value).
    pub tombstones: Tombstones,
    /// `kafka`: files under `partition=<p>/`; `time`: under `<path_format>/partition=<p>/`;
    /// `field`: under `<field>=<value>/.../partition=<p>/`.
    pub partitioner: Partitioner,
    /// With `partitioner = "time"`: the directory from the record's time; fields
    /// `{YYYY} {MM} {DD} {HH} {mm}`.
    pub path_format: String,
    /// With `partitioner = "time"`: `UTC`, a fixed offset such as `+02:00`, or a zone name such
    /// as `Europe/Berlin` (with its daylight saving).
    pub timezone: String,
    /// With `partitioner = "time"`: the value field holding the record time (`ts_ms`,
    /// `source.ts_ms`); empty: the Kafka record timestamp.
    pub timestamp_field: String,
    /// With `partitioner = "field"`: value fields, dot-separated (`after.status`), one directory
    /// each.
    pub partition_fields: Vec<String>,
    /// Encode a file's batches on a helper thread while the next batch decodes (a second core);
    /// `false`: one thread does both.
    pub parallel_encode: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            format: Format::Files,
            url: String::new(),
            prefix: "bronze/cdc/tasks".into(),
            file_naming: FileNaming::Offset,
            offset_pad_width: 10,
            file_delim: "+".into(),
            compression: Codec::Snappy,
            compression_level: 0,
            headers: false,
            schema_change: SchemaChange::Merge,
            row_group_rows: 128 * 1024,
            data_page_bytes: 1024 * 1024,
            dictionary_page_bytes: 64 * 1024,
            layout: Layout::Envelope,
            key: KeyColumn::Struct,
            tombstones: Tombstones::Skip,
            partitioner: Partitioner::Kafka,
            path_format: "dt={YYYY}-{MM}-{DD}/hr={HH}".into(),
            timezone: "UTC".into(),
            timestamp_field: String::new(),
            partition_fields: Vec::new(),
            parallel_encode: true,
        }
    }
}

/// `envelope`: before/after/source structs as Debezium wrote them; `flatten`: the row image
/// (after, or before for deletes) as top-level columns, as Debezium's ExtractNewRecordState does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Envelope,
    Flatten,
}

/// `skip`: count tombstones (`kps_records_skipped_total{reason="tombstone"}`) and commit past
/// them; `fail`: stop at the first one, as the Confluent sink's `behavior.on.null.values=fail`;
/// `write`: a row with the key, null values and `__deleted` true.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tombstones {
    Skip,
    Fail,
    Write,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Partitioner {
    Kafka,
    Time,
    Field,
}

/// What a new schema version does to the open file (`output.schema_change`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SchemaChange {
    Merge,
    Roll,
}

/// `struct`: decode Avro keys into the `__kafka_key` struct column; `off`: ignore keys.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyColumn {
    Struct,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlushConfig {
    /// Records per file (the connector's `flush.size`); with a time or field partitioner, per
    /// flush of a partition, across the files of its paths.
    pub max_records: u64,
    /// Wall-clock age after which an open file is closed, even if no record arrives.
    pub rotate_interval_ms: u64,
    /// Encoded size after which an open file is closed.
    pub max_file_bytes: u64,
    /// Memory of all open files together (encoded Parquet plus rows not yet encoded); past it,
    /// the largest open file is flushed early (flush reason `memory`).
    pub max_buffered_bytes: u64,
    /// With a time or field partitioner: paths (open files) one partition may fill at once; a
    /// record of one more path flushes them first (flush reason `path`).
    pub max_open_files: usize,
    /// Closed files uploading at once, across partitions and successive files of one
    /// partition; at the limit a flush waits for one to finish. Their bytes count toward
    /// `max_buffered_bytes`.
    pub max_uploads_in_flight: usize,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            max_records: 1000,
            rotate_interval_ms: 3_600_000,
            max_file_bytes: 128 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_open_files: 32,
            max_uploads_in_flight: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorsConfig {
    /// A record that cannot be written (not Confluent-framed, unknown schema id, corrupt Avro,
    /// a schema Parquet cannot take, a tombstone with `tombstones = "fail"`):
    /// `none` stops its partition (state FAILED, nothing committed past it, other partitions go
    /// on); `all` sends it to `dead_letter_topic` and goes on.
    pub tolerance: Tolerance,
    /// Topic for records that cannot be written, with `tolerance = "all"` (must exist).
    pub dead_letter_topic: String,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self { tolerance: Tolerance::None, dead_letter_topic: String::new() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tolerance {
    None,
    All,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the Prometheus endpoint (`/metrics`); empty disables it.
    pub listen: String,
}

/// The Kafka Connect worker that runs Debezium, for `doctor`'s "Debezium connector RUNNING?"
/// checkpoint. The sink itself never talks to it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    /// REST URL of the worker (`http://kafka-connect:8083`); empty skips the checkpoint.
    pub url: String,
    /// The connector to check; empty checks every connector the worker has.
    pub connector: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "0.0.0.0:9102".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one human-readable line per event) or `json` (one JSON object per line).
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax (`info`, `warn,kafka_parquet_sink=debug`); `RUST_LOG`, when
    /// set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every problem found while loading, one per line, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads `path` (when given) over the defaults, then the process environment over that,
    /// then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_from(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", p.display())]))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", p.display())]))?
            }
            None => toml::Table::new(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut errors = Vec::new();
        for (name, value) in &env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                if let Err(e) = apply_env(&mut table, rest, value) {
                    errors.push(format!("{name}: {e}"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let mut config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError(vec![e.to_string().trim().replace('\n', " ")]))?;
        config.fill_from_cloud_env(&env);
        config.validate()?;
        Ok(config)
    }

    /// Takes what the object stores need from the environment, so no other module reads it:
    /// the endpoint, region, STS and metadata endpoints and profile when not configured, and
    /// every `AWS_*`, `GOOGLE_*` and `AZURE_*` variable (and `HOME`) for the credential chains.
    fn fill_from_cloud_env(&mut self, env: &[(String, String)]) {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let s3 = &mut self.s3;
        for (field, var) in [
            (&mut s3.endpoint, "AWS_ENDPOINT_URL"),
            (&mut s3.sts_endpoint, "AWS_ENDPOINT_URL_STS"),
            (&mut s3.metadata_endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            (&mut s3.profile, "AWS_PROFILE"),
        ] {
            if field.is_empty() {
                if let Some(v) = get(var) {
                    *field = v;
                }
            }
        }
        if let Some(region) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
            if s3.region == S3Config::default().region {
                s3.region = region;
            }
        }
        s3.env = env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_") || k == "HOME")
            .cloned()
            .collect();
    }

    /// Where files go, from `output.url` or `[s3]` and `output.prefix`.
    pub fn location(&self) -> Result<Location, String> {
        Location::parse(&self.output.url, &self.s3.bucket, &self.output.prefix)
    }

    /// Checks every value, returning all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut e = Vec::new();
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            e.push("kafka.bootstrap_servers: must not be empty".to_string());
        }
        if k.group_id.trim().is_empty() {
            e.push("kafka.group_id: must not be empty".to_string());
        }
        if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
            e.push("kafka.topics: needs at least one non-empty topic name".to_string());
        }
        for t in k.topics.iter().filter(|t| KafkaConfig::is_pattern(t)) {
            if let Err(err) = regex::Regex::new(t) {
                e.push(format!("kafka.topics: {t:?} is not a regular expression: {err}"));
            }
        }
        if !matches!(k.auto_offset_reset.as_str(), "earliest" | "latest") {
            e.push(format!("kafka.auto_offset_reset: must be \"earliest\" or \"latest\", got {:?}", k.auto_offset_reset));
        }
        if k.group_instance_id.contains(char::is_whitespace) {
            e.push(format!("kafka.group_instance_id: no whitespace allowed, got {:?}", k.group_instance_id));
        }
        for key in k.properties.keys() {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                e.push(format!("kafka.properties.{key}: set by the sink itself (use the [kafka] key or leave it out)"));
            }
        }
        if k.auth == KafkaAuth::AwsMskIam {
            let prop = |key: &str| k.properties.get(key).map(|v| v.to_ascii_lowercase());
            if prop("security.protocol").is_some_and(|p| p != "sasl_ssl") {
                e.push("kafka.properties.security.protocol: kafka.auth = \"aws_msk_iam\" is SASL_SSL; leave it out".to_string());
            }
            for key in ["sasl.mechanism", "sasl.mechanisms"] {
                if prop(key).is_some_and(|m| m != "oauthbearer") {
                    e.push(format!("kafka.properties.{key}: kafka.auth = \"aws_msk_iam\" signs OAUTHBEARER tokens; leave it out"));
                }
            }
            for key in ["sasl.oauthbearer.method", "sasl.username", "sasl.password", "sasl.oauthbearer.config"] {
                if k.properties.contains_key(key) {
                    e.push(format!("kafka.properties.{key}: not used with kafka.auth = \"aws_msk_iam\" (the token comes from the AWS credentials); leave it out"));
                }
            }
            if !(60..=900).contains(&k.token_lifetime_secs) {
                e.push(format!("kafka.token_lifetime_secs: 60 .. 900 seconds (MSK's limit), got {}", k.token_lifetime_secs));
            }
        } else if !k.aws_region.is_empty() || k.token_lifetime_secs != KafkaConfig::default().token_lifetime_secs {
            let key = if k.aws_region.is_empty() { "kafka.token_lifetime_secs" } else { "kafka.aws_region" };
            e.push(format!("{key}: only with kafka.auth = \"aws_msk_iam\""));
        }
        let r = &self.schema_registry;
        if let Err(why) = check_url(&r.url) {
            e.push(format!("schema_registry.url: {why}"));
        }
        if r.password.is_empty() != r.username.is_empty() {
            e.push("schema_registry.password: username and password must be set together".to_string());
        }
        check_file(&mut e, "schema_registry.ca_file", &r.ca_file);
        check_file(&mut e, "schema_registry.client_cert_file", &r.client_cert_file);
        check_file(&mut e, "schema_registry.client_key_file", &r.client_key_file);
        if r.client_cert_file.is_empty() != r.client_key_file.is_empty() {
            e.push("schema_registry.client_key_file: client_cert_file and client_key_file must be set together".to_string());
        }
        if !r.bearer_token.is_empty() && !r.username.is_empty() {
            e.push("schema_registry.bearer_token: either a bearer token or username/password, not both".to_string());
        }
        if r.timeout_ms == 0 {
            e.push("schema_registry.timeout_ms: must be > 0".to_string());
        }
        check_retry(&mut e, "schema_registry", r.retry_max_attempts, r.retry_initial_backoff_ms, r.retry_max_backoff_ms);
        let s3 = &self.s3;
        if s3.bucket.trim().is_empty() {
            e.push("s3.bucket: must not be empty".to_string());
        }
        check_file(&mut e, "s3.ca_file", &s3.ca_file);
        if !s3.endpoint.is_empty() {
            if let Err(why) = check_url(&s3.endpoint) {
                e.push(format!("s3.endpoint: {why}"));
            } else if s3.endpoint.starts_with("http://") && !s3.allow_http {
                e.push("s3.allow_http: must be true for an http:// endpoint".to_string());
            }
        }
        if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
            e.push("s3.secret_access_key: access_key_id and secret_access_key must be set together".to_string());
        }
        if !s3.session_token.is_empty() && s3.access_key_id.is_empty() {
            e.push("s3.session_token: only with s3.access_key_id and s3.secret_access_key".to_string());
        }
        if s3.credentials == CredentialSource::Static && s3.access_key_id.is_empty() {
            e.push("s3.credentials: \"static\" needs s3.access_key_id and s3.secret_access_key".to_string());
        }
        if !(900..=43_200).contains(&s3.role_duration_secs) {
            e.push(format!("s3.role_duration_secs: STS takes 900 .. 43200 seconds, got {}", s3.role_duration_secs));
        }
        if s3.role_arn.is_empty() && !s3.external_id.is_empty() {
            e.push("s3.external_id: only with s3.role_arn".to_string());
        }
        if !s3.role_arn.is_empty() && !s3.role_arn.starts_with("arn:") {
            e.push(format!("s3.role_arn: not an ARN (arn:aws:iam::<account>:role/<name>): {:?}", s3.role_arn));
        }
        if s3.session_name.is_empty() || !s3.session_name.chars().all(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(c)) {
            e.push(format!("s3.session_name: 1..64 of letters, digits and =,.@-_, got {:?}", s3.session_name));
        }
        for (key, url) in [("s3.sts_endpoint", &s3.sts_endpoint), ("s3.metadata_endpoint", &s3.metadata_endpoint)] {
            if !url.is_empty() {
                if let Err(why) = check_url(url) {
                    e.push(format!("{key}: {why}"));
                }
            }
        }
        match s3.sse {
            Sse::Kms | Sse::KmsDsse => {}
            _ if !s3.sse_kms_key_id.is_empty() => e.push("s3.sse_kms_key_id: only with s3.sse = \"aws:kms\" or \"aws:kms:dsse\"".to_string()),
            _ => {}
        }
        if s3.sse == Sse::CustomerKey {
            if !store::is_aes256_key_base64(&s3.sse_customer_key) {
                e.push("s3.sse_customer_key: s3.sse = \"sse-c\" needs the base64 of a 32-byte key (openssl rand -base64 32)".to_string());
            }
        } else if !s3.sse_customer_key.is_empty() {
            e.push("s3.sse_customer_key: only with s3.sse = \"sse-c\"".to_string());
        }
        if !s3.storage_class.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            e.push(format!("s3.storage_class: an S3 storage class such as STANDARD_IA, got {:?}", s3.storage_class));
        }
        if !s3.acl.is_empty() && !store::CANNED_ACLS.contains(&s3.acl.as_str()) {
            e.push(format!("s3.acl: one of {}, got {:?}", store::CANNED_ACLS.join(", "), s3.acl));
        }
        if s3.tags.keys().any(|k| k.is_empty() || k.len() > 128) || s3.tags.len() > 10 {
            e.push("s3.tags: at most 10 tags, keys of 1..128 characters".to_string());
        }
        if s3.multipart_part_bytes < 5 * 1024 * 1024 {
            e.push("s3.multipart_part_bytes: S3 needs parts of at least 5 MiB (5242880)".to_string());
        }
        check_retry(&mut e, "s3", s3.retry_max_attempts, s3.retry_initial_backoff_ms, s3.retry_max_backoff_ms);
        let o = &self.output;
        if o.prefix.starts_with('/') || o.prefix.ends_with('/') || o.prefix.contains("//") {
            e.push(format!("output.prefix: no leading, trailing or double '/', got {:?}", o.prefix));
        }
        match self.location() {
            Err(why) => e.push(why),
            Ok(loc) => {
                if !o.url.is_empty() && !o.prefix.is_empty() && o.prefix != OutputConfig::default().prefix {
                    e.push(format!("output.prefix: with output.url the prefix is the URL's path ({}), leave output.prefix out", o.url));
                }
                let s3_only = [
                    ("s3.sse", s3.sse != Sse::None),
                    ("s3.storage_class", !s3.storage_class.is_empty()),
                    ("s3.acl", !s3.acl.is_empty()),
                    ("s3.tags", !s3.tags.is_empty()),
                    ("s3.role_arn", !s3.role_arn.is_empty()),
                ];
                for (key, _) in s3_only.iter().filter(|(_, set)| *set && !matches!(loc, Location::S3 { .. })) {
                    e.push(format!("{key}: applies to s3:// locations, not {}", loc.url()));
                }
            }
        }
        match (o.compression.levels(), o.compression_level) {
            (_, 0) => {}
            (Some(range), level) if range.contains(&level) => {}
            (Some(range), level) => e.push(format!("output.compression_level: {:?} takes {range:?}, got {level}", o.compression)),
            (None, level) => e.push(format!("output.compression_level: {:?} has no levels, got {level}", o.compression)),
        }
        if !(1..=19).contains(&o.offset_pad_width) {
            e.push(format!("output.offset_pad_width: 1 .. 19 digits, got {}", o.offset_pad_width));
        }
        if o.file_delim.is_empty() || o.file_delim.contains('/') || o.file_delim.contains('.') || o.file_delim.chars().any(|c| c.is_ascii_digit()) {
            e.push(format!("output.file_delim: a separator without '/', '.' or digits, got {:?}", o.file_delim));
        }
        if let Err(why) = paths::parse(o) {
            e.push(why);
        }
        e.extend(self.table.problems());
        if o.row_group_rows == 0 {
            e.push("output.row_group_rows: must be > 0".to_string());
        }
        if o.data_page_bytes < 1024 {
            e.push("output.data_page_bytes: must be >= 1024".to_string());
        }
        if o.dictionary_page_bytes < 1024 {
            e.push("output.dictionary_page_bytes: must be >= 1024".to_string());
        }
        let f = &self.flush;
        if f.max_records == 0 {
            e.push("flush.max_records: must be > 0".to_string());
        }
        if f.rotate_interval_ms == 0 {
            e.push("flush.rotate_interval_ms: must be > 0".to_string());
        }
        if f.max_file_bytes < 1024 {
            e.push("flush.max_file_bytes: must be >= 1024".to_string());
        }
        if f.max_uploads_in_flight == 0 {
            e.push("flush.max_uploads_in_flight: must be > 0".to_string());
        }
        if f.max_open_files == 0 {
            e.push("flush.max_open_files: must be > 0".to_string());
        }
        if f.max_buffered_bytes < 1024 * 1024 {
            e.push("flush.max_buffered_bytes: must be >= 1048576 (1 MiB)".to_string());
        }
        let er = &self.errors;
        if er.tolerance == Tolerance::All && er.dead_letter_topic.trim().is_empty() {
            e.push(
                "errors.dead_letter_topic: must name a topic when errors.tolerance = \"all\" (records are never dropped silently)"
                    .to_string(),
            );
        }
        if k.topics.contains(&er.dead_letter_topic) {
            e.push("errors.dead_letter_topic: must not be one of kafka.topics".to_string());
        }
        if !self.connect.url.is_empty() && !self.connect.url.starts_with("http://") && !self.connect.url.starts_with("https://") {
            e.push(format!("connect.url: must be an http:// or https:// URL, got {:?}", self.connect.url));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            e.push(format!("metrics.listen: not a host:port socket address: {:?}", self.metrics.listen));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            e.push(format!("log.level: not a log filter (e.g. \"info\" or \"warn,kafka_parquet_sink=debug\"): {:?}", self.log.level));
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(e))
        }
    }

    /// The effective configuration as TOML, secrets replaced by `***`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.s3.redact();
        shown.schema_registry.redact();
        for (key, value) in shown.kafka.properties.iter_mut() {
            if is_secret_property(key) {
                *value = REDACTED.into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// An http(s) URL with a host, without credentials in it (they would end up in logs).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("not a URL ({err}): {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("must start with http:// or https://, got {url:?}"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host: {url:?}"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials; use the username/password keys".to_string());
    }
    Ok(())
}

fn check_file(e: &mut Vec<String>, key: &str, path: &str) {
    if !path.is_empty() && !Path::new(path).is_file() {
        e.push(format!("{key}: no such file: {path:?}"));
    }
}

fn check_retry(e: &mut Vec<String>, section: &str, _attempts: u32, initial_ms: u64, max_ms: u64) {
    if initial_ms == 0 || initial_ms > max_ms {
        e.push(format!("{section}.retry_initial_backoff_ms: must be > 0 and <= {section}.retry_max_backoff_ms"));
    }
}

/// Sets `SECTION__KEY[__SUBKEY]` (already stripped of the prefix) in the table.
fn apply_env(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err("expected KPS__<SECTION>__<KEY>".into());
    }
    let value = parse_env_value(raw);
    let (section, rest) = (&parts[0], &parts[1..]);
    let mut node = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    // `KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS` → kafka.properties."session.timeout.ms"
    let keys: Vec<String> = if section == "kafka" && rest.len() == 2 && rest[0] == "properties" {
        vec!["properties".into(), rest[1].replace('_', ".")]
    } else {
        rest.to_vec()
    };
    for (i, key) in keys.iter().enumerate() {
        let toml::Value::Table(t) = node else {
            return Err(format!("{} is not a table", keys[..i].join(".")));
        };
        if i + 1 == keys.len() {
            let value = if section == "kafka" && keys[0] == "properties" { toml::Value::String(raw.to_string()) } else { value.clone() };
            t.insert(key.clone(), value);
            return Ok(());
        }
        node = t.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    Ok(())
}

/// `5000` → integer, `true` → bool, `["a","b"]` → array; anything else is a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Accepts `topics = "a,b"` as well as `topics = ["a", "b"]`.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(text: &str) -> Result<tempfile::NamedTempFile, std::io::Error> {
        let mut f = tempfile::NamedTempFile::new()?;
        f.write_all(text.as_bytes())?;
        Ok(f)
    }

    #[test]
    fn defaults_are_the_seed_layout() -> Result<(), ConfigError> {
        let c = Config::load_from(None, env(&[]))?;
        assert_eq!(c.kafka.group_id, "connect-minio-s3-sink");
        assert_eq!(c.kafka.topics, vec!["supabase-habit.public.tasks".to_string()]);
        assert_eq!(c.kafka.auto_offset_reset, "earliest");
        assert_eq!(c.s3.bucket, "datalake");
        assert_eq!(c.output.prefix, "bronze/cdc/tasks");
        assert_eq!(c.flush.max_records, 1000);
        assert_eq!(c.flush.rotate_interval_ms, 3_600_000);
        Ok(())
    }

    #[test]
    fn env_overrides_file() -> Result<(), Box<dyn std::error::Error>> {
        let f = write("[flush]\nmax_records = 10\n[kafka]\ntopics = [\"a\"]\n")?;
        let c = Config::load_from(
            Some(f.path()),
            env(&[
                ("KPS__FLUSH__MAX_RECORDS", "5000"),
                ("KPS__KAFKA__TOPICS", "x,y"),
                ("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "45000"),
                ("AWS_ACCESS_KEY_ID", "ak"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t-from-env"),
            ]),
        )?;
        assert_eq!(c.flush.max_records, 5000, "env must win over the file");
        assert_eq!(c.kafka.topics, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(c.kafka.properties.get("session.timeout.ms").map(String::as_str), Some("45000"));
        // AWS keys stay in the environment: the credential chain names them as its source.
        assert_eq!((c.s3.access_key_id.as_str(), c.s3.env.get("AWS_ACCESS_KEY_ID").map(String::as_str)), ("", Some("ak")));
        assert!(!c.to_redacted_toml().contains("s3cr3t-from-env"), "the environment is not printed");
        Ok(())
    }

    #[test]
    fn unknown_key_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let f = write("[flush]\nmax_recrods = 10\n")?;
        let err = Config::load_from(Some(f.path()), env(&[])).err().ok_or("unknown key accepted")?;
        assert!(err.to_string().contains("max_recrods"), "error should name the key: {err}");
        let err = Config::load_from(None, env(&[("KPS__FLUSH__NOPE", "1")])).err().ok_or("unknown env key accepted")?;
        assert!(err.to_string().contains("nope"), "error should name the key: {err}");
        Ok(())
    }

    #[test]
    fn every_error_is_listed_with_its_key() -> Result<(), Box<dyn std::error::Error>> {
        let f = write(
            "[flush]\nmax_records = 0\nrotate_interval_ms = 0\n[s3]\nbucket = \"\"\nendpoint = \"http://x:9000\"\n[kafka]\nauto_offset_reset = \"middle\"\n",
        )?;
        let err = Config::load_from(Some(f.path()), env(&[])).err().ok_or("bad config accepted")?;
        let text = err.to_string();
        for key in ["flush.max_records", "flush.rotate_interval_ms", "s3.bucket", "s3.allow_http", "kafka.auto_offset_reset"] {
            assert!(text.contains(key), "missing {key} in:\n{text}");
        }
        assert_eq!(err.0.len(), 5, "expected 5 errors, got:\n{text}");
        Ok(())
    }

    #[test]
    fn msk_iam_takes_no_conflicting_security_properties() -> Result<(), Box<dyn std::error::Error>> {
        let ok = Config::load_from(None, env(&[("KPS__KAFKA__AUTH", "aws_msk_iam"), ("KPS__KAFKA__AWS_REGION", "eu-west-1")]))?;
        assert_eq!((ok.kafka.auth, ok.kafka.aws_region.as_str(), ok.kafka.token_lifetime_secs), (KafkaAuth::AwsMskIam, "eu-west-1", 900));
        let err = Config::load_from(
            None,
            env(&[
                ("KPS__KAFKA__AUTH", "aws_msk_iam"),
                ("KPS__KAFKA__TOKEN_LIFETIME_SECS", "3600"),
                ("KPS__KAFKA__PROPERTIES__SECURITY_PROTOCOL", "ssl"),
                ("KPS__KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512"),
                ("KPS__KAFKA__PROPERTIES__SASL_PASSWORD", "x"),
            ]),
        )
        .err()
        .ok_or("conflicting MSK IAM settings accepted")?;
        let text = err.to_string();
        for key in ["kafka.token_lifetime_secs", "kafka.properties.security.protocol", "kafka.properties.sasl.mechanism", "kafka.properties.sasl.password"] {
            assert!(text.contains(key), "missing {key} in:\n{text}");
        }
        let err = Config::load_from(None, env(&[("KPS__KAFKA__AWS_REGION", "eu-west-1")])).err().ok_or("aws_region without MSK IAM accepted")?;
        assert!(err.to_string().contains("kafka.aws_region: only with kafka.auth"), "{err}");
        Ok(())
    }

    #[test]
    fn every_kind_of_secret_is_redacted() -> Result<(), ConfigError> {
        let c = Config::load_from(
            None,
            env(&[
                ("KPS__SCHEMA_REGISTRY__BEARER_TOKEN", "bearer-xyz"),
                ("KPS__KAFKA__PROPERTIES__SASL_OAUTHBEARER_CLIENT_SECRET", "oidc-xyz"),
                ("KPS__KAFKA__PROPERTIES__SSL_KEY_PASSWORD", "keypass-xyz"),
                ("KPS__KAFKA__PROPERTIES__SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp.example/token"),
            ]),
        )?;
        let shown = c.to_redacted_toml();
        for secret in ["bearer-xyz", "oidc-xyz", "keypass-xyz"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(shown.contains("https://idp.example/token"), "the token endpoint is not a secret:\n{shown}");
        assert!(!format!("{:?}", c.schema_registry).contains("bearer-xyz"), "Debug shows the bearer token");
        Ok(())
    }

    #[test]
    fn redacted_output_hides_secrets() -> Result<(), ConfigError> {
        let c = Config::load_from(None, env(&[("KPS__S3__ACCESS_KEY_ID", "ak"), ("KPS__S3__SECRET_ACCESS_KEY", "topsecret")]))?;
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("topsecret"), "secret leaked:\n{shown}");
        assert!(shown.contains("access_key_id = \"ak\""), "{shown}");
        Ok(())
    }

    /// The configuration table (docs/configuration.md, linked from README) lists every key of
    /// the config type, each with its default as a TOML literal, and nothing else.
    #[test]
    fn docs_list_every_key_with_its_default() -> Result<(), Box<dyn std::error::Error>> {
        let section = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"))?;
        let mut documented = BTreeMap::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let key = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
            let default = cells.get(1).ok_or("row without default")?.trim_matches('`');
            let value = toml::from_str::<toml::Table>(&format!("v = {default}"))?.remove("v").ok_or("no value")?;
            documented.insert(key, value);
        }
        let mut actual = BTreeMap::new();
        let defaults = toml::Table::try_from(Config::default())?;
        for (section, table) in &defaults {
            for (key, value) in table.as_table().ok_or("section is not a table")? {
                actual.insert(format!("{section}.{key}"), value.clone());
            }
        }
        let missing: Vec<&String> = actual.keys().filter(|k| !documented.contains_key(*k)).collect();
        let stale: Vec<&String> = documented.keys().filter(|k| !actual.contains_key(*k)).collect();
        assert!(missing.is_empty() && stale.is_empty(), "docs/configuration.md's table: missing {missing:?}, not in the config type {stale:?}");
        for (key, value) in &actual {
            assert_eq!(Some(value), documented.get(key), "README default of {key}");
        }
        Ok(())
    }

    #[test]
    fn shipped_config_files_are_valid() -> Result<(), ConfigError> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let defaults = Config::load_from(Some(&root.join("config/sink.toml")), env(&[]))?;
        assert_eq!(defaults, Config::default(), "config/sink.toml must list exactly the defaults");
        for file in ["config/local.toml", "config/compose.toml"] {
            Config::load_from(Some(&root.join(file)), env(&[]))?;
        }
        Ok(())
    }
}
