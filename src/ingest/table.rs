//! Labelled tables for the tree models: numeric columns, string columns as categorical features
//! (indexed as Spark's StringIndexer does), the label, and an optional validation indicator;
//! from delimited text, Parquet, NDJSON or IPC through polars, from LIBSVM files, or generated.
//!
//! Missing values: a missing or NaN number is "missing" (it goes left at every split, with the
//! smallest values); a missing string is the category `""`. Infinite feature values are errors.

use std::collections::HashMap;

use polars::prelude::*;

use super::reader::{self, Located};
use super::{Fingerprint, IngestCounts, IngestError, SAMPLE_STREAM, fingerprint, read_file};
use crate::algo::trees::TreeTask;
use crate::config::{
    ColumnRef, FileSource, Format, HandleInvalid, InputConfig, Source, SyntheticSpec,
};
use crate::dataset::split::{mix, unit};
use crate::dataset::tabular::{FeatureKind, Tabular};

pub struct IngestedTable {
    pub table: Tabular,
    /// Rows flagged by the validation column, when one is configured.
    pub validation: Option<Vec<bool>>,
    /// Each row's time, when a time split asked for its column.
    pub times: Option<Vec<f64>>,
    pub fingerprints: Vec<Fingerprint>,
    pub counts: IngestCounts,
}

/// A column as read, before its kind is decided over all files.
enum RawColumn {
    Numbers(Vec<f32>),
    Text(Vec<Option<String>>),
}

impl RawColumn {
    fn len(&self) -> usize {
        match self {
            RawColumn::Numbers(values) => values.len(),
            RawColumn::Text(values) => values.len(),
        }
    }

    fn into_text(self) -> Vec<Option<String>> {
        match self {
            RawColumn::Text(values) => values,
            RawColumn::Numbers(values) => values
                .into_iter()
                .map(|value| (!value.is_nan()).then(|| value.to_string()))
                .collect(),
        }
    }

    fn append(self, more: RawColumn) -> RawColumn {
        match (self, more) {
            (RawColumn::Numbers(mut a), RawColumn::Numbers(b)) => {
                a.extend(b);
                RawColumn::Numbers(a)
            }
            (a, b) => {
                let mut text = a.into_text();
                text.extend(b.into_text());
                RawColumn::Text(text)
            }
        }
    }
}

/// Any column as text, exactly as polars reads it (ids keep every digit).
fn column_text(
    located: &Located<'_>,
    column: &Column,
    keep: &[bool],
) -> Result<Vec<Option<String>>, IngestError> {
    let series = column
        .as_materialized_series()
        .cast(&DataType::String)
        .map_err(|error| reader::polars_error(located.path, error))?;
    let values = series
        .str()
        .map_err(|error| reader::polars_error(located.path, error))?;
    Ok(values
        .iter()
        .zip(keep)
        .filter(|(_, kept)| **kept)
        .map(|(value, _)| value.map(str::to_owned))
        .collect())
}

fn column_values(
    located: &Located<'_>,
    column: &Column,
    keep: &[bool],
) -> Result<RawColumn, IngestError> {
    let series = column.as_materialized_series();
    let dtype = series.dtype();
    if dtype.is_primitive_numeric() || matches!(dtype, DataType::Boolean) {
        let cast = series
            .cast(&DataType::Float64)
            .map_err(|error| reader::polars_error(located.path, error))?;
        let values = cast
            .f64()
            .map_err(|error| reader::polars_error(located.path, error))?;
        let mut out = Vec::with_capacity(values.len());
        for (row, value) in values.iter().enumerate() {
            if !keep[row] {
                continue;
            }
            let value = value.unwrap_or(f64::NAN);
            if value.is_infinite() {
                return Err(located.bad(
                    row,
                    column,
                    value.to_string(),
                    "infinite values are not allowed (missing values may be empty or NaN)",
                ));
            }
            out.push(value as f32);
        }
        Ok(RawColumn::Numbers(out))
    } else if matches!(dtype, DataType::String) {
        let values = series
            .str()
            .map_err(|error| reader::polars_error(located.path, error))?;
        Ok(RawColumn::Text(
            values
                .iter()
                .zip(keep)
                .filter(|(_, kept)| **kept)
                .map(|(value, _)| value.map(str::to_owned))
                .collect(),
        ))
    } else {
        Err(located.bad(
            0,
            column,
            format!("type {dtype}"),
            "a feature or label column must hold numbers, booleans or strings",
        ))
    }
}

/// Text that is all numbers (or empty) as numbers; otherwise `None`.
fn parse_numbers(values: &[Option<String>]) -> Option<Vec<f32>> {
    values
        .iter()
        .map(|value| match value.as_deref().map(str::trim) {
            None | Some("") => Some(f32::NAN),
            Some(text) => text.parse::<f32>().ok().filter(|v| !v.is_infinite()),
        })
        .collect()
}

/// StringIndexer's order: most frequent first, ties by name.
fn index_strings(values: &[Option<String>]) -> (Vec<String>, Vec<f32>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for value in values {
        *counts.entry(value.as_deref().unwrap_or("")).or_default() += 1;
    }
    let mut names: Vec<(&str, usize)> = counts.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(position, (name, _))| (*name, position))
        .collect();
    let indices = values
        .iter()
        .map(|value| index[value.as_deref().unwrap_or("")] as f32)
        .collect();
    (
        names.into_iter().map(|(name, _)| name.to_owned()).collect(),
        indices,
    )
}

/// Numbers as categories in ascending order (VectorIndexer's order); NaN is the category "NaN".
fn index_numbers(values: &[f32]) -> (Vec<String>, Vec<f32>) {
    let mut distinct: Vec<f32> = values.to_vec();
    distinct.sort_by(f32::total_cmp);
    distinct.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let names = distinct.iter().map(|value| value.to_string()).collect();
    let indices = values
        .iter()
        .map(|value| {
            distinct
                .binary_search_by(|probe| probe.total_cmp(value))
                .unwrap_or(0) as f32
        })
        .collect();
    (names, indices)
}

struct RawTable {
    names: Vec<String>,
    columns: Vec<RawColumn>,
    /// `predict.keep` columns, as text.
    passthrough: Vec<Vec<Option<String>>>,
    label: Option<RawColumn>,
    validation: Option<RawColumn>,
    weight: Option<RawColumn>,
    times: Option<Vec<f64>>,
    fingerprints: Vec<Fingerprint>,
    counts: IngestCounts,
}

/// Reads the label, the validation column and the features (`features`, or every other column).
fn read_raw(
    input: &InputConfig,
    seed: u64,
    features: Option<&[String]>,
    with_label: bool,
    passthrough_names: &[String],
    time_column: Option<&ColumnRef>,
) -> Result<RawTable, IngestError> {
    let table = &input.table;
    let mut passthrough: Vec<Vec<Option<String>>> = vec![Vec::new(); passthrough_names.len()];
    let mut used: Vec<&ColumnRef> = Vec::new();
    if with_label {
        used.push(&table.label);
    }
    let mut names: Vec<String> = Vec::new();
    let mut columns: Vec<RawColumn> = Vec::new();
    let mut label: Option<RawColumn> = None;
    let mut validation: Option<RawColumn> = None;
    let mut weight: Option<RawColumn> = None;
    let mut times: Option<Vec<f64>> = None;
    let (fingerprints, counts) = reader::for_each_frame(
        input,
        seed,
        &used,
        false,
        None,
        None,
        &mut |located, frame, keep| {
            let mut excluded: Vec<String> = Vec::new();
            if with_label {
                // The label and the columns beside it, each kept out of the features.
                let mut take = |reference: &ColumnRef, into: &mut Option<RawColumn>| {
                    let column = reader::find_column(located.path, &frame, reference)?;
                    excluded.push(column.name().to_string());
                    let values = column_values(located, column, keep)?;
                    *into = Some(match into.take() {
                        Some(all) => all.append(values),
                        None => values,
                    });
                    Ok::<(), IngestError>(())
                };
                take(&table.label, &mut label)?;
                if let Some(reference) = &table.validation {
                    take(reference, &mut validation)?;
                }
                if let Some(reference) = &table.weight {
                    take(reference, &mut weight)?;
                }
                if let Some(reference) = time_column {
                    let column = reader::find_column(located.path, &frame, reference)?;
                    excluded.push(column.name().to_string());
                    let values = reader::time_values(located, column)?;
                    times
                        .get_or_insert_with(Vec::new)
                        .extend(crate::dataset::keep_where(values, keep));
                }
            }
            if let Some(leak) =
                features.and_then(|list| list.iter().find(|name| excluded.contains(*name)))
            {
                return Err(IngestError::Malformed {
                    path: located.path.to_path_buf(),
                    problem: format!(
                        "column `{leak}` is listed in input.columns.features but is the label, the validation, the weight or the split.column column"
                    ),
                });
            }
            let wanted: Vec<String> = match features {
                Some(list) => list.to_vec(),
                None => frame
                    .get_column_names()
                    .iter()
                    .map(|name| name.to_string())
                    .filter(|name| !excluded.contains(name))
                    .collect(),
            };
            if names.is_empty() {
                names = wanted.clone();
                columns = names
                    .iter()
                    .map(|_| RawColumn::Numbers(Vec::new()))
                    .collect();
            } else if names != wanted {
                return Err(IngestError::Malformed {
                    path: located.path.to_path_buf(),
                    problem: format!(
                        "its columns differ from the first file's: expected {}",
                        names.join(", ")
                    ),
                });
            }
            for (at, name) in wanted.iter().enumerate() {
                let column =
                    reader::find_column(located.path, &frame, &ColumnRef::Name(name.clone()))?;
                let values = column_values(located, column, keep)?;
                let previous = std::mem::replace(&mut columns[at], RawColumn::Numbers(Vec::new()));
                columns[at] = previous.append(values);
            }
            for (name, out) in passthrough_names.iter().zip(&mut passthrough) {
                let column =
                    reader::find_column(located.path, &frame, &ColumnRef::Name(name.clone()))?;
                out.extend(column_text(located, column, keep)?);
            }
            Ok(())
        },
    )?;
    Ok(RawTable {
        names,
        columns,
        passthrough,
        label,
        validation,
        weight,
        times,
        fingerprints,
        counts,
    })
}

fn labels_for(
    raw: RawColumn,
    task: TreeTask,
    path: &std::path::Path,
) -> Result<(Vec<f64>, Option<Vec<String>>), IngestError> {
    let numbers = match raw {
        RawColumn::Numbers(values) => Ok(values),
        RawColumn::Text(text) => parse_numbers(&text).ok_or(text),
    };
    match (task, numbers) {
        (TreeTask::Regression, Ok(values)) => {
            if let Some(row) = values.iter().position(|v| v.is_nan()) {
                return Err(IngestError::Malformed {
                    path: path.to_path_buf(),
                    problem: format!("label of kept row {} is missing or NaN", row + 1),
                });
            }
            Ok((values.into_iter().map(f64::from).collect(), None))
        }
        (TreeTask::Regression, Err(text)) => {
            let row = text
                .iter()
                .position(|value| {
                    value
                        .as_deref()
                        .is_some_and(|v| v.trim().parse::<f64>().is_err())
                })
                .unwrap_or(0);
            Err(IngestError::Malformed {
                path: path.to_path_buf(),
                problem: format!(
                    "regression labels must be numbers; kept row {} has {:?}",
                    row + 1,
                    text[row].as_deref().unwrap_or("")
                ),
            })
        }
        (TreeTask::Classification, Ok(values)) => {
            if let Some(row) = values.iter().position(|v| v.is_nan()) {
                return Err(IngestError::Malformed {
                    path: path.to_path_buf(),
                    problem: format!("label of kept row {} is missing or NaN", row + 1),
                });
            }
            // Class indices 0, 1, ... are used as they are (Spark's convention).
            if values
                .iter()
                .all(|v| *v >= 0.0 && v.fract() == 0.0 && *v < 100_000.0)
            {
                return Ok((values.into_iter().map(f64::from).collect(), None));
            }
            let (names, indices) = index_numbers(&values);
            Ok((indices.into_iter().map(f64::from).collect(), Some(names)))
        }
        (TreeTask::Classification, Err(text)) => {
            let (names, indices) = index_strings(&text);
            Ok((indices.into_iter().map(f64::from).collect(), Some(names)))
        }
    }
}

fn validation_mask(raw: RawColumn, path: &std::path::Path) -> Result<Vec<bool>, IngestError> {
    let bad = |value: String| IngestError::Malformed {
        path: path.to_path_buf(),
        problem: format!("the validation column must hold booleans or 0/1, found {value}"),
    };
    match raw {
        RawColumn::Numbers(values) => values
            .into_iter()
            .map(|v| match v {
                0.0 => Ok(false),
                1.0 => Ok(true),
                other => Err(bad(other.to_string())),
            })
            .collect(),
        RawColumn::Text(values) => values
            .into_iter()
            .map(|v| match v.as_deref().map(str::trim) {
                Some("true" | "True" | "TRUE" | "1") => Ok(true),
                Some("false" | "False" | "FALSE" | "0") => Ok(false),
                other => Err(bad(format!("{other:?}"))),
            })
            .collect(),
    }
}

/// A column's numbers, or the first row (0-based) whose text is not one, with that text.
fn raw_numbers(raw: RawColumn) -> Result<Vec<f32>, (usize, String)> {
    match raw {
        RawColumn::Numbers(values) => Ok(values),
        RawColumn::Text(text) => parse_numbers(&text).ok_or_else(|| {
            let row = text
                .iter()
                .position(|value| {
                    value
                        .as_deref()
                        .is_some_and(|v| v.trim().parse::<f32>().is_err())
                })
                .unwrap_or(0);
            (row, text[row].clone().unwrap_or_default())
        }),
    }
}

/// Sample weights: finite numbers at least 0; a bad one names its row.
fn weights_of(raw: RawColumn, path: &std::path::Path) -> Result<Vec<f64>, IngestError> {
    let bad = |row: usize, value: String| IngestError::Malformed {
        path: path.to_path_buf(),
        problem: format!(
            "the weight column (input.columns.weight) must hold finite numbers of at least 0; kept row {} has {value}",
            row + 1
        ),
    };
    let numbers = raw_numbers(raw).map_err(|(row, text)| bad(row, format!("{text:?}")))?;
    numbers
        .into_iter()
        .enumerate()
        .map(|(row, value)| {
            if value.is_finite() && value >= 0.0 {
                Ok(f64::from(value))
            } else if value.is_nan() {
                Err(bad(row, "no value".to_owned()))
            } else {
                Err(bad(row, value.to_string()))
            }
        })
        .collect()
}

/// What errors about the whole input name: its first file, or the prepared input.
fn input_path(input: &InputConfig) -> std::path::PathBuf {
    match &input.source {
        Source::Files(files) if !super::prepare::applies(input) => {
            files.paths.first().cloned().unwrap_or_default()
        }
        _ => std::path::PathBuf::from(super::prepare::PREPARED),
    }
}

/// Reads a training table from the configured source.
pub fn read_training_table(
    input: &InputConfig,
    task: TreeTask,
    seed: u64,
    time_column: Option<&ColumnRef>,
) -> Result<IngestedTable, IngestError> {
    let ingested = match &input.source {
        Source::Synthetic(spec) if !super::prepare::applies(input) => synthetic_table(spec, input)?,
        Source::Files(files)
            if files.format == Format::Libsvm && !super::prepare::applies(input) =>
        {
            // Spark's VectorIndexer rule, as the Spark engine applies it: a feature with at most
            // `max_categories` distinct values (zeros included), or one named in
            // `categorical`, is categorical.
            let mut ingested = libsvm_table(files, input, seed)?;
            let path = files.paths.first().cloned().unwrap_or_default();
            check_categorical_names(&ingested.table.feature_names, input, &path)?;
            let table = &mut ingested.table;
            for (index, values) in table.features.iter_mut().enumerate() {
                let forced = input
                    .table
                    .categorical
                    .contains(&table.feature_names[index]);
                let (kind, indexed) =
                    numeric_feature(std::mem::take(values), forced, input.table.max_categories);
                *values = indexed;
                table.kinds[index] = kind;
            }
            ingested
        }
        _ => {
            let path = input_path(input);
            let raw = read_raw(
                input,
                seed,
                input.table.features.as_deref(),
                true,
                &[],
                time_column,
            )?;
            let rows = raw.label.as_ref().map_or(0, RawColumn::len);
            let (labels, label_names) = labels_for(
                raw.label.unwrap_or(RawColumn::Numbers(Vec::new())),
                task,
                &path,
            )?;
            let validation = raw
                .validation
                .map(|column| validation_mask(column, &path))
                .transpose()?;
            let weights = raw
                .weight
                .map(|column| weights_of(column, &path))
                .transpose()?;
            let mut kinds = Vec::new();
            let mut features = Vec::new();
            for (name, column) in raw.names.iter().zip(raw.columns) {
                let forced = input.table.categorical.contains(name);
                let numbers = match column {
                    RawColumn::Numbers(values) => Ok(values),
                    RawColumn::Text(text) => parse_numbers(&text).ok_or(text),
                };
                let (kind, values) = match numbers {
                    Ok(values) => numeric_feature(values, forced, input.table.max_categories),
                    Err(text) => {
                        let (names, indices) = index_strings(&text);
                        (FeatureKind::Categorical { names }, indices)
                    }
                };
                debug_assert_eq!(values.len(), rows);
                kinds.push(kind);
                features.push(values);
            }
            check_categorical_names(&raw.names, input, &path)?;
            IngestedTable {
                table: Tabular {
                    feature_names: raw.names,
                    kinds,
                    features,
                    labels,
                    label_names,
                    weights,
                },
                validation,
                times: raw.times,
                fingerprints: raw.fingerprints,
                counts: raw.counts,
            }
        }
    };
    if ingested.table.rows() == 0 {
        return Err(ingested.counts.nothing_left());
    }
    Ok(ingested)
}

/// A numeric column as a feature: categorical (indexed in ascending order) when forced or when
/// it has at most `max_categories` distinct values (0: never), else numeric.
fn numeric_feature(
    values: Vec<f32>,
    forced: bool,
    max_categories: usize,
) -> (FeatureKind, Vec<f32>) {
    let few = max_categories > 0 && {
        let mut distinct = values.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup_by(|a, b| a.total_cmp(b).is_eq());
        distinct.len() <= max_categories
    };
    if forced || few {
        let (names, indices) = index_numbers(&values);
        (FeatureKind::Categorical { names }, indices)
    } else {
        (FeatureKind::Numeric, values)
    }
}

/// Every name in `input.columns.categorical` must be one of the features.
fn check_categorical_names(
    features: &[String],
    input: &InputConfig,
    path: &std::path::Path,
) -> Result<(), IngestError> {
    for name in &input.table.categorical {
        if !features.contains(name) {
            return Err(IngestError::MissingColumn {
                path: path.to_path_buf(),
                column: format!(
                    "`{}` (in input.columns.categorical), which is not a feature",
                    crate::text::shorten(name, 80)
                ),
                available: crate::text::column_list(features),
                hint: reader::did_you_mean(features, name),
            });
        }
    }
    Ok(())
}

/// Keeps rows by `limit` and `sample_fraction`, as file sources do.
fn sample_rows(table: Tabular, input: &InputConfig, seed: u64) -> (Tabular, IngestCounts) {
    let rows = table.rows();
    let limit = input.limit.map_or(rows, |limit| (limit as usize).min(rows));
    let stream = mix(seed, SAMPLE_STREAM);
    let keep: Vec<bool> = (0..rows)
        .map(|row| {
            row < limit
                && (input.sample_fraction >= 1.0
                    || unit(stream, row as u64) < input.sample_fraction)
        })
        .collect();
    let kept = keep.iter().filter(|k| **k).count();
    let counts = IngestCounts {
        rows_read: limit as u64,
        rows_dropped_null: 0,
        rows_sampled_out: (limit - kept) as u64,
    };
    if kept == rows {
        return (table, counts);
    }
    (table.select(&keep), counts)
}

fn synthetic_table(
    spec: &SyntheticSpec,
    input: &InputConfig,
) -> Result<IngestedTable, IngestError> {
    let (table, seed) = match *spec {
        SyntheticSpec::Classification {
            rows,
            features,
            classes,
            seed,
        } => (
            super::synthetic::classification(
                rows as usize,
                features as usize,
                classes as usize,
                seed,
            ),
            seed,
        ),
        SyntheticSpec::Regression {
            rows,
            features,
            noise,
            seed,
        } => (
            super::synthetic::regression(rows as usize, features as usize, noise, seed),
            seed,
        ),
        _ => {
            return Err(IngestError::Empty {
                reason: "this synthetic source makes ratings, not a table".to_owned(),
            });
        }
    };
    let (table, counts) = sample_rows(table, input, seed);
    let description = serde_json::to_string(spec).unwrap_or_default();
    Ok(IngestedTable {
        fingerprints: vec![Fingerprint {
            source: format!("synthetic {description}"),
            blake3: blake3::hash(description.as_bytes()).to_hex().to_string(),
            bytes: 0,
            rows: table.rows() as u64,
        }],
        table,
        validation: None,
        times: None,
        counts,
    })
}

fn libsvm_table(
    files: &FileSource,
    input: &InputConfig,
    seed: u64,
) -> Result<IngestedTable, IngestError> {
    let mut tables = Vec::new();
    let mut fingerprints = Vec::new();
    for path in &files.paths {
        let bytes = read_file(path)?;
        let table = super::libsvm::parse(path, &bytes, None)?;
        fingerprints.push(fingerprint(path, &bytes, table.rows() as u64));
        tables.push(table);
    }
    let width = tables.iter().map(Tabular::columns).max().unwrap_or(0);
    let mut features = vec![Vec::new(); width];
    let mut labels = Vec::new();
    for table in tables {
        let rows = table.rows();
        for (column, out) in features.iter_mut().enumerate() {
            match table.features.get(column) {
                Some(values) => out.extend_from_slice(values),
                None => out.extend(std::iter::repeat_n(0.0, rows)),
            }
        }
        labels.extend(table.labels);
    }
    let table = Tabular::numeric(
        (1..=width).map(|i| format!("f{i}")).collect(),
        features,
        labels,
    );
    let (table, counts) = sample_rows(table, input, seed);
    Ok(IngestedTable {
        table,
        validation: None,
        times: None,
        fingerprints,
        counts,
    })
}

/// The saved description of one feature a model was trained on.
pub struct FeatureSchema<'a> {
    pub name: &'a str,
    pub kind: &'a FeatureKind,
}

/// Features for scoring with a saved model: its columns by name, categories mapped through the
/// model's names (unseen ones per `handle_invalid`). Returns the table (labels empty) and the
/// input row number of each kept row.
pub fn read_scoring_table(
    input: &InputConfig,
    schema: &[FeatureSchema<'_>],
    handle_invalid: HandleInvalid,
    seed: u64,
    keep_columns: &[String],
) -> Result<ScoringTable, IngestError> {
    let libsvm = match &input.source {
        Source::Files(files) if !super::prepare::applies(input) => {
            (files.format == Format::Libsvm).then_some(files)
        }
        _ if super::prepare::applies(input) => None,
        _ => {
            return Err(IngestError::Empty {
                reason: "predict jobs read a file".to_owned(),
            });
        }
    };
    let path = input_path(input);
    if libsvm.is_some() && !keep_columns.is_empty() {
        return Err(IngestError::Malformed {
            path,
            problem: "predict.keep names columns, but a LIBSVM file has only a label and numbered features".to_owned(),
        });
    }
    let (names, columns, fingerprints, passthrough) = if let Some(files) = libsvm {
        let ingested = libsvm_table(files, input, seed)?;
        let mut columns: Vec<RawColumn> = ingested
            .table
            .features
            .into_iter()
            .map(RawColumn::Numbers)
            .collect();
        let rows = ingested.table.labels.len();
        while columns.len() < schema.len() {
            columns.push(RawColumn::Numbers(vec![0.0; rows]));
        }
        let names = schema.iter().map(|f| f.name.to_owned()).collect();
        (names, columns, ingested.fingerprints, Vec::new())
    } else {
        let wanted: Vec<String> = schema.iter().map(|f| f.name.to_owned()).collect();
        let raw = read_raw(input, seed, Some(&wanted), false, keep_columns, None)?;
        (raw.names, raw.columns, raw.fingerprints, raw.passthrough)
    };
    let rows = columns.first().map_or(0, RawColumn::len);
    let Encoded {
        features,
        kinds,
        keep,
    } = encode_features(schema, columns, handle_invalid, &path)?;
    let table = Tabular {
        feature_names: names,
        kinds,
        features,
        labels: vec![0.0; rows],
        label_names: None,
        weights: None,
    };
    let row_numbers: Vec<u64> = (0..rows as u64).filter(|&row| keep[row as usize]).collect();
    let all_kept = row_numbers.len() == rows;
    let table = if all_kept { table } else { table.select(&keep) };
    let passthrough = keep_columns
        .iter()
        .cloned()
        .zip(passthrough)
        .map(|(name, values)| {
            let values = if all_kept {
                values
            } else {
                values
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, kept)| **kept)
                    .map(|(value, _)| value)
                    .collect()
            };
            (name, values)
        })
        .collect();
    Ok(ScoringTable {
        table,
        row_numbers,
        fingerprints,
        passthrough,
    })
}

/// Feature columns encoded as a model's schema says: numbers as they are, categories through
/// the model's names (an unseen one per `handle_invalid`). Returns the features, their kinds
/// and which rows are kept (`skip` drops rows with an unseen category).
fn encode_features(
    schema: &[FeatureSchema<'_>],
    columns: Vec<RawColumn>,
    handle_invalid: HandleInvalid,
    path: &std::path::Path,
) -> Result<Encoded, IngestError> {
    let rows = columns.first().map_or(0, RawColumn::len);
    let mut keep = vec![true; rows];
    let mut features = Vec::with_capacity(schema.len());
    let mut kinds = Vec::with_capacity(schema.len());
    for (feature, column) in schema.iter().zip(columns) {
        let values = match feature.kind {
            FeatureKind::Numeric => match column {
                RawColumn::Numbers(values) => values,
                RawColumn::Text(text) => {
                    parse_numbers(&text).ok_or_else(|| IngestError::Malformed {
                        path: path.to_path_buf(),
                        problem: format!(
                            "column `{}` must hold numbers, as when the model was trained",
                            feature.name
                        ),
                    })?
                }
            },
            FeatureKind::Categorical { names } => {
                let numeric_names = names
                    .iter()
                    .all(|name| name.parse::<f32>().is_ok() || name == "NaN");
                let index: HashMap<&str, usize> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.as_str(), i))
                    .collect();
                let text: Vec<Option<String>> = match column {
                    RawColumn::Numbers(values) if numeric_names => values
                        .into_iter()
                        .map(|value| Some(value.to_string()))
                        .collect(),
                    other => other.into_text(),
                };
                let mut out = Vec::with_capacity(text.len());
                for (row, value) in text.iter().enumerate() {
                    let key = value.as_deref().unwrap_or("");
                    match index.get(key) {
                        Some(&category) => out.push(category as f32),
                        None => match handle_invalid {
                            HandleInvalid::Error => {
                                return Err(IngestError::Malformed {
                                    path: path.to_path_buf(),
                                    problem: format!(
                                        "row {}: column `{}` has category {key:?}, which the model never saw (set `model.handle_invalid = \"skip\"` or \"keep\")",
                                        row + 1,
                                        feature.name
                                    ),
                                });
                            }
                            HandleInvalid::Skip => {
                                keep[row] = false;
                                out.push(0.0);
                            }
                            // Not in any split's left set: goes right everywhere.
                            HandleInvalid::Keep => out.push(names.len() as f32),
                        },
                    }
                }
                out
            }
        };
        kinds.push(feature.kind.clone());
        features.push(values);
    }
    Ok(Encoded {
        features,
        kinds,
        keep,
    })
}

/// Feature columns encoded by [`encode_features`], and which rows are kept.
struct Encoded {
    features: Vec<Vec<f32>>,
    kinds: Vec<FeatureKind>,
    keep: Vec<bool>,
}

/// `[input.test]` of a tree job: the label, the weights and the training table's features,
/// encoded as the training table encodes them (a category it never saw per `handle_invalid`,
/// a class it never saw is an error naming the row).
pub fn read_test_table(
    input: &InputConfig,
    train: &Tabular,
    task: TreeTask,
    handle_invalid: HandleInvalid,
    seed: u64,
) -> Result<IngestedTable, IngestError> {
    let path = input_path(input);
    let schema: Vec<FeatureSchema<'_>> = train
        .feature_names
        .iter()
        .zip(&train.kinds)
        .map(|(name, kind)| FeatureSchema { name, kind })
        .collect();
    let (columns, label, weight, fingerprints, counts) = match &input.source {
        Source::Files(files)
            if files.format == Format::Libsvm && !super::prepare::applies(input) =>
        {
            let ingested = libsvm_table(files, input, seed)?;
            let rows = ingested.table.rows();
            let mut columns: Vec<RawColumn> = ingested
                .table
                .features
                .into_iter()
                .map(RawColumn::Numbers)
                .collect();
            if let Some(extra) = columns
                .iter()
                .skip(schema.len())
                .position(|column| matches!(column, RawColumn::Numbers(values) if values.iter().any(|v| *v != 0.0)))
            {
                return Err(IngestError::Malformed {
                    path,
                    problem: format!(
                        "it has feature index {}; the training rows have {} features",
                        schema.len() + extra + 1,
                        schema.len()
                    ),
                });
            }
            columns.truncate(schema.len());
            while columns.len() < schema.len() {
                columns.push(RawColumn::Numbers(vec![0.0; rows]));
            }
            let labels = ingested.table.labels.iter().map(|&y| y as f32).collect();
            (
                columns,
                RawColumn::Numbers(labels),
                None,
                ingested.fingerprints,
                ingested.counts,
            )
        }
        Source::Files(_) => {
            let wanted: Vec<String> = train.feature_names.clone();
            let raw = read_raw(input, seed, Some(&wanted), true, &[], None)?;
            (
                raw.columns,
                raw.label.unwrap_or(RawColumn::Numbers(Vec::new())),
                raw.weight,
                raw.fingerprints,
                raw.counts,
            )
        }
        Source::Synthetic(_) => {
            return Err(IngestError::Empty {
                reason: "[input.test] reads files".to_owned(),
            });
        }
    };
    let labels = test_labels(label, train, task, &path)?;
    let weights = weight.map(|column| weights_of(column, &path)).transpose()?;
    let Encoded {
        features,
        kinds,
        keep,
    } = encode_features(&schema, columns, handle_invalid, &path)?;
    let table = Tabular {
        feature_names: train.feature_names.clone(),
        kinds,
        features,
        labels,
        label_names: train.label_names.clone(),
        weights,
    };
    let table = if keep.iter().all(|kept| *kept) {
        table
    } else {
        table.select(&keep)
    };
    if table.rows() == 0 {
        return Err(IngestError::Empty {
            reason: format!("[input.test] left no rows ({})", counts.nothing_left()),
        });
    }
    Ok(IngestedTable {
        table,
        validation: None,
        times: None,
        fingerprints,
        counts,
    })
}

/// Test labels as class indices of the training table (or regression numbers).
fn test_labels(
    raw: RawColumn,
    train: &Tabular,
    task: TreeTask,
    path: &std::path::Path,
) -> Result<Vec<f64>, IngestError> {
    let bad = |row: usize, problem: String| IngestError::Malformed {
        path: path.to_path_buf(),
        problem: format!("label of kept row {}: {problem}", row + 1),
    };
    let classes = train.classes();
    match (task, &train.label_names) {
        (TreeTask::Classification, Some(names)) => {
            let index: HashMap<&str, usize> = names
                .iter()
                .enumerate()
                .map(|(class, name)| (name.as_str(), class))
                .collect();
            let text: Vec<Option<String>> = match raw {
                RawColumn::Numbers(values) => values
                    .into_iter()
                    .map(|value| (!value.is_nan()).then(|| value.to_string()))
                    .collect(),
                RawColumn::Text(text) => text,
            };
            text.iter()
                .enumerate()
                .map(|(row, value)| {
                    let key = value.as_deref().unwrap_or("");
                    index.get(key).map(|&class| class as f64).ok_or_else(|| {
                        bad(
                            row,
                            format!(
                                "{key:?} is not a class of the training rows ({})",
                                crate::text::shorten(&names.join(", "), 200)
                            ),
                        )
                    })
                })
                .collect()
        }
        _ => {
            let numbers = raw_numbers(raw)
                .map_err(|(row, text)| bad(row, format!("{text:?} is not a number")))?;
            numbers
                .into_iter()
                .enumerate()
                .map(|(row, value)| {
                    if value.is_nan() {
                        return Err(bad(row, "missing or NaN".to_owned()));
                    }
                    let in_range =
                        value >= 0.0 && value.fract() == 0.0 && (value as usize) < classes;
                    if task == TreeTask::Classification && !in_range {
                        return Err(bad(
                            row,
                            format!(
                                "{value} is not a class of the training rows (0 to {})",
                                classes - 1
                            ),
                        ));
                    }
                    Ok(f64::from(value))
                })
                .collect()
        }
    }
}

/// What [`read_scoring_table`] reads: the features, the input row number of each kept row,
/// the inputs' fingerprints and the `predict.keep` columns as text.
pub struct ScoringTable {
    pub table: Tabular,
    pub row_numbers: Vec<u64>,
    pub fingerprints: Vec<Fingerprint>,
    pub passthrough: Vec<(String, Vec<Option<String>>)>,
}
