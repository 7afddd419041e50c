//! Connections and the workers that serve them: how many guests run at
//! once, a killed worker, clients that hang up, abort or give up while a
//! guest runs, output streamed as it is written, ten thousand connections
//! at once. Each test starts its own daemon in its own directory.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::alone::{assert_hello, config, start};
use crate::support::fcgi::{self, END_REQUEST, Params, STDOUT};
use crate::support::{poll, tests};

tests! {
    Alone workers_bound_the_guests_running_at_once,
    Alone a_killed_worker_is_replaced_and_fails_no_other_request,
    Alone client_gone_mid_response_frees_the_worker,
    Alone client_gone_mid_body_frees_the_worker,
    Alone abort_request_stops_the_running_guest,
    Alone a_request_given_up_while_it_waited_is_not_run,
    Alone abort_request_stops_a_spinning_guest_within_50ms,
    Alone a_closed_connection_frees_a_spinning_guests_slot_within_50ms,
    Alone ten_thousand_concurrent_connections_are_all_served,
    Alone streamed_output_is_sent_as_it_is_written,
    Alone a_kept_connection_closed_by_nginx_logs_no_warning,
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
    let dead = poll(Duration::from_secs(5), || {
        (!d.workers().contains(&workers[0])).then_some(())
    });
    assert!(dead.is_some(), "worker {} still runs after SIGKILL", workers[0]);
    for i in 0..20 {
        assert_hello(&socket, &format!("after-kill-{i}"));
    }
    // Both workers die while one runs a slow request: that request fails,
    // the next ones are served by the replacements.
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=3000"), b""));
    slow.wait_read();
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

/// With one worker, a request waits for the guest before it.
fn workers_bound_the_guests_running_at_once(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let _d = start(dir, &config, &socket, &[]);
    let started = std::time::Instant::now();
    let mut slow = fcgi::Conn::connect(&socket);
    slow.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=400"), b""));
    slow.wait_read();
    assert_hello(&socket, "waited");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "answered after {waited:?}, beside a 400 ms guest"
    );
    assert_eq!(slow.response(1).cgi().text(), "slept\n");
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
    // Read, but the guest has not started: wcgid waits for the whole body
    // first.
    conn.wait_read();
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
    conn.wait_read();
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
    slow.wait_read();
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

/// FCGI_ABORT_REQUEST on a guest that spins without calling the host:
/// END_REQUEST within 50 ms, and the same worker serves the next request.
fn abort_request_stops_a_spinning_guest_within_50ms(dir: &Path) {
    let (config, socket) = config(dir, "workers = 1", &["cases", "hello"]);
    let d = start(dir, &config, &socket, &[]);
    let before = d.workers();
    let mut conn = fcgi::Conn::connect(&socket);
    conn.send(&fcgi::request(1, fcgi::KEEP_CONN, &Params::get("/cases", "spin"), b""));
    conn.wait_read();
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
    conn.wait_read();
    let started = std::time::Instant::now();
    drop(conn);
    let ex = next.exchange(1, 0, &Params::get("/hello", "name=next"), b"");
    let took = started.elapsed();
    assert_eq!(ex.cgi().text(), "Hello, next!\n", "{}; log:\n{}", ex.summary(), d.log());
    assert!(took < Duration::from_millis(50), "answered {took:?} after the close");
    assert_eq!(d.workers(), before, "the worker must not have been replaced");
}

/// nginx closes kept connections it no longer needs: that is no error, and
/// logs no warning (conformance.md #65).
fn a_kept_connection_closed_by_nginx_logs_no_warning(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let mut d = start(dir, &config, &socket, &[]);
    for _ in 0..5 {
        let mut conn = fcgi::Conn::connect(&socket);
        let ex = conn.exchange(1, fcgi::KEEP_CONN, &Params::get("/hello", "name=kept"), b"");
        assert_eq!(ex.cgi().text(), "Hello, kept!\n");
    }
    // Once stopped, it has seen every close and logged what it would.
    assert!(d.stop().is_some_and(|s| s.success()), "log:\n{}", d.log());
    let log = d.log();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "log:\n{log}");
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
