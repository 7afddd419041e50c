//! Integration tests: the real `wcgid` binary behind a real nginx, real
//! FastCGI records, guests built from `examples/` (`scripts/build-examples`).
//!
//! A runner of its own (`harness = false`): it starts the shared fixture
//! (see `support/fixture.rs`) once, runs the tests that share it in parallel,
//! then the ones that need the daemon to themselves, prints `ok`/`FAILED`
//! lines and a summary, and stops nginx and the daemon whatever happened.
//!
//! Usage: `cargo test --test integration -- [FILTER...] [--exact] [--list]
//! [--test-threads N] [-q]`. A test runs when its name (`module::test`)
//! contains any FILTER.

mod support;

mod apache_tests;
mod cgi_bin_tests;
mod config_tests;
mod connection_tests;
mod fastcgi_tests;
mod gateway_tests;
mod http_tests;
mod legacy_tests;
mod limits_tests;
mod migrate_tests;
mod scratch_tests;
mod signal_tests;
mod socket_tests;
mod status_tests;
mod systemd_tests;

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Fixture, Kind, TempRoot, Test};

/// The whole run, fixture included, is killed after this long.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Log lines shown under a failed test.
const LOG_TAIL: usize = 40;

fn all_tests() -> impl Iterator<Item = &'static Test> {
    [
        apache_tests::TESTS,
        http_tests::TESTS,
        scratch_tests::TESTS,
        fastcgi_tests::TESTS,
        gateway_tests::TESTS,
        cgi_bin_tests::TESTS,
        config_tests::TESTS,
        socket_tests::TESTS,
        connection_tests::TESTS,
        limits_tests::TESTS,
        signal_tests::TESTS,
        systemd_tests::TESTS,
        legacy_tests::TESTS,
        migrate_tests::TESTS,
        status_tests::TESTS,
    ]
    .into_iter()
    .flatten()
}

/// `integration::http_tests::x` → `http_tests::x`.
fn short(name: &str) -> &str {
    name.split_once("::").map_or(name, |(_, rest)| rest)
}

/// `integration::http_tests::x` → `x`: the directory of an `Alone` test,
/// without its module, so that the Unix sockets in it fit `sun_path` (108
/// bytes). Unique in the suite: `main` checks.
fn function(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

struct Options {
    filters: Vec<String>,
    exact: bool,
    list: bool,
    quiet: bool,
    threads: usize,
}

impl Options {
    fn parse() -> Options {
        let mut opts = Options {
            filters: Vec::new(),
            exact: false,
            list: false,
            quiet: false,
            threads: 4,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--exact" => opts.exact = true,
                "--list" => opts.list = true,
                "-q" | "--quiet" => opts.quiet = true,
                "--test-threads" => opts.threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(4),
                a if a.starts_with("--test-threads=") => opts.threads = a[15..].parse().unwrap_or(4),
                // libtest flags cargo may pass (--nocapture, --color...): nothing to do.
                a if a.starts_with('-') => {}
                _ => opts.filters.push(arg),
            }
        }
        opts.threads = opts.threads.max(1);
        opts
    }

    fn selects(&self, test: &Test) -> bool {
        let name = short(test.name);
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                if self.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            })
    }
}

thread_local! {
    /// The panic message of the test running on this runner thread.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics on runner threads are kept for the report; those on threads a test
/// spawned are printed, since nobody else will see them.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let runner = std::thread::current().name().is_some_and(|n| n.starts_with("runner"));
        if runner {
            PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
        } else {
            eprintln!("thread {:?} {info}", std::thread::current().name().unwrap_or("?"));
        }
    }));
}

struct Outcome {
    name: &'static str,
    failure: Option<String>,
}

fn run_one(test: &'static Test, fixture: Option<&Fixture>, scratch: &Path, quiet: bool) -> Outcome {
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| match test.kind {
        Kind::Shared(f) | Kind::Serial(f) => f(fixture.expect("the fixture runs")),
        Kind::Alone(f) => {
            let dir = scratch.join(function(test.name));
            std::fs::create_dir_all(&dir).expect("create the test's directory");
            f(&dir)
        }
    }));
    let took = started.elapsed().as_secs_f64();
    let name = short(test.name);
    let failure = result.err().map(|payload| {
        PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        })
    });
    match &failure {
        None if !quiet => println!("ok      {name} ({took:.2}s)"),
        None => {}
        Some(message) => {
            let mut report = format!("FAILED  {name} ({took:.2}s)\n");
            for line in message.lines() {
                report.push_str(&format!("    {line}\n"));
            }
            if let (Some(f), Kind::Shared(_) | Kind::Serial(_)) = (fixture, &test.kind) {
                report.push_str(&format!("    --- wcgid log, last {LOG_TAIL} lines ---\n"));
                for line in f.daemon.log_tail(LOG_TAIL).lines() {
                    report.push_str(&format!("    | {line}\n"));
                }
            }
            print!("{report}");
        }
    }
    Outcome {
        name: test.name,
        failure,
    }
}

/// Runs `tests` on `threads` runner threads.
fn run_parallel(
    tests: &[&'static Test],
    threads: usize,
    fixture: Option<&Fixture>,
    scratch: &Path,
    quiet: bool,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for i in 0..threads.min(tests.len()) {
            let (next, outcomes) = (&next, outcomes.clone());
            std::thread::Builder::new()
                .name(format!("runner-{i}"))
                .spawn_scoped(s, move || {
                    while let Some(test) = tests.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let outcome = run_one(test, fixture, scratch, quiet);
                        outcomes.lock().expect("outcomes").push(outcome);
                    }
                })
                .expect("spawn a runner thread");
        }
    });
    Arc::try_unwrap(outcomes)
        .ok()
        .expect("runners done")
        .into_inner()
        .expect("outcomes")
}

fn main() -> ExitCode {
    let opts = Options::parse();
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = all_tests().map(|t| function(t.name)).find(|&n| !names.insert(n)) {
        println!("two tests are called {twice}: their directories would be the same");
        return ExitCode::FAILURE;
    }
    let selected: Vec<&'static Test> = all_tests().filter(|t| opts.selects(t)).collect();
    let filtered_out = all_tests().count() - selected.len();
    if opts.list {
        for t in &selected {
            println!("{}: test", short(t.name));
        }
        return ExitCode::SUCCESS;
    }
    install_panic_hook();
    let started = Instant::now();
    let root = TempRoot::create();
    support::start_watchdog(root.path(), RUN_LIMIT);
    let (parallel, serial): (Vec<&'static Test>, Vec<&'static Test>) =
        selected.iter().partition(|t| !matches!(t.kind, Kind::Serial(_)));
    let needs_fixture = selected.iter().any(|t| !matches!(t.kind, Kind::Alone(_)));
    println!(
        "running {} tests ({} alone after the others)",
        selected.len(),
        serial.len()
    );

    let fixture = if needs_fixture {
        let setup = Instant::now();
        match Fixture::start(&root.path().join("fixture")) {
            Ok(f) => {
                if !opts.quiet {
                    println!("fixture: wcgid and nginx up in {:.2}s", setup.elapsed().as_secs_f64());
                }
                Some(f)
            }
            Err(e) => {
                println!("fixture failed to start:\n{e}");
                drop(root);
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let scratch = root.path().join("alone");
    let mut outcomes = run_parallel(&parallel, opts.threads, fixture.as_ref(), &scratch, opts.quiet);
    outcomes.extend(run_parallel(&serial, 1, fixture.as_ref(), &scratch, opts.quiet));
    // Stop nginx and the daemon before the summary: a daemon that does not
    // stop cleanly is a failure too.
    let mut shutdown_failure = None;
    if let Some(mut f) = fixture {
        f.nginx.stop();
        match f.daemon.stop() {
            Some(status) if status.success() && !f.socket.exists() => {}
            Some(status) => {
                shutdown_failure = Some(format!(
                    "wcgid exited with {status}, socket left behind: {}",
                    f.socket.exists()
                ))
            }
            None => shutdown_failure = Some("wcgid did not stop on SIGTERM; killed".into()),
        }
    }
    drop(root);

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    let took = started.elapsed().as_secs_f64();
    if !failed.is_empty() {
        println!("\nfailures:");
        for o in &failed {
            println!("    {}", short(o.name));
        }
    }
    if let Some(why) = &shutdown_failure {
        println!("\nfixture shutdown: {why}");
    }
    let ok = failed.is_empty() && shutdown_failure.is_none();
    println!(
        "\ntest result: {}. {} passed; {} failed; {filtered_out} filtered out; finished in {took:.2}s",
        if ok { "ok" } else { "FAILED" },
        outcomes.len() - failed.len(),
        failed.len(),
    );
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
