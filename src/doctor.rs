//! `kafka-parquet-sink doctor`: the checkpoints of the users' troubleshooting flowchart, in
//! order, one line each, with the fix when one fails. Read-only apart from the bucket probe
//! (an object written and deleted under the prefix).

use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::decode::registry::Registry;
use crate::decode::{frame, BatchDecoder};
use crate::source::Auth;
use crate::store::Store;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One checkpoint's outcome.
pub struct Check {
    pub name: String,
    pub outcome: Result<String, Failure>,
}

pub struct Failure {
    pub problem: String,
    pub fix: String,
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Failure {
    Failure { problem: problem.into(), fix: fix.into() }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(detail) => write!(f, "✅ {}: {detail}", self.name),
            Err(e) => write!(f, "❌ {}: {}\n   fix: {}", self.name, e.problem, e.fix),
        }
    }
}

/// Runs every checkpoint in order; a failed one skips those that depend on it.
pub async fn run(config: &Config, store: &mut Store, auth: &Auth) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |name: &str, outcome| out.push(Check { name: name.to_string(), outcome });
    let (k, a) = (config.kafka.clone(), auth.clone());
    let kafka = tokio::task::spawn_blocking(move || KafkaView::read(&k, &a)).await;
    let kafka = match kafka {
        Ok(Ok(v)) => {
            let by = auth.describe().map(|a| format!(", {a}")).unwrap_or_default();
            push("broker reachable", Ok(format!("{} ({} broker(s){by})", config.kafka.bootstrap_servers, v.brokers)));
            Some(v)
        }
        Ok(Err(e)) => unreachable_kafka(&mut push, e),
        Err(e) => unreachable_kafka(&mut push, e.to_string()),
    };
    if !config.connect.url.is_empty() {
        let name = match config.connect.connector.as_str() {
            "" => "Debezium connector RUNNING".to_string(),
            c => format!("Debezium connector {c} RUNNING"),
        };
        push(&name, check_connector(&config.connect).await);
    }
    // Configured names, and patterns resolved to the topics they match now.
    let mut topics: Vec<String> = Vec::new();
    for entry in &config.kafka.topics {
        if !crate::config::KafkaConfig::is_pattern(entry) {
            topics.push(entry.clone());
            continue;
        }
        let matched: Vec<String> = kafka
            .iter()
            .flat_map(|v| v.topics.iter().map(|t| t.name.clone()))
            .filter(|n| config.kafka.subscribes_to(n) && !config.kafka.topics.contains(n))
            .collect();
        if matched.is_empty() && kafka.is_some() {
            push(
                &format!("topics matching {entry}"),
                Err(fail("no topic matches", "check the pattern in kafka.topics and that Debezium is RUNNING")),
            );
        }
        topics.extend(matched);
    }
    for topic in &topics {
        let Some(view) = &kafka else { break };
        let Some(t) = view.topics.iter().find(|t| &t.name == topic) else {
            push(
                &format!("topic {topic} exists"),
                Err(fail(
                    "not in the cluster's metadata",
                    "check kafka.topics, and that Debezium is RUNNING (it creates the topic with the first change)",
                )),
            );
            continue;
        };
        push(&format!("topic {topic} exists"), Ok(format!("{} partition(s)", t.partitions.len())));
        let messages: i64 = t.partitions.iter().map(|p| p.high - p.low).sum();
        if messages <= 0 {
            push(
                &format!("topic {topic} has messages"),
                Err(fail("every partition is empty", "make a change in the source table and check Debezium's connector status and log")),
            );
        } else {
            push(&format!("topic {topic} has messages"), Ok(format!("about {messages} between the watermarks")));
        }
        push(&format!("registry has {topic}-value"), check_subject(config, topic).await);
        if messages > 0 {
            push(&format!("latest message of {topic} decodes"), check_decode(config, auth, topic).await);
        }
    }
    push(
        "bucket exists and is writable",
        match store.probe().await {
            Ok(()) => Ok(match store.credentials() {
                Some(c) => format!("{} (probe written and deleted; credentials: {c})", store.location()),
                None => format!("{} (probe written and deleted)", store.location()),
            }),
            Err(e) => Err(fail(e.to_string(), "create the bucket, or fix s3.endpoint, s3.bucket and the credentials")),
        },
    );
    // A config that passed validation has a path scheme; without one, no table line.
    let paths = crate::partition::PathScheme::from_config(&config.output).ok();
    let format = paths.and_then(|p| crate::table::format(config, store, &p).ok().flatten()).map(|(f, _)| f);
    for topic in &topics {
        let Some(view) = &kafka else { break };
        let Some(t) = view.topics.iter().find(|t| &t.name == topic) else { continue };
        push(&format!("consumer group {} on {topic}", config.kafka.group_id), lag(t));
        if let Some(format) = &format {
            push(&format!("{} table of {topic}", format.kind().to_lowercase()), check_table(format.as_ref(), t).await);
        } else {
            push(&format!("files of {topic} in the lake"), check_files(store, topic).await);
        }
    }
    out
}

/// The start-up check's message for the same failure (`source::probe`), which names the key.
fn unreachable_kafka(push: &mut impl FnMut(&str, Result<String, Failure>), e: String) -> Option<KafkaView> {
    let fix = if e.starts_with("kafka.bootstrap_servers: no broker") {
        "check kafka.bootstrap_servers and that Kafka is running (in compose: `docker compose ps kafka`)"
    } else {
        "fix the key named above"
    };
    push("broker reachable", Err(fail(e, fix)));
    None
}

struct PartitionView {
    partition: i32,
    low: i64,
    high: i64,
    committed: Option<i64>,
}

struct TopicView {
    name: String,
    partitions: Vec<PartitionView>,
}

struct KafkaView {
    brokers: usize,
    topics: Vec<TopicView>,
}

impl KafkaView {
    fn read(k: &crate::config::KafkaConfig, auth: &Auth) -> Result<KafkaView, String> {
        let (c, md) = crate::source::probe(k, auth, &k.group_id, TIMEOUT)?;
        let mut topics = Vec::new();
        for t in md.topics().iter().filter(|t| k.subscribes_to(t.name()) && !t.partitions().is_empty()) {
            let mut tpl = TopicPartitionList::new();
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
            let committed = c.committed_offsets(tpl, TIMEOUT).map_err(|e| e.to_string())?;
            let mut partitions = Vec::new();
            for p in t.partitions() {
                let (low, high) = c.fetch_watermarks(t.name(), p.id(), TIMEOUT).map_err(|e| e.to_string())?;
                let committed = committed.find_partition(t.name(), p.id()).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
                partitions.push(PartitionView { partition: p.id(), low, high, committed });
            }
            topics.push(TopicView { name: t.name().to_string(), partitions });
        }
        Ok(KafkaView { brokers: md.brokers().len(), topics })
    }
}

fn lag(t: &TopicView) -> Result<String, Failure> {
    if t.partitions.iter().all(|p| p.committed.is_none()) {
        return Err(fail(
            "no committed offset on any partition",
            "start the sink (is it running? `kafka-parquet-sink status`), or check kafka.group_id",
        ));
    }
    let lag: i64 = t.partitions.iter().map(|p| (p.high - p.committed.unwrap_or(p.low)).max(0)).sum();
    let detail: Vec<String> =
        t.partitions.iter().map(|p| format!("p{}={}", p.partition, p.committed.map_or("-".to_string(), |c| c.to_string()))).collect();
    Ok(format!("lag {lag} record(s); committed {}", detail.join(" ")))
}

/// The configured registry, asked once per request: a doctor reports, it does not wait.
fn registry(config: &Config) -> Result<Registry, crate::decode::registry::RegistryError> {
    let mut c = config.schema_registry.clone();
    c.retry_max_attempts = 1;
    Registry::new(&c, None)
}

async fn check_subject(config: &Config, topic: &str) -> Result<String, Failure> {
    let mut registry = registry(config).map_err(|e| fail(e.to_string(), "fix the [schema_registry] section"))?;
    match registry.latest_id(&format!("{topic}-value")).await {
        Ok(id) => Ok(format!("latest schema id {id} at {}", config.schema_registry.url)),
        Err(e) if e.retryable() => Err(fail(e.to_string(), "check schema_registry.url and that the registry is running")),
        Err(e) => {
            Err(fail(e.to_string(), "the connector registers the subject with its first record: check Debezium's AvroConverter settings"))
        }
    }
}

/// Reads the last message of a partition that has one (or, when the broker cannot start a fetch
/// there, the last of the first messages) and decodes it as the sink would.
async fn check_decode(config: &Config, auth: &Auth, topic: &str) -> Result<String, Failure> {
    let (k, t) = (config.kafka.clone(), topic.to_string());
    let a = auth.clone();
    let found = tokio::task::spawn_blocking(move || last_message(&k, &a, &t))
        .await
        .map_err(|e| fail(e.to_string(), "retry"))?
        .map_err(|e| fail(e, "check the broker"))?;
    let Some((partition, offset, value)) = found else {
        return Err(fail("no message could be read", "check the topic's retention and the broker"));
    };
    let Some(value) = value else {
        return Ok(format!("partition {partition} offset {offset} is a tombstone (null value)"));
    };
    let f = frame::parse(&value).map_err(|e| {
        fail(format!("offset {partition}/{offset}: {e}"), "the producer must use Confluent's AvroConverter (value.converter)")
    })?;
    let mut registry = registry(config).map_err(|e| fail(e.to_string(), "fix [schema_registry]"))?;
    let schema = registry
        .schema(f.schema_id)
        .await
        .map_err(|e| fail(e.to_string(), "check the registry the producer uses is the one configured"))?;
    let mut d = BatchDecoder::new(topic, partition, (f.schema_id, &schema), None, 1)
        .map_err(|e| fail(e.to_string(), "see the schema in the registry"))?;
    let pushed = d
        .push(f.body, None, offset, None)
        .map_err(|e| fail(format!("offset {partition}/{offset}: {e}"), "route bad records with errors.tolerance = \"all\""))?;
    let batch = match pushed {
        Some(b) => Some(b),
        None => d.finish().map_err(|e| fail(e.to_string(), "report this record"))?,
    };
    let columns = batch.map_or(0, |b| b.num_columns());
    Ok(format!("partition {partition} offset {offset}: schema id {}, one row of {columns} columns", f.schema_id))
}

/// (partition, offset, value) of the message found.
type Found = Option<(i32, i64, Option<Vec<u8>>)>;

fn last_message(k: &crate::config::KafkaConfig, auth: &Auth, topic: &str) -> Result<Found, String> {
    let (c, md) = crate::source::probe(k, auth, &format!("{}-doctor", k.group_id), TIMEOUT)?;
    let parts: Vec<i32> = md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    for p in parts {
        let (low, high) = c.fetch_watermarks(topic, p, TIMEOUT).map_err(|e| e.to_string())?;
        if high <= low {
            continue;
        }
        for start in [Offset::Offset(high - 1), Offset::Offset(low)] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p, start).map_err(|e| e.to_string())?;
            c.assign(&tpl).map_err(|e| e.to_string())?;
            let mut last = None;
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline {
                match c.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        last = Some((p, m.offset(), m.payload().map(<[u8]>::to_vec)));
                        if m.offset() >= high - 1 {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None if last.is_some() => break,
                    None => {}
                }
            }
            if last.is_some() {
                return Ok(last);
            }
        }
    }
    Ok(None)
}

async fn check_files(store: &Store, topic: &str) -> Result<String, Failure> {
    let (count, newest) = store.newest_file(topic).await.map_err(|e| fail(e.to_string(), "check s3.endpoint and the credentials"))?;
    let Some((key, bytes)) = newest else {
        return Err(fail(
            format!("no file under {}", store.topic_dir(topic)),
            "the sink writes a file per flush: check its log and /status, or lower flush.max_records / flush.rotate_interval_ms",
        ));
    };
    let rows = parquet_rows(bytes).map_err(|e| {
        fail(format!("{key} is not readable as Parquet: {e}"), "remove the object; the sink rewrites it from Kafka if not committed")
    })?;
    Ok(format!("{count} file(s); newest {key} has {rows} row(s)"))
}

/// Table mode: the topic's table, its latest version and files, and each partition's
/// offset where the table says it resumes, beside the group's offset (only a hint).
async fn check_table(format: &dyn crate::table::Format, t: &TopicView) -> Result<String, Failure> {
    let partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
    let mut table = format.open(&t.name).map_err(|e| fail(e.to_string(), "check output.prefix and the store's URL"))?;
    let name = table.name();
    let read = tokio::task::spawn_blocking(move || -> Result<_, crate::table::TableError> {
        let versions = table.versions(&partitions)?;
        Ok((table.summary()?, versions))
    })
    .await
    .map_err(|e| fail(format!("reading the table's log stopped: {e}"), "run doctor again"))?;
    let (summary, versions) = read.map_err(|e| fail(e.to_string(), "check the store's credentials, and that nothing but the sink rewrites the table's log"))?;
    let Some(crate::table::Summary { version, files }) = summary else {
        return Err(fail(
            format!("no {} table at {name}", format.kind()),
            "the sink creates it with its first commit: check its log and /status (table.commit_interval_ms sets the cadence)",
        ));
    };
    let detail: Vec<String> = t
        .partitions
        .iter()
        .map(|p| {
            let table = versions.get(&p.partition).copied().flatten().map_or("-".to_string(), |v| v.to_string());
            let group = p.committed.map_or("-".to_string(), |c| c.to_string());
            format!("p{}={table} (group {group})", p.partition)
        })
        .collect();
    Ok(format!("version {version}, {files} file(s); resumes at {}", detail.join(" ")))
}

fn parquet_rows(bytes: Bytes) -> Result<i64, parquet::errors::ParquetError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    Ok(SerializedFileReader::new(bytes)?.metadata().file_metadata().num_rows())
}

/// What the Connect REST API says of one connector (`GET /connectors/{name}/status`).
#[derive(serde::Deserialize)]
struct ConnectorStatus {
    connector: StateOf,
    #[serde(default)]
    tasks: Vec<TaskState>,
}

#[derive(serde::Deserialize)]
struct StateOf {
    state: String,
}

#[derive(serde::Deserialize)]
struct TaskState {
    id: i32,
    state: String,
    #[serde(default)]
    trace: String,
}

/// The seed's checkpoint "Debezium connector RUNNING?": the connector and every task of it
/// RUNNING, as the Kafka Connect worker reports over REST.
async fn check_connector(c: &crate::config::ConnectConfig) -> Result<String, Failure> {
    let base = c.url.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| fail(e.to_string(), "check connect.url"))?;
    let get = |path: String| {
        let client = client.clone();
        async move {
            let resp = client.get(&path).send().await.map_err(|e| {
                fail(
                    format!("no answer from {path}: {e}"),
                    "check connect.url and that Kafka Connect is running (in compose: `docker compose ps kafka-connect`)",
                )
            })?;
            let code = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Ok::<_, Failure>((code, body))
        }
    };
    let names: Vec<String> = if c.connector.is_empty() {
        let (code, body) = get(format!("{base}/connectors")).await?;
        if !code.is_success() {
            return Err(fail(format!("GET /connectors answered {code}: {body}"), "check connect.url"));
        }
        let names: Vec<String> = serde_json::from_str(&body).map_err(|e| fail(format!("GET /connectors: {e}"), "check connect.url"))?;
        if names.is_empty() {
            return Err(fail(
                format!("no connector is registered on {base}"),
                format!("register it: curl -X PUT -H 'Content-Type: application/json' --data @docker/connect/debezium-postgres-cdc.json {base}/connectors/supabase-postgres-cdc/config"),
            ));
        }
        names
    } else {
        vec![c.connector.clone()]
    };
    let mut running = Vec::new();
    for name in names {
        let (code, body) = get(format!("{base}/connectors/{name}/status")).await?;
        if code == reqwest::StatusCode::NOT_FOUND {
            return Err(fail(
                format!("connector {name} is not registered on {base}"),
                format!("register it: curl -X PUT -H 'Content-Type: application/json' --data @docker/connect/debezium-postgres-cdc.json {base}/connectors/{name}/config"),
            ));
        }
        if !code.is_success() {
            return Err(fail(format!("GET /connectors/{name}/status answered {code}: {body}"), "check the Kafka Connect worker's log"));
        }
        let status: ConnectorStatus =
            serde_json::from_str(&body).map_err(|e| fail(format!("status of {name}: {e}"), "check connect.url points at Kafka Connect"))?;
        let bad_task = status.tasks.iter().find(|t| t.state != "RUNNING");
        if status.connector.state != "RUNNING" || bad_task.is_some() || status.tasks.is_empty() {
            let detail = match bad_task {
                Some(t) => format!(", task {} {}{}", t.id, t.state, t.trace.lines().next().map(|l| format!(": {l}")).unwrap_or_default()),
                None if status.tasks.is_empty() => ", no task".to_string(),
                None => String::new(),
            };
            return Err(fail(
                format!("connector {name} is {}{detail}", status.connector.state),
                format!(
                    "read the worker's log (docker compose logs kafka-connect) and the trace in GET {base}/connectors/{name}/status; \
                     fix the connector's config (docker/connect/debezium-postgres-cdc.json), then POST {base}/connectors/{name}/restart?includeTasks=true"
                ),
            ));
        }
        running.push(format!("{name} RUNNING ({} task(s) RUNNING)", status.tasks.len()));
    }
    Ok(running.join("; "))
}
