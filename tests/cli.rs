//! The command line: `check` validates and prints the effective config, secrets redacted.

use std::io::Write;
use std::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn check(config_text: &str, env: &[(&str, &str)]) -> Result<(i32, String, String), Box<dyn std::error::Error>> {
    let mut f = tempfile::NamedTempFile::new()?;
    f.write_all(config_text.as_bytes())?;
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"))
        .args(["check", "--config"])
        .arg(f.path())
        .envs(env.iter().copied())
        .output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8(out.stdout)?, String::from_utf8(out.stderr)?))
}

#[test]
fn check_prints_the_effective_config_with_secrets_redacted() -> TestResult {
    let (code, out, err) =
        check("[s3]\naccess_key_id = \"ak\"\nsecret_access_key = \"hunter2\"\n", &[("KPS__FLUSH__MAX_RECORDS", "5000")])?;
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("max_records = 5000"), "env override missing from:\n{out}");
    assert!(out.contains("group_id = \"connect-minio-s3-sink\""), "defaults missing from:\n{out}");
    assert!(!out.contains("hunter2"), "secret printed:\n{out}");
    assert!(out.contains("# credentials: static keys (s3.access_key_id …)"), "the credentials' source is not named:\n{out}");
    // From the environment, with a session token: named, never shown.
    let env = [("AWS_ACCESS_KEY_ID", "ASIAENVIRONMENT42"), ("AWS_SECRET_ACCESS_KEY", "hunter3"), ("AWS_SESSION_TOKEN", "tok-secret")];
    let (code, out, err) = check("", &env)?;
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("# credentials: environment (AWS_ACCESS_KEY_ID ASIA…NT42 with AWS_SESSION_TOKEN)"), "{out}");
    assert!(out.contains("# object store: s3://datalake/bronze/cdc/tasks"), "{out}");
    assert!(!out.contains("hunter3") && !out.contains("tok-secret"), "a secret printed:\n{out}");
    Ok(())
}

#[test]
fn check_lists_every_bad_key_and_fails() -> TestResult {
    let (code, out, err) = check("[flush]\nmax_records = 0\n[metrics]\nlisten = \"nowhere\"\n", &[])?;
    assert_ne!(code, 0, "a bad config must fail; stdout: {out}");
    assert!(err.contains("flush.max_records") && err.contains("metrics.listen"), "keys not named in:\n{err}");
    let (code, _, err) = check("[flsuh]\nmax_records = 1\n", &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("flsuh"), "unknown section not named in:\n{err}");
    Ok(())
}

fn import(file: &str) -> Result<(i32, String), Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/connectors").join(file);
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink")).arg("import-connector").arg(path).output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8(out.stdout)?))
}

/// The seed's connector config becomes TOML that `check` accepts, with what it set.
#[test]
fn import_connector_carries_the_seed_connector() -> TestResult {
    let (code, toml) = import("minio-s3-sink.json")?;
    assert_eq!(code, 0, "{toml}");
    let (code, out, err) = check(&toml, &[("AWS_ACCESS_KEY_ID", "ak"), ("AWS_SECRET_ACCESS_KEY", "sk")])?;
    assert_eq!(code, 0, "check refused the imported config: {err}\n{toml}");
    for expected in [
        "group_id = \"connect-minio-s3-sink\"",
        "max_records = 100",
        "rotate_interval_ms = 60000",
        "prefix = \"bronze/cdc/tasks\"",
        "endpoint = \"http://minio:9000\"",
        "url = \"http://schema-registry:8087\"",
        "tolerance = \"all\"",
        "dead_letter_topic = \"dlq-minio-s3-sink\"",
    ] {
        assert!(out.contains(expected), "{expected} missing from the effective config:\n{out}");
    }
    assert!(!toml.contains("minioadmin"), "credentials copied into the TOML:\n{toml}");
    Ok(())
}

/// What cannot be carried (gzip, several tasks, an unknown key) is warned about, one line each;
/// the topic regex becomes a pattern and the time partitioner ours; the rest passes `check`.
#[test]
fn import_connector_warns_about_what_it_cannot_carry() -> TestResult {
    let (code, toml) = import("time-partitioned.json")?;
    assert_eq!(code, 0, "{toml}");
    for w in ["s3.sse.customer.key is not copied", "tasks.max 3"] {
        assert!(toml.lines().any(|l| l.starts_with(&format!("# warning: {w}"))), "no warning for {w}:\n{toml}");
    }
    // The customer key stays out of the file: without it in the environment, check names it.
    let (code, _, err) = check(&toml, &[])?;
    assert_eq!(code, 2, "SSE-C without its key must be refused: {err}");
    assert!(err.contains("s3.sse_customer_key"), "{err}");
    let key = ("KPS__S3__SSE_CUSTOMER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    let (code, out, err) = check(&toml, &[key])?;
    assert_eq!(code, 0, "check refused the imported config: {err}\n{toml}");
    assert!(!out.contains(key.1), "the customer key is printed:\n{out}");
    // The connector's codec and file names are carried.
    for expected in ["compression = \"gzip\"", "file_naming = \"confluent\"", "# object store: s3://lake/raw"] {
        assert!(out.contains(expected), "{expected} missing from the effective config:\n{out}");
    }
    // The hourly time partitioner is carried: Joda path format to ours.
    assert!(out.contains("partitioner = \"time\"") && out.contains("path_format = \"dt={YYYY}-{MM}-{DD}/hr={HH}\""), "{out}");
    // topics.regex is carried as a pattern, anchored as Java's Pattern.matches() is.
    assert!(out.contains(r#"topics = ['^(supabase-habit\.public\..*)$']"#) || out.contains(r#"^(supabase-habit\\.public\\..*)$"#), "{out}");
    Ok(())
}

/// Debezium's unwrap SMT with the FieldPartitioner, as users partition by a column: the SMT
/// becomes the flatten layout, the row's fields `after.` paths; what the SMT's options did is
/// warned about.
#[test]
fn import_connector_carries_the_field_partitioner_and_the_unwrap_smt() -> TestResult {
    let (code, toml) = import("field-partitioned-unwrap.json")?;
    assert_eq!(code, 0, "{toml}");
    let warnings: Vec<&str> = toml.lines().filter(|l| l.starts_with("# warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning expected (delete.handling.mode), got {warnings:?}\n{toml}");
    assert!(warnings[0].contains("transforms.unwrap.delete.handling.mode"), "{warnings:?}");
    let (code, out, err) = check(&toml, &[])?;
    assert_eq!(code, 0, "check refused the imported config: {err}\n{toml}");
    // (The connector's timezone does not matter to a field partitioner.)
    for expected in ["partitioner = \"field\"", "\"after.prio\",\n    \"after.completed\",", "layout = \"flatten\""] {
        assert!(out.contains(expected), "{expected} missing from the effective config:\n{out}");
    }
    Ok(())
}
