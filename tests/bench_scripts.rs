//! The benchmark scripts run from a fresh checkout and their sinks land every record, with and
//! without bad records among them: `scripts/bench-e2e.sh`, `bench-peers.sh` and the others on a
//! few thousand events, debug build, one round. (The figures in the README come from the release
//! build on 1,000,000 events; this only keeps the scripts working.)

mod common;

use std::process::Command;

use common::*;

#[test]
fn bench_e2e_script_lands_every_record_with_the_sink_and_the_peer() -> TestResult {
    let run = bench_e2e(&[])?;
    let expected = run.count - run.tombstones;
    for who in ["sink", "peer", "table"] {
        let l = run.lake(who)?;
        assert_eq!(l["rows"].as_u64(), Some(expected), "{who}: rows in the lake ({} records, {} tombstones):\n{}", run.count, run.tombstones, run.stdout);
        assert_eq!(l["distinct_offsets"].as_u64(), Some(expected), "{who}: distinct offsets:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("records per CPU second"), "no comparison line:\n{}", run.stdout);
    assert!(run.stdout.contains("table / files: ") && run.stdout.contains("duration p50 "), "no table line:\n{}", run.stdout);
    Ok(())
}

/// With `BAD_PERCENT`, both sink runs route the bad records to the dead-letter topic and land
/// every good one.
#[test]
fn bench_e2e_script_with_bad_records_lands_the_good_ones_and_dead_letters_the_rest() -> TestResult {
    let run = bench_e2e(&[("BAD_PERCENT", "10")])?;
    let bad = run.produced("bad");
    assert!(bad > 0, "no bad records produced:\n{}", run.stdout);
    let expected = run.count - run.tombstones - bad;
    for who in ["sink", "table"] {
        let l = run.lake(who)?;
        assert_eq!(l["rows"].as_u64(), Some(expected), "{who}: rows in the lake ({} records, {} tombstones, {bad} bad):\n{}", run.count, run.tombstones, run.stdout);
        assert_eq!(l["distinct_offsets"].as_u64(), Some(expected), "{who}: distinct offsets:\n{}", run.stdout);
    }
    // Two sink runs (files, table), each routing every bad record once.
    let routed = format!("{bad} bad records routed to ");
    let line = run.stdout.lines().find(|l| l.contains(&routed)).ok_or(format!("no dead-letter line:\n{}", run.stdout))?;
    assert!(line.ends_with(&format!("({} in it after 2 runs)", 2 * bad)), "dead-letter topic after two runs: {line}");
    assert!(run.stdout.contains("the same events without the bad ones") && run.stdout.contains("x of that"), "no clean-rate line:\n{}", run.stdout);
    Ok(())
}

struct E2eRun {
    stdout: String,
    produced: String,
    count: u64,
    tombstones: u64,
}

impl E2eRun {
    /// The lake line of `who` ("sink", "table", "peer") as JSON.
    fn lake(&self, who: &str) -> TestResult<serde_json::Value> {
        let line = self.stdout.lines().find(|l| l.starts_with(&format!("{who} lake: "))).ok_or(format!("no {who} lake line in:\n{}", self.stdout))?;
        let json = line[who.len() + 7..].split(" (expected").next().unwrap_or_default();
        Ok(serde_json::from_str(json)?)
    }

    /// How many records of `kind` ("tombstone", "bad", ...) the generator says it produced.
    fn produced(&self, kind: &str) -> u64 {
        self.produced.split(&format!("\"{kind}\": ")).nth(1).and_then(|r| r.split([',', '}']).next()).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }
}

/// `scripts/bench-e2e.sh` on a few thousand events, debug build, one round, with `envs` on top.
fn bench_e2e(envs: &[(&str, &str)]) -> TestResult<E2eRun> {
    let _stack = Stack::get()?; // started by scripts/test.sh, or here
    let out_dir = tempfile::tempdir()?;
    let out = Command::new("bash")
        .arg(root().join("scripts/bench-e2e.sh"))
        .envs([("COUNT", "3000"), ("PARTITIONS", "2"), ("FLUSH", "1000"), ("ROUNDS", "1"), ("PROFILE", "debug")])
        .envs(envs.iter().copied())
        .env("OUT", out_dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-e2e.sh failed:\n{stdout}\n{stderr}");
    let produced = std::fs::read_to_string(out_dir.path().join("produce.log"))?;
    // "produced N records to ...": the generator may add the tombstone of a final delete.
    let count: u64 = produced.split_whitespace().nth(1).and_then(|n| n.parse().ok()).ok_or(format!("no count in {produced}"))?;
    let mut run = E2eRun { stdout, produced, count, tombstones: 0 };
    run.tombstones = run.produced("tombstone");
    Ok(run)
}

/// `scripts/bench-codecs.sh` lands every record once with each codec (it checks the lake's rows
/// and distinct offsets itself and fails otherwise) and prints a row per codec.
#[test]
fn bench_codecs_script_lands_every_record_with_each_codec() -> TestResult {
    let _stack = Stack::get()?;
    let out_dir = tempfile::tempdir()?;
    let out = Command::new("bash")
        .arg(root().join("scripts/bench-codecs.sh"))
        .envs([("COUNT", "2000"), ("PARTITIONS", "2"), ("FLUSH", "500"), ("PROFILE", "debug")])
        .env("OUT", out_dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench-codecs.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let codecs: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("| ")).filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(codecs, ["codec", "snappy", "zstd", "zstd", "lz4", "gzip", "none"], "rows:\n{stdout}");
    Ok(())
}

/// `scripts/bench-table.sh` (table mode under a steady stream) runs at a small size: its reader
/// sees every row produced, once, and it prints a row of figures.
#[test]
fn bench_table_script_sees_every_row_in_the_table() -> TestResult {
    let _stack = Stack::get()?;
    let out_dir = tempfile::tempdir()?;
    let out = Command::new("bash")
        .arg(root().join("scripts/bench-table.sh"))
        .envs([("SECONDS_FIRST", "8"), ("COMMITS_MS", "1000"), ("RATE", "200"), ("PARTITIONS", "2"), ("PROFILE", "debug")])
        .env("OUT", out_dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench-table.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let row = stdout.lines().find(|l| l.starts_with("| 1000 ms |")).ok_or(format!("no row for the 1 s interval:\n{stdout}"))?;
    let seen = row.split('|').nth(4).unwrap_or_default().trim();
    let (got, want) = seen.split_once(" / ").ok_or(format!("no 'seen / produced' in {row}"))?;
    assert_eq!(got, want, "rows the reader saw against rows produced: {row}");
    Ok(())
}

/// `scripts/bench-peers.sh` runs every sink it compares at a small size (ours in file and table
/// mode, Apache Iceberg's Kafka Connect sink in a real Connect worker, the Python peer), and each
/// lake, read back by its own reader (pyarrow, deltalake, pyiceberg), holds every record once.
#[test]
fn bench_peers_script_lands_every_record_with_each_sink() -> TestResult {
    let _stack = Stack::get()?;
    let out_dir = tempfile::tempdir()?;
    let out = Command::new("bash")
        .arg(root().join("scripts/bench-peers.sh"))
        .envs([("COUNT", "3000"), ("PARTITIONS", "2"), ("FLUSH", "1000"), ("ROUNDS", "1"), ("PROFILE", "debug")])
        .env("OUT", out_dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench-peers.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expected: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("expected in every lake: rows = distinct offsets = "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or(format!("no expected line:\n{stdout}"))?;
    let mut sinks = Vec::new();
    for row in stdout.lines().filter(|l| l.starts_with("| ") && l.ends_with("} |")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let sink = cells[0].trim_start_matches("| ").to_string();
        let json = cells.last().map(|c| c.trim_end_matches(" |")).unwrap_or_default();
        let lake: serde_json::Value = serde_json::from_str(json)?;
        assert_eq!((lake["rows"].as_u64(), lake["distinct_offsets"].as_u64()), (Some(expected), Some(expected)), "{sink}: (rows, distinct offsets) read back against {expected} records:\n{stdout}");
        sinks.push(sink);
    }
    assert_eq!(
        sinks,
        ["kafka-parquet-sink, files", "kafka-parquet-sink, Delta table", "Iceberg Kafka Connect sink 1.12.0", "Python peer (fastavro + pyarrow, Snappy)"],
        "the rows of the table:\n{stdout}"
    );
    Ok(())
}
