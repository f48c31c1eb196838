//! Hyperparameter search inside a training job (Spark's CrossValidator and
//! TrainValidationSplit): every grid point is trained on part of the training split and scored
//! on the rest; the best one is then refitted by the normal pipeline on the whole training split.
//!
//! Folds are drawn from the training rows only (a seeded hash of the row number picks each
//! row's fold), so test rows never reach the search and the folds partition the training split.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::{GridPoint, Tuning, TuningMethod};
use crate::dataset::split::{mix, unit};
use crate::eval::metric::Metric;
use crate::exec::Progress;

/// Stream of the fold assignment, apart from the split's and the samplers'.
const FOLD_STREAM: u64 = 0x464F_4C44;

/// For each fold, which of `rows` training rows are its validation rows.
pub fn fold_masks(rows: usize, method: TuningMethod, seed: u64) -> Vec<Vec<bool>> {
    let stream = mix(seed, FOLD_STREAM);
    match method {
        TuningMethod::CrossValidation { folds } => {
            let fold_of: Vec<usize> = (0..rows)
                .map(|row| ((unit(stream, row as u64) * folds as f64) as usize).min(folds - 1))
                .collect();
            (0..folds)
                .map(|fold| fold_of.iter().map(|&f| f == fold).collect())
                .collect()
        }
        TuningMethod::TrainValidationSplit { train_ratio } => vec![
            (0..rows)
                .map(|row| unit(stream, row as u64) >= train_ratio)
                .collect(),
        ],
    }
}

/// Fold masks over the training rows (`is_test` false), lifted to masks over all rows: a test
/// row is never in any fold.
pub fn fold_masks_over(is_test: &[bool], method: TuningMethod, seed: u64) -> Vec<Vec<bool>> {
    let training_rows: Vec<usize> = (0..is_test.len()).filter(|&row| !is_test[row]).collect();
    fold_masks(training_rows.len(), method, seed)
        .into_iter()
        .map(|mask| {
            let mut global = vec![false; is_test.len()];
            for (position, &row) in training_rows.iter().enumerate() {
                global[row] = mask[position];
            }
            global
        })
        .collect()
}

/// One evaluated grid point.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointResult {
    pub index: usize,
    pub params: serde_json::Value,
    pub mean: f64,
    pub std: f64,
    pub scores: Vec<f64>,
}

pub struct Outcome {
    pub winner: usize,
    pub metric: Metric,
    pub results: Vec<PointResult>,
    /// Why the search stopped before the end of the grid, if it did.
    pub stopped_by: Option<&'static str>,
    pub models_trained: usize,
}

impl Outcome {
    /// What `metrics.json` and the manifest record about the search.
    pub fn report(&self, tuning: &Tuning) -> serde_json::Value {
        let mut ranked = self.results.clone();
        ranked.sort_by(|a, b| order(self.metric, a, b));
        let grid: serde_json::Map<String, serde_json::Value> = tuning
            .points
            .first()
            .map(|point| {
                point
                    .values
                    .iter()
                    .map(|(name, _)| {
                        let values: Vec<serde_json::Value> = unique_values(&tuning.points, name);
                        (name.clone(), serde_json::Value::Array(values))
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "method": match tuning.method {
                TuningMethod::CrossValidation { .. } => "cross_validation",
                TuningMethod::TrainValidationSplit { .. } => "train_validation_split",
            },
            "folds": match tuning.method {
                TuningMethod::CrossValidation { folds } => folds,
                TuningMethod::TrainValidationSplit { .. } => 1,
            },
            "train_ratio": match tuning.method {
                TuningMethod::TrainValidationSplit { train_ratio } => Some(train_ratio),
                TuningMethod::CrossValidation { .. } => None,
            },
            "metric": self.metric.name(),
            "higher_is_better": self.metric.higher_is_better(),
            "grid": grid,
            "grid_points": tuning.points.len(),
            "points_evaluated": self.results.len(),
            "models_trained": self.models_trained,
            "stopped_by": self.stopped_by,
            "winner": tuning.points[self.winner].resolved_params,
            "winner_values": values_json(&tuning.points[self.winner]),
            "results": ranked.iter().map(|result| serde_json::json!({
                "values": values_json(&tuning.points[result.index]),
                "mean": result.mean,
                "std": result.std,
                "scores": result.scores,
            })).collect::<Vec<_>>(),
        })
    }

    /// The table printed at the end: grid values -> mean +- std, best first.
    pub fn table(&self, tuning: &Tuning) -> String {
        let mut ranked = self.results.clone();
        ranked.sort_by(|a, b| order(self.metric, a, b));
        let mut text = format!(
            "tuning: {} of {} grid points, {} models, metric {} ({} is better){}\n",
            self.results.len(),
            tuning.points.len(),
            self.models_trained,
            self.metric.name(),
            if self.metric.higher_is_better() {
                "higher"
            } else {
                "lower"
            },
            self.stopped_by.map_or(String::new(), |why| format!(
                "; stopped early: {why} reached"
            )),
        );
        for (rank, result) in ranked.iter().enumerate() {
            let values: Vec<String> = tuning.points[result.index]
                .values
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            text.push_str(&format!(
                "  {:>2}. {:<48} {:.5} +- {:.5}{}\n",
                rank + 1,
                values.join(" "),
                result.mean,
                result.std,
                if result.index == self.winner {
                    "  <- refitted"
                } else {
                    ""
                },
            ));
        }
        text
    }
}

fn values_json(point: &GridPoint) -> serde_json::Value {
    point
        .values
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn unique_values(points: &[GridPoint], name: &str) -> Vec<serde_json::Value> {
    let mut seen: Vec<serde_json::Value> = Vec::new();
    for point in points {
        for (key, value) in &point.values {
            let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
            if key == name && !seen.contains(&value) {
                seen.push(value);
            }
        }
    }
    seen
}

/// Best first; equal means keep grid order.
fn order(metric: Metric, a: &PointResult, b: &PointResult) -> std::cmp::Ordering {
    let by_mean = if metric.higher_is_better() {
        b.mean.total_cmp(&a.mean)
    } else {
        a.mean.total_cmp(&b.mean)
    };
    by_mean.then(a.index.cmp(&b.index))
}

/// Runs the search: `score(point, fold)` trains the point without the fold's rows and scores it
/// on them. Deterministic for a seed: every model is, and results are ordered by grid index.
pub fn search(
    tuning: &Tuning,
    metric: Metric,
    folds: usize,
    score: &(dyn Fn(&GridPoint, usize) -> anyhow::Result<f64> + Sync),
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let limit = tuning
        .max_models
        .map_or(tuning.points.len(), |max| max.min(tuning.points.len()));
    let total = (limit * folds) as u64;
    let step = Mutex::new(progress.counted("tuning", total));
    let done = AtomicUsize::new(0);
    // The best mean of the points finished so far, for the bar's message.
    let best: Mutex<Option<f64>> = Mutex::new(None);
    let mut results: Vec<PointResult> = Vec::new();
    let mut stopped_by = (limit < tuning.points.len()).then_some("max_models");
    let mut start = 0;
    while start < limit {
        // The first batch always runs, so there is a best point to refit.
        if !results.is_empty()
            && tuning
                .max_seconds
                .is_some_and(|budget| started.elapsed().as_secs_f64() >= budget)
        {
            stopped_by = Some("max_seconds");
            break;
        }
        let end = (start + tuning.parallelism).min(limit);
        let batch: Vec<anyhow::Result<PointResult>> = (start..end)
            .into_par_iter()
            .map(|index| {
                let point = &tuning.points[index];
                let mut scores = Vec::with_capacity(folds);
                let described = point
                    .values
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                for fold in 0..folds {
                    let value = score(point, fold)?;
                    if !value.is_finite() {
                        anyhow::bail!(
                            "{} is not defined for grid point {index} on fold {fold} (for example AUC with one class in the fold)",
                            metric.name()
                        );
                    }
                    scores.push(value);
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let best_so_far = best
                        .lock()
                        .ok()
                        .and_then(|best| *best)
                        .map_or_else(String::new, |value| {
                            format!("; best {} {value:.4}", metric.name())
                        });
                    if let Ok(step) = step.lock() {
                        step.update(
                            finished as u64,
                            total,
                            &format!(
                                "point {}/{limit} ({described}) fold {}/{folds}{best_so_far}",
                                index + 1,
                                fold + 1
                            ),
                        );
                    }
                }
                let mean = scores.iter().sum::<f64>() / scores.len() as f64;
                if let Ok(mut best) = best.lock() {
                    let better = best.is_none_or(|current| {
                        if metric.higher_is_better() {
                            mean > current
                        } else {
                            mean < current
                        }
                    });
                    if better {
                        *best = Some(mean);
                    }
                }
                let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>()
                    / scores.len() as f64;
                Ok(PointResult {
                    index,
                    params: point.resolved_params.clone(),
                    mean,
                    std: variance.sqrt(),
                    scores,
                })
            })
            .collect();
        for result in batch {
            results.push(result?);
        }
        start = end;
    }
    if let Ok(step) = step.into_inner() {
        step.finish(&format!("{} grid points", results.len()));
    }
    let winner = results
        .iter()
        .min_by(|a, b| order(metric, a, b))
        .map(|result| result.index)
        .ok_or_else(|| anyhow::anyhow!("the grid is empty"))?;
    Ok(Outcome {
        winner,
        metric,
        models_trained: results.len() * folds,
        results,
        stopped_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_training_rows() {
        for folds in [2, 3, 5] {
            let masks = fold_masks(10_000, TuningMethod::CrossValidation { folds }, 7);
            assert_eq!(masks.len(), folds);
            for row in 0..10_000 {
                assert_eq!(
                    masks.iter().filter(|mask| mask[row]).count(),
                    1,
                    "row {row}"
                );
            }
            for mask in &masks {
                let share = mask.iter().filter(|v| **v).count() as f64 / 10_000.0;
                assert!((share - 1.0 / folds as f64).abs() < 0.03);
            }
            assert_eq!(
                masks,
                fold_masks(10_000, TuningMethod::CrossValidation { folds }, 7)
            );
        }
        // Over a whole table: every training row in exactly one fold, no test row in any.
        let is_test = crate::dataset::split::test_mask(5_000, 0.2, 3);
        let masks = fold_masks_over(&is_test, TuningMethod::CrossValidation { folds: 4 }, 3);
        for (row, test) in is_test.iter().enumerate() {
            let folds = masks.iter().filter(|mask| mask[row]).count();
            assert_eq!(folds, usize::from(!test), "row {row}");
        }
        let split = fold_masks(
            10_000,
            TuningMethod::TrainValidationSplit { train_ratio: 0.75 },
            1,
        );
        let share = split[0].iter().filter(|v| **v).count() as f64 / 10_000.0;
        assert!((share - 0.25).abs() < 0.03);
    }
}
