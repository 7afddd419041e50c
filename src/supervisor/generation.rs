//! A generation: one configuration's worker processes, each kept running
//! in its slot (a dead worker is replaced, after a pause if it died young),
//! and stopped together, as [`Stop`] says, when the daemon stops or a reload
//! replaces them.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::shutdown::{DRAIN, Stop};
use crate::status::{self, Board};
use crate::worker::SUPERVISOR_ENV;
use crate::worker::handoff::Handoff;

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
pub struct Spawner {
    /// The configuration file and the AOT cache the workers load from.
    pub config: PathBuf,
    pub cache_dir: PathBuf,
    /// The listening socket, each worker's fd 0.
    pub socket: OwnedFd,
    /// The pair every worker hands waiting connections over on, whose fds
    /// the supervisor keeps open for them all.
    pub handoff: Handoff,
    pub board: Arc<Mutex<Board>>,
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

/// One configuration's workers, each kept running in its slot.
pub struct Generation {
    pub size: usize,
    /// How its workers are stopped, once they are.
    stop: watch::Sender<Option<Stop>>,
    slots: JoinSet<()>,
}

impl Generation {
    /// Starts `size` workers of generation `number` and waits until they
    /// all serve; if one cannot, the others are killed (dropped) and the
    /// error returned.
    pub async fn start(spawner: &Arc<Spawner>, size: usize, number: u64) -> Result<Generation, Error> {
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
    pub async fn stop(mut self, stop: Stop) {
        let _ = self.stop.send(Some(stop));
        while self.slots.join_next().await.is_some() {}
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
