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
mod report;
mod stats;

pub use board::Board;
pub use report::{Reporter, parse_report};
pub use stats::{Finished, InFlight, NO_APP, Stats, WorkerStats};
