//! The sink against Apache Kafka's secured listeners, as the managed clusters our users run
//! offer them (`scripts/kafka.sh start-secure`, a broker of each test's own with a throwaway CA):
//! TLS (Aiven, MSK TLS), mutual TLS (Strimzi, Aiven), SASL_SSL SCRAM-SHA-512 (MSK SCRAM,
//! Strimzi), SASL_SSL PLAIN (Confluent Cloud), SASL_SSL OAUTHBEARER with an OIDC token endpoint
//! (client credentials), SASL_PLAINTEXT PLAIN, and AWS MSK IAM (tokens signed with the
//! AWS credential chain, checked by `scripts/aws_stub.py` as MSK checks them, renewed under load).
//! Each lands every record exactly once and commits; the dead-letter producer delivers over SCRAM;
//! every refusal stops start-up with exit 2 and one line naming the key to fix.
//!
//! Needs: the local stack (registry, S3), Java and openssl (the broker and its certificates).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

const SCRAM_PASSWORD: &str = "kps-scram-secret";
const PLAIN_PASSWORD: &str = "kps-plain-secret";
const OIDC_SECRET: &str = "kps-oidc-secret";

/// Environment variables of a sink run.
type Env = Vec<(String, String)>;

/// `kafka.properties` as `KPS__KAFKA__PROPERTIES__*` variables.
fn props(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (format!("KPS__KAFKA__PROPERTIES__{}", k.replace('.', "_").to_ascii_uppercase()), v.to_string())).collect()
}

fn with_env<'a>(mut spec: SinkSpec<'a>, bootstrap: &str, env: &[(String, String)]) -> SinkSpec<'a> {
    spec = spec.env("KPS__KAFKA__BOOTSTRAP_SERVERS", bootstrap);
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    spec
}

/// Produces through the plaintext listener, runs the sink on `bootstrap` with `env` until every
/// record is committed, and checks the lake: every offset exactly once. Returns (records in,
/// rows out).
fn lands_exactly_once(stack: &Stack, name: &str, bootstrap: &str, env: &[(String, String)]) -> TestResult<(usize, usize)> {
    let topic = unique(&format!("it-sec-{name}"));
    let produced = produce(stack, &topic, 2, 150, None, 17)?;
    let (group, prefix) = (unique("it-group"), unique(&format!("it/sec-{name}")));
    let spec = with_env(SinkSpec::new(stack, &topic, &group, &prefix, "max_records = 60\nrotate_interval_ms = 1000"), bootstrap, env);
    let mut sink = spec.start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{name}: {e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "{name}: exit status\n{}", sink.log());
    let audit = audit_lake(stack, &prefix, &produced)?;
    audit.exactly_once().map_err(|e| format!("{name}: {e}"))?;
    for secret in [SCRAM_PASSWORD, PLAIN_PASSWORD, OIDC_SECRET] {
        assert!(!sink.log().contains(secret), "{name}: the log shows a secret");
    }
    let tombstones = produced.iter().filter(|(_, e)| e.op == kafka_parquet_sink::testkit::Op::Tombstone).count();
    eprintln!("{name}: {} records in ({tombstones} tombstones), {} rows out, {} files, committed {ends:?}", produced.len(), audit.records, audit.files);
    Ok((produced.len(), audit.records))
}

#[test]
fn every_secured_listener_lands_each_record_once() -> TestResult {
    let broker = SecureBroker::start()?;
    let stack = broker.plaintext(&Stack::get()?);
    let ca = broker.tls("ca.pem");
    let oidc = OidcStub::start("kps", OIDC_SECRET)?;
    let token_url = oidc.token_url();
    let cases: Vec<(&str, String, Env)> = vec![
        ("ssl", broker.listener("SSL")?, props(&[("security.protocol", "ssl"), ("ssl.ca.location", &ca)])),
        (
            "mtls",
            broker.listener("MTLS")?,
            props(&[
                ("security.protocol", "ssl"),
                ("ssl.ca.location", &ca),
                ("ssl.certificate.location", &broker.tls("client.pem")),
                ("ssl.key.location", &broker.tls("client.key")),
            ]),
        ),
        (
            "scram",
            broker.listener("SCRAM")?,
            props(&[
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", &ca),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "kps"),
                ("sasl.password", SCRAM_PASSWORD),
            ]),
        ),
        (
            "oidc",
            broker.listener("OAUTH")?,
            props(&[
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", &ca),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.oauthbearer.method", "oidc"),
                ("sasl.oauthbearer.client.id", "kps"),
                ("sasl.oauthbearer.client.secret", OIDC_SECRET),
                ("sasl.oauthbearer.token.endpoint.url", &token_url),
            ]),
        ),
        (
            "sasl_ssl-plain",
            broker.listener("SCRAM")?,
            props(&[
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", &ca),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "kps"),
                ("sasl.password", PLAIN_PASSWORD),
            ]),
        ),
        (
            "plain",
            broker.listener("PLAIN")?,
            props(&[("security.protocol", "sasl_plaintext"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "kps"), ("sasl.password", PLAIN_PASSWORD)]),
        ),
    ];
    let mut figures = BTreeMap::new();
    for (name, bootstrap, env) in &cases {
        figures.insert(*name, lands_exactly_once(&stack, name, bootstrap, env)?);
    }
    assert!(oidc.calls()?.iter().any(|c| c["ok"] == true && c["client"] == "kps"), "the OIDC endpoint issued no token: {:?}", oidc.calls()?);
    eprintln!("records in and rows out per listener: {figures:?}");
    Ok(())
}

/// Bad records go to the dead-letter topic over the same SASL_SSL listener as the consumer.
#[test]
fn the_dead_letter_producer_delivers_over_scram() -> TestResult {
    let broker = SecureBroker::start()?;
    let stack = broker.plaintext(&Stack::get()?);
    let (topic, dlq) = (unique("it-sec-dlq-src"), unique("it-sec-dlq"));
    let mut produced = produce(&stack, &topic, 1, 40, None, 5)?;
    let raw: FutureProducer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).create()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut bad = Vec::new();
    for i in 0..3 {
        let value = format!("not avro {i}");
        let d = rt.block_on(raw.send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&value), Duration::from_secs(10))).map_err(|(e, _)| e)?;
        bad.push((d.offset, value));
    }
    rt.block_on(raw.send(FutureRecord::<(), _>::to(&dlq).partition(0).payload("create"), Duration::from_secs(10))).map_err(|(e, _)| e)?;
    produced.extend(produce(&stack, &topic, 1, 40, None, 6)?);
    let env = props(&[
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", &broker.tls("ca.pem")),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "kps"),
        ("sasl.password", SCRAM_PASSWORD),
    ]);
    let (group, prefix) = (unique("it-group"), unique("it/sec-dlq"));
    let spec = with_env(SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 30\nrotate_interval_ms = 1000"), &broker.listener("SCRAM")?, &env)
        .tables(&format!("[errors]\ntolerance = \"all\"\ndead_letter_topic = {dlq:?}"));
    let mut sink = spec.start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)).chain(bad.iter().map(|(o, _)| (0, *o))));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    audit_lake(&stack, &prefix, &produced)?.exactly_once()?;

    // Read by assignment (no group to join) up to the high watermark: every record the topic holds.
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &stack.bootstrap).set("group.id", unique("it-dlq-reader")).create()?;
    let (_, high) = consumer.fetch_watermarks(&dlq, 0, Duration::from_secs(10))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (got.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = std::iter::once("create".to_string()).chain(bad.iter().map(|(_, v)| v.clone())).collect();
    assert_eq!(got, expected, "dead-letter topic {dlq} (high watermark {high}): the marker record, then each bad record once\nsink log:\n{}", sink.log());
    Ok(())
}

/// Runs the sink (or `doctor`) with `env` and expects exit 2 (1 for doctor) with `want` in the output.
fn refused(stack: &Stack, bootstrap: &str, env: &[(String, String)], want: &str) -> TestResult<String> {
    let (topic, group, prefix) = (unique("it-sec-refused"), unique("it-refused"), unique("it/refused"));
    let spec = with_env(SinkSpec::new(stack, &topic, &group, &prefix, "max_records = 10"), bootstrap, env);
    let mut sink = spec.start()?;
    let status = wait_for(Duration::from_secs(60), "the refused start to exit", || Ok(sink.child.try_wait()?))?;
    let log = sink.log();
    assert_eq!(status.code(), Some(2), "exit status for {want:?}:\n{log}");
    let line = log.lines().find(|l| l.starts_with("  - ")).unwrap_or_default().to_string();
    assert!(line.contains(want), "start-up message: expected {want:?} in\n{line}\nlog:\n{log}");
    for secret in ["kps-wrong-secret", SCRAM_PASSWORD] {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
    Ok(line)
}

#[test]
fn each_refusal_stops_start_up_naming_the_key() -> TestResult {
    let broker = SecureBroker::start()?;
    let stack = broker.plaintext(&Stack::get()?);
    let ca = broker.tls("ca.pem");
    let oidc = OidcStub::start("kps", OIDC_SECRET)?;
    let tls = |ca: &str| props(&[("security.protocol", "ssl"), ("ssl.ca.location", ca)]);
    let scram = |password: &str| {
        props(&[("security.protocol", "sasl_ssl"), ("ssl.ca.location", &ca), ("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.username", "kps"), ("sasl.password", password)])
    };
    let oidc_client = |id: &str, secret: &str| {
        props(&[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", &ca),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", id),
            ("sasl.oauthbearer.client.secret", secret),
            ("sasl.oauthbearer.token.endpoint.url", &oidc.token_url()),
        ])
    };
    let cases = [
        ("unknown CA", broker.listener("SSL")?, tls(&broker.tls("other-ca.pem")), "kafka.properties.ssl.ca.location: the broker's certificate (issuer \"kps test CA\") is not signed by a CA in ssl.ca.location"),
        ("hostname mismatch", broker.listener("BADHOST")?, tls(&ca), "kafka.bootstrap_servers: the broker's certificate is for kafka.invalid"),
        ("expired certificate", broker.listener("EXPIRED")?, tls(&ca), "kafka.bootstrap_servers: the broker at"),
        ("no client certificate", broker.listener("MTLS")?, tls(&ca), "kafka.properties.ssl.certificate.location: the broker requires a client certificate"),
        ("wrong SCRAM password", broker.listener("SCRAM")?, scram("kps-wrong-secret"), "kafka.properties.sasl.password: the broker refused user \"kps\" with SCRAM-SHA-512"),
        (
            "wrong PLAIN password",
            broker.listener("PLAIN")?,
            props(&[("security.protocol", "sasl_plaintext"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "kps"), ("sasl.password", "kps-wrong-secret")]),
            "kafka.properties.sasl.password: the broker refused user \"kps\" with PLAIN",
        ),
        ("expired OIDC token", broker.listener("OAUTH")?, oidc_client("expired", "any"), "kafka.properties.sasl.oauthbearer.token.endpoint.url: the token from"),
        ("OIDC token refused by the broker", broker.listener("OAUTH")?, oidc_client("noscope", "any"), "kafka.properties.sasl.oauthbearer.token.endpoint.url: the broker refused the token from"),
        ("wrong OIDC client secret", broker.listener("OAUTH")?, oidc_client("kps", "kps-wrong-secret"), "kafka.properties.sasl.oauthbearer.client.secret: no token from"),
        ("TLS to a plaintext listener", stack.bootstrap.clone(), tls(&ca), "kafka.properties.security.protocol: \"ssl\" does not match"),
    ];
    for (what, bootstrap, env, want) in &cases {
        let line = refused(&stack, bootstrap, env, want).map_err(|e| format!("{what}: {e}"))?;
        eprintln!("{what}: {line}");
    }
    assert!(oidc.calls()?.iter().any(|c| c["ok"] == false), "the OIDC endpoint refused nothing: {:?}", oidc.calls()?);

    // doctor says the same at its Kafka checkpoint.
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("doctor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbootstrap_servers = {:?}\n[schema_registry]\nurl = {:?}\n[s3]\nendpoint = {:?}\naccess_key_id = \"minioadmin\"\nsecret_access_key = \"minioadmin\"\nallow_http = true\n",
            broker.listener("SCRAM")?,
            stack.registry,
            stack.s3
        ),
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink")).args(["doctor", "--config"]).arg(&cfg).envs(scram("kps-wrong-secret")).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "doctor exit status:\n{text}");
    let line = text.lines().find(|l| l.contains("broker reachable")).unwrap_or_default();
    assert!(line.starts_with("❌") && line.contains("kafka.properties.sasl.password: the broker refused user \"kps\""), "doctor's Kafka checkpoint:\n{text}");
    assert!(!text.contains("kps-wrong-secret"), "doctor shows the password:\n{text}");
    Ok(())
}

/// AWS MSK IAM: the sink signs tokens with the AWS credential chain (container credentials here,
/// the same chain its S3 client uses), the broker's verifier checks each one (host, region,
/// action, expiry, signature with the handed-out keys), the broker re-authenticates every 10 s,
/// and tokens of 60 s are renewed while records keep coming; nothing is lost or doubled.
#[test]
fn msk_iam_tokens_are_verified_and_renewed_under_load() -> TestResult {
    let broker = SecureBroker::start()?;
    let stack = broker.plaintext(&Stack::get()?);
    let stub = AwsStub::start(&stack, 900)?;
    broker.set_msk_verifier(&format!("{}/msk-verify", stub.url()))?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("eks-token");
    std::fs::write(&token_file, "stub-container-token")?;
    let chain = |region: &str| -> Vec<(String, String)> {
        let mut env = props(&[("ssl.ca.location", &broker.tls("ca.pem"))]);
        for (k, v) in [
            ("KPS__KAFKA__AUTH", "aws_msk_iam"),
            ("KPS__KAFKA__AWS_REGION", region),
            ("KPS__KAFKA__TOKEN_LIFETIME_SECS", "60"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("{}/container", stub.url())),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file.to_string_lossy()),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        env
    };
    let msk = broker.listener("MSKIAM")?;

    // Signed for another region: the verifier refuses the token, start-up names kafka.auth.
    let (topic, group, prefix) = (unique("it-msk-refused"), unique("it-group"), unique("it/msk-refused"));
    let spec = with_env(SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 10").s3(&stub.s3(), false), &msk, &chain("us-east-2"));
    let mut sink = spec.start()?;
    let status = wait_for(Duration::from_secs(60), "the refused start to exit", || Ok(sink.child.try_wait()?))?;
    assert_eq!(status.code(), Some(2), "exit status with a token for the wrong region:\n{}", sink.log());
    assert!(sink.log().contains("  - kafka.auth: the broker refused the MSK IAM token (AWS MSK IAM, region us-east-2"), "message:\n{}", sink.log());
    let refusals = stub.calls("msk")?;
    assert!(refusals.iter().any(|c| c["ok"] == false && c["why"].as_str().is_some_and(|w| w.contains("kafka.us-east-2.amazonaws.com"))), "verifier: {refusals:?}");

    // The right region, under load for longer than a token lives.
    let topic = unique("it-msk");
    let mut produced = produce(&stack, &topic, 2, 50, None, 3)?;
    let (group, prefix) = (unique("it-group"), unique("it/msk"));
    let spec = with_env(SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 200\nrotate_interval_ms = 2000").s3(&stub.s3(), false), &msk, &chain("eu-west-1"));
    let mut sink = spec.start()?;
    let load = BackgroundProducer::start(&stack, &topic, 2, 20, Duration::from_millis(250));
    std::thread::sleep(Duration::from_secs(75));
    produced.extend(load.stop()?);
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let audit = audit_lake(&stack, &prefix, &produced)?;
    audit.exactly_once()?;
    let verified: Vec<serde_json::Value> = stub.calls("msk")?.into_iter().skip(refusals.len()).collect();
    let accepted: Vec<&serde_json::Value> = verified.iter().filter(|c| c["ok"] == true).collect();
    let tokens: std::collections::BTreeSet<&str> = accepted.iter().filter_map(|c| c["token"].as_str()).collect();
    assert!(verified.iter().all(|c| c["ok"] == true), "the verifier refused a token of the right region: {verified:?}");
    assert!(tokens.len() >= 2, "tokens of 60 s over 75 s of load: {} distinct accepted ({} checks)", tokens.len(), accepted.len());
    assert!(accepted.iter().all(|c| c["key"].as_str().is_some_and(|k| k.starts_with("STUB"))), "signed with the container credentials: {accepted:?}");
    let s3_keys = stub.s3_keys()?;
    assert!(!s3_keys.is_empty() && s3_keys.iter().all(|k| k.starts_with("STUB")), "the store signs with the same chain: {s3_keys:?}");
    eprintln!("msk iam: {} records in, {} rows out, {} token checks, {} distinct tokens", produced.len(), audit.records, accepted.len(), tokens.len());
    Ok(())
}
