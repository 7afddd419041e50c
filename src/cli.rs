//! The `wcgid` command line: `serve` (the default) and `check`.
//!
//! Exit codes: 0 on success, 64 (EX_USAGE) when the configuration or a module
//! it names is unusable, 1 when serving fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cgi::{Gateway, Router};
use crate::config::Config;
use crate::fastcgi::Caps;
use crate::listener::{self, Listener};
use crate::sandbox::Engine;

/// Total bytes of one request's FastCGI PARAMS.
const MAX_PARAMS_BYTES: usize = 1 << 20;
/// Name-value pairs in one request's FastCGI PARAMS.
const MAX_PARAMS: usize = 10_000;

#[derive(Parser)]
#[command(
    name = "wcgid",
    version,
    about = "Runs WASI CGI programs behind nginx or Apache over FastCGI"
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = "/etc/wcgid/wcgid.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve FastCGI requests (the default).
    Serve,
    /// Validate the configuration and compile every module, then exit.
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(64);
        }
    };
    let engine = match &config.server.cache_dir {
        None => Ok(Engine::default()),
        Some(dir) => Engine::default().with_cache(dir),
    };
    let engine = match engine {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!("invalid configuration: server.cache_dir: {e}");
            return ExitCode::from(64);
        }
    };
    let router = match Router::load(&engine, &config) {
        Ok(router) => router,
        Err(e) => {
            tracing::error!("cannot load: {e}");
            return ExitCode::from(64);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => {
            println!(
                "{}: configuration valid, {} module(s) compiled",
                cli.config.display(),
                router.app_count()
            );
            ExitCode::SUCCESS
        }
        Command::Serve => match serve(config, engine, router) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: Config, engine: Engine, router: Router) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = runtime.block_on(async {
        let server = &config.server;
        let listener = Listener::bind(server)?;
        let caps = Caps {
            max_conns: server.max_connections,
            max_reqs: server.max_connections,
            max_params_bytes: MAX_PARAMS_BYTES,
            max_params: MAX_PARAMS,
        };
        let gateway = Arc::new(Gateway::new(engine, router, server.workers));
        tracing::info!(listen = %server.listen, workers = server.workers, apps = config.apps.len(), "serving");
        listener::serve(listener, gateway, caps, stop_signal()).await;
        Ok(())
    });
    // A guest still running after the drain must not hold the process: its
    // worker thread is abandoned, not joined.
    runtime.shutdown_timeout(Duration::from_millis(100));
    tracing::info!("stopped");
    served
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

/// Logs to stderr (journald adds its own timestamps under systemd), filtered
/// by `WCGID_LOG` (tracing env-filter syntax, default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WCGID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
