//! Requests waiting for a busy worker, and shedding them when they wait too
//! long: answered with a 503 page and END_REQUEST{FCGI_OVERLOADED}
//! (FastCGI 1.0 §5.5) instead of being run late.
//!
//! A worker runs one guest at a time on the thread that also reads its
//! connections, so a request that arrives on another of its connections
//! meanwhile waits unread. The worker's watchdog thread, which runs beside
//! long guests, looks at those connections with [`Queue::shed`]: a request
//! found complete and waiting (by `MSG_PEEK`, reading nothing) is timed from
//! the tick it was first seen; past the limit it is answered and its
//! connection shut down, so that the serving thread, when it gets there,
//! drops the connection instead of running the request.
//!
//! The listening socket's backlog is watched the same way: connections no
//! worker has taken for the whole limit (every worker busy or at its
//! connection cap all along) are accepted by the watchdog, one per tick,
//! and their first request answered so. One whose request cannot be
//! answered yet (a large body still arriving) is handed to the serving
//! thread ([`Queue::taken`]), which serves it like one it accepted: an
//! accepted connection is never dropped unanswered.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{Shutdown, shutdown};

use super::record::{complete_request, put_response_end};
use super::status;
use super::stdout::{peek, send_all};

/// How long an answer to a shed request may take to go out.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);

/// A worker's connections, as its watchdog sees them.
#[derive(Clone, Default)]
pub struct Queue {
    conns: Arc<Mutex<Vec<Weak<Line>>>>,
    backlog: Option<Arc<Backlog>>,
}

/// The listening socket, and since when connections have waited there.
struct Backlog {
    listener: Listening,
    since: Mutex<Option<Instant>>,
    /// Connections the watchdog accepted but could not answer, oldest
    /// first, for the serving thread, which `wake` wakes.
    taken: Mutex<VecDeque<OwnedFd>>,
    /// Cleared when the worker stops accepting: what waits in the backlog
    /// from then on is another process's to serve, not to shed.
    watched: AtomicBool,
    wake: tokio::sync::Notify,
}

/// A listening socket, non-blocking, as std serves it.
pub enum Listening {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl Listening {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listening::Unix(l) => l.as_fd(),
            Listening::Tcp(l) => l.as_fd(),
        }
    }

    fn accept(&self) -> std::io::Result<OwnedFd> {
        let fd = match self {
            Listening::Unix(l) => {
                let (stream, _) = l.accept()?;
                stream.set_nonblocking(true)?;
                OwnedFd::from(stream)
            }
            Listening::Tcp(l) => {
                let (stream, _) = l.accept()?;
                stream.set_nonblocking(true)?;
                OwnedFd::from(stream)
            }
        };
        Ok(fd)
    }
}

/// One connection: its socket, whether its unread input starts a new
/// request, and since when a request has been seen waiting there.
pub struct Line {
    pub(super) socket: Arc<OwnedFd>,
    idle: AtomicBool,
    since: Mutex<Option<Instant>>,
}

impl Queue {
    /// Also watches the backlog of `listening`, the worker's listening
    /// socket (a duplicate of it, non-blocking).
    pub fn with_backlog(mut self, listening: Listening) -> Queue {
        self.backlog = Some(Arc::new(Backlog {
            listener: listening,
            since: Mutex::new(None),
            taken: Mutex::default(),
            watched: AtomicBool::new(true),
            wake: tokio::sync::Notify::new(),
        }));
        self
    }

    /// The next connection the watchdog took from the backlog without
    /// answering it, to be served as if accepted; never completes for a
    /// queue without a backlog.
    pub async fn taken(&self) -> OwnedFd {
        let Some(backlog) = &self.backlog else {
            return std::future::pending().await;
        };
        loop {
            if let Some(socket) = self.take_now() {
                return socket;
            }
            backlog.wake.notified().await;
        }
    }

    /// Leaves the backlog alone from now on: the worker accepts no more.
    /// Once this returns no check is halfway through, so [`Queue::take_now`]
    /// finds every connection the watchdog took.
    pub fn stop_watching_backlog(&self) {
        if let Some(backlog) = &self.backlog {
            let _checking = backlog.since.lock().unwrap_or_else(|p| p.into_inner());
            backlog.watched.store(false, Ordering::Release);
        }
    }

    /// Such a connection, if one is there now.
    pub fn take_now(&self) -> Option<OwnedFd> {
        let backlog = self.backlog.as_ref()?;
        backlog.taken.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// Adds a connection; it leaves the queue when the returned line drops.
    pub fn register(&self, socket: OwnedFd) -> Arc<Line> {
        let line = Arc::new(Line {
            socket: Arc::new(socket),
            idle: AtomicBool::new(false),
            since: Mutex::new(None),
        });
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&line));
        line
    }

    /// Times the complete requests waiting on idle connections, and answers
    /// those waiting longer than `limit` with `page` and FCGI_OVERLOADED.
    pub fn shed(&self, limit: Duration, page: &[u8]) -> Shed {
        let lines: Vec<Arc<Line>> = {
            let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns.iter().filter_map(Weak::upgrade).collect()
        };
        let now = Instant::now();
        let mut shed = Shed::default();
        let lines = lines.iter().filter(|line| line.idle.load(Ordering::Acquire));
        let backlog = self.backlog.iter().map(|b| b.check(now, limit, page));
        for waited in lines.map(|line| line.check(now, limit, page)).chain(backlog) {
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
/// answered. A non-empty listen backlog counts as one waiting.
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

impl Backlog {
    /// Whether connections wait, and answers one that waited past `limit`.
    fn check(&self, now: Instant, limit: Duration, page: &[u8]) -> Waited {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        if !self.watched.load(Ordering::Acquire) || !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1)) {
            *since = None;
            return Waited::No;
        }
        let first_seen = *since.get_or_insert(now);
        if now.duration_since(first_seen) < limit {
            return Waited::Yes;
        }
        let Ok(socket) = self.listener.accept() else {
            // Another worker took it after all.
            return Waited::No;
        };
        let line = Line {
            socket: Arc::new(socket),
            idle: AtomicBool::new(true),
            since: Mutex::new(Some(first_seen)),
        };
        // Its request may still be on its way: a moment for it.
        let mut fds = [PollFd::new(line.socket.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u8));
        match line.check(now, limit, page) {
            Waited::Answered => Waited::Answered,
            // Not answerable yet: the serving thread will serve it.
            Waited::Yes | Waited::No => {
                let socket = Arc::try_unwrap(line.socket).expect("the line's only holder");
                self.taken.lock().unwrap_or_else(|p| p.into_inner()).push_back(socket);
                self.wake.notify_one();
                Waited::Yes
            }
        }
    }
}

impl Line {
    /// Tells the watchdog whether the unread input starts at a request.
    pub(super) fn set_idle(&self, idle: bool) {
        // Once per request, not per record: only a change takes the lock.
        if self.idle.swap(idle, Ordering::AcqRel) && !idle {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Whether input (or the peer's hang-up) is waiting, unread.
    pub(super) fn readable(&self) -> bool {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
    }

    /// Whether a complete request waits, and answers it once it waited
    /// past `limit`.
    fn check(&self, now: Instant, limit: Duration, page: &[u8]) -> Waited {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let Some(id) = self.waiting_request() else {
            *since = None;
            return Waited::No;
        };
        let first_seen = *since.get_or_insert(now);
        if now.duration_since(first_seen) < limit {
            return Waited::Yes;
        }
        let mut answer = BytesMut::new();
        put_response_end(&mut answer, id, page, 0, status::OVERLOADED);
        let _ = send_all(&self.socket, &answer, Some(now + ANSWER_WITHIN));
        // Both ways: the serving thread finds it hung up, and drops it.
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Both);
        self.idle.store(false, Ordering::Release);
        Waited::Answered
    }

    /// The id of a complete request waiting unread, if there is one.
    fn waiting_request(&self) -> Option<u16> {
        if !self.readable() {
            return None;
        }
        complete_request(&peek(&self.socket).ok()?)
    }
}
