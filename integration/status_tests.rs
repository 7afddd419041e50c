//! The admin socket: the status page (text and JSON), Prometheus metrics
//! and ping, counted across workers, reloads and restarts, served by the
//! supervisor however busy the workers are; through nginx, raw FastCGI and
//! `wcgid status`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::daemon::{self, Daemon};
use crate::support::fcgi::{self, Params};
use crate::support::{Fixture, example_module, poll, tests};

tests! {
    Shared status_pages_are_served_through_nginx,
    Alone status_counts_requests_by_app_and_outcome,
    Alone admin_answers_while_every_worker_is_busy,
    Alone counts_survive_a_reload_and_a_killed_worker,
    Alone status_cli_errors_name_the_socket,
    Alone admin_socket_passed_by_name_is_served,
    Alone no_request_waits_on_a_slow_guest_while_a_worker_idles,
}

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Workers report once a second: what a test waits for a count at most.
const REPORTED_WITHIN: Duration = Duration::from_secs(5);

struct Setup {
    config: PathBuf,
    socket: PathBuf,
    admin: PathBuf,
}

/// `dir/wcgid.toml` with `server` lines, an admin socket, hello, and cases
/// with a `cases_timeout`.
fn setup(dir: &Path, server: &str, cases_timeout: &str) -> Setup {
    let (socket, admin) = (dir.join("wcgid.sock"), dir.join("admin.sock"));
    let text = format!(
        "[server]\nlisten = \"unix:{}\"\n{server}\n\n[admin]\nlisten = \"unix:{}\"\n\n\
         [[app]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"{}\"\n\n\
         [[app]]\nname = \"cases\"\nroute = \"/cases\"\nmodule = \"{}\"\n[app.limits]\ntimeout = \"{cases_timeout}\"\n",
        socket.display(),
        admin.display(),
        example_module("hello").display(),
        example_module("cases").display(),
    );
    let config = dir.join("wcgid.toml");
    std::fs::write(&config, text).unwrap();
    Setup { config, socket, admin }
}

fn start(dir: &Path, s: &Setup) -> Daemon {
    Daemon::start(&s.config, &dir.join("wcgid.log"), &s.socket, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn get(socket: &Path, path: &str, query: &str) -> fcgi::Exchange {
    let mut conn = fcgi::Conn::connect(socket);
    conn.set_timeout(Duration::from_secs(20));
    conn.exchange(1, 0, &Params::get(path, query), b"")
}

/// `wcgid status ARGS -c CONFIG`: its stdout; panics unless it exits 0.
fn status_cli(dir: &Path, config: &Path, args: &[&str]) -> String {
    let config = config.display().to_string();
    let mut all = vec!["status", "-c", &config];
    all.extend_from_slice(args);
    let run = daemon::run(dir, &all, &[], RUN_TIMEOUT);
    assert!(run.status.success(), "{all:?}: {}; stderr:\n{}", run.status, run.stderr);
    run.stdout
}

fn status_json(dir: &Path, config: &Path) -> Value {
    let out = status_cli(dir, config, &["--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The status once `ready` holds of it; panics with the last one if it
/// does not within [`REPORTED_WITHIN`].
fn status_when(dir: &Path, config: &Path, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    poll(REPORTED_WITHIN, || {
        last = status_json(dir, config);
        ready(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("status never got there: {last:#}"))
}

/// A response count: requests of `app` answered `status`.
fn responses(v: &Value, app: &str, status: &str) -> u64 {
    v["apps"][app]["responses"][status].as_u64().unwrap_or(0)
}

/// Sum of a histogram's bucket counts.
fn observed(v: &Value, app: &str, histogram: &str) -> u64 {
    v["apps"][app][histogram]["counts"]
        .as_array()
        .map_or(0, |c| c.iter().filter_map(Value::as_u64).sum())
}

/// What nginx publishes of the fixture's admin socket (the location of
/// conf/nginx-wcgid.conf): ping, metrics that count a request just made,
/// the status page as text and JSON; anything but GET or HEAD is 405, and
/// any other page 404.
fn status_pages_are_served_through_nginx(f: &Fixture) {
    let ping = f.get("/wcgid/ping");
    assert_eq!((ping.status, ping.text()), (200, "pong\n".into()));
    assert_eq!(f.get("/hello?name=metrics").status, 200);
    let metrics = poll(REPORTED_WITHIN, || {
        let metrics = f.get("/wcgid/metrics");
        metrics
            .text()
            .lines()
            .any(|l| l.starts_with(r#"wcgid_requests_total{app="hello",status="200"} "#))
            .then_some(metrics)
    })
    .expect("hello counted in the metrics");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    for family in [
        "# TYPE wcgid_restore_seconds histogram",
        "# TYPE wcgid_requests_in_flight gauge",
        "# TYPE wcgid_requests_rejected_total counter",
        "# TYPE wcgid_guest_memory_high_water_bytes gauge",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    let json: Value = serde_json::from_slice(&f.get("/wcgid/status?json").body).expect("JSON status");
    assert_eq!(json["workers"].as_array().map(Vec::len), Some(4), "{json:#}");
    let page = f.get("/wcgid/status").text();
    assert!(page.contains("workers:      4 ("), "{page}");
    assert_eq!(f.request("POST", "/wcgid/status", &[], b"x").status, 405);
    // Raw: HEAD has the head alone; an unknown page is 404.
    let head = fcgi::Conn::connect(&f.admin).exchange(1, 0, &Params::cgi("HEAD", "/status", ""), b"");
    assert_eq!(
        (head.cgi().status, head.cgi().body.len()),
        (200, 0),
        "{}",
        head.summary()
    );
    assert_eq!(get(&f.admin, "/nothing-here", "").cgi().status, 404);
}

/// Requests of every outcome, over two workers, add up in the status page,
/// the JSON and the metrics: per app and status, traps, timeouts,
/// histograms, memory high-water mark; and ping answers.
fn status_counts_requests_by_app_and_outcome(dir: &Path) {
    let s = setup(dir, "workers = 2", "300ms");
    let _d = start(dir, &s);
    for i in 0..5 {
        assert_eq!(get(&s.socket, "/hello", &format!("name={i}")).cgi().status, 200);
    }
    assert_eq!(get(&s.socket, "/nowhere", "").cgi().status, 404);
    assert_eq!(get(&s.socket, "/cases", "trap").cgi().status, 502);
    assert_eq!(get(&s.socket, "/cases", "sleep=2000").cgi().status, 504);
    let v = status_when(dir, &s.config, |v| v["requests"] == 8);
    assert_eq!(responses(&v, "hello", "200"), 5, "{v:#}");
    assert_eq!(responses(&v, "-", "404"), 1, "{v:#}");
    assert_eq!(responses(&v, "cases", "502"), 1, "{v:#}");
    assert_eq!(responses(&v, "cases", "504"), 1, "{v:#}");
    assert_eq!(
        (v["traps"].as_u64(), v["timeouts"].as_u64()),
        (Some(1), Some(1)),
        "{v:#}"
    );
    assert_eq!(
        (v["in_flight"].as_u64(), v["busy_workers"].as_u64()),
        (Some(0), Some(0))
    );
    // Daemon::start connects once to see the socket answer.
    assert!(v["connections"].as_u64() >= Some(8), "{v:#}");
    for histogram in ["restore", "run", "total"] {
        assert_eq!(observed(&v, "hello", histogram), 5, "{histogram}: {v:#}");
    }
    // hello's memory: at least the one page every module has.
    assert!(v["apps"]["hello"]["memory_high_water"].as_u64() >= Some(65536), "{v:#}");
    let metrics = status_cli(dir, &s.config, &["--metrics"]);
    for line in [
        r#"wcgid_requests_total{app="hello",status="200"} 5"#,
        r#"wcgid_requests_total{app="cases",status="504"} 1"#,
        r#"wcgid_traps_total{app="cases"} 1"#,
        r#"wcgid_timeouts_total{app="cases"} 1"#,
        r#"wcgid_restore_seconds_count{app="hello"} 5"#,
        r#"wcgid_workers{state="idle"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    let page = status_cli(dir, &s.config, &[]);
    assert!(page.contains("requests:     8\n"), "{page}");
    assert!(page.lines().any(|l| l.starts_with("hello ")), "{page}");
    assert_eq!(status_cli(dir, &s.config, &["--ping"]), "pong\n");
}

/// With the only worker busy and a request waiting for it, the admin socket
/// (served by the supervisor) still answers at once, and shows the busy
/// worker, the request in flight and, once shed, the rejected one.
fn admin_answers_while_every_worker_is_busy(dir: &Path) {
    let s = setup(
        dir,
        "workers = 1\nmax_connections = 1\nqueue_timeout = \"500ms\"",
        "10s",
    );
    let _d = start(dir, &s);
    let mut slow = fcgi::Conn::connect(&s.socket);
    slow.set_timeout(Duration::from_secs(20));
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=4000"), b""));
    slow.wait_read();
    let held = std::thread::spawn({
        let socket = s.socket.clone();
        move || get(&socket, "/hello", "").cgi().status
    });
    let started = Instant::now();
    let ping = get(&s.admin, "/ping", "");
    assert_eq!(ping.cgi().text(), "pong\n", "{}", ping.summary());
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "ping took {:?}",
        started.elapsed()
    );
    let v = status_when(dir, &s.config, |v| v["rejected"] == 1 && v["in_flight"] == 1);
    assert_eq!(held.join().unwrap(), 503, "the waiting request was shed");
    assert_eq!(responses(&v, "-", "503"), 1, "{v:#}");
    assert_eq!(v["busy_workers"], 1, "{v:#}");
    assert_eq!(v["workers"][0]["app"], "cases", "{v:#}");
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
}

/// Counters never go back: a reload (new workers) and a killed worker (its
/// replacement) keep every request counted, and the restart and reload are
/// counted too.
fn counts_survive_a_reload_and_a_killed_worker(dir: &Path) {
    let s = setup(dir, "workers = 2", "30s");
    let d = start(dir, &s);
    for _ in 0..4 {
        get(&s.socket, "/hello", "");
    }
    status_when(dir, &s.config, |v| v["requests"] == 4);
    let mark = d.log_len();
    d.signal(Signal::SIGHUP);
    d.wait_log(mark, |log| log.contains("reloaded")).unwrap();
    for _ in 0..2 {
        get(&s.socket, "/hello", "");
    }
    status_when(dir, &s.config, |v| v["requests"] == 6);
    let workers = d.workers();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    let v = status_when(dir, &s.config, |v| {
        v["worker_restarts"] == 1 && v["workers"].as_array().is_some_and(|w| w.len() == 2)
    });
    assert_eq!(v["requests"], 6, "{v:#}");
    assert_eq!(
        (v["generation"].as_u64(), v["reloads"].as_u64()),
        (Some(2), Some(1)),
        "{v:#}"
    );
    assert!(
        v["workers"].as_array().unwrap().iter().all(|w| w["generation"] == 2),
        "{v:#}"
    );
}

/// `wcgid status` with nobody on the admin socket exits 69 naming it; with
/// no admin socket configured, 64 saying so; `--socket` overrides.
fn status_cli_errors_name_the_socket(dir: &Path) {
    let s = setup(dir, "", "30s");
    let config = s.config.display().to_string();
    let run = daemon::run(dir, &["status", "-c", &config], &[], RUN_TIMEOUT);
    assert_eq!(run.status.code(), Some(69), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains(&s.admin.display().to_string()), "{}", run.stderr);
    let bare = dir.join("bare.toml");
    std::fs::write(&bare, "").unwrap();
    let bare = bare.display().to_string();
    let run = daemon::run(dir, &["status", "-c", &bare], &[], RUN_TIMEOUT);
    assert_eq!(run.status.code(), Some(64), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("[admin]"), "{}", run.stderr);
    let _d = start(dir, &s);
    let socket = format!("unix:{}", s.admin.display());
    let run = daemon::run(
        dir,
        &["status", "-c", &bare, "--ping", "--socket", &socket],
        &[],
        RUN_TIMEOUT,
    );
    assert_eq!(
        (run.status.code(), run.stdout.as_str()),
        (Some(0), "pong\n"),
        "{}",
        run.stderr
    );
}

/// Socket activation with two sockets, named by LISTEN_FDNAMES as the units
/// in conf/ name them: the one named `admin` serves the admin pages even
/// though the configuration has no [admin] section, the other FastCGI.
fn admin_socket_passed_by_name_is_served(dir: &Path) {
    let (main, admin) = (dir.join("passed.sock"), dir.join("passed-admin.sock"));
    let config = dir.join("wcgid.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nworkers = 1\n[[app]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"{}\"\n",
            example_module("hello").display()
        ),
    )
    .unwrap();
    let mut child = daemon::socket_activated(&[&main, &admin], Some("wcgid:admin"), &config, &dir.join("wcgid.log"));
    let exists = poll(Duration::from_secs(5), || {
        (main.exists() && admin.exists()).then_some(())
    });
    let (hello, ping) = match exists {
        Some(()) => (
            get(&main, "/hello", "name=activated").cgi().text(),
            get(&admin, "/ping", "").cgi().text(),
        ),
        None => Default::default(),
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("wcgid.log")).unwrap();
    assert_eq!(hello, "Hello, activated!\n", "log:\n{log}");
    assert_eq!(ping, "pong\n", "log:\n{log}");
}

/// A kept connection whose worker runs another connection's slow guest is
/// handed to the idle worker as soon as a request starts on it: the request
/// is answered in milliseconds, not after the guest, and counted as handed
/// over. Two workers of at most 2 connections each hold 3 connections, so
/// one worker holds two: the slow guest runs on one of those two, the fast
/// request comes on the other.
fn no_request_waits_on_a_slow_guest_while_a_worker_idles(dir: &Path) {
    let s = setup(dir, "workers = 2\nmax_connections = 4\naccess_log = true", "10s");
    let d = start(dir, &s);
    let mut conns: Vec<(fcgi::Conn, String)> = Vec::new();
    for n in 0..3 {
        let mut conn = fcgi::Conn::connect(&s.socket);
        conn.set_timeout(Duration::from_secs(20));
        let name = format!("conn{n}");
        let ex = conn.exchange(1, fcgi::KEEP_CONN, &Params::get("/hello", &format!("name={name}")), b"");
        assert_eq!(ex.cgi().text(), format!("Hello, {name}!\n"), "{}", ex.summary());
        // Which worker serves it: the pid in the id of its access-log line,
        // the n-th (one request at a time so far).
        let worker = poll(REPORTED_WITHIN, || {
            let log = d.log();
            let line = log.lines().filter(|l| l.contains("wcgid::access")).nth(n)?;
            Some(line.split("req=").nth(1)?.split('.').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no access line for {name}; log:\n{}", d.log()));
        conns.push((conn, worker));
    }
    let shared = conns
        .iter()
        .position(|(_, w)| conns.iter().filter(|(_, v)| v == w).count() == 2)
        .unwrap_or_else(|| {
            panic!(
                "no worker holds two connections: {:?}",
                conns.iter().map(|c| &c.1).collect::<Vec<_>>()
            )
        });
    let (mut slow, worker) = conns.remove(shared);
    let fast = conns.iter().position(|(_, w)| *w == worker).expect("the other one");
    let (mut fast, _) = conns.remove(fast);
    slow.send(&fcgi::request(
        2,
        fcgi::KEEP_CONN,
        &Params::get("/cases", "sleep=2000"),
        b"",
    ));
    slow.wait_read();
    let started = Instant::now();
    let ex = fast.exchange(2, fcgi::KEEP_CONN, &Params::get("/hello", "name=fast"), b"");
    let took = started.elapsed();
    assert_eq!(ex.cgi().text(), "Hello, fast!\n", "{}", ex.summary());
    assert!(
        took < Duration::from_millis(200),
        "answered after {took:?}, behind the slow guest"
    );
    assert_eq!(slow.response(2).cgi().text(), "slept\n");
    // Both connections are served on, wherever they are now.
    let ex = fast.exchange(3, 0, &Params::get("/hello", "name=again"), b"");
    assert_eq!(ex.cgi().text(), "Hello, again!\n", "{}", ex.summary());
    let v = status_when(dir, &s.config, |v| v["handed_over"].as_u64() >= Some(1));
    assert_eq!(v["handed_over"].as_u64(), Some(1), "{v:#}");
}
