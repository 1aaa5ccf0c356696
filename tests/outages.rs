//! Dependencies away for a while (`KPS_OUTAGE_SECS`, default 30 s): the S3 server, the schema
//! registry, the broker. The sink keeps running, retries with capped backoff (counted in
//! `kps_retries_total`, logged), reports the outage in `kps_dependency_up` and `/readyz`, commits
//! nothing past unwritten data, and catches up afterwards with every offset once.
//!
//! S3 and registry: the local stack behind a TCP forwarder the test closes and reopens (the sink
//! sees resets, then refused connections, as from a stopped server that comes back with its
//! data). Broker: an Apache Kafka broker of the test's own (`scripts/kafka.sh`, so that stopping
//! it leaves the shared one to the other tests), stopped and started again on its log directory.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn outage() -> Duration {
    Duration::from_secs(std::env::var("KPS_OUTAGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30))
}

fn spec<'a>(stack: &'a Stack, topic: &'a str, group: &'a str, prefix: &'a str) -> SinkSpec<'a> {
    SinkSpec::new(stack, topic, group, prefix, "max_records = 100\nrotate_interval_ms = 1000")
        .env("KPS__S3__RETRY_MAX_BACKOFF_MS", "2000")
        .env("KPS__SCHEMA_REGISTRY__RETRY_MAX_BACKOFF_MS", "2000")
        .env("KPS__SCHEMA_REGISTRY__TIMEOUT_MS", "2000")
}

fn dependency_up(sink: &SinkProcess, dependency: &str) -> Option<f64> {
    let text = sink.metrics();
    text.contains("kps_dependency_up").then(|| metric_sum(&text, "kps_dependency_up", &[("dependency", dependency)]))
}

/// During the outage: the process runs, the dependency is reported down, `/readyz` says why,
/// retries are counted, and no commit moves past `frozen`.
fn ride_out(
    sink: &mut SinkProcess,
    stack: &Stack,
    names: (&str, &str),
    frozen: &BTreeMap<i32, Option<i64>>,
    dependency: &str,
) -> TestResult {
    let (group, topic) = names;
    let started = Instant::now();
    wait_for(Duration::from_secs(60), &format!("{dependency} to be reported down"), || {
        Ok((dependency_up(sink, dependency) == Some(0.0)).then_some(()))
    })?;
    let (code, body) = sink.http("/readyz");
    assert_eq!(code, 503, "/readyz during the {dependency} outage: {body}");
    assert!(body.contains(dependency), "/readyz should name {dependency}: {body}");
    while started.elapsed() < outage() {
        std::thread::sleep(Duration::from_secs(1));
        assert!(sink.child.try_wait()?.is_none(), "the sink exited during the {dependency} outage");
    }
    if dependency != "kafka" {
        let now = committed(&stack.bootstrap, group, topic, frozen.len() as i32)?;
        assert_eq!(&now, frozen, "committed offsets moved during the {dependency} outage");
        let retries = sink.metric_sum("kps_retries_total", &[]);
        assert!(retries >= 3.0, "retries during a {}s {dependency} outage: {retries}", outage().as_secs());
    }
    Ok(())
}

fn recovered(sink: &SinkProcess, dependency: &str) -> TestResult {
    wait_for(Duration::from_secs(60), &format!("{dependency} to be reported up and /readyz to answer 200"), || {
        Ok((dependency_up(sink, dependency) == Some(1.0) && sink.http("/readyz").0 == 200).then_some(()))
    })
}

#[test]
fn s3_outage_pauses_uploads_and_commits_then_catches_up() -> TestResult {
    let real = Stack::get()?;
    let s3 = Proxy::start(&real.s3)?;
    let stack = Stack { s3: s3.url(), ..real.clone() };
    let (topic, group, prefix) = (unique("it-s3out"), unique("it-group"), unique("it/s3out"));
    let mut produced = produce(&real, &topic, 2, 200, None, 41)?;
    let mut sink = spec(&stack, &topic, &group, &prefix).start()?;
    wait_caught_up(&real, &group, &topic, Duration::from_secs(60))?;

    s3.down()?;
    let frozen = committed(&real.bootstrap, &group, &topic, 2)?;
    produced.extend(produce(&real, &topic, 2, 300, None, 42)?);
    ride_out(&mut sink, &real, (&group, &topic), &frozen, "object_store")?;
    assert!(sink.log().contains("object store request failed, retrying"), "retries are not logged");
    s3.up()?;

    recovered(&sink, "object_store")?;
    drain_and_audit(&real, &mut sink, (&group, &topic, &prefix), &produced)?;
    Ok(())
}

#[test]
fn registry_outage_waits_for_the_schema_then_catches_up() -> TestResult {
    let real = Stack::get()?;
    let registry = Proxy::start(&real.registry)?;
    let stack = Stack { registry: registry.url(), ..real.clone() };
    let (topic, group, prefix) = (unique("it-regout"), unique("it-group"), unique("it/regout"));
    tokio::runtime::Runtime::new()?.block_on(kafka_parquet_sink::testkit::ensure_topic(&real.bootstrap, &topic, 2))?;
    let mut sink = spec(&stack, &topic, &group, &prefix).start()?;
    wait_for(Duration::from_secs(60), "the sink to be ready", || Ok((sink.http("/readyz").0 == 200).then_some(())))?;

    // The sink has no schema cached yet: the first records need the registry, which is away.
    registry.down()?;
    let produced = produce(&real, &topic, 2, 300, None, 43)?;
    let frozen = committed(&real.bootstrap, &group, &topic, 2)?;
    ride_out(&mut sink, &real, (&group, &topic), &frozen, "schema_registry")?;
    assert!(sink.log().contains("registry request failed, retrying"), "retries are not logged");
    registry.up()?;

    recovered(&sink, "schema_registry")?;
    drain_and_audit(&real, &mut sink, (&group, &topic, &prefix), &produced)?;
    Ok(())
}

#[test]
fn broker_outage_is_ridden_out_and_nothing_is_lost() -> TestResult {
    let (topic, group, prefix) = (unique("it-kout"), unique("it-group"), unique("it/kout"));
    let broker = Broker::start()?;
    let stack = Stack { bootstrap: broker.bootstrap(), ..Stack::get()? };
    let mut produced = produce(&stack, &topic, 2, 200, None, 44)?;
    // Long files: the broker goes away while they are open, and their time flush (upload, then
    // a commit that fails until the broker is back) falls in the outage.
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 100000\nrotate_interval_ms = 4000")
        .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "45000")
        .start()?;
    wait_for(Duration::from_secs(60), "the sink to consume every record", || {
        Ok((sink.metric_sum("kps_records_consumed_total", &[]) as usize >= produced.len()).then_some(()))
    })?;

    broker.stop()?;
    let frozen = BTreeMap::new();
    ride_out(&mut sink, &stack, (&group, &topic), &frozen, "kafka")?;
    broker.start_again()?;

    recovered(&sink, "kafka")?;
    produced.extend(produce(&stack, &topic, 2, 200, None, 45)?);
    drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    Ok(())
}
