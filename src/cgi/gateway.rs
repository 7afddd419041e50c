//! The CGI gateway: takes a FastCGI request whose params are complete,
//! checks what can be checked before its body arrives, picks its program
//! (RFC 3875 §3.3) and makes the [`CgiJob`] that takes the body and runs it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::fastcgi::{self, Params, Start};
use crate::sandbox::Engine;
use crate::status::{NO_APP, Stats};

use super::Watch;
use super::access::{Access, RequestId};
use super::body::BodyBuilder;
use super::env::MetaVars;
use super::job::CgiJob;
use super::response::error_page;
use super::router::{Route, Router};

/// The worker's FastCGI handler: requests in, [`CgiJob`]s out.
pub struct Gateway {
    router: Router,
    engine: Engine,
    watch: Rc<dyn Watch>,
    access_log: bool,
    stats: Arc<Stats>,
    /// Requests so far: request ids.
    served: Cell<u64>,
}

impl Gateway {
    /// A gateway whose guests `watch` watches, counting its requests in
    /// `stats`, and logging each in the access log if `access_log`.
    pub fn new(router: Router, engine: Engine, watch: Rc<dyn Watch>, access_log: bool, stats: Arc<Stats>) -> Gateway {
        Gateway {
            router,
            engine,
            watch,
            access_log,
            stats,
            served: Cell::new(0),
        }
    }
}

impl fastcgi::Handler for Gateway {
    type Job = CgiJob;

    fn start(&self, params: Params) -> Start<CgiJob> {
        self.served.set(self.served.get() + 1);
        let access = Access {
            id: RequestId::new(self.served.get()),
            started: Instant::now(),
            logged: self.access_log,
        };
        let id = access.id;
        let respond = |app: &str, code| {
            self.stats.answered(app, code);
            let page = error_page(code);
            access.log(app, None, Some(code), page.len() as u64, &0);
            Start::Respond(page)
        };
        let mut vars = MetaVars::from_params(params);
        let Some(method) = vars.get("REQUEST_METHOD") else {
            return respond(NO_APP, 400);
        };
        let head_only = method == b"HEAD";
        let Ok(content_length) = content_length(&vars) else {
            return respond(NO_APP, 400);
        };
        let app = match self.router.route(&mut vars) {
            Route::App(app) => app,
            Route::CgiBin => match self.router.resolve_cgi_bin(&self.engine, &mut vars) {
                Ok(app) => app,
                Err(refusal) => {
                    tracing::info!(req = %id, ?refusal, "cgi-bin request refused");
                    return respond(NO_APP, refusal as u16);
                }
            },
            Route::NotFound => return respond(NO_APP, 404),
        };
        let Ok(body) = BodyBuilder::new(content_length, app.guest.limits.max_body) else {
            return respond(&app.name, 413);
        };
        Start::Run(CgiJob::new(
            access,
            app,
            vars,
            head_only,
            body,
            self.watch.clone(),
            self.stats.in_flight(),
        ))
    }

    fn connected(&self) {
        self.stats.connection();
    }

    fn params_too_large(&self) -> Bytes {
        self.stats.answered(NO_APP, 431);
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
