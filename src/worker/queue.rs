//! A worker's connections as its watchdog thread sees them while a guest
//! holds the serving thread: passing on the requests that would wait, and
//! shedding those that waited too long, answered with a 503 page and
//! END_REQUEST{FCGI_OVERLOADED} (FastCGI 1.0 §5.5) instead of being run late.
//!
//! A worker runs one guest at a time on the thread that also reads its
//! connections, so a request that arrives on another of its connections
//! meanwhile waits unread. The watchdog looks at those connections without
//! reading them. One on which a new request starts, nothing of it read yet,
//! is handed to an idle worker ([`Queue::hand_over`], see [`Handoff`]). One
//! that cannot be handed over is timed with [`Queue::shed`] (see [`Line`]): a request found
//! complete and waiting (by `MSG_PEEK`, reading nothing) is timed from the
//! tick it was first seen; past the limit it is answered and its connection
//! shut down, so that the serving thread, when it gets there, drops the
//! connection instead of running the request.
//!
//! Where new connections wait is watched the same way: the listening
//! socket's backlog, and the connections other workers handed over. Those no
//! worker has taken for the whole limit (every worker busy or at its
//! connection cap all along) are taken by the watchdog, one per source and
//! tick, and their first request answered so. One whose request cannot be
//! answered yet (a large body still arriving) is handed to the serving
//! thread ([`Queue::taken`]), which serves it like one it accepted: a
//! connection once accepted is never dropped unanswered.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use parking_lot::Mutex;

use crate::fastcgi::{Line, Seen, Waited};

use super::handoff::Handoff;

/// A worker's connections, as its watchdog sees them.
#[derive(Clone, Default)]
pub struct Queue {
    conns: Arc<Mutex<Vec<Weak<Line>>>>,
    inbound: Arc<Inbound>,
}

/// Where new connections wait for a worker, and those the watchdog took
/// from there without answering them.
#[derive(Default)]
struct Inbound {
    /// The listen backlog, and the connections other workers handed over.
    backlog: Option<Waiting>,
    handoff: Option<Received>,
    /// Connections the watchdog took but could not answer, oldest first,
    /// for the serving thread, which `wake` wakes.
    taken: Mutex<VecDeque<OwnedFd>>,
    /// Cleared when the worker stops accepting: what waits from then on is
    /// another process's to serve, not to shed.
    watched: AtomicBool,
    /// Set (by a signal handler) once the worker is to stop: it keeps the
    /// connections it has, to finish them itself.
    stopping: Arc<AtomicBool>,
    wake: tokio::sync::Notify,
}

/// The hand-off pair, and the serving thread's wait on its receiving end.
struct Received {
    handoff: Arc<Handoff>,
    waiting: Waiting,
    /// The receiving end again, as tokio waits on it.
    readable: tokio::net::UnixDatagram,
}

/// A place connections wait in, and since when one has waited there.
struct Waiting {
    source: Source,
    since: Mutex<Option<Seen>>,
}

enum Source {
    Backlog(Backlog),
    Handoff(Arc<Handoff>),
}

/// The listening socket whose backlog is watched: a duplicate of the
/// worker's, non-blocking, as std serves it.
pub enum Backlog {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl Source {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::Backlog(Backlog::Unix(l)) => l.as_fd(),
            Source::Backlog(Backlog::Tcp(l)) => l.as_fd(),
            Source::Handoff(h) => h.receiving(),
        }
    }

    /// A waiting connection, non-blocking; `None` if there is none after all.
    fn take(&self) -> Option<OwnedFd> {
        match self {
            Source::Backlog(Backlog::Unix(l)) => {
                let (stream, _) = l.accept().ok()?;
                stream.set_nonblocking(true).ok()?;
                Some(stream.into())
            }
            Source::Backlog(Backlog::Tcp(l)) => {
                let (stream, _) = l.accept().ok()?;
                stream.set_nonblocking(true).ok()?;
                Some(stream.into())
            }
            Source::Handoff(h) => h.receive().ok()?,
        }
    }
}

impl Queue {
    /// Also watches `backlog`, the worker's listening
    /// socket (a duplicate of it, non-blocking), and the connections other
    /// workers pass on `handoff`, to which this worker passes those that
    /// would wait until `stopping` is set. Call inside the tokio runtime.
    pub fn with_inbound(
        backlog: Backlog,
        handoff: Option<Handoff>,
        stopping: Arc<AtomicBool>,
    ) -> std::io::Result<Queue> {
        let handoff = match handoff {
            None => None,
            Some(handoff) => {
                let receiving = std::os::unix::net::UnixDatagram::from(handoff.receiving().try_clone_to_owned()?);
                let readable = tokio::net::UnixDatagram::from_std(receiving)?;
                let handoff = Arc::new(handoff);
                Some(Received {
                    waiting: Waiting::new(Source::Handoff(handoff.clone())),
                    handoff,
                    readable,
                })
            }
        };
        Ok(Queue {
            conns: Arc::default(),
            inbound: Arc::new(Inbound {
                backlog: Some(Waiting::new(Source::Backlog(backlog))),
                handoff,
                taken: Mutex::default(),
                watched: AtomicBool::new(true),
                stopping,
                wake: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The next connection to serve as if accepted: one the watchdog took
    /// without answering it, or one another worker handed over. Never
    /// completes for a queue without them.
    pub async fn taken(&self) -> OwnedFd {
        let received = self.inbound.handoff.as_ref();
        loop {
            if let Some(socket) = self.inbound.taken.lock().pop_front() {
                return socket;
            }
            // Receiving through tokio clears its readiness when nothing
            // waits (another worker was first).
            let handed = received.map(|r| {
                r.readable.try_io(tokio::io::Interest::READABLE, || {
                    r.handoff.receive()?.ok_or(std::io::ErrorKind::WouldBlock.into())
                })
            });
            if let Some(Ok(socket)) = handed {
                return socket;
            }
            let readable = async {
                match received {
                    Some(r) => r.readable.readable().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.inbound.wake.notified() => {}
                _ = readable => {}
            }
        }
    }

    /// Records that the serving thread took a new connection (accepted it,
    /// or received one handed over): no long run holds it, so whatever
    /// still waits in the backlog or the hand-off queue waits from now. A
    /// queue that is never empty under load is many short waits, not one
    /// long one.
    pub fn took_one(&self) {
        let inbound = &self.inbound;
        for waiting in [inbound.backlog.as_ref(), inbound.handoff.as_ref().map(|h| &h.waiting)]
            .into_iter()
            .flatten()
        {
            *waiting.since.lock() = None;
        }
    }

    /// Leaves the backlog alone from now on: the worker accepts no more.
    /// Once this returns no check is halfway through, so [`Queue::take_now`]
    /// finds every connection the watchdog took.
    pub fn stop_watching_backlog(&self) {
        let inbound = &self.inbound;
        let _checking = inbound.backlog.as_ref().map(|b| b.since.lock());
        let _handed = inbound.handoff.as_ref().map(|h| h.waiting.since.lock());
        inbound.watched.store(false, Ordering::Release);
    }

    /// Such a connection, if one is there now.
    pub fn take_now(&self) -> Option<OwnedFd> {
        let taken = self.inbound.taken.lock().pop_front();
        taken.or_else(|| self.inbound.handoff.as_ref()?.handoff.receive().ok()?)
    }

    /// Adds a connection, nothing of it read yet; it leaves the queue when
    /// the returned line drops.
    pub fn register(&self, socket: OwnedFd) -> Arc<Line> {
        let line = Arc::new(Line::new(socket, None));
        let mut conns = self.conns.lock();
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&line));
        line
    }

    /// The connections whose unread input would start a new request.
    pub fn idle_lines(&self) -> Vec<Arc<Line>> {
        let conns = self.conns.lock();
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|line| line.is_idle())
            .collect()
    }

    /// Passes `line` to whichever worker is idle first, if the queue has
    /// somewhere to pass it and it is still idle; returns whether it did.
    /// Only while the serving thread cannot read `line` (a guest runs):
    /// from then on it must not, and its task ends without a read.
    pub fn hand_over(&self, line: &Line) -> bool {
        let Some(received) = &self.inbound.handoff else {
            return false;
        };
        !self.inbound.stopping.load(Ordering::Acquire) && line.pass_on(|socket| received.handoff.pass(socket))
    }

    /// Times the complete requests waiting on idle connections, and answers
    /// those waiting longer than `limit` with `page` and FCGI_OVERLOADED.
    pub fn shed(&self, limit: Duration, page: &[u8]) -> Shed {
        let now = Instant::now();
        let mut shed = Shed::default();
        let lines = self.idle_lines();
        let inbound = [
            self.inbound.backlog.as_ref(),
            self.inbound.handoff.as_ref().map(|h| &h.waiting),
        ];
        let inbound = inbound
            .into_iter()
            .flatten()
            .map(|w| self.inbound.check(w, now, limit, page));
        for waited in lines.iter().map(|line| line.check(now, limit, page)).chain(inbound) {
            match waited {
                Waited::No => {}
                Waited::Yes => shed.waiting += 1,
                Waited::Answered => shed.answered += 1,
            }
        }
        shed
    }
}

/// What [`Queue::shed`] found: requests still waiting, and requests it
/// answered. A non-empty listen backlog or hand-off queue counts as one
/// waiting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    pub waiting: usize,
    pub answered: usize,
}

impl Waiting {
    fn new(source: Source) -> Waiting {
        Waiting {
            source,
            since: Mutex::new(None),
        }
    }
}

impl Inbound {
    /// Whether connections wait in `waiting`, and answers one that waited
    /// past `limit`.
    fn check(&self, waiting: &Waiting, now: Instant, limit: Duration, page: &[u8]) -> Waited {
        let mut since = waiting.since.lock();
        let mut fds = [PollFd::new(waiting.source.as_fd(), PollFlags::POLLIN)];
        if !self.watched.load(Ordering::Acquire) || !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1)) {
            *since = None;
            return Waited::No;
        }
        if Seen::again(&mut since, now) < limit {
            return Waited::Yes;
        }
        let Some(socket) = waiting.source.take() else {
            // Another worker took it after all.
            return Waited::No;
        };
        let line = Line::new(socket, *since);
        // Its request may still be on its way: a moment for it.
        let mut fds = [PollFd::new(line.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u8));
        match line.check(now, limit, page) {
            Waited::Answered => Waited::Answered,
            // Not answerable yet: the serving thread will serve it.
            Waited::Yes | Waited::No => {
                self.taken.lock().push_back(line.into_socket());
                self.wake.notify_one();
                Waited::Yes
            }
        }
    }
}
