//! The command line and the process: `check`, configuration errors (exit
//! 64, naming the key and value), the Unix socket's mode and lifecycle, and
//! signals. Each test starts its own daemon in its own directory.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::daemon::{self, Daemon, Finished};
use crate::support::fcgi::{self, END_REQUEST, Params, STDOUT};
use crate::support::{example_module, poll, tests};

tests! {
    Alone check_accepts_the_reference_config,
    Alone check_compiles_without_binding,
    Alone check_warms_the_aot_cache_and_serve_compiles_nothing,
    Alone missing_config_file_is_64_naming_it,
    Alone unknown_key_is_64_naming_it,
    Alone lines_to_the_journal_carry_their_priority,
    Alone unknown_environment_override_is_64_naming_it,
    Alone bad_socket_mode_is_64_naming_key_and_value,
    Alone missing_module_is_64_naming_the_app,
    Alone socket_is_0660_by_default,
    Alone socket_mode_is_honoured,
    Alone socket_group_is_applied,
    Alone unknown_socket_group_is_64,
    Alone workers_bound_the_guests_running_at_once,
    Alone a_killed_worker_is_replaced_and_fails_no_other_request,
    Alone max_connections_bounds_the_connections_served,
    Alone client_gone_mid_response_frees_the_worker,
    Alone client_gone_mid_body_frees_the_worker,
    Alone abort_request_stops_the_running_guest,
    Alone a_request_given_up_while_it_waited_is_not_run,
    Alone limits_bound_memory_body_and_output,
    Alone timeout_stops_a_sleeping_guest_with_504,
    Alone timeout_stops_a_spinning_guest_inside_its_worker,
    Alone abort_request_stops_a_spinning_guest_within_50ms,
    Alone a_closed_connection_frees_a_spinning_guests_slot_within_50ms,
    Alone stray_user_signals_stop_nothing,
    Alone serves_as_pid_1_of_a_pid_namespace,
    Alone access_log_has_a_json_line_per_request,
    Alone sighup_reloads_without_losing_a_request,
    Alone sighup_with_a_broken_config_keeps_the_old_one,
    Alone systemd_hears_ready_once_the_socket_serves_and_stopping,
    Alone socket_activation_serves_on_the_socket_systemd_passed,
    Alone a_stop_leaves_a_passed_backlog_to_the_next_start,
    Alone ten_thousand_concurrent_connections_are_all_served,
    Alone streamed_output_is_sent_as_it_is_written,
    Alone a_request_queued_too_long_gets_503_overloaded,
    Alone a_wait_is_timed_from_its_own_start,
    Alone a_busy_queue_is_many_short_waits_not_one_long_one,
    Alone a_backlogged_connection_gets_503_overloaded,
    Alone a_backlogged_upload_is_served_not_dropped,
    Alone a_non_reading_client_holds_its_guest_until_the_timeout,
    Alone a_kept_connection_closed_by_nginx_logs_no_warning,
    Alone fuel_stops_a_spinning_guest_inside_its_worker,
    Alone memory_limit_below_a_modules_start_is_refused,
    Alone listen_can_be_overridden_from_the_environment,
    Alone stale_socket_file_is_replaced,
    Alone live_socket_is_refused,
    Alone non_socket_file_is_not_replaced,
    Alone sigterm_exits_0_and_removes_the_socket,
    Alone sigint_exits_0_and_removes_the_socket,
    Alone sigquit_exits_0_and_removes_the_socket,
    Alone sigterm_lets_the_request_in_flight_finish,
    Alone sigterm_under_load_answers_every_accepted_request,
    Alone sigterm_stops_the_daemon_while_a_guest_spins,
    Alone relative_paths_are_relative_to_the_config_file,
    Alone tcp_listener_serves_fastcgi,
    Alone unknown_route_without_cgi_bin_is_404,
}

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// `dir/wcgid.toml` listening on `dir/wcgid.sock`, with `server` extra lines
/// and one app per name in `apps` (route `/NAME`). Returns (config, socket).
fn config(dir: &Path, server: &str, apps: &[&str]) -> (PathBuf, PathBuf) {
    let modules: Vec<(&str, PathBuf)> = apps.iter().map(|app| (*app, example_module(app))).collect();
    config_with_apps(dir, server, &modules)
}

/// [`config`] with each app's module given.
fn config_with_apps(dir: &Path, server: &str, apps: &[(&str, PathBuf)]) -> (PathBuf, PathBuf) {
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

fn start(dir: &Path, config: &Path, socket: &Path, env: &[(&str, &str)]) -> Daemon {
    Daemon::start(config, &dir.join("wcgid.log"), socket, env).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /hello?name=NAME` over the Unix socket; panics unless it is answered.
fn assert_hello(socket: &Path, name: &str) {
    let ex = fcgi::Conn::connect(socket).exchange(1, 0, &Params::get("/hello", &format!("name={name}")), b"");
    assert_eq!(ex.cgi().text(), format!("Hello, {name}!\n"), "{}", ex.summary());
}

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.file_type().is_socket(), "{} is not a socket", path.display());
    meta.permissions().mode() & 0o7777
}

fn assert_usage_error(run: &Finished, needles: &[&str]) {
    assert_eq!(run.status.code(), Some(64), "exit status; stderr:\n{}", run.stderr);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr does not name {needle:?}:\n{}",
            run.stderr
        );
    }
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

fn kill(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

/// A worker killed while idle is noticed before it is given a request, and
/// replaced; killing the worker of a running request fails that request
/// alone.
fn a_killed_worker_is_replaced_and_fails_no_other_request(dir: &Path) {
    let (config, socket) = config(dir, "workers = 2", &["hello", "cases"]);
    let d = start(dir, &config, &socket, &[]);
    let workers = d.workers();
    assert_eq!(workers.len(), 2, "worker processes: {workers:?}");
    kill(workers[0]);
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        assert_hello(&socket, &format!("after-kill-{i}"));
    }
    // Both workers die while one runs a slow request: that request fails,
    // the next ones are served by the replacements.
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    std::thread::sleep(Duration::from_millis(300));
    d.workers().into_iter().for_each(kill);
    let ex = slow.response(1);
    assert!(
        ex.end.is_none() || ex.cgi().status == 502,
        "the killed request must fail: {}",
        ex.summary()
    );
    for i in 0..10 {
        assert_hello(&socket, &format!("after-second-kill-{i}"));
    }
    let back = poll(Duration::from_secs(10), || {
        let workers = d.workers();
        (workers.len() == 2).then_some(workers)
    });
    assert!(back.is_some(), "the pool is not back to 2 workers: {:?}", d.workers());
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

/// With stderr the stream `JOURNAL_STREAM` names (systemd's journal), a
/// line starts with its syslog priority and has no timestamp of its own;
/// elsewhere it is the usual timestamped line.
fn lines_to_the_journal_carry_their_priority(dir: &Path) {
    let (config, _) = config(dir, "listen_typo = 1", &["hello"]);
    let path = config.display().to_string();
    // daemon::run writes stderr to this file, truncated: the same inode.
    let stderr = dir.join("run.stderr");
    std::fs::write(&stderr, "").unwrap();
    let meta = std::fs::metadata(&stderr).unwrap();
    let journal = format!("{}:{}", meta.dev(), meta.ino());
    let run = daemon::run(
        dir,
        &["check", "-c", &path],
        &[("JOURNAL_STREAM", &journal)],
        RUN_TIMEOUT,
    );
    assert!(
        run.stderr.starts_with("<3>ERROR wcgid::cli: invalid configuration:") && run.stderr.contains("listen_typo"),
        "{}",
        run.stderr
    );
    // Another stream named: not the journal.
    let run = daemon::run(dir, &["check", "-c", &path], &[("JOURNAL_STREAM", "1:1")], RUN_TIMEOUT);
    assert!(!run.stderr.starts_with('<'), "{}", run.stderr);
    assert!(
        run.stderr.contains("Z ERROR wcgid::cli: invalid configuration:"),
        "{}",
        run.stderr
    );
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

fn bad_socket_mode_is_64_naming_key_and_value(dir: &Path) {
    let (config, socket) = config(dir, "socket_mode = \"999\"", &["hello"]);
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["server.socket_mode", "999"]);
    assert!(!socket.exists());
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

fn socket_is_0660_by_default(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    assert_eq!(mode_of(&socket), 0o660, "log:\n{}", d.log());
    assert_hello(&socket, "mode");
}

fn socket_mode_is_honoured(dir: &Path) {
    let (config, socket) = config(dir, "socket_mode = \"0600\"", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    assert_eq!(mode_of(&socket), 0o600, "log:\n{}", d.log());
    assert_hello(&socket, "private");
}

fn socket_group_is_applied(dir: &Path) {
    // Root may give the socket any group; others only one of their own.
    let gid = if nix::unistd::geteuid().is_root() {
        1
    } else {
        nix::unistd::getegid().as_raw()
    };
    let (config, socket) = config(dir, &format!("socket_group = \"{gid}\""), &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.gid(), gid, "log:\n{}", d.log());
    assert_eq!(mode_of(&socket), 0o660);
    assert_hello(&socket, "group");
}

fn unknown_socket_group_is_64(dir: &Path) {
    let (config, socket) = config(dir, "socket_group = \"no-such-group-wcgid\"", &["hello"]);
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["server.socket_group", "no-such-group-wcgid"]);
    assert!(!socket.exists());
}

/// With one worker, a request waits for the guest before it.
fn workers_bound_the_guests_running_at_once(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let _d = start(dir, &config, &socket, &[]);
    let started = std::time::Instant::now();
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=400"), b""));
    std::thread::sleep(Duration::from_millis(50));
    assert_hello(&socket, "waited");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "answered after {waited:?}, beside a 400 ms guest"
    );
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
}

/// With max_connections = 1, a second connection is served only once the
/// first one is gone.
fn max_connections_bounds_the_connections_served(dir: &Path) {
    let (config, socket) = config(dir, "max_connections = 1", &["hello"]);
    let _d = start(dir, &config, &socket, &[]);
    let idle = fcgi::Conn::connect(&socket);
    std::thread::sleep(Duration::from_millis(100));
    let mut waiting = fcgi::Conn::connect(&socket);
    waiting.send(&fcgi::request(1, 0, &Params::get("/hello", "name=second"), b""));
    assert_eq!(waiting.state(Duration::from_millis(500)), fcgi::State::Open);
    drop(idle);
    waiting.set_timeout(Duration::from_secs(10));
    assert_eq!(waiting.response(1).cgi().text(), "Hello, second!\n");
}

/// The client reads one record of a huge response and hangs up: the guest's
/// writes fail, it ends, and the only worker serves the next request.
fn client_gone_mid_response_frees_the_worker(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "body=4000000000"), b""));
    assert_eq!(conn.read_record().map(|r| r.kind), Some(STDOUT));
    drop(conn);
    let mut next = fcgi::Conn::connect(&socket);
    next.set_timeout(Duration::from_secs(10));
    next.send(&fcgi::request(1, 0, &Params::get("/hello", "name=next"), b""));
    let ex = next.response(1);
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "log:\n{}", d.log());
}

/// The client sends part of a body and hangs up: the guest sees the body end,
/// and the only worker serves the next request.
fn client_gone_mid_body_frees_the_worker(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["echo", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "10000000");
    let mut bytes = fcgi::begin(1, fcgi::RESPONDER, 0);
    bytes.extend(fcgi::stream(fcgi::PARAMS, 1, &params.encode()));
    bytes.extend(fcgi::record(fcgi::PARAMS, 1, b""));
    bytes.extend(fcgi::stream(fcgi::STDIN, 1, &[7u8; 100_000]));
    conn.send(&bytes);
    // The guest has not started: wcgid waits for the whole body first.
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    let mut next = fcgi::Conn::connect(&socket);
    next.set_timeout(Duration::from_secs(10));
    next.send(&fcgi::request(1, 0, &Params::get("/hello", "name=next"), b""));
    let ex = next.response(1);
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "log:\n{}", d.log());
}

/// FCGI_ABORT_REQUEST while the guest sleeps: the watchdog notices it
/// without reading the connection, the guest stops, END_REQUEST comes at
/// once, and the connection serves the next request. (With its own daemon:
/// on a shared one the request could wait behind another connection's guest
/// on the same worker.)
fn abort_request_stops_the_running_guest(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(
        1,
        fcgi::KEEP_CONN,
        &Params::get("/cases", "sleep=3000"),
        b"",
    ));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    conn.send(&fcgi::record(fcgi::ABORT_REQUEST, 1, b""));
    let ex = conn.response(1);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "END_REQUEST after {:?}",
        started.elapsed()
    );
    assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
    assert_eq!(ex.ended().app_status, 1, "{}", ex.summary());
    assert!(ex.stdout.is_empty(), "{}", ex.summary());
    // KEEP_CONN: the connection serves the next request.
    let ex = conn.exchange(2, 0, &Params::get("/hello", "name=next"), b"");
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "{}", ex.summary());
    assert!(d.log().contains("guest stopped"), "log:\n{}", d.log());
}

/// With one worker busy, a request arrives on another connection, which
/// then closes (nginx does when its client leaves): when the worker gets to
/// it, it is not run (conformance.md #56). The guest would log to stderr.
fn a_request_given_up_while_it_waited_is_not_run(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=500"), b""));
    std::thread::sleep(Duration::from_millis(100));
    let mut left = fcgi::Conn::connect(&socket);
    left.send(&fcgi::request(1, 0, &Params::get("/cases", "stderr=1"), b""));
    drop(left);
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
    assert_hello(&socket, "after");
    assert!(
        !d.log().contains("stderr:"),
        "the abandoned request ran; log:\n{}",
        d.log()
    );
    // The same request, not abandoned, does log.
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &Params::get("/cases", "stderr=1"), b"");
    assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
    assert!(
        poll(Duration::from_secs(2), || d.log().contains("stderr:").then_some(())).is_some(),
        "log:\n{}",
        d.log()
    );
}

/// `GET /cases?QUERY` on its own connection.
fn cases(socket: &Path, query: &str) -> fcgi::Exchange {
    fcgi::Conn::connect(socket).exchange(1, 0, &Params::get("/cases", query), b"")
}

/// `[limits]` bound a guest's memory (memory.grow fails: the guest traps,
/// 502), the request body (413, the guest never runs) and the output (the
/// response is cut short: no END_REQUEST).
fn limits_bound_memory_body_and_output(dir: &Path) {
    let limits = "workers = 1\n[limits]\nmemory = \"16MiB\"\nmax_body = \"1KiB\"\nmax_output = \"100KiB\"";
    let (config, socket) = config(dir, limits, &["cases", "echo", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    assert_eq!(cases(&socket, "grow=4").cgi().text(), "grew\n");
    let ex = cases(&socket, "grow=64");
    assert_eq!(ex.cgi().status, 502, "{}", ex.summary());
    assert!(d.log().contains("cannot allocate 64 MiB"), "log:\n{}", d.log());
    let post = |len: usize| {
        let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", len.to_string());
        fcgi::Conn::connect(&socket).exchange(1, 0, &params, &vec![b'b'; len])
    };
    assert_eq!(post(1024).cgi().body.len(), 1024);
    assert_eq!(post(1025).cgi().status, 413);
    let ex = cases(&socket, "body=1000000");
    assert!(ex.end.is_none(), "a truncated response must not end: {}", ex.summary());
    // 100 KiB of guest output, its header block rewritten (a Status line).
    assert!(
        (100_000..=102_400 + 64).contains(&ex.stdout.len()),
        "{} bytes sent",
        ex.stdout.len()
    );
    assert!(d.log().contains("max_output"), "log:\n{}", d.log());
    assert_hello(&socket, "after");
}

/// As a container's entrypoint, PID 1 of its own PID namespace (what
/// `unshare --pid --fork` makes, as a container runtime does), the daemon
/// serves, and SIGTERM, which a runtime sends to PID 1, stops it: exit 0,
/// the socket removed.
fn serves_as_pid_1_of_a_pid_namespace(dir: &Path) {
    let (config, socket) = config(dir, "workers = 2", &["hello"]);
    let log = dir.join("wcgid.log");
    let mut unshare = daemon::wrapped(&["unshare", "--pid", "--fork", "--mount-proc"])
        .arg("serve")
        .arg("-c")
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run unshare (util-linux)");
    crate::support::track(unshare.id() as i32);
    let served = poll(Duration::from_secs(60), || {
        if let Some(status) = unshare.try_wait().unwrap() {
            return Some(Err(status));
        }
        std::os::unix::net::UnixStream::connect(&socket).ok().map(|_| Ok(()))
    });
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(served, Some(Ok(()))), "{served:?}; log:\n{}", log_text());
    assert_hello(&socket, "pid1");
    // The process unshare started, seen from here; PID 1 in its namespace.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let init: i32 = children
        .split_whitespace()
        .next()
        .expect("unshare's child")
        .parse()
        .unwrap();
    let mut namespace = Namespace(init);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).expect("NSpid");
    assert!(nspid.ends_with("\t1"), "not PID 1 in its namespace: {nspid}");
    // An orphan in the namespace (a shell's background child, the shell
    // gone) is PID 1's to reap; unreaped it would stay a zombie.
    let orphaned = std::process::Command::new("nsenter")
        .args([
            "--target",
            &init.to_string(),
            "--pid",
            "--",
            "sh",
            "-c",
            "sleep 0.5 & exit 0",
        ])
        .status()
        .expect("run nsenter (util-linux)");
    assert!(orphaned.success());
    let children = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let adopted = poll(Duration::from_secs(2), || {
        children(init).split_whitespace().find_map(|child| {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
            (comm.trim() == "sleep").then(|| child.to_owned())
        })
    });
    let orphan = adopted.unwrap_or_else(|| panic!("no orphan adopted by PID 1: children {}", children(init)));
    let reaped = poll(Duration::from_secs(3), || {
        (!Path::new(&format!("/proc/{orphan}")).exists()).then_some(())
    });
    assert!(reaped.is_some(), "the orphan {orphan} was not reaped");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), Signal::SIGTERM).unwrap();
    let exited = poll(Duration::from_secs(15), || unshare.try_wait().unwrap());
    crate::support::untrack(unshare.id() as i32);
    if exited.is_some() {
        namespace.0 = 0;
    }
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "log:\n{}", log_text());
    assert!(!socket.exists(), "socket left behind");
    assert!(log_text().contains("stopped"), "log:\n{}", log_text());
}

/// A PID namespace, by the pid of its init (0: gone): killed with it if a
/// test ends early, so that nothing of it outlives the test.
struct Namespace(i32);

impl Drop for Namespace {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

/// A guest sleeping past its timeout is stopped at once: 504, appStatus 124.
fn timeout_stops_a_sleeping_guest_with_504(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\n[limits]\ntimeout = \"500ms\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let started = std::time::Instant::now();
    let ex = cases(&socket, "sleep=5000");
    let took = started.elapsed();
    assert_eq!(ex.cgi().status, 504, "{}", ex.summary());
    assert_eq!(ex.ended().app_status, 124);
    assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    assert!(d.log().contains("timeout"), "log:\n{}", d.log());
    assert_hello(&socket, "after");
}

/// A guest computing without calling the host is stopped at its timeout
/// by the interrupt check compiled into it: 504 within a watchdog tick of
/// the deadline, and its worker, not replaced, serves its kept connection
/// on.
fn timeout_stops_a_spinning_guest_inside_its_worker(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\n[limits]\ntimeout = \"2s\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let before = d.workers();
    let mut kept = fcgi::Conn::connect(&socket);
    let ex = kept.exchange(1, fcgi::KEEP_CONN, &Params::get("/hello", "name=before"), b"");
    assert_eq!(ex.cgi().text(), "Hello, before!\n", "{}", ex.summary());
    let started = std::time::Instant::now();
    let ex = cases(&socket, "spin");
    let took = started.elapsed();
    assert_eq!(ex.cgi().status, 504, "{}; log:\n{}", ex.summary(), d.log());
    assert_eq!(ex.ended().app_status, 124);
    assert!(took < Duration::from_millis(2300), "answered after {took:?}");
    let ex = kept.exchange(2, fcgi::KEEP_CONN, &Params::get("/hello", "name=after"), b"");
    assert_eq!(
        ex.cgi().text(),
        "Hello, after!\n",
        "{}; log:\n{}",
        ex.summary(),
        d.log()
    );
    assert_eq!(d.workers(), before, "the worker must not have been replaced");
    assert!(!d.log().contains("ending this worker"), "log:\n{}", d.log());
}

/// FCGI_ABORT_REQUEST on a guest that spins without calling the host:
/// END_REQUEST within 50 ms, and the same worker serves the next request.
fn abort_request_stops_a_spinning_guest_within_50ms(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let before = d.workers();
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(1, fcgi::KEEP_CONN, &Params::get("/cases", "spin"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    conn.send(&fcgi::record(fcgi::ABORT_REQUEST, 1, b""));
    let ex = conn.response(1);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "END_REQUEST after {took:?}");
    assert_eq!(ex.ended().app_status, 1, "{}", ex.summary());
    let ex = conn.exchange(2, 0, &Params::get("/hello", "name=next"), b"");
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "{}", ex.summary());
    assert_eq!(d.workers(), before, "the worker must not have been replaced");
}

/// A spinning guest whose connection closes (nginx does when its client
/// leaves) is stopped within 50 ms: the only worker's slot is free for the
/// next request by then.
fn a_closed_connection_frees_a_spinning_guests_slot_within_50ms(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let before = d.workers();
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "spin"), b""));
    let mut next = fcgi::Conn::connect(&socket);
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    drop(conn);
    let ex = next.exchange(1, 0, &Params::get("/hello", "name=next"), b"");
    let took = started.elapsed();
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "{}; log:\n{}", ex.summary(), d.log());
    assert!(took < Duration::from_millis(50), "answered {took:?} after the close");
    assert_eq!(d.workers(), before, "the worker must not have been replaced");
}

/// With `fuel`, the app's code is metered: a spinning guest spends its
/// fuel and is stopped where it is (504), with no worker ended; a guest
/// within its budget answers as usual.
fn fuel_stops_a_spinning_guest_inside_its_worker(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\n[limits]\nfuel = 50000000", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let before = d.workers();
    assert_hello(&socket, "metered");
    let started = std::time::Instant::now();
    let ex = cases(&socket, "spin");
    assert_eq!(ex.cgi().status, 504, "{}; log:\n{}", ex.summary(), d.log());
    assert_eq!(ex.ended().app_status, 124);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "after {:?}",
        started.elapsed()
    );
    assert!(d.log().contains("spent its fuel"), "log:\n{}", d.log());
    assert_hello(&socket, "after");
    assert_eq!(d.workers(), before, "no worker was replaced");
}

/// A client that stops reading a large response: the guest's writes block
/// on the full socket until the app's timeout, then fail, and the only
/// worker serves the next request (conformance.md #61).
fn a_non_reading_client_holds_its_guest_until_the_timeout(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\n[limits]\ntimeout = \"1s\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut stalled = fcgi::Conn::connect(&socket);
    stalled.send(&fcgi::request(1, 0, &Params::get("/cases", "body=100000000"), b""));
    let started = std::time::Instant::now();
    let mut next = fcgi::Conn::connect(&socket);
    next.set_timeout(Duration::from_secs(10));
    let ex = next.exchange(1, 0, &Params::get("/hello", "name=next"), b"");
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "log:\n{}", d.log());
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(800)..Duration::from_secs(4)).contains(&waited),
        "the next request waited {waited:?}"
    );
    drop(stalled);
}

/// nginx closes kept connections it no longer needs: that is no error, and
/// logs no warning (conformance.md #65).
fn a_kept_connection_closed_by_nginx_logs_no_warning(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    for _ in 0..5 {
        let mut conn = fcgi::Conn::connect(&socket);
        let ex = conn.exchange(1, fcgi::KEEP_CONN, &Params::get("/hello", "name=kept"), b"");
        assert_eq!(ex.cgi().text(), "Hello, kept!\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "log:\n{log}");
}

/// A request on a connection whose worker runs another connection's long
/// guest is answered 503 with FCGI_OVERLOADED once it has waited
/// server.queue_timeout, without running; the long request completes and
/// the worker serves on (conformance.md #67).
fn a_request_queued_too_long_gets_503_overloaded(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\nqueue_timeout = \"500ms\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    // Accepted by the only worker before its guest starts.
    let mut waiting = fcgi::Conn::connect(&socket);
    std::thread::sleep(Duration::from_millis(100));
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    waiting.send(&fcgi::request(
        1,
        fcgi::KEEP_CONN,
        &Params::get("/cases", "stderr=1"),
        b"",
    ));
    assert_shed(&waiting.response(1), started, &mut slow, &socket, &d);
}

/// Under a steady load of short requests (16 kept connections on 2 workers,
/// each request sleeping 5 ms) the listen backlog and the hand-off queue
/// are seldom empty, but nothing in them waits long: no request is shed,
/// even with a `queue_timeout` of 300 ms, ten times the longest wait.
fn a_busy_queue_is_many_short_waits_not_one_long_one(dir: &Path) {
    let (config, socket) = config(
        dir,
        "workers = 2
queue_timeout = \"300ms\"",
        &["cases"],
    );
    let d = start(dir, &config, &socket, &[]);
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut conn = fcgi::Conn::connect(&socket);
                let mut statuses = Vec::new();
                for id in 1.. {
                    if std::time::Instant::now() >= until {
                        break;
                    }
                    let ex = conn.exchange(id, fcgi::KEEP_CONN, &Params::get("/cases", "sleep=5"), b"");
                    statuses.push(ex.cgi().status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    assert!(statuses.len() > 200, "{} requests in 3 s", statuses.len());
    assert_eq!(shed, 0, "{shed} of {} requests shed; log:\n{}", statuses.len(), d.log());
    assert!(statuses.iter().all(|&s| s == 200), "statuses {statuses:?}");
}

/// A connection that waits behind a long run is timed from when it began
/// to wait, not from when an earlier one did: two waits of 0.7 s in the
/// listen backlog (one worker, one connection at a time), 1.5 s apart, with
/// a `queue_timeout` of 1 s, are both served, neither shed.
fn a_wait_is_timed_from_its_own_start(dir: &Path) {
    let server = "workers = 1\nmax_connections = 1\nqueue_timeout = \"1s\"";
    let (config, socket) = config(dir, server, &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    for round in 0..2 {
        let mut slow = fcgi::Conn::connect(&socket);
        std::thread::sleep(Duration::from_millis(100));
        // Waits in the backlog: the worker holds its one connection.
        let mut waiting = fcgi::Conn::connect(&socket);
        waiting.set_timeout(Duration::from_secs(10));
        waiting.send(&fcgi::request(1, 0, &Params::get("/hello", "name=waited"), b""));
        slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=700"), b""));
        assert_eq!(slow.response(1).cgi().text(), "slept\n");
        let ex = waiting.response(1);
        assert_eq!(
            ex.cgi().text(),
            "Hello, waited!\n",
            "round {round}: {}; log:\n{}",
            ex.summary(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(!d.log().contains("queue_timeout"), "log:\n{}", d.log());
}

/// `ex` was shed (503 with FCGI_OVERLOADED, within 1.5 s of `started`,
/// logged), the slow request ahead of it completed, the worker serves on,
/// and the shed request never ran (its guest would have logged).
fn assert_shed(ex: &fcgi::Exchange, started: std::time::Instant, slow: &mut fcgi::Conn, socket: &Path, d: &Daemon) {
    let took = started.elapsed();
    assert_eq!(ex.ended().protocol_status, fcgi::OVERLOADED, "{}", ex.summary());
    assert_eq!(ex.cgi().status, 503, "{}", ex.summary());
    assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
    assert_hello(socket, "after");
    let log = d.log();
    assert!(log.contains("queue_timeout"), "log:\n{log}");
    assert!(!log.contains("stderr:"), "the shed request ran; log:\n{log}");
}

/// A guest that writes a line, sleeps, writes another: each line reaches
/// the web server when written, not when the guest ends (output is flushed
/// before every sleep; conformance.md #51).
fn streamed_output_is_sent_as_it_is_written(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases"]);
    let _d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    let started = std::time::Instant::now();
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "stream=3"), b""));
    let mut seen = Vec::new();
    loop {
        let rec = conn.read_record().expect("a record before END_REQUEST");
        let text = String::from_utf8_lossy(&rec.content).into_owned();
        seen.push((started.elapsed(), text.clone()));
        if rec.kind == END_REQUEST {
            break;
        }
    }
    let at = |needle: &str| {
        seen.iter()
            .find(|(_, text)| text.contains(needle))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("{needle:?} never came: {seen:?}"))
    };
    assert!(at("line 0") < Duration::from_millis(250), "{seen:?}");
    assert!(at("line 1") >= Duration::from_millis(250), "{seen:?}");
    assert!(at("line 2") < seen.last().unwrap().0, "{seen:?}");
}

/// 1,000, then 10,000 connections open at once, each with a request sent
/// before any is read: every one is answered (no select(2) limit, no crash;
/// conformance.md #63).
fn ten_thousand_concurrent_connections_are_all_served(dir: &Path) {
    let (config, socket) = config(dir, "max_connections = 20000", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    for n in [1_000, 10_000] {
        let mut conns: Vec<fcgi::Conn> = (0..n)
            .map(|i| {
                let mut conn = fcgi::Conn::connect(&socket);
                conn.send(&fcgi::request(1, 0, &Params::get("/hello", &format!("name={i}")), b""));
                conn
            })
            .collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            conn.set_timeout(Duration::from_secs(30));
            let ex = conn.response(1);
            assert_eq!(
                ex.cgi().text(),
                format!("Hello, {i}!\n"),
                "connection {i} of {n}; log:\n{}",
                d.log()
            );
        }
    }
}

/// A new connection no worker takes (the only one runs a long guest) is
/// accepted by the watchdog once it has waited server.queue_timeout, and its
/// request answered 503 with FCGI_OVERLOADED without running.
fn a_backlogged_connection_gets_503_overloaded(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\nqueue_timeout = \"500ms\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut queued = fcgi::Conn::connect(&socket);
    queued.send(&fcgi::request(1, 0, &Params::get("/cases", "stderr=1"), b""));
    assert_shed(&queued.response(1), started, &mut slow, &socket, &d);
}

/// A connection left in the listen backlog past queue_timeout whose request
/// is still arriving (a large body: it cannot be answered yet) is not
/// dropped: it is served once the worker is free, its body echoed whole.
fn a_backlogged_upload_is_served_not_dropped(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\nqueue_timeout = \"500ms\"", &["cases", "echo"]);
    let _d = start(dir, &config, &socket, &[]);
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=2000"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut upload = fcgi::Conn::connect(&socket);
    upload.set_timeout(Duration::from_secs(20));
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", body.len().to_string());
    let mut head = fcgi::begin(1, fcgi::RESPONDER, 0);
    head.extend(fcgi::stream(fcgi::PARAMS, 1, &params.encode()));
    head.extend(fcgi::record(fcgi::PARAMS, 1, b""));
    head.extend(fcgi::stream(fcgi::STDIN, 1, &body[..4096]));
    upload.send(&head);
    // Past queue_timeout, while the only worker still sleeps.
    std::thread::sleep(Duration::from_millis(1200));
    let mut rest = fcgi::stream(fcgi::STDIN, 1, &body[4096..]);
    rest.extend(fcgi::record(fcgi::STDIN, 1, b""));
    upload.send(&rest);
    let ex = upload.response(1);
    assert_eq!(ex.cgi().status, 200, "{}", ex.summary());
    assert!(ex.cgi().body == body, "{}", ex.summary());
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
}

/// Under `Type=notify`: READY=1 (with a STATUS) reaches NOTIFY_SOCKET only
/// once the socket serves, then STATUS= with the counts, and STOPPING=1 on
/// SIGTERM.
fn systemd_hears_ready_once_the_socket_serves_and_stopping(dir: &Path) {
    let (config, socket) = config(dir, "workers = 2", &["hello"]);
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let notify_env = notify_path.display().to_string();
    let mut d = Daemon::spawn(&config, &dir.join("wcgid.log"), &[("NOTIFY_SOCKET", &notify_env)]);
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("a datagram before 30 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=serving with 2 workers")),
        "{ready:?}"
    );
    // Ready means ready: the socket answers now.
    assert_hello(&socket, "ready");
    // Then the counts, live.
    let status = loop {
        let n = notify.recv(&mut buf).expect("STATUS before 30 s");
        let status = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status.contains("1 requests") {
            break status;
        }
    };
    assert_eq!(
        status,
        "STATUS=2 workers (0 busy), 1 requests, 0 in flight, 0 rejected\n"
    );
    d.signal(Signal::SIGTERM);
    let n = notify.recv(&mut buf).expect("STOPPING before 30 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1\n");
    assert!(
        d.wait(Duration::from_secs(15)).is_some_and(|s| s.success()),
        "log:\n{}",
        d.log()
    );
}

/// `systemd-socket-activate -l PATH wcgid …` passes a listening socket as fd
/// 3 (LISTEN_FDS, LISTEN_PID): wcgid serves on it, binds nothing of its own,
/// and nothing of it reaches a guest.
fn socket_activation_serves_on_the_socket_systemd_passed(dir: &Path) {
    let (config, configured) = config(dir, "workers = 1", &["env"]);
    let passed = dir.join("passed.sock");
    let mut child = daemon::socket_activated(&[&passed], None, &config, &dir.join("wcgid.log"));
    // systemd-socket-activate accepts nothing itself: it starts wcgid on the
    // first connection, which then waits in the backlog.
    let ex = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::os::unix::net::UnixStream::connect(&passed).ok()
        })
        .map(|_| {
            let mut conn = fcgi::Conn::connect(&passed);
            conn.set_timeout(Duration::from_secs(60));
            conn.exchange(1, 0, &Params::get("/env", ""), b"")
        })
        .expect("the passed socket exists");
    let text = ex.cgi().text();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let _ = child.wait();
    assert!(text.starts_with("argv: env.wasm"), "{}", ex.summary());
    assert!(!text.contains("LISTEN_"), "the variables reached a guest:\n{text}");
    assert!(!configured.exists(), "bound server.listen as well");
    let log = std::fs::read_to_string(dir.join("wcgid.log")).unwrap();
    assert!(log.contains("socket activation"), "log:\n{log}");
}

/// SIGHUP while requests are in flight, fast ones from several threads and
/// slow ones: none is lost or answered wrongly; requests after the reload
/// see the new configuration (the app's GREETING changed) and the socket
/// never closed.
fn sighup_reloads_without_losing_a_request(dir: &Path) {
    let (config, socket) = config(dir, "workers = 2", &["cases"]);
    let with_greeting = |greeting: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        let base = text.split("\n[[app]]\nname = \"hello\"").next().unwrap().to_owned();
        let hello = format!(
            "\n[[app]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"{}\"\nenv = {{ GREETING = \"{greeting}\" }}\n",
            example_module("hello").display()
        );
        std::fs::write(&config, base + &hello).unwrap();
    };
    with_greeting("Hello");
    let d = start(dir, &config, &socket, &[]);
    let ino = std::fs::metadata(&socket).unwrap().ino();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, slow) = std::thread::scope(|s| {
        let fast: Vec<_> = (0..6)
            .map(|t| {
                let (socket, stop) = (&socket, &stop);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let name = format!("t{t}r{n}");
                        let ex = fcgi::Conn::connect(socket).exchange(
                            1,
                            0,
                            &Params::get("/hello", &format!("name={name}")),
                            b"",
                        );
                        let text = ex.cgi().text();
                        assert!(
                            text == format!("Hello, {name}!\n") || text == format!("Howdy, {name}!\n"),
                            "{}",
                            ex.summary()
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let socket = &socket;
                s.spawn(move || {
                    let mut conn = fcgi::Conn::connect(socket);
                    conn.set_timeout(Duration::from_secs(20));
                    conn.exchange(1, 0, &Params::get("/cases", "sleep=800"), b"")
                        .cgi()
                        .text()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        with_greeting("Howdy");
        d.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered: usize = fast.into_iter().map(|t| t.join().expect("no wrong answer")).sum();
        let slow: Vec<String> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        (answered, slow)
    });
    assert!(answered >= 100, "only {answered} requests in flight around the reload");
    assert!(slow.iter().all(|t| t == "slept\n"), "{slow:?}");
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &Params::get("/hello", "name=after"), b"");
    assert_eq!(ex.cgi().text(), "Howdy, after!\n", "log:\n{}", d.log());
    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        ino,
        "the socket was replaced"
    );
    assert!(d.log().contains("reloaded"), "log:\n{}", d.log());
}

/// SIGHUP with a configuration that does not load, or names a missing
/// module: the old one serves on, the log says why, and systemd hears
/// RELOADING=1 then READY=1 again.
fn sighup_with_a_broken_config_keeps_the_old_one(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["hello"]);
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let notify_env = notify_path.display().to_string();
    let d = start(dir, &config, &socket, &[("NOTIFY_SOCKET", &notify_env)]);
    let mut buf = [0u8; 4096];
    // The next datagram but the STATUS= counts sent every few seconds.
    let mut next = || loop {
        let n = notify.recv(&mut buf).expect("a datagram before 30 s");
        let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !datagram.lines().all(|l| l.starts_with("STATUS=")) {
            return datagram;
        }
    };
    assert!(next().contains("READY=1"));
    std::fs::write(&config, "[server]\nlisten = 5\n[[app]]\nname = \"x\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    let reloading = next();
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading:?}");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    assert!(next().contains("READY=1"));
    assert!(d.log().contains("reload failed"), "log:\n{}", d.log());
    assert_hello(&socket, "still");
    // A valid file naming a module that is not there: the same.
    let mark = d.log_len();
    config_with_apps(dir, "workers = 1", &[("hello", dir.join("gone.wasm"))]);
    d.signal(Signal::SIGHUP);
    assert!(next().contains("RELOADING=1"));
    assert!(next().contains("READY=1"));
    let log = d.log_since(mark);
    assert!(
        log.contains("reload failed") && log.contains("gone.wasm"),
        "log:\n{log}"
    );
    assert_hello(&socket, "still there");
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

/// SIGUSR1 and SIGUSR2, whose default action ends a process, are logged
/// and ignored by the supervisor and the workers.
fn stray_user_signals_stop_nothing(dir: &Path) {
    let (config, socket) = config(dir, "workers = 2", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    let workers = d.workers();
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2] {
        d.signal(signal);
        for &pid in &workers {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..10 {
        assert_hello(&socket, &format!("after-{i}"));
    }
    assert_eq!(d.workers(), workers, "log:\n{}", d.log());
    assert!(d.log().contains("SIGUSR1 ignored"), "log:\n{}", d.log());
}

fn memory_limit_below_a_modules_start_is_refused(dir: &Path) {
    let (config, _) = config(dir, "[limits]\nmemory = \"64KiB\"", &["hello"]);
    let run = daemon::run(dir, &["check", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["hello", "over the limit of 65536"]);
}

fn listen_can_be_overridden_from_the_environment(dir: &Path) {
    let (config, in_file) = config(dir, "", &["hello"]);
    let overridden = dir.join("override.sock");
    let listen = format!("unix:{}", overridden.display());
    let _d = start(dir, &config, &overridden, &[("WCGID_SERVER__LISTEN", &listen)]);
    assert!(!in_file.exists(), "the file's listen must be overridden");
    assert_hello(&overridden, "override");
}

fn stale_socket_file_is_replaced(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    // A dead daemon's socket: bound, then closed without unlinking.
    drop(UnixListener::bind(&socket).expect("bind the stale socket"));
    assert!(std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    // Had the stale file stayed, binding would fail and the daemon exit.
    let _d = start(dir, &config, &socket, &[]);
    assert_hello(&socket, "fresh");
    assert_eq!(mode_of(&socket), 0o660);
}

fn live_socket_is_refused(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let mut first = start(dir, &config, &socket, &[]);
    let ino = std::fs::metadata(&socket).unwrap().ino();
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert!(!run.status.success(), "a second daemon took a live socket");
    assert!(
        run.stderr.contains(&socket.display().to_string()),
        "the message must name the socket:\n{}",
        run.stderr
    );
    // The first daemon keeps its socket and serves on.
    assert_eq!(std::fs::metadata(&socket).unwrap().ino(), ino);
    assert_hello(&socket, "first");
    assert!(first.stop().is_some_and(|s| s.success()));
}

fn non_socket_file_is_not_replaced(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    std::fs::write(&socket, "precious").unwrap();
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert!(!run.status.success(), "started over a regular file");
    assert!(run.stderr.contains(&socket.display().to_string()), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

fn assert_stops_on(dir: &Path, signal: Signal) {
    let (config, socket) = config(dir, "", &["hello"]);
    let mut d = start(dir, &config, &socket, &[]);
    assert_hello(&socket, "before");
    d.signal(signal);
    let status = d.wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "{signal}: exit {status:?}; log:\n{}",
        d.log()
    );
    assert!(!socket.exists(), "socket left behind after {signal}");
}

fn sigterm_exits_0_and_removes_the_socket(dir: &Path) {
    assert_stops_on(dir, Signal::SIGTERM);
}

fn sigint_exits_0_and_removes_the_socket(dir: &Path) {
    assert_stops_on(dir, Signal::SIGINT);
}

fn sigquit_exits_0_and_removes_the_socket(dir: &Path) {
    assert_stops_on(dir, Signal::SIGQUIT);
}

/// A socket systemd passed stays open in systemd after wcgid exits: SIGTERM
/// lets the request in flight finish, but leaves the connections waiting in
/// the backlog to the next start (a restart), instead of serving them
/// itself, or shedding them, while new ones keep arriving.
fn a_stop_leaves_a_passed_backlog_to_the_next_start(dir: &Path) {
    let (config, _) = config(dir, "workers = 1", &["hello", "cases"]);
    let path = dir.join("held.sock");
    let held = UnixListener::bind(&path).expect("bind held.sock");
    let mut first = daemon::activated_on(&held, &config, &dir.join("first.log"));
    let first_log = || std::fs::read_to_string(dir.join("first.log")).unwrap_or_default();
    let mut probe = fcgi::Conn::connect(&path);
    probe.set_timeout(Duration::from_secs(60));
    let ex = probe.exchange(1, 0, &Params::get("/hello", "name=first"), b"");
    assert_eq!(
        ex.cgi().text(),
        "Hello, first!\n",
        "{}\nlog:\n{}",
        ex.summary(),
        first_log()
    );
    drop(probe);
    // The only worker runs a guest, so the next connection waits in the
    // backlog.
    let mut sleeping = fcgi::Conn::connect(&path);
    sleeping.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=1000"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting = fcgi::Conn::connect(&path);
    waiting.send(&fcgi::request(1, 0, &Params::get("/hello", "name=next"), b""));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(sleeping.response(1).cgi().text(), "slept\n", "log:\n{}", first_log());
    let status = poll(Duration::from_secs(15), || first.try_wait().expect("wait"));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "exit {status:?}; log:\n{}",
        first_log()
    );
    assert!(
        matches!(waiting.state(Duration::from_millis(200)), fcgi::State::Open),
        "the stopping daemon answered or closed a connection of the backlog; log:\n{}",
        first_log()
    );
    let mut second = daemon::activated_on(&held, &config, &dir.join("second.log"));
    waiting.set_timeout(Duration::from_secs(60));
    let ex = waiting.response(1);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(second.id() as i32), Signal::SIGTERM);
    let _ = second.wait();
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "{}", ex.summary());
}

fn sigterm_lets_the_request_in_flight_finish(dir: &Path) {
    let (config, socket) = config(dir, "", &["cases"]);
    let mut d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    let started = std::time::Instant::now();
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=800"), b""));
    std::thread::sleep(Duration::from_millis(200));
    d.signal(Signal::SIGTERM);
    // New connections are refused at once: the socket goes away.
    assert!(
        poll(Duration::from_secs(2), || (!socket.exists()).then_some(())).is_some(),
        "socket still there after SIGTERM"
    );
    let ex = conn.response(1);
    drop(conn);
    assert_eq!(ex.cgi().text(), "slept\n", "{}", ex.summary());
    // In full: the signal did not cut the guest's sleep short.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
    let status = d.wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "exit {status:?}; log:\n{}",
        d.log()
    );
}

/// SIGTERM while eight clients send requests as fast as they can, on new
/// connections, and slow requests run: every connection the daemon's socket
/// accepted gets its whole, right answer (the backlog is drained, not
/// reset); the others fail to connect; the daemon exits 0.
fn sigterm_under_load_answers_every_accepted_request(dir: &Path) {
    // A connection each: clients queue in the listen backlog, where the
    // stop finds some of them.
    let (config, socket) = config(dir, "workers = 3\nmax_connections = 3", &["hello", "cases"]);
    let mut d = start(dir, &config, &socket, &[]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, slow) = std::thread::scope(|s| {
        let fast: Vec<_> = (0..8)
            .map(|t| {
                let (socket, stop) = (&socket, &stop);
                s.spawn(move || {
                    let mut answered = 0;
                    for n in 0.. {
                        let Ok(mut conn) = fcgi::Conn::try_connect(socket) else {
                            // Refused or gone: the stop began; nothing was accepted.
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                break;
                            }
                            continue;
                        };
                        conn.set_timeout(Duration::from_secs(20));
                        let name = format!("t{t}r{n}");
                        let ex = conn.exchange(1, 0, &Params::get("/hello", &format!("name={name}")), b"");
                        assert_eq!(ex.cgi().text(), format!("Hello, {name}!\n"), "{}", ex.summary());
                        assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let slow: Vec<_> = (0..2)
            .map(|_| {
                let socket = &socket;
                s.spawn(move || {
                    let mut conn = fcgi::Conn::connect(socket);
                    conn.set_timeout(Duration::from_secs(20));
                    let started = std::time::Instant::now();
                    let text = conn
                        .exchange(1, 0, &Params::get("/cases", "sleep=1000"), b"")
                        .cgi()
                        .text();
                    // Slept in full: the stop does not cut a guest's sleep.
                    assert!(
                        started.elapsed() >= Duration::from_millis(1000),
                        "{:?}",
                        started.elapsed()
                    );
                    text
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        d.signal(Signal::SIGTERM);
        let answered: usize = fast
            .into_iter()
            .map(|t| t.join().expect("every accepted request answered"))
            .sum();
        let slow: Vec<String> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        (answered, slow)
    });
    assert_eq!(slow, ["slept\n", "slept\n"], "log:\n{}", d.log());
    assert!(answered >= 50, "only {answered} requests before the stop");
    let status = d.wait(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "exit {status:?}; log:\n{}",
        d.log()
    );
}

/// A guest that never ends must not keep a stopping daemon alive: after the
/// 10 s drain the daemon exits, abandoning the spinning guest's thread.
fn sigterm_stops_the_daemon_while_a_guest_spins(dir: &Path) {
    let (config, socket) = config(dir, "", &["cases"]);
    let mut d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "spin"), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.wait(Duration::from_secs(13));
    let waited = started.elapsed();
    d.kill();
    assert!(
        status.is_some(),
        "still running {waited:?} after SIGTERM; log:\n{}",
        d.log()
    );
    assert!(!socket.exists(), "socket left behind");
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

fn tcp_listener_serves_fastcgi(dir: &Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (config, socket) = config(dir, "", &["hello"]);
    let listen = format!("tcp:127.0.0.1:{port}");
    let mut d = Daemon::spawn(&config, &dir.join("wcgid.log"), &[("WCGID_SERVER__LISTEN", &listen)]);
    let mut stream = poll(Duration::from_secs(60), || {
        assert!(d.try_wait().is_none(), "wcgid exited; log:\n{}", d.log());
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("wcgid not listening on {listen}; log:\n{}", d.log()));
    assert!(!socket.exists(), "no Unix socket when listening on TCP");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
        .write_all(&fcgi::request(1, 0, &Params::get("/hello", "name=tcp"), b""))
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read until the daemon closes");
    let records = fcgi::parse_records(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    let stdout: Vec<u8> = records
        .iter()
        .filter(|r| r.kind == STDOUT)
        .flat_map(|r| r.content.clone())
        .collect();
    assert_eq!(fcgi::CgiResponse::parse(&stdout).text(), "Hello, tcp!\n");
    assert_eq!(records.last().map(|r| r.kind), Some(END_REQUEST));
}

fn unknown_route_without_cgi_bin_is_404(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let _d = start(dir, &config, &socket, &[]);
    let params = Params::get("/nowhere", "").with("SCRIPT_FILENAME", "/srv/www/nowhere.wasm");
    let ex = fcgi::Conn::connect(&socket).exchange(1, 0, &params, b"");
    assert_eq!(ex.cgi().status, 404, "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
}
