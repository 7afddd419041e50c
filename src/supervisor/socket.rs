//! The listening sockets the supervisor holds: the FastCGI socket, a Unix
//! socket (the default) or TCP, and the admin socket. Bound once and shared
//! by the worker processes, which take it as their fd 0, the convention of
//! FastCGI 1.0 §2.2 (`FCGI_LISTENSOCK_FILENO`), as php-fpm's children share
//! one socket too: the kernel hands each connection to one worker that is
//! waiting in accept, so an idle worker takes the next one.
//!
//! The Unix socket is created with its final mode and group before anyone can
//! connect (bound under a restrictive umask, then chmod/chown), under a
//! temporary name that is renamed to the configured path once the workers
//! are ready, so the path answers only when requests can be served. A stale
//! socket file left by a dead daemon is replaced, a live one is refused, and
//! the file is removed when the supervisor stops. Under systemd socket
//! activation the sockets systemd passed are used instead (told apart by
//! `LISTEN_FDNAMES`, as sd-notify reads them), and their files left to
//! systemd. sd-notify gives those sockets as fd numbers: taking ownership
//! of each is this module's one `unsafe` block.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::{Mode, umask};
use tokio::net::UnixSocket;

use crate::config::{Listen, Socket};

/// Pending connections the kernel queues for us: nginx opens many at once.
const BACKLOG: u32 = 1024;
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
pub struct BoundSocket {
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

impl BoundSocket {
    /// The FastCGI socket and the admin socket, if any: those systemd passed
    /// (socket activation: `LISTEN_FDS` and `LISTEN_PID`, fds from 3, the
    /// one `LISTEN_FDNAMES` names `admin` being the admin socket and the
    /// first other one the FastCGI socket), else bound as configured.
    /// Must run inside the tokio runtime.
    pub fn bind_all(server: &Socket, admin: Option<&Socket>) -> Result<(BoundSocket, Option<BoundSocket>), Error> {
        let (fastcgi, passed_admin) = BoundSocket::passed()?;
        let fastcgi = match fastcgi {
            Some(bound) => bound,
            None => BoundSocket::bind(server)?,
        };
        let admin = match (passed_admin, admin) {
            (Some(bound), _) => Some(bound),
            (None, Some(admin)) => Some(BoundSocket::bind(admin)?),
            (None, None) => None,
        };
        Ok((fastcgi, admin))
    }

    /// The sockets systemd passed, by name (sd_listen_fds_with_names(3)).
    /// The variables stay set: `LISTEN_PID` names this process, and the
    /// workers are started without them.
    fn passed() -> Result<(Option<BoundSocket>, Option<BoundSocket>), Error> {
        let passed = sd_notify::listen_fds_with_names().map_err(|source| Error::Io {
            listen: "the sockets systemd passed (LISTEN_FDS)".into(),
            source,
        })?;
        let (mut fastcgi, mut admin) = (None, None);
        for (fd, name) in passed {
            let activation = |source| Error::Io {
                listen: format!("the socket systemd passed as fd {fd} ({name:?})"),
                source,
            };
            // SAFETY: sd_listen_fds(3): the fds from 3 up to 3 + LISTEN_FDS
            // are open and passed to this process (listen_fds_with_names
            // checked LISTEN_PID), and nothing else in it takes them: each
            // is owned once, here.
            #[allow(unsafe_code)]
            let socket = unsafe { OwnedFd::from_raw_fd(fd) };
            match getsockopt(&socket, sockopt::AcceptConn) {
                Ok(true) => {}
                Ok(false) => return Err(activation(io::Error::other("not a listening socket"))),
                Err(e) => return Err(activation(e.into())),
            }
            let slot = match name.as_str() {
                "admin" => &mut admin,
                _ => &mut fastcgi,
            };
            match slot {
                Some(_) => tracing::warn!(fd, name, "socket activation: an extra socket, ignored"),
                None => {
                    tracing::info!(fd, name, "socket activation: serving on a socket systemd passed");
                    *slot = Some(BoundSocket {
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
    fn bind(config: &Socket) -> Result<BoundSocket, Error> {
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
                Ok(BoundSocket {
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

impl Drop for BoundSocket {
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

fn bind_unix(path: &Path, config: &Socket) -> Result<BoundSocket, BindError> {
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
    let bound = BoundSocket {
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
