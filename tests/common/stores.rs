//! The object stores of the tests besides S3, each an emulator its script starts and keeps in
//! memory: Azure Blob Storage on Azurite (`scripts/azurite.sh`), Google Cloud Storage on
//! fake-gcs-server (`scripts/fake-gcs.sh`); and the two runs every such store gets, one per
//! `output.format`, read back by pyarrow and the `deltalake` package.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use kafka_parquet_sink::config::Config;
use kafka_parquet_sink::metrics::Metrics;
use kafka_parquet_sink::store::{Store, Uploaded};

use super::*;

/// One emulated store: its URL scheme, where it listens, and how a sink reaches it.
#[derive(Debug, Clone, Copy)]
pub struct Emulator {
    /// `output.url` scheme (`az`, `gs`); the bucket or container is always `datalake`.
    pub scheme: &'static str,
    name: &'static str,
    script: &'static str,
    port_var: &'static str,
    default_port: u16,
}

impl Emulator {
    /// Azurite, the emulator Microsoft publishes (development account, container `datalake`).
    pub const AZURITE: Emulator = Emulator { scheme: "az", name: "Azurite", script: "scripts/azurite.sh", port_var: "AZURITE_PORT", default_port: 10000 };
    /// fake-gcs-server with its XML-API shim (bucket `datalake`).
    pub const FAKE_GCS: Emulator = Emulator { scheme: "gs", name: "fake-gcs-server", script: "scripts/fake-gcs.sh", port_var: "FAKE_GCS_PORT", default_port: 4443 };

    /// Host and port (its script's port variable, else the default).
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", port(self.port_var, self.default_port))
    }

    /// Running, or an error telling how to start it (never a silent skip).
    pub fn get(self) -> TestResult<Emulator> {
        let addr = self.authority();
        let listening = std::net::TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2)).is_ok();
        if !listening || (self.scheme == "gs" && !gcs_key_file().exists()) {
            return Err(format!("{} ({addr}) is not reachable: start it with `{} up`", self.name, self.script).into());
        }
        Ok(self)
    }

    /// What the sink's object_store (and the `deltalake` reader's) needs to take the emulator
    /// for the cloud: Azure's emulator switch and address, or the key file `scripts/fake-gcs.sh`
    /// writes (the emulator's URL, OAuth off).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.scheme {
            "az" => vec![("AZURE_STORAGE_USE_EMULATOR", "true".into()), ("AZURITE_BLOB_STORAGE_URL", format!("http://{}", self.authority()))],
            _ => vec![("GOOGLE_SERVICE_ACCOUNT", gcs_key_file().display().to_string())],
        }
    }

    fn sink<'a>(&self, stack: &'a Stack, topic: &'a str, group: &'a str, url: &'a str) -> SinkSpec<'a> {
        self.env().into_iter().fold(SinkSpec::new(stack, topic, group, url, "max_records = 100\nrotate_interval_ms = 1000"), |spec, (k, v)| spec.env(k, &v))
    }

    /// The start-up probe found the store's conditional create (Azure `If-None-Match: *`, GCS
    /// `x-goog-if-generation-match: 0`) refusing a second put: data files and log versions are
    /// put-if-absent there too.
    fn assert_conditional(&self, log: &str) {
        assert!(!log.contains("does not refuse a conditional put"), "{} took a second conditional put of one key:\n{log}", self.name);
    }

    /// How many parts the store assembled `key` (in the bucket `datalake`) from: Azure's
    /// committed blocks (Get Block List), or the parts the GCS shim's completion joined (its
    /// log); 0 for an object put in one request.
    fn parts(&self, key: &str) -> TestResult<usize> {
        if self.scheme == "az" {
            let out = Command::new("python3")
                .arg(root().join("scripts/azure_blob.py"))
                .args(["blocks", "--endpoint", &format!("http://{}", self.authority()), "--container", "datalake", "--blob", key])
                .output()?;
            if !out.status.success() {
                return Err(format!("azure_blob.py blocks failed: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            return Ok(serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)?.len());
        }
        let log = std::fs::read_to_string(stack_dir().join("fake-gcs/fake-gcs.log"))?;
        let done = format!("multipart upload of datalake/{key} completed from ");
        Ok(log.lines().find_map(|l| l.split_once(&done)).and_then(|(_, n)| n.split(' ').next()?.parse().ok()).unwrap_or(0))
    }
}

fn gcs_key_file() -> PathBuf {
    stack_dir().join("fake-gcs/service-account.json")
}

/// Files mode: 1,000 events in two partitions land once each, every row under its partition's
/// directory, read back by pyarrow through the store's own API.
pub fn files_land_once_each(store: Emulator, seed: u64) -> TestResult {
    let stack = Stack::get()?;
    let (topic, group) = (unique(&format!("it-{}-files", store.scheme)), unique("it-group"));
    let url = format!("{}://datalake/{}", store.scheme, unique(&format!("it/{}-files", store.scheme)));
    let produced = produce(&stack, &topic, 2, 500, None, seed)?;
    let mut sink = store.sink(&stack, &topic, &group, &url).start()?;
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &url), &produced).map_err(|e| format!("{e}\n{}", sink.log()))?;
    for f in &read_lake(&stack, &url)? {
        for r in &f.rows {
            let dir = format!("/topics/{topic}/partition={}/", r.partition);
            assert!(f.key.contains(&dir), "{} holds row {}/{}, expected under {dir}", f.key, r.partition, r.offset);
        }
    }
    assert!(audit.files >= 2, "files of two partitions: {audit}");
    store.assert_conditional(&sink.log());
    Ok(())
}

/// Delta mode: the same load as one table, every offset exactly once, each partition's txn
/// version its next offset, checkpoints every third version, data files in the bucket.
pub fn delta_table_lands_exactly_once(store: Emulator, seed: u64) -> TestResult {
    let stack = Stack::get()?;
    let (topic, group) = (unique(&format!("it-{}-delta", store.scheme)), unique("it-group"));
    let url = format!("{}://datalake/{}", store.scheme, unique(&format!("it/{}-delta", store.scheme)));
    let partitions = 2;
    let produced = produce(&stack, &topic, partitions, 500, None, seed)?;
    let mut sink = store.sink(&stack, &topic, &group, &url).output("format = \"delta\"").tables("[table]\ncommit_interval_ms = 1000\ncheckpoint_interval = 3").start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    store.assert_conditional(&sink.log());
    let table = read_delta(&stack, &url, &topic, partitions)?;
    table.exactly_once(&produced)?;
    let txn: BTreeMap<String, Option<i64>> = ends.iter().map(|(p, e)| (p.to_string(), Some(*e))).collect();
    assert_eq!(table.txn, txn, "txn versions: each partition's next offset");
    let bucket = format!("{}://datalake/", store.scheme);
    assert!(table.files.iter().all(|f| f.starts_with(&bucket) && f.contains("/__kafka_partition=")), "data files in {bucket}, by partition: {:?}", table.files);
    Ok(())
}

/// A file at or above `s3.multipart_part_bytes` goes up in parts (Azure's blocks, GCS's XML
/// multipart upload) and the store gives back the same bytes; the ETag its upload returned is
/// the store's own, so a member that lost the partition can still tell its file from another's.
pub fn large_files_upload_in_parts(store: Emulator) -> TestResult {
    const PART: usize = 5 * 1024 * 1024;
    let stack = Stack::get()?;
    let url = format!("{}://datalake/{}", store.scheme, unique(&format!("it/{}-parts", store.scheme)));
    let mut config = Config::default();
    config.output.url = url.clone();
    config.s3.multipart_part_bytes = PART;
    // The emulators speak plain HTTP; a refusal fails the test instead of being retried forever.
    config.s3.allow_http = true;
    config.s3.retry_max_attempts = 3;
    config.s3.env = store.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let lake = Store::open(&config, Metrics::new()?)?;
    let data = pseudo_random_bytes(2 * PART + 123);
    let key = lake.key("t", None, 0, 0);
    let rt = tokio::runtime::Runtime::new()?;
    let e_tag = match rt.block_on(lake.upload_new(&key, Bytes::from(data.clone())))? {
        Uploaded::Created { e_tag } => e_tag,
        other => return Err(format!("upload_new of the new key {key}: {other:?}").into()),
    };
    assert_eq!(lake_digest(&stack, &url)?, vec![Digest::of(&key, &data)], "the objects under {url}, byte for byte");
    assert_eq!(store.parts(&key)?, 3, "parts of {key} ({} bytes in parts of {PART})", data.len());
    assert!(rt.block_on(lake.delete_if_ours(&key, e_tag.as_deref()))?, "{key} kept: its ETag is not the {e_tag:?} its upload returned");
    assert_eq!(lake_digest(&stack, &url)?, vec![], "objects under {url} after the delete");
    Ok(())
}
