//! The worker's watchdog: a thread beside the worker's serving thread that
//! follows each guest run lasting more than [`WATCH_AFTER`]. It stops the
//! guest once the web server has given up on the request
//! (FCGI_ABORT_REQUEST, FastCGI 1.0 §5.4, or the connection closed, as nginx
//! does when its client goes away) or once the app's timeout has passed;
//! and it keeps the worker's other connections from waiting for the guest:
//! a request starting on one of them is handed to an idle worker, or shed
//! if it cannot be and waits too long (see [`Queue`]).
//!
//! The guest runs on the serving thread, which reads nothing meanwhile. A
//! request pays an uncontended lock for the watchdog, and no system call:
//! the watchdog sleeps on a timer that the serving thread arms only when
//! it is not armed already (the first run after a pause), and that the
//! watchdog itself re-arms while runs follow each other. (Arming a timer
//! per request was measured at about a third of a hello request's time on
//! this VM kind: reprogramming the CPU's timer exits to the hypervisor.)
//! A run still going [`WATCH_AFTER`] after it began is followed, in poll(2)
//! on its connection, the worker's idle connections and the clock, so a
//! stop happens within milliseconds of its cause. While runs are all short
//! the watchdog looks less and less often, down to every [`WATCH_AT_MOST`]:
//! each look wakes a thread, which cost 5 % of a hello request when it
//! happened every 2 ms; the first long run after a spell of short ones may
//! so be followed up to that late. A run whose guest sleeps (waiting, as
//! it would on a database) is followed from its first sleep: whatever
//! arrives meanwhile goes to another worker at once.
//!
//! A stop sets the guest's interrupt flag (see `sandbox::interrupt`): the
//! guest traps at its next function entry or loop head, and a host call it
//! is in fails or, for a sleep, ends at once. A guest that still runs
//! [`KILL_AFTER`] later is stuck where no check reaches (a host call that
//! does not return, or a module compiled without the check): the watchdog
//! then answers its request with 504 if nothing was sent yet, and ends the
//! worker process, which the supervisor replaces, as a last resort; the
//! requests on the worker's other connections fail with it.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use parking_lot::{Mutex, MutexGuard};

use crate::cgi::response::error_page;
use crate::cgi::{Run, Stop, Watch};
use crate::fastcgi::{Line, Peer};
use crate::sandbox::Interrupt;
use crate::status::Reporter;

use super::queue::Queue;

/// How long a run goes before the watchdog follows it: a request arriving
/// meanwhile on another of the worker's connections waits this long at
/// most before it is handed to an idle worker.
pub const WATCH_AFTER: Duration = Duration::from_millis(2);
/// How long a run may go unseen at most, while only short runs went before.
pub const WATCH_AT_MOST: Duration = Duration::from_millis(10);
/// How often a followed run's waiting requests are timed for shedding.
pub const TICK: Duration = Duration::from_millis(100);
/// How long after its stop a guest that does not stop may run before its
/// worker is ended.
pub const KILL_AFTER: Duration = Duration::from_secs(2);
/// appStatus of a request whose worker was ended under it.
const KILLED_APP_STATUS: u32 = 137;

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
    /// The watchdog thread's own fds.
    fds: Arc<Fds>,
}

struct Fds {
    /// Fires when the run in progress may have lasted [`WATCH_AFTER`].
    timer: TimerFd,
    /// The timer is armed (or about to be): the serving thread leaves it.
    armed: AtomicBool,
    /// Readable when a followed run ended, or the watchdog is dropped.
    attention: EventFd,
}

#[derive(Default)]
struct Slot {
    /// Counts runs, so that a run is told from the next one.
    seq: u64,
    running: Option<Watched>,
    /// The watchdog thread follows the current run: its end must wake it.
    following: bool,
    /// The current run waits (a guest's sleep): followed at once, however
    /// young, since what arrives meanwhile would wait for nothing.
    waiting: bool,
}

#[derive(Clone)]
struct Watched {
    peer: Peer,
    began: Instant,
    deadline: Instant,
    app: Arc<str>,
    /// Stops the guest at its next check, once its instance exists.
    interrupt: Option<Interrupt>,
    /// When it was told to stop.
    stopped: Option<Instant>,
}

impl Watchdog {
    /// Starts the watchdog of a worker whose connections are in `queue`:
    /// besides watching runs, it hands requests that would wait behind one
    /// to other workers, and sheds those that wait longer than
    /// `queue_timeout` (see [`Queue::shed`]), counting them in `reporter`'s
    /// stats.
    pub fn start(queue: Queue, queue_timeout: Duration, reporter: Arc<Reporter>) -> io::Result<Watchdog> {
        let fds = Arc::new(Fds {
            timer: TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )?,
            armed: AtomicBool::new(false),
            attention: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        });
        let shared = Arc::new(Shared {
            slot: Mutex::default(),
            queue,
            queue_timeout,
            overloaded: error_page(503),
            reporter,
            stop: AtomicU8::new(0),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            fds: fds.clone(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("wcgid-watchdog".into())
            .spawn(move || watch(weak, fds))?;
        Ok(Watchdog { shared })
    }
}

impl Watch for Watchdog {
    fn running(&self, peer: Peer, deadline: Instant, app: Arc<str>) -> Box<dyn Run> {
        let mut slot = self.shared.lock();
        slot.seq += 1;
        slot.running = Some(Watched {
            peer,
            began: Instant::now(),
            deadline,
            app,
            interrupt: None,
            stopped: None,
        });
        drop(slot);
        // After the run is in the slot: a watchdog that disarmed before
        // looks at the slot again (see `watch`).
        if !self.shared.fds.armed.swap(true, Ordering::AcqRel) {
            self.shared.fds.arm(WATCH_AFTER);
        }
        Box::new(WatchedRun {
            shared: self.shared.clone(),
        })
    }
}

/// A guest's run, as its host calls see it.
struct WatchedRun {
    shared: Arc<Shared>,
}

impl Run for WatchedRun {
    fn stopped(&self) -> Option<Stop> {
        match self.shared.stop.load(Ordering::Acquire) {
            1 => Some(Stop::Gone),
            2 => Some(Stop::Timeout),
            _ => None,
        }
    }

    fn interruptible(&self, interrupt: &Interrupt) {
        let mut slot = self.shared.lock();
        if let Some(watched) = &mut slot.running {
            watched.interrupt = Some(interrupt.clone());
        }
        if self.stopped().is_some() {
            interrupt.interrupt();
        }
    }

    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        self.shared.waits();
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

impl Drop for WatchedRun {
    fn drop(&mut self) {
        let mut slot = self.shared.lock();
        slot.running = None;
        slot.waiting = false;
        // Under the lock: the watchdog stops only the run it looked at, and
        // hands connections over only while it runs.
        if self.shared.stop.swap(0, Ordering::AcqRel) != 0 {
            let _ = self.shared.wake.read();
        }
        if slot.following {
            let _ = self.shared.fds.attention.write(1);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The thread ends.
        let _ = self.fds.attention.write(1);
    }
}

impl Shared {
    /// The current run waits: the watchdog follows it now, unless it does
    /// already.
    fn waits(&self) {
        let mut slot = self.lock();
        if !slot.following && !slot.waiting {
            slot.waiting = true;
            let _ = self.fds.attention.write(1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock()
    }

    /// Stops `watched`, the current run, which the caller holds the lock
    /// on, unless it is stopped already.
    fn stop(&self, watched: &mut Watched, why: Stop, now: Instant) {
        if self
            .stop
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            watched.stopped = Some(now);
            if let Some(interrupt) = &watched.interrupt {
                interrupt.interrupt();
            }
            let _ = self.wake.write(1);
        }
    }
}

impl Fds {
    /// Makes the timer fire once, `after` from now.
    fn arm(&self, after: Duration) {
        let after = Expiration::OneShot(TimeSpec::from_duration(after));
        if let Err(e) = self.timer.set(after, TimerSetTimeFlags::empty()) {
            tracing::error!("cannot arm the watchdog's timer: {e}");
        }
    }
}

/// The watchdog thread: waits for a run to last, then follows it.
fn watch(shared: Weak<Shared>, fds: Arc<Fds>) {
    // How long after a run began the next look is, when it finds one that
    // began less than WATCH_AFTER ago, and the runs seen by the last look.
    let mut looked = WATCH_AFTER;
    let mut seen = 0;
    loop {
        let mut wait = [
            PollFd::new(fds.timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(fds.attention.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut wait, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                tracing::error!("the watchdog cannot wait: {e}");
                return;
            }
        }
        let _ = fds.timer.wait();
        let _ = fds.attention.read();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Follows the runs that have lasted, one after the other, until
        // none runs (the timer then rests until the next run arms it) or
        // the one running is younger (the timer is set for when it is not).
        loop {
            let mut slot = shared.lock();
            let busy = std::mem::replace(&mut seen, slot.seq) != slot.seq;
            let Some(running) = &slot.running else {
                if busy {
                    // Between two short runs: look again later.
                    fds.arm(looked);
                    looked = (looked * 2).min(WATCH_AT_MOST);
                } else {
                    // No run since the last look. Under the lock: a run
                    // that starts after this sees the timer disarmed, and
                    // arms it.
                    fds.armed.store(false, Ordering::Release);
                    looked = WATCH_AFTER;
                }
                break;
            };
            let age = running.began.elapsed();
            if age < WATCH_AFTER && !slot.waiting {
                // Only short runs since the last look: look later.
                fds.arm(looked.saturating_sub(age).max(WATCH_AFTER - age));
                looked = (looked * 2).min(WATCH_AT_MOST);
                break;
            }
            looked = WATCH_AFTER;
            slot.following = true;
            let seq = slot.seq;
            drop(slot);
            let ended = follow(&shared, seq);
            shared.lock().following = false;
            shared.reporter.stats().set_queued(0);
            if !ended {
                // It could not be followed: looked at again a tick later.
                fds.arm(TICK);
                break;
            }
        }
    }
}

/// Follows run `seq` until it ends (true; false if it cannot): stops it
/// when its peer gives up or its deadline passes, hands over the requests
/// that start on the worker's other connections meanwhile, and sheds what
/// waits too long.
fn follow(shared: &Shared, seq: u64) -> bool {
    let Some(watched) = shared.lock().running.clone() else {
        return true;
    };
    let mut peer = Some(watched.peer.watch());
    // Connections that could not be handed over, left to shedding.
    let mut kept: Vec<Arc<Line>> = Vec::new();
    let mut next_shed = Instant::now();
    let stats = shared.reporter.stats();
    loop {
        let now = Instant::now();
        let stopped = shared.lock().running.as_ref().and_then(|w| w.stopped);
        let until = match stopped {
            Some(at) => at + KILL_AFTER,
            None => watched.deadline,
        }
        .min(next_shed);
        let lines: Vec<Arc<Line>> = shared
            .queue
            .idle_lines()
            .into_iter()
            .filter(|line| !kept.iter().any(|k| Arc::ptr_eq(k, line)))
            .collect();
        let mut fds = vec![PollFd::new(shared.fds.attention.as_fd(), PollFlags::POLLIN)];
        fds.extend(peer.as_ref().map(|p| p.poll_fd()));
        fds.extend(lines.iter().map(|line| PollFd::new(line.as_fd(), PollFlags::POLLIN)));
        let timeout = PollTimeout::try_from(until.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX);
        let revents: Vec<_> = match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => fds.iter().map(PollFd::revents).collect(),
            Err(e) => {
                tracing::error!("the watchdog cannot poll: {e}");
                return false;
            }
        };
        drop(fds);
        let _ = shared.fds.attention.read();
        let mut slot = shared.lock();
        if slot.seq != seq {
            return true;
        }
        let Some(running) = slot.running.as_mut() else {
            return true;
        };
        let now = Instant::now();
        let mut revents = revents.into_iter().skip(1);
        if let Some(watch) = &mut peer {
            let gone = watch.seen(revents.next().flatten());
            if gone.is_some() {
                peer = None;
                shared.stop(running, Stop::Gone, now);
            }
        }
        if now >= running.deadline {
            shared.stop(running, Stop::Timeout, now);
        }
        if running.stopped.is_some_and(|at| now >= at + KILL_AFTER) {
            last_resort(running, &shared.reporter);
        }
        // Requests starting on other connections go to an idle worker, while
        // this run still holds the serving thread (the lock keeps it from
        // ending meanwhile).
        for (line, revents) in lines.iter().zip(revents) {
            if revents.is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                if shared.queue.hand_over(line) {
                    stats.handed_over();
                } else {
                    kept.push(line.clone());
                }
            }
        }
        drop(slot);
        if now >= next_shed {
            next_shed = now + TICK;
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
        "guest still running {KILL_AFTER:?} after it was stopped: it is stuck where its interrupt check \
         cannot reach (a host call, or a module compiled without the check); ending this worker as a \
         last resort (its other connections fail too)"
    );
    std::process::exit(1)
}
