//! `status` on a running sink, and `doctor` against the local stack: all checkpoints pass after a sink run, and each broken
//! piece (broker, topic, messages, registry, bucket, files) fails its line with a fix, exit 1.
//! The Debezium checkpoint against the real Kafka Connect worker of `scripts/debezium.sh`:
//! RUNNING, FAILED and missing connectors.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn doctor(stack: &Stack, topic: &str, group: &str, prefix: &str, env: &[(&str, &str)]) -> TestResult<(i32, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sink.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = {:?}\ngroup_id = {group:?}\ntopics = [{topic:?}]\n[schema_registry]\nurl = {:?}\n[s3]\nendpoint = {:?}\naccess_key_id = \"minioadmin\"\nsecret_access_key = \"minioadmin\"\nallow_http = true\n[output]\nprefix = {prefix:?}\n",
            stack.bootstrap, stack.registry, stack.s3
        ),
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"))
        .args(["doctor", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn line<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines().find(|l| l.contains(name))
}

/// (stack, topic, group, prefix) of one doctor run.
type Setup = (Stack, String, String, String);

#[test]
fn doctor_passes_on_a_healthy_pipeline_and_names_each_broken_piece() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-doctor"), unique("it-group"), unique("it/doctor"));
    produce(&stack, &topic, 2, 100, None, 81)?;
    let mut sink = SinkProcess::start(&stack, &topic, &group, &prefix, "max_records = 40\nrotate_interval_ms = 1000")?;
    wait_caught_up(&stack, &group, &topic, Duration::from_secs(60))?;
    // `status` prints the running sink's /status for a person.
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"))
        .args(["status", "--url", &format!("http://127.0.0.1:{}", sink.metrics_port)])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status exit {:?}:\n{text}", out.status.code());
    assert!(text.starts_with("service: RUNNING"), "{text}");
    let store_line = format!("object store: s3://datalake/{prefix}, credentials: static keys (s3.access_key_id …)");
    assert!(text.lines().any(|l| l == store_line), "no {store_line:?} in:\n{text}");
    for p in 0..2 {
        assert!(text.lines().any(|l| l.starts_with(&format!("{topic}  {p} ")) && l.contains("RUNNING")), "partition {p} in:\n{text}");
    }
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");

    let (code, out) = doctor(&stack, &topic, &group, &prefix, &[])?;
    assert_eq!(code, 0, "healthy pipeline:\n{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("✅")).count(), 8, "eight checkpoints:\n{out}");
    assert!(line(&out, "consumer group").is_some_and(|l| l.contains("lag 0")), "lag after the run:\n{out}");
    assert!(line(&out, "bucket exists").is_some_and(|l| l.contains("credentials: static keys")), "the credentials' source:\n{out}");

    let broken: Vec<(&str, Setup, &str)> = vec![
        (
            "broker",
            (Stack { bootstrap: "127.0.0.1:1".into(), ..stack.clone() }, topic.clone(), group.clone(), prefix.clone()),
            "❌ broker reachable",
        ),
        ("topic", (stack.clone(), unique("it-no-topic"), group.clone(), prefix.clone()), "❌ topic it-no-topic"),
        (
            "registry",
            (Stack { registry: "http://127.0.0.1:1".into(), ..stack.clone() }, topic.clone(), group.clone(), prefix.clone()),
            "❌ registry has",
        ),
        ("group", (stack.clone(), topic.clone(), unique("it-other-group"), prefix.clone()), "❌ consumer group"),
        ("files", (stack.clone(), topic.clone(), group.clone(), unique("it/empty")), "❌ files of"),
    ];
    for (what, (s, t, g, p), expect) in broken {
        let (code, out) = doctor(&s, &t, &g, &p, &[])?;
        assert_eq!(code, 1, "{what} broken: exit status\n{out}");
        let l = out.lines().position(|l| l.starts_with(expect)).ok_or_else(|| format!("{what} broken: no line {expect:?} in\n{out}"))?;
        assert!(
            out.lines().nth(l + 1).is_some_and(|f| f.trim_start().starts_with("fix: ")),
            "{what} broken: no fix after the failure\n{out}"
        );
    }
    // A bucket that does not exist.
    let (code, out) = doctor(&stack, &topic, &group, &prefix, &[("KPS__S3__BUCKET", &unique("no-bucket"))])?;
    assert_eq!(code, 1, "missing bucket:\n{out}");
    assert!(line(&out, "bucket exists").is_some_and(|l| l.starts_with("❌")), "missing bucket:\n{out}");
    // An empty topic.
    let empty = unique("it-empty");
    tokio::runtime::Runtime::new()?.block_on(kafka_parquet_sink::testkit::ensure_topic(&stack.bootstrap, &empty, 1))?;
    let (code, out) = doctor(&stack, &empty, &group, &prefix, &[])?;
    assert_eq!(code, 1, "empty topic:\n{out}");
    assert!(line(&out, "has messages").is_some_and(|l| l.starts_with("❌")), "empty topic:\n{out}");
    Ok(())
}

fn connect_url() -> String {
    format!("http://127.0.0.1:{}", std::env::var("CONNECT_PORT").unwrap_or_else(|_| "8083".into()))
}

fn curl(args: &[&str]) -> TestResult<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "30"]).args(args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn doctor_reports_the_debezium_connector_running_failed_or_missing() -> TestResult {
    let stack = Stack::get()?;
    let url = connect_url();
    curl(&[&format!("{url}/connectors")])
        .ok()
        .filter(|b| b.starts_with('['))
        .ok_or_else(|| format!("no Kafka Connect worker at {url}: start it with `scripts/debezium.sh up`"))?;
    let (topic, group, prefix) = (unique("it-doctor-connect"), unique("it-group"), unique("it/doctor-connect"));
    let run = |connector: &str| {
        doctor(&stack, &topic, &group, &prefix, &[("KPS__CONNECT__URL", url.as_str()), ("KPS__CONNECT__CONNECTOR", connector)])
    };

    // The harness's connector streams from PostgreSQL.
    let (_, out) = run("supabase-postgres-cdc")?;
    let l = line(&out, "Debezium connector").ok_or(format!("no Debezium line in\n{out}"))?;
    assert!(l.starts_with("✅") && l.contains("supabase-postgres-cdc RUNNING (1 task(s) RUNNING)"), "running connector:\n{out}");

    // Not registered.
    let missing = unique("no-such-connector");
    let (code, out) = run(&missing)?;
    assert_eq!(code, 1, "missing connector: exit status\n{out}");
    let l = line(&out, "Debezium connector").ok_or(format!("no Debezium line in\n{out}"))?;
    assert!(l.starts_with("❌") && l.contains("is not registered"), "missing connector:\n{out}");

    // The seed's "Publication not found": the task fails at start.
    let name = unique("it-bad-connector");
    let slot = format!("kps_{}", name.replace('-', "_"));
    let config = serde_json::json!({
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "publication.name": "no_such_publication",
        "publication.autocreate.mode": "disabled",
        "slot.name": slot,
        "database.hostname": "127.0.0.1",
        "database.port": std::env::var("PG_PORT").unwrap_or_else(|_| "55432".into()),
        "database.user": "postgres",
        "database.password": "postgres",
        "database.dbname": "postgres",
        "topic.prefix": name,
        "table.include.list": "public.tasks",
        "snapshot.mode": "no_data",
    });
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data",
        &config.to_string(),
        &format!("{url}/connectors/{name}/config"),
    ])?;
    let failed = wait_for(Duration::from_secs(60), "the bad connector's task to fail", || {
        let (code, out) = run(&name)?;
        Ok(line(&out, "Debezium connector").is_some_and(|l| l.contains("FAILED")).then_some((code, out)))
    });
    curl(&["-X", "DELETE", &format!("{url}/connectors/{name}")])?;
    let _ = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &std::env::var("PG_PORT").unwrap_or_else(|_| "55432".into()),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
        ])
        .arg(format!("select pg_drop_replication_slot('{slot}') from pg_replication_slots where slot_name = '{slot}' and not active"))
        .output();
    let (code, out) = failed?;
    assert_eq!(code, 1, "failed connector: exit status\n{out}");
    let l = out.lines().position(|l| l.contains("Debezium connector")).ok_or("no Debezium line")?;
    let text: Vec<&str> = out.lines().collect();
    assert!(
        text[l].starts_with("❌") && text[l].contains("task 0 FAILED") && text[l].contains("Publication autocreation is disabled"),
        "failed connector:\n{out}"
    );
    assert!(text.get(l + 1).is_some_and(|f| f.trim_start().starts_with("fix: ")), "failed connector: no fix line\n{out}");
    Ok(())
}

/// Table mode: the last checkpoint reads the topic's Delta table (its version, files, and each
/// partition's txn version beside the group's offset) instead of listing files; no table yet
/// fails the line with a fix.
#[test]
fn doctor_shows_the_delta_table_and_where_each_partition_resumes() -> TestResult {
    let stack = Stack::get()?;
    let (topic, group, prefix) = (unique("it-doctor-delta"), unique("it-group"), unique("it/doctor-delta"));
    let produced = produce(&stack, &topic, 2, 100, None, 82)?;
    let mut sink = SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 40\nrotate_interval_ms = 1000")
        .output("format = \"delta\"")
        .tables("[table]\ncommit_interval_ms = 500")
        .start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(60)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    let delta = [("KPS__OUTPUT__FORMAT", "delta")];
    let (code, out) = doctor(&stack, &topic, &group, &prefix, &delta)?;
    assert_eq!(code, 0, "healthy table-mode pipeline:\n{out}");
    let table_line = line(&out, "delta table of").ok_or(format!("no table checkpoint in:\n{out}"))?;
    assert!(table_line.starts_with("✅"), "{table_line}");
    let resumes: Vec<String> = ends.iter().map(|(p, e)| format!("p{p}={e} (group {e})")).collect();
    assert!(table_line.contains(&format!("resumes at {}", resumes.join(" "))), "each partition's txn version and group offset: {table_line}");
    assert!(line(&out, "files of").is_none(), "no file listing in table mode:\n{out}");

    let (code, out) = doctor(&stack, &topic, &group, &unique("it/no-table"), &delta)?;
    assert_eq!(code, 1, "no table under another prefix:\n{out}");
    let table_line = line(&out, "delta table of").ok_or(format!("no table checkpoint in:\n{out}"))?;
    assert!(table_line.starts_with("❌") && table_line.contains("no Delta table at s3://datalake/"), "{table_line}");
    Ok(())
}
