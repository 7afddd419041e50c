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
//! the requests on its connections fail.

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

use crate::config::Server;
use crate::listener::{Bound, DRAIN};

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
/// are serving.
pub fn supervise(config: &Path, server: &Server, cache_dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        ignore_user_signals();
        let mut bound = Bound::bind(server)?;
        let spawner = Arc::new(Spawner {
            config: config.canonicalize()?,
            cache_dir: cache_dir.into(),
            socket: bound.socket()?,
        });
        let mut workers = Vec::with_capacity(server.workers);
        for _ in 0..server.workers {
            workers.push(spawner.spawn().await?);
        }
        // Workers first: the socket answers when requests can be served.
        bound.publish()?;
        tracing::info!(listen = %server.listen, workers = server.workers, "serving");
        let status = format!("serving with {} workers", server.workers);
        notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
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
        let (stop_tx, stop) = watch::channel(false);
        let mut slots = JoinSet::new();
        for worker in workers {
            slots.spawn(keep(spawner.clone(), worker, stop.clone()));
        }
        drop(spawner);
        stop_signal().await;
        notify(&[NotifyState::Stopping]);
        // No new connections: the path goes, and so does our socket; the
        // workers' sockets close as each stops accepting.
        drop(bound);
        let _ = stop_tx.send(true);
        while slots.join_next().await.is_some() {}
        tracing::info!("stopped");
        Ok(())
    })
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

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
