//! `GET /metrics` in Prometheus' text format: requests and latency histograms per route and
//! status, and the version served per job. Counted with a mutex per observation: a request
//! costs microseconds, the lock tens of nanoseconds.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (Prometheus' `le`).
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Observations at or below each bound (not cumulative here; summed when rendered).
    buckets: [u64; BUCKETS.len()],
}

/// Route template, model (for model routes), status.
type SeriesKey = (String, Option<String>, u16);

#[derive(Default)]
pub struct Metrics {
    /// By route template, model (for model routes) and status.
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

impl Metrics {
    pub fn observe(&self, route: &str, model: Option<&str>, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Ok(mut series) = self.series.lock() {
            let entry = series
                .entry((route.to_owned(), model.map(str::to_owned), status))
                .or_default();
            entry.count += 1;
            entry.sum_seconds += seconds;
            if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
                entry.buckets[bucket] += 1;
            }
        }
    }

    pub fn render(&self, served: &[(String, u64)], runs: &[(&str, usize)]) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP submit_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(text, "# TYPE submit_requests_total counter");
        let series = match self.series.lock() {
            Ok(series) => series,
            Err(poisoned) => poisoned.into_inner(),
        };
        let labels = |route: &str, model: &Option<String>, status: u16| match model {
            Some(model) => format!("route=\"{route}\",model=\"{model}\",status=\"{status}\""),
            None => format!("route=\"{route}\",status=\"{status}\""),
        };
        for ((route, model, status), observed) in series.iter() {
            let _ = writeln!(
                text,
                "submit_requests_total{{{}}} {}",
                labels(route, model, *status),
                observed.count
            );
        }
        let _ = writeln!(
            text,
            "# HELP submit_request_duration_seconds Time from request to response."
        );
        let _ = writeln!(text, "# TYPE submit_request_duration_seconds histogram");
        for ((route, model, status), observed) in series.iter() {
            let labels = labels(route, model, *status);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&observed.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "submit_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "submit_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                observed.count
            );
            let _ = writeln!(
                text,
                "submit_request_duration_seconds_sum{{{labels}}} {}",
                observed.sum_seconds
            );
            let _ = writeln!(
                text,
                "submit_request_duration_seconds_count{{{labels}}} {}",
                observed.count
            );
        }
        drop(series);
        let _ = writeln!(
            text,
            "# HELP submit_served_version The version served per job."
        );
        let _ = writeln!(text, "# TYPE submit_served_version gauge");
        for (job, version) in served {
            let _ = writeln!(text, "submit_served_version{{model=\"{job}\"}} {version}");
        }
        let _ = writeln!(
            text,
            "# HELP submit_training_runs Training runs the server knows, by state."
        );
        let _ = writeln!(text, "# TYPE submit_training_runs gauge");
        for (state, count) in runs {
            let _ = writeln!(text, "submit_training_runs{{state=\"{state}\"}} {count}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_cumulative_buckets_and_versions() {
        let metrics = Metrics::default();
        metrics.observe("/v1/models", None, 200, Duration::from_micros(50));
        metrics.observe("/v1/models", None, 200, Duration::from_millis(3));
        metrics.observe(
            "/v1/models/{job}/predict",
            Some("gbt"),
            400,
            Duration::from_millis(1),
        );
        let text = metrics.render(&[("gbt".to_owned(), 4)], &[("running", 1)]);
        assert!(text.contains(
            "submit_requests_total{route=\"/v1/models/{job}/predict\",model=\"gbt\",status=\"400\"} 1"
        ));
        assert!(text.contains("submit_training_runs{state=\"running\"} 1"));
        assert!(text.contains("submit_requests_total{route=\"/v1/models\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("submit_served_version{model=\"gbt\"} 4"));
    }
}
