#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafka_parquet_sink::config::Config;
use kafka_parquet_sink::metrics::{self, Metrics};
use kafka_parquet_sink::pipeline::Pipeline;
use kafka_parquet_sink::preflight;
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
    /// Validate the config and print it with secrets redacted; exit 1 on any error.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Run { config } | Command::Check { config } => config.clone(),
    };
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check { .. } => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Run { .. } => run(config),
    }
}

fn run(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = match Metrics::new() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("cannot register metrics: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(addr) = config.metrics.listen.parse() {
            if let Err(e) = metrics::serve(addr, metrics.clone()).await {
                eprintln!("metrics.listen: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
            tracing::info!(%addr, "metrics on /metrics");
        }
        let store = match Store::s3(&config.s3, &config.output.prefix, metrics.clone()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start: s3: {e}");
                return ExitCode::from(2);
            }
        };
        let problems = preflight::check(&config, &store).await;
        if !problems.is_empty() {
            eprintln!("cannot start:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"));
            return ExitCode::from(2);
        }
        let pipeline = match Pipeline::with_store(&config, metrics, store) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(topics = ?config.kafka.topics, group = %config.kafka.group_id, bucket = %config.s3.bucket, prefix = %config.output.prefix, "running");
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
