//! The worker side: `wcgid __worker`, started by the daemon with a Unix
//! socket as stdin. It loads the configuration and the modules (from the AOT
//! cache), says READY, then runs one job after another until the socket
//! closes.

use std::io::{self, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::sys::signal::Signal;

use super::protocol::{self, JobSpec, read_frame, write_frame};
use crate::cgi::Router;
use crate::cgi::body::{self, BodyBuilder};
use crate::cgi::job;
use crate::cgi::response::{ReplySink, error_page};
use crate::fastcgi::Reply;
use crate::sandbox::Engine;

/// Serves jobs from the daemon on stdin until it closes it.
pub fn run(engine: &Engine, router: &Router) -> Result<(), protocol::Error> {
    // The daemon's death ends the worker, even in the middle of a guest.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || nix::unistd::getppid().as_raw() == 1 {
        return Ok(());
    }
    let socket = Arc::new(UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?));
    write_frame(&mut &*socket, protocol::READY, &[])?;
    let mut input = BufReader::with_capacity(64 * 1024, &*socket);
    loop {
        let Some((kind, payload)) = read_frame(&mut input)? else {
            return Ok(());
        };
        if kind != protocol::JOB {
            return Err(protocol::Error::Unexpected(kind));
        }
        let spec = JobSpec::decode(payload)?;
        let mut body = BodyBuilder::default();
        let mut refused = None;
        loop {
            match read_frame(&mut input)? {
                Some((protocol::BODY, chunk)) if refused.is_none() => refused = body.push(chunk).err(),
                Some((protocol::BODY, _)) => {}
                Some((protocol::BODY_END, _)) => break,
                Some((kind, _)) => return Err(protocol::Error::Unexpected(kind)),
                None => return Ok(()),
            }
        }
        let sink = Sink(socket.clone());
        match refused.map_or_else(|| body.finish(), Err) {
            Ok(body) => job::run(router, engine, spec, body, sink),
            Err(e) => refuse(sink, spec.id, &e),
        }
    }
}

/// Answers a request whose body could not be kept.
fn refuse(mut sink: Sink, req: u64, e: &body::Error) {
    let code = match e {
        body::Error::TooLarge => 413,
        body::Error::Spool(_) => {
            tracing::error!(req, "{e}");
            500
        }
    };
    let _ = sink.send(Reply::End {
        stdout: error_page(code),
        app_status: 0,
    });
}

/// Replies as frames to the daemon.
struct Sink(Arc<UnixStream>);

impl ReplySink for Sink {
    fn send(&mut self, reply: Reply) -> io::Result<()> {
        let written = match reply {
            Reply::Stdout(bytes) => write_frame(&mut &*self.0, protocol::STDOUT, &bytes),
            Reply::End { stdout, app_status } => write_frame(
                &mut &*self.0,
                protocol::END,
                &protocol::end_payload(app_status, &stdout),
            ),
        };
        written.map_err(|e| match e {
            protocol::Error::Io(e) => e,
            other => io::Error::other(other),
        })
    }

    fn cut(&mut self) -> io::Result<()> {
        write_frame(&mut &*self.0, protocol::CUT, &[]).map_err(io::Error::other)
    }
}
