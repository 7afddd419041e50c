//! The CGI gateway: takes a FastCGI request, picks its program, builds its
//! environment and runs it on a worker thread with its stdin, stdout and
//! stderr wired to the connection and the log.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use crate::fastcgi::{self, Response};
use crate::sandbox::{Engine, Outcome, Stdio};

use super::body::{self, Body, MAX_BODY};
use super::env::MetaVars;
use super::response::{ResponseWriter, error_page};
use super::script::{App, Route, Router};

/// appStatus reported when a guest trapped (as a shell reports `abort()`).
pub const TRAP_APP_STATUS: u32 = 134;
/// Replies queued between a guest and its connection.
const REPLY_QUEUE: usize = 4;
/// Guest stderr bytes logged per request; the rest is counted, not logged.
const MAX_STDERR: usize = 64 * 1024;
/// Longest stderr line logged as one event.
const MAX_STDERR_LINE: usize = 4096;

pub struct Gateway {
    router: Arc<Router>,
    engine: Engine,
    /// One permit per guest instance allowed to run at once.
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

impl Gateway {
    pub fn new(engine: Engine, router: Router, workers: usize) -> Gateway {
        Gateway {
            router: Arc::new(router),
            engine,
            slots: Arc::new(Semaphore::new(workers)),
            next_id: AtomicU64::new(1),
        }
    }

    fn complete(code: u16) -> Response {
        Response::Complete {
            stdout: error_page(code),
            app_status: 0,
        }
    }
}

/// What runs a request, once picked.
enum Target {
    App(Arc<App>),
    CgiBin,
}

impl fastcgi::Handler for Gateway {
    fn start(&self, request: fastcgi::Request) -> Response {
        let mut vars = MetaVars::from_params(request.params);
        let Some(method) = vars.get("REQUEST_METHOD") else {
            return Self::complete(400);
        };
        let head_only = method == b"HEAD";
        let Ok(content_length) = content_length(&vars) else {
            return Self::complete(400);
        };
        let target = match self.router.route(&mut vars) {
            Route::App(app) => Target::App(app),
            Route::CgiBin => Target::CgiBin,
            Route::NotFound => return Self::complete(404),
        };
        if content_length.is_some_and(|len| len > MAX_BODY) {
            return Self::complete(413);
        }
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let job = Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            target,
            vars,
            router: self.router.clone(),
            engine: self.engine.clone(),
            out: ResponseWriter::new(tx, head_only),
        };
        tokio::spawn(job.start(request.stdin, content_length, self.slots.clone()));
        Response::Streaming(rx)
    }

    fn params_too_large(&self) -> Response {
        Self::complete(431)
    }
}

/// CONTENT_LENGTH, which must be 1*digit when present (RFC 3875 §4.1.2).
fn content_length(vars: &MetaVars) -> Result<Option<u64>, ()> {
    let Some(len) = vars.get("CONTENT_LENGTH") else {
        return Ok(None);
    };
    std::str::from_utf8(len)
        .ok()
        .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse().ok())
        .map(Some)
        .ok_or(())
}

/// One request on its way to a worker thread.
struct Job {
    id: u64,
    target: Target,
    vars: MetaVars,
    router: Arc<Router>,
    engine: Engine,
    out: ResponseWriter,
}

impl Job {
    /// Reads the whole body, waits for a worker slot and runs the guest on a
    /// worker thread.
    async fn start(self, stdin: mpsc::Receiver<Bytes>, content_length: Option<u64>, slots: Arc<Semaphore>) {
        let body = match Body::collect(stdin, content_length).await {
            Ok(body) => body,
            Err(e) => {
                let code = match e {
                    body::Error::TooLarge => 413,
                    body::Error::Spool(_) => {
                        tracing::error!(req = self.id, "{e}");
                        500
                    }
                };
                return self.out.end_with_error_async(code).await;
            }
        };
        let Ok(permit) = slots.acquire_owned().await else {
            return;
        };
        // The client went away (nginx closed the connection) while the body
        // arrived or the request waited for a slot: run nothing for nobody.
        if self.out.is_closed() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            self.run(body);
            drop(permit);
        });
    }

    fn run(mut self, body: Body) {
        let app = match self.target {
            Target::App(app) => app,
            Target::CgiBin => match self.router.resolve_cgi_bin(&self.engine, &mut self.vars) {
                Ok(app) => app,
                Err(refusal) => {
                    tracing::info!(req = self.id, ?refusal, "cgi-bin request refused");
                    return self.out.end_with_error(refusal as u16, 0);
                }
            },
        };
        for (name, value) in &app.guest.env {
            self.vars.set(name, value.clone());
        }
        let env = self.vars.to_env(app.guest.pass_http_proxy);
        let exchange = Exchange {
            stdin: body,
            out: self.out,
            stderr: StderrLog::new(app.name.clone(), self.id),
        };
        let (outcome, exchange) = app.program.run(app.args.clone(), env, exchange);
        exchange.stderr.finish();
        finish(exchange.out, outcome, &app.name, self.id);
    }
}

/// Ends the response according to how the guest ended.
fn finish(out: ResponseWriter, outcome: Outcome, app: &str, req: u64) {
    match (out.head_error(), outcome) {
        (None, Outcome::Exit(code)) => out.end(code),
        (None, Outcome::Trap(why)) => {
            // The head is out: the only honest signal left is to cut the
            // response short, so after what the guest wrote the connection
            // closes without END_REQUEST.
            let mut out = out;
            let _ = out.flush();
            tracing::warn!(app, req, "guest trapped after its headers, response truncated: {why}");
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
struct Exchange {
    stdin: Body,
    out: ResponseWriter,
    stderr: StderrLog,
}

impl Stdio for Exchange {
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
