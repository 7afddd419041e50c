//! The `wcgid` command line: `serve` (the default), `check`, `status`,
//! `preinit` and `migrate`.
//!
//! Exit codes: 0 on success, 64 (EX_USAGE) when the configuration or a module
//! it names is unusable, 1 when serving fails; `status`: 69
//! (EX_UNAVAILABLE) when the admin socket does not answer, 1 when it
//! answers with an error; `migrate`: 64 for a directory, interpreter or
//! output file it cannot use, 1 when it cannot write, 70 (EX_SOFTWARE) when
//! what it wrote does not load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::{TcpStream, UnixStream};

use crate::cgi::Router;
use crate::config::{Config, Listen};
use crate::fastcgi::client;
use crate::migrate;
use crate::preinit;
use crate::sandbox::{Engine, Mount};
use crate::status;
use crate::supervisor;
use crate::worker;

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
    /// Print the status page of the running daemon, from its admin socket.
    Status(StatusArgs),
    /// Pre-initialize a module, Wizer-compatibly: run its init function and
    /// write a module that starts from the state it left.
    Preinit(PreinitArgs),
    /// Read a cgi-bin directory of Perl and Python CGI scripts, say which run
    /// as they are, and write the configuration that serves it.
    Migrate(MigrateArgs),
    /// A worker process, started by `serve` (not for use by hand).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(clap::Args)]
struct PreinitArgs {
    /// The module to pre-initialize.
    input: PathBuf,
    /// Where to write the pre-initialized module.
    #[arg(short, long)]
    output: PathBuf,
    /// The init function [default: wizer-initialize, else wizer.initialize].
    #[arg(long, value_name = "NAME")]
    init_func: Option<String>,
    /// Afterwards, export the function exported as SRC as DST, e.g.
    /// `_start=wizer.resume` (repeatable).
    #[arg(long = "rename-func", value_name = "DST=SRC", value_parser = parse_rename)]
    renames: Vec<(String, String)>,
    /// A host directory the init may read, at a guest path (repeatable).
    #[arg(long = "mount", value_name = "HOST::GUEST", value_parser = parse_mount)]
    mounts: Vec<Mount>,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// The cgi-bin directory (only read).
    #[arg(value_name = "SRC_DIR")]
    source: PathBuf,
    /// The directory of the interpreters, perl.wasm and python.wasm
    /// (`scripts/fetch-interpreters DIR` downloads them).
    #[arg(long, value_name = "DIR")]
    interpreters: PathBuf,
    /// Where wcgid will listen.
    #[arg(
        long,
        value_name = "unix:PATH|tcp:IP:PORT",
        value_parser = crate::config::parse_listen,
        default_value = crate::config::DEFAULT_LISTEN
    )]
    listen: Listen,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Where to write the configuration.
    #[arg(short, long, value_name = "OUT.toml")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The status page as JSON.
    #[arg(long, conflicts_with_all = ["metrics", "ping"])]
    json: bool,
    /// The Prometheus metrics.
    #[arg(long, conflicts_with = "ping")]
    metrics: bool,
    /// Only whether the daemon serves: `pong`.
    #[arg(long)]
    ping: bool,
    /// The admin socket [default: admin.listen of the configuration].
    #[arg(long, value_name = "unix:PATH|tcp:IP:PORT", value_parser = crate::config::parse_listen)]
    socket: Option<Listen>,
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((dst, src)) if !dst.is_empty() && !src.is_empty() => Ok((dst.into(), src.into())),
        _ => Err(format!("expected DST=SRC, like _start=wizer.resume, not {s:?}")),
    }
}

fn parse_mount(s: &str) -> Result<Mount, String> {
    match s.split_once("::") {
        Some((host, guest)) if !host.is_empty() && guest.starts_with('/') => Ok(Mount {
            host: host.into(),
            guest: guest.into(),
        }),
        _ => Err(format!(
            "expected HOST::GUEST with an absolute GUEST, like ./data::/data, not {s:?}"
        )),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // As a container's entrypoint, before any thread exists.
    if matches!(cli.command, None | Some(Command::Serve))
        && let Err(e) = supervisor::init::become_init_if_pid1()
    {
        eprintln!("error: cannot run as PID 1: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = status::log::init() {
        eprintln!("error: {e}");
        return ExitCode::from(64);
    }
    if let Some(Command::Preinit(args)) = cli.command {
        return preinit(args);
    }
    if let Some(Command::Status(args)) = cli.command {
        return status(&cli.config, args);
    }
    if let Some(Command::Migrate(args)) = cli.command {
        return migrate(args);
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(64);
        }
    };
    // Serving needs an AOT cache for its workers: a private one when none
    // is configured, kept for the daemon's lifetime.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let private_cache = match (&config.server.cache_dir, serving) {
        (None, true) => match tempfile::Builder::new().prefix("wcgid-aot-").tempdir() {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::error!("cannot make a private AOT cache directory: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let cache_dir = config
        .server
        .cache_dir
        .clone()
        .or_else(|| private_cache.as_ref().map(|d| d.path().to_owned()));
    let engine = match &cache_dir {
        None => Ok(Engine::default()),
        Some(dir) => Engine::default().with_cache(dir),
    };
    let engine = match engine {
        Ok(engine) => engine,
        // Root checking the configuration of a service whose cache belongs
        // to its own (dynamic) user: validate all the same.
        Err(e) if matches!(cli.command, Some(Command::Check)) => {
            tracing::warn!("server.cache_dir: {e}; checking without it (the cache is not warmed)");
            Engine::default()
        }
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
                "{}: configuration valid, {} module(s) compiled, {} interpreter(s) snapshotted",
                cli.config.display(),
                router.app_count(),
                router.interpreter_count()
            );
            ExitCode::SUCCESS
        }
        Command::Serve => {
            // The workers load the modules from the cache just filled.
            drop(router);
            let cache_dir = cache_dir.expect("serving has a cache");
            match supervisor::supervise(&cli.config, &config, &cache_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Worker => match worker::run(engine, router, &config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Preinit(_) | Command::Status(_) | Command::Migrate(_) => unreachable!("handled above"),
    }
}

/// `wcgid status`: the page from the admin socket on stdout.
fn status(config: &Path, args: StatusArgs) -> ExitCode {
    let listen = match args.socket {
        Some(listen) => listen,
        None => match Config::load(config).map(|c| c.admin) {
            Ok(Some(admin)) => admin.listen,
            Ok(None) => {
                tracing::error!("{}: no [admin] socket configured; pass --socket", config.display());
                return ExitCode::from(64);
            }
            Err(e) => {
                tracing::error!("invalid configuration: {e}");
                return ExitCode::from(64);
            }
        },
    };
    let (page, query) = match (args.json, args.metrics, args.ping) {
        (true, _, _) => ("status", "json"),
        (_, true, _) => ("metrics", ""),
        (_, _, true) => ("ping", ""),
        _ => ("status", ""),
    };
    match fetch(&listen, page, query) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            tracing::error!("{listen} answered {code}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(69)
        }
    }
}

/// `wcgid preinit`: exit 0, 65 (EX_DATAERR) for a module that is invalid
/// or cannot be pre-initialized, 1 when its init fails or the output cannot
/// be written.
fn preinit(args: PreinitArgs) -> ExitCode {
    let options = preinit::Options {
        input: args.input,
        output: args.output,
        init_func: args.init_func,
        renames: args.renames,
        mounts: args.mounts,
    };
    match preinit::run(&Engine::default(), &options) {
        Ok(report) => {
            for warning in &report.warnings {
                tracing::warn!("{warning}");
            }
            println!(
                "{}: ran {}; {} global(s), {} data segment(s) of {} bytes from {} byte(s) of memory; {} bytes",
                options.output.display(),
                if report.calls.is_empty() {
                    "nothing".to_owned()
                } else {
                    report.calls.join(", ")
                },
                report.globals,
                report.segments,
                report.data_bytes,
                report.memory_bytes.iter().sum::<usize>(),
                report.output_bytes,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            match e {
                preinit::Error::Invalid { .. } | preinit::Error::Refused { .. } => ExitCode::from(65),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `wcgid migrate`: the report on stdout, once the configuration is written.
fn migrate(args: MigrateArgs) -> ExitCode {
    let options = migrate::Options {
        source: args.source,
        interpreters: args.interpreters,
        listen: args.listen,
        force: args.force,
        output: args.output,
    };
    match migrate::run(&options) {
        Ok(migration) => {
            print!("{migration}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The largest page `wcgid status` reads.
const MAX_PAGE: usize = 64 << 20;

/// Asks the admin socket at `listen` for `page` (`status`, `metrics` or
/// `ping`) with `query`, as `wcgid status` does: its status code and body.
fn fetch(listen: &Listen, page: &str, query: &str) -> anyhow::Result<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let script = format!("/{page}");
    let params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", script.as_str()),
        ("QUERY_STRING", query),
    ];
    let response = runtime.block_on(async {
        let exchange = async {
            match listen {
                Listen::Unix(path) => client::request(UnixStream::connect(path).await?, &params, MAX_PAGE).await,
                Listen::Tcp(addr) => client::request(TcpStream::connect(addr).await?, &params, MAX_PAGE).await,
            }
        };
        tokio::time::timeout(FETCH_WITHIN, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{listen} did not answer within {FETCH_WITHIN:?}"))?
            .map_err(|e| anyhow::anyhow!("{listen}: {e}"))
    })?;
    let stdout = String::from_utf8_lossy(&response.stdout);
    let (head, body) = stdout.split_once("\r\n\r\n").unwrap_or(("", &stdout));
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .and_then(|s| s.get(..3)?.parse().ok())
        .unwrap_or(200);
    Ok((status, body.to_owned()))
}

/// How long `wcgid status` waits for its answer.
const FETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
