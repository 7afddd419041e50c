//! Configuration: a TOML file, then `WCGID_<SECTION>__<KEY>` environment
//! overrides, read into a raw form that rejects unknown keys, then validated
//! into [`Config`]. Every error names the key and the bad value.
//!
//! `conf/wcgid.toml` is the commented reference of every key.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::{Mount, SCRATCH_DIR};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Load { path: PathBuf, source: config::ConfigError },
    #[error("{key} = {value:?}: {why}")]
    Invalid { key: String, value: String, why: String },
}

fn invalid(key: impl Into<String>, value: impl std::fmt::Display, why: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.into(),
        value: value.to_string(),
        why: why.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, rename = "app")]
    apps: Vec<RawApp>,
    cgi_bin: Option<RawCgiBin>,
    #[serde(default, rename = "interpreter")]
    interpreters: Vec<RawInterpreter>,
    admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    #[serde(default = "default_socket_mode")]
    socket_mode: String,
    socket_group: Option<String>,
    #[serde(default)]
    force_socket_mode: bool,
}

/// `server.listen` when the file sets none.
pub const DEFAULT_LISTEN: &str = "unix:/run/wcgid/wcgid.sock";

fn default_socket_mode() -> String {
    "0660".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    socket_mode: String,
    socket_group: Option<String>,
    force_socket_mode: bool,
    workers: usize,
    queue_timeout: String,
    access_log: bool,
    max_connections: usize,
    cache_dir: Option<PathBuf>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: DEFAULT_LISTEN.into(),
            socket_mode: default_socket_mode(),
            socket_group: None,
            force_socket_mode: false,
            workers: 0,
            queue_timeout: "5s".into(),
            access_log: false,
            max_connections: 1024,
            cache_dir: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    route: String,
    module: PathBuf,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default)]
    pass_http_proxy: bool,
    limits: Option<RawGuestLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCgiBin {
    root: PathBuf,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default)]
    pass_http_proxy: bool,
    limits: Option<RawGuestLimits>,
}

/// `[[interpreter]]`: a WASI build of a scripting language that runs the
/// `[cgi_bin]` scripts its `#!` names or extensions select.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterpreter {
    name: String,
    module: PathBuf,
    driver: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    lib: Vec<PathBuf>,
    #[serde(default)]
    preload: Vec<String>,
}

/// `[limits]`: the defaults of every guest's limits, and the bounds on what
/// the FastCGI decoder accepts before any app is known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    memory: String,
    timeout: String,
    max_body: String,
    max_output: String,
    max_stderr: String,
    fuel: u64,
    scratch: String,
    max_params: String,
    max_params_count: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            memory: "128MiB".into(),
            timeout: "30s".into(),
            max_body: "16MiB".into(),
            max_output: "64MiB".into(),
            max_stderr: "64KiB".into(),
            fuel: 0,
            scratch: "16MiB".into(),
            max_params: "1MiB".into(),
            max_params_count: 10_000,
        }
    }
}

/// `[app.limits]` and `[cgi_bin.limits]`: overrides of the guest limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuestLimits {
    memory: Option<String>,
    timeout: Option<String>,
    max_body: Option<String>,
    max_output: Option<String>,
    max_stderr: Option<String>,
    fuel: Option<u64>,
    scratch: Option<String>,
}

/// The guest settings shared by `[[app]]` and `[cgi_bin]` (kept as plain
/// fields there: serde cannot deny unknown keys through `flatten`).
struct RawGuest {
    env: BTreeMap<String, String>,
    mounts: Vec<RawMount>,
    pass_http_proxy: bool,
    limits: Option<RawGuestLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    host: PathBuf,
    guest: String,
}

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
            .map_err(|e| invalid("config file", path.display(), e.to_string()))?;
        raw.validate(&base)
    }
}

impl Raw {
    fn validate(self, base: &Path) -> Result<Config, Error> {
        let server = self.server.validate(base)?;
        let (limits, params) = self.limits.validate()?;
        let mut names = HashSet::new();
        let mut routes = HashSet::new();
        let mut apps = Vec::with_capacity(self.apps.len());
        for (i, app) in self.apps.into_iter().enumerate() {
            let key = |field: &str| format!("app[{i}].{field}");
            if app.name.is_empty()
                || !app
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid(key("name"), &app.name, "use letters, digits, '-', '_' and '.'"));
            }
            if !names.insert(app.name.clone()) {
                return Err(invalid(key("name"), &app.name, "another app has this name"));
            }
            let route = normalize_route(&app.route).ok_or_else(|| {
                invalid(
                    key("route"),
                    &app.route,
                    "must be an absolute URL path like \"/hello\", without '..', '//' or '?'",
                )
            })?;
            if !routes.insert(route.clone()) {
                return Err(invalid(key("route"), &app.route, "another app has this route"));
            }
            let guest = RawGuest {
                env: app.env,
                mounts: app.mounts,
                pass_http_proxy: app.pass_http_proxy,
                limits: app.limits,
            };
            apps.push(App {
                guest: guest.validate(&key(""), base, limits)?,
                module: base.join(&app.module),
                name: app.name,
                route,
            });
        }
        let cgi_bin = self
            .cgi_bin
            .map(|c| {
                let root = base.join(&c.root);
                if !root.is_dir() {
                    return Err(invalid("cgi_bin.root", c.root.display(), "not a directory"));
                }
                let guest = RawGuest {
                    env: c.env,
                    mounts: c.mounts,
                    pass_http_proxy: c.pass_http_proxy,
                    limits: c.limits,
                };
                Ok(CgiBin {
                    root,
                    guest: guest.validate("cgi_bin.", base, limits)?,
                })
            })
            .transpose()?;
        let interpreters = validate_interpreters(self.interpreters, base, cgi_bin.is_some())?;
        let admin = self
            .admin
            .map(|a| socket("admin.", &a.listen, &a.socket_mode, a.socket_group, a.force_socket_mode))
            .transpose()?;
        if admin.as_ref().is_some_and(|a| a.listen == server.socket.listen) {
            return Err(invalid(
                "admin.listen",
                &server.socket.listen,
                "must differ from server.listen",
            ));
        }
        Ok(Config {
            server,
            admin,
            apps,
            cgi_bin,
            interpreters,
            params,
        })
    }
}

fn validate_interpreters(raw: Vec<RawInterpreter>, base: &Path, cgi_bin: bool) -> Result<Vec<Interpreter>, Error> {
    if !raw.is_empty() && !cgi_bin {
        return Err(invalid(
            "interpreter[0].name",
            &raw[0].name,
            "interpreters run the scripts of [cgi_bin], and there is none",
        ));
    }
    let mut names = HashSet::new();
    let mut selectors = HashSet::new();
    let mut interpreters = Vec::with_capacity(raw.len());
    for (i, it) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("interpreter[{i}].{field}");
        if !names.insert(it.name.clone()) {
            return Err(invalid(key("name"), &it.name, "another interpreter has this name"));
        }
        let driver = Driver::ALL
            .iter()
            .find(|(name, _)| *name == it.driver)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                let known: Vec<&str> = Driver::ALL.iter().map(|(n, _)| *n).collect();
                invalid(
                    key("driver"),
                    &it.driver,
                    format!("must be one of {}", known.join(", ")),
                )
            })?;
        let module = base.join(&it.module);
        if !module.is_file() {
            return Err(invalid(
                key("module"),
                it.module.display(),
                "not a file (scripts/fetch-interpreters DIR downloads the interpreters)",
            ));
        }
        let (default_names, default_extensions) = driver.defaults();
        let or_default = |given: Vec<String>, default: &[&str]| match given.is_empty() {
            true => default.iter().map(|s| s.to_string()).collect(),
            false => given,
        };
        let names = or_default(it.names, default_names);
        let extensions = or_default(it.extensions, default_extensions);
        for name in &names {
            if name.is_empty() || name.contains('/') {
                return Err(invalid(key("names"), name, "a program name, without '/'"));
            }
            if !selectors.insert(format!("#!{name}")) {
                return Err(invalid(key("names"), name, "another interpreter answers to this name"));
            }
        }
        for ext in &extensions {
            if ext.is_empty() || ext.contains(['/', '.']) {
                return Err(invalid(
                    key("extensions"),
                    ext,
                    "an extension without its dot, like \"pl\"",
                ));
            }
            if ext == "wasm" || !selectors.insert(format!(".{ext}")) {
                return Err(invalid(
                    key("extensions"),
                    ext,
                    "another interpreter or WebAssembly has this extension",
                ));
            }
        }
        let mut lib = Vec::with_capacity(it.lib.len());
        for dir in it.lib {
            // Visible in the guest at the same path, so it must be absolute.
            if !dir.is_absolute() || !dir.is_dir() {
                return Err(invalid(
                    key("lib"),
                    dir.display(),
                    "not an absolute path to a directory",
                ));
            }
            lib.push(dir);
        }
        interpreters.push(Interpreter {
            name: it.name,
            module,
            driver,
            names,
            extensions,
            lib,
            preload: it.preload,
        });
    }
    Ok(interpreters)
}

impl RawServer {
    fn validate(self, base: &Path) -> Result<Server, Error> {
        let socket = socket(
            "server.",
            &self.listen,
            &self.socket_mode,
            self.socket_group,
            self.force_socket_mode,
        )?;
        if self.max_connections == 0 {
            return Err(invalid("server.max_connections", 0, "must be at least 1"));
        }
        // Each worker serves at least one connection.
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(self.max_connections);
        let queue_timeout = parse_duration(&self.queue_timeout)
            .and_then(|t| {
                (Duration::from_millis(100)..=Duration::from_secs(3600))
                    .contains(&t)
                    .then_some(t)
                    .ok_or_else(|| "must be from 100ms to 1h".to_owned())
            })
            .map_err(|why| invalid("server.queue_timeout", &self.queue_timeout, why))?;
        Ok(Server {
            socket,
            workers,
            max_connections: self.max_connections,
            queue_timeout,
            access_log: self.access_log,
            cache_dir: self.cache_dir.map(|dir| base.join(dir)),
        })
    }
}

/// A socket's keys validated; `key` prefixes their names in errors.
fn socket(key: &str, listen: &str, mode: &str, group: Option<String>, force_mode: bool) -> Result<Socket, Error> {
    let listen = parse_listen(listen).map_err(|why| invalid(format!("{key}listen"), listen, why))?;
    let bits = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            invalid(
                format!("{key}socket_mode"),
                mode,
                "must be octal permission bits like \"0660\"",
            )
        })?;
    // Anyone who can write to the socket can send it any request:
    // world-writable only on purpose.
    if bits & 0o002 != 0 && !force_mode {
        return Err(invalid(
            format!("{key}socket_mode"),
            mode,
            format!("lets every local user connect; use 0660 with socket_group, or set {key}force_socket_mode = true"),
        ));
    }
    let group = group
        .map(|g| {
            resolve_group(&g)
                .map(|gid| (g.clone(), gid))
                .map_err(|why| invalid(format!("{key}socket_group"), &g, why))
        })
        .transpose()?;
    Ok(Socket {
        listen,
        mode: bits,
        group,
    })
}

impl RawGuest {
    /// `key` prefixes the field names in errors (`app[0].` or `cgi_bin.`).
    fn validate(self, key: &str, base: &Path, defaults: Limits) -> Result<Guest, Error> {
        let limits = match self.limits {
            None => defaults,
            Some(raw) => raw.over(defaults, &format!("{key}limits."))?,
        };
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(invalid(
                    format!("{key}env"),
                    name,
                    "a variable name cannot be empty or hold '=' or NUL",
                ));
            }
            if value.contains('\0') {
                return Err(invalid(format!("{key}env.{name}"), value, "a value cannot hold NUL"));
            }
        }
        let mut guests = HashSet::new();
        let mut mounts = Vec::with_capacity(self.mounts.len());
        for (i, m) in self.mounts.into_iter().enumerate() {
            let guest = normalize_route(&m.guest).filter(|g| g != "/").ok_or_else(|| {
                invalid(
                    format!("{key}mounts[{i}].guest"),
                    &m.guest,
                    "must be an absolute path like \"/data\", other than \"/\"",
                )
            })?;
            if limits.scratch > 0 && Path::new(&guest).starts_with(SCRATCH_DIR) {
                return Err(invalid(
                    format!("{key}mounts[{i}].guest"),
                    &m.guest,
                    format!(
                        "{SCRATCH_DIR} is the guest's scratch directory; mount elsewhere, or set \
                         {key}limits.scratch = \"0\" to have none"
                    ),
                ));
            }
            if !guests.insert(guest.clone()) {
                return Err(invalid(format!("{key}mounts[{i}].guest"), &m.guest, "mounted twice"));
            }
            let host = base.join(&m.host);
            if !host.is_dir() {
                return Err(invalid(
                    format!("{key}mounts[{i}].host"),
                    m.host.display(),
                    "not a directory",
                ));
            }
            mounts.push(Mount { host, guest });
        }
        Ok(Guest {
            env: self.env.into_iter().collect(),
            mounts,
            pass_http_proxy: self.pass_http_proxy,
            limits,
        })
    }
}

/// The largest memory a wasm32 guest can address.
const MAX_MEMORY: u64 = 4 << 30;
/// The largest scratch directory: held in the worker's memory.
const MAX_SCRATCH: u64 = 4 << 30;
const WASM_PAGE: u64 = 65536;

impl RawLimits {
    fn validate(self) -> Result<(Limits, ParamsLimits), Error> {
        let defaults = RawGuestLimits {
            memory: Some(self.memory),
            timeout: Some(self.timeout),
            max_body: Some(self.max_body),
            max_output: Some(self.max_output),
            max_stderr: Some(self.max_stderr),
            fuel: Some(self.fuel),
            scratch: Some(self.scratch),
        };
        // Every field above is set, so none of these is ever read.
        let placeholder = Limits {
            memory: 0,
            timeout: Duration::ZERO,
            max_body: 0,
            max_output: 0,
            max_stderr: 0,
            fuel: 0,
            scratch: 0,
        };
        let limits = defaults.over(placeholder, "limits.")?;
        let bytes = parse_size(&self.max_params)
            .ok()
            .and_then(|b| usize::try_from(b).ok())
            .filter(|b| (1024..=64 << 20).contains(b))
            .ok_or_else(|| {
                invalid(
                    "limits.max_params",
                    &self.max_params,
                    "must be a size from 1KiB to 64MiB",
                )
            })?;
        if !(1..=1_000_000).contains(&self.max_params_count) {
            return Err(invalid(
                "limits.max_params_count",
                self.max_params_count,
                "must be from 1 to 1000000",
            ));
        }
        Ok((
            limits,
            ParamsLimits {
                bytes,
                count: self.max_params_count,
            },
        ))
    }
}

impl RawGuestLimits {
    /// These limits, each unset one taken from `defaults`; `key` prefixes
    /// the field names in errors.
    fn over(self, defaults: Limits, key: &str) -> Result<Limits, Error> {
        let size = |field: &str, value: Option<String>, default: u64, range: std::ops::RangeInclusive<u64>| {
            let Some(value) = value else {
                return Ok(default);
            };
            parse_size(&value)
                .and_then(|b| {
                    range.contains(&b).then_some(b).ok_or_else(|| {
                        format!(
                            "must be from {} to {}",
                            show_size(*range.start()),
                            show_size(*range.end())
                        )
                    })
                })
                .map_err(|why| invalid(format!("{key}{field}"), &value, why))
        };
        let memory = size("memory", self.memory, defaults.memory, WASM_PAGE..=MAX_MEMORY)?;
        let timeout = match self.timeout {
            None => defaults.timeout,
            Some(value) => parse_duration(&value)
                .and_then(|t| {
                    (Duration::from_millis(1)..=Duration::from_secs(24 * 3600))
                        .contains(&t)
                        .then_some(t)
                        .ok_or_else(|| "must be from 1ms to 24h".to_owned())
                })
                .map_err(|why| invalid(format!("{key}timeout"), &value, why))?,
        };
        Ok(Limits {
            // Whole pages: what memory.grow counts in.
            memory: memory / WASM_PAGE * WASM_PAGE,
            timeout,
            max_body: size("max_body", self.max_body, defaults.max_body, 0..=1 << 40)?,
            max_output: size("max_output", self.max_output, defaults.max_output, 1024..=1 << 40)?,
            max_stderr: size("max_stderr", self.max_stderr, defaults.max_stderr as u64, 0..=1 << 30)? as usize,
            fuel: self.fuel.unwrap_or(defaults.fuel),
            scratch: size("scratch", self.scratch, defaults.scratch, 0..=MAX_SCRATCH)?,
        })
    }
}

/// A size: bytes, or a number with the unit B, KiB, MiB or GiB ("16MiB").
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || "must be a size like \"16MiB\" (B, KiB, MiB or GiB)".to_owned();
    let digits = text
        .trim()
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.trim().len());
    let (number, unit) = text.trim().split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(bad()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(bad)
}

fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// A duration: a number with the unit ms, s, m or h ("30s").
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || "must be a duration like \"30s\" (ms, s, m or h)".to_owned();
    let digits = text.trim().find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.trim().split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or_else(bad),
        _ => Err(bad()),
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

fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err("no such group".into()),
        Err(e) => Err(format!("cannot look the group up: {e}")),
    }
}

/// `/a/b` from `/a/b/`; `None` for anything but a clean absolute path.
fn normalize_route(route: &str) -> Option<String> {
    let trimmed = match route.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let clean = route.starts_with('/')
        && !trimmed.contains("//")
        && !trimmed.contains(['?', '#', '\0'])
        && Path::new(trimmed)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    clean.then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
        let dir = std::env::temp_dir().join(format!(
            "wcgid-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wcgid.toml");
        std::fs::write(&path, toml).unwrap();
        let overrides = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with(&path, overrides)
    }

    fn err(toml: &str) -> String {
        load(toml, &[]).unwrap_err().to_string()
    }

    #[test]
    fn the_reference_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wcgid.toml");
        let config = Config::load_with(&path, Default::default()).unwrap();
        assert!(config.apps.iter().any(|a| a.name == "hello" && a.route == "/hello"));
        assert!(config.admin.is_some());
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/debian/wcgid.toml");
        let config = Config::load_with(&path, Default::default()).unwrap();
        assert_eq!(config.apps[0].module, Path::new("/usr/share/wcgid/examples/hello.wasm"));
        assert_eq!(
            config.admin.map(|a| a.listen),
            Some(Listen::Unix("/run/wcgid/admin.sock".into()))
        );
    }

    #[test]
    fn defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.server.socket.listen, Listen::Unix("/run/wcgid/wcgid.sock".into()));
        assert_eq!(c.server.socket.mode, 0o660);
        assert!(c.server.workers >= 1);
        assert!(c.apps.is_empty() && c.cgi_bin.is_none());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(err("[server]\nlisten = \"tcp:127.0.0.1:9\"\nlisten_typo = 1\n").contains("listen_typo"));
        assert!(err("[nope]\n").contains("nope"));
        assert!(err("[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nenvv={}\n").contains("envv"));
    }

    #[test]
    fn interpreters_default_their_names_and_extensions_by_driver() {
        let c = load(
            "[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"perl\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n\
             lib = [\"/usr\"]\n[[interpreter]]\nname = \"py\"\nmodule = \"/bin/sh\"\ndriver = \"python\"\n\
             names = [\"python3\"]\n",
            &[],
        )
        .unwrap();
        let [perl, py] = &c.interpreters[..] else {
            panic!("two interpreters")
        };
        assert_eq!(
            (perl.driver, &perl.names[..], &perl.extensions[..]),
            (
                Driver::Perl,
                &["perl".to_string(), "perl5".into()][..],
                &["pl".to_string()][..]
            )
        );
        assert_eq!(perl.lib, [PathBuf::from("/usr")]);
        assert_eq!(
            (py.driver, &py.names[..], &py.extensions[..]),
            (Driver::Python, &["python3".to_string()][..], &["py".to_string()][..])
        );
    }

    #[test]
    fn interpreters_are_checked() {
        let one = |extra: &str| {
            err(&format!(
                "[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n{extra}"
            ))
        };
        assert!(one("lib = [\"relative\"]\n").contains("interpreter[0].lib"));
        assert!(one("extensions = [\".pl\"]\n").contains("without its dot"));
        assert!(one("extensions = [\"wasm\"]\n").contains("WebAssembly"));
        assert!(
            one("[[interpreter]]\nname = \"q\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n")
                .contains("interpreter[1].names")
        );
        let e =
            err("[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"ruby\"\n");
        assert!(e.contains("interpreter[0].driver") && e.contains("perl, python"), "{e}");
        let e = err(
            "[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/nonexistent\"\ndriver = \"perl\"\n",
        );
        assert!(e.contains("fetch-interpreters"), "{e}");
        let e = err("[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n");
        assert!(e.contains("[cgi_bin]"), "{e}");
    }

    #[test]
    fn errors_name_key_and_value() {
        let e = err("[server]\nsocket_mode = \"999\"\n");
        assert!(e.contains("server.socket_mode") && e.contains("999"), "{e}");
        let e = err("[server]\nlisten = \"udp:1.2.3.4:5\"\n");
        assert!(e.contains("server.listen") && e.contains("udp:1.2.3.4:5"), "{e}");
        let e = err("[[app]]\nname=\"a\"\nroute=\"/a/../b\"\nmodule=\"a.wasm\"\n");
        assert!(e.contains("app[0].route") && e.contains("/a/../b"), "{e}");
        let e = err(
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[[app]]\nname=\"a\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n",
        );
        assert!(e.contains("app[1].name"), "{e}");
        let e = err(
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\"/nonexistent-dir\", guest=\"/d\"}]\n",
        );
        assert!(
            e.contains("app[0].mounts[0].host") && e.contains("/nonexistent-dir"),
            "{e}"
        );
        let e = err("[cgi_bin]\nroot = \"/nonexistent-cgi-bin\"\n");
        assert!(e.contains("cgi_bin.root"), "{e}");
    }

    #[test]
    fn environment_overrides_scalars() {
        let c = load(
            "[server]\nlisten = \"unix:/tmp/a.sock\"\n",
            &[
                ("WCGID_SERVER__LISTEN", "tcp:127.0.0.1:9000"),
                ("WCGID_SERVER__WORKERS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.socket.listen, Listen::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.server.workers, 3);
        let e = load("", &[("WCGID_SERVER__LISTN", "x")]).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn routes_and_relative_paths() {
        let c = load("[[app]]\nname=\"a\"\nroute=\"/a/\"\nmodule=\"m/a.wasm\"\n[[app]]\nname=\"root\"\nroute=\"/\"\nmodule=\"/abs.wasm\"\n", &[]).unwrap();
        assert_eq!(c.apps[0].route, "/a");
        assert!(c.apps[0].module.ends_with("m/a.wasm") && c.apps[0].module.is_absolute());
        assert_eq!(c.apps[1].route, "/");
        assert_eq!(c.apps[1].module, PathBuf::from("/abs.wasm"));
    }

    #[test]
    fn a_world_writable_socket_must_be_forced() {
        let c = load("[server]\nsocket_mode = \"0666\"\nforce_socket_mode = true\n", &[]).unwrap();
        assert_eq!(c.server.socket.mode, 0o666);
    }

    #[test]
    fn the_admin_socket_is_optional_and_checked_like_the_server_socket() {
        assert_eq!(load("", &[]).unwrap().admin, None);
        let c = load("[admin]\nlisten = \"unix:/run/a.sock\"\n", &[]).unwrap();
        let admin = c.admin.unwrap();
        assert_eq!((admin.listen, admin.mode), (Listen::Unix("/run/a.sock".into()), 0o660));
        for (toml, needles) in [
            ("[admin]\nsocket_mode = \"0600\"\n", &["admin", "listen"][..]),
            (
                "[admin]\nlisten = \"unix:/run/a.sock\"\nsocket_mode = \"0666\"\n",
                &["admin.socket_mode", "admin.force_socket_mode"],
            ),
            (
                "[admin]\nlisten = \"unix:/run/wcgid/wcgid.sock\"\n",
                &["admin.listen", "server.listen"],
            ),
            ("[admin]\nlisten = \"a.sock\"\n", &["admin.listen", "unix:"]),
        ] {
            let e = err(toml);
            for needle in needles {
                assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn limits_have_defaults_and_apps_override_them() {
        let c = load("[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n", &[]).unwrap();
        let want = Limits {
            memory: 128 << 20,
            timeout: Duration::from_secs(30),
            max_body: 16 << 20,
            max_output: 64 << 20,
            max_stderr: 64 << 10,
            fuel: 0,
            scratch: 16 << 20,
        };
        assert_eq!(c.apps[0].guest.limits, want);
        assert_eq!(
            c.params,
            ParamsLimits {
                bytes: 1 << 20,
                count: 10_000
            }
        );
        let c = load(
            "[limits]\ntimeout = \"5s\"\nmemory = \"100000\"\n\
             [[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n\
             [app.limits]\ntimeout = \"250ms\"\nmax_body = \"1KiB\"\n\
             [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n",
            &[("WCGID_LIMITS__MAX_OUTPUT", "2GiB")],
        )
        .unwrap();
        let (a, b) = (c.apps[0].guest.limits, c.apps[1].guest.limits);
        assert_eq!((a.timeout, a.max_body), (Duration::from_millis(250), 1024));
        assert_eq!((b.timeout, b.max_body), (Duration::from_secs(5), 16 << 20));
        // Whole Wasm pages, inherited by both.
        assert_eq!((a.memory, b.memory), (65536, 65536));
        assert_eq!((a.max_output, b.max_output), (2 << 30, 2 << 30));
    }

    #[test]
    fn scratch_is_a_size_that_0_turns_off() {
        let c = load(
            "[limits]\nscratch = \"1MiB\"\n\
             [[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n\
             [app.limits]\nscratch = \"0\"\n\
             [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n\
             [cgi_bin]\nroot = \".\"\n[cgi_bin.limits]\nscratch = \"64KiB\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.apps[0].guest.limits.scratch, 0);
        assert_eq!(c.apps[1].guest.limits.scratch, 1 << 20);
        assert_eq!(c.cgi_bin.unwrap().guest.limits.scratch, 64 << 10);
        for (toml, needles) in [
            ("[limits]\nscratch = \"8GiB\"\n", &["limits.scratch", "4GiB"][..]),
            ("[limits]\nscratch = \"-1\"\n", &["limits.scratch", "MiB"]),
            (
                "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp/\"}]\n",
                &["app[0].mounts[0].guest", "scratch directory", "app[0].limits.scratch"],
            ),
            (
                "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp/sub\"}]\n",
                &["app[0].mounts[0].guest"],
            ),
        ] {
            let e = err(toml);
            for needle in needles {
                assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
            }
        }
        // Without a scratch directory, /tmp is free to mount; /tmpfoo always is.
        let c = load(
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp\"}]\n\
             [app.limits]\nscratch = \"0\"\n\
             [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\nmounts=[{host=\".\", guest=\"/tmpfoo\"}]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.apps[0].guest.mounts[0].guest, "/tmp");
        assert_eq!(c.apps[1].guest.mounts[0].guest, "/tmpfoo");
    }

    #[test]
    fn bad_limits_name_key_and_value() {
        for (toml, needles) in [
            ("[limits]\nmemory = \"lots\"\n", &["limits.memory", "lots", "MiB"][..]),
            ("[limits]\nmemory = \"8GiB\"\n", &["limits.memory", "4GiB"]),
            ("[limits]\ntimeout = \"30\"\n", &["limits.timeout", "ms, s, m or h"]),
            ("[limits]\ntimeout = \"0s\"\n", &["limits.timeout", "1ms"]),
            ("[limits]\nmax_params = \"1B\"\n", &["limits.max_params", "1KiB"]),
            ("[limits]\nmax_params_count = 0\n", &["limits.max_params_count"]),
            (
                "[server]\nsocket_mode = \"0666\"\n",
                &["server.socket_mode", "force_socket_mode"],
            ),
            (
                "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[app.limits]\ntimeout = \"x\"\n",
                &["app[0].limits.timeout", "\"x\""],
            ),
            // PARAMS are bounded before any app is known.
            (
                "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[app.limits]\nmax_params = \"1MiB\"\n",
                &["max_params"],
            ),
        ] {
            let e = err(toml);
            for needle in needles {
                assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
            }
        }
    }
}
