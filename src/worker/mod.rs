//! A worker process: `wcgid __worker`, started by the supervisor with the
//! listening socket as its fd 0. It loads the configuration and the modules
//! (from the AOT cache), tells the supervisor it is ready by a byte on its
//! stdout, then accepts and serves connections on one thread until it is
//! stopped ([`crate::shutdown`]), reporting its counts on that stdout (see
//! [`crate::status`]).
//!
//! Its rooms: [`accept`] takes connections and drains them at the stop;
//! each is served by [`crate::fastcgi`] with the [`Gateway`] as handler,
//! which runs the guests; beside the serving thread, the [`watchdog`] stops
//! guests that overrun, and passes on ([`handoff`]) or sheds the requests
//! that would wait ([`queue`]).

pub mod accept;
pub mod handoff;
pub mod queue;
pub mod watchdog;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;

use nix::sys::signal::Signal;

use crate::cgi::{Gateway, Router};
use crate::config::Config;
use crate::fastcgi::Caps;
use crate::sandbox::Engine;
use crate::shutdown::{self, StopFlags};
use crate::status::{Reporter, Stats};

use accept::Acceptor;
use handoff::Handoff;
use queue::Queue;
use watchdog::Watchdog;

/// The variable that gives a worker its supervisor's pid: a worker whose
/// parent is no longer that process ends.
pub const SUPERVISOR_ENV: &str = "WCGID_SUPERVISOR_PID";

/// The limits a FastCGI connection is held to, and announces in
/// FCGI_GET_VALUES_RESULT (FastCGI 1.0 §4.1): `connections` at once, one
/// request at a time on each.
pub fn caps(config: &Config, connections: usize) -> Caps {
    Caps {
        max_conns: connections,
        max_reqs: connections,
        max_params_bytes: config.params.bytes,
        max_params: config.params.count,
    }
}

/// Serves connections from the inherited listening socket until stopped.
pub fn run(engine: Engine, router: Router, config: &Config) -> anyhow::Result<()> {
    let server = &config.server;
    // The supervisor's death ends the worker, even in the middle of a guest.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // Unless it died before that took effect: then the worker's parent is
    // already another process (an init, or a subreaper).
    let supervisor = std::env::var(SUPERVISOR_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    if supervisor.is_some_and(|pid| nix::unistd::getppid().as_raw() != pid) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        shutdown::ignore_user_signals();
        let acceptor = Acceptor::inherit()?;
        let flags = StopFlags::on_signals()?;
        // Connections wait in the backlog until serve() takes them.
        let queue = Queue::with_inbound(acceptor.duplicate()?, Handoff::inherit()?, flags.flag())?;
        let stats = Arc::new(Stats::default());
        let reporter = Reporter::start(stats.clone(), ready()?)?;
        let watchdog = Watchdog::start(queue.clone(), server.queue_timeout, reporter.clone())?;
        let gateway = Rc::new(Gateway::new(
            router,
            engine,
            Rc::new(watchdog),
            server.access_log,
            stats,
        ));
        // GET_VALUES answers for the application; each worker takes its
        // share of the connections, so that together they never exceed it.
        let share = (server.max_connections / server.workers).max(1);
        let caps = caps(config, server.max_connections);
        let stop = shutdown::stop_signalled()?;
        accept::serve(acceptor, gateway, caps, share, queue, stop, flags).await;
        reporter.send();
        anyhow::Ok(())
    })?;
    // A guest still running after the drain must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::ZERO);
    Ok(())
}

/// Tells the supervisor that this worker serves, and returns the pipe for
/// the reports; stdout becomes /dev/null, so that nothing else gets there.
fn ready() -> std::io::Result<File> {
    let mut pipe = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    nix::unistd::dup2_stdout(File::open("/dev/null")?)?;
    pipe.write_all(b"R")?;
    Ok(pipe)
}
