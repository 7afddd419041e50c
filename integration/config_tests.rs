//! The command line and the configuration: `wcgid check`, configuration
//! errors (exit 64, naming the key and value), overrides from the
//! environment, paths relative to the file, routing without a cgi-bin, the
//! access log. Each test starts its own daemon, if any, in its own
//! directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::alone::{RUN_TIMEOUT, assert_hello, assert_usage_error, cases, config, start};
use crate::support::daemon::{self, Daemon};
use crate::support::fcgi::{self, Params};
use crate::support::{example_module, poll, tests};

tests! {
    Alone check_accepts_the_reference_config,
    Alone check_compiles_without_binding,
    Alone check_warms_the_aot_cache_and_serve_compiles_nothing,
    Alone missing_config_file_is_64_naming_it,
    Alone unknown_key_is_64_naming_it,
    Alone unknown_environment_override_is_64_naming_it,
    Alone missing_module_is_64_naming_the_app,
    Alone access_log_has_a_json_line_per_request,
    Alone listen_can_be_overridden_from_the_environment,
    Alone relative_paths_are_relative_to_the_config_file,
    Alone unknown_route_without_cgi_bin_is_404,
}

fn check_accepts_the_reference_config(dir: &Path) {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wcgid.toml");
    let run = daemon::run(
        dir,
        &["check", "-c", &reference.display().to_string()],
        &[],
        RUN_TIMEOUT,
    );
    assert!(run.status.success(), "{}; stderr:\n{}", run.status, run.stderr);
    assert!(run.stdout.contains("configuration valid"), "stdout: {:?}", run.stdout);
}

fn check_compiles_without_binding(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello", "echo"]);
    let run = daemon::run(dir, &["check", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert!(run.status.success(), "{}; stderr:\n{}", run.status, run.stderr);
    assert!(run.stdout.contains("2 module(s)"), "stdout: {:?}", run.stdout);
    assert!(!socket.exists(), "check must not bind the socket");
    // A module that is not Wasm fails the check, naming the app.
    std::fs::write(dir.join("broken.wasm"), b"not wasm at all").unwrap();
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[app]]\nname = \"broken-app\"\nroute = \"/broken\"\nmodule = \"{}\"\n",
            dir.join("broken.wasm").display()
        );
    std::fs::write(&config, text).unwrap();
    let run = daemon::run(dir, &["check", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["broken-app"]);
}

/// `wcgid check` fills `server.cache_dir`; later runs compile nothing; a
/// damaged entry is noticed, recompiled and replaced; an unsafe cache
/// directory is refused by `serve`, and skipped by `check`.
fn check_warms_the_aot_cache_and_serve_compiles_nothing(dir: &Path) {
    let cache = dir.join("aot");
    let (config, socket) = config(dir, &format!("cache_dir = \"{}\"", cache.display()), &["hello", "echo"]);
    let check = || daemon::run(dir, &["check", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    let compiled = |stderr: &str| stderr.lines().filter(|l| l.contains("compiled")).count();
    let cold = check();
    assert!(cold.status.success(), "stderr:\n{}", cold.stderr);
    assert_eq!(compiled(&cold.stderr), 2, "stderr:\n{}", cold.stderr);
    let warm = check();
    assert!(warm.status.success(), "stderr:\n{}", warm.stderr);
    assert_eq!(
        compiled(&warm.stderr),
        0,
        "a warm cache must compile nothing:\n{}",
        warm.stderr
    );
    {
        let d = start(dir, &config, &socket, &[]);
        assert_hello(&socket, "cached");
        assert_eq!(compiled(&d.log()), 0, "serve compiled with a warm cache:\n{}", d.log());
    }
    // Damage one entry: it is refused, recompiled, and the cache is whole again.
    let entry = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let repaired = check();
    assert!(repaired.status.success(), "stderr:\n{}", repaired.stderr);
    assert!(repaired.stderr.contains("recompiling"), "stderr:\n{}", repaired.stderr);
    assert_eq!(compiled(&repaired.stderr), 1, "stderr:\n{}", repaired.stderr);
    assert_eq!(compiled(&check().stderr), 0);
    // A cache directory others may write is refused: its code would run
    // here. `check` still validates, without it.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let unsafe_cache = check();
    assert!(unsafe_cache.status.success(), "stderr:\n{}", unsafe_cache.stderr);
    assert!(
        unsafe_cache.stderr.contains("checking without it"),
        "{}",
        unsafe_cache.stderr
    );
    assert_eq!(compiled(&unsafe_cache.stderr), 2, "stderr:\n{}", unsafe_cache.stderr);
    let serve = daemon::run(dir, &["serve", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&serve, &["server.cache_dir", "writable"]);
}

fn missing_config_file_is_64_naming_it(dir: &Path) {
    let path = dir.join("no-such.toml").display().to_string();
    assert_usage_error(&daemon::run(dir, &["check", "-c", &path], &[], RUN_TIMEOUT), &[&path]);
    assert_usage_error(&daemon::run(dir, &["-c", &path], &[], RUN_TIMEOUT), &[&path]);
}

fn unknown_key_is_64_naming_it(dir: &Path) {
    let (config, socket) = config(dir, "listen_typo = 1", &["hello"]);
    let path = config.display().to_string();
    assert_usage_error(
        &daemon::run(dir, &["check", "-c", &path], &[], RUN_TIMEOUT),
        &["listen_typo"],
    );
    // `serve` (the default command) refuses it the same way, before binding.
    assert_usage_error(&daemon::run(dir, &["-c", &path], &[], RUN_TIMEOUT), &["listen_typo"]);
    assert!(!socket.exists());
    // In an app, too.
    let text = std::fs::read_to_string(&config).unwrap().replace("listen_typo = 1", "") + "modul = \"x.wasm\"\n";
    std::fs::write(&config, text).unwrap();
    assert_usage_error(&daemon::run(dir, &["check", "-c", &path], &[], RUN_TIMEOUT), &["modul"]);
}

fn unknown_environment_override_is_64_naming_it(dir: &Path) {
    let (config, _) = config(dir, "", &["hello"]);
    let run = daemon::run(
        dir,
        &["check", "-c", &config.display().to_string()],
        &[("WCGID_SERVER__LISTN", "unix:/tmp/x.sock")],
        RUN_TIMEOUT,
    );
    assert_usage_error(&run, &["listn"]);
}

fn missing_module_is_64_naming_the_app(dir: &Path) {
    let (config, _) = config(dir, "", &["hello"]);
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[app]]\nname = \"ghost-app\"\nroute = \"/ghost\"\nmodule = \"{}\"\n",
            dir.join("no-such-module.wasm").display()
        );
    std::fs::write(&config, text).unwrap();
    let path = config.display().to_string();
    assert_usage_error(
        &daemon::run(dir, &["check", "-c", &path], &[], RUN_TIMEOUT),
        &["ghost-app"],
    );
    assert_usage_error(&daemon::run(dir, &["-c", &path], &[], RUN_TIMEOUT), &["ghost-app"]);
}

/// `server.access_log = true`: one line per request (app, request id,
/// status, duration, restore µs, bytes, appStatus), refused requests
/// included; with
/// WCGID_LOG_FORMAT=json every log line is a JSON object.
fn access_log_has_a_json_line_per_request(dir: &Path) {
    let (config, socket) = config(dir, "access_log = true", &["hello", "cases"]);
    let d = start(dir, &config, &socket, &[("WCGID_LOG_FORMAT", "json")]);
    assert_hello(&socket, "logged");
    assert_eq!(cases(&socket, "trap").cgi().status, 502);
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &Params::get("/nowhere", ""), b"");
    assert_eq!(ex.cgi().status, 404);
    let want = [
        ("\"app\":\"hello\"", "\"status\":\"200\""),
        ("\"app\":\"cases\"", "\"status\":\"502\""),
        ("\"app\":\"-\"", "\"status\":\"404\""),
    ];
    let found = poll(Duration::from_secs(5), || {
        let log = d.log();
        let access: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"target\":\"wcgid::access\""))
            .collect();
        want.iter()
            .all(|(app, status)| access.iter().any(|l| l.contains(app) && l.contains(status)))
            .then_some(())
    });
    let log = d.log();
    assert!(found.is_some(), "log:\n{log}");
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with('{') && line.ends_with('}'), "not JSON: {line}");
    }
    assert!(
        log.contains("\"bytes\":") && log.contains("\"exit\":134"),
        "log:\n{log}"
    );
    // The guests' restore time; none for the request refused before routing.
    let restore = |app: &str| {
        log.lines()
            .find(|l| l.contains("wcgid::access") && l.contains(app))
            .and_then(|l| l.split("\"restore_us\":\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
    };
    assert!(
        restore("\"app\":\"hello\"").is_some_and(|us| us.parse::<u64>().is_ok()),
        "log:\n{log}"
    );
    assert_eq!(restore("\"app\":\"-\"").as_deref(), Some("-"), "log:\n{log}");
}

fn listen_can_be_overridden_from_the_environment(dir: &Path) {
    let (config, in_file) = config(dir, "", &["hello"]);
    let overridden = dir.join("override.sock");
    let listen = format!("unix:{}", overridden.display());
    let _d = start(dir, &config, &overridden, &[("WCGID_SERVER__LISTEN", &listen)]);
    assert!(!in_file.exists(), "the file's listen must be overridden");
    assert_hello(&overridden, "override");
}

fn relative_paths_are_relative_to_the_config_file(dir: &Path) {
    let conf_dir = dir.join("etc");
    std::fs::create_dir_all(conf_dir.join("modules")).unwrap();
    std::fs::create_dir_all(conf_dir.join("files")).unwrap();
    std::fs::copy(example_module("hello"), conf_dir.join("modules/hello.wasm")).unwrap();
    std::fs::copy(example_module("cases"), conf_dir.join("modules/cases.wasm")).unwrap();
    std::fs::write(conf_dir.join("files/a.txt"), "relative mount\n").unwrap();
    let socket = dir.join("wcgid.sock");
    let config = conf_dir.join("wcgid.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"unix:{}\"\n\n[[app]]\nname = \"hello\"\nroute = \"/hello\"\n\
             module = \"modules/hello.wasm\"\n\n[[app]]\nname = \"cases\"\nroute = \"/cases\"\n\
             module = \"modules/cases.wasm\"\nmounts = [{{ host = \"files\", guest = \"/files\" }}]\n",
            socket.display()
        ),
    )
    .unwrap();
    // Started from elsewhere: the paths still resolve next to the file.
    let mut d = Daemon::spawn_in(&config, &dir.join("wcgid.log"), &[], Some(Path::new("/")));
    d.wait_ready(&socket).unwrap_or_else(|e| panic!("{e}"));
    assert_hello(&socket, "relative");
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &Params::get("/cases", "read=/files/a.txt"), b"");
    assert_eq!(ex.cgi().text(), "relative mount\n", "{}", ex.summary());
}

fn unknown_route_without_cgi_bin_is_404(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let _d = start(dir, &config, &socket, &[]);
    let params = Params::get("/nowhere", "").with("SCRIPT_FILENAME", "/srv/www/nowhere.wasm");
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &params, b"");
    assert_eq!(ex.cgi().status, 404, "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
}
