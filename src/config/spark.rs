//! The Spark engine's half of the configuration: which job keys become which Spark MLlib
//! parameters, which have no Spark equivalent (refused, never silently dropped), and the
//! `[spark]` settings handed to spark-submit unchanged.
//!
//! The table below is the one source for the translation, its refusals and the README's
//! mapping table (`submit --print-spark-params`).

use serde_json::{Value as Json, json};

use super::{ConfigError, Format, InputConfig, ModelConfig, Origin, Source, ValidationSource};
use crate::algo::als::Solver;
use crate::algo::trees::{Ensemble, FeatureSubset, Impurity, Loss, TreeParams, TreeTask};

/// What the generated PySpark application needs beyond the job itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SparkJob {
    /// `spark.*` settings for `--conf KEY=VALUE`, in key order.
    pub conf: Vec<(String, String)>,
    /// Spark MLlib parameter name and value, in the order of [`TRANSLATIONS`].
    pub params: Vec<(String, Json)>,
    /// The Spark estimator class, e.g. `pyspark.ml.recommendation.ALS`.
    pub estimator: &'static str,
}

/// Spark MLlib parameter names and values.
pub type SparkParams = Vec<(String, Json)>;

/// One row of the mapping: a job key, its Spark parameter (empty: none), and what to know.
pub struct Translation {
    pub key: &'static str,
    pub spark: &'static str,
    pub algorithms: &'static str,
    pub note: &'static str,
}

const fn row(
    key: &'static str,
    spark: &'static str,
    algorithms: &'static str,
    note: &'static str,
) -> Translation {
    Translation {
        key,
        spark,
        algorithms,
        note,
    }
}

pub const TRANSLATIONS: &[Translation] = &[
    row(
        "job.seed",
        "seed",
        "all",
        "The same seed; Spark's own random streams differ from ours, so models differ while the split does not.",
    ),
    row("model.rank", "rank", "als", ""),
    row("model.max_iter", "maxIter", "als, gbt", ""),
    row("model.reg_param", "regParam", "als", ""),
    row("model.implicit_prefs", "implicitPrefs", "als", ""),
    row("model.alpha", "alpha", "als", ""),
    row("model.nonnegative", "nonnegative", "als", ""),
    row("model.cold_start_strategy", "coldStartStrategy", "als", ""),
    row(
        "model.solver",
        "",
        "als",
        "Spark's ALS always solves by Cholesky (NNLS with `nonnegative`): `solver = \"cg\"` set in the job is refused; left unset, Spark's solver runs and is recorded.",
    ),
    row(
        "model.cg_steps",
        "",
        "als",
        "Refused when set: Spark's ALS has no conjugate-gradient solver.",
    ),
    row(
        "model.task",
        "",
        "random_forest, gbt",
        "Chooses the estimator: `RandomForestClassifier`/`Regressor`, `GBTClassifier`/`Regressor`.",
    ),
    row(
        "model.monotone_constraints",
        "",
        "random_forest, gbt",
        "Refused when set: Spark's trees have no monotone constraints.",
    ),
    row("model.num_trees", "numTrees", "random_forest", ""),
    row("model.max_depth", "maxDepth", "random_forest, gbt", ""),
    row("model.max_bins", "maxBins", "random_forest, gbt", ""),
    row(
        "model.min_instances_per_node",
        "minInstancesPerNode",
        "random_forest, gbt",
        "",
    ),
    row(
        "model.min_info_gain",
        "minInfoGain",
        "random_forest, gbt",
        "",
    ),
    row(
        "model.impurity",
        "impurity",
        "random_forest",
        "GBT trees are regression trees on gradients in both engines.",
    ),
    row(
        "model.subsampling_rate",
        "subsamplingRate",
        "random_forest, gbt",
        "",
    ),
    row(
        "model.feature_subset_strategy",
        "featureSubsetStrategy",
        "random_forest, gbt",
        "Fractions and counts are passed as Spark's strings (`\"0.5\"`, `\"10\"`).",
    ),
    row("model.bootstrap", "bootstrap", "random_forest", ""),
    row("model.step_size", "stepSize", "gbt", ""),
    row("model.loss_type", "lossType", "gbt", ""),
    row("model.validation_tol", "validationTol", "gbt", ""),
    row(
        "model.validation_column",
        "validationIndicatorCol",
        "gbt",
        "",
    ),
    row(
        "model.validation_fraction",
        "",
        "gbt",
        "Refused when set: Spark's GBT takes its early-stopping rows from an indicator column; use `validation_column`.",
    ),
    row(
        "model.max_categories",
        "VectorIndexer.maxCategories",
        "random_forest, gbt",
        "Numeric features with at most this many values become categorical through Spark's VectorIndexer.",
    ),
    row(
        "input.columns.categorical",
        "StringIndexer",
        "random_forest, gbt",
        "Listed numeric columns are indexed as strings, like string columns.",
    ),
    row(
        "input.format",
        "",
        "all",
        "csv, tsv, text, parquet, ndjson and libsvm use Spark's readers; `ipc` is refused (Spark has no Arrow IPC file reader).",
    ),
    row(
        "input.synthetic",
        "",
        "all",
        "Refused: the Spark engine reads files (`gen-ratings` and `gen-table` write the same data).",
    ),
    row(
        "split.test_fraction",
        "",
        "all",
        "The split is computed in Spark SQL with the native engine's hash of (seed, row number): both engines hold out the same rows.",
    ),
    row(
        "tuning",
        "",
        "all",
        "Refused: hyperparameter search runs on the native engine.",
    ),
];

/// The mapping as a Markdown table for the README.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| job key | Spark MLlib | algorithms | notes |\n|---|---|---|---|\n");
    for row in TRANSLATIONS {
        let spark = if row.spark.is_empty() {
            "(none)".to_owned()
        } else {
            format!("`{}`", row.spark)
        };
        out.push_str(&format!(
            "| `{}` | {spark} | {} | {} |\n",
            row.key, row.algorithms, row.note
        ));
    }
    out
}

fn note(key: &str) -> &'static str {
    TRANSLATIONS
        .iter()
        .find(|row| row.key == key)
        .map_or("", |row| row.note)
}

fn refuse(key: &str, problem: &str, set_at: Option<Origin>) -> ConfigError {
    let error = ConfigError::new(format!(
        "`{key}` {problem}: it cannot run on the Spark engine"
    ))
    .key(key);
    match set_at {
        Some(origin) => error.origin(origin),
        None => error,
    }
    .hint(format!(
        "{} Or run the job on the native engine (drop --engine spark).",
        note(key)
    ))
}

fn feature_subset(strategy: FeatureSubset) -> Json {
    json!(match strategy {
        FeatureSubset::Auto => "auto".to_owned(),
        FeatureSubset::All => "all".to_owned(),
        FeatureSubset::OneThird => "onethird".to_owned(),
        FeatureSubset::Sqrt => "sqrt".to_owned(),
        FeatureSubset::Log2 => "log2".to_owned(),
        FeatureSubset::Fraction(fraction) => format!("{fraction}"),
        FeatureSubset::Count(count) => count.to_string(),
    })
}

fn tree_params(
    params: &TreeParams,
    validation: &ValidationSource,
    max_categories: usize,
    set_at: &dyn Fn(&str) -> Option<Origin>,
) -> Result<Vec<(String, Json)>, ConfigError> {
    if let (ValidationSource::Fraction(_), Some(origin)) =
        (validation, set_at("model.validation_fraction"))
    {
        return Err(refuse(
            "model.validation_fraction",
            "has no Spark equivalent",
            Some(origin),
        ));
    }
    if !params.monotone_constraints.is_empty() {
        return Err(refuse(
            "model.monotone_constraints",
            "has no Spark equivalent (Spark's trees take no monotone constraints)",
            set_at("model.monotone_constraints"),
        ));
    }
    let gbt = params.ensemble == Ensemble::Gbt;
    let mut out: Vec<(&str, Json)> = vec![("seed", json!(params.seed))];
    if gbt {
        out.push(("maxIter", json!(params.max_iter)));
    } else {
        out.push(("numTrees", json!(params.num_trees)));
    }
    out.extend([
        ("maxDepth", json!(params.max_depth)),
        ("maxBins", json!(params.max_bins)),
        ("minInstancesPerNode", json!(params.min_instances_per_node)),
        ("minInfoGain", json!(params.min_info_gain)),
    ]);
    if !gbt {
        let impurity = match params.impurity {
            Impurity::Gini => "gini",
            Impurity::Entropy => "entropy",
            Impurity::Variance => "variance",
        };
        out.push(("impurity", json!(impurity)));
    }
    out.extend([
        ("subsamplingRate", json!(params.subsampling_rate)),
        (
            "featureSubsetStrategy",
            feature_subset(params.feature_subset_strategy),
        ),
    ]);
    if gbt {
        let loss = match params.loss_type {
            Loss::Logistic => "logistic",
            Loss::Squared => "squared",
            Loss::Absolute => "absolute",
        };
        out.extend([
            ("stepSize", json!(params.step_size)),
            ("lossType", json!(loss)),
            ("validationTol", json!(params.validation_tol)),
        ]);
        if let ValidationSource::Column(column) = validation {
            let name = match column {
                super::ColumnRef::Name(name) => name.clone(),
                super::ColumnRef::Position(position) => format!("#{position}"),
            };
            out.push(("validationIndicatorCol", json!(name)));
        }
    } else {
        out.push(("bootstrap", json!(params.bootstrap)));
    }
    if max_categories > 0 {
        out.push(("VectorIndexer.maxCategories", json!(max_categories)));
    }
    Ok(out
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect())
}

/// Spark's estimator and parameters for a checked model, or the refusal naming the key that
/// Spark cannot honour. `is_set` says whether the job (not a default) set a key.
pub fn translate(
    model: &ModelConfig,
    input: &InputConfig,
    max_categories: usize,
    set_at: &dyn Fn(&str) -> Option<Origin>,
) -> Result<(&'static str, SparkParams), ConfigError> {
    match &input.source {
        Source::Synthetic(_) => {
            return Err(refuse(
                "input.synthetic",
                "generates data in this process",
                set_at("input.synthetic"),
            ));
        }
        Source::Files(files) if files.format == Format::Ipc => {
            return Err(refuse(
                "input.format",
                "is `ipc`, which Spark cannot read",
                set_at("input.format"),
            ));
        }
        Source::Files(_) => {}
    }
    match model {
        ModelConfig::Als { params, cold_start } => {
            if let Some(origin) = set_at("model.cg_steps") {
                return Err(refuse(
                    "model.cg_steps",
                    "has no Spark equivalent",
                    Some(origin),
                ));
            }
            if let (Solver::ConjugateGradient { .. }, Some(origin)) =
                (params.solver, set_at("model.solver"))
            {
                return Err(refuse(
                    "model.solver",
                    "is `cg`, which Spark does not have",
                    Some(origin),
                ));
            }
            let cold_start = match cold_start {
                super::ColdStartStrategy::Nan => "nan",
                super::ColdStartStrategy::Drop => "drop",
            };
            let params = vec![
                ("seed", json!(params.seed)),
                ("rank", json!(params.rank)),
                ("maxIter", json!(params.max_iter)),
                ("regParam", json!(params.reg_param)),
                ("implicitPrefs", json!(params.implicit_prefs)),
                ("alpha", json!(params.alpha)),
                ("nonnegative", json!(params.nonnegative)),
                ("coldStartStrategy", json!(cold_start)),
            ];
            Ok((
                "pyspark.ml.recommendation.ALS",
                params
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect(),
            ))
        }
        ModelConfig::Trees {
            params, validation, ..
        } => {
            let estimator = match (params.ensemble, params.task) {
                (Ensemble::RandomForest, TreeTask::Classification) => {
                    "pyspark.ml.classification.RandomForestClassifier"
                }
                (Ensemble::RandomForest, TreeTask::Regression) => {
                    "pyspark.ml.regression.RandomForestRegressor"
                }
                (Ensemble::Gbt, TreeTask::Classification) => {
                    "pyspark.ml.classification.GBTClassifier"
                }
                (Ensemble::Gbt, TreeTask::Regression) => "pyspark.ml.regression.GBTRegressor",
            };
            Ok((
                estimator,
                tree_params(params, validation, max_categories, set_at)?,
            ))
        }
    }
}

/// `[spark]` flattened to `spark.<dotted key>` = value text, in key order.
pub fn settings(table: Option<&toml::Value>) -> Result<Vec<(String, String)>, ConfigError> {
    fn walk(
        prefix: &str,
        value: &toml::Value,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), ConfigError> {
        match value {
            toml::Value::Table(table) => {
                for (key, inner) in table {
                    walk(&format!("{prefix}.{key}"), inner, out)?;
                }
            }
            toml::Value::String(text) => out.push((prefix.to_owned(), text.clone())),
            toml::Value::Integer(number) => out.push((prefix.to_owned(), number.to_string())),
            toml::Value::Float(number) => out.push((prefix.to_owned(), number.to_string())),
            toml::Value::Boolean(flag) => out.push((prefix.to_owned(), flag.to_string())),
            other => {
                return Err(ConfigError::new(format!(
                    "wrong type for `{prefix}`: Spark settings are strings, numbers or booleans"
                ))
                .key(prefix)
                .found(other.type_str()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if let Some(value) = table {
        walk("spark", value, &mut out)?;
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::als::AlsParams;
    use crate::config::{ColdStartStrategy, ColumnRef, FileSource, NullPolicy, RatingColumns};

    fn input(format: Format) -> InputConfig {
        InputConfig {
            source: Source::Files(FileSource {
                paths: vec!["ratings.csv".into()],
                format,
                separator: None,
                header: true,
                format_inferred: false,
            }),
            columns: RatingColumns {
                user: ColumnRef::Name("user".into()),
                item: ColumnRef::Name("item".into()),
                rating: ColumnRef::Name("rating".into()),
            },
            table: super::super::TableColumns {
                label: ColumnRef::Name("label".into()),
                features: None,
                categorical: Vec::new(),
                max_categories: 0,
                validation: None,
                weight: None,
            },
            null_policy: NullPolicy::Error,
            sample_fraction: 1.0,
            limit: None,
            s3: Default::default(),
            preparation: None,
            dedupe: super::super::prepare::Dedupe::Keep,
        }
    }

    fn als(solver: Solver) -> ModelConfig {
        let mut params = AlsParams::explicit(8, 5, 0.1, 7);
        params.solver = solver;
        ModelConfig::Als {
            params,
            cold_start: ColdStartStrategy::Drop,
        }
    }

    #[test]
    fn als_parameters_map_one_to_one() {
        let (estimator, params) =
            translate(&als(Solver::Cholesky), &input(Format::Csv), 0, &|_| None).unwrap();
        assert_eq!(estimator, "pyspark.ml.recommendation.ALS");
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("rank"), json!(8));
        assert_eq!(get("maxIter"), json!(5));
        assert_eq!(get("regParam"), json!(0.1));
        assert_eq!(get("seed"), json!(7));
        assert_eq!(get("coldStartStrategy"), json!("drop"));
        assert_eq!(get("implicitPrefs"), json!(false));
    }

    #[test]
    fn parameters_without_an_equivalent_are_refused_only_when_set() {
        let cg = als(Solver::ConjugateGradient { steps: 3 });
        // Implicit jobs default to cg: left unset, Spark's Cholesky runs.
        assert!(translate(&cg, &input(Format::Csv), 0, &|_| None).is_ok());
        let error = translate(&cg, &input(Format::Csv), 0, &|key| {
            (key == "model.solver").then_some(Origin::Default)
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("model.solver") && error.contains("Cholesky"),
            "{error}"
        );
        let error = translate(&cg, &input(Format::Csv), 0, &|key| {
            (key == "model.cg_steps").then_some(Origin::Default)
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("cg_steps"), "{error}");
        let error = translate(&als(Solver::Cholesky), &input(Format::Ipc), 0, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ipc"), "{error}");
    }

    #[test]
    fn tree_parameters_map_and_validation_fraction_is_refused() {
        let params = TreeParams {
            ensemble: Ensemble::Gbt,
            task: TreeTask::Classification,
            num_trees: 20,
            max_depth: 5,
            max_bins: 32,
            min_instances_per_node: 1,
            min_info_gain: 0.0,
            impurity: Impurity::Variance,
            subsampling_rate: 1.0,
            feature_subset_strategy: FeatureSubset::Fraction(0.5),
            bootstrap: true,
            max_iter: 20,
            step_size: 0.1,
            loss_type: Loss::Logistic,
            validation_tol: 0.01,
            seed: 1,
            monotone_constraints: Vec::new(),
        };
        let model = ModelConfig::Trees {
            params: params.clone(),
            validation: ValidationSource::Fraction(0.1),
            handle_invalid: crate::config::HandleInvalid::Error,
        };
        let (estimator, translated) = translate(&model, &input(Format::Csv), 0, &|_| None).unwrap();
        assert_eq!(estimator, "pyspark.ml.classification.GBTClassifier");
        let names: Vec<&str> = translated.iter().map(|(name, _)| name.as_str()).collect();
        assert!(
            names.contains(&"stepSize") && !names.contains(&"numTrees"),
            "{names:?}"
        );
        let subset = &translated
            .iter()
            .find(|(name, _)| name == "featureSubsetStrategy")
            .unwrap()
            .1;
        assert_eq!(subset, &json!("0.5"));
        let error = translate(&model, &input(Format::Csv), 0, &|key| {
            (key == "model.validation_fraction").then_some(Origin::Default)
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("validation_column"), "{error}");
    }

    #[test]
    fn spark_settings_flatten_to_dotted_keys() {
        let table: toml::Value =
            toml::from_str("sql = { shuffle = { partitions = 8 } }\n\"ui.enabled\" = false")
                .unwrap();
        assert_eq!(
            settings(Some(&table)).unwrap(),
            vec![
                ("spark.sql.shuffle.partitions".to_owned(), "8".to_owned()),
                ("spark.ui.enabled".to_owned(), "false".to_owned()),
            ]
        );
        let bad: toml::Value = toml::from_str("jars = [\"a.jar\"]").unwrap();
        assert!(settings(Some(&bad)).is_err());
    }

    #[test]
    fn every_translation_row_names_a_registered_key() {
        for row in TRANSLATIONS {
            assert!(
                crate::config::params::find(row.key).is_some(),
                "{} is not a job key",
                row.key
            );
        }
    }
}
