//! Under systemd: readiness and status on `NOTIFY_SOCKET`, socket
//! activation (and a backlog left to the next start), log lines to the
//! journal carrying their priority. Each test starts its own daemon in its
//! own directory.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::alone::{RUN_TIMEOUT, assert_hello, config};
use crate::support::daemon::{self, Daemon};
use crate::support::fcgi::{self, Params};
use crate::support::{poll, tests};

tests! {
    Alone lines_to_the_journal_carry_their_priority,
    Alone systemd_hears_ready_once_the_socket_serves_and_stopping,
    Alone socket_activation_serves_on_the_socket_systemd_passed,
    Alone a_stop_leaves_a_passed_backlog_to_the_next_start,
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
    let ex = poll(Duration::from_secs(5), || {
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
    sleeping.wait_read();
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
