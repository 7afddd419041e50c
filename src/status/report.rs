//! A worker's reports to the supervisor: a snapshot of its [`Stats`], one
//! JSON line on the pipe that is its stdout, once a second when they
//! changed and once more when it stops.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::stats::{Stats, WorkerStats};

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
