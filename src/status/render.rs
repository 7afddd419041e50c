//! The status page as text (for people, like php-fpm's) and the Prometheus
//! text exposition format 0.0.4 (for scrapers). The JSON page is the
//! board's view serialized as is.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use super::board::View;
use super::stats::{AppStats, BOUNDS_US, Histogram};

pub fn text(view: &View) -> String {
    let mut out = String::new();
    let started = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(view.started));
    let idle = view.workers.len() - view.busy_workers;
    let lines: [(&str, String); 15] = [
        ("version", view.version.into()),
        ("listen", view.listen.clone()),
        ("started", started.to_string()),
        ("uptime", format!("{} s", view.uptime_seconds)),
        ("generation", format!("{} ({} reloads)", view.generation, view.reloads)),
        (
            "workers",
            format!(
                "{} ({} busy, {idle} idle; {} restarted)",
                view.workers.len(),
                view.busy_workers,
                view.worker_restarts
            ),
        ),
        ("connections", view.connections.to_string()),
        ("requests", view.requests.to_string()),
        ("in flight", view.in_flight.to_string()),
        ("queued", view.queued.to_string()),
        ("rejected", view.rejected.to_string()),
        ("handed over", view.handed_over.to_string()),
        ("timeouts", view.timeouts.to_string()),
        ("traps", view.traps.to_string()),
        ("memory reset", view.memory_reset.into()),
    ];
    for (name, value) in lines {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>9} {:>8} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6} {:>11} {:>9} {:>9} {:>10}",
        "app",
        "requests",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "none",
        "timeouts",
        "traps",
        "restore µs",
        "run µs",
        "total µs",
        "memory MiB"
    );
    for (name, app) in &view.apps {
        let class = |c: char| -> u64 {
            app.responses
                .iter()
                .filter(|(status, _)| status.starts_with(c) && status.len() == 3)
                .map(|(_, n)| n)
                .sum()
        };
        let _ = writeln!(
            out,
            "{name:<16} {:>9} {:>8} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6} {:>11} {:>9} {:>9} {:>10.1}",
            app.requests(),
            class('2'),
            class('3'),
            class('4'),
            class('5'),
            app.responses.get("none").copied().unwrap_or(0),
            app.timeouts,
            app.traps,
            mean(&app.restore),
            mean(&app.run),
            mean(&app.total),
            app.memory_high_water as f64 / (1 << 20) as f64,
        );
    }
    let _ = writeln!(
        out,
        "\n{:<9} {:>10} {:>5} {:>9}  running",
        "pid", "generation", "state", "requests"
    );
    for w in &view.workers {
        let running = match (&w.app, w.running_ms) {
            (Some(app), Some(ms)) => format!("{app} for {ms} ms"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<9} {:>10} {:>5} {:>9}  {running}",
            w.pid, w.generation, w.state, w.requests
        );
    }
    out
}

/// Mean of a histogram in µs, `-` when empty.
fn mean(h: &Histogram) -> String {
    match h.count() {
        0 => "-".into(),
        n => (h.sum_us / n).to_string(),
    }
}

pub fn prometheus(view: &View) -> String {
    let mut out = Metrics(String::new());
    out.family(
        "wcgid_info",
        "gauge",
        "wcgid's version, and how it resets guest memories on this kernel.",
    );
    out.sample(
        "wcgid_info",
        &[("version", view.version), ("memory_reset", view.memory_reset)],
        1,
    );
    out.scalar(
        "wcgid_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the epoch.",
        view.started,
    );
    out.scalar(
        "wcgid_generation",
        "gauge",
        "Configuration generation: 1 at start, one more per reload.",
        view.generation,
    );
    out.scalar(
        "wcgid_reloads_total",
        "counter",
        "Successful reloads (SIGHUP).",
        view.reloads,
    );
    out.scalar(
        "wcgid_worker_restarts_total",
        "counter",
        "Worker processes that died and were replaced.",
        view.worker_restarts,
    );
    out.family(
        "wcgid_workers",
        "gauge",
        "Worker processes, busy running a guest or idle.",
    );
    let busy = view.busy_workers as u64;
    out.sample("wcgid_workers", &[("state", "busy")], busy);
    out.sample("wcgid_workers", &[("state", "idle")], view.workers.len() as u64 - busy);
    out.scalar(
        "wcgid_connections_total",
        "counter",
        "FastCGI connections accepted.",
        view.connections,
    );
    out.scalar(
        "wcgid_requests_in_flight",
        "gauge",
        "Requests received and not yet answered.",
        view.in_flight,
    );
    out.scalar(
        "wcgid_requests_queued",
        "gauge",
        "Requests seen waiting for a worker busy with a long run.",
        view.queued,
    );
    out.scalar(
        "wcgid_requests_rejected_total",
        "counter",
        "Requests answered 503 (FCGI_OVERLOADED) after waiting past server.queue_timeout.",
        view.rejected,
    );
    out.scalar(
        "wcgid_connections_handed_over_total",
        "counter",
        "Connections a busy worker handed to an idle one, a request starting on them.",
        view.handed_over,
    );
    out.family(
        "wcgid_requests_total",
        "counter",
        "Requests by app (\"-\": refused before reaching one) and response status (\"none\": the web server gave up first).",
    );
    for (app, stats) in &view.apps {
        for (status, n) in &stats.responses {
            out.sample("wcgid_requests_total", &[("app", app), ("status", status)], *n);
        }
    }
    let per_app: [Family<u64>; 3] = [
        (
            "wcgid_timeouts_total",
            "Guests stopped at their timeout or out of fuel.",
            |a| a.timeouts,
        ),
        ("wcgid_traps_total", "Guests that trapped.", |a| a.traps),
        (
            "wcgid_guest_memory_high_water_bytes",
            "The largest linear memory a run of the app ended with.",
            |a| a.memory_high_water,
        ),
    ];
    for (name, help, value) in per_app {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        out.family(name, kind, help);
        for (app, stats) in view.apps.iter().filter(|(app, _)| *app != super::stats::NO_APP) {
            out.sample(name, &[("app", app)], value(stats));
        }
    }
    let histograms: [(&str, &str, HistogramOf); 3] = [
        (
            "wcgid_restore_seconds",
            "From a run's start to a live instance restored from its module's snapshot.",
            |a| &a.restore,
        ),
        ("wcgid_run_seconds", "A guest's run, once its instance is live.", |a| {
            &a.run
        }),
        (
            "wcgid_request_duration_seconds",
            "A request, from its complete PARAMS to its end.",
            |a| &a.total,
        ),
    ];
    for (name, help, histogram) in histograms {
        out.family(name, "histogram", help);
        for (app, stats) in &view.apps {
            out.histogram(name, app, histogram(stats));
        }
    }
    out.0
}

/// A per-app metric family: name, help, and the app's value.
type Family<T> = (&'static str, &'static str, fn(&AppStats) -> T);
type HistogramOf = for<'a> fn(&'a AppStats) -> &'a Histogram;

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family of one sample without labels.
    fn scalar(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{name}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '"' => self.0.push_str("\\\""),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        }
        self.0.push('}');
    }

    fn histogram(&mut self, name: &str, app: &str, h: &Histogram) {
        if h.count() == 0 {
            return;
        }
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = match BOUNDS_US.get(i) {
                Some(&us) => (us as f64 / 1e6).to_string(),
                None => "+Inf".into(),
            };
            let bucket = format!("{name}_bucket");
            self.sample(&bucket, &[("app", app), ("le", &le)], cumulative);
        }
        let _ = write!(self.0, "{name}_sum");
        self.labels(&[("app", app)]);
        let _ = writeln!(self.0, " {}", h.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), &[("app", app)], h.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::board::Board;
    use crate::status::stats::{Finished, Stats};

    fn view() -> View {
        let stats = Stats::default();
        stats.finished(&Finished {
            app: "he\"llo",
            status: Some(200),
            restore: Some(Duration::from_micros(40)),
            run: Duration::from_micros(400),
            total: Duration::from_micros(2_000_000),
            memory: 2 << 20,
            timeout: false,
            trap: true,
        });
        stats.answered(crate::status::stats::NO_APP, 404);
        let mut board = Board::new("unix:/run/wcgid/wcgid.sock".into());
        board.started(7, 1);
        board.update(7, stats.snapshot());
        board.view()
    }

    #[test]
    fn prometheus_exposition() {
        let metrics = prometheus(&view());
        for line in [
            r#"wcgid_requests_total{app="he\"llo",status="200"} 1"#,
            r#"wcgid_requests_total{app="-",status="404"} 1"#,
            r#"wcgid_traps_total{app="he\"llo"} 1"#,
            r#"wcgid_restore_seconds_bucket{app="he\"llo",le="0.000025"} 0"#,
            r#"wcgid_restore_seconds_bucket{app="he\"llo",le="0.00005"} 1"#,
            r#"wcgid_restore_seconds_bucket{app="he\"llo",le="+Inf"} 1"#,
            r#"wcgid_request_duration_seconds_sum{app="he\"llo"} 2"#,
            r#"wcgid_request_duration_seconds_count{app="he\"llo"} 1"#,
            r#"wcgid_guest_memory_high_water_bytes{app="he\"llo"} 2097152"#,
            r#"wcgid_workers{state="idle"} 1"#,
            "# TYPE wcgid_run_seconds histogram",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
        }
        // Every sample belongs to a family declared before it.
        let mut declared = Vec::new();
        for line in metrics.lines() {
            if let Some(name) = line.strip_prefix("# TYPE ") {
                declared.push(name.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    declared.iter().any(|d| name
                        .strip_prefix(d.as_str())
                        .is_some_and(|rest| { ["", "_bucket", "_sum", "_count"].contains(&rest) })),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn text_page() {
        let page = text(&view());
        assert!(page.contains("requests:     2\n"), "{page}");
        assert!(page.contains("traps:        1\n"), "{page}");
        assert!(
            page.lines().any(|l| l.starts_with("he\"llo") && l.contains(" 2.0")),
            "{page}"
        );
    }
}
