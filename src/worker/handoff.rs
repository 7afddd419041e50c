//! Connections passed from a busy worker process to an idle one.
//!
//! A worker runs one guest at a time on the thread that reads its
//! connections, so a request arriving on one of its other connections while
//! a guest runs would wait for that guest, however many workers idle. While
//! a guest runs, the worker's watchdog thread therefore passes each of its
//! other connections on which a new request starts, before a byte of it was
//! read, to whichever worker is idle first: the connection's socket goes as
//! `SCM_RIGHTS` (unix(7)) over a datagram socket pair that the supervisor
//! made and every worker shares. Workers receive from it as they accept
//! from the listening socket, so the kernel hands each passed connection to
//! one worker waiting for work. Nothing is passed while a worker is idle:
//! the cost is paid only when a request would otherwise wait.
//!
//! # Why by hand
//! The socket pair reaches the workers as two inherited fds named in an
//! environment variable; `OwnedFd` can only take such a number, and the fds
//! `SCM_RIGHTS` delivers, by `from_raw_fd`. The `unsafe` blocks of this
//! module are those, and the `fcntl` that checks such a number is open.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::cmsg_space;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, getsockopt, recvmsg, sendmsg,
    socketpair, sockopt,
};

/// The environment variable that names the pair's fds to a worker.
const ENV: &str = "WCGID_HANDOFF_FDS";

/// Both ends of the shared socket pair: connections are sent on one and
/// received on the other, by any worker.
pub struct Handoff {
    send: OwnedFd,
    receive: OwnedFd,
}

impl Handoff {
    /// A new pair, non-blocking, for the supervisor to pass to its workers
    /// (see [`Handoff::env`]).
    pub fn new() -> io::Result<Handoff> {
        let (send, receive) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        Ok(Handoff { send, receive })
    }

    /// The variable to start a worker with, the fds left open across exec
    /// (the supervisor starts nothing but workers).
    pub fn env(&self) -> io::Result<(&'static str, String)> {
        for fd in [&self.send, &self.receive] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        }
        Ok((ENV, format!("{},{}", self.send.as_raw_fd(), self.receive.as_raw_fd())))
    }

    /// The pair the supervisor passed, if it did. Call once: the fds become
    /// this value's (and do not outlive an exec of ours).
    pub fn inherit() -> io::Result<Option<Handoff>> {
        let Some(value) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let bad = || io::Error::other(format!("{ENV} is not two fds: {value:?}"));
        let text = value.to_str().ok_or_else(bad)?;
        let (send, receive) = text.split_once(',').ok_or_else(bad)?;
        let [send, receive] = [send, receive].map(|fd| fd.parse::<RawFd>().map_err(|_| bad()));
        let (send, receive) = (own(send?)?, own(receive?)?);
        for fd in [&send, &receive] {
            if getsockopt(fd, sockopt::SockType)? != SockType::Datagram {
                return Err(bad());
            }
        }
        Ok(Some(Handoff { send, receive }))
    }

    /// Passes `socket` to whichever worker receives next. Fails with
    /// `WouldBlock` when the pair's queue is full.
    pub fn pass(&self, socket: &OwnedFd) -> io::Result<()> {
        let fds = [socket.as_raw_fd()];
        sendmsg::<()>(
            self.send.as_raw_fd(),
            &[IoSlice::new(b"c")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// A connection another worker passed, if one waits; non-blocking.
    pub fn receive(&self) -> io::Result<Option<OwnedFd>> {
        loop {
            let mut byte = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut byte)];
            let mut space = cmsg_space!([RawFd; 1]);
            let msg = match recvmsg::<()>(
                self.receive.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut received = None;
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for fd in fds {
                        // SAFETY: SCM_RIGHTS installed `fd` in this process
                        // for this message alone; nothing else owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                        received.get_or_insert(fd);
                    }
                }
            }
            // A message without a connection (none is ever sent) is skipped.
            if let Some(socket) = received {
                let flags = OFlag::from_bits_truncate(fcntl(&socket, FcntlArg::F_GETFL)?);
                fcntl(&socket, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
                return Ok(Some(socket));
            }
        }
    }

    /// The receiving end, to wait on until a connection arrives.
    pub fn receiving(&self) -> std::os::fd::BorrowedFd<'_> {
        self.receive.as_fd()
    }
}

/// Takes ownership of an inherited fd, once it is known to be open.
fn own(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other(format!("{ENV} names fd {fd}, a standard stream")));
    }
    // SAFETY: F_GETFD only looks the number up in the fd table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (F_GETFD succeeded) and was left to this process
    // by the supervisor for this use alone: named in ENV, which the worker
    // reads once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_passed_connection_arrives_whole_and_non_blocking() {
        let handoff = Handoff::new().unwrap();
        assert!(handoff.receive().unwrap().is_none(), "nothing waits yet");
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        handoff.pass(&OwnedFd::from(theirs)).unwrap();
        let received = handoff.receive().unwrap().expect("one waits");
        let flags = OFlag::from_bits_truncate(fcntl(&received, FcntlArg::F_GETFL).unwrap());
        assert!(flags.contains(OFlag::O_NONBLOCK));
        let mut received = UnixStream::from(received);
        ours.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        received.set_nonblocking(false).unwrap();
        received.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        assert!(handoff.receive().unwrap().is_none());
    }

    #[test]
    fn a_full_queue_refuses_instead_of_blocking() {
        let handoff = Handoff::new().unwrap();
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let refused = (0..100_000).find_map(|_| handoff.pass(&theirs).err());
        assert_eq!(refused.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
    }
}
