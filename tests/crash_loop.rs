//! Exactly once under crashes: the sink is killed with SIGKILL at random moments while records
//! keep arriving (while consuming, encoding, uploading, between upload and commit), restarted
//! each time, and at the end every produced offset is in the lake exactly once. Every other kill
//! comes the moment an upload is logged, to land between an upload and its commit.
//!
//! Broker: Apache Kafka, the local stack's (`scripts/stack.sh up`). A killed member never leaves
//! the group; Kafka's group coordinator hands its partitions to the next member once its session
//! times out, which is the path under test. Registry and S3: the local stack.
//!
//! `KPS_KILL_CYCLES` sets the number of kills (default 20).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn random_kill9_under_load_loses_and_duplicates_nothing() -> TestResult {
    let cycles: usize = std::env::var("KPS_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    kill_loop(cycles, &unique("it/kill"))
}

/// The same loop on a local directory (`output.url = "file:///..."`): conditional puts are the
/// filesystem's create-new (a hard link that fails on an existing name), clean-up deletes files.
#[test]
fn random_kill9_on_a_local_directory_loses_and_duplicates_nothing() -> TestResult {
    let cycles: usize = std::env::var("KPS_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20) / 2;
    let dir = tempfile::tempdir()?;
    kill_loop(cycles.max(4), &format!("file://{}/lake", dir.path().display()))
}

fn kill_loop(cycles: usize, prefix: &str) -> TestResult {
    let (topic, group, prefix) = (unique("it-kill"), unique("it-group"), prefix.to_string());
    let partitions = 4;
    let stack = Stack::get()?;
    // Small files and a short rotation: flushes (size and time) happen all the time, so kills
    // land in every phase of one.
    let flush = "max_records = 150\nrotate_interval_ms = 700";
    // Kafka refuses sessions under 6 s (group.min.session.timeout.ms): a killed member's
    // partitions move after that long.
    let spec = || {
        SinkSpec::new(&stack, &topic, &group, &prefix, flush)
            .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
    };

    let producer = BackgroundProducer::start(&stack, &topic, partitions, 120, Duration::from_millis(50));
    let (mut cleanups, mut uploads, mut uncommitted_uploads) = (0, 0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut sink = spec().start()?;
        // Kill it somewhere in its work; on odd cycles right after an upload is logged, before
        // (or while) its offset is committed.
        kill_somewhere(&mut sink, cycle, "file uploaded")?;
        let log = sink.log();
        cleanups += log.matches("removed files uploaded but never committed").count();
        uploads += log.matches("file uploaded").count();
        // Did this kill leave an uploaded file whose offsets are not committed?
        let committed = committed(&stack.bootstrap, &group, &topic, partitions)?;
        let last = last_uploads(&log);
        if last.iter().any(|(p, start)| committed.get(p).copied().flatten().unwrap_or(0) <= *start) {
            uncommitted_uploads += 1;
        }
    }
    let produced = producer.stop()?;

    // A last run drains everything, then stops cleanly; the audit fails on any lost or
    // duplicated offset.
    let mut sink = spec().start()?;
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    eprintln!(
        "kill loop on {prefix}: {cycles} kills in {:.0}s, {uploads} uploads before kills, {uncommitted_uploads} kills left an upload uncommitted, {cleanups} clean-ups of uncommitted files; {audit}",
        started.elapsed().as_secs_f64()
    );
    assert!(uploads > 0, "no upload happened between kills: the loop tested nothing");
    Ok(())
}

/// The start offset of the last file each partition uploaded, from the "file uploaded" lines.
fn last_uploads(log: &str) -> std::collections::BTreeMap<i32, i64> {
    let mut last = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("file uploaded")) {
        let Some(key) = line.split("key=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let partition = key.split("partition=").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse::<i32>().ok());
        if let (Some(p), Some(start)) = (partition, kafka_parquet_sink::store::start_offset_of(key)) {
            last.insert(p, start);
        }
    }
    last
}
