//! The admin socket's responder: FastCGI, like the main socket, so that
//! nginx can publish the pages (`fastcgi_pass` to it) and `wcgid status`
//! or `cgi-fcgi` can read them from a shell, as with php-fpm's status
//! page. Served by the supervisor, not the workers, so that a saturated
//! pool cannot starve it.
//!
//! The page is chosen by the last segment of `SCRIPT_NAME` (else of
//! `REQUEST_URI`'s path): `status` (text; `?json` for JSON), `metrics`
//! (Prometheus) and `ping` (`pong`, or 503 when no worker is running).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::{TcpStream, UnixStream};

use crate::cgi::response::error_page;
use crate::config::Listen;
use crate::fastcgi::{self, Ending, Handler, Params, Start, Stdout, client};

use super::board::Board;
use super::render;

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
        let board = || self.board.lock().unwrap_or_else(|p| p.into_inner());
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

/// The largest page `wcgid status` reads.
const MAX_PAGE: usize = 64 << 20;

/// Asks the admin socket at `listen` for `page` (`status`, `metrics` or
/// `ping`) with `query`, as `wcgid status` does: its status code and body.
pub fn fetch(listen: &Listen, page: &str, query: &str) -> anyhow::Result<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let script = format!("/{page}");
    let params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", script.as_str()),
        ("QUERY_STRING", query),
    ];
    let response = runtime.block_on(async {
        let exchange = async {
            match listen {
                Listen::Unix(path) => client::request(UnixStream::connect(path).await?, &params, MAX_PAGE).await,
                Listen::Tcp(addr) => client::request(TcpStream::connect(addr).await?, &params, MAX_PAGE).await,
            }
        };
        tokio::time::timeout(FETCH_WITHIN, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{listen} did not answer within {FETCH_WITHIN:?}"))?
            .map_err(|e| anyhow::anyhow!("{listen}: {e}"))
    })?;
    let stdout = String::from_utf8_lossy(&response.stdout);
    let (head, body) = stdout.split_once("\r\n\r\n").unwrap_or(("", &stdout));
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .and_then(|s| s.get(..3)?.parse().ok())
        .unwrap_or(200);
    Ok((status, body.to_owned()))
}

/// How long `wcgid status` waits for its answer.
const FETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
