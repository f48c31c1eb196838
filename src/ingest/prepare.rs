//! The job file's data preparation as one polars lazy plan: the main input and the named
//! tables as scans (Hive-style `key=value` directories as columns), `input.sql` over them,
//! then `[[input.steps]]` in order; collected once, by the streaming engine.
//!
//! Every step is checked against the schema of the plan before it (missing columns, join keys
//! of different types), and reported at the step's place in the job file (exit code 2). What
//! only the data can show (a cast that fails on a row) is an input error about the prepared
//! input (exit code 3).

use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars::sql::SQLContext;

use super::{Fingerprint, IngestError, fingerprint, read_file, reader, synthetic};
use crate::config::prepare::{JoinHow, KeepRow, Step, StepKind};
use crate::config::{
    ColumnRef, ConfigError, FileSource, Format, InputConfig, Source, SyntheticSpec,
};
use crate::dataset::split;

/// What errors about rows of the prepared input name instead of a file.
pub const PREPARED: &str = "the prepared input (input.sql / input.steps)";

/// Name of the main input in SQL.
const MAIN_TABLE: &str = "input";

/// Stream of `sample` steps, apart from the split's and `sample_fraction`'s.
pub const SAMPLE_STEP_STREAM: u64 = 0x5354_4550_5341;

/// Whether the input goes through the preparation path: a preparation is set, or the source
/// is a synthetic event log (a table that only a preparation turns into ratings).
pub fn applies(input: &InputConfig) -> bool {
    input.preparation.is_some()
        || matches!(
            input.source,
            Source::Synthetic(SyntheticSpec::Events { .. })
        )
}

fn polars_failure(error: PolarsError) -> IngestError {
    IngestError::Malformed {
        path: PathBuf::from(PREPARED),
        problem: error.to_string(),
    }
}

/// The plan and the fingerprints of the files it reads.
struct Plan {
    frame: LazyFrame,
    fingerprints: Vec<Fingerprint>,
}

/// The per-row value of the rating when ingestion runs the preparation's last step natively:
/// a `group_by` on exactly the mapped user and item columns whose rating is `sum(x)`,
/// `count(x)` or `count(*)`, in a ratings job without `sample_fraction` (which samples the
/// grouped rows). The step is then left out of the plan, the rating column becomes that value
/// (`x`; 1 where `x` is present, else 0; 1) and the pairs are summed by
/// `dedupe = "sum"`, whose rows keep the first appearance order a stable group-by gives. The
/// value comes named as the rating column.
/// Polars' group-by over 100M distinct pairs took about 5x the time of reading them. The other
/// aggregations make columns a ratings job does not read. Sums are of the values as f32.
pub fn native_sum(input: &InputConfig, time_column: Option<&ColumnRef>) -> Option<Expr> {
    let preparation = input.preparation.as_deref()?;
    let StepKind::GroupBy { keys, aggregations } = &preparation.steps.last()?.kind else {
        return None;
    };
    let name = |column: &ColumnRef| column.name().map(str::to_owned);
    let (user, item, rating) = (
        name(&input.columns.user)?,
        name(&input.columns.item)?,
        name(&input.columns.rating)?,
    );
    let pair_keys = keys.len() == 2
        && keys.contains(&user)
        && keys.contains(&item)
        && user != item
        && rating != user
        && rating != item;
    if !pair_keys || time_column.is_some() || input.sample_fraction < 1.0 {
        return None;
    }
    let (output, text) = aggregations.iter().find(|(output, _)| *output == rating)?;
    let sum = |expression: &Expr| match expression {
        Expr::Agg(AggExpr::Sum(value)) => Some(value.as_ref().clone()),
        _ => None,
    };
    let value = match polars::sql::sql_expr(text).ok()? {
        // SQL's SUM is null for a pair whose values are all missing (polars writes it as
        // `when(null_count < len).then(sum)`): with `null_policy = "drop"` the pair's rows
        // are all dropped here, as its null sum would be; with "error" a missing value is an
        // error even beside present ones, where the group-by would have skipped it.
        Expr::Ternary { truthy, .. } => sum(&truthy),
        expression @ Expr::Agg(AggExpr::Sum(_)) => sum(&expression),
        Expr::Agg(AggExpr::Count {
            input,
            include_nulls: false,
        }) => Some(input.as_ref().clone().is_not_null().cast(DataType::Float32)),
        Expr::Agg(AggExpr::Count {
            include_nulls: true,
            ..
        })
        | Expr::Len => Some(lit(1.0f32)),
        _ => None,
    }?;
    Some(value.alias(output.as_str()))
}

/// Builds the plan without running it; with `native_sum`, without the last step and with the
/// rating column as that value (see [`native_sum`]).
fn plan(input: &InputConfig, native_sum: Option<Expr>) -> Result<Plan, IngestError> {
    let mut fingerprints = Vec::new();
    let mut main = source_frame(&input.source, &mut fingerprints)?;
    if let Some(limit) = input.limit {
        main = main.slice(0, limit.min(IdxSize::MAX as u64) as IdxSize);
    }
    let Some(preparation) = &input.preparation else {
        return Ok(Plan {
            frame: main,
            fingerprints,
        });
    };
    let mut tables: Vec<(String, LazyFrame)> = Vec::new();
    for table in &preparation.tables {
        tables.push((
            table.name.clone(),
            files_frame(&table.files, &mut fingerprints)?,
        ));
    }
    let mut frame = main;
    if let Some(sql) = &preparation.sql {
        frame = run_sql(sql, frame, &tables)?;
    }
    let steps = match &native_sum {
        Some(_) => &preparation.steps[..preparation.steps.len().saturating_sub(1)],
        None => &preparation.steps[..],
    };
    for step in steps {
        frame = apply_step(step, frame, &tables)?;
    }
    if let Some(value) = native_sum {
        // The step is still checked (its keys and aggregations against the columns), so its
        // errors are those of the polars path.
        if let Some(last) = preparation.steps.last() {
            let _checked = apply_step(last, frame.clone(), &tables)?;
        }
        frame = frame.with_columns([value]);
    }
    Ok(Plan {
        frame,
        fingerprints,
    })
}

/// Runs `work`, turning a polars panic inside it into an input error that says `what` failed.
fn guarded<T>(what: &str, work: impl FnOnce() -> Result<T, IngestError>) -> Result<T, IngestError> {
    crate::exec::contain_panics(work).unwrap_or_else(|message| {
        Err(IngestError::Malformed {
            path: PathBuf::from(PREPARED),
            problem: format!("{what} (polars: {message})"),
        })
    })
}

/// Runs the preparation: the frame the column mapping reads, and the inputs' fingerprints.
/// With `only`, the frame holds just those of the named columns the plan makes (the rest are
/// left to the column mapping to report): polars then prunes what nothing reads, such as a
/// joined table's other columns.
pub fn prepared_frame(
    input: &InputConfig,
    only: Option<&[&ColumnRef]>,
    native_sum: Option<Expr>,
) -> Result<(DataFrame, Vec<Fingerprint>), IngestError> {
    guarded("the preparation failed", || {
        let mut plan = plan(input, native_sum)?;
        let names: Option<Vec<&str>> =
            only.and_then(|columns| columns.iter().map(|column| column.name()).collect());
        if let Some(mut names) = names {
            let schema = schema_of(&mut plan.frame)?;
            names.retain(|name| schema.contains(name));
            let mut seen = std::collections::HashSet::new();
            names.retain(|name| seen.insert(*name));
            plan.frame = plan
                .frame
                .select(names.into_iter().map(col).collect::<Vec<_>>());
        }
        let frame = plan
            .frame
            .collect_with_engine(Engine::Streaming)
            .map_err(polars_failure)?
            .unwrap_single();
        Ok((frame, plan.fingerprints))
    })
}

/// The optimized plan as polars prints it, for `--dry-run --verbose`.
pub fn describe_plan(input: &InputConfig) -> Result<String, IngestError> {
    guarded("the plan could not be built", || {
        plan(input, None)?
            .frame
            .describe_optimized_plan()
            .map_err(polars_failure)
    })
}

fn source_frame(
    source: &Source,
    fingerprints: &mut Vec<Fingerprint>,
) -> Result<LazyFrame, IngestError> {
    match source {
        Source::Files(files) => files_frame(files, fingerprints),
        Source::Synthetic(spec) => {
            let (frame, print) = synthetic_frame(spec)?;
            fingerprints.push(print);
            Ok(frame.lazy())
        }
    }
}

fn synthetic_frame(spec: &SyntheticSpec) -> Result<(DataFrame, Fingerprint), IngestError> {
    let description = serde_json::to_string(spec).unwrap_or_default();
    let frame = if let SyntheticSpec::Events {
        users,
        items,
        ratings,
        rank,
        seed,
    } = spec
    {
            let log =
                synthetic::generate_events(*users as usize, *items as usize, *ratings, *rank as usize, *seed);
            DataFrame::new_infer_height(vec![
                Column::new("user".into(), log.user),
                Column::new("item".into(), log.item),
                Column::new("event".into(), log.event),
                Column::new("timestamp".into(), log.timestamp),
            ])
    } else if let Some(ratings) = synthetic::generated_ratings(spec) {
        DataFrame::new_infer_height(vec![
            Column::new("user".into(), ratings.user),
            Column::new("item".into(), ratings.item),
            Column::new("rating".into(), ratings.rating),
        ])
    } else {
        return Err(IngestError::Malformed {
            path: PathBuf::from(PREPARED),
            problem: "a synthetic classification or regression table cannot go through input.sql or input.steps; write it to a file first".to_owned(),
        });
    }
    .map_err(polars_failure)?;
    let print = Fingerprint {
        source: format!("synthetic {description}"),
        blake3: blake3::hash(description.as_bytes()).to_hex().to_string(),
        bytes: 0,
        rows: frame.height() as u64,
    };
    Ok((frame, print))
}

/// `key=value` directories of a path, as Spark and polars read Hive-partitioned data.
fn hive_parts(path: &Path) -> Vec<(String, String)> {
    path.parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|component| {
            let text = component.as_os_str().to_str()?;
            let (key, value) = text.split_once('=')?;
            let identifier =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            identifier.then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The Hive partition columns of a source's files. A file without a key gets a missing value
/// there. The Spark engine adds the same columns.
#[derive(Debug, serde::Serialize)]
pub struct Partitions {
    /// Every key any file has, with whether all its values are integers (else it is text).
    pub keys: Vec<(String, bool)>,
    /// Each file's `(key, value)` pairs.
    pub per_file: Vec<Vec<(String, String)>>,
}

/// The Hive partition columns of `paths`, in the order the keys first appear.
pub fn partition_columns(paths: &[PathBuf]) -> Partitions {
    let partitions: Vec<Vec<(String, String)>> =
        paths.iter().map(|path| hive_parts(path)).collect();
    let mut keys: Vec<(String, bool)> = Vec::new();
    for parts in &partitions {
        for (key, value) in parts {
            let integer = value.parse::<i64>().is_ok();
            match keys.iter_mut().find(|(known, _)| known == key) {
                Some((_, all_integer)) => *all_integer &= integer,
                None => keys.push((key.clone(), integer)),
            }
        }
    }
    Partitions {
        keys,
        per_file: partitions,
    }
}

/// One scan per file with its Hive columns, concatenated (types widened to a common one).
fn files_frame(
    files: &FileSource,
    fingerprints: &mut Vec<Fingerprint>,
) -> Result<LazyFrame, IngestError> {
    let Partitions {
        keys,
        per_file: partitions,
    } = partition_columns(&files.paths);
    let mut frames = Vec::with_capacity(files.paths.len());
    for (path, parts) in files.paths.iter().zip(&partitions) {
        let bytes = read_file(path)?;
        fingerprints.push(fingerprint(path, &bytes, 0));
        let mut frame = file_frame(path, &bytes, files)?;
        drop(bytes);
        let columns: Vec<Expr> = keys
            .iter()
            .map(|(key, integer)| {
                let value = parts
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| value.as_str());
                let literal = match (value, integer) {
                    (Some(text), true) => lit(text.parse::<i64>().unwrap_or_default()),
                    (Some(text), false) => lit(text.to_owned()),
                    (None, true) => lit(NULL).cast(DataType::Int64),
                    (None, false) => lit(NULL).cast(DataType::String),
                };
                literal.alias(key.as_str())
            })
            .collect();
        if !columns.is_empty() {
            frame = frame.with_columns(columns);
        }
        frames.push(frame);
    }
    if frames.len() == 1 {
        return Ok(frames.remove(0));
    }
    concat(
        frames,
        UnionArgs {
            to_supertypes: true,
            ..UnionArgs::default()
        },
    )
    .map_err(|error| IngestError::Malformed {
        path: files.paths.first().cloned().unwrap_or_default(),
        problem: format!("its files cannot be read as one table: {error}"),
    })
}

/// A lazy scan of one file: Parquet and single-byte-separated text are scanned by polars (so
/// only the columns and rows the plan needs are read); other formats are read whole first.
fn file_frame(path: &Path, bytes: &[u8], files: &FileSource) -> Result<LazyFrame, IngestError> {
    let polars_path =
        || PlRefPath::try_from_path(path).map_err(|error| reader::polars_error(path, error));
    if bytes.is_empty() {
        return Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: "the file is empty".to_owned(),
        });
    }
    match files.format {
        Format::Parquet => LazyFrame::scan_parquet(
            polars_path()?,
            ScanArgsParquet {
                glob: false,
                hive_options: HiveOptions {
                    enabled: Some(false),
                    ..HiveOptions::default()
                },
                ..ScanArgsParquet::default()
            },
        )
        .map_err(|error| reader::polars_error(path, error)),
        format if format.is_delimited_text() => {
            let separator = match &files.separator {
                Some(separator) => separator.clone(),
                None => reader::sniffed_separator(path)?,
            };
            if separator.len() == 1 {
                LazyCsvReader::new(polars_path()?)
                    .with_has_header(files.header)
                    .with_separator(separator.as_bytes()[0])
                    .with_infer_schema_length(Some(10_000))
                    .finish()
                    .map_err(|error| reader::polars_error(path, error))
            } else {
                Ok(reader::read_whole(path, bytes, files)?.lazy())
            }
        }
        Format::Libsvm => Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: "a LIBSVM file cannot go through input.sql or input.steps".to_owned(),
        }),
        _ => Ok(reader::read_whole(path, bytes, files)?.lazy()),
    }
}

fn schema_of(frame: &mut LazyFrame) -> Result<SchemaRef, IngestError> {
    frame.collect_schema().map_err(polars_failure)
}

fn names_of(schema: &Schema) -> Vec<String> {
    schema.iter_names().map(|name| name.to_string()).collect()
}

/// Makes every join of `plan` keep its left side's row order (its right side's for a right
/// join). Polars SQL builds joins without an order, so under the streaming engine their rows
/// came out in an order that varied from run to run, and with it every row-position rule after
/// them: a `sample` step, the seeded split, first-appearance order (tests run the same job
/// again and compare). The nodes SQL makes are walked; a join below any other is left as is.
fn joins_keep_order(plan: &mut DslPlan) {
    match plan {
        DslPlan::Join {
            input_left,
            input_right,
            options,
            ..
        } => {
            let options = Arc::make_mut(options);
            if options.args.maintain_order == MaintainOrderJoin::None {
                options.args.maintain_order = if options.args.how == JoinType::Right {
                    MaintainOrderJoin::Right
                } else {
                    MaintainOrderJoin::Left
                };
            }
            joins_keep_order(Arc::make_mut(input_left));
            joins_keep_order(Arc::make_mut(input_right));
        }
        DslPlan::Select { input, .. }
        | DslPlan::GroupBy { input, .. }
        | DslPlan::Filter { input, .. }
        | DslPlan::Distinct { input, .. }
        | DslPlan::Sort { input, .. }
        | DslPlan::Slice { input, .. }
        | DslPlan::HStack { input, .. }
        | DslPlan::MapFunction { input, .. } => joins_keep_order(Arc::make_mut(input)),
        DslPlan::Union { inputs, .. } | DslPlan::HConcat { inputs, .. } => {
            inputs.iter_mut().for_each(joins_keep_order)
        }
        // A plan whose schema was resolved holds it converted; the original stands in for it
        // (polars converts it again when the plan runs).
        DslPlan::IR { dsl, .. } => {
            let mut original = dsl.as_ref().clone();
            joins_keep_order(&mut original);
            *plan = original;
        }
        _ => {}
    }
}

fn run_sql(
    sql: &crate::config::prepare::SqlQuery,
    main: LazyFrame,
    tables: &[(String, LazyFrame)],
) -> Result<LazyFrame, IngestError> {
    let mut context = SQLContext::new();
    let mut known: Vec<(String, LazyFrame)> = vec![(MAIN_TABLE.to_owned(), main.clone())];
    known.extend(tables.iter().cloned());
    for (name, frame) in &known {
        context.register(name, frame.clone());
    }
    let describe_tables = |known: &mut Vec<(String, LazyFrame)>| -> String {
        known
            .iter_mut()
            .map(|(name, frame)| match frame.collect_schema() {
                Ok(schema) => format!("{name} ({})", crate::text::column_list(&names_of(&schema))),
                Err(_) => name.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let failed = |error: PolarsError, known: &mut Vec<(String, LazyFrame)>| {
        IngestError::Job(
            ConfigError::new(format!("input.sql: {}", sql_message(&error)))
                .key("input.sql")
                .origin(sql.origin.clone())
                .hint(format!("tables: {}", describe_tables(known))),
        )
    };
    let mut frame = match context.execute(&sql.text) {
        Ok(frame) => frame,
        Err(error) => return Err(failed(error, &mut known)),
    };
    joins_keep_order(&mut frame.logical_plan);
    // Unknown columns surface when the schema is resolved, not when the query parses.
    if let Err(error) = frame.collect_schema() {
        return Err(failed(error, &mut known));
    }
    Ok(frame)
}

/// Polars' message without its trailing context lines and backtrace hints.
fn sql_message(error: &PolarsError) -> String {
    let text = error.to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim_start().starts_with("Resolved plan until failure"))
        .collect();
    first.join(" ").trim().to_owned()
}

fn step_error(step: &Step, problem: String) -> IngestError {
    IngestError::Job(
        ConfigError::new(problem)
            .key(&step.key)
            .origin(step.origin.clone()),
    )
}

fn require_columns(
    step: &Step,
    schema: &Schema,
    wanted: &[String],
    side: &str,
) -> Result<(), IngestError> {
    let names = names_of(schema);
    for name in wanted {
        if schema.get(name.as_str()).is_none() {
            let mut error = ConfigError::new(format!(
                "step `{}`: no column `{name}` {side}",
                step_name(step)
            ))
            .key(&step.key)
            .origin(step.origin.clone())
            .allowed(crate::text::column_list(&names));
            if let Some(close) = reader::closest_name(&names, name) {
                error = error.hint(format!(
                    "did you mean `{}`?",
                    crate::text::shorten(close, 80)
                ));
            }
            return Err(IngestError::Job(error));
        }
    }
    Ok(())
}

fn step_name(step: &Step) -> &str {
    step.key.rsplit('.').next().unwrap_or("step")
}

/// An SQL expression as a polars expression, its columns checked against `schema`.
fn expression(step: &Step, text: &str, schema: &Schema) -> Result<Expr, IngestError> {
    let expr = polars::sql::sql_expr(text).map_err(|error| {
        step_error(
            step,
            format!(
                "step `{}`: cannot read the SQL expression {text:?}: {}",
                step_name(step),
                sql_message(&error)
            ),
        )
    })?;
    let used: Vec<String> = expr
        .clone()
        .meta()
        .root_names()
        .into_iter()
        .map(|name| name.to_string())
        .collect();
    require_columns(step, schema, &used, &format!("for {text:?}"))?;
    Ok(expr)
}

fn apply_step(
    step: &Step,
    mut frame: LazyFrame,
    tables: &[(String, LazyFrame)],
) -> Result<LazyFrame, IngestError> {
    let schema = schema_of(&mut frame)?;
    let next = match &step.kind {
        StepKind::Filter(text) => frame.filter(expression(step, text, &schema)?),
        StepKind::WithColumns(pairs) => {
            let mut columns = Vec::with_capacity(pairs.len());
            for (name, text) in pairs {
                columns.push(expression(step, text, &schema)?.alias(name.as_str()));
            }
            frame.with_columns(columns)
        }
        StepKind::Select(names) => {
            require_columns(step, &schema, names, "to select")?;
            frame.select(
                names
                    .iter()
                    .map(|name| col(name.as_str()))
                    .collect::<Vec<_>>(),
            )
        }
        StepKind::Rename(pairs) => {
            let old: Vec<String> = pairs.iter().map(|(old, _)| old.clone()).collect();
            require_columns(step, &schema, &old, "to rename")?;
            frame.rename(old, pairs.iter().map(|(_, new)| new.clone()), true)
        }
        StepKind::Join {
            table,
            left_on,
            right_on,
            how,
        } => {
            let Some((_, other)) = tables.iter().find(|(name, _)| name == table) else {
                return Err(step_error(step, format!("unknown table `{table}`")));
            };
            let mut other = other.clone();
            let other_schema = schema_of(&mut other)?;
            require_columns(step, &schema, left_on, "on the left side")?;
            require_columns(
                step,
                &other_schema,
                right_on,
                &format!("in table `{table}`"),
            )?;
            for (left, right) in left_on.iter().zip(right_on) {
                let (left_type, right_type) =
                    (schema.get(left.as_str()), other_schema.get(right.as_str()));
                if left_type != right_type {
                    return Err(IngestError::Job(
                        ConfigError::new(format!(
                            "step `join`: key `{left}` is {} but `{table}.{right}` is {}",
                            left_type.map_or_else(String::new, ToString::to_string),
                            right_type.map_or_else(String::new, ToString::to_string)
                        ))
                        .key(&step.key)
                        .origin(step.origin.clone())
                        .hint(format!(
                            "cast one side first, e.g. a with_columns step {{ {left} = \"CAST({left} AS ...)\" }}"
                        )),
                    ));
                }
            }
            let join_type = match how {
                JoinHow::Inner => JoinType::Inner,
                JoinHow::Left => JoinType::Left,
                JoinHow::Semi => JoinType::Semi,
                JoinHow::Anti => JoinType::Anti,
            };
            let left: Vec<Expr> = left_on.iter().map(|name| col(name.as_str())).collect();
            let right: Vec<Expr> = right_on.iter().map(|name| col(name.as_str())).collect();
            frame.join(
                other,
                left,
                right,
                JoinArgs {
                    maintain_order: MaintainOrderJoin::Left,
                    ..JoinArgs::new(join_type)
                },
            )
        }
        StepKind::GroupBy { keys, aggregations } => {
            require_columns(step, &schema, keys, "to group by")?;
            let mut aggregates = Vec::with_capacity(aggregations.len());
            for (name, text) in aggregations {
                aggregates.push(expression(step, text, &schema)?.alias(name.as_str()));
            }
            frame
                .group_by_stable(
                    keys.iter()
                        .map(|name| col(name.as_str()))
                        .collect::<Vec<_>>(),
                )
                .agg(aggregates)
        }
        StepKind::Dedupe { columns, keep } => {
            require_columns(step, &schema, columns, "to dedupe on")?;
            let subset = (!columns.is_empty()).then(|| {
                columns
                    .iter()
                    .map(|name| col(name.as_str()))
                    .collect::<Vec<_>>()
            });
            let strategy = match keep {
                KeepRow::First => UniqueKeepStrategy::First,
                KeepRow::Last => UniqueKeepStrategy::Last,
            };
            frame.unique_stable_generic(subset, strategy)
        }
        StepKind::Sample {
            fraction,
            seed: step_seed,
        } => {
            // Rows are drawn by their position, so the sample is the same for any thread
            // count; that needs the rows in hand.
            let collected = frame
                .collect_with_engine(Engine::Streaming)
                .map_err(polars_failure)?
                .unwrap_single();
            let stream = split::mix(*step_seed, SAMPLE_STEP_STREAM);
            let mask: BooleanChunked = (0..collected.height() as u64)
                .map(|row| split::unit(stream, row) < *fraction)
                .collect();
            collected.filter(&mask).map_err(polars_failure)?.lazy()
        }
    };
    let mut next = next;
    // Each step's own mistakes (a wrong aggregate) are named at the step.
    next.collect_schema().map_err(|error| {
        step_error(
            step,
            format!("step `{}`: {}", step_name(step), sql_message(&error)),
        )
    })?;
    Ok(next)
}
