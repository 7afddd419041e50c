//! One connection as the worker's watchdog sees it while a guest holds the
//! serving thread ([`Line`]): whether its unread input starts a new request
//! (then it may be passed to another worker), and a complete request found
//! waiting on it, timed and, past the limit, answered with
//! END_REQUEST{FCGI_OVERLOADED} (FastCGI 1.0 §5.5) and the connection shut
//! down, so that the serving thread drops it instead of running the
//! request late. Reading nothing: requests are found by `MSG_PEEK`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, Shutdown, recv, shutdown};
use parking_lot::Mutex;

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
pub struct Seen {
    first: Instant,
    last: Instant,
}

impl Seen {
    /// Records a look at `now` that saw the wait in `seen`; returns how
    /// long it has been seen waiting without a break.
    pub fn again(seen: &mut Option<Seen>, now: Instant) -> Duration {
        let first = match *seen {
            Some(Seen { first, last }) if now.saturating_duration_since(last) <= SEEN_AGAIN_WITHIN => first,
            _ => now,
        };
        *seen = Some(Seen { first, last: now });
        now.saturating_duration_since(first)
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

/// Whether a request was found waiting, and answered.
pub enum Waited {
    No,
    Yes,
    Answered,
}

impl Line {
    /// A connection nothing of which was read yet, a request seen waiting
    /// on it `since` then.
    pub fn new(socket: OwnedFd, since: Option<Seen>) -> Line {
        Line {
            socket: Arc::new(socket),
            idle: AtomicBool::new(true),
            handed: AtomicBool::new(false),
            since: Mutex::new(since),
        }
    }

    /// The socket, once no one else holds the line.
    pub fn into_socket(self) -> OwnedFd {
        Arc::try_unwrap(self.socket).expect("a line's socket is shared only with its connection's task")
    }

    /// Whether its unread input would start a new request.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Passes the connection on with `pass` (to another worker) if it is
    /// still idle; returns whether it did. From then on the serving thread
    /// must not read it.
    pub fn pass_on(&self, pass: impl FnOnce(&OwnedFd) -> std::io::Result<()>) -> bool {
        if !self.is_idle() || pass(&self.socket).is_err() {
            return false;
        }
        self.idle.store(false, Ordering::Release);
        self.handed.store(true, Ordering::Release);
        true
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
            *self.since.lock() = None;
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
    pub fn check(&self, now: Instant, limit: Duration, page: &[u8]) -> Waited {
        let mut since = self.since.lock();
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
