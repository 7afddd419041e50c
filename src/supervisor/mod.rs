//! The supervisor, php-fpm style: it binds the listening socket once
//! (`socket`) and keeps `server.workers` worker processes (the same
//! binary, `wcgid __worker`) running, each of which accepts connections on
//! that socket and serves them on its single thread, running one guest at a
//! time ([`crate::worker`]).
//!
//! # Why processes that own their connections
//! Restoring a snapshot copy-on-write, resetting a memory and growing it all
//! change page tables. In a process whose other threads run on other CPUs,
//! each such change sends TLB-shootdown interrupts to those CPUs, and the
//! copy-on-write fault of the first write to a snapshot page is one of them:
//! measured on this machine kind, shootdowns were 42 % of the time of a
//! QuickJS request restored from its snapshot when guests ran on threads of
//! the daemon. A single-threaded worker flushes only its own CPU. And a
//! worker that does its own FastCGI I/O needs no hand-off to another process
//! per request: measured against a daemon that fed worker processes over
//! socket pairs, this doubled hello's throughput through nginx (see
//! docs/performance.md). A connection moves to another worker only when a
//! request on it would otherwise wait for its busy worker
//! ([`crate::worker::handoff`], over a socket pair the supervisor makes).
//!
//! Workers load the modules from the AOT cache the supervisor filled (a
//! private one in a temporary directory when `server.cache_dir` is unset),
//! so starting one compiles nothing. A worker that dies is replaced; only
//! the requests on its connections fail. SIGHUP starts a new generation of
//! workers on the configuration read again, and retires the old one once
//! the new one serves; the listening socket never closes.
//!
//! The supervisor also serves the admin socket (status, metrics, ping:
//! `admin`) from the workers' reports, so that it answers however busy the
//! workers are. As PID 1 of a container it first forks an init ([`init`]).

mod admin;
mod generation;
pub mod init;
mod socket;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cgi::Router;
use crate::config::{Config, Server};
use crate::sandbox::Engine;
use crate::shutdown::{self, Request, Signals, Stop, StopFlags};
use crate::status::Board;
use crate::worker;
use crate::worker::accept::Acceptor;
use crate::worker::handoff::Handoff;
use crate::worker::queue::Queue;

use admin::Admin;
use generation::{Generation, Spawner};
use socket::BoundSocket;

/// How often STATUS= tells systemd the counts (when they changed).
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Admin connections served at once.
const ADMIN_CONNECTIONS: usize = 64;

/// Serves on `server.listen` with `server.workers` workers running the
/// configuration at `path`, their modules cached in `cache_dir`, and the
/// admin socket if one is configured or passed, until SIGTERM, SIGINT or SIGQUIT;
/// then stops the workers, letting them finish what they are serving.
/// SIGHUP reloads (see `reload`).
pub fn supervise(path: &Path, config: &Config, cache_dir: &Path) -> anyhow::Result<()> {
    let server = &config.server;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        shutdown::ignore_user_signals();
        let mut signals = Signals::new()?;
        let (mut bound, mut admin) = BoundSocket::bind_all(&server.socket, config.admin.as_ref())?;
        let board = Arc::new(Mutex::new(Board::new(server.socket.listen.to_string())));
        let spawner = Arc::new(Spawner {
            config: path.canonicalize()?,
            cache_dir: cache_dir.into(),
            socket: bound.socket()?,
            handoff: Handoff::new()?,
            board: board.clone(),
        });
        let mut current = Generation::start(&spawner, server.workers, 1).await?;
        // Workers first: the socket answers when requests can be served.
        bound.publish()?;
        let (stop_admin, admin_stopped) = watch::channel(false);
        if let Some(admin) = &mut admin {
            let acceptor = Acceptor::from_socket(admin.socket()?)?;
            let handler = Rc::new(Admin::new(board.clone()));
            tokio::task::spawn_local(worker::accept::serve(
                acceptor,
                handler,
                worker::caps(config, ADMIN_CONNECTIONS),
                ADMIN_CONNECTIONS,
                Queue::default(),
                admin_stopped,
                StopFlags::default(),
            ));
            admin.publish()?;
        }
        tracing::info!(listen = %server.socket.listen, workers = server.workers, "serving");
        notify_ready(server.workers);
        if let Some(timeout) = sd_notify::watchdog_enabled() {
            let period = timeout / 2;
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                loop {
                    ticks.tick().await;
                    notify(&[NotifyState::Watchdog]);
                }
            });
        }
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            tokio::spawn(tell_status(board.clone()));
        }
        // Generations replaced by a reload, finishing their requests.
        let mut retiring = JoinSet::new();
        while signals.next().await == Request::Reload {
            let mut reloading = vec![NotifyState::Reloading];
            reloading.extend(NotifyState::monotonic_usec_now().ok());
            notify(&reloading);
            match reload(&spawner, server).await {
                Ok((next, workers)) => {
                    board.lock().reloaded();
                    retiring.spawn(std::mem::replace(&mut current, next).stop(Stop::Retire));
                    tracing::info!(workers, "reloaded; the previous workers finish what they serve");
                    notify_ready(workers);
                }
                Err(e) => {
                    tracing::error!("reload failed, still serving the previous configuration: {e:#}");
                    notify_ready(current.size);
                }
            }
        }
        notify(&[NotifyState::Stopping]);
        // Our own socket: the path goes (no new connections), the workers
        // serve what already waits in the backlog, and the socket closes as
        // each stops accepting. A socket systemd passed stays open in
        // systemd: what waits there and what still arrives is for the next
        // start (a restart, or the activation its next connection brings),
        // so the workers stop accepting at once, as when retired. The admin
        // socket answers until the workers are gone.
        let stop = if bound.activated() { Stop::Retire } else { Stop::Drain };
        drop(bound);
        drop(spawner);
        current.stop(stop).await;
        while retiring.join_next().await.is_some() {}
        let _ = stop_admin.send(true);
        drop(admin);
        tracing::info!("stopped");
        Ok(())
    })
}

/// The configuration file read again: checked, its modules compiled into
/// the cache (off the async thread), and a new generation of workers
/// started on it. The listening sockets are kept: `server.listen`, the
/// admin socket and their modes take effect at the next start.
async fn reload(spawner: &Arc<Spawner>, running: &Server) -> anyhow::Result<(Generation, usize)> {
    let (path, cache_dir) = (spawner.config.clone(), spawner.cache_dir.clone());
    let server = tokio::task::spawn_blocking(move || -> anyhow::Result<Server> {
        let config = Config::load(&path)?;
        let engine = Engine::default().with_cache(&cache_dir)?;
        Router::load(&engine, &config)?;
        Ok(config.server)
    })
    .await??;
    if server.socket != running.socket {
        tracing::warn!("server.listen and the socket's mode and group change only at a restart");
    }
    let workers = server.workers;
    let generation = spawner.board.lock().generation() + 1;
    Ok((Generation::start(spawner, workers, generation).await?, workers))
}

/// READY=1 with the worker count, for systemd.
fn notify_ready(workers: usize) {
    let status = format!("serving with {workers} workers");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the counts (STATUS=, shown by `systemctl status`) when
/// they change.
async fn tell_status(board: Arc<Mutex<Board>>) {
    let mut told = String::new();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    loop {
        ticks.tick().await;
        let view = board.lock().view();
        let status = format!(
            "{} workers ({} busy), {} requests, {} in flight, {} rejected",
            view.workers.len(),
            view.busy_workers,
            view.requests,
            view.in_flight,
            view.rejected
        );
        if status != told {
            notify(&[NotifyState::Status(&status)]);
            told = status;
        }
    }
}

/// Tells systemd (`NOTIFY_SOCKET`, under `Type=notify`) how the service is.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
