//! Batch jobs on a published model version: top-k recommendations and pair scoring.
//!
//! The model is read from its compact binary form (milliseconds); ids in input files are mapped
//! to the model's rows; the output table is written to a temporary file beside the target and
//! renamed over it, so a reader never sees half a file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::algo::als::recommend::{self, ItemScorer};
use crate::artifact::{self, SavedModel, VersionError, codec::SavedAls};
use crate::config::{
    InputConfig, JobConfig, OutputFile, OutputFormat, PredictTask, RecommendColdStart,
    RecommendTarget, RecommendTask, Source,
};
use crate::dataset::Ids;
use crate::exec::Progress;
use crate::exec::memory::{self, Phase};
use crate::ingest::tables::{self, OutputColumn, TableFormat};
use crate::ingest::{self, IngestError};
use crate::report::Summary;

/// The model a batch job names cannot be used (exit code 3, like other input problems).
#[derive(Debug, thiserror::Error)]
#[error("cannot use the model version at {}: {problem}", path.display())]
pub struct ModelError {
    pub path: PathBuf,
    pub problem: VersionError,
}

/// A loaded ALS version: its directory and model.
struct LoadedAls {
    dir: PathBuf,
    model: SavedAls,
    /// The manifest's resolved parameters (the loss, for fold-in).
    params: serde_json::Value,
}

fn load_als(path: &Path, job: &str) -> Result<LoadedAls, ModelError> {
    let loaded = load(path)?;
    match loaded.model {
        SavedModel::Als(model) => Ok(LoadedAls {
            dir: loaded.dir,
            model,
            params: loaded.manifest.params,
        }),
        SavedModel::Trees(_) => Err(ModelError {
            path: path.to_path_buf(),
            problem: VersionError::Damaged {
                path: path.to_path_buf(),
                problem: format!(
                    "it holds a {} model; {job} jobs need an als model",
                    loaded.manifest.algorithm
                ),
            },
        }),
    }
}

fn load(path: &Path) -> Result<artifact::LoadedVersion, ModelError> {
    artifact::load_version(path).map_err(|problem| ModelError {
        path: path.to_path_buf(),
        problem,
    })
}

fn read_ids(
    input: &InputConfig,
    seed: u64,
    columns: &[&crate::config::ColumnRef],
) -> Result<Vec<Ids>, IngestError> {
    if !matches!(input.source, Source::Files(_)) && !ingest::prepare::applies(input) {
        return Err(IngestError::Empty {
            reason: "batch jobs read ids from files".to_owned(),
        });
    }
    let (raw, _) = ingest::reader::read_id_columns(input, seed, columns)?;
    Ok(raw)
}

/// Writes the table next to its destination, then renames it into place. The writer holds a
/// lock on its temporary file, so temporaries left by killed runs (nobody holds them) are
/// removed by the next run writing the same destination.
fn publish_table(output: &OutputFile, columns: Vec<OutputColumn>) -> anyhow::Result<()> {
    let parent = output
        .path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(artifact::io_error(parent, "create the directory"))?;
    let file_name = output.path.file_name().map_or_else(
        || "output".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let prefix = format!(".{file_name}.tmp-");
    remove_abandoned_temporaries(parent, &prefix);
    let temporary = output
        .path
        .with_file_name(format!("{prefix}{}", std::process::id()));
    let owner = std::fs::File::create(&temporary)
        .and_then(|file| file.lock().map(|()| file))
        .map_err(artifact::io_error(&temporary, "create"))?;
    let format = match output.format {
        OutputFormat::Csv => TableFormat::Csv,
        OutputFormat::Parquet => TableFormat::Parquet,
    };
    let written = tables::write_table(&temporary, format, columns)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            std::fs::File::open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(artifact::io_error(&temporary, "flush"))?;
            std::fs::rename(&temporary, &output.path)
                .map_err(artifact::io_error(&output.path, "replace"))?;
            Ok(())
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    drop(owner);
    written
}

/// Removes `prefix*` files in `dir` that no live writer holds a lock on.
fn remove_abandoned_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(prefix));
        if !is_ours || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        let path = entry.path();
        if artifact::store::unheld(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn summary(
    config: &JobConfig,
    output: &OutputFile,
    metrics: serde_json::Value,
    started: Instant,
    algorithm: &str,
) -> Summary {
    Summary {
        status: "ok",
        job: config.name.clone(),
        kind: config.task.kind(),
        version: None,
        version_dir: None,
        output: Some(output.path.display().to_string()),
        algorithm: algorithm.to_owned(),
        metrics,
        master: config.master.to_string(),
        threads: config.threads,
        duration_s: started.elapsed().as_secs_f64(),
        peak_heap_bytes: memory::peak_bytes(),
        dry_run: false,
        unchanged: false,
        promoted: None,
        promotion: None,
    }
}

pub fn recommend(
    config: &JobConfig,
    task: &RecommendTask,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // `s3://` id lists are fetched first; the copies live until the job ends.
    let mut task = task.clone();
    let stage = |input: &mut Option<crate::config::InputConfig>| match input {
        Some(input) => ingest::remote::stage(input),
        None => Ok(None),
    };
    let _staged = (stage(&mut task.ids)?, stage(&mut task.users_from)?);
    let task = &task;
    memory::set_phase(Phase::Ingesting);
    let step = progress.step("loading the model");
    let loaded = load_als(&task.from, "recommend")?;
    let model = &loaded.model;
    step.finish(&format!(
        "{} users, {} items, rank {}",
        model.user_ids.len(),
        model.item_ids.len(),
        model.rank
    ));
    if task.target == RecommendTarget::SimilarItems {
        return similar_items(config, task, &loaded, progress, started);
    }
    let (query_ids, query_factors, candidate_ids, candidate_factors) = match task.target {
        RecommendTarget::Users | RecommendTarget::SimilarItems => (
            &model.user_ids,
            &model.user_factors,
            &model.item_ids,
            &model.item_factors,
        ),
        RecommendTarget::Items => (
            &model.item_ids,
            &model.item_factors,
            &model.user_ids,
            &model.user_factors,
        ),
    };
    // Which rows to recommend for; ids the model does not know are cold start.
    let (rows, unknown): (Vec<u32>, Ids) = match &task.ids {
        None => ((0..query_ids.len() as u32).collect(), query_ids.select(&[])),
        Some(input) => {
            let column = match task.target {
                RecommendTarget::Users => &input.columns.user,
                RecommendTarget::Items | RecommendTarget::SimilarItems => &input.columns.item,
            };
            let raw = read_ids(input, config.seed, &[column])?.remove(0);
            let found = query_ids.rows_of(&raw);
            let rows = found.iter().flatten().copied().collect();
            let unknown_positions: Vec<u32> = (0..found.len() as u32)
                .filter(|&position| found[position as usize].is_none())
                .collect();
            (rows, raw.select(&unknown_positions))
        }
    };
    // Users of `users_from` get folded-in factors instead of the model's (or none).
    let folded = match &task.users_from {
        Some(input) => Some(fold_in_users(config, input, &loaded, progress)?),
        None => None,
    };
    let (rows, unknown) = match &folded {
        None => (rows, unknown),
        Some(_) if task.ids.is_none() => (Vec::new(), query_ids.select(&[])),
        Some(folded) => {
            let rows = rows
                .into_iter()
                .filter(|row| !folded.model_rows.contains(row))
                .collect();
            let in_file = folded.ids.rows_of(&unknown);
            let still_unknown: Vec<u32> = (0..unknown.len() as u32)
                .filter(|&at| in_file[at as usize].is_none())
                .collect();
            (rows, unknown.select(&still_unknown))
        }
    };
    memory::set_phase(Phase::Evaluating);
    let step = progress.step("recommending");
    let seen_by_item =
        (task.target == RecommendTarget::Items && task.filter_seen).then(|| users_by_item(model));
    let nothing: &[u32] = &[];
    let seen = |row: u32| -> &[u32] {
        if !task.filter_seen {
            return nothing;
        }
        match &seen_by_item {
            Some(by_item) => &by_item.1[by_item.0[row as usize]..by_item.0[row as usize + 1]],
            None => model.seen(row as usize),
        }
    };
    let scorer = ItemScorer::new(
        candidate_factors,
        model.rank,
        vec![true; candidate_ids.len()],
    );
    let lists = scorer.top_k(query_factors, &rows, task.k, &seen);
    let mut listed = ListRows::default();
    for (&row, list) in rows.iter().zip(&lists) {
        listed.push(row, list);
    }
    let mut query_column = query_ids.select(&listed.queries);
    let mut folded_counts = serde_json::Value::Null;
    if let Some(folded) = &folded {
        let seen = |at: u32| -> &[u32] {
            if task.filter_seen {
                &folded.seen[at as usize]
            } else {
                nothing
            }
        };
        let users: Vec<u32> = (0..folded.users.len() as u32).collect();
        let lists = scorer.top_k(&folded.factors, &users, task.k, &seen);
        let start = listed.queries.len();
        for (&user, list) in folded.users.iter().zip(&lists) {
            listed.push(user, list);
        }
        query_column = concat_ids(query_column, folded.ids.select(&listed.queries[start..]));
        folded_counts = serde_json::json!({
            "users": folded.users.len(),
            "known_users": folded.known_users,
            "failed_users": folded.failed,
            "ratings": folded.ratings,
            "unknown_item_ratings": folded.unknown_items,
        });
    }
    let unknown_count = unknown.len();
    let mut cold_start_served = 0usize;
    if task.cold_start == RecommendColdStart::Popular && task.target == RecommendTarget::Users {
        // Unknown users get the most popular items; their score is left empty.
        let popular = recommend::popular_items(&model.item_counts());
        let top: Vec<u32> = popular.into_iter().take(task.k).collect();
        let mut extra_ids = Vec::new();
        for index in 0..unknown.len() {
            for (position, &item) in top.iter().enumerate() {
                extra_ids.push(index as u32);
                listed.candidates.push(item);
                listed.scores.push(None);
                listed.ranks.push(position as u32 + 1);
            }
            cold_start_served += 1;
        }
        query_column = concat_ids(query_column, unknown.select(&extra_ids));
    }
    let rows_written = listed.ranks.len();
    step.finish(&format!("{rows_written} rows; {unknown_count} unknown ids"));
    memory::set_phase(Phase::Publishing);
    let (query_name, candidate_name) = match task.target {
        RecommendTarget::Users | RecommendTarget::SimilarItems => ("user", "item"),
        RecommendTarget::Items => ("item", "user"),
    };
    publish_table(
        &task.output,
        vec![
            OutputColumn::Ids(query_name.to_owned(), query_column),
            OutputColumn::Ids(
                candidate_name.to_owned(),
                candidate_ids.select(&listed.candidates),
            ),
            OutputColumn::Floats("score".to_owned(), listed.scores),
            OutputColumn::Counts("rank".to_owned(), listed.ranks),
        ],
    )?;
    let metrics = serde_json::json!({
        "counts": {
            "lists": rows.len() + cold_start_served,
            "rows_written": rows_written,
            "unknown_ids": unknown_count,
            "unknown_ids_given_popular": cold_start_served,
            "unknown_ids_dropped": unknown_count - cold_start_served,
        },
        "k": task.k,
        "filter_seen": task.filter_seen,
        "fold_in": folded_counts,
        "model_version": loaded.dir.display().to_string(),
    });
    Ok(summary(config, &task.output, metrics, started, "als"))
}

/// Ranked lists flattened into output rows: one per (query, candidate), rank 1 first; cold-start
/// rows have no score.
#[derive(Default)]
struct ListRows {
    queries: Vec<u32>,
    candidates: Vec<u32>,
    scores: Vec<Option<f32>>,
    ranks: Vec<u32>,
}

impl ListRows {
    fn push(&mut self, query: u32, list: &[(u32, f32)]) {
        for (position, &(candidate, score)) in list.iter().enumerate() {
            self.queries.push(query);
            self.candidates.push(candidate);
            self.scores.push(Some(score));
            self.ranks.push(position as u32 + 1);
        }
    }
}

/// Users whose factors were folded in from `recommend.users_from`.
struct FoldedUsers {
    /// The file's user ids; `users[n]` indexes it for folded user `n`.
    ids: Ids,
    users: Vec<u32>,
    /// `rank` factors per folded user, in `users` order.
    factors: Vec<f32>,
    /// Per folded user, the model's item rows to leave out: the file's and, for a user the
    /// model knew, its training items.
    seen: Vec<Vec<u32>>,
    /// The model's rows of the file's users it knows (folded or failed), which lists from the
    /// model's own factors leave out.
    model_rows: std::collections::HashSet<u32>,
    known_users: usize,
    failed: usize,
    ratings: usize,
    unknown_items: usize,
}

/// Reads the new ratings and solves each of their users' factors against the model's item
/// factors with the model's loss (the serving endpoint's fold-in, per user in parallel).
fn fold_in_users(
    config: &JobConfig,
    input: &crate::config::InputConfig,
    loaded: &LoadedAls,
    progress: &Progress,
) -> anyhow::Result<FoldedUsers> {
    use rayon::prelude::*;
    let step = progress.step("folding in new users");
    let model = &loaded.model;
    let ingested = ingest::read_ratings(input, config.seed, None)?;
    let ratings = &ingested.ratings;
    let item_rows = model.item_ids.rows_of(&ratings.item_ids);
    let known_rows = model.user_ids.rows_of(&ratings.user_ids);
    let mut entries: Vec<Vec<(u32, f32)>> = vec![Vec::new(); ratings.users()];
    let mut unknown_items = 0;
    for ((&user, &item), &rating) in ratings.user.iter().zip(&ratings.item).zip(&ratings.rating) {
        match item_rows[item as usize] {
            Some(row) => entries[user as usize].push((row, rating)),
            None => unknown_items += 1,
        }
    }
    let loss = artifact::fold_in_loss(&loaded.params);
    let gram = loss
        .implicit_prefs
        .then(|| crate::algo::als::fold_in::item_gram(&model.item_factors, model.rank));
    let solved: Vec<Option<Vec<f32>>> = entries
        .par_iter()
        .map(|entries| {
            if entries.is_empty() {
                return None;
            }
            crate::algo::als::fold_in::fold_in(
                &model.item_factors,
                model.rank,
                entries,
                loss,
                gram.as_deref(),
            )
        })
        .collect();
    let mut folded = FoldedUsers {
        ids: ratings.user_ids.clone(),
        users: Vec::new(),
        factors: Vec::new(),
        seen: Vec::new(),
        model_rows: known_rows.iter().flatten().copied().collect(),
        known_users: known_rows.iter().flatten().count(),
        failed: 0,
        ratings: ratings.len(),
        unknown_items,
    };
    for (user, factors) in solved.into_iter().enumerate() {
        let Some(factors) = factors else {
            folded.failed += 1;
            continue;
        };
        let mut seen: Vec<u32> = entries[user].iter().map(|(item, _)| *item).collect();
        if let Some(known) = known_rows[user] {
            seen.extend_from_slice(model.seen(known as usize));
        }
        folded.users.push(user as u32);
        folded.factors.extend(factors);
        folded.seen.push(seen);
    }
    step.finish(&format!(
        "{} users from {} ratings; {} could not be solved",
        folded.users.len(),
        folded.ratings,
        folded.failed
    ));
    Ok(folded)
}

/// `target = "similar_items"`: for every item (or those listed in `[input]`), the k most
/// similar items by cosine of factors: `item`, `similar_item`, `similarity`, `rank`.
fn similar_items(
    config: &JobConfig,
    task: &RecommendTask,
    loaded: &LoadedAls,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<Summary> {
    let model = &loaded.model;
    let (rows, unknown): (Vec<u32>, usize) = match &task.ids {
        None => ((0..model.item_ids.len() as u32).collect(), 0),
        Some(input) => {
            let raw = read_ids(input, config.seed, &[&input.columns.item])?.remove(0);
            let found = model.item_ids.rows_of(&raw);
            let unknown = found.iter().filter(|row| row.is_none()).count();
            (found.into_iter().flatten().collect(), unknown)
        }
    };
    memory::set_phase(Phase::Evaluating);
    let step = progress.step("similar items");
    let similar = recommend::SimilarItems::new(&model.item_factors, model.rank);
    let lists = similar.top_k(&rows, task.k);
    let mut listed = ListRows::default();
    for (&row, list) in rows.iter().zip(&lists) {
        listed.push(row, list);
    }
    let rows_written = listed.ranks.len();
    step.finish(&format!("{rows_written} rows; {unknown} unknown ids"));
    memory::set_phase(Phase::Publishing);
    publish_table(
        &task.output,
        vec![
            OutputColumn::Ids("item".to_owned(), model.item_ids.select(&listed.queries)),
            OutputColumn::Ids(
                "similar_item".to_owned(),
                model.item_ids.select(&listed.candidates),
            ),
            OutputColumn::Floats("similarity".to_owned(), listed.scores),
            OutputColumn::Counts("rank".to_owned(), listed.ranks),
        ],
    )?;
    let metrics = serde_json::json!({
        "counts": {
            "lists": rows.len(),
            "rows_written": rows_written,
            "unknown_ids": unknown,
        },
        "k": task.k,
        "model_version": loaded.dir.display().to_string(),
    });
    Ok(summary(config, &task.output, metrics, started, "als"))
}

/// Users who had each item in training, as (offsets, users): the inverse of the model's lists.
fn users_by_item(model: &SavedAls) -> (Vec<usize>, Vec<u32>) {
    let counts = model.item_counts();
    let mut offsets = vec![0usize; counts.len() + 1];
    for (item, &count) in counts.iter().enumerate() {
        offsets[item + 1] = offsets[item] + count as usize;
    }
    let mut cursor = offsets.clone();
    let mut users = vec![0u32; model.seen_items.len()];
    for user in 0..model.user_ids.len() {
        for &item in model.seen(user) {
            users[cursor[item as usize]] = user as u32;
            cursor[item as usize] += 1;
        }
    }
    (offsets, users)
}

fn concat_ids(first: Ids, second: Ids) -> Ids {
    match (first, second) {
        (Ids::Integer(mut a), Ids::Integer(b)) => {
            a.extend(b);
            Ids::Integer(a)
        }
        (a, b) => {
            let mut text: Vec<String> = (0..a.len()).map(|i| a.display(i)).collect();
            text.extend((0..b.len()).map(|i| b.display(i)));
            Ids::Text(text)
        }
    }
}

pub fn predict(
    config: &JobConfig,
    task: &PredictTask,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // An `s3://` input is fetched first; the copy lives until the job ends.
    let mut task = task.clone();
    let _staged = ingest::remote::stage(&mut task.input)?;
    let task = &task;
    memory::set_phase(Phase::Ingesting);
    let step = progress.step("loading the model and pairs");
    let version = load(&task.from)?;
    let loaded = match version.model {
        SavedModel::Trees(trees) => {
            return predict_trees(config, task, *trees, &version.dir, progress, started);
        }
        SavedModel::Als(_) if task.contributions => {
            return Err(ModelError {
                path: task.from.clone(),
                problem: VersionError::Damaged {
                    path: task.from.clone(),
                    problem: "it holds an als model; predict.contributions needs a tree model (random_forest or gbt)".to_owned(),
                },
            }
            .into());
        }
        SavedModel::Als(model) => LoadedAls {
            dir: version.dir,
            model,
            params: version.manifest.params,
        },
    };
    let model = &loaded.model;
    let kept_refs: Vec<crate::config::ColumnRef> = task
        .keep
        .iter()
        .map(|name| crate::config::ColumnRef::Name(name.clone()))
        .collect();
    let mut wanted = vec![&task.input.columns.user, &task.input.columns.item];
    wanted.extend(&kept_refs);
    let mut raw = read_ids(&task.input, config.seed, &wanted)?;
    // `predict.keep` columns of an ALS job are read like ids (integers or strings).
    let kept: Vec<Ids> = raw.split_off(2.min(raw.len()));
    let items_raw = raw.pop().unwrap_or(Ids::Integer(Vec::new()));
    let users_raw = raw.pop().unwrap_or(Ids::Integer(Vec::new()));
    step.finish("");
    memory::set_phase(Phase::Evaluating);
    let users = model.user_ids.rows_of(&users_raw);
    let items = model.item_ids.rows_of(&items_raw);
    let rank = model.rank;
    let predictions: Vec<Option<f32>> = users
        .iter()
        .zip(&items)
        .map(|(user, item)| {
            let (user, item) = ((*user)? as usize, (*item)? as usize);
            let x = &model.user_factors[user * rank..(user + 1) * rank];
            let y = &model.item_factors[item * rank..(item + 1) * rank];
            Some(x.iter().zip(y).map(|(a, b)| a * b).sum())
        })
        .collect();
    let missing = predictions.iter().filter(|p| p.is_none()).count();
    memory::set_phase(Phase::Publishing);
    let pairs = predictions.len();
    publish_table(
        &task.output,
        [
            OutputColumn::Ids("user".to_owned(), users_raw),
            OutputColumn::Ids("item".to_owned(), items_raw),
        ]
        .into_iter()
        .chain(
            task.keep
                .iter()
                .zip(kept)
                .map(|(name, ids)| OutputColumn::Ids(name.clone(), ids)),
        )
        .chain([OutputColumn::Floats("prediction".to_owned(), predictions)])
        .collect(),
    )?;
    let metrics = serde_json::json!({
        "counts": {
            "pairs": pairs,
            "predicted": pairs - missing,
            "cold_start_missing": missing,
        },
        "model_version": loaded.dir.display().to_string(),
    });
    Ok(summary(config, &task.output, metrics, started, "als"))
}

/// The predict job's input, reading LIBSVM when the model was trained on LIBSVM and the job
/// did not name a format (a `.txt` LIBSVM file would otherwise be read as delimited text).
fn input_for_model(input: &InputConfig, version_dir: &Path) -> InputConfig {
    let mut input = input.clone();
    if let Source::Files(files) = &mut input.source
        && files.format_inferred
        && files.format != crate::config::Format::Libsvm
    {
        let trained_on_libsvm = std::fs::read_to_string(version_dir.join(artifact::RESOLVED_JOB))
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|job| {
                job.get("input")
                    .and_then(|input| input.get("format"))
                    .and_then(|format| format.as_str())
                    == Some("libsvm")
            });
        if trained_on_libsvm {
            files.format = crate::config::Format::Libsvm;
        }
    }
    input
}

/// Appends each row's TreeSHAP contributions: `contrib_<feature>` and `contrib_bias`, or per
/// class `contrib_<class>_<feature>` and `contrib_<class>_bias` for multiclass models.
fn contribution_columns(
    saved: &artifact::SavedTrees,
    table: &crate::dataset::Tabular,
    columns: &mut Vec<OutputColumn>,
    progress: &Progress,
) {
    let step = progress.step("explaining (TreeSHAP)");
    let values = saved.model.contributions(table);
    let groups = crate::algo::trees::shap::Explainer::group_count(&saved.model);
    let features = saved.feature_names.len();
    let width = groups * (features + 1);
    for group in 0..groups {
        let prefix = if groups == 1 {
            "contrib_".to_owned()
        } else {
            format!("contrib_{}_", saved.class_name(group))
        };
        let names = saved
            .feature_names
            .iter()
            .map(String::as_str)
            .chain(["bias"]);
        for (offset, name) in names.enumerate() {
            let at = group * (features + 1) + offset;
            columns.push(OutputColumn::Doubles(
                format!("{prefix}{name}"),
                values.chunks_exact(width).map(|row| row[at]).collect(),
            ));
        }
    }
    step.finish(&format!("{} rows", table.rows()));
}

/// Scores a table with a saved tree ensemble: the prediction (original class label for
/// classification, as Spark's IndexToString) and, for classification, one probability column
/// per class; `row` is the 0-based data row of the input it came from.
fn predict_trees(
    config: &JobConfig,
    task: &PredictTask,
    saved: artifact::SavedTrees,
    version_dir: &Path,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<Summary> {
    let input = input_for_model(&task.input, version_dir);
    let schema: Vec<ingest::table::FeatureSchema<'_>> = saved
        .feature_names
        .iter()
        .zip(&saved.feature_kinds)
        .map(|(name, kind)| ingest::table::FeatureSchema { name, kind })
        .collect();
    let scoring = ingest::table::read_scoring_table(
        &input,
        &schema,
        task.handle_invalid,
        config.seed,
        &task.keep,
    )?;
    let (table, rows) = (scoring.table, scoring.row_numbers);
    let step = progress.step("scoring");
    memory::set_phase(Phase::Evaluating);
    let predictions = saved.model.predict(&table);
    step.finish(&format!("{} rows", predictions.len()));
    memory::set_phase(Phase::Publishing);
    let mut columns = vec![OutputColumn::Ids(
        "row".to_owned(),
        Ids::Integer(rows.iter().map(|&row| row as i64).collect()),
    )];
    for (name, values) in scoring.passthrough {
        columns.push(OutputColumn::Text(name, values));
    }
    match saved.model.task {
        crate::algo::trees::TreeTask::Regression => columns.push(OutputColumn::Doubles(
            "prediction".to_owned(),
            predictions.iter().map(|p| p[0]).collect(),
        )),
        crate::algo::trees::TreeTask::Classification => {
            let classes = saved.model.classes;
            let best: Vec<usize> = predictions
                .iter()
                .map(|p| {
                    (0..classes).fold(
                        0,
                        |best, class| if p[class] > p[best] { class } else { best },
                    )
                })
                .collect();
            columns.push(match &saved.label_names {
                Some(_) => OutputColumn::Ids(
                    "prediction".to_owned(),
                    Ids::Text(best.iter().map(|&class| saved.class_name(class)).collect()),
                ),
                None => OutputColumn::Ids(
                    "prediction".to_owned(),
                    Ids::Integer(best.iter().map(|&class| class as i64).collect()),
                ),
            });
            for class in 0..classes {
                columns.push(OutputColumn::Doubles(
                    format!("probability_{}", saved.class_name(class)),
                    predictions.iter().map(|p| p[class]).collect(),
                ));
            }
        }
    }
    let explained = Instant::now();
    if task.contributions {
        contribution_columns(&saved, &table, &mut columns, progress);
    }
    let explain_seconds = explained.elapsed().as_secs_f64();
    let scored = predictions.len();
    publish_table(&task.output, columns)?;
    let algorithm = match saved.model.ensemble {
        crate::algo::trees::Ensemble::RandomForest => "random_forest",
        crate::algo::trees::Ensemble::Gbt => "gbt",
    };
    let mut metrics = serde_json::json!({
        "counts": { "rows_written": scored },
        "model_version": task.from.display().to_string(),
    });
    if task.contributions {
        metrics["timings_s"] = serde_json::json!({ "contributions": explain_seconds });
    }
    Ok(summary(config, &task.output, metrics, started, algorithm))
}
