//! Production object stores: each AWS credential source the chain can take here, object
//! settings (encryption, storage class, ACL, tags) as the S3 server receives them, codecs read
//! back by pyarrow and DuckDB, and Confluent file names under a `${topic}` prefix with a crash.
//!
//! Needs the local stack (`scripts/stack.sh up`). STS, instance metadata and container
//! credentials are `scripts/aws_stub.py`, which also records what reaches the S3 server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_parquet_sink::config::{Config, CredentialSource, OutputConfig, S3Config, Sse};
use kafka_parquet_sink::metrics::Metrics;
use kafka_parquet_sink::store::{CredentialInfo, Store, Uploaded};
use serde_json::Value;

fn config(s3: S3Config, prefix: &str) -> Config {
    Config { s3, output: OutputConfig { prefix: prefix.to_string(), ..OutputConfig::default() }, ..Config::default() }
}

fn via(stub: &AwsStub) -> S3Config {
    S3Config { endpoint: stub.s3(), allow_http: true, sts_endpoint: stub.url(), ..S3Config::default() }
}

/// Opens the store, probes it (a list, a put, a conditional put, a delete) and puts one file;
/// returns where the credentials came from.
fn write_through(config: &Config) -> TestResult<CredentialInfo> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut store = Store::open(config, Metrics::new()?)?;
    rt.block_on(store.probe())?;
    rt.block_on(store.upload_new(&store.key("t", None, 0, 0), Bytes::from_static(b"data")))?;
    store.credentials().cloned().ok_or_else(|| "an S3 store names its credentials".into())
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn each_credential_source_signs_the_requests() -> TestResult {
    let stack = Stack::get()?;
    let stub = AwsStub::start(&stack, 900)?;
    let dir = tempfile::tempdir()?;
    let prefix = unique("it/creds");

    // Environment, with a session token.
    let s3 = S3Config { env: env(&[("AWS_ACCESS_KEY_ID", "AKIAENVKEY000001"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_SESSION_TOKEN", "env-token")]), ..via(&stub) };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!(info.source, CredentialSource::Environment, "{info}");
    let puts: Vec<Value> = stub.calls("s3")?.into_iter().filter(|c| c["method"] == "PUT").collect();
    assert!(!puts.is_empty() && puts.iter().all(|c| c["key"] == "AKIAENVKEY000001" && c["headers"]["x-amz-security-token"] == "env-token"), "puts: {puts:?}");

    // A profile of the shared credentials file.
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, "[other]\naws_access_key_id = AKIAOTHER0000001\naws_secret_access_key = x\n[prod]\naws_access_key_id = AKIAPROFILE00001\naws_secret_access_key = x\n")?;
    let creds_file = creds.to_string_lossy().to_string();
    let s3 = S3Config { profile: "prod".into(), env: env(&[("AWS_SHARED_CREDENTIALS_FILE", &creds_file)]), ..via(&stub) };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!((info.source, stub.s3_keys()?.last().cloned()), (CredentialSource::Profile, Some("AKIAPROFILE00001".into())), "{info}");

    // Web identity (EKS IRSA): the token file's token is exchanged at STS.
    let token = dir.path().join("token");
    std::fs::write(&token, "stub-web-identity-token\n")?;
    let token_file = token.to_string_lossy().to_string();
    let s3 = S3Config { env: env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file), ("AWS_ROLE_ARN", "arn:aws:iam::1:role/irsa")]), ..via(&stub) };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!(info.source, CredentialSource::WebIdentity, "{info}");
    let sts = stub.calls("sts")?;
    assert_eq!((sts.len(), &sts[0]["token_ok"], &sts[0]["role"]), (1, &Value::Bool(true), &Value::from("arn:aws:iam::1:role/irsa")), "{sts:?}");
    let web_key = stub.s3_keys()?.last().cloned().unwrap_or_default();
    assert!(web_key.starts_with("STUB"), "S3 requests signed with {web_key}, not STS's key");

    // AssumeRole on top of static keys: STS checks the base key's SigV4 signature.
    let s3 = S3Config {
        access_key_id: "AKIABASEKEY00001".into(),
        secret_access_key: "base-secret".into(),
        role_arn: "arn:aws:iam::2:role/writer".into(),
        external_id: "ext-42".into(),
        ..via(&stub)
    };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!((info.source, info.assumed_role.as_deref()), (CredentialSource::Static, Some("arn:aws:iam::2:role/writer")), "{info}");
    let assume = stub.calls("sts")?.into_iter().find(|c| c["call"] == "AssumeRole").ok_or("no AssumeRole call")?;
    assert_eq!((&assume["signed"], &assume["external_id"]), (&Value::Bool(true), &Value::from("ext-42")), "STS saw {assume}");
    let role_key = stub.s3_keys()?.last().cloned().unwrap_or_default();
    assert!(role_key.starts_with("STUB") && role_key != web_key, "S3 requests signed with {role_key}");

    // A wrong base secret: STS refuses, and the error says so.
    let s3 = S3Config { access_key_id: "AKIABASEKEY00001".into(), secret_access_key: "wrong".into(), role_arn: "arn:aws:iam::2:role/writer".into(), ..via(&stub) };
    let err = write_through(&config(s3, &prefix)).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("AssumeRole answered 403") && err.contains("signature mismatch"), "{err}");

    // Instance metadata (IMDSv2: a session token first).
    let s3 = S3Config { credentials: CredentialSource::Instance, metadata_endpoint: stub.url(), ..via(&stub) };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!(info.source, CredentialSource::Instance, "{info}");
    let imds: Vec<Value> = stub.calls("imds")?;
    assert!(imds.iter().any(|c| c["call"] == "token") && imds.iter().any(|c| c["role"] == "stub-instance-role"), "{imds:?}");

    // Container credentials (EKS Pod Identity: full URI and an authorization token file).
    let auth = dir.path().join("eks-token");
    std::fs::write(&auth, "stub-container-token")?;
    let (uri, auth_file) = (format!("{}/container", stub.url()), auth.to_string_lossy().to_string());
    let s3 = S3Config { env: env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri), ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &auth_file)]), ..via(&stub) };
    let info = write_through(&config(s3, &prefix))?;
    assert_eq!(info.source, CredentialSource::Container, "{info}");
    assert!(stub.calls("container")?.iter().all(|c| c["token_ok"] == true), "container calls: {:?}", stub.calls("container")?);
    for secret in ["base-secret", "stub-secret", "x\""] {
        assert!(!info.to_string().contains(secret), "{info} shows a secret");
    }
    Ok(())
}

/// Credentials of a few seconds are renewed before they expire while the sink keeps writing;
/// `check` and `/status` name the source.
#[test]
fn the_sink_renews_short_lived_web_identity_credentials() -> TestResult {
    let stack = Stack::get()?;
    let stub = AwsStub::start(&stack, 4)?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "stub-web-identity-token")?;
    let (topic, group, prefix) = (unique("it-irsa"), unique("it-group"), unique("it/irsa"));
    let token_file = token.to_string_lossy().to_string();
    let sts = stub.url();
    let spec = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 50\nrotate_interval_ms = 500")
        .s3(&stub.s3(), false)
        .env("KPS__S3__CREDENTIALS", "web_identity")
        .env("KPS__S3__STS_ENDPOINT", &sts)
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_ARN", "arn:aws:iam::1:role/irsa");
    let mut sink = spec.start()?;
    let mut produced = Vec::new();
    for round in 0..4 {
        produced.extend(produce(&stack, &topic, 2, 100, None, 500 + round)?);
        std::thread::sleep(Duration::from_secs(3));
    }
    let status = sink.status()?;
    let source = status["object_store"]["credentials"].as_str().unwrap_or_default().to_string();
    assert!(source.starts_with("web identity (role arn:aws:iam::1:role/irsa"), "/status: {status}");
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    let keys = stub.s3_keys()?;
    let exchanges = stub.calls("sts")?.len();
    eprintln!("4 s credentials: {exchanges} exchanges at STS, S3 requests signed with {} keys; {audit}", keys.len());
    // Requests come in bursts about 3 s apart: each burst past three quarters of the 4 s finds
    // the credentials due and renews them first.
    assert!(keys.len() >= 2 && keys.iter().all(|k| k.starts_with("STUB")), "S3 requests signed with {keys:?} over ~12 s of 4 s credentials");
    assert_eq!(exchanges, keys.len(), "one STS exchange per key used");
    Ok(())
}

#[test]
fn object_settings_reach_the_server_on_puts_and_multipart_uploads() -> TestResult {
    let stack = Stack::get()?;
    let stub = AwsStub::start(&stack, 900)?;
    let prefix = unique("it/settings");
    let key_b64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let rt = tokio::runtime::Runtime::new()?;
    for (sse, expected) in [(Sse::Aes256, "AES256"), (Sse::CustomerKey, "sse-c")] {
        let s3 = S3Config {
            access_key_id: "minioadmin".into(),
            secret_access_key: "minioadmin".into(),
            sse,
            sse_customer_key: if sse == Sse::CustomerKey { key_b64.into() } else { String::new() },
            storage_class: "STANDARD_IA".into(),
            acl: "bucket-owner-full-control".into(),
            tags: BTreeMap::from([("team".to_string(), "data".to_string()), ("pii".to_string(), "no".to_string())]),
            multipart_part_bytes: 5 * 1024 * 1024,
            // A refusal fails the test instead of being retried until the store answers.
            retry_max_attempts: 3,
            ..via(&stub)
        };
        let store = Store::open(&config(s3, &format!("{prefix}/{expected}")), Metrics::new()?)?;
        let (small, large) = (store.key("t", None, 0, 0), store.key("t", None, 0, 100));
        assert!(matches!(rt.block_on(store.upload_new(&small, Bytes::from_static(b"small")))?, Uploaded::Created { .. }));
        rt.block_on(store.upload(&large, Bytes::from(vec![7u8; 11 * 1024 * 1024])))?;
        let calls = stub.calls("s3")?;
        let ours = |c: &&Value| c["path"].as_str().is_some_and(|p| p.contains(&format!("{prefix}/{expected}/")));
        let creating: Vec<&Value> = calls
            .iter()
            .filter(ours)
            .filter(|c| (c["method"] == "PUT" && !c["path"].as_str().unwrap_or("").contains("partNumber")) || (c["method"] == "POST" && c["path"].as_str().unwrap_or("").contains("?uploads")))
            .collect();
        assert_eq!(creating.len(), 2, "{expected}: one put and one multipart start, got {creating:?}");
        for c in &creating {
            let h = &c["headers"];
            let what = format!("{expected}: {} {}", c["method"], c["path"]);
            match sse {
                Sse::CustomerKey => assert_eq!(h["x-amz-server-side-encryption-customer-algorithm"], "AES256", "{what}: {h}"),
                _ => assert_eq!(h["x-amz-server-side-encryption"], expected, "{what}: {h}"),
            }
            assert_eq!((&h["x-amz-storage-class"], &h["x-amz-acl"]), (&Value::from("STANDARD_IA"), &Value::from("bucket-owner-full-control")), "{what}: {h}");
            let tags: BTreeSet<&str> = h["x-amz-tagging"].as_str().unwrap_or("").split('&').collect();
            assert_eq!(tags, BTreeSet::from(["pii=no", "team=data"]), "{what}: {h}");
            let signed: Vec<&str> = c["signed"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            assert!(signed.contains(&"x-amz-acl"), "{what}: x-amz-acl is not signed ({signed:?}); S3 would refuse it");
        }
        if sse == Sse::CustomerKey {
            let parts: Vec<&Value> = calls.iter().filter(ours).filter(|c| c["path"].as_str().unwrap_or("").contains("partNumber")).collect();
            assert!(parts.len() >= 2 && parts.iter().all(|c| c["headers"]["x-amz-server-side-encryption-customer-key-md5"].is_string()), "sse-c parts: {parts:?}");
        }
    }
    Ok(())
}

#[test]
fn every_codec_reads_back_with_pyarrow_and_duckdb() -> TestResult {
    let stack = Stack::get()?;
    let codecs = [("zstd", 9, "ZSTD"), ("lz4", 0, "LZ4"), ("gzip", 0, "GZIP"), ("none", 0, "UNCOMPRESSED")];
    let mut runs = Vec::new();
    for (codec, level, _) in codecs {
        let (topic, group, prefix) = (unique(&format!("it-codec-{codec}")), unique("it-group"), unique(&format!("it/codec-{codec}")));
        let produced = produce(&stack, &topic, 2, 300, None, 77)?;
        runs.push((topic, group, prefix, produced, format!("compression = \"{codec}\"\ncompression_level = {level}")));
    }
    // All four sinks at once: each its own topic, group and codec.
    let mut sinks = Vec::new();
    for (topic, group, prefix, _, output) in &runs {
        sinks.push(SinkSpec::new(&stack, topic, group, prefix, "max_records = 100\nrotate_interval_ms = 500").output(output).start()?);
    }
    for ((topic, group, prefix, produced, _), ((codec, _, expected), sink)) in runs.iter().zip(codecs.iter().zip(sinks.iter_mut())) {
        let audit = drain_and_audit(&stack, sink, (group, topic, prefix), produced)?;
        let files = read_lake_duckdb(&stack, prefix)?;
        for f in &files {
            assert_eq!(f.codecs, vec![expected.to_string()], "{codec}: {} has codecs {:?}", f.key, f.codecs);
            assert_eq!(f.duckdb_rows, Some(f.num_rows), "{codec}: DuckDB counts {:?} rows in {}, pyarrow {}", f.duckdb_rows, f.key, f.num_rows);
        }
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        eprintln!("{codec}: {audit}, {bytes} bytes");
    }
    Ok(())
}

/// Confluent names under a prefix naming the topic, through a SIGKILL between uploads: every
/// offset once, each file named by the start offset it holds.
#[test]
fn confluent_names_under_a_topic_prefix_survive_a_crash() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group) = (unique("it-confluent"), unique("it-group"));
    let base = unique("it/confluent");
    let prefix = format!("{base}/${{topic}}");
    let output = "file_naming = \"confluent\"\noffset_pad_width = 10";
    let spec = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 70\nrotate_interval_ms = 400")
        .output(output)
        .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000");
    let mut produced = produce(&stack, &topic, 3, 300, None, 11)?;
    let mut sink = spec.start()?;
    wait_for(Duration::from_secs(60), "a first upload", || Ok(sink.log().contains("file uploaded").then_some(())))?;
    sink.kill9()?;
    produced.extend(produce(&stack, &topic, 3, 300, None, 12)?);
    let mut sink = spec.start()?;
    let lake = format!("{base}/{topic}");
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &lake), &produced)?;
    // Each file is named by its start offset (its first record's, which a skipped tombstone
    // may be): its rows lie between that offset and the next file's of the partition.
    let files = read_lake(&stack, &lake)?;
    let mut by_partition: BTreeMap<i32, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for f in &files {
        let p = f.rows.first().ok_or("an empty file")?.partition;
        let dir = format!("{lake}/topics/{topic}/partition={p}/{topic}+{p}+");
        let rest = f.key.strip_prefix(&dir).ok_or_else(|| format!("{} is not under {dir}", f.key))?;
        let digits = rest.strip_suffix(".snappy.parquet").ok_or_else(|| format!("{} does not end in .snappy.parquet", f.key))?;
        assert_eq!(digits.len(), 10, "{}: the offset is padded to 10 digits", f.key);
        let (lo, hi) = (f.rows.iter().map(|r| r.offset).min().unwrap_or(0), f.rows.iter().map(|r| r.offset).max().unwrap_or(0));
        by_partition.entry(p).or_default().push((digits.parse()?, lo, hi));
    }
    for (p, mut named) in by_partition {
        named.sort();
        for (i, (start, lo, hi)) in named.iter().enumerate() {
            let next = named.get(i + 1).map_or(i64::MAX, |n| n.0);
            assert!(start <= lo && hi < &next, "partition {p}: a file named {start} holds offsets {lo}..={hi}, the next file starts at {next}");
        }
    }
    eprintln!("confluent names: {audit}");
    Ok(())
}

/// `output.headers = true`: every row has its record's headers, in order, values as bytes.
#[test]
fn kafka_headers_become_a_column() -> TestResult {
    use kafka_parquet_sink::decode::frame;
    use kafka_parquet_sink::testkit::{register_schema, TasksGenerator, KEY_SCHEMA, VALUE_SCHEMA_V1};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-headers"), unique("it-group"), unique("it/headers"));
    let mut produced = produce(&stack, &topic, 1, 20, None, 5)?;
    let rt = tokio::runtime::Runtime::new()?;
    let key_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-key"), KEY_SCHEMA))?;
    let value_id = rt.block_on(register_schema(&stack.registry, &format!("{topic}-value"), VALUE_SCHEMA_V1))?;
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let mut with_headers = BTreeMap::new();
    for (i, e) in TasksGenerator::new(8, 0)?.next_events()?.into_iter().filter(|e| e.value.is_some()).take(5).enumerate() {
        let (value, key) = (frame::encode(value_id, e.value.as_deref().unwrap_or_default()), frame::encode(key_id, &e.key));
        let trace = vec![0xca, 0xfe, i as u8];
        let headers = OwnedHeaders::new()
            .insert(Header { key: "trace-id", value: Some(&trace) })
            .insert(Header::<&[u8]> { key: "null-header", value: None });
        let record = FutureRecord::to(&topic).partition(0).key(&key).payload(&value).headers(headers);
        let d = rt.block_on(producer.send(record, Duration::from_secs(10))).map_err(|(e, _)| e)?;
        with_headers.insert(d.offset, format!("cafe{i:02x}"));
        produced.push((kafka_parquet_sink::testkit::Produced { partition: d.partition, offset: d.offset }, e));
    }
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 1000\nrotate_interval_ms = 500").output("headers = true").start()?;
    drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    let mut seen = 0;
    for f in read_lake(&stack, &prefix)? {
        assert!(f.columns.iter().any(|c| c == "__kafka_headers"), "{} has no __kafka_headers: {:?}", f.key, f.columns);
        for r in &f.rows {
            let headers = r.headers.clone().ok_or_else(|| format!("row {} has a null header list", r.offset))?;
            match with_headers.get(&r.offset) {
                Some(trace) => {
                    let expected = vec![("trace-id".to_string(), Some(trace.clone())), ("null-header".to_string(), None)];
                    assert_eq!(headers, expected, "headers of offset {}", r.offset);
                    seen += 1;
                }
                None => assert!(headers.is_empty(), "offset {} was produced without headers: {headers:?}", r.offset),
            }
        }
    }
    assert_eq!(seen, with_headers.len(), "rows with headers");
    Ok(())
}
