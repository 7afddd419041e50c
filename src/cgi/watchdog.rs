//! The gateway's watchdog: while a guest runs, it watches the request's
//! connection and stops the guest once the web server has given up on the
//! request, by FCGI_ABORT_REQUEST (FastCGI 1.0 §5.4) or by closing the
//! connection (nginx does when its client goes away).
//!
//! The guest runs on the worker's serving thread, which reads nothing
//! meanwhile, so the watchdog is a second thread. A request pays two
//! uncontended lock operations for it: the watchdog wakes every [`TICK`] and
//! only watches a run it has seen in progress for a whole tick, so short
//! requests are never looked at, and when it does watch it sleeps in poll(2)
//! on the socket.
//!
//! A stop takes effect where the guest calls the host: a sleep ends at once
//! and unwinds the guest, reads and writes fail. A guest that computes
//! without calling the host runs on until it ends.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::fastcgi::Peer;

/// How often the watchdog looks for a long run, and how late it may notice
/// that a request was given up.
pub const TICK: Duration = Duration::from_millis(100);

/// Starts watching runs; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    slot: Mutex<Slot>,
    stopped: AtomicBool,
    /// Readable once `stopped` is set, so that a sleeping guest wakes.
    wake: EventFd,
}

#[derive(Default)]
struct Slot {
    /// Counts runs, so that a run is told from the next one.
    seq: u64,
    running: Option<Peer>,
}

impl Watchdog {
    pub fn start() -> io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            slot: Mutex::default(),
            stopped: AtomicBool::new(false),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("wcgid-watchdog".into())
            .spawn(move || watch(weak))?;
        Ok(Watchdog { shared })
    }

    /// Marks the start of a run for the request of `peer`; the run ends when
    /// the returned handle is dropped.
    pub fn running(&self, peer: Peer) -> Run {
        let mut slot = self.shared.lock();
        slot.seq += 1;
        slot.running = Some(peer);
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
    /// Whether the request was given up: the guest is to stop.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Sleeps `wait`, unless the request is given up meanwhile: `false`.
    pub fn sleep(&self, wait: Duration) -> bool {
        if self.stopped() {
            return false;
        }
        let mut fds = [PollFd::new(self.shared.wake.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, timeout);
        !self.stopped()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let mut slot = self.shared.lock();
        slot.running = None;
        // Under the lock: the watchdog stops only the run it looked at.
        if self.shared.stopped.swap(false, Ordering::AcqRel) {
            let _ = self.shared.wake.read();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds no invariant a panic could break.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The watchdog thread.
fn watch(shared: Weak<Shared>) {
    // The run seen at the last tick, and the last run stopped.
    let mut seen = None;
    let mut stopped = None;
    loop {
        std::thread::sleep(TICK);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (seq, peer) = {
            let slot = shared.lock();
            match &slot.running {
                Some(peer) if seen == Some(slot.seq) && stopped != Some(slot.seq) => (slot.seq, peer.clone()),
                Some(_) => {
                    seen = Some(slot.seq);
                    continue;
                }
                None => continue,
            }
        };
        // In progress for a whole tick: watch its peer until it ends.
        loop {
            let gone = peer.wait_gone(TICK).is_some();
            let slot = shared.lock();
            if slot.seq != seq || slot.running.is_none() {
                break;
            }
            if gone {
                shared.stopped.store(true, Ordering::Release);
                let _ = shared.wake.write(1);
                stopped = Some(seq);
                break;
            }
        }
    }
}
