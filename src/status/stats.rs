//! What a worker counts, and the snapshot of it the worker reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency histograms' buckets, in µs: from a
/// snapshot restore's tens of µs to a run's default timeout.
pub const BOUNDS_US: [u64; 16] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
    30_000_000,
];

/// Apps counted apart in one worker; requests of further apps (many
/// cgi-bin scripts) are counted under [`OTHER_APPS`], so that the metrics
/// stay bounded whatever the cgi-bin directory holds.
const MAX_APPS: usize = 256;
pub const OTHER_APPS: &str = "(other)";
/// The app of requests refused before they reached one.
pub const NO_APP: &str = "-";

/// Latencies: counts per bucket of [`BOUNDS_US`] (not cumulative; the last
/// is above every bound) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One app's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStats {
    /// Requests by the status of their response; `none` when the web
    /// server gave up before one was sent.
    pub responses: BTreeMap<String, u64>,
    /// Guests stopped at their timeout (or out of fuel), and guests that
    /// trapped.
    pub timeouts: u64,
    pub traps: u64,
    /// From the run's start to a live instance; the guest's run after that;
    /// the whole request, from its complete PARAMS to its end.
    pub restore: Histogram,
    pub run: Histogram,
    pub total: Histogram,
    /// The largest linear memory a run of the app ended with, in bytes.
    pub memory_high_water: u64,
}

impl AppStats {
    pub fn requests(&self) -> u64 {
        self.responses.values().sum()
    }

    pub fn add(&mut self, other: &AppStats) {
        for (status, n) in &other.responses {
            *self.responses.entry(status.clone()).or_default() += n;
        }
        self.timeouts += other.timeouts;
        self.traps += other.traps;
        self.restore.add(&other.restore);
        self.run.add(&other.run);
        self.total.add(&other.total);
        self.memory_high_water = self.memory_high_water.max(other.memory_high_water);
    }
}

/// A worker's counts since it started, as reported to the supervisor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// FastCGI connections accepted.
    pub connections: u64,
    /// Requests answered 503 (FCGI_OVERLOADED) because they waited past
    /// `server.queue_timeout`.
    pub rejected: u64,
    /// Connections handed to another worker because a request started on
    /// them while this worker ran a long guest.
    #[serde(default)]
    pub handed_over: u64,
    /// Requests whose PARAMS are complete and whose response is not.
    pub in_flight: u64,
    /// Complete requests seen waiting for this worker, busy with a long run.
    pub queued: u64,
    /// The guest running now, if any.
    pub running: Option<Running>,
    pub apps: BTreeMap<String, AppStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub app: String,
    /// Since when, in ms since the Unix epoch.
    pub since_ms: u64,
}

impl WorkerStats {
    /// Adds `other`'s counters (not its gauges) to these.
    pub fn add_counts(&mut self, other: &WorkerStats) {
        self.connections += other.connections;
        self.rejected += other.rejected;
        self.handed_over += other.handed_over;
        for (name, app) in &other.apps {
            self.apps.entry(name.clone()).or_default().add(app);
        }
    }
}

/// How a run ended, for the counts.
pub struct Finished<'a> {
    pub app: &'a str,
    pub status: Option<u16>,
    pub restore: Option<Duration>,
    pub run: Duration,
    pub total: Duration,
    pub memory: u64,
    pub timeout: bool,
    pub trap: bool,
}

/// A worker's counters. The serving thread records each request with one
/// uncontended lock; the reporter thread takes [`Stats::snapshot`]s.
#[derive(Default)]
pub struct Stats {
    counts: Mutex<WorkerStats>,
    in_flight: AtomicU64,
    queued: AtomicU64,
}

impl Stats {
    pub fn connection(&self) {
        self.counts.lock().connections += 1;
    }

    /// A request answered without running its guest: a 413 for `app`, or
    /// for [`NO_APP`] a 400, 404, 431, a refused cgi-bin script...
    pub fn answered(&self, app_name: &str, status: u16) {
        let mut counts = self.counts.lock();
        *app(&mut counts, app_name)
            .responses
            .entry(status.to_string())
            .or_default() += 1;
    }

    /// `n` requests answered 503 (FCGI_OVERLOADED) from the queue.
    pub fn rejected(&self, n: usize) {
        let mut counts = self.counts.lock();
        counts.rejected += n as u64;
        *app(&mut counts, NO_APP).responses.entry("503".into()).or_default() += n as u64;
    }

    /// A connection handed to another worker, its request not read.
    pub fn handed_over(&self) {
        self.counts.lock().handed_over += 1;
    }

    /// Requests seen waiting behind a long run now.
    pub fn set_queued(&self, n: usize) {
        self.queued.store(n as u64, Ordering::Relaxed);
    }

    /// A request on its way to its guest, in flight until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A guest of `app` starts running.
    pub fn running(&self, app: &str) {
        self.counts.lock().running = Some(Running {
            app: app.to_owned(),
            since_ms: now_ms(),
        });
    }

    /// A guest's run ended.
    pub fn finished(&self, f: &Finished) {
        let mut counts = self.counts.lock();
        counts.running = None;
        let stats = app(&mut counts, f.app);
        let status = f.status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        *stats.responses.entry(status).or_default() += 1;
        stats.timeouts += u64::from(f.timeout);
        stats.traps += u64::from(f.trap);
        if let Some(restore) = f.restore {
            stats.restore.observe(restore);
        }
        stats.run.observe(f.run);
        stats.total.observe(f.total);
        stats.memory_high_water = stats.memory_high_water.max(f.memory);
    }

    /// A guest that would not stop was ended with its worker, its request
    /// answered 504 if `answered`.
    pub fn killed(&self, app_name: &str, answered: bool) {
        let mut counts = self.counts.lock();
        let stats = app(&mut counts, app_name);
        let status = if answered { "504" } else { "none" };
        *stats.responses.entry(status.into()).or_default() += 1;
        stats.timeouts += 1;
    }

    pub fn snapshot(&self) -> WorkerStats {
        let mut snapshot = self.counts.lock().clone();
        snapshot.in_flight = self.in_flight.load(Ordering::Relaxed);
        snapshot.queued = self.queued.load(Ordering::Relaxed);
        snapshot
    }
}

/// Counts a request in flight while it lives.
pub struct InFlight(Arc<Stats>);

impl InFlight {
    pub fn stats(&self) -> &Stats {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `name`'s stats, or the shared ones once [`MAX_APPS`] are counted.
fn app<'a>(counts: &'a mut WorkerStats, name: &str) -> &'a mut AppStats {
    let name = match counts.apps.contains_key(name) || counts.apps.len() < MAX_APPS {
        true => name,
        false => OTHER_APPS,
    };
    counts.apps.entry(name.to_owned()).or_default()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = Histogram::default();
        for us in [1, 25, 26, 40_000_000] {
            h.observe(Duration::from_micros(us));
        }
        assert_eq!(h.counts[0], 2, "≤ 25 µs");
        assert_eq!(h.counts[1], 1, "≤ 50 µs");
        assert_eq!(h.counts[BOUNDS_US.len()], 1, "above every bound");
        assert_eq!(h.sum_us, 40_000_052);
        let mut sum = Histogram::default();
        sum.add(&h);
        sum.add(&h);
        assert_eq!((sum.count(), sum.sum_us), (8, 80_000_104));
    }

    #[test]
    fn apps_past_the_cap_are_counted_together() {
        let stats = Stats::default();
        for i in 0..MAX_APPS + 10 {
            stats.finished(&Finished {
                app: &format!("app{i}"),
                status: Some(200),
                restore: None,
                run: Duration::ZERO,
                total: Duration::ZERO,
                memory: 0,
                timeout: false,
                trap: false,
            });
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.apps.len(), MAX_APPS + 1);
        assert_eq!(snapshot.apps[OTHER_APPS].requests(), 10);
    }
}
