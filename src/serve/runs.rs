//! The training endpoint's runs. Each run is the CLI itself (`submit --json JOB.toml`) in a
//! child process at idle CPU priority with its own `--master`, so a run's threads, heap cap and
//! any crash stay out of the process that answers predictions; its stderr is the run's log and
//! its `--json` line the run's summary. One run at a time, from a bounded queue.
//!
//! Cancelling takes the job's publish lock before it kills the child: the child holds that lock
//! from the rename of its version to the move of `latest`, so a cancelled run has either
//! published completely before the cancel (the cancel is refused, 409) or not at all.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::artifact::store;
use crate::config::{Master, Task};

use super::score::RequestError;

/// Lines of a run's log kept in memory (older lines are dropped, and the log says so).
const LOG_LINES: usize = 2000;
/// Finished runs remembered for `GET /v1/runs/{id}`.
const FINISHED_KEPT: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 5] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    fn finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

struct RunRecord {
    state: RunState,
    phase: Option<String>,
    progress: Option<(u64, u64)>,
    log: VecDeque<String>,
    dropped_lines: u64,
    summary: Option<Value>,
    error: Option<Value>,
    exit_code: Option<i32>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    child: Option<Child>,
    cancel_requested: bool,
    /// The job's highest published version when the run started: a higher one found under the
    /// lock means the run has published.
    highest_before: Option<u64>,
}

/// One requested run of a job file.
pub struct Run {
    pub id: u64,
    pub job: String,
    job_file: PathBuf,
    confs: Vec<String>,
    conf: Value,
    /// Where the job publishes (`<output.dir>/<name>`): the folder whose lock a cancel takes.
    job_dir: PathBuf,
    record: Mutex<RunRecord>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Run {
    pub fn describe(&self) -> Value {
        let record = lock(&self.record);
        json!({
            "id": self.id.to_string(),
            "job": self.job,
            "state": record.state.name(),
            "phase": record.phase,
            "progress": record.progress.map(|(done, total)| json!({"done": done, "total": total})),
            "conf": self.conf,
            "created_at": record.created_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "exit_code": record.exit_code,
            "summary": record.summary,
            "error": record.error,
            "log": format!("/v1/runs/{}/log", self.id),
        })
    }

    pub fn log_text(&self) -> String {
        let record = lock(&self.record);
        let mut text = String::new();
        if record.dropped_lines > 0 {
            text.push_str(&format!(
                "[{} earlier lines dropped]\n",
                record.dropped_lines
            ));
        }
        for line in &record.log {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    fn push_line(&self, line: String) {
        let mut record = lock(&self.record);
        if let Some((phase, progress)) = read_progress(&line) {
            record.phase = Some(phase);
            if progress.is_some() {
                record.progress = progress;
            }
        }
        if record.log.len() == LOG_LINES {
            record.log.pop_front();
            record.dropped_lines += 1;
        }
        record.log.push_back(line);
    }
}

/// The step a progress line names, and its position for counted steps. The child writes plain
/// lines (`<time> reading input...`, `<time> training als 3/10 train_rmse 0.91`,
/// `<time> training als done in 1.20s: ...`).
fn read_progress(line: &str) -> Option<(String, Option<(u64, u64)>)> {
    let (_, text) = line.split_once(' ')?;
    if text.starts_with("error:") || text.starts_with("  ") {
        return None;
    }
    if let Some(label) = text.strip_suffix("...") {
        return Some((label.to_owned(), None));
    }
    if let Some((label, _)) = text.split_once(" done in ") {
        return Some((format!("{label} (done)"), None));
    }
    let words: Vec<&str> = text.split(' ').collect();
    let at = words.iter().position(|word| {
        word.split_once('/').is_some_and(|(done, total)| {
            done.parse::<u64>().is_ok() && total.parse::<u64>().is_ok()
        })
    })?;
    let (done, total) = words[at].split_once('/')?;
    Some((
        words[..at].join(" "),
        Some((done.parse().ok()?, total.parse().ok()?)),
    ))
}

struct Queue {
    waiting: VecDeque<Arc<Run>>,
    runs: BTreeMap<u64, Arc<Run>>,
    next_id: u64,
    stopping: bool,
}

/// The server's training runs: the queue, the one running run, and the finished ones.
pub struct Runs {
    jobs_dir: PathBuf,
    executable: PathBuf,
    train_master: Master,
    queue_limit: usize,
    queue: Mutex<Queue>,
    wake: Condvar,
}

fn refused(status: u16, code: &'static str, message: String) -> RequestError {
    RequestError {
        status,
        code,
        message,
    }
}

/// `"conf": {"model.rank": 20}` as `--conf` arguments (`model.rank=20`).
fn conf_arguments(conf: &Value) -> Result<Vec<String>, RequestError> {
    let Some(entries) = conf.as_object() else {
        return Err(refused(
            400,
            "bad_conf",
            "`conf` must be an object of job keys, e.g. {\"model.rank\": 20}".to_owned(),
        ));
    };
    entries
        .iter()
        .map(|(key, value)| {
            let literal = match value {
                Value::String(text) => toml::Value::String(text.clone()).to_string(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Array(_) => toml::Value::try_from(value)
                    .map(|value| value.to_string())
                    .map_err(|_| {
                        refused(
                            400,
                            "bad_conf",
                            format!("`conf.{key}`: a list of strings or numbers"),
                        )
                    })?,
                _ => {
                    return Err(refused(
                        400,
                        "bad_conf",
                        format!("`conf.{key}` must be a string, number, boolean or list"),
                    ));
                }
            };
            Ok(format!("{key}={literal}"))
        })
        .collect()
}

impl Runs {
    pub fn new(jobs_dir: PathBuf, train_master: Master, queue_limit: usize) -> Arc<Runs> {
        let executable = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("submit"));
        let runs = Arc::new(Runs {
            jobs_dir,
            executable,
            train_master,
            queue_limit,
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                runs: BTreeMap::new(),
                next_id: 1,
                stopping: false,
            }),
            wake: Condvar::new(),
        });
        let worker = runs.clone();
        // The thread that starts children lives as long as the server: the children's
        // parent-death signal is tied to it.
        std::thread::Builder::new()
            .name("submit-runs".to_owned())
            .spawn(move || worker.work())
            .ok();
        runs
    }

    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// Checks the job and its overrides as the command line would and queues a run.
    pub fn submit(&self, job: &str, body: &[u8]) -> Result<Arc<Run>, RequestError> {
        let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|error| {
                refused(400, "bad_json", format!("the body is not JSON: {error}"))
            })?
        };
        if let Some(unknown) = request
            .as_object()
            .and_then(|fields| fields.keys().find(|key| key.as_str() != "conf"))
        {
            return Err(refused(
                400,
                "bad_field",
                format!("unknown field `{unknown}`; a run request has only `conf`"),
            ));
        }
        let conf = request.get("conf").cloned().unwrap_or_else(|| json!({}));
        let confs = conf_arguments(&conf)?;
        let job_file = self.jobs_dir.join(format!("{job}.toml"));
        if !job_file.is_file() {
            return Err(refused(
                404,
                "not_found",
                format!("no job file {job}.toml in {}", self.jobs_dir.display()),
            ));
        }
        let master = self.train_master.to_string();
        let config = crate::load_job_file(
            &job_file,
            None,
            vec![("--master", "job.master", master)],
            &confs,
        )
        .map_err(|error| refused(400, "bad_conf", error.to_string()))?;
        let Task::Train(task) = &config.task else {
            return Err(refused(
                400,
                "not_a_train_job",
                format!(
                    "{job}.toml is a {} job; the training endpoint runs train jobs",
                    config.task.kind()
                ),
            ));
        };
        let job_dir = task.output_dir.join(&config.name);
        let mut queue = lock(&self.queue);
        if queue.stopping {
            return Err(refused(
                503,
                "stopping",
                "the server is shutting down".to_owned(),
            ));
        }
        if queue.waiting.len() >= self.queue_limit {
            return Err(refused(
                429,
                "queue_full",
                format!(
                    "{} runs are already waiting (serve.train_queue = {}); try again later",
                    queue.waiting.len(),
                    self.queue_limit
                ),
            ));
        }
        let id = queue.next_id;
        queue.next_id += 1;
        let run = Arc::new(Run {
            id,
            job: job.to_owned(),
            job_file,
            confs,
            conf,
            job_dir,
            record: Mutex::new(RunRecord {
                state: RunState::Queued,
                phase: None,
                progress: None,
                log: VecDeque::new(),
                dropped_lines: 0,
                summary: None,
                error: None,
                exit_code: None,
                created_at: now(),
                started_at: None,
                finished_at: None,
                child: None,
                cancel_requested: false,
                highest_before: None,
            }),
        });
        queue.waiting.push_back(run.clone());
        queue.runs.insert(id, run.clone());
        let finished: Vec<u64> = queue
            .runs
            .iter()
            .filter(|(_, run)| lock(&run.record).state.finished())
            .map(|(id, _)| *id)
            .collect();
        for old in finished
            .iter()
            .take(finished.len().saturating_sub(FINISHED_KEPT))
        {
            queue.runs.remove(old);
        }
        drop(queue);
        self.wake.notify_all();
        Ok(run)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        let id: u64 = id.parse().ok()?;
        lock(&self.queue).runs.get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Run>> {
        lock(&self.queue).runs.values().cloned().collect()
    }

    /// Runs by state, for `/metrics`.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let runs = self.all();
        RunState::ALL
            .iter()
            .map(|state| {
                (
                    state.name(),
                    runs.iter()
                        .filter(|run| lock(&run.record).state == *state)
                        .count(),
                )
            })
            .collect()
    }

    /// Cancels a queued or running run; a run that has already published is not undone (409).
    /// Blocks for as long as a publish in progress holds the job's lock (moments).
    pub fn cancel(&self, run: &Run) -> Result<(), RequestError> {
        {
            let mut queue = lock(&self.queue);
            let mut record = lock(&run.record);
            match record.state {
                RunState::Queued => {
                    queue.waiting.retain(|waiting| waiting.id != run.id);
                    record.state = RunState::Cancelled;
                    record.finished_at = Some(now());
                    return Ok(());
                }
                RunState::Running => record.cancel_requested = true,
                state => {
                    return Err(refused(
                        409,
                        "finished",
                        format!("run {} has already {}", run.id, state.name()),
                    ));
                }
            }
        }
        let _ = std::fs::create_dir_all(&run.job_dir);
        let publish_lock = store::lock_job(&run.job_dir).map_err(|error| {
            refused(
                500,
                "cancel_failed",
                format!("cannot take the job's lock: {error}"),
            )
        })?;
        let mut record = lock(&run.record);
        if record.state != RunState::Running {
            // Finished while the lock was awaited.
            record.cancel_requested = false;
            return Err(refused(
                409,
                "finished",
                format!("run {} has already {}", run.id, record.state.name()),
            ));
        }
        let highest = store::versions(&run.job_dir)
            .ok()
            .and_then(|versions| versions.last().copied());
        if highest > record.highest_before {
            record.cancel_requested = false;
            return Err(refused(
                409,
                "published",
                format!("run {} has already published its version", run.id),
            ));
        }
        if let Some(child) = record.child.as_mut() {
            let _ = child.kill();
        }
        drop(record);
        drop(publish_lock);
        Ok(())
    }

    /// Stops taking runs, cancels the queued ones and the running one.
    pub fn shutdown(&self) {
        let (waiting, running) = {
            let mut queue = lock(&self.queue);
            queue.stopping = true;
            let waiting: Vec<Arc<Run>> = queue.waiting.drain(..).collect();
            let running: Vec<Arc<Run>> = queue
                .runs
                .values()
                .filter(|run| lock(&run.record).state == RunState::Running)
                .cloned()
                .collect();
            (waiting, running)
        };
        self.wake.notify_all();
        for run in waiting {
            let mut record = lock(&run.record);
            record.state = RunState::Cancelled;
            record.finished_at = Some(now());
        }
        for run in running {
            let _ = self.cancel(&run);
        }
    }

    fn work(&self) {
        loop {
            let run = {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.stopping {
                        return;
                    }
                    if let Some(run) = queue.waiting.pop_front() {
                        break run;
                    }
                    queue = self
                        .wake
                        .wait(queue)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            self.execute(&run);
        }
    }

    fn command(&self, run: &Run) -> Command {
        let mut command = Command::new(&self.executable);
        command
            .arg("--json")
            .arg("--master")
            .arg(self.train_master.to_string());
        for conf in &run.confs {
            command.arg("--conf").arg(conf);
        }
        command
            .arg(&run.job_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls: system calls that
        // touch nothing but the child itself.
        unsafe {
            command.pre_exec(|| {
                // Answering requests comes first: the run's threads get the cores only when
                // nothing else wants them (SCHED_IDLE; where that is refused, nice 10).
                let param = libc::sched_param { sched_priority: 0 };
                if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                }
                // A server that dies takes its runs with it (nothing is published by an orphan).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command
    }

    fn execute(&self, run: &Arc<Run>) {
        let mut command = self.command(run);
        let spawned = {
            let mut record = lock(&run.record);
            if record.state != RunState::Queued {
                return;
            }
            record.state = RunState::Running;
            record.started_at = Some(now());
            record.highest_before = store::versions(&run.job_dir)
                .ok()
                .and_then(|versions| versions.last().copied());
            match command.spawn() {
                Ok(mut child) => {
                    eprintln!(
                        "{} run {}: {} started (pid {})",
                        now(),
                        run.id,
                        run.job_file.display(),
                        child.id()
                    );
                    let stdout = child.stdout.take();
                    let stderr = child.stderr.take();
                    record.child = Some(child);
                    Ok((stdout, stderr))
                }
                Err(error) => Err(error),
            }
        };
        let (stdout, stderr) = match spawned {
            Ok(pipes) => pipes,
            Err(error) => {
                let mut record = lock(&run.record);
                record.state = RunState::Failed;
                record.error = Some(
                    json!({"message": format!("cannot start {}: {error}", self.executable.display())}),
                );
                record.finished_at = Some(now());
                return;
            }
        };
        let reader = stderr.map(|stderr| {
            let run = run.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    match line {
                        Ok(line) => run.push_line(line),
                        Err(_) => break,
                    }
                }
            })
        });
        let output = stdout.map(|mut stdout| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stdout.read_to_string(&mut text);
                text
            })
        });
        let status = loop {
            {
                let mut record = lock(&run.record);
                let Some(child) = record.child.as_mut() else {
                    break None;
                };
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) => {}
                    Err(_) => break None,
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        let stdout = output
            .and_then(|output| output.join().ok())
            .unwrap_or_default();
        let answer: Option<Value> = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok());
        let mut record = lock(&run.record);
        record.child = None;
        record.exit_code = status.and_then(|status| status.code());
        record.finished_at = Some(now());
        let ok = status.is_some_and(|status| status.success());
        if record.cancel_requested && !ok {
            record.state = RunState::Cancelled;
            record.phase = Some("cancelled".to_owned());
            drop(record);
            eprintln!(
                "{} run {}: {} cancelled, nothing published",
                now(),
                run.id,
                run.job
            );
            // The killed child's staging directory (its lock died with it).
            store::clean_stale_staging(&run.job_dir);
            return;
        }
        if ok {
            record.state = RunState::Succeeded;
            eprintln!(
                "{} run {}: {} succeeded{}",
                now(),
                run.id,
                run.job,
                answer
                    .as_ref()
                    .and_then(|summary| summary["version"].as_u64())
                    .map_or_else(String::new, |version| format!(", published v{version}"))
            );
            record.summary = answer;
        } else {
            eprintln!(
                "{} run {}: {} failed ({})",
                now(),
                run.id,
                run.job,
                status.map_or_else(|| "unknown status".to_owned(), |status| status.to_string())
            );
            record.state = RunState::Failed;
            record.error = Some(answer.unwrap_or_else(|| {
                json!({"message": format!("the run ended without a result ({})", status.map_or_else(|| "unknown status".to_owned(), |status| status.to_string()))})
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_the_phase() {
        assert_eq!(
            read_progress("2026-12-01T10:00:00.000Z reading input..."),
            Some(("reading input".to_owned(), None))
        );
        assert_eq!(
            read_progress("2026-12-01T10:00:00.000Z training als 3/10 train_rmse 0.9"),
            Some(("training als".to_owned(), Some((3, 10))))
        );
        assert_eq!(
            read_progress("2026-12-01T10:00:00.000Z publishing done in 0.10s: v3"),
            Some(("publishing (done)".to_owned(), None))
        );
        assert_eq!(read_progress("error: bad"), None);
    }

    #[test]
    fn conf_objects_become_conf_arguments() {
        let arguments = conf_arguments(
            &json!({"model.rank": 20, "job.name": "x y", "model.implicit_prefs": true}),
        )
        .unwrap();
        assert!(arguments.contains(&"model.rank=20".to_owned()));
        assert!(arguments.contains(&"job.name=\"x y\"".to_owned()));
        assert!(arguments.contains(&"model.implicit_prefs=true".to_owned()));
        assert!(conf_arguments(&json!([1])).is_err());
    }
}
