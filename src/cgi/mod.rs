//! CGI/1.1 (RFC 3875) between the FastCGI request and the guest: script
//! selection ([`router`], §3.3), meta-variables (`env`, §4.1), the request
//! body ([`body`], §4.2) and the response ([`response`], §6). The
//! [`Gateway`] turns a request into a [`job`] that runs its guest in the
//! sandbox, watched by whatever the worker gives it ([`Watch`]: its
//! watchdog), and logs it ([`access`]).
//!
//! A cgi-bin script that is not a module runs in an interpreter, picked by
//! its `#!` line ([`shebang`]) or extension, from a snapshot that has the
//! modules its site imports loaded already ([`imports`]).

pub mod access;
mod app;
pub mod body;
mod cgi_bin;
mod env;
mod gateway;
pub mod imports;
pub mod job;
pub mod response;
pub mod router;
pub mod shebang;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fastcgi::Peer;
use crate::sandbox::Interrupt;

pub use env::MetaVars;
pub use gateway::Gateway;
pub use router::Router;

/// Why a guest is to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The web server gave up on the request.
    Gone = 1,
    /// The app's timeout passed.
    Timeout = 2,
}

/// What watches guests while they run, to stop one once the web server
/// gives up on its request or its time is up.
pub trait Watch {
    /// Marks the start of a run of `app` for the request of `peer`, to stop
    /// at `deadline`; the run ends when the returned handle is dropped.
    fn running(&self, peer: Peer, deadline: Instant, app: Arc<str>) -> Box<dyn Run>;
}

/// A guest's run, as its host calls see it.
pub trait Run: Send {
    /// Why the guest is to stop, if it is.
    fn stopped(&self) -> Option<Stop>;
    /// Gives the watcher the means to stop the guest in the middle of its
    /// code; if it was told to stop already, stops it now.
    fn interruptible(&self, interrupt: &Interrupt);
    /// Sleeps `wait`, unless the guest is stopped meanwhile: `false`.
    fn sleep(&self, wait: Duration) -> bool;
}
