//! The admin socket's responder: FastCGI, like the main socket, so that
//! nginx can publish the pages (`fastcgi_pass` to it) and `wcgid status`
//! or `cgi-fcgi` can read them from a shell, as with php-fpm's status
//! page. Served by the supervisor, not the workers, so that a saturated
//! pool cannot starve it.
//!
//! The page is chosen by the last segment of `SCRIPT_NAME` (else of
//! `REQUEST_URI`'s path): `status` (text; `?json` for JSON), `metrics`
//! (Prometheus) and `ping` (`pong`, or 503 when no worker is running).

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::cgi::response::error_page;
use crate::fastcgi::{self, Ending, Handler, Params, Start, Stdout};
use crate::status::{Board, render};

/// The admin socket's FastCGI handler, answering from the workers' reports.
pub struct Admin {
    board: Arc<Mutex<Board>>,
}

impl Admin {
    pub fn new(board: Arc<Mutex<Board>>) -> Admin {
        Admin { board }
    }

    fn page(&self, params: &Params) -> Bytes {
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| *n == name.as_bytes())
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let method = get("REQUEST_METHOD").unwrap_or("GET");
        if method != "GET" && method != "HEAD" {
            return error_page(405);
        }
        let path = get("SCRIPT_NAME")
            .filter(|p| !p.is_empty())
            .or_else(|| get("REQUEST_URI").map(|u| u.split('?').next().unwrap_or(u)))
            .unwrap_or("");
        let query = get("QUERY_STRING").unwrap_or("");
        let board = || self.board.lock();
        let view = || board().view();
        let (content_type, body) = match path.rsplit('/').next().unwrap_or("") {
            "ping" if !board().serving() => return error_page(503),
            "ping" => ("text/plain", "pong\n".to_owned()),
            "status" if query.split('&').any(|q| q == "json") => (
                "application/json",
                serde_json::to_string(&view()).expect("plain data serializes") + "\n",
            ),
            "status" => ("text/plain; charset=utf-8", render::text(&view())),
            "metrics" => ("text/plain; version=0.0.4; charset=utf-8", render::prometheus(&view())),
            _ => return error_page(404),
        };
        let mut page = format!("Status: 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\n\r\n");
        if method == "GET" {
            page.push_str(&body);
        }
        Bytes::from(page)
    }
}

/// Admin requests are answered at once: they never make a job.
pub enum NoJob {}

impl fastcgi::Job for NoJob {
    fn stdin(&mut self, _: Bytes) -> Result<(), Bytes> {
        match *self {}
    }

    fn run(self, _: Stdout) -> Ending {
        match self {}
    }
}

impl Handler for Admin {
    type Job = NoJob;

    fn start(&self, params: Params) -> Start<NoJob> {
        Start::Respond(self.page(&params))
    }

    fn params_too_large(&self) -> Bytes {
        error_page(431)
    }
}
