//! What each signal means to wcgid, in one place.
//!
//! The operator signals the supervisor:
//! - SIGHUP reloads: a new generation of workers on the configuration read
//!   again, the previous one retired ([`Request::Reload`]);
//! - SIGTERM, SIGINT and SIGQUIT stop the daemon gracefully, as php-fpm's
//!   SIGQUIT does ([`Request::Stop`]);
//! - SIGUSR1 and SIGUSR2 mean nothing, and are logged and ignored rather
//!   than left to end the process ([`ignore_user_signals`]).
//!
//! The supervisor signals its workers how to stop ([`Stop`]): drain (the
//! daemon stops) or retire (a reload replaced them, or systemd keeps the
//! socket). A worker sees its stop twice: as flags set by the signal
//! handler itself ([`StopFlags`]), so that a stop arriving while a guest
//! holds the worker's thread takes effect at once, and as a channel that
//! wakes its accept loop and tells its connections ([`stop_signalled`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long a stopping worker's connections may take to finish.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What the operator asked of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP.
    Reload,
    /// SIGTERM, SIGINT or SIGQUIT.
    Stop,
}

/// How the supervisor stops a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The daemon stops: the worker stops accepting, serves what already
    /// waits in the listen backlog (whose path is gone, so nothing more
    /// arrives), and finishes what it serves within [`DRAIN`].
    Drain,
    /// The worker is replaced, by a reload's new generation or by the
    /// daemon's next start on a socket systemd keeps: it stops accepting
    /// at once, leaving the backlog to them, and finishes what it serves.
    Retire,
}

impl Stop {
    /// The signal the supervisor sends a worker for this stop.
    pub fn signal(self) -> Signal {
        match self {
            Stop::Drain => Signal::SIGTERM,
            Stop::Retire => Signal::SIGQUIT,
        }
    }
}

/// The supervisor's signals, listened to from the start so that none is
/// missed while it is busy (a reload, say).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Call inside the tokio runtime.
    pub fn new() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next request, logged.
    pub async fn next(&mut self) -> Request {
        let (signal, request) = tokio::select! {
            _ = self.term.recv() => (Signal::SIGTERM, Request::Stop),
            _ = self.int.recv() => (Signal::SIGINT, Request::Stop),
            _ = self.quit.recv() => (Signal::SIGQUIT, Request::Stop),
            _ = self.hup.recv() => (Signal::SIGHUP, Request::Reload),
        };
        let doing = match request {
            Request::Reload => "reloading",
            Request::Stop => "stopping",
        };
        tracing::info!("{signal}: {doing}");
        request
    }
}

/// Logs and otherwise ignores SIGUSR1 and SIGUSR2, whose default action
/// would end the process: wcgid gives them no meaning, and a stray one
/// (`kill -USR1`) must not take requests down. Call inside the runtime.
pub fn ignore_user_signals() {
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

/// A worker's stop as the signal handler records it, at delivery.
/// `Default` is a stop that never comes (the admin socket's accept loop).
#[derive(Clone, Default)]
pub struct StopFlags {
    requested: Arc<AtomicBool>,
    drain_backlog: Arc<AtomicBool>,
}

impl StopFlags {
    /// Flags set by either [`Stop`]'s signal.
    pub fn on_signals() -> io::Result<StopFlags> {
        let flags = StopFlags::default();
        for stop in [Stop::Drain, Stop::Retire] {
            signal_hook::flag::register(stop.signal() as i32, flags.requested.clone())?;
        }
        signal_hook::flag::register(Stop::Drain.signal() as i32, flags.drain_backlog.clone())?;
        Ok(flags)
    }

    /// Whether a stop was signalled.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The flag a stop sets, for a thread that must know of it at once.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.requested.clone()
    }

    /// Whether the stop is [`Stop::Drain`]: the backlog is served first.
    pub fn drain_backlog(&self) -> bool {
        self.drain_backlog.load(Ordering::SeqCst)
    }
}

/// A channel that turns true at the first of [`Stop`]'s signals. Call
/// inside a [`tokio::task::LocalSet`].
pub fn stop_signalled() -> io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut drain = signal(SignalKind::from_raw(Stop::Drain.signal() as i32))?;
    let mut retire = signal(SignalKind::from_raw(Stop::Retire.signal() as i32))?;
    tokio::task::spawn_local(async move {
        tokio::select! {
            _ = drain.recv() => {}
            _ = retire.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}
