//! The rules a configuration must meet, applied to the raw form: each
//! failure an [`Error::Invalid`] naming the key (`app[2].limits.timeout`)
//! and its value. Relative paths are resolved against the file's directory.

use std::collections::HashSet;
use std::path::{Component, Path};
use std::time::Duration;

use wasmer::WASM_PAGE_SIZE;

use super::raw::{Raw, RawGuest, RawGuestLimits, RawInterpreter, RawLimits, RawServer};
use super::units::{parse_duration, parse_size, show_size};
use super::{
    App, CgiBin, Config, Driver, Error, Guest, Interpreter, Limits, ParamsLimits, Server, Socket, parse_listen,
};
use crate::sandbox::{Mount, SCRATCH_DIR};

impl Raw {
    pub(super) fn validate(self, base: &Path) -> Result<Config, Error> {
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
        let page = WASM_PAGE_SIZE as u64;
        let memory = size("memory", self.memory, defaults.memory, page..=MAX_MEMORY)?;
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
            memory: memory / page * page,
            timeout,
            max_body: size("max_body", self.max_body, defaults.max_body, 0..=1 << 40)?,
            max_output: size("max_output", self.max_output, defaults.max_output, 1024..=1 << 40)?,
            max_stderr: size("max_stderr", self.max_stderr, defaults.max_stderr as u64, 0..=1 << 30)? as usize,
            fuel: self.fuel.unwrap_or(defaults.fuel),
            scratch: size("scratch", self.scratch, defaults.scratch, 0..=MAX_SCRATCH)?,
        })
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

pub(super) fn invalid(key: impl Into<String>, value: impl std::fmt::Display, why: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.into(),
        value: value.to_string(),
        why: why.into(),
    }
}
