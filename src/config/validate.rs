//! Turns the merged layers into a [`JobConfig`]: unknown keys, wrong types, ranges and
//! combinations are all caught here, each with the place it was set.

use std::path::{Path, PathBuf};

use toml::Value;

use super::layer::{self, Layered, Origin};
use super::params::{self, Kind};
use super::prepare::{self, Dedupe, NamedTable, Preparation, SqlQuery};
use super::*;
use crate::algo::als::{AlsParams, Solver};
use crate::algo::trees::{Ensemble, FeatureSubset, Impurity, Loss, TreeParams, TreeTask};
use crate::eval::metric::{Metric, MetricKind};

/// The layers in precedence order, lowest first, as the CLI collected them.
pub struct Sources<'a> {
    pub job_file: &'a Path,
    /// `conf/defaults.toml` or `--properties-file`, when present.
    pub defaults_file: Option<&'a Path>,
    /// `(flag, key, value)` for `--master`, `--name`, ...
    pub flags: Vec<(&'static str, &'static str, String)>,
    pub confs: &'a [String],
}

/// Reads every layer and merges them (defaults < defaults file < job file < flags < --conf).
pub fn layer_sources(sources: &Sources<'_>) -> Result<Layered, ConfigError> {
    let mut merged = layer::defaults();
    if let Some(path) = sources.defaults_file {
        let mut defaults_file = layer::load_file(path)?;
        // `[serve]` configures `submit serve` (config::serve checks it), not jobs.
        defaults_file.remove_section("serve");
        check_keys(&defaults_file)?;
        merged.merge(defaults_file)?;
    }
    let job = layer::load_file(sources.job_file)?;
    check_keys(&job)?;
    merged.merge(job)?;
    let mut flags = Layered::default();
    for (flag, key, value) in &sources.flags {
        flags.set(key, Value::String(value.clone()), Origin::Flag(flag));
    }
    merged.merge(flags)?;
    for argument in sources.confs {
        let (key, value) = layer::conf_argument(argument)?;
        let mut conf = Layered::default();
        conf.set(&key, value, Origin::Conf(argument.clone()));
        check_keys(&conf)?;
        merged.merge(conf)?;
    }
    Ok(merged)
}

/// Checks a job file's text on its own (built-in defaults below it, no flags): what the job
/// file parser fuzz target drives.
pub fn validate_text(path: &Path, text: &str) -> Result<JobConfig, ConfigError> {
    let mut merged = layer::defaults();
    let job = layer::parse_text(path, text)?;
    check_keys(&job)?;
    merged.merge(job)?;
    validate(merged, path)
}

/// Every key must be in the registry and have the registered type.
fn check_keys(layered: &Layered) -> Result<(), ConfigError> {
    fn walk(prefix: &str, table: &toml::Table, layered: &Layered) -> Result<(), ConfigError> {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if prefix == "tuning.grid" {
                check_grid_entry(key, value, &path, layered)?;
                continue;
            }
            if prefix == "input.tables" {
                prepare::check_table_entry(key, value, layered)?;
                continue;
            }
            if prefix == "model.monotone_constraints" {
                // Open-ended: feature names, each a direction.
                if !matches!(value, Value::Integer(-1..=1)) {
                    return Err(ConfigError::new(format!("wrong value for `{path}`"))
                        .origin(layered.origin(&path))
                        .found(describe_value(value))
                        .allowed("1 (output never decreases as the feature grows), -1 (never increases) or 0 (no constraint)"));
                }
                continue;
            }
            if prefix == "spark" || prefix.starts_with("spark.") {
                // Spark's own settings: open-ended, checked by Spark; types by spark::settings.
                continue;
            }
            if path == "serve" {
                return Err(ConfigError::new("unknown key `serve` in a job")
                    .origin(layered.key_origin(&path))
                    .hint(
                        "`[serve]` configures `submit serve` and belongs in conf/defaults.toml",
                    ));
            }
            let Some(param) = params::find(&path) else {
                let suggestions = params::suggestions(&path);
                let mut error = ConfigError::new(format!("unknown key `{path}`"))
                    .origin(layered.key_origin(&path));
                let section = params::parent(&path);
                error = if let Some(best) = suggestions.first() {
                    error.hint(format!("did you mean `{best}`?"))
                } else {
                    let known: Vec<&str> = params::PARAMS
                        .iter()
                        .filter(|param| params::parent(param.key) == section)
                        .map(|param| &param.key[section.len() + usize::from(!section.is_empty())..])
                        .collect();
                    error.hint(format!(
                        "known keys in {}: {}",
                        if section.is_empty() {
                            "the job file"
                        } else {
                            section
                        },
                        known.join(", ")
                    ))
                };
                return Err(error);
            };
            if !type_matches(param.kind, value) {
                return Err(ConfigError::new(format!("wrong type for `{path}`"))
                    .origin(layered.origin(&path))
                    .found(describe_value(value))
                    .allowed(format!("{}: {}", param.kind.with_article(), param.allowed)));
            }
            if let Value::Table(inner) = value {
                walk(&path, inner, layered)?;
            }
        }
        Ok(())
    }
    walk("", &layered.table, layered)
}

/// Model parameters a grid may vary (not the algorithm, and nothing batch jobs read).
fn grid_parameter(name: &str) -> Option<&'static params::Param> {
    params::find(&format!("model.{name}")).filter(|param| {
        param.kind != Kind::Section
            && !matches!(
                name,
                // The algorithm, what batch jobs read, and what shapes the data rather than
                // the model (the early-stopping rows, categorical detection) stay fixed.
                "algorithm"
                    | "from"
                    | "handle_invalid"
                    | "validation_fraction"
                    | "validation_column"
                    | "max_categories"
            )
    })
}

/// `tuning.grid.<name> = [values]`: a model parameter and a non-empty list of values of its type.
fn check_grid_entry(
    name: &str,
    value: &Value,
    path: &str,
    layered: &Layered,
) -> Result<(), ConfigError> {
    let Some(param) = grid_parameter(name) else {
        let mut candidates: Vec<(f64, &str)> = params::PARAMS
            .iter()
            .filter_map(|param| param.key.strip_prefix("model."))
            .filter(|candidate| grid_parameter(candidate).is_some())
            .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let error = ConfigError::new(format!("unknown grid parameter `{path}`"))
            .origin(layered.key_origin(path))
            .allowed("a [model] training parameter, e.g. rank, reg_param, implicit_prefs, max_depth, num_trees, step_size");
        return Err(match candidates.first() {
            Some((score, best)) if *score >= 0.8 => {
                error.hint(format!("did you mean `tuning.grid.{best}`?"))
            }
            _ => error,
        });
    };
    let values = match value.as_array() {
        Some(values) if !values.is_empty() => values,
        _ => {
            return Err(ConfigError::new(format!(
                "a grid entry must be a non-empty list: `{path}`"
            ))
            .origin(layered.origin(path))
            .found(describe_value(value))
            .allowed(format!(
                "a list of values, each {}: {}",
                param.kind.with_article(),
                param.allowed
            )));
        }
    };
    if let Some(bad) = values.iter().find(|item| !type_matches(param.kind, item)) {
        return Err(
            ConfigError::new(format!("wrong type in grid entry `{path}`"))
                .origin(layered.origin(path))
                .found(describe_value(bad))
                .allowed(format!("{}: {}", param.kind.with_article(), param.allowed)),
        );
    }
    Ok(())
}

pub(crate) fn type_matches(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::Section => value.is_table(),
        Kind::String => value.is_str(),
        Kind::Integer => value.is_integer(),
        Kind::Float => value.is_float() || value.is_integer(),
        Kind::Boolean => value.is_bool(),
        Kind::Column => value.is_str() || value.is_integer(),
        Kind::StringList => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_str)),
        Kind::StringOrNumber => value.is_str() || value.is_integer() || value.is_float(),
        Kind::TableList => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_table)),
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("string {text:?}"),
        Value::Integer(number) => format!("integer {number}"),
        Value::Float(number) => format!("number {number}"),
        Value::Boolean(flag) => format!("boolean {flag}"),
        Value::Array(_) => format!("list {value}"),
        Value::Table(_) => "table".to_owned(),
        Value::Datetime(datetime) => format!("date-time {datetime}"),
    }
}

/// Typed, range-checked access to the merged table; absent keys fall back to the registry default.
struct Reader<'a> {
    layered: &'a Layered,
    /// Where built-in defaults' relative paths (`output.dir = "models"`) resolve: the job's
    /// project root ([`super::project_root`]), whatever the working directory.
    root: &'a Path,
}

impl Reader<'_> {
    fn value(&self, key: &str) -> Option<Value> {
        self.layered
            .get(key)
            .cloned()
            .or_else(|| params::find(key)?.default_value())
    }

    /// A column named by a non-empty string or a 0-based position; `None` when unset.
    fn column(&self, key: &str) -> Result<Option<ColumnRef>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(name)) if !name.is_empty() => Ok(Some(ColumnRef::Name(name))),
            Some(Value::Integer(position)) if (0..=100_000).contains(&position) => {
                Ok(Some(ColumnRef::Position(position as usize)))
            }
            Some(_) => Err(self.invalid(key, "invalid column")),
        }
    }

    fn is_set(&self, key: &str) -> bool {
        self.layered.get(key).is_some() && !self.layered.origin(key).is_default()
    }

    fn invalid(&self, key: &str, problem: &str) -> ConfigError {
        let mut error =
            ConfigError::new(format!("{problem} for `{key}`")).origin(self.layered.origin(key));
        if let Some(value) = self.layered.get(key) {
            error = error.found(describe_value(value));
        }
        if let Some(param) = params::find(key) {
            error = error.allowed(param.allowed);
        }
        error
    }

    fn missing(&self, key: &str, job_file: &Path) -> ConfigError {
        let param = params::find(key);
        ConfigError::new(format!(
            "missing required key `{key}` in {}",
            job_file.display()
        ))
        .allowed(param.map_or("", |param| param.allowed))
        .hint(param.map_or("", |param| param.doc))
    }

    fn string(&self, key: &str) -> Option<String> {
        self.value(key)
            .and_then(|value| value.as_str().map(str::to_owned))
    }

    /// A list of strings (the type was checked with the keys).
    fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.value(key).and_then(|value| {
            value.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
        })
    }

    fn choice(&self, key: &str, choices: &[&str]) -> Result<Option<String>, ConfigError> {
        match self.string(key) {
            Some(text) if choices.contains(&text.as_str()) => Ok(Some(text)),
            Some(_) => Err(self.invalid(key, "invalid value")),
            None => Ok(None),
        }
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        match self.value(key).and_then(|value| value.as_integer()) {
            Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
            Some(_) => Err(self.invalid(key, "value out of range")),
            None => Ok(None),
        }
    }

    fn required_integer(&self, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        self.integer(key, min, max)?
            .ok_or_else(|| self.invalid(key, "missing value"))
    }

    /// A number in `[min, max]`, or `(min, max]` when `min_exclusive`.
    fn float(
        &self,
        key: &str,
        min: f64,
        max: f64,
        min_exclusive: bool,
    ) -> Result<f64, ConfigError> {
        let number = match self.value(key) {
            Some(Value::Float(number)) => number,
            Some(Value::Integer(number)) => number as f64,
            _ => return Err(self.invalid(key, "missing value")),
        };
        let above = if min_exclusive {
            number > min
        } else {
            number >= min
        };
        if number.is_finite() && above && number <= max {
            Ok(number)
        } else {
            Err(self.invalid(key, "value out of range"))
        }
    }

    fn boolean(&self, key: &str) -> Option<bool> {
        self.value(key).and_then(|value| value.as_bool())
    }

    fn path(&self, key: &str, text: &str) -> PathBuf {
        let origin = self.layered.origin(key);
        let base = if origin.is_default() {
            Some(self.root)
        } else {
            origin.base_dir()
        };
        resolve(base, text)
    }
}

fn resolve(base: Option<&Path>, text: &str) -> PathBuf {
    let path = Path::new(text);
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// Checks the merged configuration and builds the [`JobConfig`].
pub fn validate(mut layered: Layered, job_file: &Path) -> Result<JobConfig, ConfigError> {
    check_keys(&layered)?;
    let root = super::project_root(job_file);
    let reader = Reader {
        layered: &layered,
        root: &root,
    };

    let name = match reader.string("job.name") {
        Some(name) => name,
        None => job_file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".to_owned()),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(reader
            .invalid("job.name", "invalid job name")
            .found(format!("{name:?}")));
    }
    let master_text = reader.string("job.master").unwrap_or_default();
    let master = Master::parse(&master_text)
        .ok_or_else(|| reader.invalid("job.master", "invalid master"))?;
    let engine_name = reader
        .choice("job.engine", &["native", "spark"])?
        .unwrap_or_else(|| "native".to_owned());
    if engine_name == "native" && master.is_cluster() {
        return Err(reader
            .invalid("job.master", "a cluster master needs the Spark engine")
            .allowed("`local` (1 thread), `local[N]` (N from 1 to 1024), `local[*]` (all cores) on the native engine")
            .hint(format!(
                "the native engine runs on this machine only (local, local[N], local[*]); to train on the cluster run `submit --engine spark --master {master} JOB.toml` (spark-submit must be on PATH or under SPARK_HOME)"
            )));
    }
    let spark_settings = spark::settings(reader.layered.get("spark"))?;
    let memory = |key: &str| -> Result<ByteSize, ConfigError> {
        let text = reader.string(key).unwrap_or_default();
        match ByteSize::parse(&text) {
            Some(size) if size >= ByteSize(16 << 20) && size <= ByteSize(16 << 40) => Ok(size),
            Some(_) => Err(reader.invalid(key, "memory size out of range")),
            None => Err(reader.invalid(key, "unreadable memory size")),
        }
    };
    let driver_memory = memory("job.driver_memory")?;
    let executor_memory = memory("job.executor_memory")?;
    let seed = reader.required_integer("job.seed", 0, i64::MAX)? as u64;
    let kind = reader
        .choice("job.kind", &["train", "recommend", "predict"])?
        .unwrap_or_else(|| "train".to_owned());
    check_keys_apply(&reader, &kind, job_file)?;
    let (task, resolved_keys) = match kind.as_str() {
        "recommend" => recommend_task(&reader, job_file, seed)?,
        "predict" => predict_task(&reader, job_file, seed)?,
        _ => train_task(&reader, job_file, seed)?,
    };
    let engine = match (engine_name.as_str(), &task) {
        ("native", _) => Engine::Native,
        (_, Task::Train(train)) => {
            if train.init_from.is_some() {
                return Err(reader
                    .invalid("model.init_from", "a warm start with the Spark engine")
                    .hint("Spark's GBT and ALS estimators start from scratch: remove `init_from`, or train with --engine native"));
            }
            if train.tuning.is_some() {
                return Err(reader
                    .invalid("job.engine", "`[tuning]` with the Spark engine")
                    .hint("hyperparameter search runs on the native engine; run the search natively, then train the winning parameters with --engine spark"));
            }
            if let Some(Source::Files(test)) =
                train.test_input.as_deref().map(|input| &input.source)
                && test.format == Format::Ipc
            {
                return Err(reader
                    .invalid("input.test.format", "`ipc` with the Spark engine")
                    .hint("Spark has no Arrow IPC file reader: write the test rows as Parquet or CSV, or run with --engine native"));
            }
            let (estimator, params) = spark::translate(
                &train.model,
                &train.input,
                train.input.table.max_categories,
                &|key| reader.is_set(key).then(|| reader.layered.origin(key)),
            )?;
            if spark_settings
                .iter()
                .any(|(key, value)| key == "spark.submit.deployMode" && value == "cluster")
            {
                return Err(reader
                    .invalid("spark.submit.deployMode", "cluster deploy mode")
                    .allowed("`client` (the default)")
                    .hint("submit reads the application's results on this machine, so the driver must run here; executors still run on the cluster"));
            }
            Engine::Spark(Box::new(spark::SparkJob {
                conf: spark_settings,
                params,
                estimator,
            }))
        }
        _ => {
            return Err(reader
                .invalid("job.engine", &format!("`engine = \"spark\"` in a {kind} job"))
                .hint("recommend and predict jobs run natively on versions of either engine; drop --engine spark"));
        }
    };

    // The resolved TOML records what actually ran: derived values filled in, paths resolved.
    let resolved = &mut layered;
    resolved.set("job.name", Value::String(name.clone()), Origin::Default);
    resolved.set("job.kind", Value::String(kind.clone()), Origin::Default);
    for (key, value) in resolved_keys {
        // The resolved `paths` replace a written `path`: both would be refused on a rerun.
        if key == "input.paths" {
            resolved.remove("input.path");
        }
        resolved.set(&key, value, Origin::Default);
    }
    let algorithm = reader_algorithm(&resolved.table);
    prune(&mut resolved.table, &kind, &algorithm, "");
    if !matches!(&task, Task::Train(train) if train.tuning.is_some()) {
        resolved.table.remove("tuning");
    }
    let resolved_toml = toml::to_string(&resolved.table)
        .map_err(|error| ConfigError::new(format!("cannot render the resolved job: {error}")))?;

    Ok(JobConfig {
        name,
        engine,
        threads: master.threads(),
        master,
        driver_memory,
        executor_memory,
        seed,
        task,
        resolved_toml,
    })
}

/// Whether `key` means anything for a job of this kind.
fn applies(kind: &str, key: &str) -> bool {
    const TRAIN_ONLY: [&str; 11] = [
        "split",
        "input.test",
        "eval",
        "model",
        "input.synthetic",
        "output.dir",
        "output.promote",
        "output.promote_metric",
        "output.min_improvement",
        "output.skip_unchanged",
        "tuning",
    ];
    const BATCH_ONLY: [&str; 4] = [
        "model.from",
        "model.handle_invalid",
        "output.path",
        "output.format",
    ];
    const RECOMMEND_ONLY: [&str; 1] = ["recommend"];
    const PREDICT_ONLY: [&str; 1] = ["predict"];
    let matches = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|prefix| key == *prefix || key.starts_with(&format!("{prefix}.")))
    };
    // The `model` section itself holds `from` for batch jobs.
    let batch_key = key == "model" || matches(&BATCH_ONLY) || !matches(&TRAIN_ONLY);
    match kind {
        "train" => {
            (key == "model.handle_invalid" || !matches(&BATCH_ONLY))
                && !matches(&RECOMMEND_ONLY)
                && !matches(&PREDICT_ONLY)
        }
        "recommend" => batch_key && !matches(&PREDICT_ONLY),
        _ => batch_key && !matches(&RECOMMEND_ONLY),
    }
}

const ALS_ONLY: [&str; 12] = [
    "model.rank",
    "model.reg_param",
    "model.implicit_prefs",
    "model.alpha",
    "model.solver",
    "model.cg_steps",
    "model.nonnegative",
    "model.cold_start_strategy",
    "input.columns.user",
    "input.columns.item",
    "input.columns.rating",
    "eval",
];
const TREES_ONLY: [&str; 19] = [
    "model.task",
    "model.num_trees",
    "model.max_depth",
    "model.max_bins",
    "model.min_instances_per_node",
    "model.min_info_gain",
    "model.impurity",
    "model.subsampling_rate",
    "model.feature_subset_strategy",
    "model.bootstrap",
    "model.step_size",
    "model.loss_type",
    "model.validation_fraction",
    "model.validation_column",
    "model.validation_tol",
    "model.max_categories",
    "input.columns.label",
    "input.columns.features",
    "input.columns.weight",
];

/// Whether `key` means anything for a training job with this algorithm.
fn applies_to_algorithm(algorithm: &str, key: &str) -> bool {
    let matches = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|prefix| key == *prefix || key.starts_with(&format!("{prefix}.")))
    };
    let gbt_only = [
        "model.step_size",
        "model.loss_type",
        "model.validation_fraction",
        "model.validation_column",
        "model.validation_tol",
    ];
    let forest_only = ["model.num_trees", "model.impurity", "model.bootstrap"];
    match algorithm {
        "als" => {
            !matches(&TREES_ONLY)
                && key != "input.columns.categorical"
                && key != "model.handle_invalid"
        }
        "gbt" => !matches(&ALS_ONLY) && !matches(&forest_only),
        _ => !matches(&ALS_ONLY) && !matches(&gbt_only),
    }
}

/// Removes what does not apply to `kind` (defaults of other kinds) from the resolved table.
fn prune(table: &mut toml::Table, kind: &str, algorithm: &str, prefix: &str) {
    table.retain(|key, value| {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        if !applies(kind, &path) || (kind == "train" && !applies_to_algorithm(algorithm, &path)) {
            return false;
        }
        if let Value::Table(inner) = value
            && params::find(&path).is_some_and(|param| param.kind == Kind::Section)
        {
            prune(inner, kind, algorithm, &path);
            return !inner.is_empty();
        }
        true
    });
}

fn reader_algorithm(table: &toml::Table) -> String {
    table
        .get("model")
        .and_then(|model| model.get("algorithm"))
        .and_then(Value::as_str)
        .unwrap_or("als")
        .to_owned()
}

/// Keys the job file, flags or `--conf` set that mean nothing for this kind of job are errors,
/// not silently ignored (defaults files may set them for other jobs).
fn check_keys_apply(reader: &Reader<'_>, kind: &str, job_file: &Path) -> Result<(), ConfigError> {
    let algorithm = if kind == "train" {
        reader
            .choice("model.algorithm", &["als", "random_forest", "gbt"])?
            .unwrap_or_else(|| "als".to_owned())
    } else {
        String::new()
    };
    for (key, origin) in &reader.layered.origins {
        let explicit = match origin {
            Origin::File { path, .. } => path == job_file,
            Origin::Flag(_) | Origin::Conf(_) => true,
            Origin::Default => false,
        };
        let is_leaf = params::find(key).is_some_and(|param| param.kind != Kind::Section);
        if !explicit || !is_leaf {
            continue;
        }
        if kind == "train" && applies(kind, key) && !applies_to_algorithm(&algorithm, key) {
            return Err(reader
                .invalid(key, &format!("a key that does not apply to algorithm {algorithm}"))
                .allowed(match algorithm.as_str() {
                    "als" => "ALS parameters (rank, max_iter, reg_param, implicit_prefs, alpha, solver, cg_steps, nonnegative, cold_start_strategy) and user, item and rating columns",
                    "gbt" => "tree parameters (task, max_depth, max_bins, min_instances_per_node, min_info_gain, subsampling_rate, feature_subset_strategy, max_iter, step_size, loss_type, validation_*) and label, features and categorical columns",
                    _ => "tree parameters (task, num_trees, max_depth, max_bins, min_instances_per_node, min_info_gain, impurity, subsampling_rate, feature_subset_strategy, bootstrap) and label, features and categorical columns",
                }));
        }
        if !applies(kind, key) {
            return Err(reader
                .invalid(key, &format!("a key that does not apply to a {kind} job"))
                .allowed(match kind {
                    "train" => "[model] training parameters, [split], [eval], output.dir",
                    "recommend" => "model.from, [recommend], output.path, output.format, and an optional [input] file of ids",
                    _ => "model.from, [input] with user and item columns (or feature columns), predict.keep, output.path, output.format",
                }));
        }
    }
    Ok(())
}

/// The input files or synthetic source, their column mapping and row options.
fn read_input(
    reader: &Reader<'_>,
    job_file: &Path,
    seed: u64,
    needs_rating: bool,
) -> Result<(InputConfig, ResolvedKeys), ConfigError> {
    let (source, mut resolved) = read_source(reader, job_file, seed)?;
    let (preparation, mut prepared_keys) = preparation(reader, job_file, seed)?;
    resolved.append(&mut prepared_keys);
    let mut input = input_columns(reader, source, needs_rating)?;
    input.preparation = preparation.map(Box::new);
    Ok((input, resolved))
}

/// `[input.tables]`, `input.sql` and `[[input.steps]]`, when any is set.
fn preparation(
    reader: &Reader<'_>,
    job_file: &Path,
    seed: u64,
) -> Result<(Option<Preparation>, ResolvedKeys), ConfigError> {
    let mut resolved = Vec::new();
    let mut tables = Vec::new();
    if let Some(Value::Table(entries)) = reader.layered.get("input.tables") {
        for name in entries.keys() {
            let prefix = format!("input.tables.{name}");
            let (files, keys) = file_source(reader, &prefix, job_file)?;
            if files.format == Format::Libsvm {
                return Err(reader
                    .invalid(
                        &format!("{prefix}.format"),
                        "a LIBSVM file as a named table",
                    )
                    .hint("named tables are columnar (csv, tsv, text, parquet, ndjson, ipc)"));
            }
            // The recorded entry replaces the written one whole (`paths` instead of `path`).
            let mut entry = toml::Table::new();
            for (key, value) in keys {
                entry.insert(key[prefix.len() + 1..].to_owned(), value);
            }
            resolved.push((prefix.clone(), Value::Table(entry)));
            tables.push(NamedTable {
                name: name.clone(),
                files,
                origin: reader.layered.key_origin(&prefix),
            });
        }
    }
    let sql = match reader.string("input.sql") {
        Some(text) if text.trim().is_empty() => {
            return Err(reader.invalid("input.sql", "empty query"));
        }
        Some(text) => Some(SqlQuery {
            text,
            origin: reader.layered.origin("input.sql"),
        }),
        None => None,
    };
    let names: Vec<String> = tables.iter().map(|table| table.name.clone()).collect();
    let steps = prepare::steps(reader.layered, &names, seed)?;
    if tables.is_empty() && sql.is_none() && steps.is_empty() {
        return Ok((None, resolved));
    }
    Ok((Some(Preparation { tables, sql, steps }), resolved))
}

/// The column mapping, null policy and sampling of `[input]` around a source.
fn input_columns(
    reader: &Reader<'_>,
    source: Source,
    needs_rating: bool,
) -> Result<InputConfig, ConfigError> {
    let column = |key: &str| -> Result<ColumnRef, ConfigError> {
        reader
            .column(key)?
            .ok_or_else(|| reader.invalid(key, "invalid column"))
    };
    let columns = RatingColumns {
        user: column("input.columns.user")?,
        item: column("input.columns.item")?,
        rating: column("input.columns.rating")?,
    };
    let features = reader.strings("input.columns.features");
    if features.as_ref().is_some_and(Vec::is_empty) {
        return Err(reader.invalid("input.columns.features", "empty list"));
    }
    let table = TableColumns {
        label: column("input.columns.label")?,
        features,
        categorical: reader
            .strings("input.columns.categorical")
            .unwrap_or_default(),
        max_categories: reader
            .integer("model.max_categories", 0, 65_535)?
            .unwrap_or(0) as usize,
        validation: match reader.value("model.validation_column") {
            Some(_) => Some(column("model.validation_column")?),
            None => None,
        },
        weight: reader.column("input.columns.weight")?,
    };
    if let Source::Files(files) = &source
        && !files.header
        && files.format.is_delimited_text()
    {
        for key in [
            "input.columns.user",
            "input.columns.item",
            "input.columns.rating",
        ]
        .into_iter()
        .filter(|key| needs_rating || !key.ends_with("rating"))
        {
            if let Some(Value::String(_)) = reader.value(key) {
                return Err(reader.invalid(key, "a column name needs a header").hint(
                    "set `input.header = true`, or name the column by its 0-based position",
                ));
            }
        }
    }
    let null_policy = match reader
        .choice("input.null_policy", &["error", "drop"])?
        .as_deref()
    {
        Some("drop") => NullPolicy::Drop,
        _ => NullPolicy::Error,
    };
    let sample_fraction = reader.float("input.sample_fraction", 0.0, 1.0, true)?;
    let limit = reader
        .integer("input.limit", 1, 1 << 40)?
        .map(|limit| limit as u64);
    let dedupe = match reader.string("input.dedupe") {
        None => Dedupe::Keep,
        Some(text) => {
            Dedupe::parse(&text).ok_or_else(|| reader.invalid("input.dedupe", "invalid value"))?
        }
    };
    let endpoint_url = reader.string("s3.endpoint_url");
    if let Some(url) = &endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(reader.invalid("s3.endpoint_url", "not an http(s) URL"));
    }
    let s3 = S3Options {
        endpoint_url,
        region: reader.string("s3.region"),
    };
    Ok(InputConfig {
        source,
        preparation: None,
        s3,
        dedupe,
        columns,
        table,
        null_policy,
        sample_fraction,
        limit,
    })
}

fn train_task(
    reader: &Reader<'_>,
    job_file: &Path,
    seed: u64,
) -> Result<(Task, ResolvedKeys), ConfigError> {
    let (input, mut resolved) = read_input(reader, job_file, seed, true)?;
    let source = &input.source;
    let test_fraction = reader.float("split.test_fraction", 0.0, 0.99, false)?;
    let split = split_method(reader, job_file)?;
    let test_input = match reader.layered.get("input.test") {
        None => None,
        Some(Value::Table(_)) => {
            if split != SplitMethod::Random {
                return Err(reader
                    .invalid("split.method", "a split of the input while [input.test] is set")
                    .hint("[input.test] holds the test rows and the input trains on all of its rows; remove split.method or [input.test]"));
            }
            let (files, keys) = file_source(reader, "input.test", job_file)?;
            if matches!(input.source, Source::Files(ref main) if (main.format == Format::Libsvm) != (files.format == Format::Libsvm))
            {
                return Err(reader
                    .invalid("input.test.format", "a test format that does not match the input's")
                    .hint("LIBSVM files hold numbered features, other formats named columns: give both sources the same kind"));
            }
            // The recorded section replaces the written one whole (`paths` instead of `path`).
            let entry: toml::Table = keys
                .into_iter()
                .map(|(key, value)| (key["input.test.".len()..].to_owned(), value))
                .collect();
            resolved.push(("input.test".to_owned(), Value::Table(entry)));
            // Early stopping's rows come from the training input only.
            Some(Box::new(InputConfig {
                source: Source::Files(files),
                table: TableColumns {
                    validation: None,
                    ..input.table.clone()
                },
                ..input.clone()
            }))
        }
        Some(_) => {
            return Err(reader
                .invalid("input.test", "not a table")
                .hint("write it as a section: [input.test] path = \"test.csv\""));
        }
    };
    let ranking_k = reader.required_integer("eval.k", 1, 1000)? as usize;

    let algorithm = reader
        .choice("model.algorithm", &["als", "random_forest", "gbt"])?
        .unwrap_or_else(|| "als".to_owned());
    if algorithm != "als" && matches!(split, SplitMethod::PerUserLast { .. }) {
        return Err(reader
            .invalid("split.method", "a per-user split for a tree model")
            .hint("per_user_last holds out each user's last rows and tables have no users; use split.method = \"time\", or \"random\""));
    }
    let synthetic_or_libsvm = match source {
        Source::Synthetic(_) => input.preparation.is_none(),
        Source::Files(files) => files.format == Format::Libsvm && input.preparation.is_none(),
    };
    if algorithm != "als" && input.table.weight.is_some() && synthetic_or_libsvm {
        return Err(reader
            .invalid("input.columns.weight", "a weight column for a source without named columns")
            .hint("synthetic tables and LIBSVM files have no weight column; read a file with one (csv, parquet, ...)"));
    }
    let model = if algorithm == "als" {
        als_model(reader, source, seed)?
    } else {
        tree_model(reader, source, &algorithm, seed)?
    };
    let output_text = reader.string("output.dir").unwrap_or_default();
    if output_text.is_empty() {
        return Err(reader.invalid("output.dir", "empty path"));
    }
    let output_dir = reader.path("output.dir", &output_text);

    // Values derived from other keys go into the resolved job too, so it records what ran.
    let derived: Vec<(&str, Value)> = match &model {
        ModelConfig::Als { params, .. } => vec![
            ("model.max_iter", Value::Integer(params.max_iter as i64)),
            (
                "model.solver",
                Value::String(
                    match params.solver {
                        Solver::Cholesky => "cholesky",
                        Solver::ConjugateGradient { .. } => "cg",
                    }
                    .to_owned(),
                ),
            ),
        ],
        ModelConfig::Trees { params, .. } => match params.ensemble {
            Ensemble::Gbt => vec![
                ("model.max_iter", Value::Integer(params.max_iter as i64)),
                ("model.loss_type", serde_value(&params.loss_type)),
            ],
            Ensemble::RandomForest => vec![("model.impurity", serde_value(&params.impurity))],
        },
    };
    for (key, value) in derived {
        resolved.push((key.to_owned(), value));
    }
    let promotion = Promotion {
        if_better: reader
            .choice("output.promote", &["always", "if_better"])?
            .as_deref()
            == Some("if_better"),
        metric: match reader.string("output.promote_metric") {
            Some(name) => Some(Metric::parse(&name).ok_or_else(|| {
                reader
                    .invalid("output.promote_metric", "unknown metric")
                    .allowed(Metric::names())
            })?),
            None => None,
        },
        min_improvement: reader.float("output.min_improvement", 0.0, 1e300, false)?,
    };
    let resolved_params = params_record(&model);
    let tuning = tuning(reader, source, &algorithm, seed, &model)?.map(Box::new);

    resolved.push((
        "output.dir".to_owned(),
        Value::String(absolute_text(&output_dir)),
    ));
    let init_from = match reader.string("model.init_from") {
        None => None,
        Some(text) if text.is_empty() => {
            return Err(reader.invalid("model.init_from", "empty path"));
        }
        Some(_) if algorithm == "random_forest" => {
            return Err(reader
                .invalid("model.init_from", "a warm start for a random forest")
                .hint("a forest's trees do not depend on each other: raise num_trees instead"));
        }
        Some(text) => Some(reader.path("model.init_from", &text)),
    };
    Ok((
        Task::Train(TrainTask {
            input,
            test_input,
            test_fraction,
            split,
            ranking_k,
            model,
            output_dir,
            resolved_params,
            tuning,
            promotion,
            skip_unchanged: reader.boolean("output.skip_unchanged").unwrap_or(false),
            init_from,
        }),
        resolved,
    ))
}

/// `split.method` and the keys of the method chosen; a key of another method is an error.
fn split_method(reader: &Reader<'_>, job_file: &Path) -> Result<SplitMethod, ConfigError> {
    let method = reader
        .choice("split.method", &["random", "time", "per_user_last"])?
        .unwrap_or_else(|| "random".to_owned());
    // `test_fraction` has a default that every resolved job records, so the time methods
    // ignore it rather than refuse it.
    let applies: &[&str] = match method.as_str() {
        "random" => &["test_fraction"],
        "time" => &["column", "cutoff", "fraction", "test_fraction"],
        _ => &["column", "n", "test_fraction"],
    };
    for key in ["column", "cutoff", "fraction", "n"] {
        let full = format!("split.{key}");
        if !applies.contains(&key) && reader.is_set(&full) {
            return Err(reader
                .invalid(
                    &full,
                    &format!("a key that does not apply to split.method = \"{method}\""),
                )
                .allowed(format!("for {method}: {}", applies.join(", "))));
        }
    }
    if method == "random" {
        return Ok(SplitMethod::Random);
    }
    let Some(column) = reader.column("split.column")? else {
        return Err(reader.missing("split.column", job_file).hint(format!(
            "split.method = \"{method}\" orders rows by a time column"
        )));
    };
    if method == "per_user_last" {
        let n = reader.integer("split.n", 1, 1_000_000)?.unwrap_or(1) as usize;
        return Ok(SplitMethod::PerUserLast { column, n });
    }
    let boundary = match (
        reader.value("split.cutoff"),
        reader.is_set("split.fraction"),
    ) {
        (Some(_), true) | (None, false) => {
            return Err(reader
                .invalid("split.cutoff", "not exactly one of `split.cutoff` and `split.fraction`")
                .hint("split.method = \"time\" takes a cutoff time or the fraction of the time range to test"));
        }
        (Some(Value::Integer(number)), false) => TimeBoundary::Cutoff(number as f64),
        (Some(Value::Float(number)), false) if number.is_finite() => TimeBoundary::Cutoff(number),
        (Some(Value::String(text)), false) => match crate::text::parse_timestamp(&text) {
            Some(seconds) => TimeBoundary::Cutoff(seconds),
            None => {
                return Err(reader.invalid("split.cutoff", "not a time").allowed(
                    "a date `2026-11-01`, a time `2026-11-01 12:00:00` or RFC 3339, or a number in the column's unit",
                ));
            }
        },
        (Some(_), false) => return Err(reader.invalid("split.cutoff", "not a time")),
        (None, true) => TimeBoundary::Fraction(reader.float("split.fraction", 0.0, 0.99, false)?),
    };
    Ok(SplitMethod::Time { column, boundary })
}

fn als_model(reader: &Reader<'_>, source: &Source, seed: u64) -> Result<ModelConfig, ConfigError> {
    if reader.is_set("model.monotone_constraints") {
        return Err(reader
            .invalid(
                "model.monotone_constraints",
                "a key that does not apply to algorithm als",
            )
            .allowed("tree models (random_forest, gbt)"));
    }
    let implicit_prefs = reader.boolean("model.implicit_prefs").unwrap_or(false);
    let nonnegative = reader.boolean("model.nonnegative").unwrap_or(false);
    let solver_name = reader.choice("model.solver", &["cholesky", "cg"])?;
    if nonnegative && solver_name.as_deref() == Some("cg") {
        return Err(reader
            .invalid(
                "model.solver",
                "conjugate gradient cannot keep factors non-negative",
            )
            .hint(
                "remove `solver`: `nonnegative = true` uses a non-negative least squares solve",
            ));
    }
    let solver = match solver_name.as_deref() {
        Some("cg") => Solver::ConjugateGradient {
            steps: reader.required_integer("model.cg_steps", 1, 100)? as usize,
        },
        Some(_) => Solver::Cholesky,
        None if implicit_prefs && !nonnegative => Solver::ConjugateGradient {
            steps: reader.required_integer("model.cg_steps", 1, 100)? as usize,
        },
        None => Solver::Cholesky,
    };
    let model = ModelConfig::Als {
        params: AlsParams {
            rank: reader.required_integer("model.rank", 1, 1024)? as usize,
            max_iter: reader.integer("model.max_iter", 1, 10_000)?.unwrap_or(10) as usize,
            reg_param: reader.float("model.reg_param", 0.0, 1e6, false)?,
            seed,
            implicit_prefs,
            alpha: reader.float("model.alpha", 0.0, 1e6, false)?,
            solver,
            nonnegative,
        },
        cold_start: match reader
            .choice("model.cold_start_strategy", &["nan", "drop"])?
            .as_deref()
        {
            Some("drop") => ColdStartStrategy::Drop,
            _ => ColdStartStrategy::Nan,
        },
    };
    if let Source::Files(files) = &source
        && files.format == Format::Libsvm
    {
        return Err(reader
            .invalid("input.format", "libsvm input cannot train als")
            .found("libsvm (labelled feature vectors)")
            .allowed("csv, tsv, text, parquet, ndjson or ipc with user, item and rating columns"));
    }
    if !matches!(
        source,
        Source::Files(_)
            | Source::Synthetic(
                SyntheticSpec::Ratings { .. }
                    | SyntheticSpec::Interactions { .. }
                    | SyntheticSpec::Events { .. }
            )
    ) {
        return Err(reader
            .invalid("input.synthetic.kind", "als needs ratings")
            .allowed("`ratings`, `interactions` or `events` for algorithm als"));
    }
    Ok(model)
}

fn tree_model(
    reader: &Reader<'_>,
    source: &Source,
    algorithm: &str,
    seed: u64,
) -> Result<ModelConfig, ConfigError> {
    let ensemble = if algorithm == "gbt" {
        Ensemble::Gbt
    } else {
        Ensemble::RandomForest
    };
    let task = match reader
        .choice("model.task", &["classification", "regression"])?
        .as_deref()
    {
        Some("regression") => TreeTask::Regression,
        _ => TreeTask::Classification,
    };
    let impurity = match reader
        .choice("model.impurity", &["gini", "entropy", "variance"])?
        .as_deref()
    {
        Some("entropy") => Impurity::Entropy,
        Some("variance") => Impurity::Variance,
        Some(_) => Impurity::Gini,
        None if task == TreeTask::Regression => Impurity::Variance,
        None => Impurity::Gini,
    };
    if (task == TreeTask::Regression) != (impurity == Impurity::Variance) {
        return Err(reader
            .invalid("model.impurity", "an impurity that does not fit the task")
            .allowed("`gini` or `entropy` for classification, `variance` for regression"));
    }
    let loss_type = match reader
        .choice("model.loss_type", &["logistic", "squared", "absolute"])?
        .as_deref()
    {
        Some("squared") => Loss::Squared,
        Some("absolute") => Loss::Absolute,
        Some(_) => Loss::Logistic,
        None if task == TreeTask::Regression => Loss::Squared,
        None => Loss::Logistic,
    };
    if (task == TreeTask::Classification) != (loss_type == Loss::Logistic) {
        return Err(reader
            .invalid("model.loss_type", "a loss that does not fit the task")
            .allowed("`logistic` for classification, `squared` or `absolute` for regression"));
    }
    let strategy_key = "model.feature_subset_strategy";
    let feature_subset_strategy = match reader.value(strategy_key) {
        Some(Value::String(text)) => match text.as_str() {
            "auto" => FeatureSubset::Auto,
            "all" => FeatureSubset::All,
            "onethird" => FeatureSubset::OneThird,
            "sqrt" => FeatureSubset::Sqrt,
            "log2" => FeatureSubset::Log2,
            // Spark also takes numbers as strings: "0.5", "10".
            other => match other.parse::<f64>() {
                Ok(number) if number > 0.0 && number <= 1.0 && other.contains('.') => {
                    FeatureSubset::Fraction(number)
                }
                Ok(number) if number >= 1.0 && number.fract() == 0.0 => {
                    FeatureSubset::Count(number as usize)
                }
                _ => return Err(reader.invalid(strategy_key, "invalid value")),
            },
        },
        Some(Value::Float(number)) if number > 0.0 && number <= 1.0 => {
            FeatureSubset::Fraction(number)
        }
        Some(Value::Integer(number)) if (1..=1_000_000).contains(&number) => {
            FeatureSubset::Count(number as usize)
        }
        _ => return Err(reader.invalid(strategy_key, "invalid value")),
    };
    let validation = if reader.layered.get("model.validation_column").is_some() {
        if reader.float("model.validation_fraction", 0.0, 0.99, false)? > 0.0 {
            return Err(reader
                .invalid(
                    "model.validation_fraction",
                    "both a validation fraction and a validation column",
                )
                .hint("set one of `validation_fraction` and `validation_column`"));
        }
        let column = match reader.value("model.validation_column") {
            Some(Value::String(name)) if !name.is_empty() => ColumnRef::Name(name),
            Some(Value::Integer(position)) if (0..=100_000).contains(&position) => {
                ColumnRef::Position(position as usize)
            }
            _ => return Err(reader.invalid("model.validation_column", "invalid column")),
        };
        ValidationSource::Column(column)
    } else {
        match reader.float("model.validation_fraction", 0.0, 0.99, false)? {
            fraction if fraction > 0.0 => ValidationSource::Fraction(fraction),
            _ => ValidationSource::None,
        }
    };
    if matches!(
        source,
        Source::Synthetic(SyntheticSpec::Ratings { .. } | SyntheticSpec::Interactions { .. })
    ) {
        return Err(reader
            .invalid("input.synthetic.kind", "tree models need a labelled table")
            .allowed(format!(
                "`classification` or `regression` for algorithm {algorithm}"
            )));
    }
    match source {
        Source::Synthetic(SyntheticSpec::Classification { .. }) if task == TreeTask::Regression => {
            return Err(reader
                .invalid(
                    "input.synthetic.kind",
                    "a classification table for a regression model",
                )
                .allowed("`regression` for task = \"regression\""));
        }
        Source::Synthetic(SyntheticSpec::Regression { .. }) if task == TreeTask::Classification => {
            return Err(reader
                .invalid(
                    "input.synthetic.kind",
                    "a regression table for a classification model",
                )
                .allowed("`classification` for task = \"classification\""));
        }
        _ => {}
    }
    let params = TreeParams {
        ensemble,
        task,
        num_trees: reader.required_integer("model.num_trees", 1, 10_000)? as usize,
        max_depth: reader.required_integer("model.max_depth", 0, 30)? as usize,
        max_bins: reader.required_integer("model.max_bins", 2, 65_535)? as usize,
        min_instances_per_node: reader.required_integer(
            "model.min_instances_per_node",
            1,
            1 << 31,
        )? as usize,
        min_info_gain: reader.float("model.min_info_gain", 0.0, 1e300, false)?,
        impurity,
        subsampling_rate: reader.float("model.subsampling_rate", 0.0, 1.0, true)?,
        feature_subset_strategy,
        bootstrap: reader.boolean("model.bootstrap").unwrap_or(true),
        max_iter: reader.integer("model.max_iter", 1, 10_000)?.unwrap_or(20) as usize,
        step_size: reader.float("model.step_size", 0.0, 1.0, true)?,
        loss_type,
        validation_tol: reader.float("model.validation_tol", 0.0, 1.0, false)?,
        seed,
        monotone_constraints: match reader.value("model.monotone_constraints") {
            Some(Value::Table(table)) => table
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_integer()? as i8)))
                .filter(|(_, direction)| *direction != 0)
                .collect(),
            _ => Vec::new(),
        },
    };
    let handle_invalid = match reader
        .choice("model.handle_invalid", &["error", "skip", "keep"])?
        .as_deref()
    {
        Some("skip") => HandleInvalid::Skip,
        Some("keep") => HandleInvalid::Keep,
        _ => HandleInvalid::Error,
    };
    Ok(ModelConfig::Trees {
        params,
        validation,
        handle_invalid,
    })
}

fn params_record(model: &ModelConfig) -> serde_json::Value {
    match model {
        ModelConfig::Als { params, cold_start } => serde_json::json!({
            "rank": params.rank,
            "max_iter": params.max_iter,
            "reg_param": params.reg_param,
            "implicit_prefs": params.implicit_prefs,
            "alpha": params.alpha,
            "solver": match params.solver {
                Solver::Cholesky => "cholesky",
                Solver::ConjugateGradient { .. } => "cg",
            },
            "cg_steps": match params.solver {
                Solver::ConjugateGradient { steps } => Some(steps),
                Solver::Cholesky => None,
            },
            "nonnegative": params.nonnegative,
            "cold_start_strategy": cold_start,
            "seed": params.seed,
        }),
        ModelConfig::Trees {
            params,
            validation,
            handle_invalid,
        } => {
            let mut value = serde_json::to_value(params).unwrap_or_default();
            let gbt = params.ensemble == Ensemble::Gbt;
            if let Some(object) = value.as_object_mut() {
                object.remove("ensemble");
                let drop: &[&str] = if gbt {
                    &["num_trees", "impurity", "bootstrap"]
                } else {
                    &["max_iter", "step_size", "loss_type", "validation_tol"]
                };
                for key in drop {
                    object.remove(*key);
                }
                object.insert(
                    "handle_invalid".to_owned(),
                    serde_json::json!(handle_invalid),
                );
                if gbt {
                    object.insert(
                        "validation".to_owned(),
                        match validation {
                            ValidationSource::None => serde_json::Value::Null,
                            ValidationSource::Fraction(fraction) => {
                                serde_json::json!({"fraction": fraction})
                            }
                            ValidationSource::Column(column) => {
                                serde_json::json!({"column": column.to_string()})
                            }
                        },
                    );
                }
            }
            value
        }
    }
}

/// `[tuning]`: the method, metric and limits, and every grid point validated like a job's own
/// `[model]` (an out-of-range value names its grid entry).
fn tuning(
    reader: &Reader<'_>,
    source: &Source,
    algorithm: &str,
    seed: u64,
    base: &ModelConfig,
) -> Result<Option<Tuning>, ConfigError> {
    let grid = match reader.layered.get("tuning.grid") {
        Some(Value::Table(grid)) if !grid.is_empty() => grid.clone(),
        _ => {
            for key in [
                "tuning.method",
                "tuning.folds",
                "tuning.train_ratio",
                "tuning.metric",
                "tuning.parallelism",
                "tuning.max_models",
                "tuning.max_seconds",
            ] {
                if reader.is_set(key) {
                    return Err(reader
                        .invalid(key, "a tuning setting without a grid")
                        .hint("add a [tuning.grid] table, e.g. rank = [5, 10, 20]"));
                }
            }
            return Ok(None);
        }
    };
    let method = match reader
        .choice(
            "tuning.method",
            &["cross_validation", "train_validation_split"],
        )?
        .as_deref()
    {
        Some("train_validation_split") => TuningMethod::TrainValidationSplit {
            train_ratio: {
                let ratio = reader.float("tuning.train_ratio", 0.0, 1.0, true)?;
                if ratio >= 1.0 {
                    return Err(reader.invalid("tuning.train_ratio", "value out of range"));
                }
                ratio
            },
        },
        _ => TuningMethod::CrossValidation {
            folds: reader.required_integer("tuning.folds", 2, 20)? as usize,
        },
    };
    let metric = match reader.string("tuning.metric") {
        Some(name) => Some(Metric::parse(&name).ok_or_else(|| {
            reader
                .invalid("tuning.metric", "unknown metric")
                .allowed(Metric::names())
        })?),
        None => None,
    };
    let max_seconds = match reader.layered.get("tuning.max_seconds") {
        Some(_) => Some(reader.float("tuning.max_seconds", 0.0, 1e9, true)?),
        None => None,
    };
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (name, values) in &grid {
        let values = values.as_array().cloned().unwrap_or_default();
        points = points
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |value| {
                    let mut point = point.clone();
                    point.push((name.clone(), value.clone()));
                    point
                })
            })
            .collect();
    }
    for name in grid.keys() {
        let key = format!("model.{name}");
        if !applies_to_algorithm(algorithm, &key) {
            return Err(reader
                .invalid(
                    &format!("tuning.grid.{name}"),
                    &format!("a grid parameter that does not apply to algorithm {algorithm}"),
                )
                .allowed(format!(
                    "parameters of {algorithm}; see the [model] keys in the README"
                )));
        }
    }
    let mut validated = Vec::with_capacity(points.len());
    for values in points {
        let mut layered = reader.layered.clone();
        for (name, value) in &values {
            let origin = reader.layered.origin(&format!("tuning.grid.{name}"));
            layered.set(&format!("model.{name}"), value.clone(), origin);
        }
        let point_reader = Reader {
            layered: &layered,
            root: reader.root,
        };
        let described: Vec<String> = values
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        let model = if algorithm == "als" {
            als_model(&point_reader, source, seed)
        } else {
            tree_model(&point_reader, source, algorithm, seed)
        }
        .map_err(|error| {
            error.hint(format!(
                "in the grid point {{ {} }} from [tuning.grid]",
                described.join(", ")
            ))
        })?;
        validated.push(GridPoint {
            resolved_params: params_record(&model),
            values,
            model,
        });
    }
    if let Some(metric) = metric {
        let kind = metric.kind();
        let fits = validated.iter().all(|point| match &point.model {
            ModelConfig::Als { params, .. } => {
                kind == MetricKind::Ranking
                    || (kind == MetricKind::Regression && !params.implicit_prefs)
            }
            ModelConfig::Trees { params, .. } => match params.task {
                TreeTask::Regression => kind == MetricKind::Regression,
                TreeTask::Classification => kind == MetricKind::Classification,
            },
        });
        if !fits {
            return Err(reader
                .invalid("tuning.metric", "a metric that does not fit the model")
                .allowed(match base {
                    ModelConfig::Als { .. } => "rmse, mse, mae, r2 (explicit feedback only) or precision_at_k, recall_at_k, ndcg_at_k, map_at_k",
                    ModelConfig::Trees { params, .. } if params.task == TreeTask::Regression => "rmse, mse, mae, r2",
                    ModelConfig::Trees { .. } => "accuracy, f1, weighted_precision, weighted_recall, auc_roc, auc_pr, log_loss",
                }));
        }
    }
    let _ = base;
    Ok(Some(Tuning {
        method,
        metric,
        parallelism: reader.required_integer("tuning.parallelism", 1, 64)? as usize,
        max_models: reader
            .integer("tuning.max_models", 1, 100_000)?
            .map(|models| models as usize),
        max_seconds,
        points: validated,
    }))
}

/// `model.from`: a version directory or a `latest` link, relative to the file that sets it.
fn model_from(reader: &Reader<'_>, job_file: &Path) -> Result<PathBuf, ConfigError> {
    match reader.string("model.from") {
        Some(text) if !text.is_empty() => Ok(reader.path("model.from", &text)),
        Some(_) => Err(reader.invalid("model.from", "empty path")),
        None => Err(reader
            .missing("model.from", job_file)
            .hint("point it at a published version, e.g. \"../models/quickstart/latest\"")),
    }
}

/// `output.path` and its format (from `output.format` or the extension).
fn output_file(
    reader: &Reader<'_>,
    job_file: &Path,
) -> Result<(OutputFile, ResolvedKeys), ConfigError> {
    let Some(text) = reader.string("output.path").filter(|text| !text.is_empty()) else {
        return Err(reader
            .missing("output.path", job_file)
            .hint("the file to write, e.g. \"recommendations.csv\" or \"scores.parquet\""));
    };
    let path = reader.path("output.path", &text);
    let format = match reader
        .choice("output.format", &["csv", "parquet"])?
        .as_deref()
    {
        Some("parquet") => OutputFormat::Parquet,
        Some(_) => OutputFormat::Csv,
        None => match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("parquet") => OutputFormat::Parquet,
            Some(ext) if ext.eq_ignore_ascii_case("csv") => OutputFormat::Csv,
            _ => {
                return Err(reader
                    .invalid(
                        "output.path",
                        "cannot infer the output format from the extension",
                    )
                    .hint("use a .csv or .parquet name, or set `output.format`"));
            }
        },
    };
    let resolved = vec![
        (
            "output.path".to_owned(),
            Value::String(absolute_text(&path)),
        ),
        (
            "output.format".to_owned(),
            Value::String(
                if format == OutputFormat::Parquet {
                    "parquet"
                } else {
                    "csv"
                }
                .to_owned(),
            ),
        ),
    ];
    Ok((OutputFile { path, format }, resolved))
}

fn recommend_task(
    reader: &Reader<'_>,
    job_file: &Path,
    seed: u64,
) -> Result<(Task, ResolvedKeys), ConfigError> {
    let from = model_from(reader, job_file)?;
    let (output, mut resolved) = output_file(reader, job_file)?;
    let ids = if reader.layered.get("input.path").is_some()
        || reader.layered.get("input.paths").is_some()
    {
        let (input, input_keys) = read_input(reader, job_file, seed, false)?;
        resolved.extend(input_keys);
        Some(input)
    } else {
        None
    };
    let target = match reader
        .choice("recommend.target", &["users", "items", "similar_items"])?
        .as_deref()
    {
        Some("items") => RecommendTarget::Items,
        Some("similar_items") => RecommendTarget::SimilarItems,
        _ => RecommendTarget::Users,
    };
    let cold_start = match reader
        .choice("recommend.cold_start", &["popular", "drop"])?
        .as_deref()
    {
        Some("drop") => RecommendColdStart::Drop,
        _ => RecommendColdStart::Popular,
    };
    resolved.push(("model.from".to_owned(), Value::String(absolute_text(&from))));
    let users_from = match reader.string("recommend.users_from") {
        None => None,
        Some(text) if text.is_empty() => {
            return Err(reader.invalid("recommend.users_from", "empty path"));
        }
        Some(text) => {
            if target != RecommendTarget::Users {
                return Err(reader
                    .invalid(
                        "recommend.users_from",
                        "new users' ratings with this target",
                    )
                    .hint("fold-in computes users' factors: use it with target = \"users\""));
            }
            let path = reader.path("recommend.users_from", &text);
            let format = Format::from_extension(&path).ok_or_else(|| {
                reader
                    .invalid(
                        "recommend.users_from",
                        "cannot infer the format from the extension",
                    )
                    .hint("use a .csv, .tsv, .parquet, .ndjson or .ipc file")
            })?;
            resolved.push((
                "recommend.users_from".to_owned(),
                Value::String(absolute_text(&path)),
            ));
            let source = Source::Files(FileSource {
                paths: vec![path],
                format,
                separator: None,
                header: true,
                format_inferred: true,
            });
            Some(input_columns(reader, source, true)?)
        }
    };
    Ok((
        Task::Recommend(RecommendTask {
            users_from,
            from,
            k: reader.required_integer("recommend.k", 1, 10_000)? as usize,
            filter_seen: reader.boolean("recommend.filter_seen").unwrap_or(true),
            cold_start,
            target,
            ids,
            output,
        }),
        resolved,
    ))
}

fn predict_task(
    reader: &Reader<'_>,
    job_file: &Path,
    seed: u64,
) -> Result<(Task, ResolvedKeys), ConfigError> {
    let from = model_from(reader, job_file)?;
    let (output, mut resolved) = output_file(reader, job_file)?;
    let (input, input_keys) = read_input(reader, job_file, seed, false)?;
    if matches!(input.source, Source::Synthetic(_)) {
        return Err(reader
            .invalid("input.synthetic", "a synthetic source for a predict job")
            .hint("predict jobs score (user, item) pairs from a file: set `input.path`"));
    }
    resolved.extend(input_keys);
    resolved.push(("model.from".to_owned(), Value::String(absolute_text(&from))));
    let keep: Vec<String> = reader.strings("predict.keep").unwrap_or_default();
    if let Some(name) = keep.iter().find(|name| name.is_empty()) {
        return Err(reader
            .invalid("predict.keep", "an empty column name")
            .found(format!("{name:?}")));
    }
    if let Some(name) = keep.iter().find(|name| {
        ["row", "prediction", "user", "item"].contains(&name.as_str())
            || name.starts_with("probability_")
    }) {
        return Err(reader
            .invalid("predict.keep", "a column name the output already uses for scores")
            .found(format!("{name:?}"))
            .hint("the output has `row` (or `user`, `item`), `prediction` and `probability_<label>`; rename the input column"));
    }
    let mut distinct = keep.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != keep.len() {
        return Err(reader.invalid("predict.keep", "a column named twice"));
    }
    if let Some(name) = keep.iter().find(|name| name.starts_with("contrib_")) {
        return Err(reader
            .invalid(
                "predict.keep",
                "a column name the output uses for contributions",
            )
            .found(format!("{name:?}"))
            .hint("`contrib_` columns hold feature contributions; rename the input column"));
    }
    let contributions = reader.boolean("predict.contributions").unwrap_or(false);
    Ok((
        Task::Predict(PredictTask {
            from,
            input,
            output,
            handle_invalid: match reader
                .choice("model.handle_invalid", &["error", "skip", "keep"])?
                .as_deref()
            {
                Some("skip") => HandleInvalid::Skip,
                Some("keep") => HandleInvalid::Keep,
                _ => HandleInvalid::Error,
            },
            keep,
            contributions,
        }),
        resolved,
    ))
}

type ResolvedKeys = Vec<(String, Value)>;

fn read_source(
    reader: &Reader<'_>,
    job_file: &Path,
    job_seed: u64,
) -> Result<(Source, ResolvedKeys), ConfigError> {
    let mut resolved = Vec::new();
    if reader.layered.get("input.synthetic").is_some() {
        for key in ["input.format", "input.separator", "input.header"] {
            if reader.is_set(key) {
                return Err(reader
                    .invalid(key, "a file option with a synthetic source")
                    .hint("remove it, or read a file with `input.path`"));
            }
        }
        let kind = reader
            .choice(
                "input.synthetic.kind",
                &[
                    "ratings",
                    "interactions",
                    "events",
                    "classification",
                    "regression",
                ],
            )?
            .ok_or_else(|| reader.missing("input.synthetic.kind", job_file))?;
        let seed = reader
            .integer("input.synthetic.seed", 0, i64::MAX)?
            .map_or(job_seed, |seed| seed as u64);
        let applies: &[&str] = match kind.as_str() {
            "ratings" => &["users", "items", "ratings", "rank", "noise"],
            "interactions" | "events" => &["users", "items", "ratings", "rank"],
            "classification" => &["rows", "features", "classes"],
            _ => &["rows", "features", "noise"],
        };
        for key in [
            "users", "items", "ratings", "rank", "noise", "rows", "features", "classes",
        ] {
            let full = format!("input.synthetic.{key}");
            if !applies.contains(&key) && reader.is_set(&full) {
                return Err(reader
                    .invalid(&full, "a key that does not apply")
                    .allowed(format!("for kind {kind}: {}, seed", applies.join(", "))));
            }
        }
        let spec = match kind.as_str() {
            "ratings" | "interactions" | "events" => {
                let users = reader.required_integer("input.synthetic.users", 1, 1 << 31)?;
                let items = reader.required_integer("input.synthetic.items", 1, 1 << 31)?;
                let ratings =
                    reader.required_integer("input.synthetic.ratings", 1, u32::MAX as i64)?;
                if (ratings as f64) > users as f64 * items as f64 / 2.0 {
                    return Err(reader
                        .invalid("input.synthetic.ratings", "too many ratings")
                        .found(format!(
                            "{ratings} ratings for {users} users x {items} items"
                        )));
                }
                let rank = reader.required_integer("input.synthetic.rank", 1, 256)? as u32;
                if kind == "events" {
                    SyntheticSpec::Events {
                        users: users as u32,
                        items: items as u32,
                        ratings: ratings as u64,
                        rank,
                        seed,
                    }
                } else if kind == "interactions" {
                    SyntheticSpec::Interactions {
                        users: users as u32,
                        items: items as u32,
                        ratings: ratings as u64,
                        rank,
                        seed,
                    }
                } else {
                    SyntheticSpec::Ratings {
                        users: users as u32,
                        items: items as u32,
                        ratings: ratings as u64,
                        rank,
                        noise: reader.float("input.synthetic.noise", 0.0, 100.0, false)?,
                        seed,
                    }
                }
            }
            "classification" => SyntheticSpec::Classification {
                rows: reader.required_integer("input.synthetic.rows", 1, u32::MAX as i64)? as u64,
                features: reader.required_integer("input.synthetic.features", 1, 10_000)? as u32,
                classes: reader.required_integer("input.synthetic.classes", 2, 1000)? as u32,
                seed,
            },
            _ => SyntheticSpec::Regression {
                rows: reader.required_integer("input.synthetic.rows", 1, u32::MAX as i64)? as u64,
                features: reader.required_integer("input.synthetic.features", 1, 10_000)? as u32,
                noise: reader.float("input.synthetic.noise", 0.0, 100.0, false)?,
                seed,
            },
        };
        let spec_value = Value::try_from(&spec)
            .map_err(|error| ConfigError::new(format!("cannot record the source: {error}")))?;
        resolved.push(("input.synthetic".to_owned(), spec_value));
        return Ok((Source::Synthetic(spec), resolved));
    }

    let (files, mut file_keys) = file_source(reader, "input", job_file)?;
    resolved.append(&mut file_keys);
    Ok((Source::Files(files), resolved))
}

/// The files of a source at `prefix` (`input`, `input.test`, `input.tables.NAME`): globs
/// expanded, format from the extension unless set, separator and header per format; and the
/// keys the resolved job records for it.
fn file_source(
    reader: &Reader<'_>,
    prefix: &str,
    job_file: &Path,
) -> Result<(FileSource, ResolvedKeys), ConfigError> {
    let mut resolved = Vec::new();
    let key = |leaf: &str| format!("{prefix}.{leaf}");
    let patterns: Vec<(String, String)> = if let Some(path) = reader.string(&key("path")) {
        vec![(key("path"), path)]
    } else if let Some(Value::Array(items)) = reader.value(&key("paths")) {
        if items.is_empty() {
            return Err(reader.invalid(&key("paths"), "empty list"));
        }
        items
            .iter()
            .filter_map(|item| item.as_str())
            .map(|text| (key("paths"), text.to_owned()))
            .collect()
    } else {
        return Err(reader
            .missing(&key("path"), job_file)
            .allowed(if prefix == "input" {
                "exactly one of `input.path`, `input.paths`, `input.synthetic`".to_owned()
            } else {
                format!("exactly one of `{prefix}.path` and `{prefix}.paths`")
            }));
    };
    let mut paths = Vec::new();
    let engine = reader
        .string("job.engine")
        .unwrap_or_else(|| "native".to_owned());
    for (pattern_key, pattern) in &patterns {
        if pattern.is_empty() {
            return Err(reader.invalid(pattern_key, "empty path"));
        }
        // Object storage: kept as written (globs are listed when the job reads them).
        if let Some(scheme) = crate::text::uri_scheme(pattern) {
            let native = matches!(scheme, "s3");
            let spark = matches!(
                scheme,
                "s3" | "s3a" | "s3n" | "gs" | "hdfs" | "abfs" | "abfss" | "wasbs"
            );
            if native || (engine == "spark" && spark) {
                paths.push(PathBuf::from(pattern));
                continue;
            }
            return Err(reader
                .invalid(pattern_key, &format!("a `{scheme}://` path"))
                .allowed(if spark {
                    "local paths and `s3://` URLs; with `job.engine = \"spark\"` also `s3a://`, `hdfs://`, `gs://`, `abfs://` (passed to Spark unchanged)".to_owned()
                } else {
                    "local paths and `s3://` URLs (S3 or an S3-compatible store: see `[s3]`)".to_owned()
                }));
        }
        let resolved_path = reader.path(pattern_key, pattern);
        // A file that exists under the literal name is read as named (`ratings[2024].csv`).
        if is_glob(pattern) && !resolved_path.exists() {
            let matches = expand_glob(&resolved_path).map_err(|problem| {
                reader
                    .invalid(pattern_key, &format!("not a valid glob pattern: {problem}"))
                    .hint("`*` and `?` match within a name, `**` any directories, `[abc]` one of the bytes listed; `[[]` matches a literal `[`")
            })?;
            if matches.is_empty() {
                return Err(reader
                    .invalid(pattern_key, "no file matches the pattern")
                    .found(resolved_path.display().to_string()));
            }
            paths.extend(matches);
        } else {
            paths.push(resolved_path);
        }
    }
    let format_inferred = reader.string(&key("format")).is_none();
    let format = match reader.string(&key("format")) {
        Some(name) => {
            Format::parse(&name).ok_or_else(|| reader.invalid(&key("format"), "unknown format"))?
        }
        None => {
            let first = &paths[0];
            Format::from_extension(first).ok_or_else(|| {
                reader
                    .invalid(&patterns[0].0, "cannot infer the format from the extension")
                    .hint(format!("set `{prefix}.format` to one of {}", Format::NAMES))
            })?
        }
    };
    let separator = match reader.string(&key("separator")) {
        Some(_) if !format.is_delimited_text() => {
            return Err(reader
                .invalid(&key("separator"), "a separator for a binary format")
                .hint("separators apply to csv, tsv and text files"));
        }
        Some(separator) if separator.is_empty() || separator.contains(['\n', '\r']) => {
            return Err(reader.invalid(&key("separator"), "invalid separator"));
        }
        Some(separator) => Some(separator),
        None => match format {
            Format::Csv => Some(",".to_owned()),
            Format::Tsv => Some("\t".to_owned()),
            _ => None,
        },
    };
    let header = match reader.boolean(&key("header")) {
        Some(_) if !format.is_delimited_text() => {
            return Err(reader
                .invalid(&key("header"), "a header flag for a self-describing format")
                .hint("`header` applies to csv, tsv and text files"));
        }
        Some(header) => header,
        None => matches!(format, Format::Csv | Format::Tsv),
    };
    let path_values = paths
        .iter()
        .map(|path| match path.to_str() {
            Some(text) if crate::text::uri_scheme(text).is_some() => Value::String(text.to_owned()),
            _ => Value::String(absolute_text(path)),
        })
        .collect();
    resolved.push((key("paths"), Value::Array(path_values)));
    resolved.push((key("format"), Value::String(format_name(format))));
    if let Some(separator) = &separator {
        resolved.push((key("separator"), Value::String(separator.clone())));
    }
    if format.is_delimited_text() {
        resolved.push((key("header"), Value::Boolean(header)));
    }
    Ok((
        FileSource {
            paths,
            format,
            separator,
            header,
            format_inferred,
        },
        resolved,
    ))
}

/// A unit enum's serde name as a TOML string.
fn serde_value<T: serde::Serialize>(value: &T) -> Value {
    Value::String(
        serde_json::to_value(value)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default(),
    )
}

/// A path as the resolved job records it: absolute, so the recorded job runs from anywhere
/// (it is saved inside the version folder) and reads and writes the same places.
fn absolute_text(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn format_name(format: Format) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Expands a glob (`data/part-*.csv`, `events/**/part-*.parquet`, `dt=2026-11-*/x.csv`) to
/// the regular files it matches, sorted by path. The `glob` crate's matcher is linear in the
/// name (no backtracking blow-up on patterns like `*a*a*a*b`).
fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_str().ok_or("the path is not UTF-8")?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let walk = glob::glob_with(text, options).map_err(|error| error.to_string())?;
    let mut matches: Vec<PathBuf> = walk
        .filter_map(Result::ok)
        .filter(|path| path.is_file())
        .collect();
    matches.sort();
    Ok(matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_and_directories_in_linear_time() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "part-1.csv",
            "part-2.csv",
            "x.tsv",
            "dt=1/a.csv",
            "dt=2/deep/b.csv",
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "a\n").unwrap();
        }
        let count = |pattern: &str| expand_glob(&dir.path().join(pattern)).unwrap().len();
        assert_eq!(count("part-*.csv"), 2);
        assert_eq!(count("dt=*/*.csv"), 1);
        assert_eq!(count("**/*.csv"), 4);
        assert_eq!(count("part-[12].csv"), 2);
        let slow = format!("{}b", "*a".repeat(30));
        std::fs::write(dir.path().join("a".repeat(60)), "").unwrap();
        assert_eq!(count(&slow), 0);
        assert!(expand_glob(&dir.path().join("[")).is_err());
    }
}
