//! `scripts/demo.sh`, README's first command, on the seed's pipeline: changes made in
//! PostgreSQL reach the lake through real Debezium and the sink, PostgreSQL and the lake's newest
//! image per key agree (the demo's own check, `scripts/demo_report.py`, read back with pyarrow),
//! and the time from each commit to the bucket is printed. Its own prefix and consumer group.
//!
//! Needs: the local stack and `scripts/debezium.sh up`, which `scripts/test.sh` starts.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_demo_lands_postgres_changes_and_prints_the_time_to_lake() -> TestResult {
    Stack::get()?;
    let (prefix, group) = (unique("it/demo"), unique("it-demo"));
    let out = Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .arg("30")
        .env("DEMO_PROFILE", "debug")
        .env("DEMO_PREFIX", &prefix)
        .env("DEMO_GROUP", &group)
        .env("KPS__METRICS__LISTEN", format!("127.0.0.1:{}", free_port()?))
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/demo.sh failed:\n{text}");
    // 30 inserts, 10 updates, 20 inserts after the ADD COLUMN, 6 deletes: 44 rows remain.
    for want in [
        "PostgreSQL rows of this run: 44; the lake's newest image per key: 44 with the same title",
        "rows deleted in PostgreSQL: 6; the lake's newest image a delete: 6",
        "PostgreSQL and the lake agree",
    ] {
        assert!(text.contains(want), "expected {want:?} in the demo's output:\n{text}");
    }
    let line = text.lines().find(|l| l.starts_with("time to lake")).ok_or_else(|| format!("no time-to-lake line:\n{text}"))?;
    assert!(line.contains("p50 ") && line.contains("p90 ") && line.contains("max "), "{line}");
    let inserts = text.lines().find(|l| l.trim_start().starts_with("inserts")).unwrap_or_default();
    assert_eq!(inserts.split_whitespace().nth(1), Some("50"), "insert events of this run in the lake:\n{text}");
    Ok(())
}
