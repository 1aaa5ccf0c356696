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
