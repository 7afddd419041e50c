//! One request's work: its body collected, its guest run in the sandbox
//! with the body as stdin, its output checked and sent as the response, its
//! stderr logged, and the guest stopped if the web server gives up on it.

use std::io::{self, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::fastcgi::{self, ABORTED_APP_STATUS, Ending, Stdout};
use crate::sandbox::{Interrupt, Outcome, Stdio};
use crate::status::{Finished, InFlight};

use super::access::{Access, RequestId};
use super::body::{self, Body, BodyBuilder};
use super::env::MetaVars;
use super::response::{ResponseWriter, error_page};
use super::router::App;
use super::{Run, Stop, Watch};

/// appStatus reported when a guest trapped (as a shell reports `abort()`).
pub const TRAP_APP_STATUS: u32 = 134;
/// appStatus reported when a guest was stopped at its timeout (as
/// timeout(1) reports).
pub const TIMEOUT_APP_STATUS: u32 = 124;
/// Longest stderr line logged as one event.
const MAX_STDERR_LINE: usize = 4096;

/// A request routed to its program, taking its body.
pub struct CgiJob {
    /// Its id, and its line in the access log.
    access: Access,
    /// The program that answers it.
    app: Arc<App>,
    /// Its environment, the app's own variables still to be added.
    vars: MetaVars,
    /// A HEAD request: the guest's body is not sent.
    head_only: bool,
    /// Takes STDIN as it arrives.
    body: BodyBuilder,
    /// Stops the guest when the request is given up on or its time is up.
    watch: Rc<dyn Watch>,
    /// Counts the request in flight while it lives, and its end.
    in_flight: InFlight,
}

impl CgiJob {
    /// The job of a request routed to its app (see the fields).
    pub fn new(
        access: Access,
        app: Arc<App>,
        vars: MetaVars,
        head_only: bool,
        body: BodyBuilder,
        watch: Rc<dyn Watch>,
        in_flight: InFlight,
    ) -> CgiJob {
        CgiJob {
            access,
            app,
            vars,
            head_only,
            body,
            watch,
            in_flight,
        }
    }

    /// The answer for a body that cannot be kept.
    fn refuse(&self, e: &body::Error) -> (u16, Bytes) {
        let code = match e {
            body::Error::TooLarge => 413,
            body::Error::Spool(_) => {
                tracing::error!(req = %self.access.id, "{e}");
                500
            }
        };
        (code, error_page(code))
    }
}

impl fastcgi::Job for CgiJob {
    fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes> {
        self.body.push(chunk).map_err(|e| {
            let (code, page) = self.refuse(&e);
            self.in_flight.stats().answered(&self.app.name, code);
            page
        })
    }

    fn run(self, mut out: Stdout) -> Ending {
        let CgiJob {
            access,
            app,
            mut vars,
            head_only,
            body,
            watch,
            in_flight,
        } = self;
        let id = access.id;
        let body = match body.finish() {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(req = %id, "{e}");
                in_flight.stats().answered(&app.name, 500);
                return Ending::Complete {
                    tail: error_page(500),
                    app_status: 0,
                };
            }
        };
        for (name, value) in &app.env {
            vars.set(name, value.clone());
        }
        let env = vars.to_env(app.guest.pass_http_proxy);
        let limits = app.guest.limits;
        // A client that stops reading holds the guest no longer than this.
        let began = Instant::now();
        let deadline = began + limits.timeout;
        out.set_deadline(deadline);
        let stats = in_flight.stats();
        stats.running(&app.name);
        let exchange = Exchange {
            began,
            restore: None,
            memory: 0,
            stdin: body,
            run: watch.running(out.peer(), deadline, app.name.clone()),
            out: ResponseWriter::new(out, head_only),
            output_left: limits.max_output,
            over_limit: false,
            stderr: StderrLog::new(app.name.clone(), id, limits.max_stderr),
        };
        let (outcome, exchange) = app.program.run(app.args.clone(), env, exchange);
        let Exchange {
            out,
            stderr,
            run,
            over_limit,
            restore,
            memory,
            ..
        } = exchange;
        stderr.finish();
        // Once the guest is stopped, whatever it did after that is for
        // nobody; past its output limit, its response is cut.
        let ended = match (run.stopped(), over_limit) {
            (Some(stop), _) => Ended::Stopped(stop),
            (None, true) => Ended::OutputLimit,
            (None, false) => Ended::Guest(outcome),
        };
        let (timeout, trap) = match &ended {
            Ended::Stopped(Stop::Timeout) | Ended::Guest(Outcome::OutOfFuel) => (true, false),
            Ended::Guest(Outcome::Trap(_)) => (false, true),
            _ => (false, false),
        };
        let (head_status, sent, pending) = out.summary();
        let ending = finish(out, ended, &app.name, id);
        let (status, bytes) = match &ending {
            // A short response's header block, or a gateway page, is still
            // in the tail: its Status line comes first.
            Ending::Complete { tail, .. } => (
                tail.strip_prefix(b"Status: ")
                    .and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok()?.parse::<u16>().ok())
                    .or(head_status),
                sent + tail.len() as u64,
            ),
            // A cut response went out with what was pending.
            Ending::Cut => (head_status, sent + pending),
        };
        stats.finished(&Finished {
            app: &app.name,
            status,
            restore,
            run: began.elapsed().saturating_sub(restore.unwrap_or_default()),
            total: access.started.elapsed(),
            memory,
            timeout,
            trap,
        });
        let exit: &dyn tracing::Value = match &ending {
            Ending::Complete { app_status, .. } => app_status,
            Ending::Cut => &"cut",
        };
        access.log(&app.name, restore, status, bytes, exit);
        ending
    }
}

/// How a run ended, as far as the response is concerned.
enum Ended {
    Guest(Outcome),
    Stopped(Stop),
    OutputLimit,
}

/// Ends the response according to how the guest ended.
fn finish(out: ResponseWriter<Stdout>, ended: Ended, app: &str, req: RequestId) -> Ending {
    let outcome = match ended {
        Ended::Guest(outcome) => outcome,
        Ended::Stopped(Stop::Gone) => Outcome::Stopped,
        Ended::Stopped(Stop::Timeout) => {
            tracing::warn!(app, req = %req, "guest stopped at its timeout");
            return cut_short(out, 504, TIMEOUT_APP_STATUS);
        }
        Ended::OutputLimit => {
            tracing::warn!(app, req = %req, "guest output reached limits.max_output; response truncated");
            return cut_short(out, 502, 0);
        }
    };
    match (out.head_error(), outcome) {
        (_, Outcome::Stopped) => {
            tracing::info!(app, req = %req, "the web server gave up on the request; guest stopped");
            Ending::Complete {
                tail: Bytes::new(),
                app_status: ABORTED_APP_STATUS,
            }
        }
        (_, Outcome::OutOfFuel) => {
            tracing::warn!(app, req = %req, "guest spent its fuel (limits.fuel) and was stopped");
            cut_short(out, 504, TIMEOUT_APP_STATUS)
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

/// Ends a response the guest could not finish: with the gateway's `code`
/// page while no header block went out, else cut short.
fn cut_short(out: ResponseWriter<Stdout>, code: u16, app_status: u32) -> Ending {
    match out.head_error() {
        Some(_) => out.end_with_error(code, app_status),
        None => out.cut(),
    }
}

/// Guest stderr, logged a line at a time with the app and request id.
struct StderrLog {
    app: Arc<str>,
    req: RequestId,
    line: Vec<u8>,
    total: usize,
    /// Bytes logged at most; the rest is counted.
    max: usize,
}

impl StderrLog {
    fn new(app: Arc<str>, req: RequestId, max: usize) -> Self {
        StderrLog {
            app,
            req,
            line: Vec::new(),
            total: 0,
            max,
        }
    }

    fn write(&mut self, data: &[u8]) {
        let before = self.total;
        self.total = self.total.saturating_add(data.len());
        let room = self.max.saturating_sub(before);
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
        if before < self.max && self.total >= self.max {
            self.emit();
            tracing::warn!(
                app = &*self.app,
                req = %self.req,
                "guest stderr reached {} bytes; the rest is not logged",
                self.max
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
        if self.total > self.max {
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
    /// When the run began, and how long until the instance was live.
    began: Instant,
    restore: Option<Duration>,
    /// The size the guest's memory reached, in bytes.
    memory: u64,
    stdin: Body,
    out: ResponseWriter<Stdout>,
    /// Output bytes the guest may still write (`limits.max_output`).
    output_left: u64,
    /// It tried to write more.
    over_limit: bool,
    stderr: StderrLog,
    run: Box<dyn Run>,
}

impl Stdio for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.run.stopped().is_some() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        self.stdin.read(buf)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.run.stopped().is_some() || self.over_limit {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        let allowed = usize::try_from(self.output_left).map_or(data.len(), |left| left.min(data.len()));
        self.output_left -= allowed as u64;
        self.out.write(&data[..allowed])?;
        if allowed < data.len() {
            self.over_limit = true;
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        Ok(())
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

    fn instantiated(&mut self, interrupt: Option<&Interrupt>) {
        self.restore = Some(self.began.elapsed());
        if let Some(interrupt) = interrupt {
            self.run.interruptible(interrupt);
        }
    }

    fn ended(&mut self, memory: u64) {
        self.memory = memory;
    }
}
