//! Configuration: a TOML file, then `WCGID_<SECTION>__<KEY>` environment
//! overrides, read into a raw form that rejects unknown keys, then validated
//! into [`Config`]. Every error names the key and the bad value.
//!
//! `conf/wcgid.toml` is the commented reference of every key.
//!
//! # Layout
//! - this file: the validated configuration, what the rest of wcgid reads,
//!   and [`Config::load`];
//! - `raw`: the keys as read from the file and the environment, with their
//!   defaults;
//! - `validate`: raw into validated, each rule with its error;
//! - `units`: sizes and durations written as text.

mod raw;
#[cfg(test)]
mod tests;
mod units;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sandbox::Mount;
use raw::Raw;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Load { path: PathBuf, source: config::ConfigError },
    #[error("{key} = {value:?}: {why}")]
    Invalid { key: String, value: String, why: String },
}

/// `server.listen` when the file sets none.
pub const DEFAULT_LISTEN: &str = "unix:/run/wcgid/wcgid.sock";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    /// The admin socket (status, metrics, ping), if any.
    pub admin: Option<Socket>,
    pub apps: Vec<App>,
    pub cgi_bin: Option<CgiBin>,
    pub interpreters: Vec<Interpreter>,
    pub params: ParamsLimits,
}

/// What one request's FastCGI PARAMS may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsLimits {
    /// Total bytes of the PARAMS stream.
    pub bytes: usize,
    /// Name-value pairs.
    pub count: usize,
}

/// What one request of a guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, in bytes (a multiple of the 64 KiB Wasm page).
    pub memory: u64,
    /// Wall-clock time of a run.
    pub timeout: Duration,
    /// Request body bytes.
    pub max_body: u64,
    /// Response bytes (head and body) the guest may write.
    pub max_output: u64,
    /// Stderr bytes logged.
    pub max_stderr: usize,
    /// Fuel (Wasmer metering points, one per operator) of a run; 0: the
    /// app's code is not metered.
    pub fuel: u64,
    /// Bytes the guest's private `/tmp` may hold (file contents, and a small
    /// cost per file, directory and name); 0: it has none.
    pub scratch: u64,
}

/// A socket to listen on, and who may connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub listen: Listen,
    /// Permission bits of a Unix socket.
    pub mode: u32,
    /// Group that owns a Unix socket (name, gid).
    pub group: Option<(String, u32)>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub socket: Socket,
    /// Worker processes, each running one guest at a time.
    pub workers: usize,
    /// FastCGI connections served at once.
    pub max_connections: usize,
    /// How long a request may wait behind another connection's guest on
    /// its worker before it is answered 503 (FCGI_OVERLOADED).
    pub queue_timeout: Duration,
    /// A log line per request (target `wcgid::access`).
    pub access_log: bool,
    /// Where compiled modules are kept between runs (absolute), if anywhere.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    /// Path prefix matched against SCRIPT_NAME, without a trailing slash
    /// (except the root route `/`).
    pub route: String,
    pub module: PathBuf,
    pub guest: Guest,
}

#[derive(Debug, Clone)]
pub struct CgiBin {
    /// The directory whose `.wasm` files are served (absolute).
    pub root: PathBuf,
    pub guest: Guest,
}

/// An interpreter for `[cgi_bin]` scripts.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub name: String,
    pub module: PathBuf,
    pub driver: Driver,
    /// The `#!` program names that select it (`perl` for `#!/usr/bin/perl`).
    pub names: Vec<String>,
    /// The file extensions (without the dot) that select it for a script
    /// without a `#!` line.
    pub extensions: Vec<String>,
    /// Host directories of pure-language modules, visible read-only at the
    /// same path and searched by the interpreter after its own library.
    pub lib: Vec<PathBuf>,
    /// Modules loaded into its snapshot besides those the scripts import.
    pub preload: Vec<String>,
}

/// How an interpreter's module is booted, snapshotted and given a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// zeroperl: a WASI reactor build of Perl 5.
    Perl,
    /// CPython's WASI command build, made resumable with Binaryen's asyncify.
    Python,
}

impl Driver {
    pub const ALL: [(&'static str, Driver); 2] = [("perl", Driver::Perl), ("python", Driver::Python)];

    pub fn name(self) -> &'static str {
        Driver::ALL.iter().find(|(_, d)| *d == self).expect("listed").0
    }

    /// The `#!` names and extensions an interpreter of this kind answers to
    /// unless configured otherwise.
    pub fn defaults(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Driver::Perl => (&["perl", "perl5"], &["pl"]),
            Driver::Python => (&["python", "python3"], &["py"]),
        }
    }
}

/// What a guest gets besides the request: extra environment, mounts, and
/// whether `HTTP_PROXY` may reach it.
#[derive(Debug, Clone)]
pub struct Guest {
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub pass_http_proxy: bool,
    pub limits: Limits,
}

impl Config {
    /// Reads `path` and the environment overrides, and validates the result.
    /// Relative paths in the file are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let overrides: config::Map<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("WCGID_") && k.contains("__"))
            .collect();
        Self::load_with(path, overrides)
    }

    fn load_with(path: &Path, overrides: config::Map<String, String>) -> Result<Config, Error> {
        let load = |source| Error::Load {
            path: path.into(),
            source,
        };
        let raw: Raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("WCGID")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(overrides)),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(load)?;
        // Canonical, so that paths joined to it are absolute.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .map_err(|e| validate::invalid("config file", path.display(), e.to_string()))?;
        raw.validate(&base)
    }
}

/// `unix:/absolute/path` or `tcp:IP:PORT`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err("the socket path must be absolute".into());
        }
        // sun_path holds 108 bytes, NUL included.
        if path.as_os_str().len() > 107 {
            return Err("the socket path is longer than 107 bytes".into());
        }
        Ok(Listen::Unix(path))
    } else if let Some(addr) = s.strip_prefix("tcp:") {
        addr.parse()
            .map(Listen::Tcp)
            .map_err(|_| "expected tcp:IP:PORT, like tcp:127.0.0.1:9000".into())
    } else {
        Err("expected unix:/path/to.sock or tcp:IP:PORT".into())
    }
}
