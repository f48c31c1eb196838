//! The data-preparation part of `[input]`: named tables, `input.sql`, `[[input.steps]]` and
//! `input.dedupe`, checked into plain types that `ingest::prepare` turns into one polars plan.
//!
//! What can be checked without the data is checked here (step kinds and their keys, table
//! names, value types); column names and types are checked against the plan's schema at
//! ingest, with the same origins, so every mistake points at `file:line:column`.

use toml::Value;

use super::layer::{Layered, Origin};
use super::{ConfigError, FileSource};

/// Keys of one `[input.tables.NAME]` entry.
pub const TABLE_KEYS: [&str; 5] = ["path", "paths", "format", "separator", "header"];

/// Step kinds of `[[input.steps]]`, and the keys each may carry besides its own.
const STEP_KINDS: [(&str, &[&str]); 8] = [
    ("filter", &[]),
    ("with_columns", &[]),
    ("select", &[]),
    ("rename", &[]),
    ("join", &["on", "left_on", "right_on", "how"]),
    ("group_by", &["agg"]),
    ("dedupe", &["keep"]),
    ("sample", &["seed"]),
];

/// A named source besides the main input, readable from SQL and join steps.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTable {
    pub name: String,
    pub files: FileSource,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SqlQuery {
    pub text: String,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinHow {
    Inner,
    Left,
    /// Rows of the left side that have a match, without the right side's columns.
    Semi,
    /// Rows of the left side that have no match.
    Anti,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepRow {
    First,
    Last,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// An SQL boolean expression; rows where it is not true are dropped.
    Filter(String),
    /// `(new or replaced column, SQL expression)`.
    WithColumns(Vec<(String, String)>),
    Select(Vec<String>),
    /// `(old name, new name)`.
    Rename(Vec<(String, String)>),
    Join {
        table: String,
        left_on: Vec<String>,
        right_on: Vec<String>,
        how: JoinHow,
    },
    /// `(output column, SQL aggregate expression such as sum(weight))`.
    GroupBy {
        keys: Vec<String>,
        aggregations: Vec<(String, String)>,
    },
    /// One row per distinct value of `columns` (every column when empty), in input order.
    Dedupe {
        columns: Vec<String>,
        keep: KeepRow,
    },
    /// Keeps each row with probability `fraction`, by the seed.
    Sample {
        fraction: f64,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    /// `input.steps.N.KIND`, the key errors name.
    pub key: String,
    pub origin: Origin,
}

/// Everything between reading the sources and mapping the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Preparation {
    pub tables: Vec<NamedTable>,
    pub sql: Option<SqlQuery>,
    pub steps: Vec<Step>,
}

/// What to do with several rows for the same (user, item) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dedupe {
    /// Every row is an observation of its own (Spark's behaviour).
    Keep,
    Error,
    First,
    Last,
    Sum,
    Mean,
    Max,
}

impl Dedupe {
    pub const NAMES: [&'static str; 7] = ["keep", "error", "first", "last", "sum", "mean", "max"];

    pub fn parse(text: &str) -> Option<Dedupe> {
        Some(match text {
            "keep" => Dedupe::Keep,
            "error" => Dedupe::Error,
            "first" => Dedupe::First,
            "last" => Dedupe::Last,
            "sum" => Dedupe::Sum,
            "mean" => Dedupe::Mean,
            "max" => Dedupe::Max,
            _ => return None,
        })
    }
}

/// A table name usable in SQL without quotes, and not the main input's.
fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn did_you_mean(known: &[&str], unknown: &str) -> Option<String> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(candidate, unknown), *candidate))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, best)| format!("did you mean `{best}`?"))
}

/// Checks one `[input.tables.NAME]` entry's shape (the unknown-key pass).
pub(crate) fn check_table_entry(
    name: &str,
    value: &Value,
    layered: &Layered,
) -> Result<(), ConfigError> {
    let key = format!("input.tables.{name}");
    if !valid_table_name(name) || name == "input" {
        return Err(ConfigError::new(format!("invalid table name `{name}`"))
            .origin(layered.key_origin(&key))
            .allowed("letters, digits and `_`, starting with a letter or `_`, up to 64 characters; not `input`, which names the main input"));
    }
    let Value::Table(entry) = value else {
        return Err(ConfigError::new(format!("wrong type for `{key}`"))
            .origin(layered.origin(&key))
            .allowed(
                "a table with `path` or `paths`, and optionally `format`, `separator`, `header`",
            )
            .hint(format!(
                "write it as a section: [input.tables.{name}] path = \"...\""
            )));
    };
    for (inner, inner_value) in entry {
        let inner_key = format!("{key}.{inner}");
        if !TABLE_KEYS.contains(&inner.as_str()) {
            let mut error = ConfigError::new(format!("unknown key `{inner_key}`"))
                .origin(layered.key_origin(&inner_key))
                .allowed(TABLE_KEYS.join(", "));
            if let Some(hint) = did_you_mean(&TABLE_KEYS, inner) {
                error = error.hint(hint);
            }
            return Err(error);
        }
        let type_ok = match inner.as_str() {
            "paths" => inner_value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_str)),
            "header" => inner_value.is_bool(),
            _ => inner_value.is_str(),
        };
        if !type_ok {
            return Err(ConfigError::new(format!("wrong type for `{inner_key}`"))
                .origin(layered.origin(&inner_key))
                .allowed(match inner.as_str() {
                    "paths" => "a list of strings",
                    "header" => "a boolean",
                    _ => "a string",
                }));
        }
    }
    if entry.contains_key("path") == entry.contains_key("paths") {
        return Err(
            ConfigError::new(format!("`{key}` needs exactly one of `path` and `paths`"))
                .origin(layered.key_origin(&key)),
        );
    }
    Ok(())
}

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn string_pairs(value: &Value) -> Option<Vec<(String, String)>> {
    value.as_table().and_then(|table| {
        table
            .iter()
            .map(|(key, value)| value.as_str().map(|text| (key.clone(), text.to_owned())))
            .collect()
    })
}

/// Checks `[[input.steps]]` into steps; `job_seed` seeds `sample` steps without their own.
pub(crate) fn steps(
    layered: &Layered,
    table_names: &[String],
    job_seed: u64,
) -> Result<Vec<Step>, ConfigError> {
    let Some(value) = layered.get("input.steps") else {
        return Ok(Vec::new());
    };
    let not_a_list = || {
        ConfigError::new("wrong type for `input.steps`")
            .origin(layered.origin("input.steps"))
            .allowed(
                "a list of tables, written as [[input.steps]] sections, each with one step kind",
            )
    };
    let Value::Array(items) = value else {
        return Err(not_a_list());
    };
    let kind_names: Vec<&str> = STEP_KINDS.iter().map(|(name, _)| *name).collect();
    let mut steps = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let base = format!("input.steps.{index}");
        let Value::Table(entry) = item else {
            return Err(not_a_list());
        };
        let step_origin = layered.origin(&base);
        let origin_of = |part: &str| {
            layered
                .origins
                .get(&format!("{base}.{part}"))
                .cloned()
                .unwrap_or_else(|| step_origin.clone())
        };
        let kinds: Vec<&str> = entry
            .keys()
            .map(String::as_str)
            .filter(|key| kind_names.contains(key))
            .collect();
        let kind = match kinds.as_slice() {
            [kind] => *kind,
            [] => {
                let mut error = ConfigError::new(format!("step {} has no step kind", index + 1))
                    .key(&base)
                    .origin(step_origin.clone())
                    .allowed(kind_names.join(", "));
                if let Some(hint) = entry.keys().find_map(|key| did_you_mean(&kind_names, key)) {
                    error = error.hint(hint);
                }
                return Err(error);
            }
            [first, second, ..] => {
                return Err(ConfigError::new(format!(
                    "step {} has two step kinds, `{first}` and `{second}`",
                    index + 1
                ))
                .key(&base)
                .origin(origin_of(second))
                .hint("each [[input.steps]] section does one thing: split it in two"));
            }
        };
        let extras = STEP_KINDS
            .iter()
            .find(|(name, _)| *name == kind)
            .map_or(&[][..], |(_, extras)| *extras);
        for key in entry.keys() {
            if key != kind && !extras.contains(&key.as_str()) {
                let mut allowed: Vec<&str> = vec![kind];
                allowed.extend(extras.iter());
                let mut error = ConfigError::new(format!("unknown key `{key}` in a `{kind}` step"))
                    .key(&format!("{base}.{key}"))
                    .origin(layered.key_origin(&format!("{base}.{key}")))
                    .allowed(allowed.join(", "));
                let mut everything: Vec<&str> = kind_names.clone();
                for (_, more) in STEP_KINDS {
                    everything.extend(more.iter());
                }
                if let Some(hint) = did_you_mean(&everything, key) {
                    error = error.hint(hint);
                }
                return Err(error);
            }
        }
        let key = format!("{base}.{kind}");
        let value = &entry[kind];
        let wrong = |part: &str, allowed: &str| {
            ConfigError::new(format!("wrong value for `{base}.{part}`"))
                .origin(origin_of(part))
                .found(value_text(entry.get(part)))
                .allowed(allowed.to_owned())
        };
        let column_list = |part: &str| -> Result<Vec<String>, ConfigError> {
            match entry.get(part).and_then(strings) {
                Some(list) if !list.is_empty() && list.iter().all(|name| !name.is_empty()) => {
                    Ok(list)
                }
                _ => Err(wrong(
                    part,
                    "a column name or a non-empty list of column names",
                )),
            }
        };
        let step_kind = match kind {
            "filter" => match value.as_str() {
                Some(text) if !text.trim().is_empty() => StepKind::Filter(text.to_owned()),
                _ => {
                    return Err(wrong(
                        kind,
                        "an SQL condition, e.g. \"rating >= 3 AND event <> 'view'\"",
                    ));
                }
            },
            "with_columns" => match string_pairs(value) {
                Some(pairs) if !pairs.is_empty() => StepKind::WithColumns(pairs),
                _ => {
                    return Err(wrong(
                        kind,
                        "a table of column = SQL expression, e.g. { weight = \"CASE WHEN event = 'buy' THEN 5 ELSE 1 END\" }",
                    ));
                }
            },
            "select" => StepKind::Select(column_list(kind)?),
            "rename" => match string_pairs(value) {
                Some(pairs) if !pairs.is_empty() => StepKind::Rename(pairs),
                _ => {
                    return Err(wrong(
                        kind,
                        "a table of old name = new name, e.g. { uid = \"user\" }",
                    ));
                }
            },
            "join" => {
                let table = match value.as_str() {
                    Some(name) if table_names.iter().any(|known| known == name) => name.to_owned(),
                    Some(name) => {
                        let known: Vec<&str> = table_names.iter().map(String::as_str).collect();
                        let mut error =
                            ConfigError::new(format!("unknown table `{name}` in a join step"))
                                .key(&key)
                                .origin(origin_of(kind))
                                .allowed(if known.is_empty() {
                                    "a table defined as [input.tables.NAME]; none is".to_owned()
                                } else {
                                    format!(
                                        "tables defined in [input.tables]: {}",
                                        known.join(", ")
                                    )
                                });
                        if let Some(hint) = did_you_mean(&known, name) {
                            error = error.hint(hint);
                        }
                        return Err(error);
                    }
                    None => return Err(wrong(kind, "the name of a table from [input.tables]")),
                };
                let (left_on, right_on) =
                    match (entry.get("on"), entry.get("left_on"), entry.get("right_on")) {
                        (Some(_), None, None) => (column_list("on")?, column_list("on")?),
                        (None, Some(_), Some(_)) => {
                            (column_list("left_on")?, column_list("right_on")?)
                        }
                        _ => {
                            return Err(ConfigError::new(format!(
                                "a join step needs its keys at `{base}`"
                            ))
                            .origin(step_origin.clone())
                            .allowed(
                                "`on` (same names on both sides), or both `left_on` and `right_on`",
                            ));
                        }
                    };
                if left_on.len() != right_on.len() {
                    return Err(wrong(
                        "right_on",
                        &format!("as many columns as left_on ({})", left_on.len()),
                    ));
                }
                let how = match entry.get("how").map(Value::as_str) {
                    None | Some(Some("inner")) => JoinHow::Inner,
                    Some(Some("left")) => JoinHow::Left,
                    Some(Some("semi")) => JoinHow::Semi,
                    Some(Some("anti")) => JoinHow::Anti,
                    _ => return Err(wrong("how", "inner, left, semi or anti")),
                };
                StepKind::Join {
                    table,
                    left_on,
                    right_on,
                    how,
                }
            }
            "group_by" => {
                let keys = column_list(kind)?;
                let aggregations = match entry.get("agg").and_then(string_pairs) {
                    Some(pairs) if !pairs.is_empty() => pairs,
                    _ => {
                        return Err(ConfigError::new(format!("a group_by step needs `{base}.agg`"))
                            .origin(origin_of("agg"))
                            .allowed("a table of output column = SQL aggregate, e.g. agg = { weight = \"sum(weight)\", last_seen = \"max(timestamp)\" }"));
                    }
                };
                StepKind::GroupBy { keys, aggregations }
            }
            "dedupe" => {
                let columns = match value {
                    Value::Boolean(true) => Vec::new(),
                    _ => column_list(kind).map_err(|_| {
                        wrong(
                            kind,
                            "true (whole rows), a column name or a list of column names",
                        )
                    })?,
                };
                let keep = match entry.get("keep").map(Value::as_str) {
                    None | Some(Some("first")) => KeepRow::First,
                    Some(Some("last")) => KeepRow::Last,
                    _ => return Err(wrong("keep", "first or last (in input order)")),
                };
                StepKind::Dedupe { columns, keep }
            }
            _ => {
                let fraction = match value {
                    Value::Float(number) => *number,
                    Value::Integer(number) => *number as f64,
                    _ => f64::NAN,
                };
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(wrong(
                        kind,
                        "a fraction of rows to keep, more than 0 and at most 1",
                    ));
                }
                let seed = match entry.get("seed") {
                    None => job_seed,
                    Some(Value::Integer(seed)) if *seed >= 0 => *seed as u64,
                    Some(_) => return Err(wrong("seed", "an integer from 0 to 2^63-1")),
                };
                StepKind::Sample { fraction, seed }
            }
        };
        steps.push(Step {
            kind: step_kind,
            origin: origin_of(kind),
            key,
        });
    }
    Ok(steps)
}

fn value_text(value: Option<&Value>) -> String {
    value.map_or_else(|| "(nothing)".to_owned(), Value::to_string)
}
