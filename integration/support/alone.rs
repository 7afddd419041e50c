//! What the tests that run alone (with a daemon of their own) share: a
//! configuration written in their directory, the daemon started on it, and
//! the checks most of them make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::daemon::{Daemon, Finished};
use super::example_module;
use super::fcgi::{self, Params};

/// How long a `wcgid` run that should end by itself (`check`, a refused
/// configuration) may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// `dir/wcgid.toml` listening on `dir/wcgid.sock`, with `server` extra lines
/// and one app per name in `apps` (route `/NAME`). Returns (config, socket).
pub fn config(dir: &Path, server: &str, apps: &[&str]) -> (PathBuf, PathBuf) {
    let modules: Vec<(&str, PathBuf)> = apps.iter().map(|app| (*app, example_module(app))).collect();
    config_with_apps(dir, server, &modules)
}

/// [`config`] with each app's module given.
pub fn config_with_apps(dir: &Path, server: &str, apps: &[(&str, PathBuf)]) -> (PathBuf, PathBuf) {
    let socket = dir.join("wcgid.sock");
    let mut text = format!("[server]\nlisten = \"unix:{}\"\n{server}\n", socket.display());
    for (app, module) in apps {
        text.push_str(&format!(
            "\n[[app]]\nname = \"{app}\"\nroute = \"/{app}\"\nmodule = \"{}\"\n",
            module.display()
        ));
    }
    let path = dir.join("wcgid.toml");
    std::fs::write(&path, text).expect("write config");
    (path, socket)
}

/// Starts wcgid on `config`, logging to `dir/wcgid.log`, and waits until
/// `socket` serves; panics with the log if it does not.
pub fn start(dir: &Path, config: &Path, socket: &Path, env: &[(&str, &str)]) -> Daemon {
    Daemon::start(config, &dir.join("wcgid.log"), socket, env).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /hello?name=NAME` over the Unix socket; panics unless it is answered.
pub fn assert_hello(socket: &Path, name: &str) {
    let ex = fcgi::Conn::connect(socket).exchange(1, 0, &Params::get("/hello", &format!("name={name}")), b"");
    assert_eq!(ex.cgi().text(), format!("Hello, {name}!\n"), "{}", ex.summary());
}

/// `run` exited 64 (EX_USAGE), its message naming each of `needles`.
pub fn assert_usage_error(run: &Finished, needles: &[&str]) {
    assert_eq!(run.status.code(), Some(64), "exit status; stderr:\n{}", run.stderr);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr does not name {needle:?}:\n{}",
            run.stderr
        );
    }
}

/// `GET /cases?QUERY` on its own connection.
pub fn cases(socket: &Path, query: &str) -> fcgi::Exchange {
    fcgi::Conn::connect(socket).exchange(1, 0, &Params::get("/cases", query), b"")
}
