//! `submit loadtest`: requests sent open-loop at fixed rates, in steps, so that queueing shows.
//! Each request has a scheduled send time (`start + i / rate`); its latency is measured from that
//! time, not from when a connection became free, which corrects for coordinated omission (a
//! closed-loop client that waits for each answer under-reports the tail). Requests go over a
//! pool of keep-alive HTTP/1.1 connections, one thread each (std's blocking sockets: no client
//! crate is needed for one fixed request). The report is a JSON file with every step's offered
//! and achieved rate, errors and percentiles, and an SVG with latency over time and p99 against
//! the offered rate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct LoadTest {
    pub addr: String,
    pub path: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub rates: Vec<f64>,
    pub step: Duration,
    pub connections: usize,
    pub out_dir: PathBuf,
}

/// One request's outcome: when it was due (seconds from the start), its latency and status.
struct Sample {
    due_s: f64,
    latency_s: f64,
    ok: bool,
}

/// Sends one request on a kept-alive connection and reads the whole response; `Err` on any
/// transport problem (the connection is then dropped and reopened).
/// Sends one request and reads the answer: its status, and whether the connection stays open
/// (servers such as Werkzeug answer HTTP/1.0-style and close after each response).
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<(u16, bool)> {
    stream.get_mut().write_all(request)?;
    let mut status = 0;
    let mut length = None;
    let mut keep_alive = true;
    let mut line = Vec::with_capacity(128);
    let mut first = true;
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if first {
            keep_alive = !text.starts_with("HTTP/1.0");
            status = text
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            first = false;
        } else if text.is_empty() {
            break;
        } else if let Some((name, value)) = text.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.trim();
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    match length {
        Some(length) => {
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body)?;
        }
        None if !keep_alive => {
            let mut body = Vec::new();
            stream.read_to_end(&mut body)?;
        }
        None => {}
    }
    Ok((status, keep_alive))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs every rate step and writes `loadtest.json` and `loadtest.svg` into `out_dir`; returns
/// the JSON report.
pub fn run(test: &LoadTest) -> anyhow::Result<Value> {
    let request = Arc::new(
        [
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                test.path,
                test.addr,
                test.content_type,
                test.body.len()
            )
            .into_bytes(),
            test.body.clone(),
        ]
        .concat(),
    );
    let mut steps = Vec::new();
    let mut timeline: Vec<(f64, f64, bool)> = Vec::new();
    let started = Instant::now();
    for &rate in &test.rates {
        let samples = step(test, rate, request.clone());
        let offset = started.elapsed().as_secs_f64() - test.step.as_secs_f64();
        let mut latencies: Vec<f64> = samples
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.latency_s)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let errors = samples.iter().filter(|s| !s.ok).count();
        let last_done = samples
            .iter()
            .map(|s| s.due_s + s.latency_s)
            .fold(0.0f64, f64::max)
            .max(1e-9);
        steps.push(json!({
            "offered_rps": rate,
            "achieved_rps": latencies.len() as f64 / last_done,
            "requests": samples.len(),
            "errors": errors,
            "p50_ms": percentile(&latencies, 0.50) * 1e3,
            "p90_ms": percentile(&latencies, 0.90) * 1e3,
            "p99_ms": percentile(&latencies, 0.99) * 1e3,
            "p999_ms": percentile(&latencies, 0.999) * 1e3,
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
        }));
        timeline.extend(
            samples
                .iter()
                .map(|s| (offset + s.due_s, s.latency_s * 1e3, s.ok)),
        );
    }
    let report = json!({
        "target": format!("http://{}{}", test.addr, test.path),
        "step_s": test.step.as_secs_f64(),
        "connections": test.connections,
        "latency_from": "scheduled send time (corrected for coordinated omission)",
        "steps": steps,
    });
    std::fs::create_dir_all(&test.out_dir)?;
    std::fs::write(
        test.out_dir.join("loadtest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(test.out_dir.join("loadtest.svg"), svg(&report, &timeline))?;
    Ok(report)
}

/// One rate step: one thread per connection takes the next request number, sleeps until its
/// scheduled time (thread sleeps are precise to tens of microseconds, where tokio's timer rounds
/// up to the millisecond) and sends it.
fn step(test: &LoadTest, rate: f64, request: Arc<Vec<u8>>) -> Vec<Sample> {
    let count = (rate * test.step.as_secs_f64()).round().max(1.0) as usize;
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..test.connections.max(1))
        .map(|_| {
            let (next, request, addr) = (next.clone(), request.clone(), test.addr.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut stream: Option<BufReader<TcpStream>> = None;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return samples;
                    }
                    let due = start + Duration::from_secs_f64(index as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if stream.is_none() {
                        stream = TcpStream::connect(&addr).ok().map(|connection| {
                            let _ = connection.set_nodelay(true);
                            let _ = connection.set_read_timeout(Some(Duration::from_secs(30)));
                            BufReader::new(connection)
                        });
                    }
                    let ok = match stream.as_mut() {
                        Some(connection) => match exchange(connection, &request) {
                            Ok((status, keep_alive)) => {
                                if !keep_alive {
                                    stream = None;
                                }
                                status == 200
                            }
                            Err(_) => {
                                stream = None;
                                false
                            }
                        },
                        None => false,
                    };
                    samples.push(Sample {
                        due_s: (due - start).as_secs_f64(),
                        latency_s: due.elapsed().as_secs_f64(),
                        ok,
                    });
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap_or_default())
        .collect()
}

/// Two panels from the report's chart code: every request's latency over time (log scale,
/// failed requests apart) and p99 against the offered rate. Plain SVG: no script, no network.
fn svg(report: &Value, timeline: &[(f64, f64, bool)]) -> String {
    use crate::report::chart::{self, Axis, Mark, Series};
    // At most 20,000 dots: enough to see queueing, small enough to open.
    let stride = timeline.len().div_ceil(20_000).max(1);
    let dots = |ok: bool| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .filter(|(_, _, good)| *good == ok)
            .step_by(if ok { stride } else { 1 })
            .map(|(time, latency, _)| (*time, latency.max(1e-3)))
            .collect()
    };
    let mut series = vec![Series::new("answered", dots(true), Mark::Dots)];
    let failed = dots(false);
    if !failed.is_empty() {
        series.push(Series::new("failed", failed, Mark::Dots));
    }
    let over_time = chart::plot(
        "latency of each request over time",
        &Axis::linear("time since start (s)"),
        &Axis::log("latency (ms, log scale)"),
        &series,
        &[],
    );
    let p99: Vec<(f64, f64)> = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| {
            Some((
                step["offered_rps"].as_f64()?,
                step["p99_ms"].as_f64().filter(|value| value.is_finite())?,
            ))
        })
        .collect();
    let by_rate = chart::plot(
        "p99 latency against the offered rate",
        &Axis::linear("offered rate (requests/s)"),
        &Axis::linear("p99 latency (ms)"),
        &[Series::new("p99", p99, Mark::Line)],
        &[],
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"730\"><g>{over_time}</g><g transform=\"translate(0 370)\">{by_rate}</g></svg>\n"
    )
}

/// `--rates 500,1000,2000`.
pub fn parse_rates(text: &str) -> Option<Vec<f64>> {
    let rates: Option<Vec<f64>> = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|rate| *rate > 0.0 && *rate <= 1e6)
        })
        .collect();
    rates.filter(|rates| !rates.is_empty())
}

/// The report as lines for a person.
pub fn human(report: &Value, out_dir: &Path) -> String {
    let mut text = format!(
        "{:>10} {:>10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "offered/s",
        "achieved/s",
        "requests",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for step in report["steps"].as_array().into_iter().flatten() {
        let number = |key: &str| step[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            text,
            "{:>10.0} {:>10.0} {:>8} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            number("offered_rps"),
            number("achieved_rps"),
            step["requests"],
            step["errors"],
            number("p50_ms"),
            number("p90_ms"),
            number("p99_ms"),
            number("p999_ms"),
            number("max_ms"),
        );
    }
    let _ = writeln!(
        text,
        "wrote {} and {}",
        out_dir.join("loadtest.json").display(),
        out_dir.join("loadtest.svg").display()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.5), 2.0);
        assert_eq!(percentile(&sorted, 0.99), 4.0);
        assert_eq!(parse_rates("100, 200"), Some(vec![100.0, 200.0]));
        assert_eq!(parse_rates("100,-1"), None);
    }
}
