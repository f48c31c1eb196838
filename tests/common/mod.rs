//! Helpers shared by the integration tests: run the real binary in a temporary directory.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_submit")
}

/// A `submit` command running in `dir`, isolated from any conf/defaults.toml around it.
pub fn submit(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .env("SUBMIT_CONF_DIR", dir.join("no-conf-here"))
        .env_remove(submit_fail_env());
    command
}

pub fn submit_fail_env() -> &'static str {
    "SUBMIT_FAIL_BEFORE_PUBLISH"
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("the submit binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The last stdout line parsed as the `--json` object.
pub fn json(output: &Output) -> serde_json::Value {
    let text = stdout(output);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {text}\nstderr: {}", stderr(output)))
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, contents).unwrap();
    path
}

pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small ratings job on the built-in generator.
pub fn synthetic_job(name: &str, extra: &str) -> String {
    format!(
        "[job]\nname = \"{name}\"\nmaster = \"local[2]\"\n\n[input]\nsynthetic = {{ kind = \"ratings\", users = 300, items = 200, ratings = 6000, rank = 3, noise = 0.1, seed = 3 }}\n\n[model]\nrank = 4\nmax_iter = 8\nreg_param = 0.02\n{extra}"
    )
}

/// A rating CSV body: `user,item,rating` rows of a rank-1 pattern, every user with 6 items.
pub fn ratings_csv(users: usize, header: bool) -> String {
    let mut text = String::new();
    if header {
        text.push_str("userId,movieId,rating\n");
    }
    for user in 0..users {
        for step in 0..6 {
            let item = (user * 7 + step * 3) % 40;
            let rating = 1.0 + ((user % 5) as f64 + (item % 4) as f64) / 2.0;
            text.push_str(&format!("{user},{item},{rating}\n"));
        }
    }
    text
}

/// Runs `submit ARGS --json --quiet` in `dir`, asserts exit code 0 and returns the JSON summary.
pub fn ok_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = run(submit(dir).args(args).args(["--json", "--quiet"]));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{args:?}\nstderr: {}\nstdout: {}",
        stderr(&output),
        stdout(&output)
    );
    json(&output)
}

/// An event log `(user, item, event, ts)` of 900 rows a day in two Hive-style day directories,
/// `events/dt=2026-11-01/part-0.csv` and `events/dt=2026-11-02/part-0.csv`, over 150 users
/// and 90 items.
pub fn event_log_days(dir: &Path) {
    for (day, offset) in [("2026-11-01", 0u64), ("2026-11-02", 1)] {
        let mut csv = String::from("user,item,event,ts\n");
        for row in 0..900u64 {
            let user = (row * 7 + offset) % 150;
            let item = (row * 13 + user * 3) % 90;
            let event = ["view", "view", "cart", "buy"][((row + user) % 4) as usize];
            csv.push_str(&format!("u{user},{item},{event},{}\n", 1000 + row));
        }
        write(dir, &format!("events/dt={day}/part-0.csv"), &csv);
    }
}
