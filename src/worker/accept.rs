//! A worker's accept loop and drain: connections from the listening socket
//! the supervisor passed as fd 0 (FastCGI 1.0 §2.2), and those its watchdog
//! took or another worker handed over ([`Queue`]), each served on its own
//! task by [`fastcgi::serve`].
//!
//! A worker stops accepting as soon as its stop is signalled
//! ([`StopFlags`]); when the daemon stops
//! ([`Stop::Drain`](crate::shutdown::Stop::Drain)), it first serves
//! what waits in the listen backlog.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::fastcgi::{self, Caps, Handler, Line};

use super::queue::{Backlog, Queue};
use crate::shutdown::{DRAIN, StopFlags};

/// A worker's listening socket, accepting.
pub enum Acceptor {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Acceptor {
    /// Takes the listening socket the supervisor passed as fd 0, which then
    /// becomes /dev/null. Must run inside the tokio runtime.
    pub fn inherit() -> io::Result<Acceptor> {
        let socket = io::stdin().as_fd().try_clone_to_owned()?;
        let null = std::fs::File::open("/dev/null")?;
        nix::unistd::dup2_stdin(&null)?;
        Acceptor::from_socket(socket)
    }

    /// A listening socket, for the tokio runtime it is called in.
    pub fn from_socket(socket: OwnedFd) -> io::Result<Acceptor> {
        let family = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&socket))?.family();
        match family {
            Some(AddressFamily::Unix) => {
                let listener = std::os::unix::net::UnixListener::from(socket);
                listener.set_nonblocking(true)?;
                Ok(Acceptor::Unix(UnixListener::from_std(listener)?))
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let listener = std::net::TcpListener::from(socket);
                listener.set_nonblocking(true)?;
                Ok(Acceptor::Tcp(TcpListener::from_std(listener)?))
            }
            _ => Err(io::Error::other("fd 0 is not a listening Unix or TCP socket")),
        }
    }

    /// A duplicate, for the watchdog to watch the backlog with (see
    /// [`Queue::with_inbound`]).
    pub fn duplicate(&self) -> io::Result<Backlog> {
        Ok(match self {
            Acceptor::Unix(l) => Backlog::Unix(std::os::unix::net::UnixListener::from(l.as_fd().try_clone_to_owned()?)),
            Acceptor::Tcp(l) => Backlog::Tcp(std::net::TcpListener::from(l.as_fd().try_clone_to_owned()?)),
        })
    }

    /// A connection accepted elsewhere (by the watchdog, from the backlog:
    /// see [`Queue::taken`]), non-blocking, served like one accepted here.
    fn adopt(&self, socket: OwnedFd) -> io::Result<Accepted> {
        match self {
            Acceptor::Unix(_) => tokio::net::UnixStream::from_std(socket.into()).map(Stream::Unix),
            Acceptor::Tcp(_) => tokio::net::TcpStream::from_std(socket.into()).map(Stream::Tcp),
        }
        .and_then(Stream::split)
    }

    /// Accepts a connection: its read and write halves, and a duplicate of
    /// its socket for jobs to write to directly. `None` once `stop` (if
    /// given) was requested: checked before each accept(2), so that a
    /// worker whose stop was signalled while a guest held its thread takes
    /// no further connection.
    async fn accept(&self, stop: Option<&StopFlags>) -> Option<io::Result<Accepted>> {
        let stream = std::future::poll_fn(|cx| {
            if stop.is_some_and(StopFlags::requested) {
                return Poll::Ready(None);
            }
            match self {
                Acceptor::Unix(l) => l.poll_accept(cx).map(|r| Some(r.map(|(s, _)| Stream::Unix(s)))),
                Acceptor::Tcp(l) => l.poll_accept(cx).map(|r| Some(r.map(|(s, _)| Stream::Tcp(s)))),
            }
        })
        .await?;
        Some(stream.and_then(Stream::split))
    }
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Stream {
    fn split(self) -> io::Result<Accepted> {
        match self {
            Stream::Unix(stream) => {
                let socket = stream.as_fd().try_clone_to_owned()?;
                let (r, w) = stream.into_split();
                Ok(Accepted::Unix(r, w, socket))
            }
            Stream::Tcp(stream) => {
                // Responses often end in a small record: never hold it back.
                stream.set_nodelay(true)?;
                let socket = stream.as_fd().try_clone_to_owned()?;
                let (r, w) = stream.into_split();
                Ok(Accepted::Tcp(r, w, socket))
            }
        }
    }
}

enum Accepted {
    Unix(
        tokio::net::unix::OwnedReadHalf,
        tokio::net::unix::OwnedWriteHalf,
        OwnedFd,
    ),
    Tcp(tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf, OwnedFd),
}

/// Accepts connections until `stop` turns true or `flags` record a stop,
/// serving each on a task of the current [`tokio::task::LocalSet`], at most
/// `limit` at once. Then, for a [`crate::shutdown::Stop::Drain`], takes the connections
/// already waiting in the listen backlog (their peers connected before the
/// stop; when the daemon stops, the supervisor removes the socket's path
/// first, so no more arrive), stops accepting (and the watchdog stops
/// watching the backlog: what waits there now is for another process),
/// closes idle connections, and waits up to [`DRAIN`] for the busy ones to
/// finish.
pub async fn serve<H: Handler + 'static>(
    acceptor: Acceptor,
    handler: Rc<H>,
    caps: Caps,
    limit: usize,
    queue: Queue,
    mut stop: watch::Receiver<bool>,
    flags: StopFlags,
) {
    let caps = Rc::new(caps);
    let conns = Arc::new(Semaphore::new(limit));
    // Set at the stop: until when the backlog may be drained.
    let mut stopping: Option<tokio::time::Instant> = None;
    let drain_until = || Some(tokio::time::Instant::now() + DRAIN);
    loop {
        let permit = conns.clone().acquire_owned();
        let permit = match stopping {
            None => tokio::select! {
                _ = stop.wait_for(|stop| *stop) => {
                    stopping = drain_until();
                    continue;
                }
                permit = permit => permit,
            },
            Some(until) => match tokio::time::timeout_at(until, permit).await {
                Ok(permit) => permit,
                Err(_) => break,
            },
        }
        .expect("never closed");
        let accepted = match stopping {
            None => {
                let accepted = tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => None,
                    taken = queue.taken() => Some(acceptor.adopt(taken)),
                    accepted = acceptor.accept(Some(&flags)) => accepted,
                };
                if accepted.is_some() {
                    queue.took_one();
                }
                accepted
            }
            // Connections the watchdog took from the backlog were accepted:
            // they are served, whatever the stop.
            Some(_) if let Some(taken) = queue.take_now() => Some(acceptor.adopt(taken)),
            Some(until) => {
                // Only what is waiting now: a zero timeout polls accept once.
                let waiting = if flags.drain_backlog() && tokio::time::Instant::now() < until {
                    tokio::time::timeout(Duration::ZERO, acceptor.accept(None)).await.ok()
                } else {
                    None
                };
                match waiting {
                    Some(accepted) => accepted,
                    None => {
                        // What waits in the backlog now is for whoever
                        // accepts next, not for our watchdog to shed.
                        queue.stop_watching_backlog();
                        match queue.take_now() {
                            Some(taken) => Some(acceptor.adopt(taken)),
                            None => break,
                        }
                    }
                }
            }
        };
        let Some(accepted) = accepted else {
            stopping = drain_until();
            continue;
        };
        let (handler, caps, stop) = (handler.clone(), caps.clone(), stop.clone());
        if accepted.is_ok() {
            handler.connected();
        }
        match accepted {
            Ok(Accepted::Unix(r, w, socket)) => {
                let line = queue.register(socket);
                tokio::task::spawn_local(connection(r, w, line, handler, caps, stop, permit));
            }
            Ok(Accepted::Tcp(r, w, socket)) => {
                let line = queue.register(socket);
                tokio::task::spawn_local(connection(r, w, line, handler, caps, stop, permit));
            }
            Err(e) if stopping.is_some() => {
                tracing::warn!("accept failed while stopping: {e}");
                break;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // The new connection's request, if it is there, runs before this
        // worker takes another connection: a worker takes no connection
        // while it has a request to run, so none waits here while another
        // worker idles.
        tokio::task::yield_now().await;
    }
    drop(acceptor);
    let all = u32::try_from(limit).unwrap_or(u32::MAX);
    let until = stopping.unwrap_or_else(|| tokio::time::Instant::now() + DRAIN);
    if tokio::time::timeout_at(until, conns.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
}

async fn connection<R, W, H>(
    r: R,
    mut w: W,
    line: Arc<Line>,
    handler: Rc<H>,
    caps: Rc<Caps>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    R: AsyncRead + Unpin,
    W: WriteHalf,
    H: Handler,
{
    match fastcgi::serve(r, &mut w, line.clone(), &*handler, &caps, stop).await {
        Ok(()) => {}
        Err(fastcgi::Error::Io(e)) => tracing::debug!("connection ended: {e}"),
        Err(e) => tracing::warn!("closing FastCGI connection: {e}"),
    }
    // Another worker serves it now: closed here, not shut down.
    if line.is_handed_over() {
        w.forget();
    }
}

/// A connection's write half, which shuts the socket down for writing when
/// dropped, unless forgotten.
trait WriteHalf: AsyncWrite + Unpin {
    fn forget(self);
}

impl WriteHalf for tokio::net::unix::OwnedWriteHalf {
    fn forget(self) {
        tokio::net::unix::OwnedWriteHalf::forget(self);
    }
}

impl WriteHalf for tokio::net::tcp::OwnedWriteHalf {
    fn forget(self) {
        tokio::net::tcp::OwnedWriteHalf::forget(self);
    }
}
