//! The supervisor's view of every worker's counts: the latest report of
//! each live worker, plus the totals of workers that are gone, so that
//! counters only ever grow across worker restarts and reloads.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::stats::{AppStats, BOUNDS_US, WorkerStats, now_ms};

pub struct Board {
    started: SystemTime,
    listen: String,
    generation: u64,
    reloads: u64,
    restarts: u64,
    workers: BTreeMap<u32, Worker>,
    /// Counts of workers that are gone (their gauges dropped).
    retired: WorkerStats,
}

struct Worker {
    generation: u64,
    started: SystemTime,
    stats: WorkerStats,
}

impl Board {
    pub fn new(listen: String) -> Board {
        Board {
            started: SystemTime::now(),
            listen,
            generation: 1,
            reloads: 0,
            restarts: 0,
            workers: BTreeMap::new(),
            retired: WorkerStats::default(),
        }
    }

    /// A reload succeeded: workers started from now on are of a new
    /// generation.
    pub fn reloaded(&mut self) {
        self.generation += 1;
        self.reloads += 1;
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A worker of `generation` started (and reports nothing yet).
    pub fn started(&mut self, pid: u32, generation: u64) {
        self.workers.insert(
            pid,
            Worker {
                generation,
                started: SystemTime::now(),
                stats: WorkerStats::default(),
            },
        );
    }

    /// A worker's latest report.
    pub fn update(&mut self, pid: u32, stats: WorkerStats) {
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.stats = stats;
        }
    }

    /// A worker died and is replaced.
    pub fn restarted(&mut self) {
        self.restarts += 1;
    }

    /// A worker is gone: its counts join the retired ones.
    pub fn gone(&mut self, pid: u32) {
        if let Some(worker) = self.workers.remove(&pid) {
            self.retired.add_counts(&worker.stats);
        }
    }

    /// Whether any worker runs.
    pub fn serving(&self) -> bool {
        !self.workers.is_empty()
    }

    /// Everything, summed over the workers.
    pub fn view(&self) -> View {
        let now = now_ms();
        let mut total = self.retired.clone();
        let mut workers = Vec::with_capacity(self.workers.len());
        for (&pid, worker) in &self.workers {
            let stats = &worker.stats;
            total.add_counts(stats);
            total.in_flight += stats.in_flight;
            total.queued += stats.queued;
            workers.push(WorkerView {
                pid,
                generation: worker.generation,
                started: secs_since_epoch(worker.started),
                requests: stats.apps.values().map(AppStats::requests).sum(),
                state: if stats.running.is_some() { "busy" } else { "idle" },
                app: stats.running.as_ref().map(|r| r.app.clone()),
                running_ms: stats.running.as_ref().map(|r| now.saturating_sub(r.since_ms)),
            });
        }
        let apps = total.apps.values();
        View {
            version: env!("CARGO_PKG_VERSION"),
            memory_reset: crate::sandbox::memory_reset_method(),
            listen: self.listen.clone(),
            started: secs_since_epoch(self.started),
            uptime_seconds: self.started.elapsed().map_or(0, |d| d.as_secs()),
            generation: self.generation,
            reloads: self.reloads,
            worker_restarts: self.restarts,
            connections: total.connections,
            requests: apps.clone().map(AppStats::requests).sum(),
            in_flight: total.in_flight,
            queued: total.queued,
            rejected: total.rejected,
            handed_over: total.handed_over,
            timeouts: apps.clone().map(|a| a.timeouts).sum(),
            traps: apps.map(|a| a.traps).sum(),
            busy_workers: workers.iter().filter(|w| w.app.is_some()).count(),
            workers,
            histogram_bounds_us: &BOUNDS_US,
            apps: total.apps,
        }
    }
}

fn secs_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The status page's data (its JSON form as is).
#[derive(Debug, Serialize)]
pub struct View {
    pub version: &'static str,
    /// How guest memories are reset between requests on this kernel.
    pub memory_reset: &'static str,
    pub listen: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub uptime_seconds: u64,
    /// Configuration generation: 1 at start, one more per reload.
    pub generation: u64,
    pub reloads: u64,
    /// Workers that died and were replaced.
    pub worker_restarts: u64,
    pub connections: u64,
    pub requests: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub rejected: u64,
    pub handed_over: u64,
    pub timeouts: u64,
    pub traps: u64,
    pub busy_workers: usize,
    pub workers: Vec<WorkerView>,
    pub histogram_bounds_us: &'static [u64],
    pub apps: BTreeMap<String, AppStats>,
}

#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub pid: u32,
    pub generation: u64,
    pub started: u64,
    pub requests: u64,
    /// `busy` while a guest runs.
    pub state: &'static str,
    pub app: Option<String>,
    pub running_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::stats::{Finished, Stats};
    use std::time::Duration;

    fn served(n: usize) -> WorkerStats {
        let stats = Stats::default();
        for _ in 0..n {
            stats.finished(&Finished {
                app: "hello",
                status: Some(200),
                restore: Some(Duration::from_micros(30)),
                run: Duration::from_micros(10),
                total: Duration::from_micros(50),
                memory: 1 << 20,
                timeout: false,
                trap: false,
            });
        }
        stats.snapshot()
    }

    #[test]
    fn counts_survive_the_workers_that_made_them() {
        let mut board = Board::new("unix:/x".into());
        board.started(10, 1);
        board.started(11, 1);
        board.update(10, served(3));
        board.update(11, served(2));
        assert_eq!(board.view().requests, 5);
        board.gone(10);
        board.restarted();
        board.reloaded();
        board.started(12, board.generation());
        board.update(12, served(1));
        let view = board.view();
        assert_eq!(view.requests, 6, "the dead worker's 3 kept");
        assert_eq!((view.worker_restarts, view.reloads, view.generation), (1, 1, 2));
        assert_eq!(view.workers.len(), 2);
        assert_eq!(view.apps["hello"].memory_high_water, 1 << 20);
        assert_eq!(view.apps["hello"].restore.count(), 6);
    }

    #[test]
    fn reports_of_unknown_workers_are_ignored() {
        let mut board = Board::new("unix:/x".into());
        board.update(99, served(1));
        assert_eq!(board.view().requests, 0);
    }
}
