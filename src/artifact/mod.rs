//! Versioned model artifacts: what a version holds, how it is published atomically, and how it
//! is read back (rejecting format versions this build does not know).

pub mod codec;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::Fingerprint;

/// Bumped whenever the layout of a version directory changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST: &str = "manifest.json";
pub const METRICS: &str = "metrics.json";
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
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: String,
        source: std::io::Error,
    },
    #[error(
        "publishing failed on purpose ({} is set); nothing was published",
        store::FAIL_BEFORE_PUBLISH
    )]
    Injected,
    #[error("{}: {problem}", path.display())]
    Unreadable { path: PathBuf, problem: String },
    #[error(
        "{} was written with format version {found}; this submit {tool} reads format versions up to {FORMAT_VERSION}: upgrade submit to read it",
        path.display(),
        tool = env!("CARGO_PKG_VERSION")
    )]
    FutureFormat { path: PathBuf, found: u32 },
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
    pub files: Vec<String>,
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

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ArtifactError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        action: "read".to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| ArtifactError::Unreadable {
        path: path.to_path_buf(),
        problem: error.to_string(),
    })
}

/// Reads a version directory (or the `latest` link), checking the format version first.
pub fn load_version(dir: &Path) -> Result<LoadedVersion, ArtifactError> {
    let (manifest, metrics) = load_description(dir)?;
    if manifest.algorithm != "als" && manifest.engine == "spark" && !dir.join(TREES_MODEL).exists()
    {
        return Err(ArtifactError::Unreadable {
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
    load_model(dir, manifest, metrics)
}

/// A version's manifest and metrics, without its model (what listing and showing need).
pub fn load_description(dir: &Path) -> Result<(Manifest, serde_json::Value), ArtifactError> {
    let manifest_path = dir.join(MANIFEST);
    let raw: serde_json::Value = read_json(&manifest_path)?;
    let found = raw
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ArtifactError::Unreadable {
            path: manifest_path.clone(),
            problem: "no format_version: not a submit model version".to_owned(),
        })?;
    if found > u64::from(FORMAT_VERSION) {
        return Err(ArtifactError::FutureFormat {
            path: manifest_path,
            found: found.min(u64::from(u32::MAX)) as u32,
        });
    }
    let manifest: Manifest =
        serde_json::from_value(raw).map_err(|error| ArtifactError::Unreadable {
            path: manifest_path,
            problem: error.to_string(),
        })?;
    let metrics = read_json(&dir.join(METRICS))?;
    Ok((manifest, metrics))
}

fn load_model(
    dir: &Path,
    manifest: Manifest,
    metrics: serde_json::Value,
) -> Result<LoadedVersion, ArtifactError> {
    if manifest.algorithm != "als" {
        let trees: SavedTrees = read_json(&dir.join(TREES_MODEL))?;
        return Ok(LoadedVersion {
            dir: dir.to_path_buf(),
            manifest,
            metrics,
            model: SavedModel::Trees(Box::new(trees)),
        });
    }
    let model_path = dir.join(ALS_MODEL);
    let file = std::fs::File::open(&model_path).map_err(|source| ArtifactError::Io {
        path: model_path.clone(),
        action: "open".to_owned(),
        source,
    })?;
    let model = codec::read_als(&mut std::io::BufReader::new(file)).map_err(|error| {
        ArtifactError::Unreadable {
            path: model_path,
            problem: error.to_string(),
        }
    })?;
    Ok(LoadedVersion {
        dir: dir.to_path_buf(),
        manifest,
        metrics,
        model: SavedModel::Als(model),
    })
}
