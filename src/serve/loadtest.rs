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

/// Two panels: every request's latency over time (log scale, errors in red), and p99 against
/// the offered rate, with axes, ticks and labels. Plain SVG: no script, no network.
fn svg(report: &Value, timeline: &[(f64, f64, bool)]) -> String {
    let (width, height, margin) = (900.0, 320.0, 60.0);
    let mut text = String::new();
    let _ = write!(
        text,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">",
        height * 2.0 + 40.0
    );
    let latencies: Vec<f64> = timeline.iter().map(|t| t.1.max(1e-3)).collect();
    let max_latency = latencies.iter().copied().fold(1e-3, f64::max);
    let max_time = timeline.iter().map(|t| t.0).fold(1e-9, f64::max);
    let (low, high) = (1e-3f64.log10().floor(), max_latency.log10().ceil().max(0.0));
    let x = |t: f64| margin + t / max_time * (width - 2.0 * margin);
    let y = |ms: f64| {
        height - margin - (ms.max(1e-3).log10() - low) / (high - low) * (height - 2.0 * margin)
    };
    panel(
        &mut text,
        0.0,
        width,
        height,
        margin,
        "latency of each request over time",
        "time since start (s)",
        "latency (ms, log scale)",
    );
    let mut decade = low;
    while decade <= high {
        let ms = 10f64.powf(decade);
        let _ = write!(
            text,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            margin - 6.0,
            y(ms) + 4.0,
            format_ms(ms)
        );
        let _ = write!(
            text,
            "<line x1=\"{margin}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
            width - margin,
            y(ms),
            y(ms)
        );
        decade += 1.0;
    }
    for tick in 0..=5 {
        let t = max_time * f64::from(tick) / 5.0;
        let _ = write!(
            text,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{t:.1}</text>",
            x(t),
            height - margin + 16.0
        );
    }
    let stride = (timeline.len() / 20_000).max(1);
    for (t, ms, ok) in timeline.iter().step_by(stride) {
        let _ = write!(
            text,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.2\" fill=\"{}\"/>",
            x(*t),
            y(*ms),
            if *ok { "#2563eb" } else { "#dc2626" }
        );
    }
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let top = height + 40.0;
    panel(
        &mut text,
        top,
        width,
        height,
        margin,
        "p99 latency against the offered rate",
        "offered rate (requests/s)",
        "p99 (ms)",
    );
    let max_rate = steps
        .iter()
        .filter_map(|s| s["offered_rps"].as_f64())
        .fold(1.0, f64::max);
    let max_p99 = steps
        .iter()
        .filter_map(|s| s["p99_ms"].as_f64())
        .filter(|v| v.is_finite())
        .fold(1e-3, f64::max)
        * 1.1;
    let px = |rate: f64| margin + rate / max_rate * (width - 2.0 * margin);
    let py = |ms: f64| top + height - margin - ms / max_p99 * (height - 2.0 * margin);
    for tick in 0..=5 {
        let rate = max_rate * f64::from(tick) / 5.0;
        let ms = max_p99 * f64::from(tick) / 5.0;
        let _ = write!(
            text,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{rate:.0}</text>",
            px(rate),
            top + height - margin + 16.0
        );
        let _ = write!(
            text,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            margin - 6.0,
            py(ms) + 4.0,
            format_ms(ms)
        );
    }
    let points: Vec<String> = steps
        .iter()
        .filter_map(|s| {
            Some((
                s["offered_rps"].as_f64()?,
                s["p99_ms"].as_f64().filter(|v| v.is_finite())?,
            ))
        })
        .map(|(rate, ms)| format!("{:.1},{:.1}", px(rate), py(ms)))
        .collect();
    let _ = write!(
        text,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\"/>",
        points.join(" ")
    );
    for point in &points {
        let (cx, cy) = point.split_once(',').unwrap_or(("0", "0"));
        let _ = write!(
            text,
            "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"#2563eb\"/>"
        );
    }
    text.push_str("</svg>\n");
    text
}

fn format_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.3}")
    }
}

#[allow(clippy::too_many_arguments)]
fn panel(
    text: &mut String,
    top: f64,
    width: f64,
    height: f64,
    margin: f64,
    title: &str,
    x_label: &str,
    y_label: &str,
) {
    let _ = write!(
        text,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\
         <line x1=\"{margin}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\
         <line x1=\"{margin}\" y1=\"{}\" x2=\"{margin}\" y2=\"{}\" stroke=\"black\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\
         <text transform=\"translate(14,{}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>",
        width / 2.0,
        top + 20.0,
        top + height - margin,
        width - margin,
        top + height - margin,
        top + margin,
        top + height - margin,
        width / 2.0,
        top + height - 20.0,
        top + height / 2.0,
    );
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
