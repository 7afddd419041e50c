//! A running request's STDOUT stream (FastCGI 1.0 §5.3), written from the
//! guest's thread straight to the connection's socket.
//!
//! A job runs synchronously on its worker's only thread, so nothing else
//! could drain a queue of replies while it runs. Its output is framed into
//! STDOUT records (§3.3, at most 65535 content bytes each, padded to 8) and
//! sent at once with blocking writes: a peer that reads slowly slows the
//! guest down, as a CGI program's stdout pipe would, and memory stays
//! bounded. The tail of the output goes back to the connection with the
//! request's end, so a short response is one write.
//!
//! While the job runs the connection reads nothing, so [`Peer`] lets another
//! thread notice, without consuming a byte, that the request is over for the
//! web server: FCGI_ABORT_REQUEST (§5.4) or a closed connection (nginx
//! closes it when its client goes away).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv, send};
use parking_lot::Mutex;

use super::record::{put_response_end, put_stream, scan_for_abort};
use super::{kind, status};

/// How a job's response ends.
#[derive(Debug)]
pub enum Ending {
    /// `tail` is the output not yet sent; then STDOUT ends and END_REQUEST
    /// carries `app_status` (§5.5).
    Complete { tail: Bytes, app_status: u32 },
    /// The response breaks off after what was sent: the connection closes
    /// without END_REQUEST, so that the web server cannot take a truncated
    /// response for a whole one.
    Cut,
}

/// Where a job writes its response.
pub struct Stdout {
    id: u16,
    socket: Arc<OwnedFd>,
    frames: BytesMut,
    /// A send failed (the peer left): every later one fails at once.
    broken: bool,
    /// The unread input starts at a record boundary (the connection had
    /// nothing buffered when the job started).
    aligned: bool,
    /// Shared with [`Peer`]: held while sending.
    sending: Arc<Mutex<Sending>>,
    /// When a send blocked by a peer that does not read gives up.
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Sending {
    /// Some output went out.
    started: bool,
    /// The response was given by [`Peer::answer_instead`]: no more output.
    taken: bool,
}

impl Stdout {
    pub(super) fn new(id: u16, socket: Arc<OwnedFd>, aligned: bool) -> Stdout {
        Stdout {
            id,
            socket,
            frames: BytesMut::new(),
            broken: false,
            aligned,
            sending: Arc::default(),
            deadline: None,
        }
    }

    /// A watch on the peer of this request, for another thread.
    pub fn peer(&self) -> Peer {
        Peer {
            id: self.id,
            socket: self.socket.clone(),
            aligned: self.aligned,
            sending: self.sending.clone(),
        }
    }

    /// Makes sends still blocked at `deadline` fail (`TimedOut`).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Sends `data` as STDOUT records now, blocking while the peer's socket
    /// buffer is full. An error means the peer is gone, or too slow.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut sending = self.sending.lock();
        if self.broken || sending.taken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        sending.started = true;
        self.frames.clear();
        put_stream(&mut self.frames, kind::STDOUT, self.id, data);
        let sent = send_all(&self.socket, &self.frames, self.deadline);
        self.broken = sent.is_err();
        sent
    }
}

/// Writes all of `data` to the non-blocking socket `fd`, waiting in poll(2)
/// whenever it is full, until `deadline` at most. MSG_NOSIGNAL: a gone peer
/// is an error, not SIGPIPE.
pub(super) fn send_all(fd: &OwnedFd, mut data: &[u8], deadline: Option<Instant>) -> io::Result<()> {
    while !data.is_empty() {
        match send(fd.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let timeout = match deadline {
                    None => PollTimeout::NONE,
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
                    }
                };
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The peer shut its side down (Linux; nix does not name it).
const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(libc::POLLRDHUP);

/// How long [`Peer::answer_instead`] may wait for the peer to take it.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Bytes of unread input looked at by [`peek`].
const PEEK: usize = 64 * 1024;

/// The start of the input waiting unread on `socket`, without reading it:
/// empty once the peer closed; `EAGAIN` when nothing is waiting.
pub(super) fn peek(socket: &OwnedFd) -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u8; PEEK];
    let n = recv(
        socket.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )?;
    buf.truncate(n);
    Ok(buf)
}

/// The peer of a running request, watched from another thread.
#[derive(Clone)]
pub struct Peer {
    id: u16,
    socket: Arc<OwnedFd>,
    aligned: bool,
    sending: Arc<Mutex<Sending>>,
}

/// What to ask poll(2) about a peer, and what its answers mean.
pub struct PeerWatch {
    peer: Peer,
    /// Input that is not an abort stays readable: after looking at it once,
    /// a hang-up alone is waited for.
    events: PollFlags,
}

impl PeerWatch {
    /// The entry for poll(2).
    pub fn poll_fd(&self) -> PollFd<'_> {
        PollFd::new(self.peer.socket.as_fd(), self.events)
    }

    /// Whether poll(2)'s `revents` for [`PeerWatch::poll_fd`] say that the
    /// peer gave up. Reads nothing.
    pub fn seen(&mut self, revents: Option<PollFlags>) -> Option<Gone> {
        // nix's PollFlags does not know POLLRDHUP, so revents holding it
        // read as None: of what poll(2) can report, it alone is unknown.
        let Some(got) = revents else {
            return Some(Gone::Closed);
        };
        if got.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Some(Gone::Closed);
        }
        if got.contains(PollFlags::POLLIN) {
            if let Some(gone) = self.peer.abort_waiting() {
                return Some(gone);
            }
            self.events = POLLRDHUP;
        }
        None
    }
}

/// How a peer gave up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// FCGI_ABORT_REQUEST (§5.4): the connection itself may go on.
    Aborted,
    /// The connection closed, even only for writing (web servers do not
    /// half-close a connection whose response they await).
    Closed,
}

impl Peer {
    /// Gives `stdout` as the whole response, ended with `app_status`, in
    /// place of the job's, if the job has sent nothing and is not sending:
    /// for a job that will never end. Returns whether it did. The job's
    /// later sends fail.
    pub fn answer_instead(&self, stdout: &[u8], app_status: u32) -> bool {
        let Some(mut sending) = self.sending.try_lock() else {
            return false;
        };
        if sending.started || sending.taken {
            return false;
        }
        sending.taken = true;
        let mut frames = BytesMut::new();
        put_response_end(&mut frames, self.id, stdout, app_status, status::REQUEST_COMPLETE);
        send_all(&self.socket, &frames, Some(Instant::now() + ANSWER_WITHIN)).is_ok()
    }

    /// Waits up to `timeout` (zero: just looks) for the peer to give up on
    /// the request. Reads nothing.
    pub fn wait_gone(&self, timeout: Duration) -> Option<Gone> {
        let deadline = Instant::now() + timeout;
        let mut watch = self.clone().watch();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [watch.poll_fd()];
            match poll(&mut fds, left) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => return Some(Gone::Closed),
            }
            let revents = fds[0].revents();
            if let Some(gone) = watch.seen(revents) {
                return Some(gone);
            }
        }
    }

    /// A watch on the peer for a poll(2) loop over several fds.
    pub fn watch(self) -> PeerWatch {
        PeerWatch {
            peer: self,
            events: PollFlags::POLLIN | POLLRDHUP,
        }
    }

    /// Whether the unread input holds an ABORT_REQUEST for this request, or
    /// ends (the peer closed). Only whole records from a known boundary count.
    fn abort_waiting(&self) -> Option<Gone> {
        match peek(&self.socket) {
            Ok(unread) if unread.is_empty() => Some(Gone::Closed),
            Ok(unread) => (self.aligned && scan_for_abort(&unread, self.id).0).then_some(Gone::Aborted),
            Err(_) => None,
        }
    }
}
