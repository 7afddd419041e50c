//! A worker process: `wcgid __worker`, started by the supervisor with the
//! listening socket as its fd 0. It loads the configuration and the modules
//! (from the AOT cache), tells the supervisor it is ready by a byte on its
//! stdout, then accepts and serves connections on one thread until SIGTERM
//! or SIGQUIT, reporting its counts on that stdout (see [`crate::status`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cgi::{Gateway, Router, Watchdog};
use crate::config::Config;
use crate::fastcgi::{Caps, Handoff, Queue};
use crate::listener::{self, Halt, Listener};
use crate::sandbox::Engine;
use crate::status::{Reporter, Stats};

use super::{RETIRE, SHUT_DOWN};

/// Serves connections from the inherited listening socket until SIGTERM
/// or SIGQUIT.
pub fn run(engine: Engine, router: Router, config: &Config) -> anyhow::Result<()> {
    let server = &config.server;
    // The supervisor's death ends the worker, even in the middle of a guest.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // Unless it died before that took effect: then the worker's parent is
    // already another process (an init, or a subreaper).
    let supervisor = std::env::var(super::SUPERVISOR_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    if supervisor.is_some_and(|pid| nix::unistd::getppid().as_raw() != pid) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        super::ignore_user_signals();
        let listener = Listener::inherit()?;
        // SIGTERM (the daemon stops): the backlog's connections are served
        // too. SIGQUIT (a reload retires this worker): the new workers take
        // them. The halt flags are set at delivery; the channel wakes the
        // accept loop and tells the connections.
        let halt = Halt::on_signals(RETIRE, SHUT_DOWN)?;
        // Connections wait in the backlog until serve() takes them.
        let queue = Queue::with_inbound(listener.duplicate()?, Handoff::inherit()?, halt.flag())?;
        let stats = Arc::new(Stats::default());
        let reporter = Reporter::start(stats.clone(), ready()?)?;
        let watchdog = Watchdog::start(queue.clone(), server.queue_timeout, reporter.clone())?;
        let gateway = Rc::new(Gateway::new(router, engine, watchdog, server.access_log, stats));
        // GET_VALUES answers for the application; each worker takes its
        // share of the connections, so that together they never exceed it.
        let share = (server.max_connections / server.workers).max(1);
        let caps = Caps {
            max_conns: server.max_connections,
            max_reqs: server.max_connections,
            max_params_bytes: config.params.bytes,
            max_params: config.params.count,
        };
        let (stop_tx, stop) = watch::channel(false);
        let mut term = signal(SignalKind::from_raw(SHUT_DOWN as i32))?;
        let mut quit = signal(SignalKind::from_raw(RETIRE as i32))?;
        tokio::task::spawn_local(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = quit.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        listener::serve(listener, gateway, caps, share, queue, stop, halt).await;
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
