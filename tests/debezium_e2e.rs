//! SQL → real Debezium → Kafka → the sink → Parquet, compared field by field with what
//! PostgreSQL returns. Needs the local stack and `scripts/debezium.sh up` (PostgreSQL 15 with
//! the seed's tasks table; a Kafka Connect worker in distributed mode with exactly-once source
//! support, running the Debezium PostgreSQL connector with Confluent's AvroConverter, registered
//! over REST from docker/connect/debezium-postgres-cdc.json), which `scripts/test.sh` starts.
//! The test adds a connector of its own from the same file (`scripts/debezium.sh add`: its own
//! replication slot and topic), so nothing the demo or another run wrote to the harness's
//! `supabase-habit.public.tasks` reaches it.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A Debezium connector of this run's own on the harness's worker, streaming public.tasks to
/// `<name>.public.tasks` from a replication slot of its own; removed (slot dropped) when dropped.
struct OwnConnector {
    name: String,
    topic: String,
}

impl OwnConnector {
    fn add() -> TestResult<OwnConnector> {
        let name = unique("it-dbz");
        debezium(&["add", &name, &name])?;
        Ok(OwnConnector { topic: format!("{name}.public.tasks"), name })
    }
}

impl Drop for OwnConnector {
    fn drop(&mut self) {
        let _ = debezium(&["remove", &self.name]);
    }
}

fn debezium(args: &[&str]) -> TestResult {
    let out = Command::new("bash").arg(root().join("scripts/debezium.sh")).args(args).output()?;
    if !out.status.success() {
        return Err(format!("scripts/debezium.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn pg_port() -> String {
    std::env::var("PG_PORT").unwrap_or_else(|_| "55432".into())
}

/// Runs SQL through psql; returns its rows (tuples only, unaligned).
fn psql(sql: &str) -> TestResult<Vec<String>> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg_port(), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()?;
    if !out.status.success() {
        return Err(format!("psql failed (is `scripts/debezium.sh up` running?): {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.lines().map(str::to_string).collect())
}

/// A row of public.tasks, each column (whatever columns the table has now) as text in the form
/// `scripts/lake.py images` renders Parquet values: timestamps in UTC ISO with microseconds,
/// arrays as JSON, bytea as hex, intervals as microseconds.
fn pg_row(id: &str) -> TestResult<BTreeMap<String, Value>> {
    let columns = psql(
        "select column_name || '|' || data_type from information_schema.columns
          where table_schema = 'public' and table_name = 'tasks' order by ordinal_position",
    )?;
    let mut parts = Vec::new();
    for line in &columns {
        let (c, ty) = line.split_once('|').ok_or_else(|| format!("bad column line {line}"))?;
        let expr = match ty {
            "text" | "character varying" => c.to_string(),
            "timestamp with time zone" => format!(r#"to_char({c} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')"#),
            "timestamp without time zone" => format!(r#"to_char({c}, 'YYYY-MM-DD"T"HH24:MI:SS.US')"#),
            "ARRAY" => format!("array_to_json({c})::text"),
            "bytea" => format!("encode({c}, 'hex')"),
            "interval" => format!("(extract(epoch from {c}) * 1000000)::bigint::text"),
            "money" => format!("{c}::numeric::text"),
            "character" => format!("case when {c} is not null then format('%s', {c}) end"),
            "time with time zone" => format!("replace(({c} at time zone 'UTC')::text, '+00', 'Z')"),
            _ => format!("{c}::text"),
        };
        parts.push(format!("'{c}', {expr}"));
    }
    let sql = format!("select json_build_object({}) from public.tasks where id = '{id}'", parts.join(", "));
    let rows = psql(&sql)?;
    let row = rows.first().ok_or_else(|| format!("no row {id} in PostgreSQL"))?;
    Ok(serde_json::from_str(row)?)
}

#[derive(Debug, serde::Deserialize)]
struct Image {
    offset: i64,
    op: String,
    deleted: bool,
    tx_id: Option<i64>,
    key_id: Option<String>,
    #[serde(default)]
    source_lsn: Option<i64>,
    #[serde(default)]
    unavailable: Option<Vec<String>>,
    before: Option<BTreeMap<String, Value>>,
    after: Option<BTreeMap<String, Value>>,
    types: BTreeMap<String, String>,
}


/// Row images of the Delta table at `table` as DuckDB's `delta_scan` reads it (the `deltalake`
/// package 1.6 cannot read a table whose types widened).
fn table_images(stack: &Stack, table: &str) -> TestResult<Vec<Image>> {
    let stack_dir = stack_dir();
    let out = Command::new("python3")
        .arg(root().join("scripts/delta_duckdb.py"))
        .args(["--endpoint", &stack.s3, "images", "--table", table])
        .env("DUCKDB_DELTA_DIR", stack_dir.join("duckdb-delta"))
        .output()?;
    if !out.status.success() {
        return Err(format!("delta_duckdb.py images failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Row images of the Delta table at `table` as Apache Spark with Delta Lake reads it
/// (`scripts/delta_spark.py images`, the same rendering), ordered by offset.
fn spark_images(stack: &Stack, table: &str) -> TestResult<Vec<Image>> {
    let out = Command::new("python3")
        .arg(root().join("scripts/delta_spark.py"))
        .args(["--endpoint", &stack.s3, "images", "--table", table])
        .env("SPARK_DIR", stack_dir().join("spark"))
        .output()?;
    if !out.status.success() {
        return Err(format!("delta_spark.py images failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut images: Vec<Image> = serde_json::from_slice(&out.stdout)?;
    images.sort_by_key(|i| i.offset);
    Ok(images)
}

/// Row images of the lake's files under `prefix`.
fn images(stack: &Stack, prefix: &str) -> TestResult<Vec<Image>> {
    let out = Command::new("python3")
        .arg(root().join("scripts/lake.py"))
        .args(["--endpoint", &stack.s3, "images", "--prefix", prefix])
        .output()?;
    if !out.status.success() {
        return Err(format!("lake.py images failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Columns the table has only for part of the run: a file holding events from both sides of
/// their change holds them for every row (`output.schema_change = "merge"`).
const CHANGING_COLUMNS: [&str; 2] = ["category", "small"];

fn assert_same(what: &str, lake: Option<&BTreeMap<String, Value>>, pg: &BTreeMap<String, Value>) -> TestResult {
    let lake = lake.ok_or_else(|| format!("{what}: no row image in the lake"))?;
    for (column, want) in pg {
        let got = lake.get(column).unwrap_or(&Value::Null);
        assert_eq!(got, want, "{what}: column {column}: Parquet (left) vs PostgreSQL (right)");
    }
    let extra: Vec<&String> = lake.keys().filter(|c| !pg.contains_key(*c)).collect();
    assert!(
        extra.iter().all(|c| CHANGING_COLUMNS.contains(&c.as_str())),
        "{what}: columns {:?} vs {:?}",
        lake.keys().collect::<Vec<_>>(),
        pg.keys().collect::<Vec<_>>()
    );
    Ok(())
}

/// Under `merge` every event reads back with the values it has under `roll`; a column of
/// another version is null, or the added column's default (Avro fills a field a record's
/// version lacks with the reader's default).
fn assert_merge_equals_roll(merged: &[Image], rolled: &[Image]) -> TestResult {
    let by_offset: BTreeMap<i64, &Image> = rolled.iter().map(|i| (i.offset, i)).collect();
    let mut compared = 0;
    for m in merged {
        let Some(r) = by_offset.get(&m.offset) else { continue };
        assert_eq!((&m.op, m.deleted, &m.key_id), (&r.op, r.deleted, &r.key_id), "offset {}", m.offset);
        for (side, mi, ri) in [("before", &m.before, &r.before), ("after", &m.after, &r.after)] {
            match (mi, ri) {
                (Some(mi), Some(ri)) => {
                    for (column, want) in ri {
                        assert_eq!(mi.get(column), Some(want), "offset {} {side}.{column}: merge (left) vs roll (right)", m.offset);
                    }
                    for (column, got) in mi.iter().filter(|(c, _)| !ri.contains_key(*c)) {
                        let default = column == "category" && got == &Value::String("general".into());
                        assert!(got.is_null() || default, "offset {} {side}.{column}: {got} in a version without the column", m.offset);
                    }
                }
                (None, None) => {}
                other => return Err(format!("offset {} {side}: merge {:?} vs roll {:?}", m.offset, other.0.is_some(), other.1.is_some()).into()),
            }
        }
        compared += 1;
    }
    assert_eq!(compared, rolled.len(), "every event of the roll lake is in the merge lake");
    Ok(())
}

/// A value of the file lake as the Delta table holds it: a time of day is its integer count of
/// the unit (`time64[us]` microseconds, `time32[ms]` milliseconds; see `table::file_batch`).
fn as_in_table(value: &Value, file_type: Option<&str>) -> Value {
    let unit = match file_type {
        Some("time64[us]") => 1_000_000.0,
        Some("time32[ms]") => 1_000.0,
        _ => return value.clone(),
    };
    let Some(text) = value.as_str() else { return value.clone() };
    let parts: Vec<f64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [h, m, sec] => Value::String(format!("{}", ((h * 3600.0 + m * 60.0 + sec) * unit).round() as i64)),
        _ => value.clone(),
    }
}

/// The bronze Delta table holds every event of the file lake once, with the same values (a
/// time of day as its integer; a column of only part of the run null where a file of the
/// other sink held Avro's default for it).
fn assert_table_equals_files(table: &[Image], files: &[Image]) -> TestResult {
    assert_eq!(table.len(), files.len(), "rows of the table against rows of the file lake");
    let by_offset: BTreeMap<i64, &Image> = table.iter().map(|i| (i.offset, i)).collect();
    assert_eq!(by_offset.len(), table.len(), "an offset twice in the table");
    for f in files {
        let t = by_offset.get(&f.offset).ok_or_else(|| format!("offset {} of the file lake is not in the table", f.offset))?;
        assert_eq!((&t.op, t.deleted, &t.key_id, t.tx_id, &t.unavailable), (&f.op, f.deleted, &f.key_id, f.tx_id, &f.unavailable), "offset {}", f.offset);
        for (side, ti, fi) in [("before", &t.before, &f.before), ("after", &t.after, &f.after)] {
            let (Some(ti), Some(fi)) = (ti, fi) else {
                assert_eq!((ti.is_some(), fi.is_some()), (false, false), "offset {} {side}: table (left) vs files (right)", f.offset);
                continue;
            };
            for (column, got) in ti {
                let want = fi.get(column).map(|v| as_in_table(v, f.types.get(column).map(String::as_str))).unwrap_or(Value::Null);
                let defaulted = |v: &Value| v.is_null() || v == &Value::String("general".into());
                let changing = CHANGING_COLUMNS.contains(&column.as_str()) && defaulted(got) && defaulted(&want);
                assert!(got == &want || changing, "offset {} {side}.{column}: table {got} vs files {want}", f.offset);
            }
            let missing: Vec<&String> = fi.keys().filter(|c| !ti.contains_key(*c)).collect();
            assert!(missing.is_empty(), "offset {} {side}: columns {missing:?} of the files are not in the table", f.offset);
        }
    }
    Ok(())
}

#[test]
fn sql_changes_land_typed_and_equal_to_postgres() -> TestResult {
    let stack = Stack::get()?;
    psql("select 1").map_err(|e| format!("PostgreSQL of scripts/debezium.sh is not up: {e}"))?;
    // A local re-run finds the schema changes of the last run applied: undo the drop and the
    // widening (a value past 32 bits only the last run wrote cannot narrow back), before the
    // connector's snapshot reads the table.
    psql("alter table public.tasks add column if not exists small smallint")?;
    psql("update public.tasks set streak = null where streak not between -2147483648 and 2147483647; alter table public.tasks alter column streak type integer")?;
    let connector = OwnConnector::add()?;
    let topic = connector.topic.as_str();
    let (group, prefix) = (unique("it-dbz"), unique("it/dbz"));
    let tag = unique("run");

    // A multi-row transaction: every type set, one row of NULLs, one with edge values.
    let ids = psql(&format!(
        r#"begin;
        insert into public.tasks (title, completed, due_date, created_at, updated_at, estimate, points, prio, tags, meta, remind_at, attachment, streak, score,
                                  spent, cost, small, big, ratio, code, grade, alarm, stamp_ms, clock_ms)
        values ('{tag} full', true, '2026-01-15', '2026-01-15 10:04:42.123456+02', '2026-01-15 10:04:42.654321', 12.50, 3.14159,
                'high', array['home', null, 'work'], '{{"k": [1, 2], "s": "x"}}', '09:30:00.123456', '\x00ff10', 7, 0.25,
                '3 days 04:05:06.789', 1234.56, -32768, 9223372036854775807, 1.5, 'vchar', 'A', '09:30:00.123456+02',
                '2026-01-15 10:04:42.123', '09:30:00.12');
        insert into public.tasks (title) values ('{tag} nulls');
        insert into public.tasks (title, due_date, estimate, points, streak, score, remind_at, tags, spent, cost, big, ratio, grade, alarm)
        values ('{tag} edges', '1969-12-31', -99999999.99, 123456789012345678901234567890.123456789, -2147483648, -1.5e300, '23:59:59.999999', array[]::text[],
                '-00:00:01', -0.01, -9223372036854775808, -0.25, 'BB', '00:00:00+00');
        commit;
        select id from public.tasks where title like '{tag}%' order by title"#
    ))?;
    let ids: Vec<String> = ids.into_iter().filter(|l| l.len() == 36).collect();
    assert_eq!(ids.len(), 3, "inserted ids: {ids:?}");
    let (edges, full, nulls) = (&ids[0], &ids[1], &ids[2]); // ordered by title: edges, full, nulls
    let full_before = pg_row(full)?;
    let nulls_row = pg_row(nulls)?;
    let edges_row = pg_row(edges)?;
    psql(&format!("update public.tasks set completed = false, estimate = 13.75, meta = '[true]', updated_at = updated_at + interval '1 day' where id = '{full}'"))?;
    let full_after = pg_row(full)?;
    psql(&format!("delete from public.tasks where id = '{nulls}'"))?;
    // A schema change mid-stream: Debezium registers a new value schema with the next event.
    psql("alter table public.tasks add column if not exists category text default 'general'")?;
    psql(&format!("update public.tasks set title = title || ' v2' where id = '{edges}'"))?;
    let edges_v2 = pg_row(edges)?;
    assert_eq!(edges_v2.get("category"), Some(&Value::String("general".into())), "PostgreSQL row after the schema change");
    // DROP COLUMN and a type widening (int → bigint) mid-stream.
    psql("alter table public.tasks drop column small; alter table public.tasks alter column streak type bigint")?;
    psql(&format!("update public.tasks set title = title || ' v3', streak = 5000000000 where id = '{edges}'"))?;
    let edges_v3 = pg_row(edges)?;
    assert!(!edges_v3.contains_key("small"), "PostgreSQL row after DROP COLUMN: {edges_v3:?}");
    // An unchanged TOASTed value under replica identity DEFAULT: Debezium sends its placeholder.
    let toast = psql(&format!(
        r#"alter table public.tasks replica identity default;
        insert into public.tasks (title, attachment) values (
            '{tag} toast ' || (select string_agg(md5(random()::text), '') from generate_series(1, 1000)),
            (select string_agg(decode(md5(random()::text), 'hex'), '') from generate_series(1, 1000)))
          returning id;
        "#
    ))?;
    let toast = toast.into_iter().find(|l| l.len() == 36).ok_or("no id for the TOAST row")?;
    psql(&format!("update public.tasks set completed = true where id = '{toast}'; alter table public.tasks replica identity full;"))?;

    // Both layouts, each its own consumer group and prefix, from the same Debezium events.
    // Under the default `merge` schema changes share files; a third sink rolls at every
    // change, for the comparison.
    let (flat_prefix, roll_prefix) = (format!("{prefix}-flat"), format!("{prefix}-roll"));
    let flush = "max_records = 1000\nrotate_interval_ms = 1000";
    let mut sink = SinkProcess::start(&stack, topic, &group, &prefix, flush)?;
    let mut flat_sink = SinkProcess::start_with(&stack, topic, &format!("{group}-flat"), &flat_prefix, flush, "layout = \"flatten\"")?;
    let mut roll_sink = SinkProcess::start_with(&stack, topic, &format!("{group}-roll"), &roll_prefix, flush, "schema_change = \"roll\"")?;
    let flat_roll_prefix = format!("{prefix}-flat-roll");
    let flat_roll = "layout = \"flatten\"\nschema_change = \"roll\"";
    let mut flat_roll_sink = SinkProcess::start_with(&stack, topic, &format!("{group}-flat-roll"), &flat_roll_prefix, flush, flat_roll)?;
    // The bronze table (`output.format = "delta"`) from the same events. Under `roll` each
    // schema version has files of its own, so the table's schema changes with them: a nested
    // column added, `streak` widened (Delta's type widening, `table.type_widening`), `small`
    // kept for older rows.
    let delta_prefix = format!("{prefix}-delta");
    let delta_group = format!("{group}-delta");
    let mut delta_sink =
        SinkSpec::new(&stack, topic, &delta_group, &delta_prefix, flush).output("format = \"delta\"\nschema_change = \"roll\"").tables("[table]\ncommit_interval_ms = 1000\ntype_widening = true").start()?;
    let wait_all = |prefix: &str| {
        wait_for(Duration::from_secs(90), "every change of this run in the lake", || {
            let imgs = images(&stack, prefix)?;
            let mine = |id: &str| imgs.iter().filter(|i| i.key_id.as_deref() == Some(id)).count();
            Ok((mine(full) >= 2 && mine(nulls) >= 2 && mine(edges) >= 3 && mine(&toast) >= 2).then_some(imgs))
        })
    };
    let lake = wait_all(&prefix)?;
    let flat = wait_all(&flat_prefix)?;
    let rolled = wait_all(&roll_prefix)?;
    let flat_rolled = wait_all(&flat_roll_prefix)?;
    let table_path = format!("{delta_prefix}/topics/{topic}");
    let table = wait_for(Duration::from_secs(90), "every change of this run in the Delta table", || {
        let imgs = table_images(&stack, &table_path)?;
        let mine = |id: &str| imgs.iter().filter(|i| i.key_id.as_deref() == Some(id)).count();
        Ok((mine(full) >= 2 && mine(nulls) >= 2 && mine(edges) >= 3 && mine(&toast) >= 2).then_some(imgs))
    })
    .map_err(|e| format!("{e}\n{}", delta_sink.log()))?;
    // The worker runs with exactly-once source support: Debezium's records come in transactions,
    // each partition ends with a commit marker, and the groups still reach lag 0.
    for g in [group.clone(), format!("{group}-flat"), format!("{group}-roll"), format!("{group}-flat-roll"), delta_group.clone()] {
        wait_caught_up(&stack, &g, topic, Duration::from_secs(60))?;
    }
    let merged_versions = sink.metric_sum("kps_schema_reconciliations_total", &[]);
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    assert!(flat_sink.terminate(Duration::from_secs(30))?.success(), "flatten sink exit status");
    assert!(roll_sink.terminate(Duration::from_secs(30))?.success(), "roll sink exit status");
    assert!(flat_roll_sink.terminate(Duration::from_secs(30))?.success(), "flatten roll sink exit status");
    assert!(delta_sink.terminate(Duration::from_secs(30))?.success(), "table sink exit status\n{}", delta_sink.log());
    assert_merge_equals_roll(&lake, &rolled)?;
    // Read once more after the table sink stopped: everything it committed, nothing twice.
    let table = if table.len() == rolled.len() { table } else { table_images(&stack, &table_path)? };
    assert_table_equals_files(&table, &rolled)?;
    // Spark with Delta Lake, the reference reader, reads the same values (it reads the widened
    // column, which the deltalake package 1.6 cannot).
    assert_table_equals_files(&spark_images(&stack, &table_path)?, &rolled).map_err(|e| format!("Spark: {e}"))?;
    assert_eq!(table.first().and_then(|t| t.types.get("streak")).map(String::as_str), Some("int64"), "the table's after.streak, widened");
    assert!(delta_sink.log().contains("widened after.streak: integer → long"), "the schema change in the table sink's log:\n{}", delta_sink.log());
    assert_merge_equals_roll(&flat, &flat_rolled)?;
    let files = |p: &str| read_lake(&stack, p).map(|f| f.len());
    eprintln!("merge: {} files ({merged_versions} versions merged), roll: {} files", files(&prefix)?, files(&roll_prefix)?);

    let of = |id: &str, op: &str| -> TestResult<&Image> {
        lake.iter()
            .filter(|i| i.key_id.as_deref() == Some(id) && i.op == op)
            .max_by_key(|i| i.offset)
            .ok_or_else(|| format!("no {op} event for {id}").into())
    };
    let (c_full, c_nulls, c_edges) = (of(full, "c")?, of(nulls, "c")?, of(edges, "c")?);
    assert_same("insert of the full row", c_full.after.as_ref(), &full_before)?;
    assert_same("insert of the NULL row", c_nulls.after.as_ref(), &nulls_row)?;
    assert_same("insert of the edge row", c_edges.after.as_ref(), &edges_row)?;
    assert!(
        c_full.tx_id.is_some() && c_full.tx_id == c_nulls.tx_id && c_full.tx_id == c_edges.tx_id,
        "one transaction: {:?} {:?} {:?}",
        c_full.tx_id,
        c_nulls.tx_id,
        c_edges.tx_id
    );
    let u = of(full, "u")?;
    assert_same("update, before image", u.before.as_ref(), &full_before)?;
    assert_same("update, after image", u.after.as_ref(), &full_after)?;
    let d = of(nulls, "d")?;
    assert!(d.deleted && d.after.is_none(), "delete event: deleted={} after={:?}", d.deleted, d.after);
    assert_same("delete, before image", d.before.as_ref(), &nulls_row)?;

    // After each schema change: the new column is there with its value, the dropped one gone,
    // the widened one holds a value past 32 bits; nothing shifted.
    let edge_updates: Vec<&Image> = {
        let mut u: Vec<&Image> = lake.iter().filter(|i| i.key_id.as_deref() == Some(edges.as_str()) && i.op == "u").collect();
        u.sort_by_key(|i| i.offset);
        u
    };
    assert_eq!(edge_updates.len(), 2, "two updates of the edge row");
    assert_same("update after ADD COLUMN", edge_updates[0].after.as_ref(), &edges_v2)?;
    assert_same("update after DROP COLUMN and int → bigint", edge_updates[1].after.as_ref(), &edges_v3)?;
    assert_eq!(edge_updates[1].types.get("streak").map(String::as_str), Some("int64"), "widened column type");

    // The TOAST placeholder is never passed off as data.
    for (layout, events) in [("envelope", &lake), ("flatten", &flat)] {
        let u = events
            .iter()
            .filter(|i| i.key_id.as_deref() == Some(toast.as_str()) && i.op == "u")
            .max_by_key(|i| i.offset)
            .ok_or("no update of the TOAST row")?;
        let after = u.after.as_ref().ok_or("no after image")?;
        for column in ["title", "attachment"] {
            assert_eq!(after.get(column), Some(&Value::Null), "{layout}: unchanged TOASTed {column} must be null, not the placeholder");
        }
        assert_eq!(u.unavailable.as_deref(), Some(&["title".to_string(), "attachment".to_string()][..]), "{layout}: __unavailable_columns");
        assert_eq!(after.get("completed"), Some(&Value::String("true".into())), "{layout}: the changed column");
    }
    let c_full_flags = of(full, "c")?.unavailable.clone();
    assert_eq!(c_full_flags, None, "no unavailable columns on an ordinary insert");

    // layout = "flatten": the row image (after; before for the delete) as top-level columns.
    let flat_of = |id: &str, op: &str| -> TestResult<&Image> {
        flat.iter()
            .filter(|i| i.key_id.as_deref() == Some(id) && i.op == op)
            .max_by_key(|i| i.offset)
            .ok_or_else(|| format!("flatten: no {op} event for {id}").into())
    };
    assert_same("flatten: insert of the full row", flat_of(full, "c")?.after.as_ref(), &full_before)?;
    assert_same("flatten: insert of the NULL row", flat_of(nulls, "c")?.after.as_ref(), &nulls_row)?;
    assert_same("flatten: insert of the edge row", flat_of(edges, "c")?.after.as_ref(), &edges_row)?;
    assert_same("flatten: update", flat_of(full, "u")?.after.as_ref(), &full_after)?;
    assert_same("flatten: last update, after DROP COLUMN and int → bigint", flat_of(edges, "u")?.after.as_ref(), &edges_v3)?;
    let fd = flat_of(nulls, "d")?;
    assert!(fd.deleted, "flatten: the delete row is flagged __deleted");
    assert_same("flatten: delete carries the before image", fd.after.as_ref(), &nulls_row)?;
    assert_eq!(flat_of(full, "c")?.tx_id, c_full.tx_id, "flatten: __source_txid");
    assert!(flat_of(full, "u")?.source_lsn.is_some(), "flatten: __source_lsn");
    assert_eq!(flat_of(full, "c")?.types, c_full.types, "flatten: column types equal the envelope's row image types");

    // The natural types, as pyarrow reads them.
    for (column, want) in [
        ("due_date", "date32[day]"),
        ("created_at", "timestamp[us, tz=+00:00]"),
        ("updated_at", "timestamp[us]"),
        ("estimate", "decimal128(10, 2)"),
        ("points", "string"),
        ("meta", "extension<arrow.json>"),
        ("remind_at", "time64[us]"),
        ("tags", "list<item: string>"),
        ("attachment", "binary"),
        ("spent", "duration[us]"),
        ("cost", "decimal256(64, 2)"),
        ("small", "int16"),
        ("big", "int64"),
        ("ratio", "float"),
        ("alarm", "string"),
        ("stamp_ms", "timestamp[ms]"),
        ("clock_ms", "time32[ms]"),
    ] {
        assert_eq!(c_full.types.get(column).map(String::as_str), Some(want), "Arrow type of after.{column}");
    }
    Ok(())
}
