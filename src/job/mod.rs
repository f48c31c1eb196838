//! One training job from a checked configuration to a published version:
//! ingest -> split -> fit -> evaluate -> publish, recording what each phase took.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::algo::als::{self, AlsModel};
use crate::artifact::{self, Manifest, codec, store::Staging};
use crate::config::{
    ColdStartStrategy, JobConfig, ModelConfig, SplitMethod, TimeBoundary, TrainTask,
};
use crate::dataset::{Csr, split};
use crate::exec::memory::{self, Phase};
use crate::exec::{Progress, ResourceError};
use crate::ingest;
use crate::report::Summary;

mod evaluation;
mod publish;
pub(crate) mod trees;
mod tuning;

use evaluation::{evaluate, evaluate_ranking, mean_rating};
use publish::publish_version;

pub fn train(config: &JobConfig, task: &TrainTask, progress: &Progress) -> anyhow::Result<Summary> {
    // `s3://` sources are fetched first; the copies live until the job ends.
    let mut task = task.clone();
    let _staged = (
        ingest::remote::stage(&mut task.input)?,
        match &mut task.test_input {
            Some(test_input) => ingest::remote::stage(test_input)?,
            None => None,
        },
    );
    let task = &task;
    match &task.model {
        ModelConfig::Als { params, cold_start } => {
            train_als(config, task, params, cold_start, progress)
        }
        ModelConfig::Trees {
            params, validation, ..
        } => trees::train(config, task, params, validation, progress),
    }
}

/// The ALS version `model.init_from` names, of this job's rank.
fn load_als_base(
    path: &std::path::Path,
    rank: usize,
) -> anyhow::Result<crate::artifact::codec::SavedAls> {
    let loaded =
        crate::artifact::load_version(path).map_err(|problem| crate::batch::ModelError {
            path: path.to_path_buf(),
            problem,
        })?;
    let problem = match loaded.model {
        crate::artifact::SavedModel::Als(model) if model.rank == rank => return Ok(model),
        crate::artifact::SavedModel::Als(model) => format!(
            "model.init_from: the base has rank {}, this job rank {rank}; a warm start keeps the rank",
            model.rank
        ),
        crate::artifact::SavedModel::Trees(_) => {
            "model.init_from: it holds a tree model; an als job starts from an als version"
                .to_owned()
        }
    };
    Err(ingest::IngestError::Malformed {
        path: path.to_path_buf(),
        problem,
    }
    .into())
}

/// Which rows the split holds out, by `split.method`.
fn test_rows(
    task: &TrainTask,
    seed: u64,
    ratings: &crate::dataset::Ratings,
    times: Option<Vec<f64>>,
) -> Vec<bool> {
    let times = times.unwrap_or_default();
    match &task.split {
        SplitMethod::Random => split::test_mask(ratings.len(), task.test_fraction, seed),
        SplitMethod::Time { boundary, .. } => time_split(&times, boundary),
        SplitMethod::PerUserLast { n, .. } => split::per_user_last_mask(&ratings.user, &times, *n),
    }
}

/// The rows `split.method = "time"` holds out: at or after the cutoff, or in the last fraction
/// of the time range (ALS and tree jobs alike).
pub(crate) fn time_split(times: &[f64], boundary: &TimeBoundary) -> Vec<bool> {
    let cutoff = match boundary {
        TimeBoundary::Cutoff(cutoff) => *cutoff,
        TimeBoundary::Fraction(fraction) => split::fraction_cutoff(times, *fraction),
    };
    split::time_mask(times, cutoff)
}

fn split_description(task: &TrainTask) -> String {
    match &task.split {
        SplitMethod::Random => format!("test_fraction = {}", task.test_fraction),
        SplitMethod::Time { column, boundary } => match boundary {
            TimeBoundary::Cutoff(cutoff) => format!("split.column = {column}, cutoff {cutoff}"),
            TimeBoundary::Fraction(fraction) => {
                format!("split.column = {column}, fraction = {fraction}")
            }
        },
        SplitMethod::PerUserLast { column, n } => {
            format!("split.column = {column}, per_user_last n = {n}")
        }
    }
}

fn train_als(
    config: &JobConfig,
    task: &TrainTask,
    params: &crate::algo::als::AlsParams,
    cold_start: &ColdStartStrategy,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let (mut params, mut cold_start) = (params.clone(), *cold_start);
    let mut resolved_params = task.resolved_params.clone();
    let mut tuning_report = None;
    let started = Instant::now();
    let mut durations = BTreeMap::new();

    memory::set_phase(Phase::Ingesting);
    let step = progress.step("reading input");
    let mut ingested = ingest::read_ratings(&task.input, config.seed, task.split.time_column())?;
    // [input.test]: its ratings follow the input's, over id tables holding both, and are the
    // test rows.
    let separate_test = match &task.test_input {
        Some(test_input) => {
            let test =
                ingest::read_ratings(test_input, config.seed, None).map_err(
                    |error| match error {
                        ingest::IngestError::Empty { reason } => ingest::IngestError::Empty {
                            reason: format!("[input.test]: {reason}"),
                        },
                        other => other,
                    },
                )?;
            let train_rows = ingested.ratings.len();
            let test_rows = test.ratings.len();
            let train = std::mem::take(&mut ingested.ratings);
            ingested.ratings = crate::dataset::Ratings::concat(train, test.ratings);
            ingested.fingerprints.extend(test.fingerprints);
            ingested.counts.rows_read += test.counts.rows_read;
            ingested.counts.rows_dropped_null += test.counts.rows_dropped_null;
            ingested.counts.rows_sampled_out += test.counts.rows_sampled_out;
            let mut is_test = vec![false; train_rows];
            is_test.resize(train_rows + test_rows, true);
            Some(is_test)
        }
        None => None,
    };
    let ratings = &ingested.ratings;
    let elapsed = step.finish(&format!(
        "{} ratings, {} users, {} items",
        ratings.len(),
        ratings.users(),
        ratings.items()
    ));
    durations.insert("ingest".to_owned(), elapsed.as_secs_f64());
    report_heap(progress, "ingest");
    if let Some(summary) = unchanged_since_latest(config, task, &ingested.fingerprints, started) {
        return Ok(summary);
    }

    memory::set_phase(Phase::BuildingDataset);
    let phase = Instant::now();
    let is_test = match separate_test {
        Some(is_test) => is_test,
        None => test_rows(task, config.seed, ratings, ingested.times.take()),
    };
    let total_ratings = ratings.len();
    let test_count = is_test.iter().filter(|test| **test).count();
    let train_count = total_ratings - test_count;
    if train_count == 0 {
        return Err(ingest::IngestError::Empty {
            reason: format!(
                "all {total_ratings} rows went to the test split ({})",
                split_description(task)
            ),
        }
        .into());
    }
    if let Some(tuning) = &task.tuning {
        memory::set_phase(Phase::Training);
        let (outcome, winner) = tune_als(config, task, tuning, ratings, &is_test, progress)?;
        progress.info(outcome.table(tuning).trim_end());
        tuning_report = Some(outcome.report(tuning));
        if let ModelConfig::Als {
            params: best,
            cold_start: best_cold_start,
        } = &winner.model
        {
            params = best.clone();
            cold_start = *best_cold_start;
        }
        resolved_params = winner.resolved_params.clone();
        memory::set_phase(Phase::BuildingDataset);
    }
    let params = &params;
    let cold_start = &cold_start;
    // Both CSR copies (column index + value per rating) and both factor tables.
    let needed = train_count * 16 + (ratings.users() + ratings.items()) * (16 + params.rank * 4);
    ResourceError::check("the training matrices and factors", needed, config)?;
    // The user side is sorted from the triples; the test triples are then all that is kept of
    // them, and the item side is the user side transposed. Sorting both sides from the
    // triples held the triples and both matrices at once: at 100M ratings, 2.5 GB.
    let by_user = Csr::build_where(
        ratings.users(),
        &ratings.user,
        &ratings.item,
        &ratings.rating,
        &is_test,
        false,
    );
    ingested.ratings.retain_where(&is_test);
    drop(is_test);
    let by_item = by_user.transposed(ingested.ratings.items());
    durations.insert("prepare".to_owned(), phase.elapsed().as_secs_f64());
    report_heap(progress, "prepare");

    memory::set_phase(Phase::Training);
    let step = progress.counted("training als", params.max_iter as u64);
    let mut train_rmse = f64::NAN;
    let mut train_loss = Vec::with_capacity(params.max_iter);
    let base = match &task.init_from {
        Some(path) => Some(load_als_base(path, params.rank)?),
        None => None,
    };
    let initial = base.as_ref().map(|base| als::InitialFactors {
        users: base.user_ids.rows_of(&ingested.ratings.user_ids),
        user_factors: &base.user_factors,
        items: base.item_ids.rows_of(&ingested.ratings.item_ids),
        item_factors: &base.item_factors,
    });
    let model = als::train_from(
        &by_user,
        &by_item,
        params,
        initial.as_ref(),
        &mut |iteration, loss| {
            train_rmse = loss;
            train_loss.push(loss);
            step.update(
                iteration as u64,
                params.max_iter as u64,
                &format!("train_rmse {loss:.4}"),
            );
        },
    )?;
    let elapsed = step.finish(&format!("train_rmse {train_rmse:.4}"));
    durations.insert("fit".to_owned(), elapsed.as_secs_f64());
    report_heap(progress, "fit");
    drop(by_item);

    publish_als(
        config,
        task,
        FittedAls {
            model,
            by_user,
            test: ingested.ratings,
            counts: ingested.counts,
            train_rmse,
            train_loss,
            implicit: params.implicit_prefs,
            cold_start: *cold_start,
            resolved_params,
            tuning_report,
            inputs: ingested.fingerprints,
            durations,
            started,
            engine: None,
            staging: None,
        },
        progress,
    )
}

/// A fitted ALS model and what evaluating and publishing it needs, from either engine.
pub(crate) struct FittedAls {
    pub model: AlsModel,
    /// The training interactions by user (over the model's indices).
    pub by_user: Csr,
    /// The test triples, with the id tables of every user and item.
    pub test: crate::dataset::Ratings,
    pub counts: ingest::IngestCounts,
    pub train_rmse: f64,
    /// The training loss after each iteration (empty when the engine does not report it).
    pub train_loss: Vec<f64>,
    pub implicit: bool,
    pub cold_start: ColdStartStrategy,
    pub resolved_params: serde_json::Value,
    pub tuning_report: Option<serde_json::Value>,
    pub inputs: Vec<crate::ingest::Fingerprint>,
    pub durations: BTreeMap<String, f64>,
    pub started: Instant,
    /// The Spark engine's record for the manifest; `None` for the native engine.
    pub engine: Option<serde_json::Value>,
    /// A staging directory that already holds some of the version (the Spark model), and
    /// those files' names.
    pub staging: Option<(Staging, Vec<&'static str>)>,
}

/// Test metrics (RMSE/MAE, or ranking metrics for implicit feedback), the model files, the
/// manifest and the publish: the part of an ALS job both engines share.
pub(crate) fn publish_als(
    config: &JobConfig,
    task: &TrainTask,
    fitted: FittedAls,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let FittedAls {
        model,
        by_user,
        test,
        counts,
        train_rmse,
        train_loss,
        implicit,
        cold_start,
        resolved_params,
        tuning_report,
        inputs,
        mut durations,
        started,
        engine,
        staging,
    } = fitted;
    let test = &test;
    let cold_start = &cold_start;
    // The training matrix holds exactly the training triples, `test` exactly the test ones.
    let (train_count, test_count) = (by_user.nnz(), test.len());
    let total_ratings = train_count + test_count;
    memory::set_phase(Phase::Evaluating);
    let phase = Instant::now();
    let step = progress.step("evaluating");
    // The figure to beat (explicit feedback): every predicted test rating guessed as the
    // training mean.
    let training_mean = (!implicit).then(|| mean_rating(&by_user.values));
    let (metrics, baseline) = evaluate(&model, test, training_mean);
    let ranking = implicit.then(|| evaluate_ranking(&model, test, &by_user, task.ranking_k));
    step.finish(&format!("{} test ratings", test.len()));
    durations.insert("evaluate".to_owned(), phase.elapsed().as_secs_f64());
    let cold = metrics.missing;
    let mut metrics_json = serde_json::json!({
        "rmse": metrics.rmse,
        "mae": metrics.mae,
        "train_rmse": if train_rmse.is_finite() { Some(train_rmse) } else { None },
        "counts": {
            "rows_read": counts.rows_read,
            "rows_dropped_null": counts.rows_dropped_null,
            "rows_sampled_out": counts.rows_sampled_out,
            "ratings": total_ratings,
            "users": test.users(),
            "items": test.items(),
            "train_ratings": train_count,
            "test_ratings": test_count,
            "test_predicted": metrics.predicted,
            "test_cold_start": cold,
            "cold_start_strategy": cold_start,
        },
        "threads": config.threads,
    });
    if let Some(baseline) = baseline {
        metrics_json["baseline"] = serde_json::json!({
            "rule": "every rating guessed as the training mean",
            "rmse": baseline.rmse,
            "mae": baseline.mae,
        });
    }
    if let Some(ranking) = &ranking {
        // RMSE of raw counts against preference scores means nothing for implicit feedback.
        metrics_json["rmse"] = serde_json::Value::Null;
        metrics_json["mae"] = serde_json::Value::Null;
        for (key, value) in [
            ("precision_at_k", ranking.model.precision_at_k),
            ("recall_at_k", ranking.model.recall_at_k),
            ("ndcg_at_k", ranking.model.ndcg_at_k),
            ("map_at_k", ranking.model.map_at_k),
        ] {
            metrics_json[key] = value.into();
        }
        metrics_json["ranking"] = serde_json::json!({
            "k": task.ranking_k,
            "users_evaluated": ranking.model.users,
            "test_users_cold_start": ranking.cold_start_users,
            "popularity_baseline": ranking.popularity,
        });
    }
    if *cold_start == ColdStartStrategy::Drop {
        metrics_json["counts"]["test_cold_start_dropped"] = cold.into();
    } else {
        metrics_json["counts"]["test_missing_predictions"] = cold.into();
    }

    if let Some(report) = &tuning_report {
        metrics_json["tuning"] = report.clone();
    }
    memory::set_phase(Phase::Publishing);
    let phase = Instant::now();
    let (staging, mut model_files) = match staging {
        Some((staging, files)) => (staging, files),
        None => (Staging::create(&task.output_dir, &config.name)?, Vec::new()),
    };
    let user_activity = crate::eval::curves::log_histogram(
        by_user
            .offsets
            .windows(2)
            .map(|row| (row[1] - row[0]) as u64),
    );
    let saved = codec::SavedAls::from_model(&model, &test.user_ids, &test.item_ids, by_user);
    let curves = serde_json::json!({
        "train_loss": train_loss,
        "train_loss_name": if implicit { "training loss (weighted)" } else { "training RMSE" },
        "loss_unit": if implicit { "loss" } else { "RMSE" },
        "user_activity": user_activity,
        "item_popularity": crate::eval::curves::log_histogram(
            saved.item_counts().into_iter().map(u64::from)
        ),
    });
    staging.write_with(artifact::ALS_MODEL, |out| {
        codec::write_als(&saved, &mut &mut *out)
    })?;
    for (name, ids, factors) in [
        (artifact::USER_FACTORS, &saved.user_ids, &saved.user_factors),
        (artifact::ITEM_FACTORS, &saved.item_ids, &saved.item_factors),
    ] {
        let path = staging.path().join(name);
        ingest::tables::write_factors(&path, ids, factors, saved.rank)?;
        staging.sync(name)?;
    }
    finish(
        config,
        task,
        Finished {
            staging,
            metrics: metrics_json,
            durations,
            params: resolved_params,
            tuning: tuning_report,
            inputs,
            model_files: {
                model_files.extend([
                    artifact::ALS_MODEL,
                    artifact::USER_FACTORS,
                    artifact::ITEM_FACTORS,
                ]);
                model_files
            },
            started,
            phase,
            engine,
            curves,
        },
        progress,
    )
}

/// With `output.skip_unchanged`: the summary of a run that publishes nothing, when the current
/// latest was trained on inputs with the same content hashes and from the same resolved job.
/// A latest that does not check out (damaged, unreadable) never counts as unchanged.
pub(crate) fn unchanged_since_latest(
    config: &JobConfig,
    task: &TrainTask,
    inputs: &[crate::ingest::Fingerprint],
    started: Instant,
) -> Option<Summary> {
    if !task.skip_unchanged {
        return None;
    }
    let (version, dir) = artifact::store::current_latest(&task.output_dir.join(&config.name))?;
    let (manifest, metrics) =
        artifact::load_description(&dir, artifact::verify::Depth::Hashes).ok()?;
    let resolved = std::fs::read_to_string(dir.join(artifact::RESOLVED_JOB)).ok()?;
    let same_inputs = manifest.inputs.len() == inputs.len()
        && manifest.inputs.iter().zip(inputs).all(|(old, new)| {
            old.blake3 == new.blake3 && old.bytes == new.bytes && old.rows == new.rows
        });
    if !same_inputs || resolved != config.resolved_toml || manifest.engine != "native" {
        return None;
    }
    Some(Summary {
        status: "ok",
        job: config.name.clone(),
        kind: "train",
        version: Some(version),
        version_dir: Some(dir.display().to_string()),
        output: None,
        algorithm: manifest.algorithm,
        metrics,
        master: config.master.to_string(),
        threads: config.threads,
        duration_s: started.elapsed().as_secs_f64(),
        peak_heap_bytes: memory::peak_bytes(),
        dry_run: false,
        unchanged: true,
        promoted: Some(true),
        promotion: None,
    })
}

/// What a train job has written into its staging directory, ready to publish.
pub(crate) struct Finished {
    pub staging: Staging,
    pub metrics: serde_json::Value,
    pub durations: BTreeMap<String, f64>,
    /// The parameters that were fitted (the winner's, after tuning).
    pub params: serde_json::Value,
    pub tuning: Option<serde_json::Value>,
    pub inputs: Vec<crate::ingest::Fingerprint>,
    /// The model's own files, already in the staging directory.
    pub model_files: Vec<&'static str>,
    pub started: Instant,
    /// When publishing began.
    pub phase: Instant,
    /// The Spark engine's record (version, command line, estimator); `None`: native.
    pub engine: Option<serde_json::Value>,
    /// What the report plots (`curves.json`): see [`crate::eval::curves`].
    pub curves: serde_json::Value,
}

/// The tail every train job shares: timings and memory into the metrics, metrics, resolved job
/// and manifest into the version, publish (through the promotion gate), summarize.
pub(crate) fn finish(
    config: &JobConfig,
    task: &TrainTask,
    finished: Finished,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let Finished {
        staging,
        mut metrics,
        mut durations,
        params,
        tuning,
        inputs,
        model_files,
        started,
        phase,
        engine,
        curves,
    } = finished;
    durations.insert("before_publish".to_owned(), started.elapsed().as_secs_f64());
    metrics["timings_s"] = serde_json::to_value(&durations)?;
    metrics["peak_heap_bytes"] = memory::peak_bytes().into();
    metrics["peak_rss_bytes"] = memory::peak_rss_bytes().into();
    let manifest = Manifest {
        format_version: artifact::FORMAT_VERSION,
        tool: "submit".to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        engine: if engine.is_some() { "spark" } else { "native" }.to_owned(),
        spark: engine,
        kind: "train".to_owned(),
        job: config.name.clone(),
        algorithm: task.model.algorithm().to_owned(),
        params,
        tuning,
        promotion: None,
        seed: config.seed,
        master: config.master.to_string(),
        threads: config.threads,
        driver_memory: config.driver_memory.to_string(),
        executor_memory: config.executor_memory.to_string(),
        inputs,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        durations_s: durations,
        // Recorded with sizes and hashes once every file is written (publish_version).
        files: Vec::new(),
    };
    staging.write(
        artifact::METRICS,
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    staging.write(artifact::RESOLVED_JOB, config.resolved_toml.as_bytes())?;
    staging.write(artifact::CURVES, serde_json::to_string(&curves)?.as_bytes())?;
    let step = progress.step("publishing");
    let report = |manifest: &Manifest, version: u64| {
        crate::report::html::render(&crate::report::html::VersionFiles {
            label: format!("v{version}"),
            manifest: serde_json::to_value(manifest).unwrap_or_default(),
            metrics: metrics.clone(),
            curves: curves.clone(),
            resolved_toml: config.resolved_toml.clone(),
        })
    };
    let (published, mut promotion) =
        publish_version(staging, manifest, &metrics, task, &model_files, report)?;
    step.finish(&format!("v{}", published.version));
    if let Some(problem) = &published.latest_error {
        // The version is complete and stays; only the pointer is stuck. Say so plainly rather
        // than fail (a retry would only add another version).
        progress.info(&format!(
            "warning: published v{} but latest could not move to it: {problem}",
            published.version
        ));
        promotion = Some(serde_json::json!({
            "promoted": false,
            "current_version": null,
            "reason": format!("published, but latest could not move: {problem}"),
        }));
    }
    progress.detail(&format!(
        "published in {:.3}s",
        phase.elapsed().as_secs_f64()
    ));
    Ok(Summary {
        status: "ok",
        job: config.name.clone(),
        kind: "train",
        version: Some(published.version),
        version_dir: Some(published.dir.display().to_string()),
        output: None,
        algorithm: task.model.algorithm().to_owned(),
        metrics,
        master: config.master.to_string(),
        threads: config.threads,
        duration_s: started.elapsed().as_secs_f64(),
        peak_heap_bytes: memory::peak_bytes(),
        dry_run: false,
        unchanged: false,
        promoted: Some(published.promoted),
        promotion,
    })
}

/// With --verbose: the heap now and its peak so far, to see which phase sets the peak.
pub(crate) fn report_heap(progress: &Progress, phase: &str) {
    progress.detail(&format!(
        "heap after {phase}: {:.1} MiB live, {:.1} MiB peak so far",
        memory::live_bytes() as f64 / (1 << 20) as f64,
        memory::peak_bytes() as f64 / (1 << 20) as f64
    ));
}

/// Cross-validation (or a train-validation split) of the ALS grid over the training ratings.
fn tune_als<'a>(
    config: &JobConfig,
    task: &TrainTask,
    tuning: &'a crate::config::Tuning,
    ratings: &crate::dataset::Ratings,
    is_test: &[bool],
    progress: &Progress,
) -> anyhow::Result<(tuning::Outcome, &'a crate::config::GridPoint)> {
    use crate::eval::metric::{self, Metric, MetricKind};
    let implicit = tuning.points.iter().any(
        |point| matches!(&point.model, ModelConfig::Als { params, .. } if params.implicit_prefs),
    );
    let metric = tuning.metric.unwrap_or(if implicit {
        Metric::NdcgAtK
    } else {
        Metric::Rmse
    });
    let masks = tuning::fold_masks_over(is_test, tuning.method, config.seed);
    let score = |point: &crate::config::GridPoint, fold: usize| -> anyhow::Result<f64> {
        let ModelConfig::Als { params, .. } = &point.model else {
            anyhow::bail!("an als grid point holds another model");
        };
        let held_out = &masks[fold];
        let excluded: Vec<bool> = is_test
            .iter()
            .zip(held_out)
            .map(|(test, held)| *test || *held)
            .collect();
        let by_user = Csr::build_where(
            ratings.users(),
            &ratings.user,
            &ratings.item,
            &ratings.rating,
            &excluded,
            false,
        );
        let by_item = by_user.transposed(ratings.items());
        let model = als::train(&by_user, &by_item, params, &mut |_, _| {})?;
        let mut held = ratings.clone();
        held.retain_where(held_out);
        Ok(match metric.kind() {
            MetricKind::Ranking => {
                let ranking = evaluate_ranking(&model, &held, &by_user, task.ranking_k);
                metric.of_ranking(&ranking.model).unwrap_or(f64::NAN)
            }
            _ => {
                let pairs: Vec<(f64, f64)> = (0..held.len())
                    .filter_map(|row| {
                        model
                            .predict(held.user[row] as usize, held.item[row] as usize)
                            .map(|p| (f64::from(p), f64::from(held.rating[row])))
                    })
                    .collect();
                metric
                    .of_regression(&metric::regression_scores(&pairs))
                    .unwrap_or(f64::NAN)
            }
        })
    };
    let outcome = tuning::search(tuning, metric, masks.len(), &score, progress)?;
    let winner = &tuning.points[outcome.winner];
    Ok((outcome, winner))
}
