//! Versioned model artifacts: what a version holds, how it is published atomically, and how it
//! is read back (rejecting format versions this build does not know).

pub mod codec;
pub mod store;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::Fingerprint;

/// Bumped whenever the layout of a version directory changes incompatibly.
/// 2: the manifest records the size and blake3 hash of every file.
pub const FORMAT_VERSION: u32 = 2;

pub const MANIFEST: &str = "manifest.json";
pub const METRICS: &str = "metrics.json";
/// What the report plots (curve points, histograms), for `models report`.
pub const CURVES: &str = "curves.json";
/// The version's self-contained HTML report.
pub const REPORT: &str = "report.html";
pub const RESOLVED_JOB: &str = "job.resolved.toml";
pub const ALS_MODEL: &str = "model.als";
pub const USER_FACTORS: &str = "user_factors.parquet";
pub const ITEM_FACTORS: &str = "item_factors.parquet";
pub const TREES_MODEL: &str = "model.trees.json";
pub const LIGHTGBM_MODEL: &str = "model.lgb.txt";

/// A tree ensemble with what scoring new rows needs: the feature columns by name and kind
/// (category names in index order) and the class labels.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedTrees {
    pub feature_names: Vec<String>,
    pub feature_kinds: Vec<crate::dataset::tabular::FeatureKind>,
    pub label_column: String,
    /// Original class labels by class index, when the label column was indexed.
    pub label_names: Option<Vec<String>>,
    pub model: crate::algo::trees::TreeModel,
}

/// The model inside a version, by algorithm.
pub enum SavedModel {
    Als(codec::SavedAls),
    Trees(Box<SavedTrees>),
}

impl SavedModel {
    pub fn als(&self) -> Option<&codec::SavedAls> {
        match self {
            SavedModel::Als(model) => Some(model),
            SavedModel::Trees(_) => None,
        }
    }

    pub fn trees(&self) -> Option<&SavedTrees> {
        match self {
            SavedModel::Trees(model) => Some(model),
            SavedModel::Als(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    // The cause is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        action: String,
        cause: std::io::Error,
    },
    #[error(
        "publishing failed on purpose ({} is set); nothing was published",
        store::FAIL_BEFORE_PUBLISH
    )]
    Injected,
    #[error("{}: {problem}", path.display())]
    Refused { path: PathBuf, problem: String },
}

/// A version that cannot be used as it is on disk: missing, unreadable, from a newer submit,
/// or damaged (a file that does not match its manifest entry, a model that does not hold
/// together). Exit code 3, like other input problems.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("cannot read {}: {problem}", path.display())]
    Read { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Damaged { path: PathBuf, problem: String },
    #[error(
        "{} was written with format version {found}; this submit {tool} reads format versions up to {FORMAT_VERSION}: upgrade submit to read it",
        path.display(),
        tool = env!("CARGO_PKG_VERSION")
    )]
    FutureFormat { path: PathBuf, found: u64 },
}

use crate::text::shorten;

/// The loss an ALS version was trained with, from its manifest's resolved parameters (Spark's
/// defaults where a key is absent), for folding in users against its item factors.
pub fn fold_in_loss(params: &serde_json::Value) -> crate::algo::als::fold_in::FoldInLoss {
    crate::algo::als::fold_in::FoldInLoss {
        reg_param: params["reg_param"].as_f64().unwrap_or(0.1),
        implicit_prefs: params["implicit_prefs"].as_bool().unwrap_or(false),
        alpha: params["alpha"].as_f64().unwrap_or(1.0),
        nonnegative: params["nonnegative"].as_bool().unwrap_or(false),
    }
}

/// `manifest.json`: everything needed to know what a version is and how it was made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub engine: String,
    pub kind: String,
    pub job: String,
    pub algorithm: String,
    pub params: serde_json::Value,
    pub seed: u64,
    pub master: String,
    pub threads: usize,
    pub driver_memory: String,
    pub executor_memory: String,
    pub inputs: Vec<Fingerprint>,
    pub created_at: String,
    pub durations_s: BTreeMap<String, f64>,
    /// Every file of the version but the manifest, with its size and hash.
    pub files: Vec<verify::FileEntry>,
    /// The hyperparameter search that chose `params`, when the job had a `[tuning.grid]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<serde_json::Value>,
    /// With `engine = "spark"`: Spark's version, the spark-submit command line, the estimator
    /// and the Spark parameters it ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark: Option<serde_json::Value>,
    /// Whether `latest` moved to this version when it was published, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<serde_json::Value>,
}

/// A published version read back from disk.
pub struct LoadedVersion {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub metrics: serde_json::Value,
    pub model: SavedModel,
}

/// The most bytes a model file may have before it is refused unread (well above any model
/// this tool writes; a guard against reading a corrupt or hostile file into memory).
const MODEL_FILE_LIMIT: u64 = 1 << 38;

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, VersionError> {
    serde_json::from_slice(bytes).map_err(|error| VersionError::Damaged {
        path: path.to_path_buf(),
        problem: format!("not valid: {}", shorten(&error.to_string(), 300)),
    })
}

/// Reads and checks `manifest.json`: JSON, a format version this build reads, the fields it
/// must have.
pub fn load_manifest(dir: &Path) -> Result<Manifest, VersionError> {
    let path = dir.join(MANIFEST);
    let metadata = std::fs::symlink_metadata(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            VersionError::Damaged {
                path: path.clone(),
                problem: "missing: not a complete model version (it has no manifest)".to_owned(),
            }
        } else {
            VersionError::Read {
                path: path.clone(),
                problem: error.to_string(),
            }
        }
    })?;
    if !metadata.is_file() || metadata.len() > 1 << 26 {
        return Err(VersionError::Damaged {
            path,
            problem: "not a regular file of a sensible size for a manifest".to_owned(),
        });
    }
    let bytes = std::fs::read(&path).map_err(|error| VersionError::Read {
        path: path.clone(),
        problem: error.to_string(),
    })?;
    parse_manifest(&path, &bytes)
}

/// The checks of [`load_manifest`] on bytes already read (also the manifest fuzz target).
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, VersionError> {
    let raw: serde_json::Value = parse_json(path, bytes)?;
    let found = raw
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| VersionError::Damaged {
            path: path.to_path_buf(),
            problem: "no format_version: not a submit model version".to_owned(),
        })?;
    if found > u64::from(FORMAT_VERSION) {
        return Err(VersionError::FutureFormat {
            path: path.to_path_buf(),
            found,
        });
    }
    let manifest: Manifest =
        serde_json::from_value(raw).map_err(|error| VersionError::Damaged {
            path: path.to_path_buf(),
            problem: format!("not valid: {}", shorten(&error.to_string(), 300)),
        })?;
    if manifest.files.iter().all(|entry| entry.path() != METRICS) {
        return Err(VersionError::Damaged {
            path: path.to_path_buf(),
            problem: format!("does not list {METRICS}, which every version has"),
        });
    }
    Ok(manifest)
}

/// A version's manifest and metrics after its files were checked to `depth` (what listing,
/// showing and comparing need; the model itself is not parsed).
pub fn load_description(
    dir: &Path,
    depth: verify::Depth,
) -> Result<(Manifest, serde_json::Value), VersionError> {
    let manifest = load_manifest(dir)?;
    verify::check_files(
        dir,
        &manifest.files,
        manifest.format_version,
        depth,
        &[METRICS],
    )?;
    let bytes = verify::read_checked(dir, &manifest.files, METRICS, 1 << 30)?;
    let metrics = parse_json(&dir.join(METRICS), &bytes)?;
    Ok((manifest, metrics))
}

/// Reads a version directory (or the `latest` link) for use: the format version, every file
/// against its recorded size and hash, then the model's structure. Nothing is trusted unchecked.
pub fn load_version(dir: &Path) -> Result<LoadedVersion, VersionError> {
    let manifest = load_manifest(dir)?;
    if manifest.algorithm != "als"
        && manifest.engine == "spark"
        && manifest
            .files
            .iter()
            .all(|entry| entry.path() != TREES_MODEL)
    {
        let metrics: serde_json::Value =
            verify::read_checked(dir, &manifest.files, METRICS, 1 << 30)
                .and_then(|bytes| parse_json(&dir.join(METRICS), &bytes))
                .unwrap_or_default();
        return Err(VersionError::Damaged {
            path: dir.to_path_buf(),
            problem: format!(
                "this {} version was trained by the Spark engine and submit could not convert its trees ({}): its model is only the Spark MLlib directory {}/; load it with Spark (e.g. {}Model.load)",
                manifest.algorithm,
                metrics["trees"]["not_converted_because"]
                    .as_str()
                    .unwrap_or("it was published before submit converted Spark trees"),
                crate::engine::spark::SPARK_MODEL,
                manifest
                    .spark
                    .as_ref()
                    .and_then(|spark| spark["estimator"].as_str())
                    .and_then(|name| name.rsplit('.').next())
                    .unwrap_or("the estimator's ")
            ),
        });
    }
    let model_file = if manifest.algorithm == "als" {
        ALS_MODEL
    } else {
        TREES_MODEL
    };
    let metrics = check_contents(dir, &manifest, Some(model_file))?;
    let model = read_model(dir, &manifest, model_file)?;
    Ok(LoadedVersion {
        dir: dir.to_path_buf(),
        manifest,
        metrics,
        model,
    })
}

/// Every file of a version against its manifest entry but `model_file` (its reader hashes it,
/// see [`read_model`]), then the metrics.
fn check_contents(
    dir: &Path,
    manifest: &Manifest,
    model_file: Option<&str>,
) -> Result<serde_json::Value, VersionError> {
    let skip: Vec<&str> = [METRICS].into_iter().chain(model_file).collect();
    verify::check_files(
        dir,
        &manifest.files,
        manifest.format_version,
        verify::Depth::Hashes,
        &skip,
    )?;
    let metrics_bytes = verify::read_checked(dir, &manifest.files, METRICS, 1 << 30)?;
    parse_json(&dir.join(METRICS), &metrics_bytes)
}

/// The model file read, hashed against its manifest entry (the bytes checked are the bytes
/// parsed), parsed and validated.
fn read_model(
    dir: &Path,
    manifest: &Manifest,
    model_file: &str,
) -> Result<SavedModel, VersionError> {
    let bytes = verify::read_checked(dir, &manifest.files, model_file, MODEL_FILE_LIMIT)?;
    parse_model(&manifest.algorithm, &bytes).map_err(|problem| VersionError::Damaged {
        path: dir.join(model_file),
        problem,
    })
}

/// Parses and validates a model file's bytes (`model.als` for `als`, else `model.trees.json`);
/// the error says what is wrong with it. Also what the model fuzz targets call.
pub fn parse_model(algorithm: &str, bytes: &[u8]) -> Result<SavedModel, String> {
    if algorithm == "als" {
        return codec::read_als(bytes).map(SavedModel::Als);
    }
    let trees: SavedTrees = serde_json::from_slice(bytes)
        .map_err(|error| format!("not valid: {}", shorten(&error.to_string(), 300)))?;
    trees.validate()?;
    Ok(SavedModel::Trees(Box::new(trees)))
}

impl SavedTrees {
    /// A class's original label, or its index when the label column held class indices.
    pub fn class_name(&self, class: usize) -> String {
        self.label_names
            .as_ref()
            .and_then(|names| names.get(class).cloned())
            .unwrap_or_else(|| class.to_string())
    }

    /// The checks scoring relies on: one kind per feature name, class names for every class,
    /// and trees whose indices form trees over those features (see
    /// [`crate::algo::trees::TreeModel::validate`]).
    pub fn validate(&self) -> Result<(), String> {
        use crate::dataset::tabular::FeatureKind;
        if self.feature_names.len() != self.feature_kinds.len() {
            return Err(format!(
                "it names {} features but describes {}",
                self.feature_names.len(),
                self.feature_kinds.len()
            ));
        }
        if let Some(names) = &self.label_names
            && names.len() != self.model.classes
        {
            return Err(format!(
                "it has {} class labels for {} classes",
                names.len(),
                self.model.classes
            ));
        }
        let categories: Vec<Option<usize>> = self
            .feature_kinds
            .iter()
            .map(|kind| match kind {
                FeatureKind::Numeric => None,
                FeatureKind::Categorical { names } => Some(names.len()),
            })
            .collect();
        self.model.validate(&categories)
    }
}

/// Checks a version as thoroughly as loading it would (files against the manifest, the model's
/// structure), without keeping the model: what `models verify` and `models promote` do. A
/// Spark-engine version whose model is only Spark's directory has its files checked.
pub fn verify_version(dir: &Path) -> Result<Manifest, VersionError> {
    let manifest = load_manifest(dir)?;
    let model_file = match manifest.algorithm.as_str() {
        "als" => Some(ALS_MODEL),
        _ if manifest
            .files
            .iter()
            .any(|entry| entry.path() == TREES_MODEL) =>
        {
            Some(TREES_MODEL)
        }
        _ => None,
    };
    check_contents(dir, &manifest, model_file)?;
    if let Some(model_file) = model_file {
        read_model(dir, &manifest, model_file)?;
    }
    Ok(manifest)
}

/// The metric a version is known by: the first of these its metrics have (what `models list`
/// and the server's model list show).
pub fn headline_metric(metrics: &serde_json::Value) -> Option<(&'static str, f64)> {
    ["rmse", "ndcg_at_k", "auc_roc", "f1", "accuracy", "r2"]
        .into_iter()
        .find_map(|name| metrics[name].as_f64().map(|value| (name, value)))
}

/// Maps an I/O error to [`ArtifactError::Io`] for `path` (`action` says what was being done).
pub fn io_error(path: &Path, action: &str) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    let action = action.to_owned();
    move |cause| ArtifactError::Io {
        path,
        action,
        cause,
    }
}
