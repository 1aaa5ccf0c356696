//! TLS with a private CA to S3 and to the registry, registry basic auth, mutual TLS and a bearer
//! token, a SASL password in the Kafka properties, and secrets kept out of every output: the log,
//! errors, `/status`, `/metrics` and `check`.
//!
//! Needs: the local stack (broker, registry whose schemas are copied), `openssl`, and `weed`,
//! which this test starts a second time with TLS and its own credentials. Here the SASL password
//! rides along with `security.protocol = plaintext` and is checked for leaks; the secured
//! listeners themselves are tests/secure_kafka.rs.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kafka_parquet_sink::config::RegistryConfig;
use kafka_parquet_sink::decode::tls_probe::tls_refusal;

const S3_ACCESS_KEY: &str = "kps-test-access";
const S3_SECRET: &str = "S3-SECRET-7b1f2c";
const REGISTRY_PASSWORD: &str = "REG-SECRET-93aa1e";
const SASL_PASSWORD: &str = "SASL-SECRET-4d0c5f";
const SECRETS: [&str; 3] = [S3_SECRET, REGISTRY_PASSWORD, SASL_PASSWORD];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) -> TestResult {
    let out = Command::new("openssl").args(args).current_dir(dir).output()?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// A private CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> TestResult<(String, String, String)> {
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kps test CA"],
    )?;
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    )?;
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    Ok((p("ca.pem"), p("server.pem"), p("server.key")))
}

/// `weed mini` with HTTPS on the S3 API and its own credentials: (process, http port, https port).
fn weed_tls(dir: &Path, cert: &str, key: &str) -> TestResult<(Killed, u16, u16)> {
    let ports: Vec<u16> = (0..12).map(|_| free_port()).collect::<Result<_, _>>()?;
    // gRPC ports are given explicitly; weed would otherwise take port + 10000.
    let data = dir.join("weed");
    std::fs::create_dir_all(&data)?;
    let child = Command::new("weed")
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=datalake", "-webdav=false"])
        .arg(format!("-s3.port={}", ports[0]))
        .arg(format!("-s3.port.https={}", ports[1]))
        .arg(format!("-s3.cert.file={cert}"))
        .arg(format!("-s3.key.file={key}"))
        .arg(format!("-s3.port.grpc={}", ports[2]))
        .arg(format!("-master.port={}", ports[3]))
        .arg(format!("-master.port.grpc={}", ports[4]))
        .arg(format!("-volume.port={}", ports[5]))
        .arg(format!("-volume.port.grpc={}", ports[6]))
        .arg(format!("-filer.port={}", ports[7]))
        .arg(format!("-filer.port.grpc={}", ports[8]))
        .arg(format!("-admin.port={}", ports[9]))
        .arg(format!("-admin.port.grpc={}", ports[10]))
        .arg(format!("-metricsPort={}", ports[11]))
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("weed.log"))?)
        .spawn()?;
    let weed = Killed(child);
    let http = format!("http://127.0.0.1:{}", ports[0]);
    wait_for(Duration::from_secs(90), "the TLS SeaweedFS to serve bucket datalake", || {
        let out = Command::new("python3")
            .arg(root().join("scripts/lake.py"))
            .args(["--endpoint", &http, "ping"])
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .output()?;
        Ok(out.status.success().then_some(()))
    })?;
    Ok((weed, ports[0], ports[1]))
}

/// The project's registry over HTTPS with basic auth, serving the stack registry's schemas.
fn registry_tls(dir: &Path, cert: &str, key: &str) -> TestResult<(Killed, u16)> {
    registry_with(dir, cert, key, &["--basic-auth", &format!("kps:{REGISTRY_PASSWORD}")])
}

/// The project's registry over HTTPS with `auth` (`--basic-auth`, `--bearer`, `--client-ca`).
fn registry_with(dir: &Path, cert: &str, key: &str, auth: &[&str]) -> TestResult<(Killed, u16)> {
    let port = free_port()?;
    let data = dir.join(format!("registry-{port}.json"));
    std::fs::copy(root().join(".stack/registry.json"), &data)?;
    let child = Command::new("python3")
        .arg(root().join("scripts/schema_registry.py"))
        .args(["--port", &port.to_string(), "--certfile", cert, "--keyfile", key])
        .args(auth)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let registry = Killed(child);
    wait_for(Duration::from_secs(20), "the TLS registry to listen", || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
    })?;
    Ok((registry, port))
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} contains the secret {s}:\n{text}");
    }
}

#[test]
fn tls_auth_and_no_secret_in_any_output() -> TestResult {
    let real = Stack::get()?;
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = certificates(dir.path())?;
    let topic = unique("it-sec");
    let produced = produce(&real, &topic, 2, 120, None, 61)?; // registers the schemas first
    let (_weed, s3_http, s3_https) = weed_tls(dir.path(), &cert, &key)?;
    let (_registry, registry_port) = registry_tls(dir.path(), &cert, &key)?;
    let stack =
        Stack { s3: format!("https://127.0.0.1:{s3_https}"), registry: format!("https://127.0.0.1:{registry_port}"), ..real.clone() };
    let (group, prefix) = (unique("it-group"), unique("it/sec"));
    let spec = |registry_password: &str| {
        SinkSpec::new(&stack, &topic, &group, &prefix, "max_records = 50\nrotate_interval_ms = 1000")
            .env("KPS__S3__ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("KPS__S3__SECRET_ACCESS_KEY", S3_SECRET)
            .env("KPS__S3__CA_FILE", &ca)
            .env("KPS__SCHEMA_REGISTRY__USERNAME", "kps")
            .env("KPS__SCHEMA_REGISTRY__PASSWORD", registry_password)
            .env("KPS__SCHEMA_REGISTRY__CA_FILE", &ca)
            .env("KPS__KAFKA__PROPERTIES__SECURITY_PROTOCOL", "plaintext")
            .env("KPS__KAFKA__PROPERTIES__SASL_USERNAME", "kps")
            .env("KPS__KAFKA__PROPERTIES__SASL_PASSWORD", SASL_PASSWORD)
    };

    // A wrong registry password: refused at start-up, the password not in the message.
    let mut refused = spec("REG-SECRET-wrong").start()?;
    let status = wait_for(Duration::from_secs(30), "the start with a wrong registry password to fail", || Ok(refused.child.try_wait()?))?;
    assert_eq!(status.code(), Some(2), "exit status with a wrong registry password");
    let log = refused.log();
    assert!(log.contains("schema_registry.username") && log.contains("refused the credentials"), "message:\n{log}");
    assert!(!log.contains("REG-SECRET-wrong"), "the wrong password is printed:\n{log}");
    drop(refused);

    let mut sink = spec(REGISTRY_PASSWORD).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&real, &group, &topic, &ends, Duration::from_secs(90))?;
    let (metrics, status, ready) = (sink.metrics(), sink.http("/status").1, sink.http("/readyz"));
    assert_eq!(ready.0, 200, "/readyz: {}", ready.1);
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    assert_no_secret("the log", &sink.log());
    assert_no_secret("/metrics", &metrics);
    assert_no_secret("/status", &status);

    // `check` with the same settings prints the effective config, secrets masked.
    let cfg = dir.path().join("check.toml");
    std::fs::write(&cfg, format!("[kafka]\nbootstrap_servers = {:?}\n", real.bootstrap))?;
    let mut check = Command::new(env!("CARGO_BIN_EXE_kafka-parquet-sink"));
    check.args(["check", "--config"]).arg(&cfg);
    for (k, v) in &spec(REGISTRY_PASSWORD).env {
        check.env(k, v);
    }
    let out = check.output()?;
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "check failed:\n{printed}");
    assert!(printed.contains("sasl.username") && printed.contains("***"), "check output:\n{printed}");
    assert_no_secret("check output", &printed);

    // Every record went over HTTPS into the TLS server's bucket.
    let files = read_lake_with(&format!("http://127.0.0.1:{s3_http}"), (S3_ACCESS_KEY, S3_SECRET), &prefix)?;
    let rows: usize = files.iter().map(|f| f.rows.len()).sum();
    let expected = produced.iter().filter(|(_, e)| e.op != kafka_parquet_sink::testkit::Op::Tombstone).count();
    assert_eq!(rows, expected, "rows in the TLS server's bucket");
    Ok(())
}

/// A client certificate for `CN=kps-sink` signed by the test CA of [`certificates`].
fn client_certificate(dir: &Path) -> TestResult<(String, String)> {
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=kps-sink"])?;
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")?;
    openssl(
        dir,
        &["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext"],
    )?;
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    Ok((p("client.pem"), p("client.key")))
}

/// A registry that wants a client certificate (mutual TLS) and a bearer token: without the
/// certificate, or with another token, start-up stops naming the key; with both, every record
/// lands and the token is never printed.
#[test]
fn registry_over_mutual_tls_with_a_bearer_token() -> TestResult {
    const TOKEN: &str = "BEARER-SECRET-5e21aa";
    let stack = Stack::get()?;
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = certificates(dir.path())?;
    let (client_cert, client_key) = client_certificate(dir.path())?;
    let topic = unique("it-sec-mtls");
    let produced = produce(&stack, &topic, 2, 100, None, 62)?;
    let (_registry, port) = registry_with(dir.path(), &cert, &key, &["--bearer", TOKEN, "--client-ca", &ca])?;
    let tls = Stack { registry: format!("https://127.0.0.1:{port}"), ..stack.clone() };
    let (group, prefix) = (unique("it-group"), unique("it/sec-mtls"));
    let spec = |token: &str, client: bool| {
        let mut s = SinkSpec::new(&tls, &topic, &group, &prefix, "max_records = 50\nrotate_interval_ms = 1000")
            .env("KPS__SCHEMA_REGISTRY__CA_FILE", &ca)
            .env("KPS__SCHEMA_REGISTRY__BEARER_TOKEN", token);
        if client {
            s = s.env("KPS__SCHEMA_REGISTRY__CLIENT_CERT_FILE", &client_cert).env("KPS__SCHEMA_REGISTRY__CLIENT_KEY_FILE", &client_key);
        }
        s
    };
    // The handshake alone names the refusal, whatever the HTTP client made of the close.
    let probe = |client: bool| -> TestResult<Option<String>> {
        let mut c = RegistryConfig { url: tls.registry.clone(), ca_file: ca.clone(), ..RegistryConfig::default() };
        if client {
            (c.client_cert_file, c.client_key_file) = (client_cert.clone(), client_key.clone());
        }
        Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(tls_refusal(&c)))
    };
    let refused = probe(false)?;
    assert!(refused.as_deref().is_some_and(|a| a.contains("CertificateRequired")), "probe without a client certificate: {refused:?}");
    assert_eq!(probe(true)?, None, "probe with the client certificate");
    for (token, client, want) in [
        (TOKEN, false, "schema_registry.client_cert_file: the registry at"),
        ("BEARER-SECRET-wrong", true, "schema_registry.bearer_token: the registry at"),
    ] {
        let mut refused = spec(token, client).start()?;
        let status = wait_for(Duration::from_secs(30), "the refused start to exit", || Ok(refused.child.try_wait()?))?;
        let log = refused.log();
        assert_eq!(status.code(), Some(2), "exit status, expecting {want:?}:\n{log}");
        assert!(log.contains(want), "expected {want:?}:\n{log}");
        assert!(!log.contains(token), "the token is printed:\n{log}");
    }
    let mut sink = spec(TOKEN, true).start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "sink exit status");
    assert!(!sink.log().contains(TOKEN), "the log shows the bearer token");
    audit_lake(&stack, &prefix, &produced)?.exactly_once()?;
    Ok(())
}
