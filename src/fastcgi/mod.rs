//! FastCGI 1.0 responder: records in, a [`Job`] for the gateway, records out.
//!
//! Implements the application side of the FastCGI Specification 1.0 (Open Market,
//! 1996) for the Responder role (§6.2): record framing (§3.3), name-value pairs
//! (§3.4), management records (§4), the application records BEGIN_REQUEST,
//! PARAMS, STDIN, ABORT_REQUEST and END_REQUEST (§5) and the constants of §8.
//!
//! # Why a codec of our own
//! `tokio-fastcgi` 1.3.0, the FastCGI crate this project set out to use, was measured to panic on
//! a BEGIN_REQUEST with no content, to allocate whatever a PARAMS length claims
//! (2 GiB for `0x7fffffff`), to drop the connection when a name-value pair spans
//! two PARAMS records (legal per §3.4), to close instead of answering
//! FCGI_UNKNOWN_ROLE (§5.5), to lowercase every param name, to buffer STDIN
//! without limit and to advertise FCGI_MPXS_CONNS=1 while concurrent writers
//! panic. The first three happen inside its decoder, before any wrapper sees a
//! record, so no thin layer can fix them. This module is a strict decoder with
//! every buffer bounded, and a connection loop that passes STDIN on as it
//! arrives and writes STDOUT as the job produces it, with back-pressure both
//! ways.
//!
//! Each connection carries one request at a time (`FCGI_MPXS_CONNS=0`): nginx,
//! Apache and lighttpd never multiplex, and a second BEGIN_REQUEST on a busy
//! connection is answered with FCGI_CANT_MPX_CONN as §5.5 asks.

pub mod client;
mod connection;
mod line;
mod params;
mod record;
mod stdout;

use bytes::Bytes;

pub use connection::serve;
pub use line::{Line, Seen, Waited};
pub use params::Params;
pub use stdout::{Ending, Gone, Peer, PeerWatch, Stdout};

/// appStatus of a request ended by FCGI_ABORT_REQUEST (§5.4) before its
/// program finished.
pub const ABORTED_APP_STATUS: u32 = 1;

/// What the connection tells peers through FCGI_GET_VALUES (§4.1), and the
/// bounds it enforces on PARAMS.
#[derive(Debug, Clone)]
pub struct Caps {
    /// FCGI_MAX_CONNS: connections served at once.
    pub max_conns: usize,
    /// FCGI_MAX_REQS: requests accepted at once.
    pub max_reqs: usize,
    /// Total bytes of one request's PARAMS stream.
    pub max_params_bytes: usize,
    /// Name-value pairs in one request's PARAMS stream.
    pub max_params: usize,
}

/// What a request becomes once its PARAMS are complete.
pub enum Start<J> {
    /// A complete response, known at once (an error page): sent as STDOUT
    /// with appStatus 0, whatever STDIN still brings is ignored.
    Respond(Bytes),
    /// A job that takes the body, then runs.
    Run(J),
}

/// What runs requests.
pub trait Handler {
    type Job: Job;
    fn start(&self, params: Params) -> Start<Self::Job>;
    /// A connection was accepted (for the counts).
    fn connected(&self) {}
    /// The complete response for a request whose PARAMS exceed [`Caps`].
    fn params_too_large(&self) -> Bytes;
}

/// One request's work.
pub trait Job {
    /// Takes the next chunk of the body. `Err` carries a complete response
    /// to send instead of running (the body is too large, say).
    fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes>;
    /// Runs, once the body is complete, writing to `out`; blocks the thread.
    fn run(self, out: Stdout) -> Ending;
}

/// Record types (§8).
pub mod kind {
    pub const BEGIN_REQUEST: u8 = 1;
    pub const ABORT_REQUEST: u8 = 2;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const STDERR: u8 = 7;
    pub const DATA: u8 = 8;
    pub const GET_VALUES: u8 = 9;
    pub const GET_VALUES_RESULT: u8 = 10;
    pub const UNKNOWN_TYPE: u8 = 11;
}

/// Roles in BEGIN_REQUEST (§5.1, §8).
pub const ROLE_RESPONDER: u16 = 1;

/// BEGIN_REQUEST flag: keep the connection open after END_REQUEST (§5.1).
pub const KEEP_CONN: u8 = 1;

/// protocolStatus values of END_REQUEST (§5.5).
pub mod status {
    pub const REQUEST_COMPLETE: u8 = 0;
    pub const CANT_MPX_CONN: u8 = 1;
    pub const OVERLOADED: u8 = 2;
    pub const UNKNOWN_ROLE: u8 = 3;
}

/// Everything that makes a connection unusable. The connection is closed;
/// no other connection is affected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported FastCGI version {0} (only 1 exists)")]
    Version(u8),
    #[error("connection closed inside a record")]
    TruncatedRecord,
    #[error("BEGIN_REQUEST carries {0} content bytes, not 8")]
    BadBeginRequest(usize),
    #[error("BEGIN_REQUEST on the management request id 0")]
    BeginOnNullId,
    #[error("malformed name-value pairs: {0}")]
    Params(#[from] params::Error),
    #[error("record type {kind} is not valid for request {id} at this point")]
    Unexpected { kind: u8, id: u16 },
    #[error("request {id}'s input stalled or took too long")]
    Slow { id: u16 },
}
