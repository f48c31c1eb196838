//! The server's endpoints that change things, through the real server: training runs that
//! publish and are then served, cancel that publishes nothing, the queue's 429, the token, the
//! feedback log and the job that reads it, request timeouts, and the `[serve]` table.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789abcdef";

fn als_job(name: &str, ratings: usize, max_iter: usize) -> String {
    format!(
        "[job]\nname = \"{name}\"\nmaster = \"local[2]\"\n[input]\nsynthetic = {{ kind = \"ratings\", users = {}, items = {}, ratings = {ratings}, rank = 4 }}\n[model]\nrank = 4\nmax_iter = {max_iter}\n",
        (ratings / 20).max(50),
        (ratings / 40).max(40),
    )
}

/// A project folder with `jobs/` (publishing to `models/`) and a token file.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "jobs/small.toml", &als_job("small", 2000, 4));
    // Big enough that it is still training when the test cancels it.
    write(
        dir.path(),
        "jobs/slow.toml",
        &als_job("slow", 3_000_000, 200),
    );
    write(
        dir.path(),
        "jobs/score.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"../models/small/latest\"\n[output]\npath = \"../out.csv\"\n",
    );
    write(dir.path(), "token", &format!("{TOKEN}\n"));
    dir
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut arguments = vec!["--jobs", "jobs", "--token-file", "token"];
    arguments.extend_from_slice(extra);
    let mut server = Server::start(dir, &arguments);
    server.token = Some(TOKEN.to_owned());
    server
}

/// Polls a run until `done(state)`; the last answer.
fn wait_for_run(server: &Server, id: &str, done: impl Fn(&str) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, run) = server.get_json(&format!("/v1/runs/{id}"));
        assert_eq!(status, 200, "{run}");
        if done(run["state"].as_str().unwrap_or("")) {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run {id} stayed {run}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_run(server: &Server, job: &str, body: &Value) -> (u16, Value) {
    server.post_json(&format!("/v1/jobs/{job}/runs"), body)
}

#[test]
fn a_run_publishes_and_the_server_then_serves_its_version() {
    let dir = project();
    ok_json(dir.path(), &["jobs/small.toml"]);
    let server = start(dir.path(), &[]);
    server.wait_for_log("small: serving v1");

    // The token: missing and wrong are 401, and the token never reaches the log.
    let (status, text) = http(&server.addr, "POST", "/v1/jobs/small/runs", "", b"");
    assert_eq!(status, 401, "{text}");
    let (status, text) = http_with(
        &server.addr,
        "POST",
        "/v1/jobs/small/runs",
        &[("Authorization", "Bearer not-the-token")],
        "",
        b"",
    );
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("wrong token"), "{text}");

    // Overrides are checked as --conf checks them, with the same message.
    let (status, answer) = start_run(&server, "small", &json!({"conf": {"model.rank": 0}}));
    assert_eq!(status, 400, "{answer}");
    let cli = run(submit(dir.path()).args(["--conf", "model.rank=0", "jobs/small.toml"]));
    assert_eq!(cli.status.code(), Some(2));
    let cli_message = stderr(&cli);
    let cli_message = cli_message.trim().strip_prefix("error: ").unwrap();
    assert_eq!(answer["error"].as_str().unwrap(), cli_message);
    assert_eq!(answer["code"], "bad_conf");
    let (status, answer) = start_run(&server, "small", &json!({"conf": {"model.rnk": 5}}));
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `model.rank`"),
        "{answer}"
    );
    for (job, expected) in [("nope", 404), ("..", 400), ("score", 400)] {
        let (status, answer) = start_run(&server, job, &json!({}));
        assert_eq!(status, expected, "{job}: {answer}");
    }
    let (status, answer) = start_run(&server, "small", &json!({"confs": {}}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("`confs`"));

    // A run with an override publishes v2, the server moves to it.
    let (status, answer) = start_run(&server, "small", &json!({"conf": {"model.rank": 5}}));
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let finished = wait_for_run(&server, &id, |state| !matches!(state, "queued" | "running"));
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(finished["summary"]["version"], 2, "{finished}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models/small/v2/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["params"]["rank"], 5, "{manifest}");
    assert_eq!(finished["exit_code"], 0);
    server.wait_for_log("small: now serving v2 (was v1)");
    let (_, models) = server.get_json("/v1/models");
    assert_eq!(models["models"][0]["version"], 2, "{models}");
    let (status, log) = server.request("GET", &format!("/v1/runs/{id}/log"), "", b"");
    assert_eq!(status, 200);
    assert!(log.contains("training als"), "{log}");
    let (_, runs) = server.get_json("/v1/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let (_, jobs) = server.get_json("/v1/jobs");
    assert_eq!(jobs["jobs"], json!(["score", "slow", "small"]));
    let (_, metrics) = server.request("GET", "/metrics", "", b"");
    assert!(
        metrics.contains("submit_training_runs{state=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(!server.log().contains(TOKEN));
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn cancel_publishes_nothing_a_full_queue_is_429_and_sigterm_stops_runs() {
    let dir = project();
    let server = start(dir.path(), &["--train-queue", "1"]);
    let (status, first) = start_run(&server, "slow", &json!({}));
    assert_eq!(status, 202, "{first}");
    let first = first["id"].as_str().unwrap().to_owned();
    wait_for_run(&server, &first, |state| state == "running");
    let (status, second) = start_run(&server, "slow", &json!({}));
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["state"], "queued");
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, third) = start_run(&server, "small", &json!({}));
    assert_eq!(status, 429, "{third}");
    assert_eq!(third["code"], "queue_full");

    // The queued run is dropped, the running one stopped: nothing is published.
    let (status, cancelled) = server.request("DELETE", &format!("/v1/runs/{second}"), "", b"");
    assert_eq!(status, 202, "{cancelled}");
    let (status, cancelled) = server.request("DELETE", &format!("/v1/runs/{first}"), "", b"");
    assert_eq!(status, 202, "{cancelled}");
    let run = wait_for_run(&server, &first, |state| state == "cancelled");
    assert!(run["summary"].is_null(), "{run}");
    assert_eq!(
        wait_for_run(&server, &second, |state| state != "queued")["state"],
        "cancelled"
    );
    let (status, again) = server.request("DELETE", &format!("/v1/runs/{first}"), "", b"");
    assert_eq!(status, 409, "{again}");
    let job_dir = dir.path().join("models/slow");
    let leftovers: Vec<String> = std::fs::read_dir(&job_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // SIGTERM with a run in progress: the server exits 0 and the run publishes nothing.
    let (status, answer) = start_run(&server, "slow", &json!({}));
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    wait_for_run(&server, &id, |state| state == "running");
    assert_eq!(server.stop(), Some(0));
    let versions = std::fs::read_dir(&job_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('v'))
        .count();
    assert_eq!(versions, 0);
}

#[test]
fn feedback_events_are_appended_and_a_job_trains_on_them() {
    let dir = project();
    ok_json(dir.path(), &["jobs/small.toml"]);
    let server = start(dir.path(), &["--max-rows", "5000"]);
    let mut events = Vec::new();
    for row in 0..3000u64 {
        events.push(json!({"user": row % 83, "item": (row * 7) % 53, "value": 1 + row % 4}));
    }
    let (status, answer) = server.post_json("/v1/models/small/events", &json!({"events": events}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["appended"], 3000);
    let (status, answer) = server.post_json(
        "/v1/models/small/events",
        &json!({"user": "u1", "item": 3, "timestamp": "2026-12-01T10:00:00Z"}),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.post_json(
        "/v1/models/small/events",
        &json!({"events": [{"user": 1, "item": 2}, {"user": 1}]}),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("event 1: `item` is missing"),
        "{answer}"
    );
    let (status, _) = server.post_json("/v1/models/nope/events", &json!({"user": 1, "item": 2}));
    assert_eq!(status, 404);
    let (status, text) = http(
        &server.addr,
        "POST",
        "/v1/models/small/events",
        "application/json",
        b"{}",
    );
    assert_eq!(status, 401, "{text}");
    let events_dir = dir.path().join("models/small/events");
    let files: Vec<_> = std::fs::read_dir(&events_dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(text.lines().count(), 3002, "a header and 3001 rows");
    // The event log is a version folder's neighbour: listing and verifying still work.
    let listed = run(submit(dir.path()).args(["models", "verify", "models/small"]));
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert_eq!(server.stop(), Some(0));

    // The repository's feedback job trains on that log.
    let job = std::fs::read_to_string(repository().join("jobs/feedback-retrain.toml")).unwrap();
    let job = job.replace("../models/quickstart/events", "../models/small/events");
    write(dir.path(), "jobs/feedback.toml", &job);
    let summary = ok_json(dir.path(), &["jobs/feedback.toml"]);
    assert_eq!(summary["version"], 1, "{summary}");
    assert!(summary["metrics"]["counts"]["ratings"].as_u64().unwrap() > 1000);
}

#[test]
fn a_slow_body_is_408_and_the_server_keeps_answering() {
    let dir = project();
    let server = start(dir.path(), &["--request-timeout-ms", "300"]);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            b"POST /v1/models/x/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"dataf",
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let (status, _) = server.get_json("/healthz");
    assert_eq!(status, 200);
    // The container's health probe: 0 for a 200, 1 otherwise.
    let probe = run(submit(dir.path()).args(["healthcheck", "--addr", &server.addr]));
    assert_eq!(probe.status.code(), Some(0), "{}", stderr(&probe));
    let probe =
        run(submit(dir.path()).args(["healthcheck", "--addr", &server.addr, "--path", "/nope"]));
    assert_eq!(probe.status.code(), Some(1));
    assert!(stderr(&probe).contains("404"), "{}", stderr(&probe));
    let addr = server.addr.clone();
    assert_eq!(server.stop(), Some(0));
    let probe = run(submit(dir.path()).args(["healthcheck", "--addr", &addr, "--json"]));
    assert_eq!(probe.status.code(), Some(1));
    assert_eq!(json(&probe)["kind"], "unhealthy");
}

#[test]
fn the_serve_table_is_checked_like_job_keys_and_jobs_ignore_it() {
    let dir = project();
    write(
        dir.path(),
        "conf/defaults.toml",
        "[job]\nmaster = \"local[2]\"\n\n[serve]\nmax_rowz = 10\n",
    );
    let output = run(submit(dir.path())
        .env("SUBMIT_CONF_DIR", dir.path().join("conf"))
        .args(["serve"]));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("did you mean `serve.max_rows`"),
        "{message}"
    );
    assert!(message.contains("defaults.toml:5:1"), "{message}");
    write(dir.path(), "conf/defaults.toml", "[serve]\nmax_rows = 0\n");
    let output = run(submit(dir.path())
        .env("SUBMIT_CONF_DIR", dir.path().join("conf"))
        .args(["serve"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("1 to 100000000"),
        "{}",
        stderr(&output)
    );
    // A job run beside a valid [serve] table does not read it; a job file with one is told
    // where it belongs.
    write(
        dir.path(),
        "conf/defaults.toml",
        "[serve]\nmax_rows = 10\naddr = \"127.0.0.1:0\"\n",
    );
    let summary = ok_json(dir.path(), &["jobs/small.toml"]);
    assert_eq!(summary["version"], 1);
    write(dir.path(), "jobs/bad.toml", "[serve]\nmax_rows = 1\n");
    let output = run(submit(dir.path()).args(["jobs/bad.toml"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("belongs in conf/defaults.toml"));
    // The table's values apply: a 3-row request over `max_rows = 2` is 413.
    write(
        dir.path(),
        "conf/defaults.toml",
        "[serve]\nmax_rows = 2\naddr = \"127.0.0.1:0\"\nmodels = \"../models\"\n",
    );
    let server = Server::start_with_conf(dir.path(), &dir.path().join("conf"), &[]);
    let (status, answer) = server.post_json(
        "/v1/models/small/predict",
        &json!({"dataframe_split": {"columns": ["user", "item"], "data": [[1, 2], [1, 3], [2, 3]]}}),
    );
    assert_eq!(status, 413, "{answer}");
    assert_eq!(server.stop(), Some(0));
}
