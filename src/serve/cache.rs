//! The loaded versions the server answers from: one per job (the one `latest` points at),
//! each loaded through the same verifying loader as batch jobs, with the lookup tables a request
//! needs built once. A new `latest` is loaded beside the old version and swapped in atomically;
//! requests in flight keep the `Arc` of the version they started on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::algo::als::fold_in::{FoldInLoss, item_gram};
use crate::algo::als::recommend::{self, ItemScorer};
use crate::artifact::codec::SavedAls;
use crate::artifact::store::{self, LatestState};
use crate::artifact::{self, SavedModel, SavedTrees, VersionError};
use crate::dataset::Ids;
use crate::dataset::tabular::FeatureKind;

/// A tree ensemble with its feature and category lookups.
pub struct ServedTrees {
    pub saved: SavedTrees,
    /// The scoring layout of the ensemble.
    pub flat: crate::algo::trees::flat::FlatTrees,
    /// Per feature: category name -> index, for categorical features.
    pub categories: Vec<Option<HashMap<String, u32>>>,
}

/// An ALS model with id lookups, the item scorer and the popularity ranking.
pub struct ServedAls {
    pub saved: SavedAls,
    pub users: HashMap<String, u32>,
    pub items: HashMap<String, u32>,
    pub scorer: ItemScorer,
    pub popular: Vec<u32>,
    /// The model's loss, for folding in users from their interactions.
    pub loss: FoldInLoss,
    /// `Y^T Y` for implicit models.
    pub gram: Option<Vec<f64>>,
    /// Unit-length item factors for cosine similarity.
    pub similar: recommend::SimilarItems,
}

pub enum ServedModel {
    Trees(Box<ServedTrees>),
    Als(Box<ServedAls>),
}

/// One loaded version.
pub struct Served {
    pub job: String,
    pub version: u64,
    pub dir: PathBuf,
    pub algorithm: String,
    pub metrics: serde_json::Value,
    pub loaded_at: String,
    pub model: ServedModel,
}

/// Row by id, as requests spell ids: integers in decimal, text as it is.
fn index_ids(ids: &Ids) -> HashMap<String, u32> {
    (0..ids.len())
        .map(|row| (ids.display(row), row as u32))
        .collect()
}

impl Served {
    /// Loads and verifies a version directory (or `latest` link) for serving.
    pub fn load(job: &str, dir: &Path) -> Result<Served, VersionError> {
        let loaded = artifact::load_version(dir)?;
        let version = std::fs::canonicalize(&loaded.dir)
            .ok()
            .and_then(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.strip_prefix('v'))
                    .and_then(|number| number.parse().ok())
            })
            .unwrap_or(0);
        let model = match loaded.model {
            SavedModel::Trees(saved) => {
                let categories = saved
                    .feature_kinds
                    .iter()
                    .map(|kind| match kind {
                        FeatureKind::Numeric => None,
                        FeatureKind::Categorical { names } => Some(
                            names
                                .iter()
                                .enumerate()
                                .map(|(index, name)| (name.clone(), index as u32))
                                .collect(),
                        ),
                    })
                    .collect();
                ServedModel::Trees(Box::new(ServedTrees {
                    flat: crate::algo::trees::flat::FlatTrees::new(&saved.model),
                    saved: *saved,
                    categories,
                }))
            }
            SavedModel::Als(saved) => {
                let scorer = ItemScorer::new(
                    &saved.item_factors,
                    saved.rank,
                    vec![true; saved.item_ids.len()],
                );
                let popular = recommend::popular_items(&saved.item_counts());
                let loss = artifact::fold_in_loss(&loaded.manifest.params);
                let gram = loss
                    .implicit_prefs
                    .then(|| item_gram(&saved.item_factors, saved.rank));
                let similar = recommend::SimilarItems::new(&saved.item_factors, saved.rank);
                ServedModel::Als(Box::new(ServedAls {
                    users: index_ids(&saved.user_ids),
                    items: index_ids(&saved.item_ids),
                    scorer,
                    popular,
                    loss,
                    gram,
                    similar,
                    saved,
                }))
            }
        };
        Ok(Served {
            job: job.to_owned(),
            version,
            dir: loaded.dir,
            algorithm: loaded.manifest.algorithm,
            metrics: loaded.metrics,
            loaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            model,
        })
    }

    /// About how many bytes the loaded version holds (what the memory budget counts).
    pub fn footprint(&self) -> u64 {
        let bytes = match &self.model {
            ServedModel::Trees(model) => {
                let nodes: usize = model
                    .saved
                    .model
                    .trees
                    .iter()
                    .map(|tree| tree.nodes.len())
                    .sum();
                let leaves = nodes * model.saved.model.classes.max(1) * 8;
                let categories: usize = model
                    .categories
                    .iter()
                    .flatten()
                    .map(|names| names.keys().map(|name| name.len() + 48).sum::<usize>())
                    .sum();
                nodes * std::mem::size_of::<crate::algo::trees::Node>() + leaves + categories * 2
            }
            ServedModel::Als(model) => {
                let rows = model.saved.user_ids.len() + model.saved.item_ids.len();
                // Factors in the model, the scorer's tables, id tables both ways, gram.
                rows * model.saved.rank * 4
                    + model.scorer.footprint()
                    + rows * 96
                    + model.similar.footprint()
                    + model.gram.as_ref().map_or(0, |gram| gram.len() * 8)
            }
        };
        bytes as u64
    }

    /// The headline metric, as `models list` shows it.
    pub fn headline(&self) -> Option<(&'static str, f64)> {
        artifact::headline_metric(&self.metrics)
    }
}

/// Whether `name` can be a job folder name (what `job.name` allows): no separators, no `..`.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Drops a replaced version on this thread once no request holds it any more (waiting at most
/// 30 s; after that the last request to finish frees it).
fn release_when_unused(mut old: Arc<Served>) {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        match Arc::try_unwrap(old) {
            Ok(served) => {
                drop(served);
                return;
            }
            Err(shared) => old = shared,
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// How many of the pinned versions (sizes least recently used first) go so that they and the
/// served versions fit the budget: least recently used first, never the newest (the request
/// that loaded it needs it).
fn evictions(sizes: &[u64], served_bytes: u64, budget: u64) -> usize {
    let mut total = served_bytes + sizes.iter().sum::<u64>();
    let mut dropped = 0;
    while dropped + 1 < sizes.len() && total > budget {
        total -= sizes[dropped];
        dropped += 1;
    }
    dropped
}

/// Every job's served version, plus pinned versions loaded on demand.
pub struct ModelCache {
    pub models_dir: PathBuf,
    /// Bytes all loaded versions may take before pinned ones are evicted (`serve.driver_memory`).
    budget: u64,
    latest: RwLock<HashMap<String, Arc<Served>>>,
    /// Pinned versions, most recently used last.
    pinned: Mutex<Vec<Arc<Served>>>,
    /// The version a job's `latest` pointed at when loading it failed (not retried until
    /// `latest` moves again).
    failed: Mutex<HashMap<String, u64>>,
}

impl ModelCache {
    pub fn new(models_dir: PathBuf, budget: u64) -> ModelCache {
        ModelCache {
            models_dir,
            budget,
            latest: RwLock::new(HashMap::new()),
            pinned: Mutex::new(Vec::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, job: &str) -> Option<Arc<Served>> {
        self.latest
            .read()
            .ok()
            .and_then(|map| map.get(job).cloned())
    }

    pub fn all(&self) -> Vec<Arc<Served>> {
        let mut served: Vec<Arc<Served>> = self
            .latest
            .read()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default();
        served.sort_by(|a, b| a.job.cmp(&b.job));
        served
    }

    /// A pinned version of a job, loaded (and verified) on first use.
    pub fn pinned(&self, job: &str, version: u64) -> Result<Option<Arc<Served>>, VersionError> {
        if let Some(served) = self.get(job).filter(|served| served.version == version) {
            return Ok(Some(served));
        }
        if let Ok(mut pinned) = self.pinned.lock()
            && let Some(at) = pinned
                .iter()
                .position(|served| served.job == job && served.version == version)
        {
            let served = pinned.remove(at);
            pinned.push(served.clone());
            return Ok(Some(served));
        }
        let dir = self.models_dir.join(job).join(format!("v{version}"));
        if !dir.is_dir() {
            return Ok(None);
        }
        let served = Arc::new(Served::load(job, &dir)?);
        if let Ok(mut pinned) = self.pinned.lock() {
            pinned.push(served.clone());
            let served_bytes: u64 = self.all().iter().map(|served| served.footprint()).sum();
            let sizes: Vec<u64> = pinned.iter().map(|served| served.footprint()).collect();
            let evicted: Vec<Arc<Served>> = pinned
                .drain(..evictions(&sizes, served_bytes, self.budget))
                .collect();
            drop(pinned);
            drop(evicted);
        }
        Ok(Some(served))
    }

    /// Pinned versions loaded now, least recently used first.
    pub fn pinned_versions(&self) -> Vec<(String, u64)> {
        self.pinned
            .lock()
            .map(|pinned| {
                pinned
                    .iter()
                    .map(|served| (served.job.clone(), served.version))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Job folders under the models directory, with the version their `latest` points at.
    fn latest_versions(&self) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.models_dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, u64)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.to_owned();
                if !valid_job_name(&name) || name.starts_with('.') {
                    return None;
                }
                match LatestState::read(&entry.path()) {
                    LatestState::Version(version) => Some((name, version)),
                    _ => None,
                }
            })
            .collect();
        found.sort();
        found
    }

    /// Loads every job whose `latest` moved since it was loaded (or that is new), swapping each
    /// in once it is loaded; a version that fails to load is reported and the old one keeps
    /// serving. Returns one line per change, for the log.
    pub fn refresh(&self) -> Vec<String> {
        let mut log = Vec::new();
        for (job, version) in self.latest_versions() {
            let current = self.get(&job).map(|served| served.version);
            let failed_before = self
                .failed
                .lock()
                .map(|failed| failed.get(&job) == Some(&version))
                .unwrap_or(false);
            if current == Some(version) || failed_before {
                continue;
            }
            let dir = self.models_dir.join(&job).join(format!("v{version}"));
            match Served::load(&job, &dir) {
                Ok(served) => {
                    let replaced = self
                        .latest
                        .write()
                        .ok()
                        .and_then(|mut latest| latest.insert(job.clone(), Arc::new(served)));
                    // Freeing a large model takes milliseconds: here, after the lock is released
                    // and once the last request that holds it has finished, not in a request.
                    if let Some(old) = replaced {
                        release_when_unused(old);
                    }
                    if let Ok(mut failed) = self.failed.lock() {
                        failed.remove(&job);
                    }
                    log.push(match current {
                        Some(old) => format!("{job}: now serving v{version} (was v{old})"),
                        None => format!("{job}: serving v{version}"),
                    });
                }
                Err(error) => {
                    if let Ok(mut failed) = self.failed.lock() {
                        failed.insert(job.clone(), version);
                    }
                    log.push(format!(
                        "{job}: cannot load v{version}, {}: {error}",
                        match current {
                            Some(old) => format!("still serving v{old}"),
                            None => "not served".to_owned(),
                        }
                    ));
                }
            }
        }
        log
    }

    /// Whether a job folder exists for `job` (404 versus "not loaded").
    pub fn job_exists(&self, job: &str) -> bool {
        store::versions(&self.models_dir.join(job)).is_ok_and(|versions| !versions.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_leave_least_recently_used_first_within_the_budget() {
        assert_eq!(evictions(&[10, 10, 10], 0, 100), 0);
        assert_eq!(evictions(&[10, 20, 30], 50, 100), 1);
        assert_eq!(evictions(&[10, 20, 30], 50, 85), 2);
        // The newest stays even when it alone is over the budget.
        assert_eq!(evictions(&[10, 20, 300], 50, 100), 2);
        assert_eq!(evictions(&[], 500, 100), 0);
    }

    #[test]
    fn job_names_cannot_leave_the_models_folder() {
        for bad in ["", ".", "..", "a/b", "a\\b", "%2e%2e"] {
            assert!(!valid_job_name(bad), "{bad}");
        }
        assert!(valid_job_name("gbt-v2.daily_1"));
    }
}
