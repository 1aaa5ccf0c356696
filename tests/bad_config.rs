//! Each configuration mistake stops `run` before anything is consumed, with exit status 2 and
//! one message naming the key and what to do. The reachable parts are the local stack.

mod common;

use std::process::Command;

use common::*;

/// A config for the local stack with `mistake` applied (`section.key = value` lines replace the
/// defaults given here), run with `run`: (exit code, stderr).
fn run(stack: &Stack, group: &str, topic: &str, mistake: &[(&str, &str)]) -> TestResult<(i32, String)> {
    let mut sections: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "kafka",
            vec![
                ("bootstrap_servers".into(), format!("{:?}", stack.bootstrap)),
                ("group_id".into(), format!("{group:?}")),
                ("topics".into(), format!("[{topic:?}]")),
            ],
        ),
        ("schema_registry", vec![("url".into(), format!("{:?}", stack.registry))]),
        (
            "s3",
            vec![
                ("endpoint".into(), format!("{:?}", stack.s3)),
                ("access_key_id".into(), "\"minioadmin\"".into()),
                ("secret_access_key".into(), "\"minioadmin\"".into()),
                ("allow_http".into(), "true".into()),
            ],
        ),
        ("flush", vec![]),
        ("metrics", vec![("listen".into(), "\"\"".into())]),
    ];
    for (path, value) in mistake {
        let (section, key) = path.split_once('.').ok_or("mistake keys are section.key")?;
        let entries = &mut sections.iter_mut().find(|(s, _)| *s == section).ok_or("unknown section")?.1;
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_string(), value.to_string()));
    }
    let text: String =
        sections.iter().map(|(s, kv)| format!("[{s}]\n{}\n", kv.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>())).collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sink.toml");
    std::fs::write(&path, text)?;
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink")).args(["run", "--config"]).arg(&path).output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// The one problem line of a failed start (`  - <key>: <what and what to do>`).
fn problems(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.trim_start().starts_with("- ")).collect()
}

/// (what, the mistake as `section.key = value` pairs, the key the message must name, a phrase it must hold)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn each_mistake_stops_the_start_naming_its_key() -> TestResult {
    let stack = Stack::get()?;
    let topic = unique("it-badcfg");
    produce(&stack, &topic, 1, 5, None, 51)?;
    let missing_bucket = format!("{:?}", unique("no-such-bucket"));
    let cases: &[Case] = &[
        ("unknown key", &[("flush.max_recrods", "10")], "max_recrods", "unknown field"),
        ("malformed registry URL", &[("schema_registry.url", "\"http//registry:8081\"")], "schema_registry.url", "not a URL"),
        ("malformed S3 endpoint", &[("s3.endpoint", "\"http://\"")], "s3.endpoint", "not a URL"),
        (
            "credentials in the registry URL",
            &[("schema_registry.url", "\"http://u:p@127.0.0.1:8081\"")],
            "schema_registry.url",
            "username/password",
        ),
        ("flush value out of range", &[("flush.max_records", "0")], "flush.max_records", "must be > 0"),
        ("memory bound out of range", &[("flush.max_buffered_bytes", "1000")], "flush.max_buffered_bytes", ">= 1048576"),
        ("missing bucket", &[("s3.bucket", &missing_bucket)], "s3.bucket", "does not exist"),
        ("wrong S3 secret", &[("s3.secret_access_key", "\"not-the-secret\"")], "s3.access_key_id", "refused the credentials"),
        ("unreachable broker", &[("kafka.bootstrap_servers", "\"127.0.0.1:1\"")], "kafka.bootstrap_servers", "no broker"),
        ("unreachable registry", &[("schema_registry.url", "\"http://127.0.0.1:1\"")], "schema_registry.url", "did not answer"),
        ("dead-letter topic missing", &[], "errors.dead_letter_topic", "does not exist"),
    ];
    for (what, mistake, key, hint) in cases {
        let group = unique("it-badcfg-group");
        let (code, stderr) = if *key == "errors.dead_letter_topic" {
            // [errors] is not among the sections above: pass it by environment.
            dead_letter_case(&stack, &group, &topic)?
        } else {
            run(&stack, &group, &topic, mistake)?
        };
        assert_eq!(code, 2, "{what}: exit status; stderr:\n{stderr}");
        let lines = problems(&stderr);
        let text = if lines.is_empty() { stderr.clone() } else { lines.join("\n") };
        assert!(lines.len() <= 1, "{what}: one message expected, got:\n{stderr}");
        assert!(text.contains(key) && text.contains(hint), "{what}: message should name {key} and say {hint:?}:\n{stderr}");
        assert!(!stderr.contains("partitions assigned"), "{what}: consumed before failing:\n{stderr}");
        let c = committed(&stack.bootstrap, &group, &topic, 1)?;
        assert_eq!(c.get(&0).copied().flatten(), None, "{what}: the group committed something");
    }
    Ok(())
}

fn dead_letter_case(stack: &Stack, group: &str, topic: &str) -> TestResult<(i32, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sink.toml");
    std::fs::write(&path, "")?;
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"))
        .args(["run", "--config"])
        .arg(&path)
        .env("KPS__KAFKA__BOOTSTRAP_SERVERS", &stack.bootstrap)
        .env("KPS__KAFKA__GROUP_ID", group)
        .env("KPS__KAFKA__TOPICS", topic)
        .env("KPS__SCHEMA_REGISTRY__URL", &stack.registry)
        .env("KPS__S3__ENDPOINT", &stack.s3)
        .env("KPS__S3__ALLOW_HTTP", "true")
        .env("KPS__METRICS__LISTEN", "")
        .env("AWS_ACCESS_KEY_ID", "minioadmin")
        .env("AWS_SECRET_ACCESS_KEY", "minioadmin")
        .env("KPS__ERRORS__TOLERANCE", "all")
        .env("KPS__ERRORS__DEAD_LETTER_TOPIC", "no-such-dlq-topic")
        .output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}
