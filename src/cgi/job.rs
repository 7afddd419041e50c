//! One request's work: its body collected, its guest run in the sandbox
//! with the body as stdin, its output checked and sent as the response, its
//! stderr logged, and the guest stopped if the web server gives up on it.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::fastcgi::{self, ABORTED_APP_STATUS, Ending, Stdout};
use crate::sandbox::{Outcome, Stdio};

use super::body::{self, Body, BodyBuilder};
use super::env::MetaVars;
use super::gateway::RequestId;
use super::response::{ResponseWriter, error_page};
use super::script::App;
use super::watchdog::{Run, Watchdog};

/// appStatus reported when a guest trapped (as a shell reports `abort()`).
pub const TRAP_APP_STATUS: u32 = 134;
/// Guest stderr bytes logged per request; the rest is counted, not logged.
const MAX_STDERR: usize = 64 * 1024;
/// Longest stderr line logged as one event.
const MAX_STDERR_LINE: usize = 4096;

/// A request routed to its program, taking its body.
pub struct Job {
    pub(super) id: RequestId,
    pub(super) app: Arc<App>,
    pub(super) vars: MetaVars,
    pub(super) head_only: bool,
    pub(super) body: BodyBuilder,
    pub(super) watchdog: Watchdog,
}

impl fastcgi::Job for Job {
    fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes> {
        self.body.push(chunk).map_err(|e| self.refuse(&e))
    }

    fn run(self, out: Stdout) -> Ending {
        let Job {
            id,
            app,
            mut vars,
            head_only,
            body,
            watchdog,
        } = self;
        let body = match body.finish() {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(req = %id, "{e}");
                return Ending::Complete {
                    tail: error_page(500),
                    app_status: 0,
                };
            }
        };
        for (name, value) in &app.guest.env {
            vars.set(name, value.clone());
        }
        let env = vars.to_env(app.guest.pass_http_proxy);
        let exchange = Exchange {
            stdin: body,
            run: watchdog.running(out.peer()),
            out: ResponseWriter::new(out, head_only),
            stderr: StderrLog::new(app.name.clone(), id),
        };
        let (outcome, exchange) = app.program.run(app.args.clone(), env, exchange);
        let Exchange { out, stderr, run, .. } = exchange;
        stderr.finish();
        // Once the request is given up, whatever the guest did after that
        // is for nobody.
        let outcome = if run.stopped() { Outcome::Stopped } else { outcome };
        finish(out, outcome, &app.name, id)
    }
}

impl Job {
    /// The answer for a body that cannot be kept.
    fn refuse(&self, e: &body::Error) -> Bytes {
        match e {
            body::Error::TooLarge => error_page(413),
            body::Error::Spool(_) => {
                tracing::error!(req = %self.id, "{e}");
                error_page(500)
            }
        }
    }
}

/// Ends the response according to how the guest ended.
fn finish(out: ResponseWriter<Stdout>, outcome: Outcome, app: &str, req: RequestId) -> Ending {
    match (out.head_error(), outcome) {
        (_, Outcome::Stopped) => {
            tracing::info!(app, req = %req, "the web server gave up on the request; guest stopped");
            Ending::Complete {
                tail: Bytes::new(),
                app_status: ABORTED_APP_STATUS,
            }
        }
        (None, Outcome::Exit(code)) => out.end(code),
        (None, Outcome::Trap(why)) => {
            // The head is out: the only honest signal left is to cut the
            // response short, so after what the guest wrote the connection
            // closes without END_REQUEST.
            tracing::warn!(app, req = %req, "guest trapped after its headers, response truncated: {why}");
            out.cut()
        }
        (Some(bad), Outcome::Exit(code)) => {
            tracing::warn!(app, req = %req, exit = code, "bad CGI response, answering 502: {bad}");
            out.end_with_error(502, code)
        }
        (Some(_), Outcome::Trap(why)) => {
            tracing::warn!(app, req = %req, "guest trapped, answering 502: {why}");
            out.end_with_error(502, TRAP_APP_STATUS)
        }
    }
}

/// Guest stderr, logged a line at a time with the app and request id.
struct StderrLog {
    app: Arc<str>,
    req: RequestId,
    line: Vec<u8>,
    total: usize,
}

impl StderrLog {
    fn new(app: Arc<str>, req: RequestId) -> Self {
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
                req = %self.req,
                "guest stderr reached {MAX_STDERR} bytes; the rest is not logged"
            );
        }
    }

    fn emit(&mut self) {
        if !self.line.is_empty() {
            tracing::warn!(
                app = &*self.app,
                req = %self.req,
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
                req = %self.req,
                "guest wrote {} stderr bytes in all",
                self.total
            );
        }
    }
}

/// The guest's three streams, and its run as the watchdog sees it.
struct Exchange {
    stdin: Body,
    out: ResponseWriter<Stdout>,
    stderr: StderrLog,
    run: Run,
}

impl Stdio for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.run.stopped() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        self.stdin.read(buf)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.run.stopped() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        self.out.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn log(&mut self, data: &[u8]) {
        self.stderr.write(data);
    }

    fn sleep(&mut self, wait: Duration) -> bool {
        self.run.sleep(wait)
    }
}
