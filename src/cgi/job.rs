//! One request, run by a worker process: its program picked (a `[cgi_bin]`
//! script is looked up here, off the daemon), its environment built, its
//! guest run with the body as stdin, its output checked and sent back as
//! replies, and its stderr logged.

use std::io::Read;
use std::sync::Arc;

use crate::sandbox::{Engine, Outcome, Stdio};

use super::body::Body;
use super::env::MetaVars;
use super::response::{ReplySink, ResponseWriter};
use super::script::Router;
use crate::worker::protocol::{JobSpec, Target};

/// appStatus reported when a guest trapped (as a shell reports `abort()`).
pub const TRAP_APP_STATUS: u32 = 134;
/// Guest stderr bytes logged per request; the rest is counted, not logged.
const MAX_STDERR: usize = 64 * 1024;
/// Longest stderr line logged as one event.
const MAX_STDERR_LINE: usize = 4096;

/// Runs `spec` with `body` and sends its response to `sink`.
pub fn run<S: ReplySink + Send + 'static>(router: &Router, engine: &Engine, spec: JobSpec, body: Body, sink: S) {
    let out = ResponseWriter::new(sink, spec.head_only);
    let mut vars = MetaVars::from_pairs(spec.vars);
    let req = spec.id;
    let app = match spec.target {
        Target::App(name) => match router.app(&name) {
            Some(app) => app,
            None => {
                // The daemon routed with the same configuration: a bug.
                tracing::error!(req, app = name, "no such app in this worker");
                return out.end_with_error(500, 0);
            }
        },
        Target::CgiBin => match router.resolve_cgi_bin(engine, &mut vars) {
            Ok(app) => app,
            Err(refusal) => {
                tracing::info!(req, ?refusal, "cgi-bin request refused");
                return out.end_with_error(refusal as u16, 0);
            }
        },
    };
    for (name, value) in &app.guest.env {
        vars.set(name, value.clone());
    }
    let env = vars.to_env(app.guest.pass_http_proxy);
    let exchange = Exchange {
        stdin: body,
        out,
        stderr: StderrLog::new(app.name.clone(), req),
    };
    let (outcome, exchange) = app.program.run(app.args.clone(), env, exchange);
    exchange.stderr.finish();
    finish(exchange.out, outcome, &app.name, req);
}

/// Ends the response according to how the guest ended.
fn finish<S: ReplySink>(out: ResponseWriter<S>, outcome: Outcome, app: &str, req: u64) {
    match (out.head_error(), outcome) {
        (None, Outcome::Exit(code)) => out.end(code),
        (None, Outcome::Trap(why)) => {
            // The head is out: the only honest signal left is to cut the
            // response short, so after what the guest wrote the connection
            // closes without END_REQUEST.
            tracing::warn!(app, req, "guest trapped after its headers, response truncated: {why}");
            out.cut();
        }
        (Some(bad), Outcome::Exit(code)) => {
            tracing::warn!(app, req, exit = code, "bad CGI response, answering 502: {bad}");
            out.end_with_error(502, code);
        }
        (Some(_), Outcome::Trap(why)) => {
            tracing::warn!(app, req, "guest trapped, answering 502: {why}");
            out.end_with_error(502, TRAP_APP_STATUS);
        }
    }
}

/// Guest stderr, logged a line at a time with the app and request id.
struct StderrLog {
    app: Arc<str>,
    req: u64,
    line: Vec<u8>,
    total: usize,
}

impl StderrLog {
    fn new(app: Arc<str>, req: u64) -> Self {
        StderrLog {
            app,
            req,
            line: Vec::new(),
            total: 0,
        }
    }

    fn write(&mut self, data: &[u8]) {
        let before = self.total;
        self.total = self.total.saturating_add(data.len());
        let room = MAX_STDERR.saturating_sub(before);
        for piece in data[..data.len().min(room)].split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let space = MAX_STDERR_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&text[..text.len().min(space)]);
            if ends {
                self.emit();
            }
        }
        if before < MAX_STDERR && self.total >= MAX_STDERR {
            self.emit();
            tracing::warn!(
                app = &*self.app,
                req = self.req,
                "guest stderr reached {MAX_STDERR} bytes; the rest is not logged"
            );
        }
    }

    fn emit(&mut self) {
        if !self.line.is_empty() {
            tracing::warn!(
                app = &*self.app,
                req = self.req,
                "stderr: {}",
                String::from_utf8_lossy(&self.line)
            );
            self.line.clear();
        }
    }

    fn finish(mut self) {
        self.emit();
        if self.total > MAX_STDERR {
            tracing::warn!(
                app = &*self.app,
                req = self.req,
                "guest wrote {} stderr bytes in all",
                self.total
            );
        }
    }
}

/// The guest's three streams.
struct Exchange<S> {
    stdin: Body,
    out: ResponseWriter<S>,
    stderr: StderrLog,
}

impl<S: ReplySink + Send + 'static> Stdio for Exchange<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdin.read(buf)
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn log(&mut self, data: &[u8]) {
        self.stderr.write(data);
    }
}
