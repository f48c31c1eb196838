//! Publishing a trained version through the promotion gate: the manifest with every file's
//! hash, the report drawn once the number and the decision are known, and the `if_better` rule.

use crate::artifact::{self, Manifest, store::Staging};
use crate::config::TrainTask;

/// Writes the manifest (last: a directory with a manifest has every other file) and publishes
/// the version; with `promote = "if_better"`, `latest` moves only when the new version's metric
/// beats the current latest's by `min_improvement`. The decision is made under the job's lock
/// and recorded in the manifest.
pub(crate) fn publish_version(
    staging: Staging,
    mut manifest: Manifest,
    metrics: &serde_json::Value,
    task: &TrainTask,
    model_files: &[&str],
    report: impl FnOnce(&Manifest, u64) -> String,
) -> anyhow::Result<(artifact::store::Published, Option<serde_json::Value>)> {
    let gate = task.promotion;
    let mut record = None;
    manifest.files = artifact::verify::record_files(staging.path()).map_err(|cause| {
        artifact::ArtifactError::Io {
            path: staging.path().to_path_buf(),
            action: "hash the files of".to_owned(),
            cause,
        }
    })?;
    // Every version is loadable only with its model files, so a missing one is a bug here.
    for name in model_files {
        let prefix = format!("{name}/");
        if !manifest
            .files
            .iter()
            .any(|entry| entry.path() == *name || entry.path().starts_with(&prefix))
        {
            anyhow::bail!("internal error: the version being published has no {name}");
        }
    }
    let published = staging.publish_gated(|current, staging_dir, version| {
        let decision = gate
            .if_better
            .then(|| decide_promotion(&gate, metrics, current));
        if let Some((_, value)) = &decision {
            manifest.promotion = Some(value.clone());
        }
        // The report shows the decision and the number, both known only now, under the lock;
        // it is hashed into the manifest like every other file.
        let html = report(&manifest, version);
        let report_path = staging_dir.join(artifact::REPORT);
        std::fs::write(&report_path, &html)
            .and_then(|()| std::fs::File::open(&report_path)?.sync_all())
            .map_err(|cause| artifact::ArtifactError::Io {
                path: report_path.clone(),
                action: "write".to_owned(),
                cause,
            })?;
        manifest.files.push(artifact::verify::FileEntry::Recorded {
            path: artifact::REPORT.to_owned(),
            size: html.len() as u64,
            blake3: blake3::hash(html.as_bytes()).to_hex().to_string(),
        });
        manifest.files.sort_by(|a, b| a.path().cmp(b.path()));
        let path = staging_dir.join(artifact::MANIFEST);
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        std::fs::write(&path, text)
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .map_err(|cause| artifact::ArtifactError::Io {
                path: path.clone(),
                action: "write".to_owned(),
                cause,
            })?;
        let promote = decision.as_ref().is_none_or(|(promote, _)| *promote);
        record = decision.map(|(_, value)| value);
        Ok(promote)
    })?;
    Ok((published, record))
}

/// The metric a version is judged by when none is named.
fn main_metric(metrics: &serde_json::Value) -> Option<crate::eval::metric::Metric> {
    use crate::eval::metric::Metric;
    [Metric::Rmse, Metric::NdcgAtK, Metric::AucRoc, Metric::F1]
        .into_iter()
        .find(|metric| metrics[metric.name()].as_f64().is_some())
}

fn decide_promotion(
    gate: &crate::config::Promotion,
    metrics: &serde_json::Value,
    current: Option<(u64, std::path::PathBuf)>,
) -> (bool, serde_json::Value) {
    let metric = gate.metric.or_else(|| main_metric(metrics));
    let new = metric.and_then(|metric| metrics[metric.name()].as_f64());
    let (current_version, old) = match &current {
        Some((version, dir)) => {
            let old = std::fs::read_to_string(dir.join(artifact::METRICS))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|old| metric.and_then(|metric| old[metric.name()].as_f64()));
            (Some(*version), old)
        }
        None => (None, None),
    };
    let (promote, reason) = match (metric, new, old) {
        (_, _, _) if current.is_none() => (true, "no version was latest".to_owned()),
        (None, _, _) | (_, None, _) => (
            false,
            "the new version has no figure for the promotion metric".to_owned(),
        ),
        (Some(_), Some(_), None) => (
            true,
            "the current latest has no figure for the promotion metric".to_owned(),
        ),
        (Some(metric), Some(new), Some(old)) => {
            let gain = if metric.higher_is_better() {
                new - old
            } else {
                old - new
            };
            if gain > 0.0 && gain >= gate.min_improvement {
                (
                    true,
                    format!("{} {new:.6} beats {old:.6} by {gain:.6}", metric.name()),
                )
            } else {
                (
                    false,
                    format!(
                        "{} {new:.6} is not better than {old:.6} by at least {}",
                        metric.name(),
                        gate.min_improvement
                    ),
                )
            }
        }
    };
    let record = serde_json::json!({
        "mode": "if_better",
        "metric": metric.map(|metric| metric.name()),
        "new": new,
        "current": old,
        "current_version": current_version,
        "min_improvement": gate.min_improvement,
        "promoted": promote,
        "reason": reason,
    });
    (promote, record)
}
