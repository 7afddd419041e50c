//! The CGI gateway in the daemon: takes a FastCGI request, checks what can
//! be checked without running anything, picks its program by route, reads
//! its body, and hands it to a worker process (see [`crate::worker`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::fastcgi::{self, Reply, Response};
use crate::worker::Pool;
use crate::worker::protocol::{JobSpec, Target};

use super::body::{self, Body, MAX_BODY};
use super::env::MetaVars;
use super::response::error_page;
use super::script::{Route, Routes};

/// Replies queued between a worker and its connection.
const REPLY_QUEUE: usize = 4;

pub struct Gateway {
    routes: Routes,
    pool: Arc<Pool>,
    next_id: AtomicU64,
}

impl Gateway {
    pub fn new(routes: Routes, pool: Arc<Pool>) -> Gateway {
        Gateway {
            routes,
            pool,
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
        let target = match self.routes.route(&mut vars) {
            Route::App(name) => Target::App(name.to_string()),
            Route::CgiBin => Target::CgiBin,
            Route::NotFound => return Self::complete(404),
        };
        if content_length.is_some_and(|len| len > MAX_BODY) {
            return Self::complete(413);
        }
        let spec = JobSpec {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            head_only,
            target,
            vars: vars.into_pairs(),
        };
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            match Body::collect(request.stdin, content_length).await {
                Ok(body) => pool.run(spec, body, tx).await,
                Err(e) => {
                    let code = match e {
                        body::Error::TooLarge => 413,
                        body::Error::Spool(_) => {
                            tracing::error!(req = spec.id, "{e}");
                            500
                        }
                    };
                    let end = Reply::End {
                        stdout: error_page(code),
                        app_status: 0,
                    };
                    let _ = tx.send(end).await;
                }
            }
        });
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
