//! A tree-ensemble training job: read the table, split, fit, evaluate, publish the version
//! (our model, the LightGBM export, metrics with feature importances).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::algo::trees::{self, TreeParams, TreeTask, lightgbm};
use crate::artifact::{self, SavedTrees, store::Staging};
use crate::config::{
    GridPoint, HandleInvalid, JobConfig, ModelConfig, SplitMethod, TrainTask, Tuning,
    ValidationSource,
};
use crate::dataset::split::{self, mix, unit};
use crate::dataset::tabular::{FeatureKind, Tabular};
use crate::eval::metric::{self, Metric};
use crate::eval::{classification, regression};
use crate::exec::memory::{self, Phase};
use crate::exec::{Progress, ResourceError};
use crate::ingest::{self, IngestError};
use crate::report::Summary;

/// Stream of the validation part, apart from the test split's.
const VALIDATION_STREAM: u64 = 0x0056_414C_4944;

pub fn train(
    config: &JobConfig,
    task: &TrainTask,
    params: &TreeParams,
    validation: &ValidationSource,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut durations = BTreeMap::new();

    memory::set_phase(Phase::Ingesting);
    let step = progress.step("reading input");
    let mut ingested = ingest::table::read_training_table(
        &task.input,
        params.task,
        config.seed,
        task.split.time_column(),
    )?;
    let table = &ingested.table;
    let elapsed = step.finish(&format!(
        "{} rows, {} features",
        table.rows(),
        table.columns()
    ));
    durations.insert("ingest".to_owned(), elapsed.as_secs_f64());
    let separate_test = match &task.test_input {
        Some(test_input) => {
            let step = progress.step("reading test input");
            let handle_invalid = match &task.model {
                ModelConfig::Trees { handle_invalid, .. } => *handle_invalid,
                ModelConfig::Als { .. } => HandleInvalid::Error,
            };
            let test = ingest::table::read_test_table(
                test_input,
                table,
                params.task,
                handle_invalid,
                config.seed,
            )?;
            let elapsed = step.finish(&format!("{} rows", test.table.rows()));
            durations.insert("ingest_test".to_owned(), elapsed.as_secs_f64());
            Some(test)
        }
        None => None,
    };
    let mut fingerprints = ingested.fingerprints.clone();
    if let Some(test) = &separate_test {
        fingerprints.extend(test.fingerprints.iter().cloned());
    }
    super::report_heap(progress, "ingest");
    if let Some(summary) = super::unchanged_since_latest(config, task, &fingerprints, started) {
        return Ok(summary);
    }

    memory::set_phase(Phase::BuildingDataset);
    let phase = Instant::now();
    // With [input.test] every input row trains (or validates).
    let is_test = match (&separate_test, &task.split) {
        (Some(_), _) => vec![false; table.rows()],
        (None, SplitMethod::Time { column, boundary }) => {
            let Some(times) = ingested.times.take() else {
                return Err(IngestError::Malformed {
                    path: std::path::PathBuf::from("input"),
                    problem: format!(
                        "split.column = {column}: synthetic tables and LIBSVM files have no time column; read a file with one"
                    ),
                }
                .into());
            };
            super::time_split(&times, boundary)
        }
        (None, _) => split::test_mask(table.rows(), task.test_fraction, config.seed),
    };
    let is_validation: Vec<bool> = match validation {
        ValidationSource::None => vec![false; table.rows()],
        ValidationSource::Fraction(fraction) => {
            let stream = mix(config.seed, VALIDATION_STREAM);
            (0..table.rows())
                .map(|row| !is_test[row] && unit(stream, row as u64) < *fraction)
                .collect()
        }
        ValidationSource::Column(_) => ingested
            .validation
            .clone()
            .unwrap_or_default()
            .iter()
            .zip(&is_test)
            .map(|(validation, test)| *validation && !test)
            .collect(),
    };
    let is_train: Vec<bool> = is_test
        .iter()
        .zip(&is_validation)
        .map(|(test, validation)| !test && !validation)
        .collect();
    let train_rows = is_train.iter().filter(|t| **t).count();
    if train_rows == 0 {
        return Err(IngestError::Empty {
            reason: format!(
                "no training rows are left after the test split ({}) and the validation part",
                task.test_fraction
            ),
        }
        .into());
    }
    // Bins (one byte per value, row- and column-major) plus, per tree in flight, the row
    // statistics (up to 3 f64) and two row-index arrays.
    let in_flight = match params.ensemble {
        trees::Ensemble::RandomForest => config.threads.min(params.num_trees),
        trees::Ensemble::Gbt => 1,
    };
    let needed = train_rows * (2 * table.columns() + 32 * in_flight);
    ResourceError::check("the binned training table", needed, config)?;
    let train_table = table.select(&is_train);
    let validation_table = is_validation
        .iter()
        .any(|v| *v)
        .then(|| table.select(&is_validation));
    let (test_table, test_counts) = match separate_test {
        Some(test) => (test.table, Some(test.counts)),
        None => (table.select(&is_test), None),
    };
    durations.insert("prepare".to_owned(), phase.elapsed().as_secs_f64());

    let mut params = params.clone();
    let mut resolved_params = task.resolved_params.clone();
    let mut tuning_report = None;
    if let Some(tuning) = &task.tuning {
        memory::set_phase(Phase::Training);
        let outcome = tune(
            config,
            tuning,
            &train_table,
            validation_table.as_ref(),
            table,
            progress,
        )?;
        progress.info(outcome.table(tuning).trim_end());
        tuning_report = Some(outcome.report(tuning));
        let winner = &tuning.points[outcome.winner];
        if let ModelConfig::Trees { params: best, .. } = &winner.model {
            params = best.clone();
        }
        resolved_params = winner.resolved_params.clone();
    }
    let params = &params;

    memory::set_phase(Phase::Training);
    let (total, label) = match params.ensemble {
        trees::Ensemble::RandomForest => (params.num_trees, "training random forest"),
        trees::Ensemble::Gbt => (params.max_iter, "training gbt"),
    };
    let step = std::sync::Mutex::new(progress.counted(label, total as u64));
    let base = match &task.init_from {
        Some(path) => Some(load_base(path, table)?),
        None => None,
    };
    let model = trees::train_from(
        &train_table,
        params,
        validation_table
            .as_ref()
            .map(|table| trees::Validation { table }),
        base.as_ref(),
        &|done, detail| {
            // About ten lines per run when not on a terminal.
            let every = (total / 10).max(1);
            if (done % every == 0 || done == total)
                && let Ok(step) = step.lock()
            {
                step.update(done as u64, total as u64, detail);
            }
        },
    )?;
    let step = step
        .into_inner()
        .map_err(|_| anyhow::anyhow!("progress lock poisoned"))?;
    let elapsed = step.finish(&format!("{} trees", model.trees.len()));
    durations.insert("fit".to_owned(), elapsed.as_secs_f64());
    super::report_heap(progress, "fit");

    memory::set_phase(Phase::Evaluating);
    let phase = Instant::now();
    let step = progress.step("evaluating");
    let (mut metrics, evaluation) = evaluate(&model, &test_table, table.classes());
    step.finish(&format!("{} test rows", test_table.rows()));
    durations.insert("evaluate".to_owned(), phase.elapsed().as_secs_f64());
    let curves = serde_json::json!({
        "train_loss": model.train_loss,
        "validation_loss": model.validation_loss,
        "train_loss_name": "training loss",
        "loss_unit": model.loss.map_or("loss", |loss| match loss {
            trees::Loss::Logistic => "log loss",
            trees::Loss::Squared => "squared error",
            trees::Loss::Absolute => "absolute error",
        }),
        "evaluation": evaluation,
    });
    metrics["feature_importances"] = ranked_importances(
        &table.feature_names,
        model.feature_importances(table.columns()),
    );
    let explained = Instant::now();
    metrics["feature_contributions"] =
        mean_absolute_contributions(&model, &test_table, &table.feature_names);
    durations.insert(
        "contributions".to_owned(),
        explained.elapsed().as_secs_f64(),
    );
    metrics["counts"] = serde_json::json!({
        "rows_read": ingested.counts.rows_read,
        "rows_dropped_null": ingested.counts.rows_dropped_null,
        "rows_sampled_out": ingested.counts.rows_sampled_out,
        "rows": table.rows(),
        "features": table.columns(),
        "categorical_features": table.kinds.iter().filter(|k| matches!(k, FeatureKind::Categorical { .. })).count(),
        "train_rows": train_rows,
        "validation_rows": validation_table.as_ref().map_or(0, Tabular::rows),
        "test_rows": test_table.rows(),
    });
    if let Some(counts) = &test_counts {
        metrics["counts"]["test_rows_read"] = counts.rows_read.into();
        metrics["counts"]["test_rows_dropped_null"] = counts.rows_dropped_null.into();
    }
    if let Some(weights) = &table.weights {
        metrics["counts"]["weight_total"] = weights.iter().sum::<f64>().into();
        metrics["counts"]["rows_zero_weight"] = weights
            .iter()
            .filter(|weight| **weight == 0.0)
            .count()
            .into();
    }
    metrics["trees"] = serde_json::json!({
        "kept": model.trees.len(),
        "grown": model.trees_grown,
        "max_depth_reached": model.trees.iter().map(trees::Tree::depth).max().unwrap_or(0),
    });
    if !model.validation_loss.is_empty() {
        metrics["validation_loss"] = model.validation_loss.clone().into();
        metrics["best_iteration"] = model.trees.len().into();
    }
    metrics["threads"] = config.threads.into();
    if let Some(report) = &tuning_report {
        metrics["tuning"] = report.clone();
    }

    memory::set_phase(Phase::Publishing);
    let phase = Instant::now();
    let staging = Staging::create(&task.output_dir, &config.name)?;
    let label_column = task.input.table.label_name();
    let infos: Vec<lightgbm::FeatureInfo> = train_table
        .features
        .iter()
        .zip(&train_table.kinds)
        .map(|(values, kind)| match kind {
            FeatureKind::Categorical { names } => lightgbm::FeatureInfo::Categorical {
                names: names.clone(),
            },
            FeatureKind::Numeric => {
                let (min, max) = values
                    .iter()
                    .filter(|v| !v.is_nan())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(f64::from(v)), hi.max(f64::from(v)))
                    });
                if min <= max {
                    lightgbm::FeatureInfo::Numeric { min, max }
                } else {
                    lightgbm::FeatureInfo::Unused
                }
            }
        })
        .collect();
    let monotone = params.monotone_by_feature(&table.feature_names);
    let exported = lightgbm::export(&model, &table.feature_names, &infos, &monotone);
    let saved = SavedTrees {
        feature_names: table.feature_names.clone(),
        feature_kinds: table.kinds.clone(),
        label_column,
        label_names: table.label_names.clone(),
        model,
    };
    staging.write(
        artifact::TREES_MODEL,
        serde_json::to_string(&saved)?.as_bytes(),
    )?;
    let mut model_files = vec![artifact::TREES_MODEL];
    if let Some(text) = &exported {
        staging.write(artifact::LIGHTGBM_MODEL, text.as_bytes())?;
        model_files.push(artifact::LIGHTGBM_MODEL);
    }
    super::finish(
        config,
        task,
        super::Finished {
            staging,
            metrics,
            durations,
            params: resolved_params,
            tuning: tuning_report,
            inputs: fingerprints,
            model_files,
            started,
            phase,
            engine: None,
            curves,
        },
        progress,
    )
}

/// Test-split metrics: classification (accuracy, f1, auc_roc, auc_pr, log_loss, confusion
/// matrix) or regression (rmse, mae, r2); null when the test split is empty.
/// Also the report's curves of the same predictions (`eval::curves`).
fn evaluate(
    model: &trees::TreeModel,
    test: &Tabular,
    classes: usize,
) -> (serde_json::Value, serde_json::Value) {
    let predictions = predict_padded(model, test, classes);
    let metrics = test_metrics(
        model.task,
        &predictions,
        &test.labels,
        test.weights.as_deref(),
        test.label_names.as_deref(),
        classes,
    );
    if test.rows() == 0 {
        return (metrics, serde_json::Value::Null);
    }
    let curves = match model.task {
        TreeTask::Classification => {
            let names: Vec<String> = test
                .label_names
                .clone()
                .unwrap_or_else(|| (0..classes).map(|class| class.to_string()).collect());
            crate::eval::curves::classification(&predictions, &test.labels, &names)
        }
        TreeTask::Regression => {
            let predicted: Vec<f64> = predictions.iter().map(|p| p[0]).collect();
            crate::eval::curves::regression(&predicted, &test.labels)
        }
    };
    (metrics, curves)
}

/// The version `model.init_from` names, checked to have this table's features (names, kinds
/// and categories) and labels.
fn load_base(path: &std::path::Path, table: &Tabular) -> anyhow::Result<trees::TreeModel> {
    let loaded = artifact::load_version(path).map_err(|problem| crate::batch::ModelError {
        path: path.to_path_buf(),
        problem,
    })?;
    let artifact::SavedModel::Trees(saved) = loaded.model else {
        return Err(trees::TreeError::WarmStart {
            problem: format!("{} holds an als model, not gbt", path.display()),
        }
        .into());
    };
    let problem = if saved.feature_names != table.feature_names {
        Some(format!(
            "the base's features are {}, this table's {}",
            crate::text::shorten(&saved.feature_names.join(", "), 200),
            crate::text::shorten(&table.feature_names.join(", "), 200)
        ))
    } else if saved.feature_kinds != table.kinds {
        Some("the base's feature kinds or categories differ from this table's".to_owned())
    } else if saved.label_names != table.label_names {
        Some("the base's class labels differ from this table's".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(trees::TreeError::WarmStart { problem }.into());
    }
    Ok(saved.model)
}

/// Work (tree leaves x depth squared, summed over trees, per row) spent on explaining test
/// rows for `metrics.json`: about half a second on two cores.
const CONTRIBUTION_BUDGET: f64 = 1e8;

/// Mean |TreeSHAP contribution| per feature (summed over classes for multiclass models) over
/// evenly spaced test rows: as many as [`CONTRIBUTION_BUDGET`] allows for this model's size,
/// between 100 and 10,000 (a deep forest gets fewer rows than a shallow boosted model).
fn mean_absolute_contributions(
    model: &trees::TreeModel,
    test: &Tabular,
    names: &[String],
) -> serde_json::Value {
    let per_row: f64 = model
        .trees
        .iter()
        .map(|tree| {
            let leaves = tree
                .nodes
                .iter()
                .filter(|node| matches!(node, trees::Node::Leaf { .. }))
                .count() as f64;
            let depth = tree.depth() as f64;
            leaves * (depth * depth).max(1.0)
        })
        .sum();
    let wanted = (CONTRIBUTION_BUDGET / per_row.max(1.0)).clamp(100.0, 10_000.0) as usize;
    let rows = test.rows().min(wanted);
    if rows == 0 {
        return serde_json::Value::Null;
    }
    let every = test.rows() / rows;
    let chosen: Vec<bool> = (0..test.rows())
        .map(|row| row % every == 0 && row / every < rows)
        .collect();
    let sample = test.select(&chosen);
    let values = model.contributions(&sample);
    let features = names.len();
    let width = trees::shap::Explainer::group_count(model) * (features + 1);
    let mut totals = vec![0.0; features];
    for row in values.chunks_exact(width) {
        for group in row.chunks_exact(features + 1) {
            for (total, value) in totals.iter_mut().zip(group) {
                *total += value.abs();
            }
        }
    }
    let means = totals
        .iter()
        .map(|total| total / sample.rows() as f64)
        .collect();
    serde_json::json!({
        "rows": sample.rows(),
        "features": ranked_by_feature(names, means, "mean_abs"),
    })
}

/// Feature importances by name, largest first (ties by name), as metrics.json lists them.
pub(crate) fn ranked_importances(names: &[String], importances: Vec<f64>) -> serde_json::Value {
    ranked_by_feature(names, importances, "importance")
}

/// `[{"feature": name, key: value}, ...]`, largest value first (ties by name).
fn ranked_by_feature(names: &[String], values: Vec<f64>, key: &str) -> serde_json::Value {
    let mut ranked: Vec<(&String, f64)> = names.iter().zip(values).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .iter()
        .map(|(name, value)| serde_json::json!({"feature": name, key: value}))
        .collect()
}

/// The test metrics from per-row predictions (class probabilities, or the value in `[0]`),
/// for models of either engine.
pub(crate) fn test_metrics(
    task: TreeTask,
    predictions: &[Vec<f64>],
    labels: &[f64],
    weights: Option<&[f64]>,
    label_names: Option<&[String]>,
    classes: usize,
) -> serde_json::Value {
    match task {
        TreeTask::Classification => {
            if labels.is_empty() {
                return serde_json::json!({"accuracy": null, "f1": null, "auc_roc": null, "auc_pr": null, "log_loss": null});
            }
            let metrics = classification::evaluate_weighted(predictions, labels, weights, classes);
            serde_json::json!({
                "accuracy": metrics.accuracy,
                "f1": metrics.f1,
                "auc_roc": metrics.auc_roc,
                "auc_pr": metrics.auc_pr,
                "log_loss": metrics.log_loss,
                "confusion_matrix": metrics.confusion,
                "classes": label_names.map_or_else(|| (0..classes).map(|c| c.to_string()).collect(), <[String]>::to_vec),
            })
        }
        TreeTask::Regression => {
            let Some(weights) = weights else {
                let errors = regression::evaluate(
                    predictions
                        .iter()
                        .zip(labels)
                        .map(|(p, y)| (Some(p[0] as f32), *y as f32)),
                );
                let mean = labels.iter().sum::<f64>() / labels.len().max(1) as f64;
                let total: f64 = labels.iter().map(|y| (y - mean).powi(2)).sum();
                let residual: f64 = predictions
                    .iter()
                    .zip(labels)
                    .map(|(p, y)| (p[0] - y).powi(2))
                    .sum();
                let r2 = (total > 0.0).then(|| 1.0 - residual / total);
                return serde_json::json!({"rmse": errors.rmse, "mae": errors.mae, "r2": r2});
            };
            if weights.iter().sum::<f64>() <= 0.0 {
                return serde_json::json!({"rmse": null, "mae": null, "r2": null});
            }
            let pairs: Vec<(f64, f64)> = predictions
                .iter()
                .zip(labels)
                .map(|(p, y)| (p[0], *y))
                .collect();
            let scores = metric::regression_scores_weighted(&pairs, Some(weights));
            serde_json::json!({"rmse": scores.rmse, "mae": scores.mae, "r2": scores.r2})
        }
    }
}

/// Cross-validation (or a train-validation split) of the tree grid over the training rows; the
/// early-stopping part, when there is one, is the same for every fold and the final fit.
fn tune(
    config: &JobConfig,
    tuning: &Tuning,
    train_table: &Tabular,
    validation_table: Option<&Tabular>,
    table: &Tabular,
    progress: &Progress,
) -> anyhow::Result<super::tuning::Outcome> {
    let classes = table.classes();
    let classification = tuning.points.iter().any(|point| {
        matches!(&point.model, ModelConfig::Trees { params, .. } if params.task == TreeTask::Classification)
    });
    let metric = tuning.metric.unwrap_or(match (classification, classes) {
        (false, _) => Metric::Rmse,
        (true, 2) => Metric::AucRoc,
        (true, _) => Metric::F1,
    });
    if classification && classes > 2 && matches!(metric, Metric::AucRoc | Metric::AucPr) {
        anyhow::bail!(
            "tuning.metric = \"{}\" needs two classes; the label has {classes} (use f1, accuracy or log_loss)",
            metric.name()
        );
    }
    let masks = super::tuning::fold_masks(train_table.rows(), tuning.method, config.seed);
    let score = |point: &GridPoint, fold: usize| -> anyhow::Result<f64> {
        let ModelConfig::Trees { params, .. } = &point.model else {
            anyhow::bail!("a tree grid point holds another model");
        };
        let keep: Vec<bool> = masks[fold].iter().map(|held| !held).collect();
        let fit_table = train_table.select(&keep);
        let held = train_table.select(&masks[fold]);
        let model = trees::train(
            &fit_table,
            params,
            validation_table.map(|table| trees::Validation { table }),
            &|_, _| {},
        )?;
        let predictions = predict_padded(&model, &held, classes);
        Ok(match params.task {
            TreeTask::Classification => {
                let scores = classification::evaluate_weighted(
                    &predictions,
                    &held.labels,
                    held.weights.as_deref(),
                    classes,
                );
                metric.of_classification(&scores).unwrap_or(f64::NAN)
            }
            TreeTask::Regression => {
                let pairs: Vec<(f64, f64)> = predictions
                    .iter()
                    .zip(&held.labels)
                    .map(|(p, y)| (p[0], *y))
                    .collect();
                metric
                    .of_regression(&metric::regression_scores_weighted(
                        &pairs,
                        held.weights.as_deref(),
                    ))
                    .unwrap_or(f64::NAN)
            }
        })
    };
    super::tuning::search(tuning, metric, masks.len(), &score, progress)
}

/// Predictions with one probability per class of the whole table: a class the training part
/// never saw gets probability 0.
fn predict_padded(model: &trees::TreeModel, table: &Tabular, classes: usize) -> Vec<Vec<f64>> {
    let mut predictions = model.predict(table);
    if model.task == TreeTask::Classification {
        for prediction in &mut predictions {
            prediction.resize(classes, 0.0);
        }
    }
    predictions
}
