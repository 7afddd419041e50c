//! Worker processes: where guests run.
//!
//! The daemon does the FastCGI I/O and routing on its async threads and
//! hands each request, with its whole body, to one of `server.workers`
//! worker processes (the same binary, `wcgid __worker`), each running one
//! guest at a time on its single thread, talking to the daemon over a Unix
//! socket pair ([`protocol`]).
//!
//! # Why processes
//! Restoring a snapshot copy-on-write, resetting a memory and growing it all
//! change page tables. In a process whose other threads are running on other
//! CPUs, each such change sends TLB-shootdown interrupts to those CPUs, and
//! the copy-on-write fault of the first write to a snapshot page is one of
//! them: measured on this machine kind, shootdowns from those faults were
//! 42 % of the time of a QuickJS request restored from its snapshot when
//! guests ran on threads of the daemon. A single-threaded worker flushes only
//! its own CPU. Processes also make the last resort simple and sure: a worker
//! whose guest runs on after its client left is killed and replaced, which
//! needs no cooperation from the guest or from Wasmer.
//!
//! Workers load the modules from the AOT cache the daemon filled (a private
//! one in a temporary directory when `server.cache_dir` is unset), so
//! starting one compiles nothing. A worker that dies is replaced; its request
//! fails alone.

pub mod process;
pub mod protocol;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc};

use crate::cgi::body::Body;
use crate::cgi::response::error_page;
use crate::fastcgi::Reply;
use protocol::{JobSpec, put_frame, read_frame_async, write_frames_async};

/// How long a new worker may take to load its modules.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// Body bytes per frame to a worker.
const BODY_CHUNK: usize = 64 * 1024;
/// Pause between attempts to replace a worker that failed to start.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start a worker process: {0}")]
    Spawn(io::Error),
    #[error("a worker process failed to start (see its log lines above)")]
    NotReady,
    #[error("worker protocol: {0}")]
    Protocol(#[from] protocol::Error),
}

/// How workers are started.
struct Spawner {
    config: PathBuf,
    cache_dir: PathBuf,
}

impl Spawner {
    async fn spawn(&self) -> Result<Worker, Error> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(Error::Spawn)?;
        // The worker's end is its stdin; its own process group keeps a
        // terminal's Ctrl-C for the daemon, which stops workers in order.
        let mut child = Command::new("/proc/self/exe")
            .arg("__worker")
            .arg("-c")
            .arg(&self.config)
            .env("WCGID_SERVER__CACHE_DIR", &self.cache_dir)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::Spawn)?;
        ours.set_nonblocking(true).map_err(Error::Spawn)?;
        let mut stream = BufReader::new(UnixStream::from_std(ours).map_err(Error::Spawn)?);
        match tokio::time::timeout(READY_WITHIN, read_frame_async(&mut stream)).await {
            Ok(Ok(Some((protocol::READY, _)))) => Ok(Worker { stream, child }),
            _ => {
                let _ = child.kill().await;
                Err(Error::NotReady)
            }
        }
    }
}

struct Worker {
    /// Buffered for reading; written through `get_mut`.
    stream: BufReader<UnixStream>,
    child: Child,
}

/// Why an exchange with a worker did not finish.
enum Failure {
    /// The client went away: the worker is still busy with it.
    Abandoned,
    /// The worker broke the protocol, or died.
    Broken(String),
}

impl Worker {
    /// An idle worker sends nothing: a readable socket means it exited.
    fn is_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends the job and its body, then passes replies to `tx` until the
    /// request ends. Returns whether anything reached `tx`.
    async fn exchange(
        &mut self,
        spec: &JobSpec,
        body: Body,
        tx: &mpsc::Sender<Reply>,
        sent: &mut bool,
    ) -> Result<(), Failure> {
        let broken = |e: protocol::Error| Failure::Broken(e.to_string());
        // The job and as much body as fits go out in one write.
        let mut frames = BytesMut::new();
        put_frame(&mut frames, protocol::JOB, &spec.encode()).map_err(broken)?;
        for chunk in body.chunks(BODY_CHUNK) {
            let chunk = chunk.map_err(|e| Failure::Broken(format!("cannot read the spooled body: {e}")))?;
            put_frame(&mut frames, protocol::BODY, &chunk).map_err(broken)?;
            if frames.len() >= BODY_CHUNK {
                write_frames_async(self.stream.get_mut(), &frames.split())
                    .await
                    .map_err(broken)?;
            }
        }
        put_frame(&mut frames, protocol::BODY_END, &[]).map_err(broken)?;
        write_frames_async(self.stream.get_mut(), &frames)
            .await
            .map_err(broken)?;
        loop {
            let frame = read_frame_async(&mut self.stream).await.map_err(broken)?;
            let reply = match frame {
                Some((protocol::STDOUT, bytes)) => Reply::Stdout(bytes),
                Some((protocol::END, payload)) => {
                    let (app_status, stdout) = protocol::decode_end(payload).map_err(broken)?;
                    Reply::End { stdout, app_status }
                }
                // The response breaks off: dropping `tx` closes the connection.
                Some((protocol::CUT, _)) => return Ok(()),
                Some((kind, _)) => return Err(broken(protocol::Error::Unexpected(kind))),
                None => return Err(Failure::Broken("the worker exited".into())),
            };
            let end = matches!(reply, Reply::End { .. });
            tx.send(reply).await.map_err(|_| Failure::Abandoned)?;
            *sent = true;
            if end {
                return Ok(());
            }
        }
    }
}

/// The worker processes, and the queue of requests waiting for one.
pub struct Pool {
    spawner: Spawner,
    idle: Mutex<Vec<Worker>>,
    /// One permit per idle worker.
    available: Semaphore,
}

impl Pool {
    /// Starts `size` workers running `config`, loading modules from
    /// `cache_dir`, and waits until they are all ready.
    pub async fn start(config: &Path, cache_dir: &Path, size: usize) -> Result<Arc<Pool>, Error> {
        let spawner = Spawner {
            config: config.into(),
            cache_dir: cache_dir.into(),
        };
        let mut workers = Vec::with_capacity(size);
        for _ in 0..size {
            workers.push(spawner.spawn().await?);
        }
        Ok(Arc::new(Pool {
            spawner,
            idle: Mutex::new(workers),
            available: Semaphore::new(size),
        }))
    }

    fn checkout(&self) -> Worker {
        self.idle
            .lock()
            .expect("pool lock")
            .pop()
            .expect("a permit means an idle worker")
    }

    fn checkin(&self, worker: Worker) {
        self.idle.lock().expect("pool lock").push(worker);
        self.available.add_permits(1);
    }

    /// Runs `spec` with `body` on the next free worker, passing its replies
    /// to `tx`. A request whose client leaves before a worker is free never
    /// runs; one whose client leaves while it runs has its worker killed.
    pub async fn run(self: &Arc<Self>, spec: JobSpec, body: Body, tx: mpsc::Sender<Reply>) {
        let mut worker = loop {
            let Ok(permit) = self.available.acquire().await else {
                return;
            };
            permit.forget();
            let worker = self.checkout();
            if worker.is_alive() {
                break worker;
            }
            // It died while idle (killed from outside?): no request of its
            // own to fail; this one goes to another worker.
            tracing::error!(pid = worker.child.id(), "idle worker died; replacing it");
            self.replace(worker);
        };
        if tx.is_closed() {
            return self.checkin(worker);
        }
        let mut sent = false;
        let result = tokio::select! {
            result = worker.exchange(&spec, body, &tx, &mut sent) => result,
            () = tx.closed() => Err(Failure::Abandoned),
        };
        match result {
            Ok(()) => self.checkin(worker),
            Err(failure) => {
                if let Failure::Broken(why) = failure {
                    tracing::error!(
                        req = spec.id,
                        pid = worker.child.id(),
                        "worker failed: {why}; replacing it"
                    );
                    if !sent {
                        let _ = tx
                            .send(Reply::End {
                                stdout: error_page(502),
                                app_status: 0,
                            })
                            .await;
                    }
                }
                let _ = worker.child.start_kill();
                self.replace(worker);
            }
        }
    }

    /// Reaps `dead` and starts its replacement in the background.
    fn replace(self: &Arc<Self>, mut dead: Worker) {
        let pool = self.clone();
        tokio::spawn(async move {
            let _ = dead.child.wait().await;
            loop {
                match pool.spawner.spawn().await {
                    Ok(worker) => return pool.checkin(worker),
                    Err(e) => {
                        tracing::error!("{e}; trying again");
                        tokio::time::sleep(RESPAWN_BACKOFF).await;
                    }
                }
            }
        });
    }
}
