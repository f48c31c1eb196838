//! The Spark engine: a checked train job becomes a run of the PySpark application shipped in
//! this binary (`spark_app.py`) under the real spark-submit, and what the application leaves in
//! the staging directory becomes a version with the native layout.
//!
//! Spark does the reading, the split (the native engine's hash of seed and row number, so both
//! engines hold out the same rows), the fit and the model directory. The application hands the
//! factors and training interactions (ALS) or the test predictions (trees) back through an
//! exchange directory, and submit computes the metrics with its own evaluators: metric names
//! and definitions are the same for both engines by construction. Nothing is published unless
//! spark-submit exits 0 and its output reads back whole.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::algo::als::AlsModel;
use crate::artifact::store::Staging;
use crate::config::prepare::Dedupe;
use crate::config::spark::SparkJob;
use crate::config::{
    ColumnRef, Format, JobConfig, ModelConfig, Source, SplitMethod, TimeBoundary, TrainTask,
};
use crate::dataset::{Csr, Ids, Ratings, split};
use crate::exec::Progress;
use crate::report::Summary;

/// The application spark-submit runs (written next to the versions, named by its hash).
const APP: &str = include_str!("spark_app.py");
/// Where the Spark model directory goes inside a version.
pub const SPARK_MODEL: &str = "spark_model";
const EXCHANGE: &str = ".spark-exchange";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "spark-submit not found ({looked}); the Spark engine runs jobs through a Spark installation"
    )]
    NotFound { looked: String },
    #[error("cannot start {}: {cause}", program.display())]
    Start {
        program: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "spark-submit failed ({status}); nothing was published\n  full log: {}\n  last lines:\n{tail}",
        log.display()
    )]
    Failed {
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// A problem the application found in the job or its data.
    #[error("the Spark application stopped: {message}\n  full log: {}", log.display())]
    Job {
        kind: String,
        message: String,
        log: PathBuf,
    },
    #[error("the Spark application's output {} is unreadable: {problem}", path.display())]
    BadOutput { path: PathBuf, problem: String },
}

impl EngineError {
    /// Exit code and kind name, as [`crate::exit_code`] reports them.
    pub fn exit_code(&self) -> (u8, &'static str) {
        match self {
            EngineError::NotFound { .. } => (2, "config"),
            EngineError::Job { kind, .. } if kind == "input" => (3, "input"),
            EngineError::Job { kind, .. } if kind == "config" => (2, "config"),
            EngineError::Start { .. } | EngineError::Failed { .. } | EngineError::Job { .. } => {
                (5, "training")
            }
            EngineError::BadOutput { .. } => (1, "internal"),
        }
    }
}

/// spark-submit under `SPARK_HOME`, else on `PATH`.
pub fn find_spark_submit() -> Result<PathBuf, EngineError> {
    let mut looked = Vec::new();
    if let Some(home) = std::env::var_os("SPARK_HOME") {
        let candidate = PathBuf::from(home).join("bin").join("spark-submit");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(format!("not at {}", candidate.display()));
    } else {
        looked.push("SPARK_HOME is not set".to_owned());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("spark-submit");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.push("not on PATH".to_owned());
    looked.push(
        "set SPARK_HOME to a Spark installation, or `pip install pyspark` (Java 17+) and put its bin on PATH"
            .to_owned(),
    );
    Err(EngineError::NotFound {
        looked: looked.join("; "),
    })
}

/// The application file for this build of submit, under the job's directory (absolute:
/// spark-submit resolves relative paths against its own working directory).
pub fn app_path(task: &TrainTask, config: &JobConfig) -> PathBuf {
    let hash = blake3::hash(APP.as_bytes()).to_hex();
    let path = job_dir(task, config)
        .join(".spark")
        .join(format!("submit-spark-app-{}.py", &hash[..12]));
    std::path::absolute(&path).unwrap_or(path)
}

fn job_dir(task: &TrainTask, config: &JobConfig) -> PathBuf {
    let dir = task.output_dir.join(&config.name);
    std::path::absolute(&dir).unwrap_or(dir)
}

fn write_app(path: &Path) -> Result<(), crate::artifact::ArtifactError> {
    let io = |action: &str| {
        let action = action.to_owned();
        move |cause| crate::artifact::ArtifactError::Io {
            path: path.to_path_buf(),
            action,
            cause,
        }
    };
    if std::fs::read_to_string(path).is_ok_and(|text| text == APP) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let temporary = path.with_extension(format!("py.{}", std::process::id()));
    std::fs::write(&temporary, APP).map_err(io("write"))?;
    std::fs::rename(&temporary, path).map_err(io("write"))
}

/// spark-submit's memory spelling (MiB) for a checked size.
fn spark_memory(size: crate::config::ByteSize) -> String {
    format!("{}m", (size.0 >> 20).max(1))
}

/// The spark-submit argument list (after the program) for this job.
pub fn arguments(config: &JobConfig, job: &SparkJob, app: &Path, plan: &Path) -> Vec<String> {
    let mut arguments = vec![
        "--master".to_owned(),
        config.master.to_string(),
        "--name".to_owned(),
        config.name.clone(),
        "--driver-memory".to_owned(),
        spark_memory(config.driver_memory),
        "--executor-memory".to_owned(),
        spark_memory(config.executor_memory),
    ];
    for (key, value) in &job.conf {
        arguments.push("--conf".to_owned());
        arguments.push(format!("{key}={value}"));
    }
    arguments.push(app.display().to_string());
    arguments.push(plan.display().to_string());
    arguments
}

fn column(reference: &ColumnRef) -> Json {
    match reference {
        ColumnRef::Name(name) => json!({ "name": name }),
        ColumnRef::Position(position) => json!({ "position": position }),
    }
}

/// What the application needs to know, as JSON.
fn plan(
    config: &JobConfig,
    task: &TrainTask,
    job: &SparkJob,
    model_dir: &Path,
    exchange: &Path,
) -> anyhow::Result<Json> {
    let Source::Files(files) = &task.input.source else {
        anyhow::bail!("the Spark engine reads files only (checked at validation)");
    };
    let source = source_plan(files)?;
    let test_input = match task.test_input.as_deref().map(|input| &input.source) {
        Some(Source::Files(files)) => source_plan(files)?,
        Some(Source::Synthetic(_)) => {
            anyhow::bail!("[input.test] is read from files (checked at validation)")
        }
        None => Json::Null,
    };
    let table = &task.input.table;
    let (algorithm, tree_task) = match &task.model {
        ModelConfig::Als { .. } => ("als", Json::Null),
        ModelConfig::Trees { params, .. } => (
            task.model.algorithm(),
            json!(match params.task {
                crate::algo::trees::TreeTask::Classification => "classification",
                crate::algo::trees::TreeTask::Regression => "regression",
            }),
        ),
    };
    Ok(json!({
        "job": config.name,
        "algorithm": algorithm,
        "task": tree_task,
        "estimator": job.estimator,
        "params": job.params.iter().cloned().collect::<serde_json::Map<String, Json>>(),
        "input": {
            "paths": source["paths"],
            "format": source["format"],
            "separator": source["separator"],
            "header": source["header"],
            "hive": source["hive"],
            "preparation": preparation_plan(&task.input)?,
            "null_policy": match task.input.null_policy {
                crate::config::NullPolicy::Error => "error",
                crate::config::NullPolicy::Drop => "drop",
            },
            "sample_fraction": task.input.sample_fraction,
            "limit": task.input.limit,
            "dedupe": match task.input.dedupe {
                Dedupe::Keep => "keep",
                Dedupe::Error => "error",
                Dedupe::First => "first",
                Dedupe::Last => "last",
                Dedupe::Sum => "sum",
                Dedupe::Mean => "mean",
                Dedupe::Max => "max",
            },
            "columns": {
                "user": column(&task.input.columns.user),
                "item": column(&task.input.columns.item),
                "rating": column(&task.input.columns.rating),
            },
            "table": {
                "label": column(&table.label),
                "features": table.features,
                "categorical": table.categorical,
                "validation": table.validation.as_ref().map(column),
                "weight": table.weight.as_ref().map(column),
            },
        },
        "test_input": test_input,
        "split": {
            "method": match task.split {
                SplitMethod::Random => "random",
                SplitMethod::Time { .. } => "time",
                SplitMethod::PerUserLast { .. } => "per_user_last",
            },
            "column": task.split.time_column().map(column),
            "cutoff": match task.split {
                SplitMethod::Time { boundary: TimeBoundary::Cutoff(cutoff), .. } => Some(cutoff),
                _ => None,
            },
            "fraction": match task.split {
                SplitMethod::Time { boundary: TimeBoundary::Fraction(fraction), .. } => Some(fraction),
                _ => None,
            },
            "n": match task.split {
                SplitMethod::PerUserLast { n, .. } => Some(n),
                _ => None,
            },
            "test_fraction": task.test_fraction,
            "split_base": split::base(split::mix(config.seed, split::SPLIT_STREAM)),
            "sample_base": split::base(split::mix(config.seed, crate::ingest::SAMPLE_STREAM)),
        },
        "output": {
            "model_dir": format!("file://{}", model_dir.display()),
            "exchange_dir": exchange.display().to_string(),
        },
    }))
}

/// How the application reads one source: its files, format, separator, header, and the Hive
/// partition columns of its paths (added when a preparation reads them, as natively).
fn source_plan(files: &crate::config::FileSource) -> anyhow::Result<Json> {
    let separator = match (&files.separator, files.format) {
        (Some(separator), _) => Some(separator.clone()),
        (None, format) if format.is_delimited_text() => {
            let first = files
                .paths
                .first()
                .ok_or_else(|| anyhow::anyhow!("no input files"))?;
            if is_uri(first) {
                anyhow::bail!(
                    "{}: set input.separator (a text file's separator is sniffed from a local file only)",
                    first.display()
                );
            }
            Some(crate::ingest::reader::sniffed_separator(first)?)
        }
        (None, _) => None,
    };
    let format = match files.format {
        Format::Csv => "csv",
        Format::Tsv => "tsv",
        Format::Text => "text",
        Format::Parquet => "parquet",
        Format::Ndjson => "ndjson",
        Format::Libsvm => "libsvm",
        Format::Ipc => anyhow::bail!("ipc has no Spark reader (checked at validation)"),
    };
    let paths: Vec<String> = files
        .paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let partitions = crate::ingest::prepare::partition_columns(&files.paths);
    Ok(json!({
        "paths": paths,
        "format": format,
        "separator": separator,
        "header": files.header,
        "hive": partitions,
    }))
}

/// `input.sql` and `[[input.steps]]` for the application: each with the key and place its
/// errors name. `sample` steps carry their hash base, as the split does.
fn preparation_plan(input: &crate::config::InputConfig) -> anyhow::Result<Json> {
    use crate::config::prepare::{JoinHow, KeepRow, StepKind};
    let Some(preparation) = &input.preparation else {
        return Ok(Json::Null);
    };
    let mut tables = Vec::new();
    for table in &preparation.tables {
        tables.push(json!({"name": table.name, "source": source_plan(&table.files)?}));
    }
    let steps: Vec<Json> = preparation
        .steps
        .iter()
        .map(|step| {
            let at = format!("{} ({})", step.key, step.origin);
            let mut value = match &step.kind {
                StepKind::Filter(text) => json!({"kind": "filter", "expr": text}),
                StepKind::WithColumns(pairs) => json!({"kind": "with_columns", "columns": pairs}),
                StepKind::Select(names) => json!({"kind": "select", "columns": names}),
                StepKind::Rename(pairs) => json!({"kind": "rename", "pairs": pairs}),
                StepKind::Join {
                    table,
                    left_on,
                    right_on,
                    how,
                } => json!({
                    "kind": "join",
                    "table": table,
                    "left_on": left_on,
                    "right_on": right_on,
                    "how": match how {
                        JoinHow::Inner => "inner",
                        JoinHow::Left => "left",
                        JoinHow::Semi => "semi",
                        JoinHow::Anti => "anti",
                    },
                }),
                StepKind::GroupBy { keys, aggregations } => {
                    json!({"kind": "group_by", "keys": keys, "aggregations": aggregations})
                }
                StepKind::Dedupe { columns, keep } => json!({
                    "kind": "dedupe",
                    "columns": columns,
                    "keep": match keep {
                        KeepRow::First => "first",
                        KeepRow::Last => "last",
                    },
                }),
                StepKind::Sample { fraction, seed } => json!({
                    "kind": "sample",
                    "fraction": fraction,
                    "base": split::base(split::mix(*seed, crate::ingest::prepare::SAMPLE_STEP_STREAM)),
                }),
            };
            value["at"] = json!(at);
            value
        })
        .collect();
    Ok(json!({
        "tables": tables,
        "sql": preparation.sql.as_ref().map(|sql| json!({
            "text": sql.text,
            "at": format!("input.sql ({})", sql.origin),
        })),
        "steps": steps,
    }))
}

/// `--dry-run --engine spark`: the command that would run, without running it.
pub fn dry_run_command(config: &JobConfig, task: &TrainTask, job: &SparkJob) -> String {
    let program = find_spark_submit().map_or_else(
        |_| "spark-submit".to_owned(),
        |path| path.display().to_string(),
    );
    let plan = job_dir(task, config)
        .join(".staging-<run>")
        .join(EXCHANGE)
        .join("plan.json");
    let mut words = vec![program];
    words.extend(arguments(config, job, &app_path(task, config), &plan));
    words
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:[]*,@+%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The end of Spark's log without its INFO chatter, where the error and traceback are.
fn last_lines(path: &Path, count: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains(" INFO ") && !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs spark-submit to completion, its output going to `log`.
fn run_spark_submit(
    program: &Path,
    arguments: &[String],
    log: &Path,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
    let file = std::fs::File::create(log).map_err(|cause| crate::artifact::ArtifactError::Io {
        path: log.to_path_buf(),
        action: "create".to_owned(),
        cause,
    })?;
    let mut command = Command::new(program);
    command
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // A pip-installed pyspark's spark-submit sits next to the Python that has pyspark.
    if std::env::var_os("PYSPARK_PYTHON").is_none()
        && let Some(python) = program.parent().map(|dir| dir.join("python3"))
        && python.is_file()
    {
        command.env("PYSPARK_PYTHON", &python);
        command.env("PYSPARK_DRIVER_PYTHON", &python);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal the child when
    // this process dies, so a killed submit does not leave Spark running.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let step = progress.step(label);
    let mut child = command.spawn().map_err(|cause| EngineError::Start {
        program: program.to_path_buf(),
        cause,
    })?;
    let status = child.wait()?;
    let elapsed = step.finish(&format!("{status}"));
    Ok((status, elapsed))
}

fn read_exchange(path: &Path) -> Result<Vec<u8>, EngineError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|error| EngineError::BadOutput {
            path: path.to_path_buf(),
            problem: error.to_string(),
        })?;
    Ok(bytes)
}

fn read_json(path: &Path) -> Result<Json, EngineError> {
    serde_json::from_slice(&read_exchange(path)?).map_err(|error| EngineError::BadOutput {
        path: path.to_path_buf(),
        problem: error.to_string(),
    })
}

/// Fixed-size little-endian records: `width` 4-byte words each.
fn words(path: &Path, width: usize) -> Result<Vec<[u8; 4]>, EngineError> {
    let bytes = read_exchange(path)?;
    if bytes.len() % (4 * width) != 0 {
        return Err(EngineError::BadOutput {
            path: path.to_path_buf(),
            problem: format!("{} bytes is not a whole number of records", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|chunk| [chunk[0], chunk[1], chunk[2], chunk[3]])
        .collect())
}

fn ids(path: &Path) -> Result<Ids, EngineError> {
    let value = read_json(path)?;
    let bad = |problem: &str| EngineError::BadOutput {
        path: path.to_path_buf(),
        problem: problem.to_owned(),
    };
    let list = value["ids"].as_array().ok_or_else(|| bad("no id list"))?;
    if value["kind"] == "integer" {
        list.iter()
            .map(|id| id.as_i64().ok_or_else(|| bad("an id is not an integer")))
            .collect::<Result<_, _>>()
            .map(Ids::Integer)
    } else {
        list.iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("an id is not a string"))
            })
            .collect::<Result<_, _>>()
            .map(Ids::Text)
    }
}

/// (index, factors) records into a factor table; rows without a record stay unseen.
fn factors(path: &Path, rows: usize, rank: usize) -> Result<(Vec<f32>, Vec<bool>), EngineError> {
    let records = words(path, 1 + rank)?;
    let mut factors = vec![0f32; rows * rank];
    let mut seen = vec![false; rows];
    for record in records.chunks_exact(1 + rank) {
        let index = u32::from_le_bytes(record[0]) as usize;
        if index >= rows {
            return Err(EngineError::BadOutput {
                path: path.to_path_buf(),
                problem: format!("index {index} beyond the {rows} ids"),
            });
        }
        seen[index] = true;
        for (slot, word) in factors[index * rank..(index + 1) * rank]
            .iter_mut()
            .zip(&record[1..])
        {
            *slot = f32::from_le_bytes(*word);
        }
    }
    Ok((factors, seen))
}

/// Interactions as three columns: user, item, rating.
type Triples = (Vec<u32>, Vec<u32>, Vec<f32>);

/// (user, item, rating) records.
fn triples(path: &Path) -> Result<Triples, EngineError> {
    let records = words(path, 3)?;
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for record in records.chunks_exact(3) {
        out.0.push(u32::from_le_bytes(record[0]));
        out.1.push(u32::from_le_bytes(record[1]));
        out.2.push(f32::from_le_bytes(record[2]));
    }
    Ok(out)
}

/// A JSON list of strings (names the application reports), if it is one.
fn strings(value: &Json) -> Option<Vec<String>> {
    value.as_array().map(|names| {
        names
            .iter()
            .map(|name| name.as_str().unwrap_or("").to_owned())
            .collect()
    })
}

fn count(result: &Json, key: &str) -> u64 {
    result["counts"][key].as_u64().unwrap_or(0)
}

/// Trains the job on Spark and publishes the version.
pub fn train(
    config: &JobConfig,
    task: &TrainTask,
    job: &SparkJob,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let program = find_spark_submit()?;
    let staging = Staging::create(&task.output_dir, &config.name)?;
    // Spark resolves relative paths against its own working directory and default file system.
    let staging_dir = std::path::absolute(staging.path())?;
    let exchange = staging_dir.join(EXCHANGE);
    std::fs::create_dir(&exchange).map_err(|cause| crate::artifact::ArtifactError::Io {
        path: exchange.clone(),
        action: "create".to_owned(),
        cause,
    })?;
    let app = app_path(task, config);
    write_app(&app)?;
    let plan_path = exchange.join("plan.json");
    let model_dir = staging_dir.join(SPARK_MODEL);
    let plan = plan(config, task, job, &model_dir, &exchange)?;
    std::fs::write(&plan_path, serde_json::to_string_pretty(&plan)?)?;
    let arguments = arguments(config, job, &app, &plan_path);
    let log = exchange.join("spark-submit.log");
    progress.detail(&format!(
        "running {} {}",
        program.display(),
        arguments.join(" ")
    ));
    let (status, elapsed) = run_spark_submit(
        &program,
        &arguments,
        &log,
        progress,
        &format!("spark-submit ({})", config.master),
    )?;
    if !status.success() {
        // The staging directory goes with the failure; keep the log where a person can read it.
        let kept = job_dir(task, config)
            .join(".spark")
            .join("last-failure.log");
        let log_path = if std::fs::copy(&log, &kept).is_ok() {
            kept
        } else {
            log.clone()
        };
        if let Ok(problem) = read_json(&exchange.join("error.json")) {
            return Err(EngineError::Job {
                kind: problem["kind"].as_str().unwrap_or("training").to_owned(),
                message: problem["message"].as_str().unwrap_or("").to_owned(),
                log: log_path,
            }
            .into());
        }
        return Err(EngineError::Failed {
            status: status.to_string(),
            tail: last_lines(&log, 30),
            log: log_path,
        }
        .into());
    }
    let result = read_json(&exchange.join("result.json"))?;
    let mut durations = BTreeMap::new();
    if let Some(timings) = result["timings_s"].as_object() {
        for (phase, seconds) in timings {
            if let Some(seconds) = seconds.as_f64() {
                durations.insert(format!("spark_{phase}"), seconds);
            }
        }
    }
    durations.insert("spark_submit".to_owned(), elapsed.as_secs_f64());
    if let Some(fit) = result["timings_s"]["fit"].as_f64() {
        durations.insert("fit".to_owned(), fit);
    }
    let command: Vec<String> = std::iter::once(program.display().to_string())
        .chain(arguments.iter().cloned())
        .collect();
    let record = json!({
        "version": result["spark_version"],
        "spark_submit": program.display().to_string(),
        "command": command,
        "master": config.master.to_string(),
        "estimator": job.estimator,
        "params": job.params.iter().cloned().collect::<serde_json::Map<String, Json>>(),
        "conf": job.conf.iter().cloned().collect::<BTreeMap<String, String>>(),
        "evaluator": result["spark_evaluator"],
    });
    let inputs = fingerprints(task, &result)?;
    let counts = crate::ingest::IngestCounts {
        rows_read: count(&result, "rows_read"),
        rows_dropped_null: count(&result, "rows_dropped_null"),
        rows_sampled_out: count(&result, "rows_sampled_out"),
    };
    match &task.model {
        ModelConfig::Als { params, cold_start } => {
            let user_ids = ids(&exchange.join("users.json"))?;
            let item_ids = ids(&exchange.join("items.json"))?;
            let rank = result["rank"].as_u64().unwrap_or(params.rank as u64) as usize;
            let (user_factors, user_seen) =
                factors(&exchange.join("user_factors.bin"), user_ids.len(), rank)?;
            let (item_factors, item_seen) =
                factors(&exchange.join("item_factors.bin"), item_ids.len(), rank)?;
            let (train_user, train_item, train_rating) = triples(&exchange.join("train.bin"))?;
            let (test_user, test_item, test_rating) = triples(&exchange.join("test.bin"))?;
            let out_of_range = train_user
                .iter()
                .chain(&test_user)
                .any(|&user| user as usize >= user_ids.len())
                || train_item
                    .iter()
                    .chain(&test_item)
                    .any(|&item| item as usize >= item_ids.len());
            if out_of_range {
                return Err(EngineError::BadOutput {
                    path: exchange.clone(),
                    problem: "an interaction names an index beyond the id tables".to_owned(),
                }
                .into());
            }
            let by_user = Csr::build_where(
                user_ids.len(),
                &train_user,
                &train_item,
                &train_rating,
                &vec![true; train_rating.len()],
                true,
            );
            let model = AlsModel {
                rank,
                user_factors,
                item_factors,
                user_seen,
                item_seen,
            };
            let test = Ratings {
                user_ids,
                item_ids,
                user: test_user,
                item: test_item,
                rating: test_rating,
            };
            let mut resolved_params = task.resolved_params.clone();
            // Spark has one solver: Cholesky, or NNLS for non-negative factors.
            resolved_params["solver"] = json!(if params.nonnegative {
                "nnls"
            } else {
                "cholesky"
            });
            resolved_params["cg_steps"] = Json::Null;
            std::fs::remove_dir_all(&exchange)?;
            crate::job::publish_als(
                config,
                task,
                crate::job::FittedAls {
                    model,
                    by_user,
                    test,
                    counts,
                    train_rmse: f64::NAN,
                    train_loss: Vec::new(),
                    implicit: params.implicit_prefs,
                    cold_start: *cold_start,
                    resolved_params,
                    tuning_report: None,
                    inputs,
                    durations,
                    started,
                    engine: Some(record),
                    staging: Some((staging, vec![SPARK_MODEL])),
                },
                progress,
            )
        }
        ModelConfig::Trees { params, .. } => {
            let classes = result["classes"].as_u64().unwrap_or(1).max(1) as usize;
            // label, then the row's weight in a weighted job, then the scores.
            let leading = if result["weighted"].as_bool() == Some(true) {
                2
            } else {
                1
            };
            let width = leading + classes.max(1);
            let path = exchange.join("predictions.bin");
            let bytes = read_exchange(&path)?;
            if bytes.len() % (8 * width) != 0 {
                return Err(EngineError::BadOutput {
                    path,
                    problem: "not a whole number of prediction records".to_owned(),
                }
                .into());
            }
            let values: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|chunk| {
                    f64::from_le_bytes([
                        chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6],
                        chunk[7],
                    ])
                })
                .collect();
            let labels: Vec<f64> = values.chunks_exact(width).map(|row| row[0]).collect();
            let weights: Option<Vec<f64>> =
                (leading == 2).then(|| values.chunks_exact(width).map(|row| row[1]).collect());
            let predictions: Vec<Vec<f64>> = values
                .chunks_exact(width)
                .map(|row| row[leading..].to_vec())
                .collect();
            let label_names = strings(&result["label_names"]);
            let metric_classes = match params.task {
                crate::algo::trees::TreeTask::Classification => classes,
                crate::algo::trees::TreeTask::Regression => 1,
            };
            let mut metrics = crate::job::trees::test_metrics(
                params.task,
                &predictions,
                &labels,
                weights.as_deref(),
                label_names.as_deref(),
                metric_classes,
            );
            let names = strings(&result["feature_names"]).unwrap_or_default();
            let importances: Vec<f64> = result["feature_importances"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(|value| value.as_f64().unwrap_or(0.0))
                        .collect()
                })
                .unwrap_or_default();
            metrics["feature_importances"] =
                crate::job::trees::ranked_importances(&names, importances);
            metrics["counts"] = json!({
                "rows_read": counts.rows_read,
                "rows_dropped_null": counts.rows_dropped_null,
                "rows_sampled_out": counts.rows_sampled_out,
                "rows": count(&result, "rows"),
                "features": count(&result, "features"),
                "train_rows": count(&result, "train_rows"),
                "test_rows": count(&result, "test_rows"),
            });
            // What the application counted only for some jobs: a test source's rows, weights.
            for key in [
                "test_rows_read",
                "test_rows_dropped_null",
                "weight_total",
                "rows_zero_weight",
            ] {
                if let Some(value) = result["counts"].get(key) {
                    metrics["counts"][key] = value.clone();
                }
            }
            metrics["trees"] = result["trees"].clone();
            metrics["threads"] = config.threads.into();
            let mut model_files = vec![SPARK_MODEL];
            let converted = converted_trees(&exchange, params, classes, &names)?;
            match converted {
                Ok(model) => {
                    let saved = crate::artifact::SavedTrees {
                        feature_kinds: vec![
                            crate::dataset::tabular::FeatureKind::Numeric;
                            names.len()
                        ],
                        feature_names: names,
                        label_column: task.input.table.label_name(),
                        label_names,
                        model,
                    };
                    staging.write(
                        crate::artifact::TREES_MODEL,
                        serde_json::to_string(&saved)?.as_bytes(),
                    )?;
                    model_files.push(crate::artifact::TREES_MODEL);
                    metrics["trees"]["converted"] = json!(true);
                }
                Err(reason) => {
                    metrics["trees"]["converted"] = json!(false);
                    metrics["trees"]["not_converted_because"] = json!(reason);
                }
            }
            std::fs::remove_dir_all(&exchange)?;
            let phase = Instant::now();
            crate::job::finish(
                config,
                task,
                crate::job::Finished {
                    staging,
                    metrics,
                    durations,
                    params: task.resolved_params.clone(),
                    tuning: None,
                    inputs,
                    model_files,
                    started,
                    phase,
                    engine: Some(record),
                    // Spark reports no per-iteration figures and its predictions stay in Spark.
                    curves: json!({}),
                },
                progress,
            )
        }
    }
}

/// The Spark ensemble as a submit model, from the application's `trees.json`: `Ok(Err(reason))`
/// when it cannot be one (string or categorical features, a categorical split), so the version
/// holds only `spark_model/`; an unreadable export is an error.
fn converted_trees(
    exchange: &Path,
    params: &crate::algo::trees::TreeParams,
    classes: usize,
    names: &[String],
) -> anyhow::Result<Result<crate::algo::trees::TreeModel, String>> {
    let path = exchange.join("trees.json");
    if !path.exists() {
        return Ok(Err(
            "the features include string or categorical columns, whose indices follow Spark's indexers"
                .to_owned(),
        ));
    }
    let exported: crate::engine::spark_trees::ExportedTrees =
        serde_json::from_slice(&read_exchange(&path)?).map_err(|error| EngineError::BadOutput {
            path: path.clone(),
            problem: error.to_string(),
        })?;
    Ok(crate::engine::spark_trees::convert(
        &exported,
        params,
        classes,
        names.len(),
    ))
}

/// Fingerprints of the input files (hashed here), with Spark's row counts.
fn fingerprints(
    task: &TrainTask,
    result: &Json,
) -> anyhow::Result<Vec<crate::ingest::Fingerprint>> {
    let Source::Files(files) = &task.input.source else {
        return Ok(Vec::new());
    };
    let rows: BTreeMap<String, u64> = result["counts"]["per_file"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| {
                    Some((file["path"].as_str()?.to_owned(), file["rows"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    // The named tables a preparation reads are inputs too (their rows are not counted, as
    // natively).
    let tables = task
        .input
        .preparation
        .iter()
        .flat_map(|preparation| &preparation.tables)
        .flat_map(|table| &table.files.paths);
    let test_files: &[PathBuf] = match task.test_input.as_deref().map(|input| &input.source) {
        Some(Source::Files(test)) => &test.paths,
        _ => &[],
    };
    let counted = |path: &PathBuf| files.paths.contains(path) || test_files.contains(path);
    for path in files.paths.iter().chain(test_files).chain(tables) {
        let count = match rows.get(&path.display().to_string()) {
            Some(&count) => count,
            None if !counted(path) => 0,
            None => continue,
        };
        // A cluster URI (`s3a://`, `hdfs://`, ...) is Spark's to read: named, not hashed.
        if is_uri(path) {
            out.push(crate::ingest::Fingerprint {
                source: path.display().to_string(),
                blake3: String::new(),
                bytes: 0,
                rows: count,
            });
            continue;
        }
        let bytes = crate::ingest::read_file(path)?;
        out.push(crate::ingest::fingerprint(path, &bytes, count));
    }
    Ok(out)
}

/// Whether `path` is a URI such as `s3a://bucket/key`, which Spark reads itself.
fn is_uri(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|text| crate::text::uri_scheme(text).is_some())
}
