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
pub mod init;
mod socket;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use parking_lot::Mutex;
use sd_notify::NotifyState;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cgi::Router;
use crate::config::{Config, Server};

use crate::sandbox::Engine;
use crate::shutdown::{self, DRAIN, Request, Signals, Stop, StopFlags};
use crate::status::{self, Board};
use crate::worker::accept::Acceptor;
use crate::worker::handoff::Handoff;
use crate::worker::queue::Queue;
use crate::worker::{self, SUPERVISOR_ENV};

use admin::Admin;
use socket::BoundSocket;

/// How long a new worker may take to load its modules.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// A worker that dies sooner than this after starting is replaced only
/// after [`RESPAWN_BACKOFF`], so that a crash loop does not spin.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);
/// How long a stopping worker may take beyond its own drain.
const STOP_MARGIN: Duration = Duration::from_secs(1);
/// How often STATUS= tells systemd the counts (when they changed).
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Admin connections served at once.
const ADMIN_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start a worker process: {0}")]
    Spawn(io::Error),
    #[error("a worker process failed to start (see its log lines above)")]
    NotReady,
}

/// How workers are started.
struct Spawner {
    config: PathBuf,
    cache_dir: PathBuf,
    socket: OwnedFd,
    /// The pair every worker hands waiting connections over on, whose fds
    /// the supervisor keeps open for them all.
    handoff: Handoff,
    board: Arc<Mutex<Board>>,
}

impl Spawner {
    /// Starts a worker of `generation` and waits until it is serving.
    async fn spawn(&self, generation: u64) -> Result<Worker, Error> {
        let socket = self.socket.try_clone().map_err(Error::Spawn)?;
        let (handoff, fds) = self.handoff.env().map_err(Error::Spawn)?;
        // Its own process group keeps a terminal's Ctrl-C for the
        // supervisor, which stops workers in order.
        let mut child = Command::new("/proc/self/exe")
            .arg("__worker")
            .arg("-c")
            .arg(&self.config)
            .env("WCGID_SERVER__CACHE_DIR", &self.cache_dir)
            .env(handoff, fds)
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            // Only the supervisor speaks to systemd.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::from(socket))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::Spawn)?;
        // The worker writes one byte to its stdout when it serves, then its
        // reports, a line each.
        let mut stdout = child.stdout.take().expect("piped");
        let mut ready = [0u8; 1];
        match tokio::time::timeout(READY_WITHIN, stdout.read(&mut ready)).await {
            Ok(Ok(1)) => {
                let pid = child.id().unwrap_or_default();
                self.board.lock().started(pid, generation);
                Ok(Worker {
                    child,
                    pid,
                    generation,
                    reports: Some(BufReader::new(stdout).lines()),
                    board: self.board.clone(),
                })
            }
            _ => {
                let _ = child.kill().await;
                Err(Error::NotReady)
            }
        }
    }
}

/// A worker process, and its reports. Its counts stay on the board until
/// it is dropped.
struct Worker {
    child: Child,
    pid: u32,
    generation: u64,
    /// `None` once the pipe ended.
    reports: Option<Lines<BufReader<ChildStdout>>>,
    board: Arc<Mutex<Board>>,
}

impl Worker {
    /// Reads the worker's next report onto the board; never completes
    /// once the pipe ended.
    async fn read_report(reports: &mut Option<Lines<BufReader<ChildStdout>>>, board: &Mutex<Board>, pid: u32) {
        let Some(lines) = reports else {
            return std::future::pending().await;
        };
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(stats) = status::parse_report(&line) {
                    board.lock().update(pid, stats);
                }
            }
            Ok(None) | Err(_) => *reports = None,
        }
    }

    /// Reads the reports a worker that ended left in its pipe.
    async fn last_reports(&mut self) {
        let read = async {
            while self.reports.is_some() {
                Worker::read_report(&mut self.reports, &self.board, self.pid).await;
            }
        };
        let _ = tokio::time::timeout(STOP_MARGIN, read).await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.board.lock().gone(self.pid);
    }
}

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

/// One configuration's workers, each kept running in its slot.
struct Generation {
    size: usize,
    /// How its workers are stopped, once they are.
    stop: watch::Sender<Option<Stop>>,
    slots: JoinSet<()>,
}

impl Generation {
    /// Starts `size` workers of generation `number` and waits until they
    /// all serve; if one cannot, the others are killed (dropped) and the
    /// error returned.
    async fn start(spawner: &Arc<Spawner>, size: usize, number: u64) -> Result<Generation, Error> {
        let mut workers = Vec::with_capacity(size);
        for _ in 0..size {
            workers.push(spawner.spawn(number).await?);
        }
        let (stop, stopped) = watch::channel(None);
        let mut slots = JoinSet::new();
        for worker in workers {
            slots.spawn(keep(spawner.clone(), worker, stopped.clone()));
        }
        Ok(Generation { size, stop, slots })
    }

    /// Stops the workers, letting them finish what they serve.
    async fn stop(mut self, stop: Stop) {
        let _ = self.stop.send(Some(stop));
        while self.slots.join_next().await.is_some() {}
    }
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

/// Keeps one worker slot filled until `stop`, then stops its worker.
async fn keep(spawner: Arc<Spawner>, mut worker: Worker, mut stop: watch::Receiver<Option<Stop>>) {
    let mut started = Instant::now();
    let mut stopped = stop.clone();
    loop {
        let Worker {
            child,
            reports,
            board,
            pid,
            generation,
        } = &mut worker;
        tokio::select! {
            status = child.wait() => {
                log_exit(*pid, status);
                let generation = *generation;
                worker.last_reports().await;
                drop(worker);
                spawner.board.lock().restarted();
                if started.elapsed() < RESPAWN_BACKOFF {
                    tokio::time::sleep(RESPAWN_BACKOFF).await;
                }
                worker = loop {
                    tokio::select! {
                        spawned = spawner.spawn(generation) => match spawned {
                            Ok(worker) => break worker,
                            Err(e) => {
                                tracing::error!("{e}; trying again");
                                tokio::time::sleep(RESPAWN_BACKOFF).await;
                            }
                        },
                        _ = stopping(&mut stopped) => return,
                    }
                };
                started = Instant::now();
            }
            () = Worker::read_report(reports, board, *pid) => {}
            how = stopping(&mut stop) => return stop_worker(worker, how).await,
        }
    }
}

/// How to stop, once it is time.
async fn stopping(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    // The guard wait_for returns is not Send: not held across an await.
    match stop.wait_for(Option::is_some).await {
        Ok(how) => how.unwrap_or(Stop::Drain),
        Err(_) => Stop::Drain,
    }
}

/// Stops a worker: its stop's signal lets it finish what it serves,
/// SIGKILL ends what remains after the drain.
async fn stop_worker(mut worker: Worker, how: Stop) {
    if let Ok(pid) = i32::try_from(worker.pid) {
        let _ = kill(Pid::from_raw(pid), how.signal());
    }
    // Its reports are read meanwhile, so that it never blocks on the pipe.
    let drained = async {
        loop {
            tokio::select! {
                _ = worker.child.wait() => break,
                () = Worker::read_report(&mut worker.reports, &worker.board, worker.pid) => {}
            }
        }
    };
    if tokio::time::timeout(DRAIN + STOP_MARGIN, drained).await.is_err() {
        tracing::warn!(pid = worker.pid, "worker still busy after the drain; killing it");
        let _ = worker.child.kill().await;
    }
    worker.last_reports().await;
}

/// Logs a worker's exit, which was not asked for.
fn log_exit(pid: u32, status: io::Result<ExitStatus>) {
    match status {
        Ok(status) => tracing::error!(pid, "worker exited ({status}); starting another"),
        Err(e) => tracing::error!(pid, "cannot wait for a worker: {e}; starting another"),
    }
}

/// Tells systemd (`NOTIFY_SOCKET`, under `Type=notify`) how the service is.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
