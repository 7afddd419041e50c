//! The access log: a request's id, and the line that says how it ended.

use std::fmt;
use std::time::{Duration, Instant};

/// A request's id in the log: the serving process and its request count.
#[derive(Debug, Clone, Copy)]
pub struct RequestId {
    pid: u32,
    seq: u64,
}

impl RequestId {
    /// The `seq`th request of this process.
    pub fn new(seq: u64) -> RequestId {
        RequestId {
            pid: std::process::id(),
            seq,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pid, self.seq)
    }
}

/// A request as the access log follows it: its id, when its PARAMS were
/// complete, and whether its end is logged.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub id: RequestId,
    pub started: Instant,
    pub logged: bool,
}

impl Access {
    /// The access-log line, if the request is logged: app, request, status
    /// (`-` if none was sent: the web server gave up first), duration,
    /// restore time, response bytes and appStatus (`cut` for a response
    /// cut short).
    pub fn log(
        &self,
        app: &str,
        restore: Option<Duration>,
        status: Option<u16>,
        bytes: u64,
        exit: &dyn tracing::Value,
    ) {
        if !self.logged {
            return;
        }
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        // Microseconds from the run's start to a live instance; `-` if none.
        let restore_us = restore.map_or_else(|| "-".to_owned(), |r| r.as_micros().to_string());
        tracing::info!(
            target: "wcgid::access",
            app,
            req = %self.id,
            status = status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            ms = format_args!("{ms:.2}"),
            restore_us,
            bytes,
            exit,
        );
    }
}
