#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafka_parquet_sink::config::{Config, LogConfig, LogFormat};
use kafka_parquet_sink::metrics::{self, Metrics};
use kafka_parquet_sink::pipeline::Pipeline;
use kafka_parquet_sink::preflight;
use kafka_parquet_sink::source::Auth;
use kafka_parquet_sink::store::Store;

#[derive(Parser)]
#[command(name = "kafka-parquet-sink", version, about = "Debezium Avro topics → Snappy Parquet on S3")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that Kafka, the registry and the bucket answer (exit 2 naming the key to fix if
    /// not), then consume, write Parquet, upload, commit; until SIGTERM or SIGINT.
    Run {
        /// TOML config file; `KPS__SECTION__KEY` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the config and print it with secrets redacted; exit 2 on any error.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Walk the troubleshooting checkpoints (broker, topic, messages, registry, decoding, bucket,
    /// lag, files) and print one line each; exit 0 only when all pass.
    Doctor {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the TOML equivalent of a Confluent S3 sink connector config (JSON), with a warning
    /// line for each key that cannot be carried over.
    ImportConnector {
        /// The connector's JSON: `{"name": ..., "config": {...}}` or the bare config.
        file: PathBuf,
    },
    /// Print this binary's version, librdkafka's and the features it was built with (TLS, SASL
    /// mechanisms, OIDC, compression codecs).
    Version,
    /// Print a running sink's /status for a person; exit 0 when it is RUNNING.
    Status {
        /// Base URL of the sink's HTTP endpoint (metrics.listen).
        #[arg(long, default_value = "http://127.0.0.1:9102")]
        url: String,
    },
}

/// Logs to stderr in the configured format; `RUST_LOG` wins over `log.level`. delta_kernel's own
/// events (a line per snapshot it builds, an ERROR for a table that does not exist yet) are off
/// unless the filter names `delta_kernel`: its errors reach the log as the sink's, with context.
fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|v| !v.trim().is_empty());
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    if !from_env.as_deref().unwrap_or(&log.level).contains("delta_kernel") {
        if let Ok(quiet) = "delta_kernel=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Run { config } | Command::Check { config } | Command::Doctor { config } => config.clone(),
        Command::Status { url } => return status(url),
        Command::ImportConnector { file } => return import_connector(file),
        Command::Version => return version(),
    };
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log);
    match cli.command {
        Command::Check { .. } => {
            // Opening the store reaches nothing: it names the location and the credentials'
            // source (or what stops them being found).
            let store = kafka_parquet_sink::metrics::Metrics::new().map_err(|e| e.to_string()).and_then(|m| Store::open(&config, m).map_err(|e| e.to_string()));
            match store {
                Ok(store) => {
                    println!("# object store: {}", store.location());
                    if let Some(c) = store.credentials() {
                        println!("# credentials: {c}");
                    }
                    if config.kafka.auth == kafka_parquet_sink::config::KafkaAuth::AwsMskIam {
                        match kafka_parquet_sink::store::aws_credentials(&config.s3) {
                            Ok((_, c)) => println!("# kafka: AWS MSK IAM tokens signed with {c}"),
                            Err(e) => {
                                eprintln!("invalid configuration:\n  - kafka.auth: {e}");
                                return ExitCode::from(2);
                            }
                        }
                    }
                    print!("{}", config.to_redacted_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("invalid configuration:\n  - {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { .. } => run(config),
        Command::Doctor { .. } => doctor(config),
        // Handled before a config is loaded.
        Command::Status { .. } | Command::ImportConnector { .. } | Command::Version => ExitCode::FAILURE,
    }
}

fn version() -> ExitCode {
    let (librdkafka, features) = kafka_parquet_sink::source::librdkafka();
    println!("kafka-parquet-sink {}", env!("CARGO_PKG_VERSION"));
    println!("librdkafka {librdkafka}");
    println!("builtin.features {features}");
    ExitCode::SUCCESS
}

/// The Kafka clients' authentication (`kafka.auth`), with the store's AWS credential chain for
/// MSK IAM; the error names the key.
async fn kafka_auth(config: &Config) -> Result<Auth, String> {
    let credentials = || kafka_parquet_sink::store::aws_credentials(&config.s3).map(|(p, info)| (p, info.to_string())).map_err(|e| e.to_string());
    Auth::from_config(config, credentials).await.map_err(|e| e.to_string())
}

fn import_connector(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match kafka_parquet_sink::import::import(&text) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// Runs `job` with the service's metrics on a new runtime (`run` and `doctor`).
fn with_metrics<F: std::future::Future<Output = ExitCode>>(job: impl FnOnce(Metrics) -> F) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match Metrics::new() {
        Ok(metrics) => rt.block_on(job(metrics)),
        Err(e) => {
            eprintln!("cannot register metrics: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn status(url: &str) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(kafka_parquet_sink::report::status(url)) {
        Ok((text, running)) => {
            print!("{text}");
            if running {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn doctor(config: Config) -> ExitCode {
    with_metrics(|metrics| async move {
        let mut store = match Store::open(&config, metrics) {
            Ok(s) => s,
            Err(e) => {
                println!("❌ s3 configuration: {e}");
                return ExitCode::FAILURE;
            }
        };
        let auth = match kafka_auth(&config).await {
            Ok(a) => a,
            Err(e) => {
                println!("❌ kafka authentication: {e}");
                return ExitCode::FAILURE;
            }
        };
        let checks = kafka_parquet_sink::doctor::run(&config, &mut store, &auth).await;
        for c in &checks {
            println!("{c}");
        }
        if checks.iter().all(|c| c.outcome.is_ok()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn run(config: Config) -> ExitCode {
    with_metrics(|metrics| async move {
        if let Ok(addr) = config.metrics.listen.parse() {
            if let Err(e) = metrics::serve(addr, metrics.clone()).await {
                eprintln!("metrics.listen: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
            tracing::info!(%addr, "metrics on /metrics");
        }
        let mut store = match Store::open(&config, metrics.clone()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start: s3: {e}");
                return ExitCode::from(2);
            }
        };
        let auth = match kafka_auth(&config).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("cannot start:\n  - {e}");
                return ExitCode::from(2);
            }
        };
        let problems = preflight::check(&config, &mut store, &auth).await;
        if !problems.is_empty() {
            eprintln!("cannot start:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"));
            return ExitCode::from(2);
        }
        let pipeline = match Pipeline::with_store(&config, metrics, store, auth) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let lake = config.location().map(|l| l.url()).unwrap_or_default();
        tracing::info!(topics = ?config.kafka.topics, group = %config.kafka.group_id, %lake, format = ?config.output.format, "running");
        match pipeline.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, retryable = e.retryable(), stage = e.stage(), "stopped on a fatal error; nothing past the last committed offset was lost");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the sink");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
