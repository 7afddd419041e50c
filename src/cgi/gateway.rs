//! The CGI gateway: takes a FastCGI request whose params are complete,
//! checks what can be checked before its body arrives, picks its program
//! (RFC 3875 §3.3) and makes the [`Job`] that takes the body and runs it.

use std::cell::Cell;
use std::fmt;

use bytes::Bytes;

use std::time::Instant;

use crate::fastcgi::{self, Ending, Params, Start};
use crate::sandbox::Engine;

use super::body::BodyBuilder;
use super::env::MetaVars;
use super::job::{Job, log_access};
use super::response::error_page;
use super::script::{Route, Router};
use super::watchdog::Watchdog;

pub struct Gateway {
    router: Router,
    engine: Engine,
    watchdog: Watchdog,
    access_log: bool,
    /// This process's id and its requests so far: request ids.
    pid: u32,
    served: Cell<u64>,
}

impl Gateway {
    /// A gateway logging each request in the access log if `access_log`.
    pub fn new(router: Router, engine: Engine, watchdog: Watchdog, access_log: bool) -> Gateway {
        Gateway {
            router,
            engine,
            watchdog,
            access_log,
            pid: std::process::id(),
            served: Cell::new(0),
        }
    }
}

/// A request's id in the log: the serving process and its request count.
#[derive(Debug, Clone, Copy)]
pub struct RequestId {
    pid: u32,
    seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pid, self.seq)
    }
}

impl fastcgi::Handler for Gateway {
    type Job = Job;

    fn start(&self, params: Params) -> Start<Job> {
        let started = Instant::now();
        self.served.set(self.served.get() + 1);
        let id = RequestId {
            pid: self.pid,
            seq: self.served.get(),
        };
        let respond = |code| {
            let page = error_page(code);
            if self.access_log {
                let ending = Ending::Complete {
                    tail: page.clone(),
                    app_status: 0,
                };
                log_access("-", id, started, None, None, 0, &ending);
            }
            Start::Respond(page)
        };
        let mut vars = MetaVars::from_params(params);
        let Some(method) = vars.get("REQUEST_METHOD") else {
            return respond(400);
        };
        let head_only = method == b"HEAD";
        let Ok(content_length) = content_length(&vars) else {
            return respond(400);
        };
        let app = match self.router.route(&mut vars) {
            Route::App(app) => app,
            Route::CgiBin => match self.router.resolve_cgi_bin(&self.engine, &mut vars) {
                Ok(app) => app,
                Err(refusal) => {
                    tracing::info!(req = %id, ?refusal, "cgi-bin request refused");
                    return respond(refusal as u16);
                }
            },
            Route::NotFound => return respond(404),
        };
        let Ok(body) = BodyBuilder::new(content_length, app.guest.limits.max_body) else {
            return respond(413);
        };
        Start::Run(Job {
            id,
            app,
            vars,
            head_only,
            body,
            watchdog: self.watchdog.clone(),
            started,
            access_log: self.access_log,
        })
    }

    fn params_too_large(&self) -> Bytes {
        error_page(431)
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
