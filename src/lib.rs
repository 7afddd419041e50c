//! wcgid runs WASI CGI programs behind nginx or Apache: a FastCGI responder
//! on a Unix socket that gives every request a fresh Wasm instance.
//!
//! # Layout
//! A request flows through the modules in this order:
//!
//! - [`listener`]: the Unix or TCP socket, bound by the supervisor, and each
//!   worker process's accept loop on it;
//! - [`fastcgi`]: FastCGI records in and out, one request per connection at a
//!   time (FastCGI 1.0);
//! - [`cgi`]: which program runs, its RFC 3875 environment and body, and its
//!   output checked and rewritten as a CGI response;
//! - [`sandbox`]: the compiled module, a fresh instance per request and the
//!   WASI host functions it calls.
//!
//! [`worker`] holds the supervisor, which keeps the worker processes
//! running, and a worker's main loop.
//!
//! Beside them: [`config`] reads and validates the configuration,
//! [`preinit`] is the Wizer-compatible snapshot tool, [`migrate`] turns a
//! cgi-bin of Perl and Python scripts into a configuration and says which
//! scripts cannot run, [`status`] counts requests and serves the status
//! page, metrics and ping on the admin socket, [`cli`] is the command line.


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
