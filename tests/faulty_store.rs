//! A store that misbehaves (`scripts/s3_faults.py` in front of the stack's S3 server):
//! - one that ignores conditional puts cannot hold a Delta table's log, and `run` says so at
//!   start-up, exit 2, naming `output.format`;
//! - one that loses answers (the put landed, the reply did not): a data file's retried
//!   conditional put meets its own bytes, which is our write landing, in both output modes;
//!   every offset is in the lake once and the sink never stops.

mod common;

use std::process::Child;
use std::time::Duration;

use common::*;

const FLUSH: &str = "max_records = 40\nrotate_interval_ms = 500";

/// `scripts/s3_faults.py` on a port of its own; stopped when dropped.
struct FaultyS3 {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl FaultyS3 {
    fn start(stack: &Stack, faults: &[&str]) -> TestResult<FaultyS3> {
        let port = free_port()?;
        let log = tempfile::NamedTempFile::new()?;
        let (listen, target) = (port.to_string(), stack.s3.trim_start_matches("http://").to_string());
        let mut args = vec!["--listen", &listen, "--target", &target];
        args.extend_from_slice(faults);
        let child = start_stub("s3_faults.py", &args, log.path())?;
        Ok(FaultyS3 { child, port, log })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The paths of the puts whose answers were lost.
    fn lost(&self) -> TestResult<Vec<String>> {
        let text = std::fs::read_to_string(self.log.path())?;
        Ok(text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter_map(|v| v["path"].as_str().map(str::to_string)).collect())
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_store_that_ignores_conditional_puts_cannot_hold_a_delta_table() -> TestResult {
    let stack = Stack::get()?;
    let faulty = FaultyS3::start(&stack, &["--ignore-conditional"])?;
    let (topic, group, prefix) = (unique("it-faulty-cond"), unique("it-group"), unique("it/faulty-cond"));
    let produced = produce(&stack, &topic, 1, 10, None, 3001)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).s3(&faulty.url(), true).output("format = \"delta\"").start()?;
    let status = wait_for(Duration::from_secs(60), "the refused start to exit", || Ok(sink.child.try_wait()?))?;
    let log = sink.log();
    assert_eq!(status.code(), Some(2), "exit status of a Delta sink on a store without put-if-absent:\n{log}");
    let want = format!("output.format: s3://datalake/{prefix} does not refuse a conditional put (If-None-Match: *)");
    assert!(log.contains(&want), "expected {want:?} in:\n{log}");

    // Files mode rides such a store (with plain puts and a warning).
    let mut files = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH).s3(&faulty.url(), true).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(60)).map_err(|e| format!("{e}\n{}", files.log()))?;
    assert!(files.terminate(Duration::from_secs(30))?.success(), "files mode exit status\n{}", files.log());
    assert!(files.log().contains("does not refuse a conditional put"), "files mode warns of the store:\n{}", files.log());
    Ok(())
}

/// One put in seven loses its answer (the put landed, the reply did not); the sink rides it in
/// `output` mode (a data file's retried conditional put finds its own bytes there) and the
/// lake holds every offset once.
fn rides_lost_answers(output: &str, table: bool) -> TestResult {
    let stack = Stack::get()?;
    let faulty = FaultyS3::start(&stack, &["--lose-every", "7"])?;
    let mode = if table { "delta" } else { "files" };
    let (topic, group, prefix) = (unique(&format!("it-faulty-{mode}")), unique("it-group"), unique(&format!("it/faulty-{mode}")));
    let partitions = 2;
    let produced = produce(&stack, &topic, partitions, 1200, None, 3003)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, FLUSH)
        .s3(&faulty.url(), true)
        .output(output)
        .tables("[table]\ncommit_interval_ms = 500\ncheckpoint_interval = 5")
        .env("KPS__S3__RETRY_MAX_BACKOFF_MS", "500")
        .start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(120)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let log = sink.log();
    assert!(!log.contains("fatal"), "the sink stopped on a lost answer:\n{log}");
    let lost = faulty.lost()?;
    let data_files = lost.iter().filter(|p| p.ends_with(".parquet")).count();
    assert!(data_files >= 1, "no data file's answer was lost ({} answers lost: {lost:?}): the test proved nothing", lost.len());
    assert!(log.contains("a put whose answer was lost had landed"), "no data file met its own object:\n{log}");
    if table {
        let dump = read_delta(&stack, &prefix, &topic, partitions)?;
        dump.exactly_once(&produced)?;
        let txn: std::collections::BTreeMap<String, Option<i64>> = ends.iter().map(|(p, e)| (p.to_string(), Some(*e))).collect();
        assert_eq!(dump.txn, txn, "txn versions after {} lost answers", lost.len());
    } else {
        audit_lake(&stack, &prefix, &produced)?.exactly_once()?;
    }
    Ok(())
}

#[test]
fn a_delta_table_rides_lost_answers() -> TestResult {
    rides_lost_answers("format = \"delta\"", true)
}

#[test]
fn files_ride_lost_answers() -> TestResult {
    rides_lost_answers("", false)
}
