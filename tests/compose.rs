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
    for d in ["config", "docker", "scripts", "docs"] {
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

/// The Docker image's binary can do what this one can: the Dockerfile builds it the same way
/// (the Cargo.toml features, nothing switched off) with the -dev packages of
/// scripts/build-deps.sh, and its runtime stage installs the Debian package of every shared
/// library the binary links (found here with readelf, ldd and dpkg), so its librdkafka reports
/// the same builtin.features as this build's.
#[test]
fn docker_image_builds_and_links_what_this_binary_does() -> TestResult {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile"))?;
    let (build, runtime) = dockerfile.split_once("\nFROM debian:").ok_or("no runtime stage FROM debian:")?;
    let build_cmd = build.lines().find(|l| l.contains("cargo build")).ok_or("no cargo build in the build stage")?;
    assert!(
        build_cmd.contains("--release") && !build_cmd.contains("--no-default-features") && !build_cmd.contains("--features"),
        "the image's build must keep Cargo.toml's features: {build_cmd}"
    );
    let deps = std::fs::read_to_string(root().join("scripts/build-deps.sh"))?;
    for dev in ["libssl-dev", "libcurl4-openssl-dev", "libsasl2-dev", "pkg-config"] {
        assert!(deps.contains(dev), "scripts/build-deps.sh installs {dev}");
        assert!(build.contains(dev), "the Dockerfile's build stage installs {dev}");
    }
    let binary = env!("CARGO_BIN_EXE_kafka-parquet-sink");
    let version = Command::new(binary).arg("version").output()?;
    let printed = String::from_utf8_lossy(&version.stdout);
    let features = printed.lines().find_map(|l| l.strip_prefix("builtin.features ")).ok_or_else(|| format!("version printed:\n{printed}"))?;
    for f in ["ssl", "sasl_scram", "sasl_oauthbearer", "oidc", "sasl_gssapi", "zstd", "lz4", "snappy", "gzip"] {
        assert!(features.split(',').any(|x| x == f), "builtin.features lacks {f}: {features}");
    }
    // Shared libraries the binary needs, and the Debian package of each.
    let readelf = Command::new("readelf").args(["-d", binary]).output()?;
    let needed: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_string()))
        .collect();
    assert!(needed.iter().any(|n| n.starts_with("libssl")), "the binary links OpenSSL: {needed:?}");
    let ldd = String::from_utf8_lossy(&Command::new("ldd").arg(binary).output()?.stdout).into_owned();
    // In debian:bookworm-slim already.
    let base = ["libc6", "libgcc-s1"];
    for lib in needed.iter().filter(|n| !n.starts_with("ld-linux")) {
        let path = ldd
            .lines()
            .find_map(|l| l.trim().strip_prefix(lib.as_str()).and_then(|r| r.split_whitespace().nth(1)).map(str::to_string))
            .ok_or_else(|| format!("ldd does not resolve {lib}:\n{ldd}"))?;
        let real = std::fs::canonicalize(&path)?.to_string_lossy().into_owned();
        // dpkg knows a file by the path its package ships it at: /lib or /usr/lib (usrmerge).
        let candidates = [path.clone(), real.clone(), real.trim_start_matches("/usr").to_string(), format!("/usr{path}")];
        let package = candidates
            .iter()
            .find_map(|c| {
                let out = Command::new("dpkg").arg("-S").arg(c).output().ok()?;
                let p = String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or_default().trim().to_string();
                (out.status.success() && !p.is_empty()).then_some(p)
            })
            .ok_or_else(|| format!("no Debian package owns {real} ({lib})"))?;
        assert!(
            base.contains(&package.as_str()) || runtime.split_whitespace().any(|w| w == package),
            "{lib} ({real}) comes from {package}, which the Dockerfile's runtime stage does not install"
        );
    }
    Ok(())
}
