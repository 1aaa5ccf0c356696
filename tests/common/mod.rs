//! Shared helpers of the integration tests: the real local stack (`scripts/stack.sh up`),
//! the sink binary as a child process, committed offsets, and the lake read back by pyarrow.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kafka_parquet_sink::testkit::{produce_tasks, ProducePlan, Produced, TaskEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub mod stores;
pub use stores::*;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A port of the tests' services: the variable's value, else the default.
pub fn port(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Addresses of the local stack; overridable like the stack script's ports.
#[derive(Debug, Clone)]
pub struct Stack {
    pub bootstrap: String,
    pub registry: String,
    pub s3: String,
}

impl Stack {
    /// The running local stack, or an error telling how to start it (never a silent skip).
    pub fn get() -> TestResult<Stack> {
        let s = Stack {
            bootstrap: format!("127.0.0.1:{}", port("KAFKA_PORT", 9092)),
            registry: format!("http://127.0.0.1:{}", port("REGISTRY_PORT", 8081)),
            s3: format!("http://127.0.0.1:{}", port("S3_PORT", 9000)),
        };
        for addr in [s.bootstrap.clone(), s.registry.replace("http://", ""), s.s3.replace("http://", "")] {
            if std::net::TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2)).is_err() {
                return Err(format!("{addr} is not reachable: start the local stack with `scripts/stack.sh up`").into());
            }
        }
        Ok(s)
    }
}

/// Produces `count` Debezium events of the tasks table (v2 schema after `v2_after` records);
/// returns each with where it landed.
pub fn produce(
    stack: &Stack,
    topic: &str,
    partitions: i32,
    count: usize,
    v2_after: Option<usize>,
    seed: u64,
) -> TestResult<Vec<(Produced, TaskEvent)>> {
    produce_batched(stack, topic, (partitions, count, v2_after, seed), None)
}

/// As [`produce`], the records stamped `first + i * step` (Unix ms).
pub fn produce_stamped(
    stack: &Stack,
    topic: &str,
    partitions: i32,
    count: usize,
    seed: u64,
    (first, step): (i64, i64),
) -> TestResult<Vec<(Produced, TaskEvent)>> {
    produce_batched(stack, topic, (partitions, count, None, seed), Some((first, step)))
}

/// As [`produce`], the value schema alternating between v1 and v2 (the added `category`
/// column) every `every` records, v1 first.
pub fn produce_alternating(stack: &Stack, topic: &str, partitions: i32, count: usize, every: usize, seed: u64) -> TestResult<Vec<(Produced, TaskEvent)>> {
    let plan = plan(stack, topic, (partitions, count, None, seed), None);
    tokio::runtime::Runtime::new()?.block_on(produce_tasks(&ProducePlan { alternate_every: Some(every), ..plan }))
}

fn plan(stack: &Stack, topic: &str, (partitions, count, v2_after, seed): (i32, usize, Option<usize>, u64), timestamps: Option<(i64, i64)>) -> ProducePlan {
    ProducePlan {
        bootstrap: stack.bootstrap.clone(),
        registry: stack.registry.clone(),
        topic: topic.to_string(),
        partitions,
        count,
        v2_after,
        alternate_every: None,
        timestamps,
        seed,
        compression: "none".into(),
        bad: Default::default(),
        titles: &[],
    }
}

/// As [`produce`], new tasks titled from `titles` (few distinct values, for a field partitioner).
pub fn produce_titled(stack: &Stack, topic: &str, partitions: i32, count: usize, seed: u64, titles: &'static [&'static str]) -> TestResult<Vec<(Produced, TaskEvent)>> {
    let plan = plan(stack, topic, (partitions, count, None, seed), None);
    tokio::runtime::Runtime::new()?.block_on(produce_tasks(&ProducePlan { titles, ..plan }))
}

/// As [`produce`], a share of the records spoiled as `bad` says (each event's `spoiled`).
pub fn produce_with_bad(stack: &Stack, topic: &str, partitions: i32, count: usize, seed: u64, bad: kafka_parquet_sink::testkit::BadMix) -> TestResult<Vec<(Produced, TaskEvent)>> {
    let plan = plan(stack, topic, (partitions, count, None, seed), None);
    tokio::runtime::Runtime::new()?.block_on(produce_tasks(&ProducePlan { bad, ..plan }))
}

/// As [`produce`], the producer compressing its batches with `codec`.
pub fn produce_compressed(stack: &Stack, topic: &str, partitions: i32, count: usize, seed: u64, codec: &str) -> TestResult<Vec<(Produced, TaskEvent)>> {
    let plan = plan(stack, topic, (partitions, count, None, seed), None);
    tokio::runtime::Runtime::new()?.block_on(produce_tasks(&ProducePlan { compression: codec.to_string(), ..plan }))
}

fn produce_batched(
    stack: &Stack,
    topic: &str,
    spec: (i32, usize, Option<usize>, u64),
    timestamps: Option<(i64, i64)>,
) -> TestResult<Vec<(Produced, TaskEvent)>> {
    tokio::runtime::Runtime::new()?.block_on(produce_tasks(&plan(stack, topic, spec, timestamps)))
}

/// Names no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the scripts keep the services' state (STACK_DIR, else `.stack/` of the checkout).
pub fn stack_dir() -> PathBuf {
    std::env::var("STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join(".stack"))
}

/// A free TCP port on loopback for a listener of the tests (the sink's metrics endpoint, a
/// proxy, a broker of a test's own).
pub fn free_port() -> TestResult<u16> {
    use rand::Rng;
    // Below the kernel's ephemeral range: a listener the tests close and open again (a proxy
    // taken down and up, a broker restarted) must find its port still free, and a port in that
    // range can meanwhile become the local end of any process's outbound connection (seen: the
    // registry proxy of tests/outages.rs failing its `up` with "Address already in use").
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|v| v.parse::<u16>().ok()))
        .unwrap_or(32768);
    if ephemeral_low > 12000 {
        for _ in 0..200 {
            let port = rand::rng().random_range(11000..ephemeral_low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to run the sink: the stack's addresses, the test's names, and extra configuration.
pub struct SinkSpec<'a> {
    pub stack: &'a Stack,
    pub topic: &'a str,
    pub group: &'a str,
    pub prefix: &'a str,
    /// Keys of the `[flush]` table.
    pub flush: &'a str,
    /// More keys of the `[output]` table.
    pub output: &'a str,
    /// More tables (`[errors]\ntolerance = "all"`), appended to the file.
    pub tables: String,
    /// Environment variables (`KPS__...` overrides the file).
    pub env: Vec<(String, String)>,
    /// `group.protocol = "consumer"` (KIP-848): the session timeout is the broker's then, and
    /// librdkafka refuses `session.timeout.ms`.
    pub consumer_protocol: bool,
    /// `[s3]` endpoint instead of the stack's, and whether the stack's static keys are set
    /// (without them the credential chain finds its own).
    pub s3: Option<(String, bool)>,
}

impl<'a> SinkSpec<'a> {
    pub fn new(stack: &'a Stack, topic: &'a str, group: &'a str, prefix: &'a str, flush: &'a str) -> Self {
        Self { stack, topic, group, prefix, flush, output: "", tables: String::new(), env: Vec::new(), consumer_protocol: false, s3: None }
    }

    /// Writes through `endpoint`, with the stack's keys or (`static_keys` false) none.
    pub fn s3(mut self, endpoint: &str, static_keys: bool) -> Self {
        self.s3 = Some((endpoint.to_string(), static_keys));
        self
    }

    /// Joins with the consumer group protocol of KIP-848 instead of the classic one.
    pub fn consumer_protocol(mut self) -> Self {
        self.consumer_protocol = true;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn tables(mut self, toml: &str) -> Self {
        self.tables.push_str(toml);
        self.tables.push('\n');
        self
    }

    pub fn output(mut self, toml: &'a str) -> Self {
        self.output = toml;
        self
    }

    pub fn start(&self) -> TestResult<SinkProcess> {
        SinkProcess::start_spec(self)
    }
}

/// The sink binary running as a child process with a config file of the test's making. Its log
/// goes to a file; the last lines are printed when the process handle is dropped, which the test
/// harness shows only for a failing test.
pub struct SinkProcess {
    pub child: Child,
    pub metrics_port: u16,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SinkProcess {
    pub fn start(stack: &Stack, topic: &str, group: &str, prefix: &str, flush_toml: &str) -> TestResult<SinkProcess> {
        SinkSpec::new(stack, topic, group, prefix, flush_toml).start()
    }

    /// As [`SinkProcess::start`], with more keys of the `[output]` table.
    pub fn start_with(
        stack: &Stack,
        topic: &str,
        group: &str,
        prefix: &str,
        flush_toml: &str,
        output_toml: &str,
    ) -> TestResult<SinkProcess> {
        SinkSpec::new(stack, topic, group, prefix, flush_toml).output(output_toml).start()
    }

    pub fn start_spec(spec: &SinkSpec<'_>) -> TestResult<SinkProcess> {
        let metrics_port = free_port()?;
        let (stack, group, topic, prefix) = (spec.stack, spec.group, spec.topic, spec.prefix);
        let text = format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topics = ["{topic}"]
[kafka.properties]
{group_properties}
[schema_registry]
url = "{registry}"
[s3]
endpoint = "{s3}"
{keys}
allow_http = true
[output]
{location}
{output_toml}
[flush]
{flush_toml}
[metrics]
listen = "127.0.0.1:{metrics_port}"
{tables}
"#,
            bootstrap = stack.bootstrap,
            group_properties =
                if spec.consumer_protocol { r#""group.protocol" = "consumer""# } else { r#""session.timeout.ms" = "10000""# },
            registry = stack.registry,
            s3 = spec.s3.as_ref().map_or(stack.s3.as_str(), |(e, _)| e.as_str()),
            keys = if spec.s3.as_ref().is_none_or(|(_, keys)| *keys) { "access_key_id = \"minioadmin\"\nsecret_access_key = \"minioadmin\"" } else { "" },
            // A `file:///dir` or `az://container/path` prefix is the lake's URL.
            location = if prefix.contains("://") { format!("url = \"{prefix}\"\nprefix = \"\"") } else { format!("prefix = \"{prefix}\"") },
            output_toml = spec.output,
            flush_toml = spec.flush,
            tables = spec.tables,
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("sink.toml");
        std::fs::write(&config, text)?;
        let log_path = dir.path().join("sink.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,kafka_parquet_sink=debug")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        Ok(SinkProcess { child, metrics_port, log_path, _dir: dir })
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET a path of the sink's HTTP endpoint: (status code, body); code 0 when nothing answers.
    pub fn http(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.metrics_port);
        let out = Command::new("curl").args(["-s", "--max-time", "2", "-w", "\n%{http_code}", &url]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        match text.rsplit_once('\n') {
            Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
            None => (0, text),
        }
    }

    /// `/status` as JSON.
    pub fn status(&self) -> TestResult<serde_json::Value> {
        let (code, body) = self.http("/status");
        if code != 200 {
            return Err(format!("/status answered {code}: {body}").into());
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// SIGKILL: no flush, no commit, no group leave.
    pub fn kill9(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Prometheus text of the running sink (empty while it is starting).
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        Command::new("curl")
            .args(["-s", "--max-time", "2", &url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Sum of a metric's samples whose label set contains every `labels` pair.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// SIGTERM, then wait for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> TestResult<ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!("sink did not exit within {timeout:?} of SIGTERM").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- last lines of the sink log ({}):", self.log_path.display());
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}

pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Committed offset per partition of `group` on `topic` (`None`: nothing committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> TestResult<BTreeMap<i32, Option<i64>>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got.elements().iter().map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { Some(o) } else { None })).collect())
}

/// Deletes a consumer group (its committed offsets with it), as `kafka-consumer-groups.sh
/// --delete` does; the group must have no members.
pub fn delete_group(bootstrap: &str, group: &str) -> TestResult {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let answers = tokio::runtime::Runtime::new()?.block_on(admin.delete_groups(&[group], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))))?;
    for a in answers {
        a.map_err(|(g, e)| format!("deleting group {g}: {e}"))?;
    }
    Ok(())
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what` in the message.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> TestResult<Option<T>>) -> TestResult<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})").into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until each partition's committed offset equals `ends[p]`.
pub fn wait_committed(stack: &Stack, group: &str, topic: &str, ends: &BTreeMap<i32, i64>, timeout: Duration) -> TestResult<()> {
    let partitions = ends.keys().max().map_or(0, |p| p + 1);
    let mut last = BTreeMap::new();
    wait_for(timeout, &format!("committed offsets to reach {ends:?}"), || {
        last = committed(&stack.bootstrap, group, topic, partitions)?;
        Ok(ends.iter().all(|(p, end)| last.get(p).copied().flatten() == Some(*end)).then_some(()))
    })
    .map_err(|e| format!("{e}; last committed: {last:?}").into())
}

/// Low and high watermark of each partition of `topic`, as the broker answers ListOffsets.
pub fn watermarks(bootstrap: &str, topic: &str) -> TestResult<BTreeMap<i32, (i64, i64)>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or(format!("topic {topic} not in the metadata"))?;
    let mut out = BTreeMap::new();
    for p in t.partitions() {
        out.insert(p.id(), c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?);
    }
    Ok(out)
}

/// Waits until the group has caught up on `topic`: on every partition that holds anything, the
/// committed offset equals the high watermark, which lies past transaction markers, aborted
/// records and compacted-away offsets as well as records (the lag a user's monitoring reads).
/// Returns the high watermarks.
pub fn wait_caught_up(stack: &Stack, group: &str, topic: &str, timeout: Duration) -> TestResult<BTreeMap<i32, i64>> {
    let mut last = (BTreeMap::new(), BTreeMap::new());
    wait_for(timeout, &format!("group {group} to reach the high watermarks of {topic}"), || {
        let ends: BTreeMap<i32, i64> = watermarks(&stack.bootstrap, topic)?.into_iter().map(|(p, (_, high))| (p, high)).collect();
        let partitions = ends.keys().max().map_or(0, |p| p + 1);
        let now = committed(&stack.bootstrap, group, topic, partitions)?;
        let done = ends.iter().all(|(p, end)| *end == 0 || now.get(p).copied().flatten() == Some(*end));
        last = (ends.clone(), now);
        Ok(done.then_some(ends))
    })
    .map_err(|e| format!("{e}; high watermarks {:?}, committed {:?}", last.0, last.1).into())
}

/// Last offset + 1 of each partition that received records.
pub fn log_ends(produced: impl IntoIterator<Item = (i32, i64)>) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (p, o) in produced {
        let e = ends.entry(p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    ends
}

/// One Parquet file as pyarrow (Arrow C++) reads it.
#[derive(Debug, serde::Deserialize)]
pub struct LakeFile {
    pub key: String,
    /// Rows as DuckDB counts them (with `read_lake_duckdb`).
    pub duckdb_rows: Option<u64>,
    pub size: u64,
    pub num_rows: u64,
    pub codecs: Vec<String>,
    pub columns: Vec<String>,
    pub rows: Vec<LakeRow>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct LakeRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub op: Option<String>,
    #[serde(rename = "__op")]
    pub bronze_op: Option<String>,
    #[serde(rename = "__deleted")]
    pub deleted: Option<bool>,
    #[serde(rename = "__ts_ms")]
    pub bronze_ts_ms: Option<i64>,
    /// `__kafka_key.id`: the decoded Debezium key.
    pub key_id: Option<String>,
    pub id: Option<String>,
    pub title: Option<String>,
    pub category: Option<String>,
    /// `prio` and `completed` of the row image (after, or before for a delete).
    pub prio: Option<String>,
    pub completed: Option<bool>,
    /// `source.ts_ms` of an envelope row.
    pub source_ts_ms: Option<i64>,
    /// `__kafka_headers` as [key, hex value] pairs, when the column is there.
    pub headers: Option<Vec<(String, Option<String>)>>,
}

/// Asserts that `file` lies in the directory `dir` (between `topics/<topic>/` and
/// `partition=<p>/`) for `row`, a row it holds; `why` says what put the row there.
pub fn assert_row_under(file: &LakeFile, row: &LakeRow, topic: &str, dir: &str, why: &str) {
    let expected = format!("/topics/{topic}/{dir}/partition={}/", row.partition);
    assert!(file.key.contains(&expected), "{} holds row {}/{} ({why}), expected under {expected}", file.key, row.partition, row.offset);
}

/// Every Parquet file under `prefix`, read back by pyarrow through `scripts/lake.py`. A
/// prefix `file:///dir` reads the local lake in that directory.
pub fn read_lake(stack: &Stack, prefix: &str) -> TestResult<Vec<LakeFile>> {
    read_lake_with(&stack.s3, ("minioadmin", "minioadmin"), prefix)
}

/// As [`read_lake`], each file's rows also counted by DuckDB (`LakeFile::duckdb_rows`).
pub fn read_lake_duckdb(stack: &Stack, prefix: &str) -> TestResult<Vec<LakeFile>> {
    lake_dump(&stack.s3, ("minioadmin", "minioadmin"), prefix, &["--duckdb"])
}

/// As [`read_lake`], from another S3 server with other credentials.
pub fn read_lake_with(endpoint: &str, keys: (&str, &str), prefix: &str) -> TestResult<Vec<LakeFile>> {
    lake_dump(endpoint, keys, prefix, &[])
}

fn lake_dump(endpoint: &str, keys: (&str, &str), prefix: &str, extra: &[&str]) -> TestResult<Vec<LakeFile>> {
    Ok(serde_json::from_slice(&lake_py(endpoint, keys, prefix, "dump", extra)?)?)
}

/// One object as the store gives it back (`scripts/lake.py digest`): its key in the bucket,
/// its size and the SHA-256 of its bytes.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Digest {
    pub key: String,
    pub size: usize,
    pub sha256: String,
}

impl Digest {
    pub fn of(key: &str, bytes: &[u8]) -> Digest {
        let sum = ring::digest::digest(&ring::digest::SHA256, bytes);
        Digest { key: key.to_string(), size: bytes.len(), sha256: sum.as_ref().iter().map(|b| format!("{b:02x}")).collect() }
    }
}

/// `len` bytes that repeat no short pattern (a multipart upload that mixed its parts up
/// would not give them back).
pub fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// Every object under `url` (`az://`, `gs://`, `file://`, or a prefix of the local S3 bucket),
/// read byte for byte by pyarrow.
/// The stack's bucket as an object store client of its own (not the sink's), for a test to
/// put or read an object the way another program would.
pub fn lake_bucket(stack: &Stack) -> TestResult<object_store::aws::AmazonS3> {
    Ok(object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&stack.s3)
        .with_bucket_name("datalake")
        .with_region("us-east-1")
        .with_access_key_id("minioadmin")
        .with_secret_access_key("minioadmin")
        .with_allow_http(true)
        .build()?)
}

pub fn lake_digest(stack: &Stack, url: &str) -> TestResult<Vec<Digest>> {
    Ok(serde_json::from_slice(&lake_py(&stack.s3, ("minioadmin", "minioadmin"), url, "digest", &[])?)?)
}

/// `scripts/lake.py COMMAND` over `prefix`, which may be a URL of another store; its output.
fn lake_py<'a>(endpoint: &'a str, (access_key, secret_key): (&str, &str), prefix: &'a str, command: &str, extra: &[&str]) -> TestResult<Vec<u8>> {
    let (azurite, gcs) = (format!("azurite://{}", Emulator::AZURITE.authority()), format!("fakegcs://{}", Emulator::FAKE_GCS.authority()));
    // A URL's bucket (or container) and the path under it.
    let split = |path: &'a str| path.split_once('/').unwrap_or((path, ""));
    let (endpoint, (bucket, prefix)) = match (prefix.strip_prefix("file://"), prefix.strip_prefix("az://"), prefix.strip_prefix("gs://")) {
        (Some(dir), _, _) => ("file://", (dir, "")),
        (_, Some(path), _) => (azurite.as_str(), split(path)),
        (_, _, Some(path)) => (gcs.as_str(), split(path)),
        _ => (endpoint, ("datalake", prefix)),
    };
    let out = Command::new("python3")
        .arg(root().join("scripts/lake.py"))
        .args(["--endpoint", endpoint, "--bucket", bucket, command, "--prefix", prefix])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .output()?;
    if !out.status.success() {
        return Err(format!("lake.py {command} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(out.stdout)
}

/// Produces batches of Debezium events on a thread until stopped, like an application that
/// keeps writing while the sink is killed, restarted or rebalanced.
pub struct BackgroundProducer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<TestResult<Vec<(Produced, TaskEvent)>>>,
}

impl BackgroundProducer {
    pub fn start(stack: &Stack, topic: &str, partitions: i32, batch: usize, pause: Duration) -> BackgroundProducer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, stack, topic) = (stop.clone(), stack.clone(), topic.to_string());
        let handle = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut seed = 1000;
            while !flag.load(Ordering::Relaxed) {
                all.extend(produce(&stack, &topic, partitions, batch, None, seed)?);
                seed += 1;
                std::thread::sleep(pause);
            }
            Ok(all)
        });
        BackgroundProducer { stop, handle }
    }

    /// Stops after the batch in flight; every record produced, with where it landed.
    pub fn stop(self) -> TestResult<Vec<(Produced, TaskEvent)>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().map_err(|_| "the producer thread panicked")?
    }
}

/// Offsets missing from the lake and offsets found more than once, over every non-tombstone
/// record of `produced`; also fails on a row of an offset never produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LakeAudit {
    pub records: usize,
    pub files: usize,
    pub lost: Vec<(i32, i64)>,
    pub duplicated: Vec<(i32, i64)>,
}

impl LakeAudit {
    /// Fails naming the lost and duplicated (partition, offset) pairs, if there are any.
    pub fn exactly_once(&self) -> TestResult {
        if self.lost.is_empty() && self.duplicated.is_empty() {
            return Ok(());
        }
        Err(format!("lost offsets (partition, offset): {:?}; duplicated: {:?}", self.lost, self.duplicated).into())
    }
}

impl std::fmt::Display for LakeAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records, {} files, lost {}, duplicated {}", self.records, self.files, self.lost.len(), self.duplicated.len())
    }
}

/// Waits until every produced record is committed, stops the sink with SIGTERM, and audits the
/// lake: every non-tombstone offset exactly once.
pub fn drain_and_audit(
    stack: &Stack,
    sink: &mut SinkProcess,
    (group, topic, prefix): (&str, &str, &str),
    produced: &[(Produced, TaskEvent)],
) -> TestResult<LakeAudit> {
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    let high = wait_caught_up(stack, group, topic, Duration::from_secs(90))?;
    for (p, end) in &ends {
        let h = high.get(p).copied().unwrap_or(0);
        if h < *end {
            return Err(format!("partition {p}: high watermark {h} is below the last produced offset + 1, {end}").into());
        }
    }
    let status = sink.terminate(Duration::from_secs(30))?;
    if !status.success() {
        return Err(format!("sink exit status after SIGTERM: {status}").into());
    }
    let audit = audit_lake(stack, prefix, produced)?;
    audit.exactly_once()?;
    Ok(audit)
}

pub fn audit_lake(stack: &Stack, prefix: &str, produced: &[(Produced, TaskEvent)]) -> TestResult<LakeAudit> {
    let expected: std::collections::BTreeSet<(i32, i64)> =
        produced.iter().filter(|(_, e)| e.op != kafka_parquet_sink::testkit::Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
    audit_offsets(stack, prefix, &expected)
}

/// As [`audit_lake`], against a set of (partition, offset) pairs that must each be in the lake
/// once, and nothing else.
pub fn audit_offsets(stack: &Stack, prefix: &str, expected: &std::collections::BTreeSet<(i32, i64)>) -> TestResult<LakeAudit> {
    let files = read_lake(stack, prefix)?;
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for f in &files {
        for r in &f.rows {
            *seen.entry((r.partition, r.offset)).or_default() += 1;
        }
    }
    if let Some(stray) = seen.keys().find(|k| !expected.contains(k)) {
        return Err(format!(
            "the lake has a row for {stray:?}, which is not an expected change event (never produced, aborted, or compacted away)"
        )
        .into());
    }
    Ok(LakeAudit {
        records: expected.len(),
        files: files.len(),
        lost: expected.iter().filter(|k| !seen.contains_key(k)).copied().collect(),
        duplicated: seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect(),
    })
}

/// A TCP forwarder in front of a dependency, to take it away and bring it back: `down` closes
/// the listening port and every open connection (clients see what a stopped server gives them:
/// resets, then refused connections), `up` listens on the same port again.
pub struct Proxy {
    pub port: u16,
    target: String,
    rt: tokio::runtime::Runtime,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// While set, bytes are held in both directions: requests in flight hang, as on a store
    /// that stopped answering, and go on when it is cleared.
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(target: &str) -> TestResult<Proxy> {
        let p = Proxy {
            port: free_port()?,
            target: target.trim_start_matches("http://").to_string(),
            rt: tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?,
            task: std::sync::Mutex::new(None),
            paused: Default::default(),
        };
        p.up()?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn up(&self) -> TestResult {
        let listener = self.rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))?;
        let (target, paused) = (self.target.clone(), self.paused.clone());
        let task = self.rt.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, paused) = (target.clone(), paused.clone());
                conns.spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(relay(in_read, out_write, paused.clone()), relay(out_read, in_write, paused));
                    }
                });
            }
        });
        *self.task.lock().map_err(|_| "proxy lock poisoned")? = Some(task);
        Ok(())
    }

    /// Holds every byte from now on (see `paused`).
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets the held bytes and everything after them through again.
    pub fn resume(&self) {
        self.paused.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn down(&self) -> TestResult {
        if let Some(task) = self.task.lock().map_err(|_| "proxy lock poisoned")?.take() {
            task.abort(); // drops the listener and the JoinSet, which aborts every connection
            let _ = self.rt.block_on(task);
        }
        Ok(())
    }
}

/// An Apache Kafka broker of the test's own (`scripts/kafka.sh`, on free ports, in a temporary
/// log directory), for tests that stop and restart the broker without taking the shared one
/// from the other tests. Stopped when dropped.
pub struct Broker {
    dir: tempfile::TempDir,
    pub port: u16,
    controller_port: u16,
}

impl Broker {
    pub fn start() -> TestResult<Broker> {
        on_free_ports(|| {
            let b = Broker { dir: tempfile::tempdir()?, port: free_port()?, controller_port: free_port()? };
            let dir = b.dir.path().to_string_lossy().into_owned();
            Ok(start_broker(&["start", &dir, &b.port.to_string(), &b.controller_port.to_string()])?.map(|()| b))
        })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kafka's DumpLogSegments of the first segment of `topic`'s `partition`: each batch with
    /// its offsets and `compresscodec`.
    pub fn dump_log(&self, topic: &str, partition: i32) -> TestResult<String> {
        let segment = self.dir.path().join("data").join(format!("{topic}-{partition}")).join("00000000000000000000.log");
        let out = Command::new("bash").arg(root().join("scripts/kafka.sh")).arg("dump-log").arg(&segment).env("KAFKA_HEAP_OPTS", "-Xmx256m").output()?;
        if !out.status.success() {
            return Err(format!("scripts/kafka.sh dump-log {}: {}", segment.display(), String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn script(&self, args: &[&str]) -> TestResult {
        let out = Command::new("bash").arg(root().join("scripts/kafka.sh")).args(args).output()?;
        if !out.status.success() {
            return Err(format!("scripts/kafka.sh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }

    /// Starts the broker on its log directory (formatted on the first start).
    pub fn start_again(&self) -> TestResult {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.script(&["start", &dir, &self.port.to_string(), &self.controller_port.to_string()])
    }

    /// Stops the broker (SIGTERM, a controlled shutdown); its log stays for [`Broker::start_again`].
    pub fn stop(&self) -> TestResult {
        self.script(&["stop", &self.dir.path().to_string_lossy()])
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.script(&["stop", &self.dir.path().to_string_lossy(), "--kill"]);
    }
}

/// Copies one direction of a proxied connection, holding the bytes while `paused` is set.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while paused.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `scripts/aws_stub.py`: STS, IMDS and container credentials on one port, a recording proxy
/// to the stack's S3 server on another.
pub struct AwsStub {
    child: Child,
    pub port: u16,
    s3_port: u16,
    log: tempfile::NamedTempFile,
}

impl AwsStub {
    pub fn start(stack: &Stack, lifetime_secs: u32) -> TestResult<AwsStub> {
        let (port, s3_port) = (free_port()?, free_port()?);
        let log = tempfile::NamedTempFile::new()?;
        let target = stack.s3.trim_start_matches("http://").to_string();
        let (port_arg, s3_arg, lifetime) = (port.to_string(), s3_port.to_string(), lifetime_secs.to_string());
        let args = ["--port", &port_arg, "--s3-port", &s3_arg, "--target", &target, "--lifetime", &lifetime];
        let child = start_stub("aws_stub.py", &args, log.path())?;
        Ok(AwsStub { child, port, s3_port, log })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn s3(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Every call so far of `service` (`sts`, `imds`, `container`, `s3`, `msk`).
    pub fn calls(&self, service: &str) -> TestResult<Vec<serde_json::Value>> {
        Ok(json_lines(self.log.path())?.into_iter().filter(|c| c["service"] == service).collect())
    }

    /// Access key ids that signed S3 requests, in order of first use.
    pub fn s3_keys(&self) -> TestResult<Vec<String>> {
        let mut keys: Vec<String> = Vec::new();
        for c in self.calls("s3")? {
            if let Some(k) = c["key"].as_str().filter(|k| !keys.iter().any(|x| x == k)) {
                keys.push(k.to_string());
            }
        }
        Ok(keys)
    }
}

impl Drop for AwsStub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}


/// An Apache Kafka broker of the test's own with the secured listeners of `scripts/kafka.sh
/// start-secure` (SSL, MTLS, SCRAM, OAUTH, PLAIN, MSKIAM, BADHOST, EXPIRED) beside a plaintext
/// one for the test's own producing and offset checks. Stopped when dropped.
pub struct SecureBroker {
    dir: tempfile::TempDir,
    pub port: u16,
    base: u16,
}

/// The secured listeners, in the order of their ports from the base.
pub const SECURE_LISTENERS: [&str; 8] = ["SSL", "MTLS", "SCRAM", "OAUTH", "PLAIN", "MSKIAM", "BADHOST", "EXPIRED"];

impl SecureBroker {
    pub fn start() -> TestResult<SecureBroker> {
        on_free_ports(|| {
            let (port, controller) = (free_port()?, free_port()?);
            let base = consecutive_free_ports(SECURE_LISTENERS.len() as u16)?;
            let b = SecureBroker { dir: tempfile::tempdir()?, port, base };
            let dir = b.dir.path().to_string_lossy().into_owned();
            Ok(start_broker(&["start-secure", &dir, &port.to_string(), &controller.to_string(), &base.to_string()])?.map(|()| b))
        })
    }

    /// `127.0.0.1:<port>` of a listener of [`SECURE_LISTENERS`].
    pub fn listener(&self, name: &str) -> TestResult<String> {
        let i = SECURE_LISTENERS.iter().position(|l| *l == name).ok_or_else(|| format!("no listener {name}"))?;
        Ok(format!("127.0.0.1:{}", self.base + i as u16))
    }

    /// A file of the broker's TLS material (`ca.pem`, `other-ca.pem`, `client.pem`, `client.key`).
    pub fn tls(&self, file: &str) -> String {
        self.dir.path().join("tls").join(file).to_string_lossy().into_owned()
    }

    /// The stack with this broker's plaintext listener in place of the shared broker.
    pub fn plaintext(&self, stack: &Stack) -> Stack {
        Stack { bootstrap: format!("127.0.0.1:{}", self.port), ..stack.clone() }
    }

    /// Where the MSKIAM listener sends each token to be checked.
    pub fn set_msk_verifier(&self, url: &str) -> TestResult {
        Ok(std::fs::write(self.dir.path().join("mskiam-verifier.url"), url)?)
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(root().join("scripts/kafka.sh")).args(["stop", &self.dir.path().to_string_lossy(), "--kill"]).output();
    }
}

/// `scripts/kafka.sh start` or `start-secure` with `args`: `None` when a port it was given was
/// taken before the broker bound it (exit 3; the broker is not running), an error for any other
/// failure.
fn start_broker(args: &[&str]) -> TestResult<Option<()>> {
    let out = Command::new("bash").arg(root().join("scripts/kafka.sh")).args(args).output()?;
    match out.status.code() {
        Some(0) => Ok(Some(())),
        Some(3) => Ok(None),
        _ => Err(format!("scripts/kafka.sh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into()),
    }
}

/// `start` on newly picked free ports until none was taken before the broker bound it: a port
/// seen free can be given to another process (another test's outgoing connection) meanwhile.
fn on_free_ports<T>(start: impl Fn() -> TestResult<Option<T>>) -> TestResult<T> {
    for _ in 0..5 {
        if let Some(started) = start()? {
            return Ok(started);
        }
    }
    Err("the broker's ports were taken before it bound them, 5 times in a row".into())
}

/// The first of `n` consecutive free ports on loopback.
fn consecutive_free_ports(n: u16) -> TestResult<u16> {
    for _ in 0..100 {
        let base = free_port()?;
        if base > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (0..n).map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == n as usize {
            return Ok(base);
        }
    }
    Err(format!("no {n} consecutive free ports").into())
}

/// `scripts/oidc_stub.py`: an OAuth token endpoint (client credentials) for OAUTHBEARER OIDC.
pub struct OidcStub {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl OidcStub {
    pub fn start(client: &str, secret: &str) -> TestResult<OidcStub> {
        let port = free_port()?;
        let log = tempfile::NamedTempFile::new()?;
        let child = start_stub("oidc_stub.py", &["--port", &port.to_string(), "--client", &format!("{client}:{secret}")], log.path())?;
        Ok(OidcStub { child, port, log })
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Token requests so far, each with its client and whether it was granted (`ok`).
    pub fn calls(&self) -> TestResult<Vec<serde_json::Value>> {
        json_lines(self.log.path())
    }
}

impl Drop for OidcStub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a stub of the scripts (`python3 scripts/<script> ARGS --log LOG`) and waits for the
/// "ready" line it prints once it listens.
pub fn start_stub(script: &str, args: &[&str], log: &std::path::Path) -> TestResult<Child> {
    let mut child = Command::new("python3").arg(root().join("scripts").join(script)).args(args).arg("--log").arg(log).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?), &mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("{script} did not start: {line:?}").into());
    }
    Ok(child)
}

/// A log of one JSON object per line.
fn json_lines(path: &std::path::Path) -> TestResult<Vec<serde_json::Value>> {
    Ok(std::fs::read_to_string(path)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?)
}

/// A Delta table as the `deltalake` package (delta-rs) reads it: `scripts/delta.py dump`.
#[derive(Debug, serde::Deserialize)]
pub struct DeltaDump {
    pub version: i64,
    pub files: Vec<String>,
    pub partition_columns: Vec<String>,
    pub columns: Vec<String>,
    /// Every row's (Kafka partition, offset).
    pub rows: Vec<(i32, i64)>,
    /// The txn version (next offset) of each partition asked for, under the sink's app ids.
    pub txn: BTreeMap<String, Option<i64>>,
    /// Each row's values of the columns asked for ([`read_delta_with`]), in `rows`' order.
    #[serde(default)]
    pub values: BTreeMap<String, Vec<serde_json::Value>>,
}

impl DeltaDump {
    /// Every (partition, offset) of `produced` but its tombstones exactly once, and nothing else.
    pub fn exactly_once(&self, produced: &[(Produced, TaskEvent)]) -> TestResult {
        let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for r in &self.rows {
            *seen.entry(*r).or_default() += 1;
        }
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
        if !dups.is_empty() {
            return Err(format!("duplicate rows in the table at version {} (partition, offset) → count: {dups:?}", self.version).into());
        }
        let want: std::collections::BTreeSet<(i32, i64)> =
            produced.iter().filter(|(_, e)| e.op != kafka_parquet_sink::testkit::Op::Tombstone).map(|(p, _)| (p.partition, p.offset)).collect();
        let missing: Vec<_> = want.iter().filter(|k| !seen.contains_key(k)).take(10).collect();
        let extra: Vec<_> = seen.keys().filter(|k| !want.contains(k)).take(10).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "table version {}: {} rows against {} produced; missing (first 10) {missing:?}, not produced {extra:?}",
                self.version,
                self.rows.len(),
                want.len()
            )
            .into());
        }
        Ok(())
    }
}

/// The topic's Delta table under `prefix` in the stack's bucket, read by `deltalake`.
pub fn read_delta(stack: &Stack, prefix: &str, topic: &str, partitions: i32) -> TestResult<DeltaDump> {
    read_delta_with(stack, prefix, topic, partitions, &[])
}

/// As [`read_delta`], with each row's values of `columns` too.
pub fn read_delta_with(stack: &Stack, prefix: &str, topic: &str, partitions: i32, columns: &[&str]) -> TestResult<DeltaDump> {
    let table = format!("{prefix}/topics/{topic}");
    let out = Command::new("python3")
        .arg(root().join("scripts/delta.py"))
        .args(["--endpoint", &stack.s3, "dump", "--table", &table, "--partitions", &partitions.to_string()])
        .args(columns.iter().flat_map(|c| ["--column", c]))
        .envs(Emulator::FAKE_GCS.env())
        .output()?;
    if !out.status.success() {
        return Err(format!("delta.py dump of {table} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every row's (Kafka partition, offset) of the topic's Delta table as DuckDB's `delta_scan`
/// reads it (`scripts/delta_duckdb.py`, on the DuckDB that `scripts/stack.sh` installs for it).
pub fn read_delta_duckdb(stack: &Stack, prefix: &str, topic: &str) -> TestResult<Vec<(i32, i64)>> {
    #[derive(serde::Deserialize)]
    struct Dump {
        rows: Vec<(i32, i64)>,
    }
    let stack_dir = stack_dir();
    let table = format!("{prefix}/topics/{topic}");
    let out = Command::new("python3")
        .arg(root().join("scripts/delta_duckdb.py"))
        .args(["--endpoint", &stack.s3, "dump", "--table", &table])
        .env("DUCKDB_DELTA_DIR", stack_dir.join("duckdb-delta"))
        .output()?;
    if !out.status.success() {
        return Err(format!("delta_duckdb.py dump of {table} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut rows = serde_json::from_slice::<Dump>(&out.stdout)?.rows;
    rows.sort();
    Ok(rows)
}

/// One cycle of a kill loop: waits until the member owns partitions, then SIGKILLs it somewhere
/// in its work: after a random pause on even cycles, on odd ones the moment a new `marker` line
/// is logged (an upload, a table commit), to land between that step and the next.
pub fn kill_somewhere(sink: &mut SinkProcess, cycle: usize, marker: &str) -> TestResult {
    use rand::Rng;
    wait_for(Duration::from_secs(60), &format!("cycle {cycle}: the member to get partitions"), || {
        Ok((sink.metric_sum("kps_partition_state", &[("state", "RUNNING")]) > 0.0).then_some(()))
    })?;
    if cycle.is_multiple_of(2) {
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(100..2500)));
    } else {
        let before = sink.log().matches(marker).count();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.log().matches(marker).count() == before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    sink.kill9()
}

/// Rows as (Kafka partition, offset), sorted.
pub type Offsets = Vec<(i32, i64)>;

/// The topic's Delta table as Apache Spark with Delta Lake reads it (`scripts/delta_spark.py`):
/// every row's (partition, offset) of a batch read of the latest version, and with `stream` of
/// a stream from version 0 (empty without).
pub fn read_delta_spark(stack: &Stack, prefix: &str, topic: &str, stream: bool) -> TestResult<(Offsets, Offsets)> {
    #[derive(serde::Deserialize)]
    struct Dump {
        rows: Vec<(i32, i64)>,
        #[serde(default)]
        stream: Vec<(i32, i64)>,
    }
    let table = format!("{prefix}/topics/{topic}");
    let out = Command::new("python3")
        .arg(root().join("scripts/delta_spark.py"))
        .args(["--endpoint", &stack.s3, "dump", "--table", &table])
        .args(stream.then_some("--stream"))
        .env("SPARK_DIR", stack_dir().join("spark"))
        .output()?;
    if !out.status.success() {
        return Err(format!("delta_spark.py dump of {table} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut dump: Dump = serde_json::from_slice(&out.stdout)?;
    dump.rows.sort();
    dump.stream.sort();
    Ok((dump.rows, dump.stream))
}

/// How the reader matrix reads a table.
pub struct Matrix<'a> {
    /// The values of these columns come back with `deltalake`'s rows.
    pub columns: &'a [&'a str],
    /// A Spark stream from version 0 too (a table whose early versions a log cleanup removed
    /// cannot be streamed from there).
    pub stream: bool,
}

/// The reader matrix: the topic's table read by `deltalake`, DuckDB's `delta_scan` and Spark
/// (batch, and a stream from version 0 when asked) holds every offset of `produced` once, alike
/// in each. Returns what `deltalake` read, with each row's values of the columns asked for.
pub fn assert_every_reader_reads(stack: &Stack, (prefix, topic, partitions): (&str, &str, i32), how: Matrix<'_>, produced: &[(Produced, TaskEvent)]) -> TestResult<DeltaDump> {
    let columns = how.columns;
    let table = read_delta_with(stack, prefix, topic, partitions, columns)?;
    table.exactly_once(produced).map_err(|e| format!("deltalake: {e}"))?;
    let mut by_deltalake = table.rows.clone();
    by_deltalake.sort();
    let by_duckdb = read_delta_duckdb(stack, prefix, topic)?;
    assert_eq!(by_duckdb.len(), by_deltalake.len(), "rows read by DuckDB (left) and deltalake (right)");
    assert!(by_duckdb == by_deltalake, "DuckDB's delta_scan reads other rows than deltalake");
    let (by_spark, streamed) = read_delta_spark(stack, prefix, topic, how.stream)?;
    assert_eq!(by_spark.len(), by_deltalake.len(), "rows read by Spark (left) and deltalake (right)");
    assert!(by_spark == by_deltalake, "Spark reads other rows than deltalake");
    if how.stream {
        assert_eq!(streamed.len(), by_deltalake.len(), "rows a Spark stream from version 0 read (left) and deltalake (right)");
        assert!(streamed == by_deltalake, "a Spark stream from version 0 reads other rows than deltalake");
    }
    Ok(table)
}
