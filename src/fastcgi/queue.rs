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
//! that cannot be handed over is timed with [`Queue::shed`]: a request found
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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, Shutdown, recv, shutdown};

use super::handoff::Handoff;
use super::record::{complete_request, put_response_end};
use super::status;
use super::stdout::{peek, send_all};

/// How long an answer to a shed request may take to go out.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);
/// How far apart two looks that saw the same wait may be for the wait to
/// count from the first: the watchdog looks every tick while a long run
/// goes on, and not at all between runs, when what waited may have been
/// served and something else have come.
const SEEN_AGAIN_WITHIN: Duration = Duration::from_millis(500);

/// A wait seen by the watchdog: when first, and when last.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    last: Instant,
}

impl Seen {
    /// Records a look at `now` that saw the wait in `seen`; returns how
    /// long it has been seen waiting without a break.
    fn again(seen: &mut Option<Seen>, now: Instant) -> Duration {
        let first = match *seen {
            Some(Seen { first, last }) if now.saturating_duration_since(last) <= SEEN_AGAIN_WITHIN => first,
            _ => now,
        };
        *seen = Some(Seen { first, last: now });
        now.saturating_duration_since(first)
    }
}

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

/// One connection: its socket, whether its unread input starts a new
/// request, whether it was handed to another worker, and since when a
/// request has been seen waiting there.
pub struct Line {
    pub(super) socket: Arc<OwnedFd>,
    idle: AtomicBool,
    handed: AtomicBool,
    since: Mutex<Option<Seen>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is set by one store: a panic cannot
    // leave it torn.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
            if let Some(socket) = lock(&self.inbound.taken).pop_front() {
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
            *lock(&waiting.since) = None;
        }
    }

    /// Leaves the backlog alone from now on: the worker accepts no more.
    /// Once this returns no check is halfway through, so [`Queue::take_now`]
    /// finds every connection the watchdog took.
    pub fn stop_watching_backlog(&self) {
        let inbound = &self.inbound;
        let _checking = inbound.backlog.as_ref().map(|b| lock(&b.since));
        let _handed = inbound.handoff.as_ref().map(|h| lock(&h.waiting.since));
        inbound.watched.store(false, Ordering::Release);
    }

    /// Such a connection, if one is there now.
    pub fn take_now(&self) -> Option<OwnedFd> {
        let taken = lock(&self.inbound.taken).pop_front();
        taken.or_else(|| self.inbound.handoff.as_ref()?.handoff.receive().ok()?)
    }

    /// Adds a connection, nothing of it read yet; it leaves the queue when
    /// the returned line drops.
    pub fn register(&self, socket: OwnedFd) -> Arc<Line> {
        let line = Arc::new(Line::new(socket, true, None));
        let mut conns = lock(&self.conns);
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&line));
        line
    }

    /// The connections whose unread input would start a new request.
    pub fn idle_lines(&self) -> Vec<Arc<Line>> {
        let conns = lock(&self.conns);
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|line| line.idle.load(Ordering::Acquire))
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
        if self.inbound.stopping.load(Ordering::Acquire)
            || !line.idle.load(Ordering::Acquire)
            || received.handoff.pass(&line.socket).is_err()
        {
            return false;
        }
        line.idle.store(false, Ordering::Release);
        line.handed.store(true, Ordering::Release);
        true
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

/// Whether a request was found waiting, and answered.
enum Waited {
    No,
    Yes,
    Answered,
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
        let mut since = lock(&waiting.since);
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
        let line = Line::new(socket, true, *since);
        // Its request may still be on its way: a moment for it.
        let mut fds = [PollFd::new(line.socket.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u8));
        match line.check(now, limit, page) {
            Waited::Answered => Waited::Answered,
            // Not answerable yet: the serving thread will serve it.
            Waited::Yes | Waited::No => {
                let socket = Arc::try_unwrap(line.socket).expect("the line's only holder");
                lock(&self.taken).push_back(socket);
                self.wake.notify_one();
                Waited::Yes
            }
        }
    }
}

impl Line {
    fn new(socket: OwnedFd, idle: bool, since: Option<Seen>) -> Line {
        Line {
            socket: Arc::new(socket),
            idle: AtomicBool::new(idle),
            handed: AtomicBool::new(false),
            since: Mutex::new(since),
        }
    }

    /// The connection's socket, to poll.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Tells the watchdog whether the unread input starts at a request:
    /// true only while nothing of the next request has been read.
    pub(super) fn set_idle(&self, idle: bool) {
        // Once per request, not per record: only a change takes the lock.
        if self.idle.swap(idle, Ordering::AcqRel) && !idle {
            *lock(&self.since) = None;
        }
    }

    /// Whether the connection went to another worker: it must not be read
    /// or shut down here any more, only closed.
    pub fn is_handed_over(&self) -> bool {
        self.handed.load(Ordering::Acquire)
    }

    /// Whether input (or the peer's hang-up) is waiting, unread.
    pub(super) fn readable(&self) -> bool {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
    }

    /// Whether a complete request waits, and answers it once it waited
    /// past `limit`.
    fn check(&self, now: Instant, limit: Duration, page: &[u8]) -> Waited {
        let mut since = lock(&self.since);
        let Some((id, len)) = self.waiting_request() else {
            *since = None;
            return Waited::No;
        };
        if Seen::again(&mut since, now) < limit {
            return Waited::Yes;
        }
        let mut answer = BytesMut::new();
        put_response_end(&mut answer, id, page, 0, status::OVERLOADED);
        let _ = send_all(&self.socket, &answer, Some(now + ANSWER_WITHIN));
        // The request it answers is taken out: a socket closed with unread
        // input is reset, and the peer might not read the answer first.
        let mut left = len;
        let mut sink = [0u8; 4096];
        while left > 0 {
            match recv(
                self.socket.as_raw_fd(),
                &mut sink[..left.min(4096)],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) if n > 0 => left -= n,
                _ => break,
            }
        }
        // Both ways: the serving thread finds it hung up, and drops it.
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Both);
        self.idle.store(false, Ordering::Release);
        Waited::Answered
    }

    /// The id and length of a complete request waiting unread, if there is
    /// one.
    fn waiting_request(&self) -> Option<(u16, usize)> {
        if !self.readable() {
            return None;
        }
        complete_request(&peek(&self.socket).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_from_its_first_look_until_a_break() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut seen = None;
        assert_eq!(Seen::again(&mut seen, at(0)), Duration::ZERO);
        assert_eq!(Seen::again(&mut seen, at(100)), Duration::from_millis(100));
        assert_eq!(Seen::again(&mut seen, at(600)), Duration::from_millis(600));
        // Not seen for longer than SEEN_AGAIN_WITHIN: another wait.
        assert_eq!(Seen::again(&mut seen, at(1200)), Duration::ZERO);
        assert_eq!(Seen::again(&mut seen, at(1300)), Duration::from_millis(100));
    }
}
