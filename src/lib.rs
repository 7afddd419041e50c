//! wcgid runs WASI CGI programs behind nginx or Apache: a FastCGI responder
//! on a Unix socket that gives every request a fresh Wasm instance.
//!
//! # Layout
//! The processes: the [`supervisor`] binds the listening sockets, keeps the
//! worker processes running, reloads them and serves the admin socket; each
//! [`worker`] accepts connections and serves them on one thread; what each
//! signal means to them is in [`shutdown`].
//!
//! A request flows through the modules in this order:
//!
//! - [`worker`]: its accept loop takes the connection (`worker::accept`);
//! - [`fastcgi`]: FastCGI records in and out, one request per connection at a
//!   time (FastCGI 1.0);
//! - [`cgi`]: which program runs, its RFC 3875 environment and body, and its
//!   output checked and rewritten as a CGI response;
//! - [`sandbox`]: the compiled module, a fresh instance per request and the
//!   WASI host functions it calls;
//!
//! while the worker's watchdog (`worker::watchdog`) stops a guest that
//! overruns and passes on the requests that would wait for it.
//!
//! Beside them: [`config`] reads and validates the configuration,
//! [`preinit`] is the Wizer-compatible snapshot tool (and snapshots the
//! interpreters of legacy scripts), [`migrate`] turns a cgi-bin of Perl and
//! Python scripts into a configuration and says which scripts cannot run,
//! [`status`] counts requests, renders the status page and metrics, and
//! sets up logging, [`cli`] is the command line.
//!
//! Dependencies run one way, from the command line down to the leaves:
//! `cli` → `supervisor` → `worker` → `cgi` → `status` → `preinit` →
//! `config` → `sandbox` and `fastcgi`, with `migrate` on `cgi` and
//! `shutdown` under the processes; no two modules use each other, at any
//! depth (`src/tests.rs` checks both). docs/architecture.md follows a
//! request through the files.

pub mod cgi;
pub mod cli;
pub mod config;
pub mod fastcgi;
pub mod migrate;
pub mod preinit;
pub mod sandbox;
pub mod shutdown;
pub mod status;
pub mod supervisor;
pub mod worker;

#[cfg(test)]
mod tests;
