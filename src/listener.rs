//! Where FastCGI connections come from: a Unix socket (the default) or TCP,
//! bound once by the supervisor and shared by its worker processes, each of
//! which accepts connections and serves them with [`fastcgi::serve`].
//!
//! The listening socket reaches a worker as its fd 0, the convention of
//! FastCGI 1.0 §2.2 (`FCGI_LISTENSOCK_FILENO`), which is how php-fpm's
//! children share one socket too: the kernel hands each connection to one
//! worker that is waiting in accept, so an idle worker takes the next one.
//!
//! The Unix socket is created with its final mode and group before anyone can
//! connect (bound under a restrictive umask, then chmod/chown), under a
//! temporary name that is renamed to the configured path once the workers
//! are ready, so the path answers only when requests can be served. A stale
//! socket file left by a dead daemon is replaced, a live one is refused, and
//! the file is removed when the supervisor stops. The admin socket
//! (`[admin]`, served by the supervisor) is bound the same way. Under
//! systemd socket activation the sockets systemd passed are used instead
//! (told apart by `LISTEN_FDNAMES`), and their files left to systemd.
//!
//! A worker stops accepting as soon as its stop is signalled ([`Halt`]);
//! when the daemon stops, it first serves what waits in the listen backlog.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::{Listen, Socket};
use crate::fastcgi::{self, Caps, Handler, Line, Listening, Queue};

/// Pending connections the kernel queues for us: nginx opens many at once.
const BACKLOG: u32 = 1024;
/// How long in-flight connections may take to finish after a stop signal.
pub const DRAIN: Duration = Duration::from_secs(10);
/// Longest `sun_path` (sockaddr_un), including its NUL.
const SUN_PATH_MAX: usize = 108;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("another process is listening on {0}; refusing to take its socket")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot listen on {listen}: {source}")]
    Io { listen: String, source: io::Error },
}

/// The supervisor's listening socket.
pub struct Bound {
    socket: OwnedFd,
    /// The Unix socket file: where it is now, where it goes, and its inode,
    /// so that only our own file is ever renamed or removed.
    file: Option<SocketFile>,
    /// Passed by systemd, which keeps it open after we exit.
    activated: bool,
}

struct SocketFile {
    at: PathBuf,
    path: PathBuf,
    ino: u64,
}

impl Bound {
    /// The FastCGI socket and the admin socket, if any: those systemd passed
    /// (socket activation: `LISTEN_FDS` and `LISTEN_PID`, fds from 3, the
    /// one `LISTEN_FDNAMES` names `admin` being the admin socket and the
    /// first other one the FastCGI socket), else bound as configured.
    /// Must run inside the tokio runtime.
    pub fn bind_all(server: &Socket, admin: Option<&Socket>) -> Result<(Bound, Option<Bound>), Error> {
        let (fastcgi, passed_admin) = Bound::passed()?;
        let fastcgi = match fastcgi {
            Some(bound) => bound,
            None => Bound::bind(server)?,
        };
        let admin = match (passed_admin, admin) {
            (Some(bound), _) => Some(bound),
            (None, Some(admin)) => Some(Bound::bind(admin)?),
            (None, None) => None,
        };
        Ok((fastcgi, admin))
    }

    /// The sockets systemd passed, by name. Reading the variables also
    /// removes `LISTEN_FDS` and `LISTEN_PID`; workers are started without
    /// `LISTEN_FDNAMES`.
    fn passed() -> Result<(Option<Bound>, Option<Bound>), Error> {
        let mut passed = listenfd::ListenFd::from_env();
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let mut names = names.split(':');
        let (mut fastcgi, mut admin) = (None, None);
        for index in 0..passed.len() {
            let name = names.next().unwrap_or("");
            let fd = index + 3;
            let activation = |source| Error::Io {
                listen: format!("the socket systemd passed as fd {fd} ({name:?})"),
                source,
            };
            let socket: OwnedFd = match passed.take_unix_listener(index) {
                Ok(Some(listener)) => listener.into(),
                _ => match passed.take_tcp_listener(index).map_err(activation)? {
                    Some(listener) => listener.into(),
                    None => return Err(activation(io::Error::other("not a listening socket"))),
                },
            };
            let slot = match name {
                "admin" => &mut admin,
                _ => &mut fastcgi,
            };
            match slot {
                Some(_) => tracing::warn!(fd, name, "socket activation: an extra socket, ignored"),
                None => {
                    tracing::info!(fd, name, "socket activation: serving on a socket systemd passed");
                    *slot = Some(Bound {
                        socket,
                        file: None,
                        activated: true,
                    });
                }
            }
        }
        Ok((fastcgi, admin))
    }

    /// A socket bound as configured.
    fn bind(config: &Socket) -> Result<Bound, Error> {
        let io_err = |source| Error::Io {
            listen: config.listen.to_string(),
            source,
        };
        match &config.listen {
            Listen::Unix(path) => bind_unix(path, config).map_err(|e| match e {
                BindError::Io(source) => io_err(source),
                BindError::Listener(e) => e,
            }),
            Listen::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "listening on a non-loopback address: FastCGI has no authentication");
                }
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(io_err)?;
                socket.set_reuseaddr(true).map_err(io_err)?;
                socket.bind(*addr).map_err(io_err)?;
                let listener = socket.listen(BACKLOG).map_err(io_err)?.into_std().map_err(io_err)?;
                Ok(Bound {
                    socket: listener.into(),
                    file: None,
                    activated: false,
                })
            }
        }
    }

    /// The socket, for a worker's fd 0.
    pub fn socket(&self) -> io::Result<OwnedFd> {
        self.socket.try_clone()
    }

    /// Whether systemd passed the socket: it stays open in systemd after we
    /// exit, and what waits in its backlog then is for our next start.
    pub fn activated(&self) -> bool {
        self.activated
    }

    /// Gives the Unix socket its configured name: it now answers there.
    pub fn publish(&mut self) -> Result<(), Error> {
        if let Some(file) = &mut self.file
            && file.at != file.path
        {
            std::fs::rename(&file.at, &file.path).map_err(|source| Error::Io {
                listen: format!("unix:{}", file.path.display()),
                source,
            })?;
            file.at = file.path.clone();
        }
        Ok(())
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(file) = &self.file
            && std::fs::symlink_metadata(&file.at).is_ok_and(|m| m.ino() == file.ino)
        {
            let _ = std::fs::remove_file(&file.at);
        }
    }
}

enum BindError {
    Io(io::Error),
    Listener(Error),
}

impl From<io::Error> for BindError {
    fn from(e: io::Error) -> Self {
        BindError::Io(e)
    }
}

fn bind_unix(path: &Path, config: &Socket) -> Result<Bound, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::Listener(Error::InUse(path.into()))),
            // Nobody answers: a dead daemon's socket, replaced when ours is
            // published.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        },
        Ok(_) => return Err(BindError::Listener(Error::NotASocket(path.into()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // The temporary name is short, so that it fits sun_path wherever the
    // configured one does (else the socket is bound where it belongs at
    // once, and answers before the workers are ready).
    // Numbered: the FastCGI and admin sockets may share a directory.
    static BOUND: AtomicUsize = AtomicUsize::new(0);
    let n = BOUND.fetch_add(1, Ordering::Relaxed);
    let temp = path.with_file_name(format!(".w{}.{n}", std::process::id()));
    let at = match temp.as_os_str().len() < SUN_PATH_MAX {
        true => temp,
        false => path.to_owned(),
    };
    // Ours by its name, left by a killed daemon with our pid, or stale.
    if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&at)?;
    }
    let socket = UnixSocket::new_stream()?;
    // The socket file is born 0600 and only then opened up to its mode, so
    // there is no moment when it is more open than configured.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = socket.bind(&at);
    umask(old);
    bound?;
    let bound = Bound {
        socket: socket.listen(BACKLOG)?.into_std()?.into(),
        file: Some(SocketFile {
            ino: std::fs::metadata(&at)?.ino(),
            at,
            path: path.to_owned(),
        }),
        activated: false,
    };
    let at = &bound.file.as_ref().expect("just set").at;
    if let Some((_, gid)) = &config.group {
        std::os::unix::fs::chown(at, None, Some(*gid))?;
    }
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(config.mode))?;
    Ok(bound)
}

/// A worker's listening socket.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Takes the listening socket the supervisor passed as fd 0, which then
    /// becomes /dev/null. Must run inside the tokio runtime.
    pub fn inherit() -> io::Result<Listener> {
        let socket = io::stdin().as_fd().try_clone_to_owned()?;
        let null = std::fs::File::open("/dev/null")?;
        nix::unistd::dup2_stdin(&null)?;
        Listener::from_socket(socket)
    }

    /// A listening socket, for the tokio runtime it is called in.
    pub fn from_socket(socket: OwnedFd) -> io::Result<Listener> {
        let family = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&socket))?.family();
        match family {
            Some(AddressFamily::Unix) => {
                let listener = std::os::unix::net::UnixListener::from(socket);
                listener.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(listener)?))
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let listener = std::net::TcpListener::from(socket);
                listener.set_nonblocking(true)?;
                Ok(Listener::Tcp(TcpListener::from_std(listener)?))
            }
            _ => Err(io::Error::other("fd 0 is not a listening Unix or TCP socket")),
        }
    }

    /// A duplicate, for the watchdog to watch the backlog with (see
    /// [`Queue::with_inbound`]).
    pub fn duplicate(&self) -> io::Result<Listening> {
        Ok(match self {
            Listener::Unix(l) => {
                Listening::Unix(std::os::unix::net::UnixListener::from(l.as_fd().try_clone_to_owned()?))
            }
            Listener::Tcp(l) => Listening::Tcp(std::net::TcpListener::from(l.as_fd().try_clone_to_owned()?)),
        })
    }

    /// A connection accepted elsewhere (by the watchdog, from the backlog:
    /// see [`Queue::taken`]), non-blocking, served like one accepted here.
    fn adopt(&self, socket: OwnedFd) -> io::Result<Accepted> {
        match self {
            Listener::Unix(_) => tokio::net::UnixStream::from_std(socket.into()).map(Stream::Unix),
            Listener::Tcp(_) => tokio::net::TcpStream::from_std(socket.into()).map(Stream::Tcp),
        }
        .and_then(Stream::split)
    }

    /// Accepts a connection: its read and write halves, and a duplicate of
    /// its socket for jobs to write to directly. `None` once `halt` (if
    /// given) was requested: checked before each accept(2), so that a
    /// worker whose stop was signalled while a guest held its thread takes
    /// no further connection.
    async fn accept(&self, halt: Option<&Halt>) -> Option<io::Result<Accepted>> {
        let stream = std::future::poll_fn(|cx| {
            if halt.is_some_and(Halt::requested) {
                return Poll::Ready(None);
            }
            match self {
                Listener::Unix(l) => l.poll_accept(cx).map(|r| Some(r.map(|(s, _)| Stream::Unix(s)))),
                Listener::Tcp(l) => l.poll_accept(cx).map(|r| Some(r.map(|(s, _)| Stream::Tcp(s)))),
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

/// A worker's stop as its signals request it. The flags are set by the
/// signal handler itself, so a stop takes effect even if it arrives while a
/// guest holds the worker's thread, before the async side hears of it.
#[derive(Clone, Default)]
pub struct Halt {
    requested: Arc<AtomicBool>,
    drain_backlog: Arc<AtomicBool>,
}

impl Halt {
    /// A halt requested by `retire` (stop accepting at once) or `shut_down`
    /// (first serve the connections waiting in the listen backlog).
    pub fn on_signals(retire: Signal, shut_down: Signal) -> io::Result<Halt> {
        let halt = Halt::default();
        for signal in [retire, shut_down] {
            signal_hook::flag::register(signal as i32, halt.requested.clone())?;
        }
        signal_hook::flag::register(shut_down as i32, halt.drain_backlog.clone())?;
        Ok(halt)
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The flag a stop sets, for a thread that must know of it at once.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.requested.clone()
    }

    fn drain_backlog(&self) -> bool {
        self.drain_backlog.load(Ordering::SeqCst)
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

/// Accepts connections until `stop` turns true or `halt` is requested,
/// serving each on a task of the current [`tokio::task::LocalSet`], at most
/// `limit` at once. Then, if the halt asks for it, takes the connections
/// already waiting in the listen backlog (their peers connected before the
/// stop; when the daemon stops, the supervisor removes the socket's path
/// first, so no more arrive), stops accepting (and the watchdog stops
/// watching the backlog: what waits there now is for another process),
/// closes idle connections, and waits up to [`DRAIN`] for the busy ones to
/// finish.
pub async fn serve<H: Handler + 'static>(
    listener: Listener,
    handler: Rc<H>,
    caps: Caps,
    limit: usize,
    queue: Queue,
    mut stop: watch::Receiver<bool>,
    halt: Halt,
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
                    taken = queue.taken() => Some(listener.adopt(taken)),
                    accepted = listener.accept(Some(&halt)) => accepted,
                };
                if accepted.is_some() {
                    queue.took_one();
                }
                accepted
            }
            // Connections the watchdog took from the backlog were accepted:
            // they are served, whatever the stop.
            Some(_) if let Some(taken) = queue.take_now() => Some(listener.adopt(taken)),
            Some(until) => {
                // Only what is waiting now: a zero timeout polls accept once.
                let waiting = if halt.drain_backlog() && tokio::time::Instant::now() < until {
                    tokio::time::timeout(Duration::ZERO, listener.accept(None)).await.ok()
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
                            Some(taken) => Some(listener.adopt(taken)),
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
    drop(listener);
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
