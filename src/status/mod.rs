//! Status and metrics: what the workers count, how the supervisor adds it
//! up, and the pages the admin socket serves.
//!
//! Each worker counts its own requests ([`Stats`]: one uncontended lock per
//! request on its serving thread) and a reporter thread writes a snapshot of
//! them, one JSON line, to the pipe the supervisor reads (its stdout), once a
//! second when they changed and once more when the worker stops. The
//! supervisor keeps the latest report of each worker, and adds the counts
//! of workers that are gone to a retired total, so that counters never go
//! back ([`Board`]). Gauges (in flight, queued, busy) are therefore up to a
//! second old, and a worker that crashes loses at most its last second of
//! counts.
//!
//! [`render`] writes the board as the status page (text and JSON) and
//! Prometheus metrics, which the supervisor's admin socket serves; [`log`]
//! sets up the log lines every process writes.

mod board;
pub mod log;
pub mod render;
mod stats;

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

pub use board::Board;
pub use stats::{Finished, InFlight, NO_APP, Stats, WorkerStats};

/// How often a worker reports.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A worker's counts and the pipe they are reported on.
pub struct Reporter {
    stats: Arc<Stats>,
    /// The pipe, and the last report written to it.
    pipe: Mutex<(File, String)>,
}

impl Reporter {
    /// Reports `stats` on `pipe` from a thread of its own, which ends when
    /// the reporter is dropped.
    pub fn start(stats: Arc<Stats>, pipe: File) -> std::io::Result<Arc<Reporter>> {
        let reporter = Arc::new(Reporter {
            stats,
            pipe: Mutex::new((pipe, String::new())),
        });
        let weak = Arc::downgrade(&reporter);
        std::thread::Builder::new()
            .name("wcgid-report".into())
            .spawn(move || report_while(&weak))?;
        Ok(reporter)
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Writes a report if the counts changed since the last one.
    pub fn send(&self) {
        let mut report = serde_json::to_string(&self.stats.snapshot()).expect("plain data serializes");
        let mut pipe = self.pipe.lock();
        if report != pipe.1 {
            report.push('\n');
            // The supervisor is gone if this fails, and the worker with it.
            let _ = pipe.0.write_all(report.as_bytes());
            report.pop();
            pipe.1 = report;
        }
    }
}

fn report_while(reporter: &Weak<Reporter>) {
    loop {
        std::thread::sleep(REPORT_EVERY);
        match reporter.upgrade() {
            Some(reporter) => reporter.send(),
            None => return,
        }
    }
}

/// A worker's report, as the supervisor reads it; `None` for a line that
/// is not one (logged).
pub fn parse_report(line: &str) -> Option<WorkerStats> {
    serde_json::from_str(line)
        .inspect_err(|e| tracing::warn!("unreadable worker report: {e}"))
        .ok()
}
