//! Signals: SIGTERM, SIGINT and SIGQUIT stop the daemon (letting what is in
//! flight finish), SIGHUP reloads it (keeping the old configuration when the
//! new one is broken), SIGUSR1 and SIGUSR2 change nothing; and the daemon as
//! PID 1 of a PID namespace, where SIGTERM comes from a container runtime.
//! Each test starts its own daemon in its own directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::alone::{assert_hello, config, config_with_apps, start};
use crate::support::daemon;
use crate::support::fcgi::{self, Params};
use crate::support::{example_module, poll, tests};

tests! {
    Alone stray_user_signals_stop_nothing,
    Alone serves_as_pid_1_of_a_pid_namespace,
    Alone sighup_reloads_without_losing_a_request,
    Alone sighup_with_a_broken_config_keeps_the_old_one,
    Alone sigterm_exits_0_and_removes_the_socket,
    Alone sigint_exits_0_and_removes_the_socket,
    Alone sigquit_exits_0_and_removes_the_socket,
    Alone sigterm_lets_the_request_in_flight_finish,
    Alone sigterm_under_load_answers_every_accepted_request,
    Alone sigterm_stops_the_daemon_while_a_guest_spins,
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
    let stop = AtomicBool::new(false);
    let (answered, howdy, slow_sent) = (AtomicUsize::new(0), AtomicBool::new(false), AtomicUsize::new(0));
    // Asserted once the threads are done: a panic here would wait for them.
    let (in_flight, reloaded, slow) = std::thread::scope(|s| {
        let fast: Vec<_> = (0..6)
            .map(|t| {
                let (socket, stop, answered, howdy) = (&socket, &stop, &answered, &howdy);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Relaxed) {
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
                        if text.starts_with("Howdy") {
                            howdy.store(true, Relaxed);
                        }
                        answered.fetch_add(1, Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let (socket, slow_sent) = (&socket, &slow_sent);
                s.spawn(move || {
                    let mut conn = fcgi::Conn::connect(socket);
                    conn.set_timeout(Duration::from_secs(20));
                    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=800"), b""));
                    slow_sent.fetch_add(1, Relaxed);
                    conn.response(1).cgi().text()
                })
            })
            .collect();
        // In flight at the reload: every slow request, and fast ones.
        let in_flight = poll(Duration::from_secs(10), || {
            (slow_sent.load(Relaxed) == 4 && answered.load(Relaxed) >= 6).then_some(())
        });
        with_greeting("Howdy");
        d.signal(Signal::SIGHUP);
        // Requests go on across the reload, until the new configuration
        // answers them.
        let reloaded = poll(Duration::from_secs(10), || {
            (howdy.load(Relaxed) && answered.load(Relaxed) >= 100 && d.log().contains("reloaded")).then_some(())
        });
        stop.store(true, Relaxed);
        for t in fast {
            t.join().expect("no wrong answer");
        }
        let slow: Vec<String> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        (in_flight, reloaded, slow)
    });
    let answered = answered.into_inner();
    assert!(in_flight.is_some(), "no request in flight to reload under");
    assert!(
        reloaded.is_some(),
        "within 10 s of the reload: {answered} requests (100 wanted), the new configuration answered: {}; log:\n{}",
        howdy.into_inner(),
        d.log()
    );
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
    // Each process logs each signal it ignores: all handled.
    let processes = 1 + workers.len();
    let handled = poll(Duration::from_secs(5), || {
        let log = d.log();
        ["SIGUSR1 ignored", "SIGUSR2 ignored"]
            .iter()
            .all(|line| log.matches(line).count() >= processes)
            .then_some(())
    });
    assert!(handled.is_some(), "log:\n{}", d.log());
    for i in 0..10 {
        assert_hello(&socket, &format!("after-{i}"));
    }
    assert_eq!(d.workers(), workers, "log:\n{}", d.log());
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

fn sigterm_lets_the_request_in_flight_finish(dir: &Path) {
    let (config, socket) = config(dir, "", &["cases"]);
    let mut d = start(dir, &config, &socket, &[]);
    let mut conn = fcgi::Conn::connect(&socket);
    let started = std::time::Instant::now();
    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=800"), b""));
    conn.wait_read();
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
    let stop = AtomicBool::new(false);
    let (answered, running) = (AtomicUsize::new(0), AtomicUsize::new(0));
    // Asserted once the threads are done: a panic here would wait for them.
    let (under_way, slow) = std::thread::scope(|s| {
        let fast: Vec<_> = (0..8)
            .map(|t| {
                let (socket, stop, answered) = (&socket, &stop, &answered);
                s.spawn(move || {
                    for n in 0.. {
                        let Ok(mut conn) = fcgi::Conn::try_connect(socket) else {
                            // Refused or gone: the stop began; nothing was accepted.
                            if stop.load(Relaxed) {
                                break;
                            }
                            continue;
                        };
                        conn.set_timeout(Duration::from_secs(20));
                        let name = format!("t{t}r{n}");
                        let ex = conn.exchange(1, 0, &Params::get("/hello", &format!("name={name}")), b"");
                        assert_eq!(ex.cgi().text(), format!("Hello, {name}!\n"), "{}", ex.summary());
                        assert_eq!(ex.ended().protocol_status, fcgi::REQUEST_COMPLETE);
                        answered.fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        let slow: Vec<_> = (0..2)
            .map(|_| {
                let (socket, running) = (&socket, &running);
                s.spawn(move || {
                    let mut conn = fcgi::Conn::connect(socket);
                    conn.set_timeout(Duration::from_secs(20));
                    let started = std::time::Instant::now();
                    conn.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=1000"), b""));
                    conn.wait_read();
                    running.fetch_add(1, Relaxed);
                    let text = conn.response(1).cgi().text();
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
        // The stop comes under load: fast requests answered, both slow
        // guests running.
        let under_way = poll(Duration::from_secs(10), || {
            (answered.load(Relaxed) >= 50 && running.load(Relaxed) == 2).then_some(())
        });
        stop.store(true, Relaxed);
        d.signal(Signal::SIGTERM);
        for t in fast {
            t.join().expect("every accepted request answered");
        }
        let slow: Vec<String> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        (under_way, slow)
    });
    assert_eq!(slow, ["slept\n", "slept\n"], "log:\n{}", d.log());
    assert!(
        under_way.is_some(),
        "only {} requests, and {} slow guests running, before the stop",
        answered.into_inner(),
        running.into_inner()
    );
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
    conn.wait_read();
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
