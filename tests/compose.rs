//! The compose stack checked without a Docker engine (`scripts/check_compose.py`): the compose
//! specification's schema, referenced files, ports and credentials against `config/compose.toml`,
//! the Prometheus scrape config and the connector, and the dashboard's metrics.

mod common;

use std::process::Command;

use common::*;

#[test]
fn compose_stack_is_consistent() -> TestResult {
    let out = Command::new("python3").arg(root().join("scripts/check_compose.py")).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/check_compose.py found problems:\n{text}");
    assert!(text.contains("10 services, 0 problem(s)"), "{text}");
    Ok(())
}

/// The checker is not a test that cannot fail: a compose file with a broken port, a missing
/// mount and an undocumented metric in the dashboard is refused, each named.
#[test]
fn compose_checker_names_each_mistake() -> TestResult {
    let dir = tempfile::tempdir()?;
    let copy = dir.path();
    for d in ["config", "docker", "scripts"] {
        copy_dir(&root().join(d), &copy.join(d))?;
    }
    for f in ["README.md", "Dockerfile"] {
        std::fs::copy(root().join(f), copy.join(f))?;
    }
    std::fs::create_dir_all(copy.join(".stack"))?;
    let cached = root().join(".stack/compose-spec.json");
    if cached.exists() {
        std::fs::copy(&cached, copy.join(".stack/compose-spec.json"))?;
    }
    let compose = std::fs::read_to_string(root().join("docker-compose.yml"))?
        .replace("SCHEMA_REGISTRY_LISTENERS: http://0.0.0.0:8087", "SCHEMA_REGISTRY_LISTENERS: http://0.0.0.0:8081")
        .replace("./docker/prometheus/prometheus.yml:", "./docker/prometheus/missing.yml:")
        .replace("image: apache/kafka:4.4.0", "image: apache/kafka:3.9.1");
    std::fs::write(copy.join("docker-compose.yml"), compose)?;
    let dash = copy.join("docker/grafana/dashboards/kafka-parquet-sink.json");
    std::fs::write(&dash, std::fs::read_to_string(&dash)?.replace("kps_buffered_bytes", "kps_buffered_megabytes"))?;
    let dockerfile = copy.join("docker/connect/Dockerfile");
    std::fs::write(
        &dockerfile,
        std::fs::read_to_string(&dockerfile)?.replace("ARG DEBEZIUM_VERSION=3.6.1.Final", "ARG DEBEZIUM_VERSION=2.5.4.Final"),
    )?;
    let out = Command::new("python3").arg(copy.join("scripts/check_compose.py")).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the broken copy passed:\n{text}");
    for expected in [
        "schema_registry.url",
        "mounted ./docker/prometheus/missing.yml missing",
        "kps_buffered_megabytes",
        "kafka image apache/kafka:3.9.1 is not apache/kafka:4.4.0",
        "kafka-connect runs Debezium 2.5.4.Final, the tests 3.6.1.Final",
    ] {
        assert!(text.contains(expected), "no problem naming {expected:?} in:\n{text}");
    }
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}
