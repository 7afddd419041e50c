//! Worker processes, php-fpm style: the supervisor binds the listening
//! socket once and keeps `server.workers` worker processes (the same binary,
//! `wcgid __worker`) running, each of which accepts connections on that
//! socket and serves them on its single thread, running one guest at a time
//! ([`process`]).
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
//! docs/performance.md).
//!
//! Workers load the modules from the AOT cache the supervisor filled (a
//! private one in a temporary directory when `server.cache_dir` is unset),
//! so starting one compiles nothing. A worker that dies is replaced; only
//! the requests on its connections fail. SIGHUP starts a new generation of
//! workers on the configuration read again, and retires the old one once
//! the new one serves; the listening socket never closes.

pub mod process;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_notify::NotifyState;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cgi::Router;
use crate::config::{Config, Server};
use crate::listener::{Bound, DRAIN};
use crate::sandbox::Engine;

/// How long a new worker may take to load its modules.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// A worker that dies sooner than this after starting is replaced only
/// after [`RESPAWN_BACKOFF`], so that a crash loop does not spin.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);
/// How long a stopping worker may take beyond its own drain.
const STOP_MARGIN: Duration = Duration::from_secs(1);

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
}

impl Spawner {
    /// Starts a worker and waits until it is serving.
    async fn spawn(&self) -> Result<Child, Error> {
        let socket = self.socket.try_clone().map_err(Error::Spawn)?;
        // Its own process group keeps a terminal's Ctrl-C for the
        // supervisor, which stops workers in order.
        let mut child = Command::new("/proc/self/exe")
            .arg("__worker")
            .arg("-c")
            .arg(&self.config)
            .env("WCGID_SERVER__CACHE_DIR", &self.cache_dir)
            // Only the supervisor speaks to systemd.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::from(socket))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::Spawn)?;
        // The worker writes one byte to its stdout when it serves.
        let mut stdout = child.stdout.take().expect("piped");
        let mut ready = [0u8; 1];
        match tokio::time::timeout(READY_WITHIN, stdout.read(&mut ready)).await {
            Ok(Ok(1)) => Ok(child),
            _ => {
                let _ = child.kill().await;
                Err(Error::NotReady)
            }
        }
    }
}

/// Serves on `server.listen` with `server.workers` workers running the
/// configuration at `config`, their modules cached in `cache_dir`, until
/// SIGTERM or SIGINT; then stops the workers, letting them finish what they
/// are serving. SIGHUP reloads (see [`reload`]).
pub fn supervise(config: &Path, server: &Server, cache_dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        ignore_user_signals();
        let mut signals = Signals::new()?;
        let mut bound = Bound::bind(server)?;
        let spawner = Arc::new(Spawner {
            config: config.canonicalize()?,
            cache_dir: cache_dir.into(),
            socket: bound.socket()?,
        });
        let mut current = Generation::start(&spawner, server.workers).await?;
        // Workers first: the socket answers when requests can be served.
        bound.publish()?;
        tracing::info!(listen = %server.listen, workers = server.workers, "serving");
        notify_ready(server.workers);
        let mut watchdog_usec = 0;
        if sd_notify::watchdog_enabled(false, &mut watchdog_usec) {
            let period = Duration::from_micros(watchdog_usec / 2);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                loop {
                    ticks.tick().await;
                    notify(&[NotifyState::Watchdog]);
                }
            });
        }
        // Generations replaced by a reload, finishing their requests.
        let mut retiring = JoinSet::new();
        while signals.next().await == Signal::SIGHUP {
            let mut reloading = vec![NotifyState::Reloading];
            reloading.extend(NotifyState::monotonic_usec_now().ok());
            notify(&reloading);
            match reload(&spawner, server).await {
                Ok((next, workers)) => {
                    retiring.spawn(std::mem::replace(&mut current, next).stop());
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
        // No new connections: the path goes, and so does our socket; the
        // workers' sockets close as each stops accepting.
        drop(bound);
        drop(spawner);
        current.stop().await;
        while retiring.join_next().await.is_some() {}
        tracing::info!("stopped");
        Ok(())
    })
}

/// The configuration file read again: checked, its modules compiled into
/// the cache (off the async thread), and a new generation of workers
/// started on it. The listening socket is kept: `server.listen` and the
/// socket's mode take effect at the next start.
async fn reload(spawner: &Arc<Spawner>, running: &Server) -> anyhow::Result<(Generation, usize)> {
    let (path, cache_dir) = (spawner.config.clone(), spawner.cache_dir.clone());
    let server = tokio::task::spawn_blocking(move || -> anyhow::Result<Server> {
        let config = Config::load(&path)?;
        let engine = Engine::default().with_cache(&cache_dir)?;
        Router::load(&engine, &config)?;
        Ok(config.server)
    })
    .await??;
    if server.listen != running.listen || server.socket_mode != running.socket_mode {
        tracing::warn!("server.listen and the socket's mode and group change only at a restart");
    }
    let workers = server.workers;
    Ok((Generation::start(spawner, workers).await?, workers))
}

/// One configuration's workers, each kept running in its slot.
struct Generation {
    size: usize,
    stop: watch::Sender<bool>,
    slots: JoinSet<()>,
}

impl Generation {
    /// Starts `size` workers and waits until they all serve; if one cannot,
    /// the others are killed (dropped) and the error returned.
    async fn start(spawner: &Arc<Spawner>, size: usize) -> Result<Generation, Error> {
        let mut workers = Vec::with_capacity(size);
        for _ in 0..size {
            workers.push(spawner.spawn().await?);
        }
        let (stop, stopped) = watch::channel(false);
        let mut slots = JoinSet::new();
        for worker in workers {
            slots.spawn(keep(spawner.clone(), worker, stopped.clone()));
        }
        Ok(Generation { size, stop, slots })
    }

    /// Stops the workers, letting them finish what they serve.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.slots.join_next().await.is_some() {}
    }
}

/// READY=1 with the worker count, for systemd.
fn notify_ready(workers: usize) {
    let status = format!("serving with {workers} workers");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Keeps one worker slot filled until `stop`, then stops its worker.
async fn keep(spawner: Arc<Spawner>, mut worker: Child, mut stop: watch::Receiver<bool>) {
    let mut started = Instant::now();
    let mut stopped = stop.clone();
    loop {
        let pid = worker.id();
        tokio::select! {
            status = worker.wait() => {
                report(pid, status);
                if started.elapsed() < RESPAWN_BACKOFF {
                    tokio::time::sleep(RESPAWN_BACKOFF).await;
                }
                worker = loop {
                    tokio::select! {
                        spawned = spawner.spawn() => match spawned {
                            Ok(worker) => break worker,
                            Err(e) => {
                                tracing::error!("{e}; trying again");
                                tokio::time::sleep(RESPAWN_BACKOFF).await;
                            }
                        },
                        () = stopping(&mut stopped) => return,
                    }
                };
                started = Instant::now();
            }
            () = stopping(&mut stop) => return halt(worker).await,
        }
    }
}

/// Completes once `stop` turns true.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send: dropped here.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Stops a worker: SIGTERM lets it drain, SIGKILL ends what remains.
async fn halt(mut worker: Child) {
    if let Some(pid) = worker.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(DRAIN + STOP_MARGIN, worker.wait()).await.is_err() {
        tracing::warn!(pid = worker.id(), "worker still busy after the drain; killing it");
        let _ = worker.kill().await;
    }
}

fn report(pid: Option<u32>, status: io::Result<ExitStatus>) {
    match status {
        Ok(status) => tracing::error!(pid, "worker exited ({status}); starting another"),
        Err(e) => tracing::error!(pid, "cannot wait for a worker: {e}; starting another"),
    }
}

/// Tells systemd (`NOTIFY_SOCKET`, under `Type=notify`) how the service is.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Logs and otherwise ignores SIGUSR1 and SIGUSR2, whose default action
/// would end the process: wcgid gives them no meaning, and a stray one
/// (`kill -USR1`) must not take requests down. Call inside the runtime.
pub fn ignore_user_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in [
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        match signal(kind) {
            Ok(mut stream) => drop(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    tracing::info!("{name} ignored");
                }
            })),
            Err(e) => tracing::warn!("cannot handle {name}: {e}"),
        }
    }
}

/// The supervisor's signals, listened to from the start so that none is
/// missed while it is busy (a reload, say).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of SIGTERM, SIGINT and SIGHUP.
    async fn next(&mut self) -> Signal {
        let signal = tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.hup.recv() => Signal::SIGHUP,
        };
        tracing::info!(
            "{signal}: {}",
            if signal == Signal::SIGHUP {
                "reloading"
            } else {
                "stopping"
            }
        );
        signal
    }
}
