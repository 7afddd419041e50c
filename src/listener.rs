//! Where FastCGI connections come from: a Unix socket (the default) or TCP,
//! and the accept loop that hands each connection to [`fastcgi::serve`].
//!
//! The Unix socket is created with its final mode and group before anyone can
//! connect (bound under a restrictive umask, then chmod/chown), a stale socket
//! file left by a dead daemon is replaced, a live one is refused, and the file
//! is removed when the listener is dropped.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixSocket};
use tokio::sync::Semaphore;

use crate::cgi::Gateway;
use crate::config::{Listen, Server};
use crate::fastcgi::{self, Caps};

/// Pending connections the kernel queues for us: nginx opens many at once.
const BACKLOG: u32 = 1024;
/// How long in-flight connections may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("another process is listening on {0}; refusing to take its socket")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot listen on {listen}: {source}")]
    Io { listen: String, source: io::Error },
}

pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// Inode of our socket file, so Drop removes only our own.
        ino: u64,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds as configured. Must run inside the tokio runtime.
    pub fn bind(server: &Server) -> Result<Listener, Error> {
        let io_err = |source| Error::Io {
            listen: server.listen.to_string(),
            source,
        };
        match &server.listen {
            Listen::Unix(path) => bind_unix(path, server).map_err(|e| match e {
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
                Ok(Listener::Tcp(socket.listen(BACKLOG).map_err(io_err)?))
            }
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

fn bind_unix(path: &Path, server: &Server) -> Result<Listener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::Listener(Error::InUse(path.into()))),
            // Nobody answers: a dead daemon's socket.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(e) => return Err(e.into()),
        },
        Ok(_) => return Err(BindError::Listener(Error::NotASocket(path.into()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let socket = UnixSocket::new_stream()?;
    // The socket file is born 0600 and only then opened up to its mode, so
    // there is no moment when it is more open than configured.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = socket.bind(path);
    umask(old);
    bound?;
    if let Some((_, gid)) = &server.socket_group {
        std::os::unix::fs::chown(path, None, Some(*gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(server.socket_mode))?;
    let ino = std::fs::metadata(path)?.ino();
    Ok(Listener::Unix {
        listener: socket.listen(BACKLOG)?,
        path: path.into(),
        ino,
    })
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, ino, .. } = self
            && std::fs::metadata(&*path).is_ok_and(|m| m.ino() == *ino)
        {
            let _ = std::fs::remove_file(&*path);
        }
    }
}

/// Accepts connections until `shutdown` completes, serving each on its own
/// task, at most `caps.max_conns` at once. Then stops listening and waits up
/// to [`DRAIN`] for the connections to finish.
pub async fn serve(listener: Listener, gateway: Arc<Gateway>, caps: Caps, shutdown: impl Future<Output = ()>) {
    let caps = Arc::new(caps);
    let conns = Arc::new(Semaphore::new(caps.max_conns));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = conns.clone().acquire_owned() => permit.expect("never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        let (gateway, caps) = (gateway.clone(), caps.clone());
        match accepted {
            Ok(Stream::Unix(s)) => {
                let (r, w) = s.into_split();
                tokio::spawn(async move {
                    connection(r, w, &gateway, &caps).await;
                    drop(permit);
                });
            }
            Ok(Stream::Tcp(s)) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                tokio::spawn(async move {
                    connection(r, w, &gateway, &caps).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let all = u32::try_from(caps.max_conns).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, conns.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Unix { listener, .. } => Ok(Stream::Unix(listener.accept().await?.0)),
        Listener::Tcp(listener) => Ok(Stream::Tcp(listener.accept().await?.0)),
    }
}

async fn connection<R, W>(r: R, w: W, gateway: &Gateway, caps: &Caps)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match fastcgi::serve(r, w, gateway, caps).await {
        Ok(()) => {}
        Err(fastcgi::Error::Io(e)) => tracing::debug!("connection ended: {e}"),
        Err(e) => tracing::warn!("closing FastCGI connection: {e}"),
    }
}
