//! `output.partitioner = "time"`: each file lands under the hour of its records' time (in the
//! configured zone), a flush that spans an hour boundary writes a file per hour, and a crash in
//! the middle still leaves every offset exactly once across all the hour directories.
//!
//! Broker, registry and S3: the local stack (Apache Kafka, whose coordinator expires the killed
//! member before the restart).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const STEP_MS: i64 = 15_000;
const OFFSET_MS: i64 = 2 * 3_600_000;

/// The records' first Kafka timestamp, 00:50 UTC two days ago, and that day as `dt` (at +02:00
/// it is 02:50 the same day). Relative to now: a fixed date drifts past the broker's retention
/// (7 days), and the broker deletes the test's records under it.
fn first() -> TestResult<(i64, String)> {
    const DAY_MS: i64 = 86_400_000;
    let ms = (chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS) - 2) * DAY_MS + 50 * 60_000;
    let day = chrono::DateTime::from_timestamp_millis(ms).ok_or(format!("no date at {ms} ms"))?;
    Ok((ms, day.format("%Y-%m-%d").to_string()))
}

#[test]
fn files_land_under_their_records_hour_exactly_once_across_a_crash() -> TestResult {
    let (topic, group, prefix) = (unique("it-time"), unique("it-group"), unique("it/time"));
    let stack = Stack::get()?;
    let (first_ms, dt) = first()?;
    // 600 records, 15 s apart: two and a half hours, from 00:50 UTC (02:50 at +02:00).
    let produced = produce_stamped(&stack, &topic, 2, 600, 111, (first_ms, STEP_MS))?;
    let spec = || {
        SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 70\nrotate_interval_ms = 1000")
            .output("partitioner = \"time\"\npath_format = \"dt={YYYY}-{MM}-{DD}/hr={HH}\"\ntimezone = \"+02:00\"")
            .env("KPS__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("KPS__KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
    };
    let mut first = spec().start()?;
    wait_for(Duration::from_secs(60), "the first run to upload a few files", || {
        Ok((first.metric_sum("kps_files_uploaded_total", &[]) >= 3.0).then_some(()))
    })?;
    first.kill9()?;

    let mut second = spec().start()?;
    let audit = drain_and_audit(&stack, &mut second, (&group, &topic, &prefix), &produced)?;

    let mut hours = BTreeSet::new();
    for f in read_lake(&stack, &prefix)? {
        for r in &f.rows {
            let ts = r.timestamp_ms.ok_or_else(|| format!("row {}/{} without a Kafka timestamp", r.partition, r.offset))?;
            let hour = (ts + OFFSET_MS).div_euclid(3_600_000).rem_euclid(24);
            assert_row_under(&f, r, &topic, &format!("dt={dt}/hr={hour:02}"), &format!("stamped {ts}"));
            hours.insert(hour);
        }
    }
    assert_eq!(hours, BTreeSet::from([2, 3, 4, 5]), "hours covered at +02:00");
    eprintln!("time partitioner: {audit}");
    Ok(())
}

/// The time from a field of the value (`source.ts_ms`, the commit time in PostgreSQL) in a named
/// zone: the generator's events are from 2026-01-01T00:00Z, so every file is under
/// `dt=2026-01-01/hr=01` in Europe/Berlin (+01:00 in winter), not under today's Kafka timestamps.
#[test]
fn the_time_can_come_from_source_ts_ms_in_a_named_zone() -> TestResult {
    let (topic, group, prefix) = (unique("it-time-field"), unique("it-group"), unique("it/timefield"));
    let stack = Stack::get()?;
    let produced = produce(&stack, &topic, 2, 200, None, 5)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 80\nrotate_interval_ms = 1000")
        .output("partitioner = \"time\"\ntimestamp_field = \"source.ts_ms\"\ntimezone = \"Europe/Berlin\"\npath_format = \"dt={YYYY}-{MM}-{DD}/hr={HH}\"")
        .start()?;
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &prefix), &produced)?;
    for f in read_lake(&stack, &prefix)? {
        for r in &f.rows {
            let ts = r.source_ts_ms.ok_or_else(|| format!("row {}/{} without source.ts_ms", r.partition, r.offset))?;
            let hour = (ts + 3_600_000).div_euclid(3_600_000).rem_euclid(24);
            assert_row_under(&f, r, &topic, &format!("dt=2026-01-01/hr={hour:02}"), &format!("source.ts_ms {ts}"));
        }
    }
    eprintln!("time partitioner from source.ts_ms: {audit}");
    Ok(())
}

/// Table mode (`output.format = "delta"`): the table is partitioned by the path's columns
/// (`dt`, `hr`) and the Kafka partition; every row's `dt` and `hr`, as `deltalake` reads them,
/// are its Kafka timestamp's at +02:00, and every offset is there once.
#[test]
fn a_delta_table_is_partitioned_by_the_paths_columns() -> TestResult {
    let (topic, group, prefix) = (unique("it-time-delta"), unique("it-group"), unique("it/time-delta"));
    let stack = Stack::get()?;
    let (first_ms, dt) = first()?;
    let produced = produce_stamped(&stack, &topic, 2, 300, 112, (first_ms, STEP_MS))?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 70\nrotate_interval_ms = 1000")
        .output("format = \"delta\"\npartitioner = \"time\"\npath_format = \"dt={YYYY}-{MM}-{DD}/hr={HH}\"\ntimezone = \"+02:00\"")
        .tables("[table]\ncommit_interval_ms = 500")
        .start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    let table = assert_every_reader_reads(&stack, (&prefix, &topic, 2), Matrix { columns: &["dt", "hr", "__kafka_timestamp"], stream: true }, &produced)?;
    assert_eq!(table.partition_columns, ["dt", "hr", "__kafka_partition"], "partition columns");
    let column = |c: &str| table.values.get(c).cloned().ok_or(format!("no {c} values"));
    let (dts, hrs, stamps) = (column("dt")?, column("hr")?, column("__kafka_timestamp")?);
    let mut hours = BTreeSet::new();
    for (i, (p, o)) in table.rows.iter().enumerate() {
        let ts = stamps.get(i).and_then(|v| v.as_i64()).ok_or(format!("row {p}/{o} without a timestamp"))?;
        let hour = (ts + OFFSET_MS).div_euclid(3_600_000).rem_euclid(24);
        let got = (dts.get(i).and_then(|v| v.as_str()), hrs.get(i).and_then(|v| v.as_str()));
        assert_eq!(got, (Some(dt.as_str()), Some(format!("{hour:02}").as_str())), "row {p}/{o} stamped {ts}: (dt, hr)");
        hours.insert(hour);
    }
    assert_eq!(hours, BTreeSet::from([2, 3, 4]), "hours covered at +02:00 (300 records 15 s apart from 02:50)");
    assert!(
        table.files.iter().all(|f| f.contains(&format!("/dt={dt}/hr=0")) && f.contains("/__kafka_partition=")),
        "data files under dt=/hr=/__kafka_partition=: {:?}",
        table.files
    );
    Ok(())
}
