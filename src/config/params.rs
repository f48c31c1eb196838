//! The one list of every job-file key: its meaning, default and allowed range.
//!
//! Everything else reads from here: the built-in defaults layer, the unknown-key check with its
//! did-you-mean suggestions, and the parameter table in the README (`submit --print-params`).

/// The TOML shape a key expects; sections are tables whose keys are listed separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Section,
    String,
    Integer,
    Float,
    Boolean,
    /// A string, or an integer column position.
    Column,
    StringList,
    /// A string or a number.
    StringOrNumber,
    /// An array of tables (`[[section]]`), checked by its own validator.
    TableList,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Section => "table",
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Float => "number",
            Kind::Boolean => "boolean",
            Kind::Column => "string or integer",
            Kind::StringList => "list of strings",
            Kind::StringOrNumber => "string or number",
            Kind::TableList => "list of tables",
        }
    }

    pub fn with_article(self) -> &'static str {
        match self {
            Kind::Section => "a table",
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::Boolean => "a boolean",
            Kind::Column => "a string or an integer",
            Kind::StringList => "a list of strings",
            Kind::StringOrNumber => "a string or a number",
            Kind::TableList => "a list of tables",
        }
    }
}

pub struct Param {
    /// Dotted path into the job file, e.g. `model.rank`.
    pub key: &'static str,
    pub kind: Kind,
    /// Default as a TOML literal; `None` when required or derived from other keys.
    pub default: Option<&'static str>,
    /// What values are accepted, in words.
    pub allowed: &'static str,
    pub doc: &'static str,
}

impl Param {
    /// The default as a TOML value (`None` when the key has none).
    pub fn default_value(&self) -> Option<toml::Value> {
        toml::from_str::<toml::Table>(&format!("v = {}", self.default?))
            .ok()?
            .remove("v")
    }
}

pub(crate) const fn param(
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    allowed: &'static str,
    doc: &'static str,
) -> Param {
    Param {
        key,
        kind,
        default,
        allowed,
        doc,
    }
}

use Kind::*;

pub const PARAMS: &[Param] = &[
    param(
        "job",
        Section,
        None,
        "",
        "What to run and with which resources.",
    ),
    param(
        "job.name",
        String,
        None,
        "letters, digits, `-`, `_`, `.`; 1 to 100 characters",
        "Name of the job; versions are published under `<output.dir>/<name>/`. Defaults to the job file's name without extension.",
    ),
    param(
        "job.kind",
        String,
        Some("\"train\""),
        "`train`, `recommend`, `predict`",
        "What the job does: `train` fits, evaluates and publishes a model version; `recommend` writes top-k lists from a published version; `predict` scores (user, item) pairs from a file with one.",
    ),
    param(
        "job.master",
        String,
        Some("\"local[*]\""),
        "`local` (1 thread), `local[N]` (N from 1 to 1024), `local[*]` (all cores); with `engine = \"spark\"` also `spark://HOST:PORT`, `yarn`, `k8s://URL`, `mesos://HOST:PORT`",
        "Where to run, as in spark-submit. The native engine runs the whole job in one process on a pool of N threads. With `engine = \"spark\"` it is handed to spark-submit's `--master`, which also accepts a cluster: `spark://HOST:PORT`, `yarn`, `k8s://URL`.",
    ),
    param(
        "job.engine",
        String,
        Some("\"native\""),
        "`native`, `spark`",
        "Who trains: `native` runs in this process; `spark` turns the job into a PySpark application and runs it with spark-submit (found through `SPARK_HOME` or `PATH`), Spark MLlib doing the training, then publishes the same version layout. Train jobs only.",
    ),
    param(
        "job.driver_memory",
        String,
        Some("\"1G\""),
        "a size such as `512M`, `2G`, `1.5g` (a bare number is MiB, as in Spark); 16M to 16T",
        "Cap on the process heap. Crossing it stops the job with exit code 4 and publishes nothing.",
    ),
    param(
        "job.executor_memory",
        String,
        Some("\"1G\""),
        "a size, as for `driver_memory`",
        "Validated and recorded; in local mode the driver is the executor, so `driver_memory` is the cap that applies.",
    ),
    param(
        "job.seed",
        Integer,
        Some("42"),
        "an integer from 0 to 2^63-1",
        "Seed for every random choice (split, initial factors). Same job and seed give the same model for any thread count.",
    ),
    param(
        "spark",
        Section,
        None,
        "",
        "With `engine = \"spark\"`: Spark settings handed to spark-submit unchanged as `--conf spark.<key>=<value>`, e.g. `[spark] sql.shuffle.partitions = 8` or `--conf spark.executor.cores=4`. Any key is accepted (Spark checks them); values are strings, numbers or booleans. The native engine ignores this section.",
    ),
    param("input", Section, None, "", "Where the data comes from."),
    param(
        "input.path",
        String,
        None,
        "a file path or a glob (`data/*.csv`); relative to the file that sets it",
        "Input file. Exactly one of `path`, `paths` and `synthetic` is required.",
    ),
    param(
        "input.paths",
        StringList,
        None,
        "a non-empty list of paths or globs",
        "Several input files of the same format, read in order.",
    ),
    param(
        "input.format",
        String,
        None,
        "`csv`, `tsv`, `text`, `parquet`, `ndjson`, `ipc`, `libsvm`",
        "File format; inferred from the extension when omitted (`.csv`, `.tsv`, `.txt`/`.dat`/`.data`, `.parquet`, `.ndjson`/`.jsonl`, `.ipc`/`.arrow`/`.feather`, `.libsvm`/`.svm`).",
    ),
    param(
        "input.separator",
        String,
        None,
        "any non-empty string without newlines, e.g. `,`, `\\t`, `::`",
        "Field separator of text files. Default: `,` for csv, tab for tsv; for text it is sniffed from the first line (`::`, tab, `,`, `;`, `|`, space).",
    ),
    param(
        "input.header",
        Boolean,
        None,
        "`true` or `false`",
        "Whether the first line holds column names. Default: true for csv and tsv, false for text.",
    ),
    param(
        "input.null_policy",
        String,
        Some("\"error\""),
        "`error`, `drop`",
        "What a missing value in a used column does: stop with the file and row (`error`) or drop the row (`drop`).",
    ),
    param(
        "input.sample_fraction",
        Float,
        Some("1.0"),
        "greater than 0 and at most 1",
        "Keep this fraction of rows, chosen by the seed (for smoke runs).",
    ),
    param(
        "input.limit",
        Integer,
        None,
        "an integer from 1 to 2^40",
        "Read at most this many rows (after the header) from the input (for smoke runs).",
    ),
    param(
        "input.dedupe",
        String,
        Some("\"keep\""),
        "`keep`, `error`, `first`, `last`, `sum`, `mean`, `max`",
        "ALS jobs: what several rows for the same (user, item) pair do. `keep`: each is an observation of its own, as in Spark; `error`: stop, naming the pair; `first`/`last`: the first or last row in input order wins; `sum`/`mean`/`max`: one rating combining them (`sum` turns repeated events into counts).",
    ),
    param(
        "input.tables",
        Section,
        None,
        "",
        "Named sources besides the main input, one `[input.tables.NAME]` each with `path` or `paths` (globs, Hive-style `key=value` directories become columns) and optionally `format`, `separator`, `header` as for `[input]`. `input.sql` and `join` steps read them by NAME; the main input is `input`.",
    ),
    param(
        "input.sql",
        String,
        None,
        "one SQL `SELECT` over `input` and the named tables (polars SQL)",
        "A query whose result replaces the main input before the columns are mapped: filters, joins, `GROUP BY`, derived columns. `--dry-run --verbose` prints the optimized plan.",
    ),
    param(
        "input.steps",
        TableList,
        None,
        "`[[input.steps]]` sections, each with one of `filter`, `with_columns`, `select`, `rename`, `join`, `group_by`, `dedupe`, `sample`",
        "Preparation steps applied in order (after `input.sql` when both are set), as one lazy polars plan: `filter = \"SQL condition\"`; `with_columns = { name = \"SQL expression\" }`; `select = [columns]`; `rename = { old = \"new\" }`; `join = \"TABLE\"` with `on` (or `left_on` + `right_on`) and `how` (`inner`, `left`, `semi`, `anti`); `group_by = [columns]` with `agg = { name = \"sum(x)\" }`; `dedupe = [columns]` (or `true`) with `keep` (`first`, `last`); `sample = FRACTION` with an optional `seed`.",
    ),
    param(
        "s3",
        Section,
        None,
        "",
        "Where `s3://` paths are read from. Credentials come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`) and the default profile of `~/.aws/credentials` and `~/.aws/config`; never from the job file.",
    ),
    param(
        "s3.endpoint_url",
        String,
        None,
        "an `http://` or `https://` URL",
        "An S3-compatible store (MinIO, Ceph, moto, ...) instead of AWS; buckets are addressed by path (`ENDPOINT/bucket/key`).",
    ),
    param(
        "s3.region",
        String,
        None,
        "a region name such as `eu-west-1`",
        "The bucket's region. Default: from the environment or `~/.aws/config`, else `us-east-1`.",
    ),
    param(
        "input.test",
        Section,
        None,
        "",
        "Train jobs: a separate test source (`[input.test]` with `path` or `paths`, and `format`, `separator`, `header` as for `[input]`). It goes through the same `sql`, steps, column mapping, `null_policy` and `dedupe` as the main input, which then trains on all its rows: `split.test_fraction` is ignored and `split.method` must be `random`. Tree jobs encode its categories with the training table's (unseen ones per `model.handle_invalid`).",
    ),
    param(
        "input.test.path",
        String,
        None,
        "a file path or a glob; relative to the file that sets it",
        "Test file. Exactly one of `path` and `paths`.",
    ),
    param(
        "input.test.paths",
        StringList,
        None,
        "a non-empty list of paths or globs",
        "Several test files of the same format, read in order.",
    ),
    param(
        "input.test.format",
        String,
        None,
        "as `input.format`",
        "File format of the test files; inferred from the extension when omitted.",
    ),
    param(
        "input.test.separator",
        String,
        None,
        "as `input.separator`",
        "Field separator of text test files.",
    ),
    param(
        "input.test.header",
        Boolean,
        None,
        "`true` or `false`",
        "Whether the test files' first line holds column names. Default: true for csv and tsv, false for text.",
    ),
    param(
        "input.columns",
        Section,
        None,
        "",
        "Which columns hold what. A name, or a 0-based position for header-less files.",
    ),
    param(
        "input.columns.user",
        Column,
        Some("0"),
        "a column name or a 0-based position",
        "User id column (integers or strings).",
    ),
    param(
        "input.columns.item",
        Column,
        Some("1"),
        "a column name or a 0-based position",
        "Item id column (integers or strings).",
    ),
    param(
        "input.columns.rating",
        Column,
        Some("2"),
        "a column name or a 0-based position",
        "Rating column (numbers).",
    ),
    param(
        "input.columns.label",
        Column,
        Some("\"label\""),
        "a column name or a 0-based position",
        "Tree models: the label column. Classification labels are strings (indexed like Spark's StringIndexer: most frequent first, ties by name) or class indices 0, 1, ...; regression labels are numbers.",
    ),
    param(
        "input.columns.features",
        StringList,
        None,
        "a list of column names",
        "Tree models: the feature columns. Default: every column except the label (and `validation_column`).",
    ),
    param(
        "input.columns.weight",
        Column,
        None,
        "a column name or a 0-based position; finite numbers at least 0",
        "Tree models: a sample weight per row (Spark's `weightCol`). Impurity, Newton sums, `min_instances_per_node`, the starting score and the test metrics count each row by its weight; a weight of 0 leaves the row out. Default: every row weighs 1.",
    ),
    param(
        "input.columns.categorical",
        StringList,
        Some("[]"),
        "a list of feature column names",
        "Tree models: columns to treat as categorical even though they hold numbers. String columns are always categorical.",
    ),
    param(
        "input.synthetic",
        Section,
        None,
        "",
        "A built-in generated data set instead of files, deterministic for its seed.",
    ),
    param(
        "input.synthetic.kind",
        String,
        None,
        "`ratings`, `interactions`, `events`, `classification`, `regression`",
        "What to generate: ratings from a low-rank model with power-law user activity and item popularity; implicit-feedback interaction counts where each user mostly picks items of one of `rank` taste groups; the raw event log behind such counts (columns `user`, `item`, `event` = view/cart/purchase, `timestamp` in Unix seconds over 90 days from 2026-09-01), for `input.sql` or `[[input.steps]]` to aggregate; or a numeric table.",
    ),
    param(
        "input.synthetic.users",
        Integer,
        Some("1000"),
        "1 to 2^31",
        "Ratings: number of users.",
    ),
    param(
        "input.synthetic.items",
        Integer,
        Some("500"),
        "1 to 2^31",
        "Ratings: number of items.",
    ),
    param(
        "input.synthetic.ratings",
        Integer,
        Some("20000"),
        "1 to half of users x items, at most 2^32 - 1",
        "Ratings, interactions and events: number of distinct (user, item) entries.",
    ),
    param(
        "input.synthetic.rank",
        Integer,
        Some("5"),
        "1 to 256",
        "Ratings: rank of the hidden model; ratings are 3 + user . item + noise, so ALS needs `rank + 1` factors to reach the noise level. Interactions: number of taste groups.",
    ),
    param(
        "input.synthetic.noise",
        Float,
        Some("0.1"),
        "0 to 100",
        "Standard deviation of the Gaussian noise added to each rating or regression label.",
    ),
    param(
        "input.synthetic.rows",
        Integer,
        Some("10000"),
        "1 to 2^32 - 1",
        "Tables: number of rows.",
    ),
    param(
        "input.synthetic.features",
        Integer,
        Some("10"),
        "1 to 10000",
        "Tables: number of numeric feature columns.",
    ),
    param(
        "input.synthetic.classes",
        Integer,
        Some("2"),
        "2 to 1000",
        "Classification tables: number of classes.",
    ),
    param(
        "input.synthetic.seed",
        Integer,
        None,
        "an integer from 0 to 2^63-1",
        "Seed of the generator; defaults to `job.seed`.",
    ),
    param(
        "split",
        Section,
        None,
        "",
        "How rows are held out for evaluation.",
    ),
    param(
        "split.test_fraction",
        Float,
        Some("0.2"),
        "0 to less than 1 (0 trains on everything and skips evaluation)",
        "Fraction of rows held out as the test split, chosen by the seed (`split.method = \"random\"`; the time methods ignore it).",
    ),
    param(
        "split.method",
        String,
        Some("\"random\""),
        "`random`, `time`, `per_user_last`",
        "`random`: each row goes to test with probability `test_fraction`, by the seed. `time`: rows at or after a time in `split.column` go to test (`cutoff`, or the last `fraction` of the time range; ALS and tree jobs). `per_user_last`: each user's last `n` rows by `split.column` go to test (ALS jobs; a user always keeps one row for training; equal times keep input order).",
    ),
    param(
        "split.column",
        Column,
        None,
        "a column name or 0-based position",
        "The time column of `time` and `per_user_last`: a date or datetime column, numbers (Unix seconds, or any unit the cutoff uses), or text dates (`2026-11-01`, `2026-11-01 12:00:00`, RFC 3339). Tree jobs keep it out of the features.",
    ),
    param(
        "split.cutoff",
        StringOrNumber,
        None,
        "a date or time (UTC unless it has an offset), or a number in the column's unit",
        "`time`: rows at or after it go to test. Dates compare against numeric columns as Unix seconds.",
    ),
    param(
        "split.fraction",
        Float,
        None,
        "0 to 0.99",
        "`time`: the last fraction of the time range (earliest to latest row) goes to test; instead of `cutoff`.",
    ),
    param(
        "split.n",
        Integer,
        None,
        "1 to 1000000",
        "`per_user_last`: how many of each user's last rows go to test (default 1).",
    ),
    param("eval", Section, None, "", "How the test split is scored."),
    param(
        "eval.k",
        Integer,
        Some("10"),
        "1 to 1000",
        "Cut-off of the ranking metrics (precision@k, recall@k, NDCG@k, MAP@k) reported for implicit-feedback models.",
    ),
    param(
        "model",
        Section,
        None,
        "",
        "The algorithm and its parameters (Spark MLlib names).",
    ),
    param(
        "model.algorithm",
        String,
        Some("\"als\""),
        "`als`, `random_forest`, `gbt`",
        "Which learner to run: `als` (alternating least squares matrix factorization), `random_forest` or `gbt` (gradient-boosted trees).",
    ),
    param(
        "model.rank",
        Integer,
        Some("10"),
        "1 to 1024",
        "ALS: number of latent factors.",
    ),
    param(
        "model.max_iter",
        Integer,
        None,
        "1 to 10000",
        "ALS: number of sweeps, each solving all item factors, then all user factors (default 10). GBT: number of trees (default 20). As Spark.",
    ),
    param(
        "model.reg_param",
        Float,
        Some("0.1"),
        "0 to 1e6",
        "ALS: L2 regularization, scaled by each row's rating count (ALS-WR, as Spark).",
    ),
    param(
        "model.implicit_prefs",
        Boolean,
        Some("false"),
        "`true` or `false`",
        "ALS: treat ratings as implicit feedback (counts, clicks): confidence `1 + alpha * |r|`, preference 1 for `r > 0` else 0 (Spark's conventions).",
    ),
    param(
        "model.alpha",
        Float,
        Some("1.0"),
        "0 to 1e6",
        "ALS, implicit feedback: confidence scale. Note `implicit` (the Python library) uses confidence `alpha * r`; Spark and submit use `1 + alpha * |r|`.",
    ),
    param(
        "model.solver",
        String,
        None,
        "`cholesky`, `cg`",
        "ALS: how each row's least squares problem is solved: exactly by Cholesky, or by conjugate gradient warm-started from the previous factors. Default: `cg` with `implicit_prefs`, else `cholesky`.",
    ),
    param(
        "model.cg_steps",
        Integer,
        Some("3"),
        "1 to 100",
        "ALS with `solver = \"cg\"`: conjugate gradient steps per row and half-sweep.",
    ),
    param(
        "model.nonnegative",
        Boolean,
        Some("false"),
        "`true` or `false`",
        "ALS: constrain factors to be non-negative (a non-negative least squares solve per row, as Spark; `solver` does not apply).",
    ),
    param(
        "model.cold_start_strategy",
        String,
        Some("\"nan\""),
        "`nan`, `drop`",
        "Test rows whose user or item was not in training: counted as missing predictions (`nan`, Spark's default) or dropped (`drop`). Either way metrics use only predicted rows and report the count; Spark's `nan` makes RMSE NaN instead.",
    ),
    param(
        "model.task",
        String,
        Some("\"classification\""),
        "`classification`, `regression`",
        "Tree models: predict a class (Spark's *Classifier) or a number (*Regressor).",
    ),
    param(
        "model.num_trees",
        Integer,
        Some("20"),
        "1 to 10000",
        "Random forest: number of trees.",
    ),
    param(
        "model.max_depth",
        Integer,
        Some("5"),
        "0 to 30",
        "Tree models: maximum depth (0 is a single leaf, 1 one split).",
    ),
    param(
        "model.max_bins",
        Integer,
        Some("32"),
        "2 to 65535",
        "Tree models: maximum number of bins per numeric feature (quantiles of a 200,000-row sample). A categorical feature always has one bin per category, however many (Spark instead requires max_bins to be at least the largest category count, and the Spark engine keeps that rule). Up to 256 bins are stored in one byte per value.",
    ),
    param(
        "model.min_instances_per_node",
        Integer,
        Some("1"),
        "1 to 2^31",
        "Tree models: a split is kept only if each child has at least this many (weighted) rows.",
    ),
    param(
        "model.min_info_gain",
        Float,
        Some("0.0"),
        "0 or more",
        "Tree models: a split is kept only if it gains at least this much (Spark's information gain: impurity decrease weighted by child size; for GBT the Newton gain per row, which equals it for squared loss).",
    ),
    param(
        "model.impurity",
        String,
        None,
        "`gini`, `entropy` (classification), `variance` (regression)",
        "Random forest: split criterion. Default: `gini` for classification, `variance` for regression. GBT always fits gradients by Newton gain.",
    ),
    param(
        "model.subsampling_rate",
        Float,
        Some("1.0"),
        "greater than 0 and at most 1",
        "Tree models: fraction of rows each tree sees (random forest: the Poisson bootstrap mean; GBT: a Bernoulli sample per iteration).",
    ),
    param(
        "model.feature_subset_strategy",
        StringOrNumber,
        Some("\"auto\""),
        "`auto`, `all`, `onethird`, `sqrt`, `log2`, a fraction in (0, 1], or a whole number of features",
        "Tree models: features considered at each node. `auto`: all for GBT and single trees, `sqrt` for forest classification, `onethird` for forest regression (Spark's rule).",
    ),
    param(
        "model.bootstrap",
        Boolean,
        Some("true"),
        "`true` or `false`",
        "Random forest: sample rows with replacement (when there is more than one tree, as Spark).",
    ),
    param(
        "model.step_size",
        Float,
        Some("0.1"),
        "greater than 0 and at most 1",
        "GBT: learning rate; each tree's Newton step is scaled by it.",
    ),
    param(
        "model.loss_type",
        String,
        None,
        "`logistic` (classification), `squared`, `absolute` (regression)",
        "GBT: the loss minimised. Default: `logistic` for classification, `squared` for regression.",
    ),
    param(
        "model.validation_fraction",
        Float,
        Some("0.0"),
        "0 to less than 1 (0 turns early stopping off)",
        "GBT: hold out this fraction of the training rows (chosen by the seed) and stop adding trees when the validation loss stops improving (Spark's `validation_tol` rule); the best iteration is kept.",
    ),
    param(
        "model.validation_column",
        Column,
        None,
        "a column of booleans (or 0/1)",
        "GBT: rows where this column is true form the validation part instead (Spark's `validationIndicatorCol`). The column is not a feature.",
    ),
    param(
        "model.validation_tol",
        Float,
        Some("0.01"),
        "0 to 1",
        "GBT: stop when validation loss improves by less than `validation_tol * max(loss, 0.01)` (Spark's rule).",
    ),
    param(
        "model.init_from",
        String,
        None,
        "a published version (`.../latest` or `.../vN`), relative to the job file",
        "Warm start. GBT keeps the base version's trees and grows `max_iter` more on the scores they give (LightGBM's `input_model`); the base must be gbt with the same features, task, classes and loss. ALS starts from the base version's factors for the users and items it knows (the rest start as in a fresh fit) and runs `max_iter` sweeps; the rank must match. Not for random forests or the Spark engine.",
    ),
    param(
        "model.monotone_constraints",
        Section,
        None,
        "feature names, each `1`, `-1` or `0`",
        "Trees: `{ age = 1, discount = -1 }` keeps the model's output from ever decreasing as `age` grows and from ever increasing as `discount` grows, other features held (LightGBM's `monotone_constraints`, its \"basic\" method): a split on a constrained feature whose outputs go the wrong way is not taken, and the midpoint of its two outputs bounds every leaf below each side. The output is the raw score for GBT (each class's score for multiclass), the value for regression forests and P(class 1) for binary forests; numeric features only; not with `loss_type = \"absolute\"` (median leaves) or multiclass forests. Exported to LightGBM's parameters; refused by the Spark engine (Spark has no such constraint).",
    ),
    param(
        "model.handle_invalid",
        String,
        Some("\"error\""),
        "`error`, `skip`, `keep`",
        "Tree models, predict jobs: a category the model never saw stops the job naming the row (`error`), drops the row (`skip`), or goes right at every split on that feature (`keep`). As Spark's StringIndexer.",
    ),
    param(
        "model.max_categories",
        Integer,
        Some("0"),
        "0 to 65535",
        "Tree models: numeric feature columns with at most this many distinct values are treated as categorical (Spark's VectorIndexer `maxCategories`); 0 turns this off.",
    ),
    param(
        "model.from",
        String,
        None,
        "a version directory or a `latest` link; relative to the file that sets it",
        "Recommend and predict jobs: the published model version to use, e.g. `../models/quickstart/latest`.",
    ),
    param(
        "recommend",
        Section,
        None,
        "",
        "Recommend jobs: what to write.",
    ),
    param(
        "recommend.k",
        Integer,
        Some("10"),
        "1 to 10000",
        "Length of each list.",
    ),
    param(
        "recommend.target",
        String,
        Some("\"users\""),
        "`users`, `items`, `similar_items`",
        "`users`: the top k items for each user; `items`: the top k users for each item; `similar_items`: the k items whose factors have the highest cosine similarity to each item's (the item itself left out), as `implicit`'s `similar_items`. With `[input]`, only the ids in its user column (item column for the other two).",
    ),
    param(
        "recommend.users_from",
        String,
        None,
        "a CSV, TSV, Parquet, NDJSON or IPC file (format from the extension), relative to the job file",
        "Fold-in (`implicit`'s `recalculate_user`): the (user, item, rating) rows of this file, columns as `input.columns` names them, give each of their users factors solved against the model's fixed item factors with the model's own loss and `reg_param` (implicit confidence for implicit models), and those users get lists from these factors, whether the model knew them or not. Items the model does not know are left out of the solve and counted. `filter_seen` also leaves out the file's items. Users of the file are recommended for in addition to `[input]`'s (or instead of all, when there is no `[input]`).",
    ),
    param(
        "recommend.filter_seen",
        Boolean,
        Some("true"),
        "`true` or `false`",
        "Leave out items the user had in training (kept with the model for this). Spark has no such filter.",
    ),
    param(
        "recommend.cold_start",
        String,
        Some("\"popular\""),
        "`popular`, `drop`",
        "Ids in the input file that the model does not know: give them the most popular items (users only; items get nothing) or skip them. Either way the summary counts them.",
    ),
    param(
        "predict",
        Section,
        None,
        "",
        "Predict jobs: what to write besides the scores.",
    ),
    param(
        "predict.keep",
        StringList,
        Some("[]"),
        "a list of column names of the input file",
        "Columns copied from the input to the output unchanged (ids to join the scores back on), before the score columns; rows dropped by `handle_invalid = \"skip\"` are dropped here too.",
    ),
    param(
        "predict.contributions",
        Boolean,
        Some("false"),
        "`true`, `false`",
        "Tree models: also write each row's exact feature contributions (TreeSHAP, LightGBM's `pred_contrib`): `contrib_<feature>` columns and `contrib_bias`, summing to the raw score (log-odds of the second class for binary boosting, the probability of the second class for a binary forest, the value for regression). Multiclass models write one set per class, `contrib_<class>_<feature>` and `contrib_<class>_bias`, summing to that class's score (boosting) or probability (forest).",
    ),
    param(
        "tuning",
        Section,
        None,
        "",
        "Hyperparameter search over `[tuning.grid]`, as Spark's CrossValidator and TrainValidationSplit: the best grid point is refitted on the whole training split, evaluated on the test split and published.",
    ),
    param(
        "tuning.method",
        String,
        Some("\"cross_validation\""),
        "`cross_validation`, `train_validation_split`",
        "`cross_validation`: the training split is partitioned into `folds` folds (by the seed); each grid point is trained on all folds but one and scored on that one, for every fold. `train_validation_split`: one split of the training rows by `train_ratio`.",
    ),
    param(
        "tuning.folds",
        Integer,
        Some("3"),
        "2 to 20",
        "Cross-validation: number of folds.",
    ),
    param(
        "tuning.train_ratio",
        Float,
        Some("0.75"),
        "greater than 0 and less than 1",
        "Train-validation split: share of the training rows each grid point is trained on.",
    ),
    param(
        "tuning.metric",
        String,
        None,
        "`rmse`, `mse`, `mae`, `r2`, `accuracy`, `f1`, `weighted_precision`, `weighted_recall`, `auc_roc`, `auc_pr`, `log_loss`, `precision_at_k`, `recall_at_k`, `ndcg_at_k`, `map_at_k`",
        "What the grid points are compared on (rmse, mse, mae and log_loss lower is better, the rest higher). Default: `rmse` for regression and explicit ALS, `ndcg_at_k` when a grid point uses implicit feedback, `auc_roc` for binary classification (`f1` for more classes).",
    ),
    param(
        "tuning.parallelism",
        Integer,
        Some("1"),
        "1 to 64",
        "Grid points trained at once, all within the job's N-thread pool (Spark's `parallelism`).",
    ),
    param(
        "tuning.max_models",
        Integer,
        None,
        "1 to 100000",
        "Evaluate at most this many grid points (in grid order); the best of those wins.",
    ),
    param(
        "tuning.max_seconds",
        Float,
        None,
        "greater than 0",
        "Time budget for the search: no grid point starts after it is spent; the best so far wins and the summary says the budget was hit.",
    ),
    param(
        "tuning.grid",
        Section,
        None,
        "",
        "Model parameters to search: `rank = [5, 10, 20]`, `reg_param = [0.01, 0.1]`, `implicit_prefs = [true, false]`, `max_depth = [4, 6, 8]`, ... Each key is a `[model]` parameter name and each value a non-empty list of values that parameter accepts; every combination is a grid point.",
    ),
    param("output", Section, None, "", "Where results go."),
    param(
        "output.dir",
        String,
        Some("\"models\""),
        "a directory path; relative to the file that sets it",
        "Train jobs: versions go to `<dir>/<job.name>/v<N>/`, with `latest` pointing at the newest.",
    ),
    param(
        "output.promote",
        String,
        Some("\"always\""),
        "`always`, `if_better`",
        "Train jobs: whether `latest` moves to the new version. `if_better`: only when `promote_metric` beats the current latest's by at least `min_improvement`; the new version is kept either way, and the decision with both figures is printed and written to the manifest.",
    ),
    param(
        "output.promote_metric",
        String,
        None,
        "an evaluator name (see `tuning.metric`)",
        "The metric `if_better` compares (its direction is known). Default: `rmse`, else `ndcg_at_k`, `auc_roc`, `f1`, whichever the model reports first.",
    ),
    param(
        "output.min_improvement",
        Float,
        Some("0.0"),
        "0 or more",
        "How much better the new version must be for `if_better` to promote it.",
    ),
    param(
        "output.skip_unchanged",
        Boolean,
        Some("false"),
        "`true` or `false`",
        "Train jobs: when the inputs (by content hash) and the resolved job are the same as those of the current latest, publish nothing and exit 0; the summary says so (for nightly retrains on data that did not change).",
    ),
    param(
        "output.path",
        String,
        None,
        "a file path ending in .csv or .parquet; relative to the file that sets it",
        "Recommend and predict jobs: the file to write (replaced atomically).",
    ),
    param(
        "output.format",
        String,
        None,
        "`csv`, `parquet`",
        "Recommend and predict jobs: output format; inferred from the extension of `output.path` when omitted.",
    ),
];

pub fn find(key: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|param| param.key == key)
}

/// The parent section of a dotted key (`model.rank` -> `model`, `job` -> ``).
pub fn parent(key: &str) -> &str {
    key.rfind('.').map_or("", |at| &key[..at])
}

/// Known keys close to `unknown` (same section first, then the same leaf name in other sections).
pub fn suggestions(unknown: &str) -> Vec<&'static str> {
    suggestions_in(PARAMS, unknown)
}

/// [`suggestions`] over another registry (`config::serve`'s).
pub(crate) fn suggestions_in(registry: &'static [Param], unknown: &str) -> Vec<&'static str> {
    let section = parent(unknown);
    let leaf = &unknown[section.len() + usize::from(!section.is_empty())..];
    let mut scored: Vec<(f64, &'static str)> = registry
        .iter()
        .filter_map(|param| {
            let candidate_leaf =
                &param.key[parent(param.key).len() + usize::from(!parent(param.key).is_empty())..];
            if parent(param.key) == section {
                let score = strsim::jaro_winkler(leaf, candidate_leaf);
                (score >= 0.8).then_some((score, param.key))
            } else if candidate_leaf == leaf {
                // Prefer the shallower section (`model.rank` before `input.synthetic.rank`).
                let depth = param.key.matches('.').count() as f64;
                Some((0.9 - 0.01 * depth, param.key))
            } else {
                None
            }
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, key)| key).collect()
}

/// The README's parameter table, generated from [`PARAMS`].
pub fn markdown_table() -> std::string::String {
    table_of(PARAMS)
}

/// A Markdown table of a parameter registry (sections left out).
pub(crate) fn table_of(params: &[Param]) -> std::string::String {
    let mut out = std::string::String::from(
        "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n",
    );
    for param in params.iter().filter(|param| param.kind != Section) {
        let default = param
            .default
            .map_or_else(|| "—".to_owned(), |literal| format!("`{literal}`"));
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            param.key,
            param.kind.describe(),
            default,
            param.allowed.replace('|', "\\|"),
            param.doc.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_section_and_parses_its_default() {
        for param in PARAMS {
            let section = parent(param.key);
            if !section.is_empty() {
                assert_eq!(
                    find(section).map(|p| p.kind),
                    Some(Section),
                    "{}",
                    param.key
                );
            }
            if let Some(literal) = param.default {
                toml::from_str::<toml::Table>(&format!("v = {literal}"))
                    .unwrap_or_else(|e| panic!("{}: {e}", param.key));
            }
        }
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(suggestions("model.rnk"), vec!["model.rank"]);
        assert_eq!(suggestions("job.rank").first(), Some(&"model.rank"));
        assert!(suggestions("model.zzzzzz").is_empty());
    }
}
