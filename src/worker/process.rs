//! A worker process: `wcgid __worker`, started by the supervisor with the
//! listening socket as its fd 0. It loads the configuration and the modules
//! (from the AOT cache), tells the supervisor it is ready by a byte on its
//! stdout, then accepts and serves connections on one thread until SIGTERM.

use std::io::Write;
use std::rc::Rc;

use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::cgi::{Gateway, Router, Watchdog};
use crate::config::Config;
use crate::fastcgi::{Caps, Queue};
use crate::listener::{self, Listener};
use crate::sandbox::Engine;

/// Serves connections from the inherited listening socket until SIGTERM.
pub fn run(engine: Engine, router: Router, config: &Config) -> anyhow::Result<()> {
    let server = &config.server;
    // The supervisor's death ends the worker, even in the middle of a guest.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() == 1 {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        super::ignore_user_signals();
        let listener = Listener::inherit()?;
        let queue = Queue::default().with_backlog(listener.duplicate()?);
        let watchdog = Watchdog::start(queue.clone(), server.queue_timeout)?;
        let gateway = Rc::new(Gateway::new(router, engine, watchdog, server.access_log));
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
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::task::spawn_local(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        ready()?;
        listener::serve(listener, gateway, caps, share, queue, stop).await;
        anyhow::Ok(())
    })?;
    // A guest still running after the drain must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::ZERO);
    Ok(())
}

/// Tells the supervisor that this worker serves; stdout is not used again.
fn ready() -> std::io::Result<()> {
    std::io::stdout().write_all(b"R")?;
    std::io::stdout().flush()?;
    nix::unistd::dup2_stdout(std::fs::File::open("/dev/null")?)?;
    Ok(())
}
