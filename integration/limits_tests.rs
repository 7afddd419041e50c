//! Limits and overload: a guest's memory, body, output, time and fuel; the
//! connections served at once; requests that waited past
//! `server.queue_timeout`, answered 503 with FCGI_OVERLOADED, and waits that
//! must not count as one. Each test starts its own daemon in its own
//! directory.

use std::path::Path;
use std::time::Duration;

use crate::support::alone::{RUN_TIMEOUT, assert_hello, assert_usage_error, cases, config, start};
use crate::support::daemon::{self, Daemon};
use crate::support::fcgi::{self, Params};
use crate::support::tests;

tests! {
    Alone max_connections_bounds_the_connections_served,
    Alone limits_bound_memory_body_and_output,
    Alone timeout_stops_a_sleeping_guest_with_504,
    Alone timeout_stops_a_spinning_guest_inside_its_worker,
    Alone a_request_queued_too_long_gets_503_overloaded,
    Alone a_wait_is_timed_from_its_own_start,
    Alone a_busy_queue_is_many_short_waits_not_one_long_one,
    Alone a_backlogged_connection_gets_503_overloaded,
    Alone a_backlogged_upload_is_served_not_dropped,
    Alone a_non_reading_client_holds_its_guest_until_the_timeout,
    Alone fuel_stops_a_spinning_guest_inside_its_worker,
    Alone memory_limit_below_a_modules_start_is_refused,
}

/// With max_connections = 1, a second connection is served only once the
/// first one is gone.
fn max_connections_bounds_the_connections_served(dir: &Path) {
    let (config, socket) = config(dir, "max_connections = 1", &["hello"]);
    let _d = start(dir, &config, &socket, &[]);
    // Connected first, so accepted first (the backlog is a queue): the one
    // connection served.
    let idle = fcgi::Conn::connect(&socket);
    let mut waiting = fcgi::Conn::connect(&socket);
    waiting.send(&fcgi::request(1, 0, &Params::get("/hello", "name=second"), b""));
    assert_eq!(waiting.state(Duration::from_millis(500)), fcgi::State::Open);
    drop(idle);
    waiting.set_timeout(Duration::from_secs(10));
    assert_eq!(waiting.response(1).cgi().text(), "Hello, second!\n");
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

/// A request on a connection whose worker runs another connection's long
/// guest is answered 503 with FCGI_OVERLOADED once it has waited
/// server.queue_timeout, without running; the long request completes and
/// the worker serves on (conformance.md #67).
fn a_request_queued_too_long_gets_503_overloaded(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\nqueue_timeout = \"500ms\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    // Connected first, so accepted first (the backlog is a queue): by the
    // only worker, before the guest it reads next starts.
    let mut waiting = fcgi::Conn::connect(&socket);
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    slow.wait_read();
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
        if round > 0 {
            // The subject: the second wait begins well after the first one
            // would have passed queue_timeout.
            std::thread::sleep(Duration::from_millis(1500));
        }
        // Connected first, so accepted first (the backlog is a queue).
        let mut slow = fcgi::Conn::connect(&socket);
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

/// A new connection no worker takes (the only one runs a long guest) is
/// accepted by the watchdog once it has waited server.queue_timeout, and its
/// request answered 503 with FCGI_OVERLOADED without running.
fn a_backlogged_connection_gets_503_overloaded(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1\nqueue_timeout = \"500ms\"", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    slow.wait_read();
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
    slow.wait_read();
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut upload = fcgi::Conn::connect(&socket);
    upload.set_timeout(Duration::from_secs(20));
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", body.len().to_string());
    let mut head = fcgi::begin(1, fcgi::RESPONDER, 0);
    head.extend(fcgi::stream(fcgi::PARAMS, 1, &params.encode()));
    head.extend(fcgi::record(fcgi::PARAMS, 1, b""));
    head.extend(fcgi::stream(fcgi::STDIN, 1, &body[..4096]));
    upload.send(&head);
    // The subject: the upload stalls mid-body in the backlog past
    // queue_timeout, while the only worker still sleeps. (The watchdog
    // takes it meanwhile, peeking at it: nothing a client can see.)
    std::thread::sleep(Duration::from_millis(1200));
    let mut rest = fcgi::stream(fcgi::STDIN, 1, &body[4096..]);
    rest.extend(fcgi::record(fcgi::STDIN, 1, b""));
    upload.send(&rest);
    let ex = upload.response(1);
    assert_eq!(ex.cgi().status, 200, "{}", ex.summary());
    assert!(ex.cgi().body == body, "{}", ex.summary());
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
}

fn memory_limit_below_a_modules_start_is_refused(dir: &Path) {
    let (config, _) = config(dir, "[limits]\nmemory = \"64KiB\"", &["hello"]);
    let run = daemon::run(dir, &["check", "-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["hello", "over the limit of 65536"]);
}
