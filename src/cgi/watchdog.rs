//! The gateway's watchdog: while a guest runs, it watches the request's
//! connection and the clock, and stops the guest once the web server has
//! given up on the request (FCGI_ABORT_REQUEST, FastCGI 1.0 §5.4, or the
//! connection closed, as nginx does when its client goes away) or once the
//! app's timeout has passed.
//!
//! The guest runs on the worker's serving thread, which reads nothing
//! meanwhile, so the watchdog is a second thread. A request pays two
//! uncontended lock operations for it: the watchdog wakes every [`TICK`] and
//! only watches a run it has seen in progress for a whole tick, so short
//! requests are never looked at, and when it does watch it sleeps in poll(2)
//! on the socket. Timeouts are therefore kept to about a tick.
//!
//! A stop takes effect where the guest calls the host: a sleep ends at once
//! and unwinds the guest, reads and writes fail. Wasmer 7.4 cannot interrupt
//! compiled code from outside (no epochs; its host-interrupt feature dies of
//! a stray SIGUSR1), so a guest that computes without calling the host is
//! handled by the last resort: [`KILL_AFTER`] past its timeout the watchdog
//! answers its request with 504 if nothing was sent yet, and ends the worker
//! process, which the supervisor replaces. The requests on the worker's
//! other connections fail with it (nginx answers them 502).

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::fastcgi::{Peer, Queue};
use crate::status::Reporter;

use super::response::error_page;

/// How often the watchdog looks for a long run, and how late it may notice
/// that a request was given up or timed out.
pub const TICK: Duration = Duration::from_millis(100);
/// How long past its timeout a guest that does not stop may run before its
/// worker is ended.
pub const KILL_AFTER: Duration = Duration::from_secs(2);
/// appStatus of a request whose worker was ended under it.
const KILLED_APP_STATUS: u32 = 137;

/// Why a guest is to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The web server gave up on the request.
    Gone = 1,
    /// The app's timeout passed.
    Timeout = 2,
}

/// Starts watching runs; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    slot: Mutex<Slot>,
    /// The worker's other connections, and how long a request may wait
    /// there while a guest runs.
    queue: Queue,
    queue_timeout: Duration,
    /// The answer to a request shed from the queue.
    overloaded: Bytes,
    /// The worker's counts: what was shed, and what waits.
    reporter: Arc<Reporter>,
    /// 0, or the [`Stop`] of the current run.
    stop: AtomicU8,
    /// Readable once `stop` is set, so that a sleeping guest wakes.
    wake: EventFd,
}

#[derive(Default)]
struct Slot {
    /// Counts runs, so that a run is told from the next one.
    seq: u64,
    running: Option<Watched>,
}

#[derive(Clone)]
struct Watched {
    peer: Peer,
    deadline: Instant,
    app: Arc<str>,
}

impl Watchdog {
    /// Starts the watchdog of a worker whose connections are in `queue`:
    /// besides watching runs, it sheds requests that wait longer than
    /// `queue_timeout` behind a long run (see [`Queue::shed`]), counting
    /// them in `reporter`'s stats.
    pub fn start(queue: Queue, queue_timeout: Duration, reporter: Arc<Reporter>) -> io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            slot: Mutex::default(),
            queue,
            queue_timeout,
            overloaded: error_page(503),
            reporter,
            stop: AtomicU8::new(0),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("wcgid-watchdog".into())
            .spawn(move || watch(weak))?;
        Ok(Watchdog { shared })
    }

    /// Marks the start of a run of `app` for the request of `peer`, to stop
    /// at `deadline`; the run ends when the returned handle is dropped.
    pub fn running(&self, peer: Peer, deadline: Instant, app: Arc<str>) -> Run {
        let mut slot = self.shared.lock();
        slot.seq += 1;
        slot.running = Some(Watched { peer, deadline, app });
        Run {
            shared: self.shared.clone(),
        }
    }
}

/// A guest's run, as its host calls see it.
pub struct Run {
    shared: Arc<Shared>,
}

impl Run {
    /// Why the guest is to stop, if it is.
    pub fn stopped(&self) -> Option<Stop> {
        match self.shared.stop.load(Ordering::Acquire) {
            1 => Some(Stop::Gone),
            2 => Some(Stop::Timeout),
            _ => None,
        }
    }

    /// Sleeps `wait`, unless the guest is stopped meanwhile: `false`.
    pub fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.stopped().is_some() {
                return false;
            }
            let Some(left) = until.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) else {
                return true;
            };
            // A signal (the worker's SIGTERM, say) ends poll early: the
            // loop sleeps the rest.
            let mut fds = [PollFd::new(self.shared.wake.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let mut slot = self.shared.lock();
        slot.running = None;
        // Under the lock: the watchdog stops only the run it looked at.
        if self.shared.stop.swap(0, Ordering::AcqRel) != 0 {
            let _ = self.shared.wake.read();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds no invariant a panic could break.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the current run, which the caller holds the lock on, unless
    /// it is stopped already.
    fn stop(&self, why: Stop) {
        if self
            .stop
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ = self.wake.write(1);
        }
    }
}

/// The watchdog thread.
fn watch(shared: Weak<Shared>) {
    // The run seen at the last tick.
    let mut seen = None;
    loop {
        std::thread::sleep(TICK);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (seq, watched) = {
            let slot = shared.lock();
            match &slot.running {
                Some(watched) if seen == Some(slot.seq) => (slot.seq, watched.clone()),
                Some(_) => {
                    seen = Some(slot.seq);
                    continue;
                }
                None => continue,
            }
        };
        // In progress for a whole tick: watch it until it ends.
        let mut gone = false;
        let stats = shared.reporter.stats();
        loop {
            let now = Instant::now();
            let wait = match watched.deadline.checked_duration_since(now) {
                Some(left) => left.min(TICK),
                None => TICK,
            };
            // Once it is over for the peer, there is nothing more to see there.
            if !gone && watched.peer.wait_gone(wait).is_some() {
                gone = true;
            } else if gone {
                std::thread::sleep(wait);
            }
            let slot = shared.lock();
            if slot.seq != seq || slot.running.is_none() {
                break;
            }
            if gone {
                shared.stop(Stop::Gone);
            }
            let now = Instant::now();
            if now >= watched.deadline {
                shared.stop(Stop::Timeout);
            }
            if now >= watched.deadline + KILL_AFTER {
                last_resort(&watched, &shared.reporter);
            }
            drop(slot);
            let shed = shared.queue.shed(shared.queue_timeout, &shared.overloaded);
            stats.set_queued(shed.waiting);
            if shed.answered > 0 {
                stats.rejected(shed.answered);
                tracing::warn!(
                    shed = shed.answered,
                    "requests waited over server.queue_timeout behind a long run: answered 503 (FCGI_OVERLOADED)"
                );
            }
        }
        stats.set_queued(0);
    }
}

/// Ends the worker under a guest that ignores its stop, answering its
/// request first if its response has not begun.
fn last_resort(watched: &Watched, reporter: &Reporter) -> ! {
    let answered = watched.peer.answer_instead(&error_page(504), KILLED_APP_STATUS);
    reporter.stats().killed(&watched.app, answered);
    reporter.send();
    tracing::error!(
        app = &*watched.app,
        answered_504 = answered,
        "guest still running {KILL_AFTER:?} after its timeout, without calling the host; \
         ending this worker (its other connections fail too)"
    );
    std::process::exit(1)
}
