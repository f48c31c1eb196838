//! Job configuration: layered TOML in, a checked [`JobConfig`] out.
//!
//! Nothing downstream of [`validate::validate`] sees TOML; every value it hands on has been
//! range-checked, and every error names the file, `line:column`, key, value and what is allowed.

pub mod layer;
pub mod params;
pub mod prepare;
pub mod serve;
pub mod spark;
pub mod validate;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

pub use layer::{Layered, Origin};

use crate::algo::als::AlsParams;
use crate::algo::trees::{Ensemble, TreeParams};
use crate::eval::metric::Metric;

/// A configuration problem a person can fix by editing a file or a flag (exit code 2).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    details: Box<ConfigErrorDetails>,
}

#[derive(Debug, Clone, PartialEq)]
struct ConfigErrorDetails {
    pub problem: String,
    pub key: Option<String>,
    pub origin: Option<Origin>,
    pub found: Option<String>,
    pub allowed: Option<String>,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(problem: impl Into<String>) -> Self {
        ConfigError {
            details: Box::new(ConfigErrorDetails {
                problem: problem.into(),
                key: None,
                origin: None,
                found: None,
                allowed: None,
                hint: None,
            }),
        }
    }
    pub fn key(mut self, key: &str) -> Self {
        self.details.key = Some(key.to_owned());
        self
    }
    pub fn origin(mut self, origin: Origin) -> Self {
        self.details.origin = Some(origin);
        self
    }
    pub fn found(mut self, found: impl Into<String>) -> Self {
        // A value from a file or a flag can be any length; the message stays one screen.
        self.details.found = Some(crate::text::shorten(&found.into(), 200));
        self
    }
    pub fn allowed(mut self, allowed: impl Into<String>) -> Self {
        self.details.allowed = Some(allowed.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.details.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = &self.details;
        write!(f, "{}", details.problem)?;
        match &details.origin {
            Some(
                origin @ Origin::File {
                    line, column, text, ..
                },
            ) => {
                let gutter = " ".repeat(line.to_string().len());
                write!(f, "\n{gutter}--> {origin}")?;
                write!(f, "\n{gutter} |\n{line} | {text}")?;
                let pad: String = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "\n{gutter} | {pad}^")?;
            }
            Some(origin) => write!(f, "\n  --> {origin}")?,
            None => {}
        }
        if let Some(key) = &details.key {
            write!(f, "\n  key: {key}")?;
        }
        if let Some(found) = &details.found {
            write!(f, "\n  found: {found}")?;
        }
        if let Some(allowed) = &details.allowed {
            write!(f, "\n  allowed: {allowed}")?;
        }
        if let Some(hint) = &details.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `local`, `local[N]` or `local[*]`, resolved to a thread count; or a cluster manager's URL,
/// which only the Spark engine can run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Master {
    Local(NonZeroUsize),
    LocalAllCores,
    /// `spark://HOST:PORT[,HOST:PORT]`, `yarn`, `k8s://URL` or `mesos://HOST:PORT`, kept verbatim.
    Cluster(String),
}

impl Master {
    pub fn parse(text: &str) -> Option<Master> {
        let text = text.trim();
        let cluster_url = |prefix: &str| {
            text.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        };
        if text == "yarn"
            || ["spark://", "k8s://", "mesos://"]
                .into_iter()
                .any(cluster_url)
        {
            return Some(Master::Cluster(text.to_owned()));
        }
        if text == "local" {
            return NonZeroUsize::new(1).map(Master::Local);
        }
        let inner = text.strip_prefix("local[")?.strip_suffix(']')?;
        if inner == "*" {
            return Some(Master::LocalAllCores);
        }
        let threads: usize = inner.parse().ok()?;
        if threads > 1024 {
            return None;
        }
        NonZeroUsize::new(threads).map(Master::Local)
    }

    /// Threads of the local pool (a cluster master leaves only orchestration here: one).
    pub fn threads(&self) -> usize {
        match self {
            Master::Local(threads) => threads.get(),
            Master::LocalAllCores => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Master::Cluster(_) => 1,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Master::Cluster(_))
    }
}

impl fmt::Display for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Master::Local(threads) if threads.get() == 1 => write!(f, "local"),
            Master::Local(threads) => write!(f, "local[{threads}]"),
            Master::LocalAllCores => write!(f, "local[*]"),
            Master::Cluster(url) => write!(f, "{url}"),
        }
    }
}

/// A memory size with Spark's reading: binary units, a bare number is MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "b" => 0,
            "k" | "kb" | "kib" => 10,
            "" | "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return None,
        };
        let bytes = number * (1u64 << shift) as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < 2f64.powi(60))
            .then_some(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0 as f64;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            let scale = (1u64 << shift) as f64;
            if bytes >= scale {
                return write!(f, "{:.1} {unit}", bytes / scale);
            }
        }
        write!(f, "{} B", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Text,
    Parquet,
    Ndjson,
    Ipc,
    Libsvm,
}

impl Format {
    pub const NAMES: &'static str = "csv, tsv, text, parquet, ndjson, ipc, libsvm";

    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "text" | "txt" => Format::Text,
            "parquet" => Format::Parquet,
            "ndjson" | "jsonl" | "json" => Format::Ndjson,
            "ipc" | "arrow" | "feather" => Format::Ipc,
            "libsvm" | "svm" => Format::Libsvm,
            _ => return None,
        })
    }

    pub fn from_extension(path: &std::path::Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "dat" | "data" => Some(Format::Text),
            other => Format::parse(other),
        }
    }

    pub fn is_delimited_text(self) -> bool {
        matches!(self, Format::Csv | Format::Tsv | Format::Text)
    }
}

/// A column by header name or by 0-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRef {
    Name(String),
    Position(usize),
}

impl ColumnRef {
    /// The column's name, when it is referred to by name rather than by position.
    pub fn name(&self) -> Option<&str> {
        match self {
            ColumnRef::Name(name) => Some(name),
            ColumnRef::Position(_) => None,
        }
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRef::Name(name) => write!(f, "`{name}`"),
            ColumnRef::Position(position) => write!(f, "#{position}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullPolicy {
    Error,
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RatingColumns {
    pub user: ColumnRef,
    pub item: ColumnRef,
    pub rating: ColumnRef,
}

/// Columns of a labelled table for tree models.
#[derive(Clone, Debug, PartialEq)]
pub struct TableColumns {
    pub label: ColumnRef,
    /// `None`: every column except the label and the validation column.
    pub features: Option<Vec<String>>,
    pub categorical: Vec<String>,
    /// Numeric columns with at most this many distinct values become categorical (0: off).
    pub max_categories: usize,
    /// GBT's validation indicator column, kept out of the features.
    pub validation: Option<ColumnRef>,
    /// Per-row sample weights (Spark's `weightCol`), kept out of the features.
    pub weight: Option<ColumnRef>,
}

impl TableColumns {
    /// The label column as a saved model names it: its name, or `#N` for a position.
    pub fn label_name(&self) -> String {
        match &self.label {
            ColumnRef::Name(name) => name.clone(),
            ColumnRef::Position(position) => format!("#{position}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileSource {
    pub paths: Vec<PathBuf>,
    pub format: Format,
    /// Field separator for delimited text; `None` means sniff it from the first line.
    pub separator: Option<String>,
    pub header: bool,
    /// Whether `format` was guessed from the extension rather than set (a predict job then
    /// follows the format its model was trained on).
    pub format_inferred: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SyntheticSpec {
    Ratings {
        users: u32,
        items: u32,
        ratings: u64,
        rank: u32,
        noise: f64,
        seed: u64,
    },
    Interactions {
        users: u32,
        items: u32,
        ratings: u64,
        rank: u32,
        seed: u64,
    },
    /// An event log (user, item, event, timestamp) for a preparation to aggregate.
    Events {
        users: u32,
        items: u32,
        ratings: u64,
        rank: u32,
        seed: u64,
    },
    Classification {
        rows: u64,
        features: u32,
        classes: u32,
        seed: u64,
    },
    Regression {
        rows: u64,
        features: u32,
        noise: f64,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Files(FileSource),
    Synthetic(SyntheticSpec),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputConfig {
    pub source: Source,
    /// Named tables, SQL and steps between the source and the column mapping.
    pub preparation: Option<Box<prepare::Preparation>>,
    pub columns: RatingColumns,
    pub table: TableColumns,
    pub null_policy: NullPolicy,
    pub sample_fraction: f64,
    pub limit: Option<u64>,
    /// Several rows for one (user, item) pair.
    pub dedupe: prepare::Dedupe,
    /// Where `s3://` paths are read from.
    pub s3: S3Options,
}

/// `[s3]`: the store `s3://` paths name; credentials come from the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct S3Options {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdStartStrategy {
    Nan,
    Drop,
}

/// Where boosting's early-stopping rows come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidationSource {
    None,
    Fraction(f64),
    Column(ColumnRef),
}

/// What a predict job does with a category the model never saw (Spark's `handleInvalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandleInvalid {
    Error,
    Skip,
    Keep,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Als {
        params: AlsParams,
        cold_start: ColdStartStrategy,
    },
    Trees {
        params: TreeParams,
        validation: ValidationSource,
        handle_invalid: HandleInvalid,
    },
}

impl ModelConfig {
    pub fn algorithm(&self) -> &'static str {
        match self {
            ModelConfig::Als { .. } => "als",
            ModelConfig::Trees { params, .. } => match params.ensemble {
                Ensemble::RandomForest => "random_forest",
                Ensemble::Gbt => "gbt",
            },
        }
    }
}

/// How the test rows are chosen (`split.method`).
#[derive(Clone, Debug, PartialEq)]
pub enum SplitMethod {
    /// Each row with probability `test_fraction`, by the seed.
    Random,
    /// Rows at or after a time go to test.
    Time {
        column: ColumnRef,
        boundary: TimeBoundary,
    },
    /// Each user's last `n` rows by time go to test.
    PerUserLast { column: ColumnRef, n: usize },
}

impl SplitMethod {
    /// The time column the split reads, if any.
    pub fn time_column(&self) -> Option<&ColumnRef> {
        match self {
            SplitMethod::Random => None,
            SplitMethod::Time { column, .. } | SplitMethod::PerUserLast { column, .. } => {
                Some(column)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeBoundary {
    /// Seconds since the Unix epoch for a date, else the column's own number.
    Cutoff(f64),
    /// The last fraction of the time range from the earliest to the latest row.
    Fraction(f64),
}

/// A training job: fit, evaluate, publish a version.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTask {
    pub input: InputConfig,
    /// `[input.test]`: the test rows come from here, prepared as the input is, and the input
    /// trains on all its rows.
    pub test_input: Option<Box<InputConfig>>,
    pub test_fraction: f64,
    pub split: SplitMethod,
    /// Cut-off of the ranking metrics.
    pub ranking_k: usize,
    pub model: ModelConfig,
    pub output_dir: PathBuf,
    /// Model parameters as they will be recorded in the manifest.
    pub resolved_params: serde_json::Value,
    /// A hyperparameter search, when `[tuning.grid]` is set; `model` is then its first point.
    pub tuning: Option<Box<Tuning>>,
    pub promotion: Promotion,
    /// Publish nothing when inputs and resolved job equal those of the current latest.
    pub skip_unchanged: bool,
    /// A published version to start from: GBT continues its trees, ALS its factors.
    pub init_from: Option<PathBuf>,
}

/// When a new version becomes `latest`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Promotion {
    /// `false`: always (the default); `true`: only when it beats the current latest.
    pub if_better: bool,
    /// `None`: the model's main metric.
    pub metric: Option<Metric>,
    pub min_improvement: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TuningMethod {
    CrossValidation { folds: usize },
    TrainValidationSplit { train_ratio: f64 },
}

/// One combination of grid values, validated into a model configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct GridPoint {
    /// `(model parameter, value)` as written in the grid.
    pub values: Vec<(String, toml::Value)>,
    pub model: ModelConfig,
    pub resolved_params: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub method: TuningMethod,
    /// `None`: the default for the model, decided once the data is read.
    pub metric: Option<Metric>,
    pub parallelism: usize,
    pub max_models: Option<usize>,
    pub max_seconds: Option<f64>,
    pub points: Vec<GridPoint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Parquet,
}

/// The file a recommend or predict job writes (replaced atomically).
#[derive(Clone, Debug, PartialEq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub format: OutputFormat,
}

/// Top k items per user, or top k users per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecommendTarget {
    Users,
    Items,
    /// Items by cosine similarity of item factors.
    SimilarItems,
}

/// What users (or items) unknown to the model get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecommendColdStart {
    Popular,
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecommendTask {
    pub from: PathBuf,
    pub k: usize,
    pub filter_seen: bool,
    pub cold_start: RecommendColdStart,
    pub target: RecommendTarget,
    /// The ids to recommend for (their column is `columns.user`, or `columns.item` for
    /// `target = items`); `None` means all of them.
    pub ids: Option<InputConfig>,
    /// New (user, item, rating) rows: their users get factors folded in from these rows
    /// against the model's item factors, then recommendations.
    pub users_from: Option<InputConfig>,
    pub output: OutputFile,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PredictTask {
    pub from: PathBuf,
    /// (user, item) pairs to score, or feature rows for a tree model.
    pub input: InputConfig,
    pub output: OutputFile,
    /// Tree models: what an unseen category does.
    pub handle_invalid: HandleInvalid,
    /// Input columns copied to the output unchanged.
    pub keep: Vec<String>,
    /// Tree models: also write per-row feature contributions (TreeSHAP).
    pub contributions: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    Train(TrainTask),
    Recommend(RecommendTask),
    Predict(PredictTask),
}

impl Task {
    pub fn kind(&self) -> &'static str {
        match self {
            Task::Train(_) => "train",
            Task::Recommend(_) => "recommend",
            Task::Predict(_) => "predict",
        }
    }
}

/// Who trains a train job.
#[derive(Clone, Debug, PartialEq)]
pub enum Engine {
    Native,
    /// spark-submit runs the generated PySpark application with these settings.
    Spark(Box<spark::SparkJob>),
}

/// A fully checked job: what the rest of the program runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub engine: Engine,
    pub master: Master,
    pub threads: usize,
    pub driver_memory: ByteSize,
    pub executor_memory: ByteSize,
    pub seed: u64,
    pub task: Task,
    /// The merged configuration with defaults filled in and paths resolved, as TOML.
    pub resolved_toml: String,
}

/// The project a job file belongs to, found from the job file as cargo finds `Cargo.toml`, so
/// that a job publishes to the same place from any working directory (cron runs from `$HOME`):
/// the nearest directory at or above the job file's that holds `conf/defaults.toml`; else the
/// parent of the `jobs/` directory the file is in; else the job file's own directory. The
/// defaults file is read from there and built-in relative defaults (`output.dir = "models"`)
/// resolve against it.
pub fn project_root(job_file: &Path) -> PathBuf {
    let absolute = std::path::absolute(job_file).unwrap_or_else(|_| job_file.to_path_buf());
    let job_dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if let Some(found) = job_dir
        .ancestors()
        .find(|dir| dir.join("conf").join("defaults.toml").is_file())
    {
        return found.to_path_buf();
    }
    if job_dir.file_name().is_some_and(|name| name == "jobs")
        && let Some(parent) = job_dir.parent()
    {
        return parent.to_path_buf();
    }
    job_dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spark_memory_sizes() {
        assert_eq!(ByteSize::parse("2G"), Some(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("512m"), Some(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1.5g"), Some(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("300"), Some(ByteSize(300 << 20)));
        assert_eq!(ByteSize::parse("2X"), None);
        assert_eq!(ByteSize::parse("-1G"), None);
        assert_eq!(ByteSize::parse(""), None);
    }

    #[test]
    fn reads_master_strings() {
        assert_eq!(
            Master::parse("local").map(|master| master.threads()),
            Some(1)
        );
        assert_eq!(
            Master::parse("local[3]").map(|master| master.threads()),
            Some(3)
        );
        assert!(Master::parse("local[*]").is_some());
        assert_eq!(
            Master::parse("spark://head:7077"),
            Some(Master::Cluster("spark://head:7077".to_owned()))
        );
        assert!(Master::parse("yarn").is_some_and(|master| master.is_cluster()));
        assert!(Master::parse("k8s://https://api:6443").is_some());
        for bad in [
            "local[0]",
            "local[x]",
            "yarn2",
            "spark://",
            "local[",
            "local[5000]",
        ] {
            assert_eq!(Master::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn project_root_is_found_from_the_job_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("conf")).unwrap();
        std::fs::write(root.join("conf/defaults.toml"), "").unwrap();
        std::fs::create_dir_all(root.join("jobs/nested")).unwrap();
        assert_eq!(project_root(&root.join("jobs/nested/a.toml")), root);
        let bare = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bare.path().join("jobs")).unwrap();
        assert_eq!(project_root(&bare.path().join("jobs/a.toml")), bare.path());
        assert_eq!(project_root(&bare.path().join("a.toml")), bare.path());
    }
}
