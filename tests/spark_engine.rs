//! `--engine spark`: the same job file through the real spark-submit (pyspark from PyPI) and
//! natively, on the same split. The Spark runs need spark-submit on PATH or under SPARK_HOME
//! and Java 17, so they are `#[ignore]`d: the test runner reports them as skipped, and `.ci/run`
//! (which installs pyspark) runs them with `--include-ignored` when Spark can run. The refusals
//! below need no Spark at all.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const NEEDS_SPARK: &str = "needs spark-submit (SPARK_HOME or PATH) and Java 17";

/// spark-submit's directory; an ignored test asked to run without Spark fails, saying why.
fn spark_bin() -> PathBuf {
    let candidates = std::env::var_os("SPARK_HOME")
        .map(|home| PathBuf::from(home).join("bin"))
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>()),
        );
    let found = candidates
        .into_iter()
        .find(|dir| dir.join("spark-submit").is_file());
    let java = std::process::Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success());
    match found {
        Some(found) if java => found,
        _ => panic!(
            "{NEEDS_SPARK}: `pip install pyspark` (as .ci/run does) or unset --include-ignored"
        ),
    }
}

fn metrics(version: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(version.join("metrics.json")).unwrap()).unwrap()
}

fn manifest(version: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(version.join("manifest.json")).unwrap()).unwrap()
}

fn files(version: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(version)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Headline metric names: the top-level keys that hold numbers or null (not sections).
fn metric_names(metrics: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, value)| value.is_number() || value.is_null())
        .map(|(name, _)| name.clone())
        .filter(|name| !name.starts_with("peak_") && name != "threads")
        .collect();
    names.sort();
    names
}

/// Asserts that both engines report the same `counts` entries.
fn same_counts(native: &serde_json::Value, spark: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        assert_eq!(
            native["counts"][key], spark["counts"][key],
            "{key}: native {} spark {}",
            native["counts"], spark["counts"]
        );
    }
}

/// Runs an ALS job on both engines and asserts equal row, rating, user and item counts and
/// the same number of inputs in both manifests.
fn same_als_run(dir: &Path, job: &str) {
    let (native, spark) = run_both(dir, job);
    same_counts(
        &metrics(&native),
        &metrics(&spark),
        &[
            "rows_read",
            "ratings",
            "train_ratings",
            "test_ratings",
            "users",
            "items",
        ],
    );
    assert_eq!(
        manifest(&native)["inputs"].as_array().unwrap().len(),
        manifest(&spark)["inputs"].as_array().unwrap().len(),
        "{job}"
    );
}

fn run_both(dir: &Path, job: &str) -> (PathBuf, PathBuf) {
    let native = run(submit(dir).args(["--json", "--quiet", job]));
    assert!(native.status.success(), "{}", stderr(&native));
    let native_dir = PathBuf::from(json(&native)["version_dir"].as_str().unwrap());
    let spark = run(submit(dir).args(["--json", "--quiet", "--engine", "spark", job]));
    assert!(
        spark.status.success(),
        "spark engine failed: {}",
        stderr(&spark)
    );
    let summary = json(&spark);
    let spark_dir = PathBuf::from(summary["version_dir"].as_str().unwrap());
    (dir.join(native_dir), dir.join(spark_dir))
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn als_on_spark_matches_the_native_layout_split_and_metrics() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    // Users with ids as text, a rank-2 pattern plus noise.
    let mut csv = String::from("user,item,rating\n");
    for user in 0..300u64 {
        for step in 0..25u64 {
            let item = (user * 13 + step * 7) % 120;
            let signal = ((user % 7) as f64 - 3.0) * ((item % 5) as f64 - 2.0) / 4.0
                + ((user % 3) as f64) * ((item % 4) as f64) / 3.0;
            let noise = ((user * 31 + item * 17) % 11) as f64 / 22.0 - 0.25;
            csv.push_str(&format!("u{user},{item},{:.3}\n", 3.0 + signal + noise));
        }
    }
    write(dir.path(), "ratings.csv", &csv);
    write(
        dir.path(),
        "als.toml",
        "[job]\nname = \"als\"\nmaster = \"local[2]\"\n\n[input]\npath = \"ratings.csv\"\n\n[split]\ntest_fraction = 0.2\n\n[model]\nrank = 6\nmax_iter = 10\nreg_param = 0.05\ncold_start_strategy = \"drop\"\n",
    );
    let (native, spark) = run_both(dir.path(), "als.toml");

    // The same files, plus Spark's model directory.
    let mut expected = files(&native);
    expected.push("spark_model".to_owned());
    expected.sort();
    assert_eq!(files(&spark), expected);
    let spark_manifest = manifest(&spark);
    assert_eq!(spark_manifest["engine"], "spark");
    assert!(spark_manifest["spark"]["version"].as_str().is_some());
    assert!(
        spark_manifest["spark"]["command"][0]
            .as_str()
            .unwrap()
            .ends_with("spark-submit")
    );
    assert_eq!(spark_manifest["spark"]["params"]["regParam"], 0.05);

    // The same split (the native hash computed in Spark SQL) and the same metric names.
    let (native_metrics, spark_metrics) = (metrics(&native), metrics(&spark));
    same_counts(
        &native_metrics,
        &spark_metrics,
        &["ratings", "train_ratings", "test_ratings", "users", "items"],
    );
    assert_eq!(metric_names(&native_metrics), metric_names(&spark_metrics));
    // Different random initialisation, same model family: test RMSE within 0.05.
    let (native_rmse, spark_rmse) = (
        native_metrics["rmse"].as_f64().unwrap(),
        spark_metrics["rmse"].as_f64().unwrap(),
    );
    assert!(
        (native_rmse - spark_rmse).abs() < 0.05,
        "native {native_rmse} vs spark {spark_rmse}"
    );
    // Our evaluator on Spark's factors agrees with Spark's own RegressionEvaluator.
    let spark_own = spark_manifest["spark"]["evaluator"]["rmse"]
        .as_f64()
        .unwrap();
    assert!(
        (spark_own - spark_rmse).abs() < 1e-4,
        "{spark_own} vs {spark_rmse}"
    );

    // A recommendation job reads the Spark-produced factors.
    write(
        dir.path(),
        "recommend.toml",
        &format!(
            "[job]\nname = \"rec\"\nkind = \"recommend\"\n\n[model]\nfrom = \"{}\"\n\n[recommend]\nk = 5\n\n[output]\npath = \"recs.csv\"\n",
            spark.display()
        ),
    );
    let output = run(submit(dir.path()).args(["--quiet", "recommend.toml"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let recommendations = std::fs::read_to_string(dir.path().join("recs.csv")).unwrap();
    assert_eq!(recommendations.lines().count(), 1 + 300 * 5);
    assert!(recommendations.lines().nth(1).unwrap().starts_with('u'));
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn gbt_on_spark_reports_the_native_metric_names_on_the_same_split() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("colour,x,y,label\n");
    for row in 0..3000u64 {
        let x = ((row * 7919) % 1000) as f64 / 100.0 - 5.0;
        let y = ((row * 104_729) % 997) as f64 / 99.7 - 5.0;
        let colour = ["red", "green", "blue"][(row % 3) as usize];
        let bonus = if colour == "red" { 1.5 } else { 0.0 };
        let label = u8::from(x + 0.5 * y + bonus + ((row % 13) as f64 / 6.5 - 1.0) > 0.0);
        csv.push_str(&format!("{colour},{x:.3},{y:.3},{label}\n"));
    }
    write(dir.path(), "table.csv", &csv);
    write(
        dir.path(),
        "gbt.toml",
        "[job]\nname = \"gbt\"\nmaster = \"local[2]\"\n\n[input]\npath = \"table.csv\"\n\n[input.columns]\nlabel = \"label\"\n\n[split]\ntest_fraction = 0.25\n\n[model]\nalgorithm = \"gbt\"\ntask = \"classification\"\nmax_iter = 20\nmax_depth = 3\n",
    );
    let (native, spark) = run_both(dir.path(), "gbt.toml");
    assert!(spark.join("spark_model").is_dir());
    for name in ["manifest.json", "metrics.json", "job.resolved.toml"] {
        assert!(spark.join(name).is_file(), "{name}");
    }
    let (native_metrics, spark_metrics) = (metrics(&native), metrics(&spark));
    assert_eq!(
        native_metrics["counts"]["test_rows"],
        spark_metrics["counts"]["test_rows"]
    );
    assert_eq!(metric_names(&native_metrics), metric_names(&spark_metrics));
    let (native_auc, spark_auc) = (
        native_metrics["auc_roc"].as_f64().unwrap(),
        spark_metrics["auc_roc"].as_f64().unwrap(),
    );
    assert!(
        (native_auc - spark_auc).abs() < 0.02,
        "native {native_auc} vs spark {spark_auc}"
    );
    let spark_own = manifest(&spark)["spark"]["evaluator"]["auc_roc"]
        .as_f64()
        .unwrap();
    assert!(
        (spark_own - spark_auc).abs() < 1e-3,
        "{spark_own} vs {spark_auc}"
    );

    // The registry shows and compares versions of both engines.
    let output = run(submit(dir.path())
        .args(["models", "show", "--json"])
        .arg(&spark));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["manifest"]["engine"], "spark");
    let output = run(submit(dir.path())
        .args(["models", "diff"])
        .arg(&native)
        .arg(&spark));
    assert!(output.status.success(), "{}", stderr(&output));
    // String features: the trees are not converted, and a predict job says why it cannot
    // score the version.
    assert_eq!(spark_metrics["trees"]["converted"], false);
    assert!(!files(&spark).contains(&"model.trees.json".to_owned()));
    write(
        dir.path(),
        "predict.toml",
        &format!(
            "[job]\nname = \"p\"\nkind = \"predict\"\n\n[model]\nfrom = \"{}\"\n\n[input]\npath = \"table.csv\"\n\n[output]\npath = \"scores.csv\"\n",
            spark.display()
        ),
    );
    let output = run(submit(dir.path()).arg("predict.toml"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Spark engine") && stderr(&output).contains("categorical"),
        "{}",
        stderr(&output)
    );
}

/// Spark's own probabilities for the rows of `table` (columns x, y), from the saved models.
const SPARK_SCORER: &str = r#"
import sys
from pyspark.sql import SparkSession
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.classification import GBTClassificationModel, RandomForestClassificationModel
spark = SparkSession.builder.getOrCreate()
frame = spark.read.csv(sys.argv[1], header=True, inferSchema=True)
frame = VectorAssembler(inputCols=["x", "y"], outputCol="__features").transform(frame)
for kind, model_dir, out in zip(sys.argv[2::3], sys.argv[3::3], sys.argv[4::3]):
    model = {"gbt": GBTClassificationModel, "rf": RandomForestClassificationModel}[kind].load(model_dir)
    rows = model.transform(frame).select("probability").collect()
    with open(out, "w") as handle:
        handle.write("\n".join(repr(float(row[0][1])) for row in rows))
spark.stop()
"#;

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn predict_jobs_score_spark_trees_as_spark_does() {
    let bin = spark_bin();
    let dir = tempfile::tempdir().unwrap();
    // Values on a 1/64 grid are exact in f32, so both sides compare the same numbers.
    let mut csv = String::from("x,y,label\n");
    for row in 0..2000u64 {
        let x = ((row * 7919) % 640) as f64 / 64.0 - 5.0;
        let y = ((row * 104_729) % 631) as f64 / 64.0 - 5.0;
        let label = u8::from(x + 0.5 * y + ((row % 13) as f64 / 6.5 - 1.0) > 0.0);
        csv.push_str(&format!("{x},{y},{label}\n"));
    }
    write(dir.path(), "table.csv", &csv);
    let mut scored = Vec::new();
    for (kind, model) in [
        ("gbt", "algorithm = \"gbt\"\nmax_iter = 15\nmax_depth = 3"),
        (
            "rf",
            "algorithm = \"random_forest\"\nnum_trees = 12\nmax_depth = 4",
        ),
    ] {
        write(
            dir.path(),
            &format!("{kind}.toml"),
            &format!(
                "[job]\nname = \"{kind}\"\nmaster = \"local[2]\"\n\n[input]\npath = \"table.csv\"\n\n[input.columns]\nlabel = \"label\"\n\n[model]\n{model}\ntask = \"classification\"\n"
            ),
        );
        let output = run(submit(dir.path()).args([
            "--json",
            "--quiet",
            "--engine",
            "spark",
            &format!("{kind}.toml"),
        ]));
        assert!(output.status.success(), "{}", stderr(&output));
        let version = dir
            .path()
            .join(json(&output)["version_dir"].as_str().unwrap());
        assert_eq!(metrics(&version)["trees"]["converted"], true);
        assert!(files(&version).contains(&"model.trees.json".to_owned()));
        write(
            dir.path(),
            &format!("predict-{kind}.toml"),
            &format!(
                "[job]\nname = \"p\"\nkind = \"predict\"\n\n[model]\nfrom = \"{}\"\n\n[input]\npath = \"table.csv\"\n\n[output]\npath = \"scores-{kind}.csv\"\n",
                version.display()
            ),
        );
        let output = run(submit(dir.path()).arg(format!("predict-{kind}.toml")));
        assert!(output.status.success(), "{}", stderr(&output));
        scored.push((kind, version.join("spark_model")));
    }
    let scorer = write(dir.path(), "score.py", SPARK_SCORER);
    let mut command = std::process::Command::new(bin.join("spark-submit"));
    // pyspark.ml needs numpy: use the Python of the venv spark-submit comes from, as submit does.
    if bin.join("python").is_file() {
        command.env("PYSPARK_PYTHON", bin.join("python"));
    }
    command
        .args(["--master", "local[1]"])
        .arg(&scorer)
        .arg(dir.path().join("table.csv"));
    for (kind, model_dir) in &scored {
        command
            .arg(kind)
            .arg(model_dir)
            .arg(dir.path().join(format!("spark-{kind}.txt")));
    }
    let output = run(&mut command);
    let problems: Vec<String> = stderr(&output)
        .lines()
        .filter(|line| !line.contains(" INFO ") && !line.contains(" WARN "))
        .map(str::to_owned)
        .collect();
    assert!(output.status.success(), "{}", problems.join("\n"));
    for (kind, _) in &scored {
        let ours = std::fs::read_to_string(dir.path().join(format!("scores-{kind}.csv"))).unwrap();
        let header: Vec<&str> = ours.lines().next().unwrap().split(',').collect();
        let column = header
            .iter()
            .position(|name| *name == "probability_1")
            .unwrap();
        let ours: Vec<f64> = ours
            .lines()
            .skip(1)
            .map(|line| line.split(',').nth(column).unwrap().parse().unwrap())
            .collect();
        let spark: Vec<f64> = std::fs::read_to_string(dir.path().join(format!("spark-{kind}.txt")))
            .unwrap()
            .lines()
            .map(|line| line.parse().unwrap())
            .collect();
        assert_eq!(ours.len(), 2000, "{kind}");
        assert_eq!(spark.len(), 2000, "{kind}");
        let worst = ours
            .iter()
            .zip(&spark)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst < 1e-9,
            "{kind}: largest probability difference {worst}"
        );
    }
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn a_failing_spark_application_publishes_nothing() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ratings.csv", &ratings_csv(40, true));
    // A rating that is not a number: Spark's reader takes it, the application refuses it.
    let mut bad = ratings_csv(40, true);
    bad.push_str("7,3,lots\n");
    write(dir.path(), "bad.csv", &bad);
    write(
        dir.path(),
        "bad.toml",
        "[job]\nname = \"bad\"\nmaster = \"local[2]\"\n\n[input]\npath = \"bad.csv\"\n\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n\n[model]\nrank = 3\n",
    );
    let output = run(submit(dir.path()).args(["--engine", "spark", "bad.toml"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("rating column") && message.contains("lots"),
        "{message}"
    );
    let job_dir = dir.path().join("models/bad");
    let left: Vec<String> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".spark" && name != ".lock" && name != ".last-version")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(job_dir.join(".spark/last-failure.log").is_file());
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn multiclass_boosting_and_wide_categoricals_are_refused_on_spark_and_run_natively() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x,y,label\n");
    for row in 0..300 {
        let (x, y) = ((row % 17) as f64 / 17.0, (row % 7) as f64 / 7.0);
        csv.push_str(&format!("{x:.3},{y:.3},{}\n", row % 3));
    }
    write(dir.path(), "three.csv", &csv);
    write(
        dir.path(),
        "three.toml",
        "[job]\nname = \"three\"\nmaster = \"local[2]\"\n[input]\npath = \"three.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 5\n",
    );
    let output = run(submit(dir.path()).args(["--engine", "spark", "three.toml"]));
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("3 classes") && message.contains("--engine native"),
        "{message}"
    );
    assert!(!dir.path().join("models/three/v1").exists());
    let output = run(submit(dir.path()).arg("three.toml"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // A categorical feature with more categories than max_bins: Spark's rule, with our message.
    let mut csv = String::from("shop,label\n");
    for row in 0..200 {
        csv.push_str(&format!("s{},{}\n", row % 40, row % 2));
    }
    write(dir.path(), "shops.csv", &csv);
    write(
        dir.path(),
        "shops.toml",
        "[job]\nname = \"shops\"\nmaster = \"local[2]\"\n[input]\npath = \"shops.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 3\nmax_bins = 16\n",
    );
    let output = run(submit(dir.path()).args(["--engine", "spark", "shops.toml"]));
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("`shop` has 41 categories") && message.contains("max_bins = 16"),
        "{message}"
    );
    let output = run(submit(dir.path()).arg("shops.toml"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn refusals_need_no_spark() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ratings.csv", &ratings_csv(20, true));
    let job = |extra: &str| {
        format!(
            "[job]\nname = \"r\"\n{extra}\n[input]\npath = \"ratings.csv\"\n\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n"
        )
    };
    // A cluster master on the native engine says how to run it.
    write(
        dir.path(),
        "cluster.toml",
        &job("master = \"spark://head:7077\"\n"),
    );
    let output = run(submit(dir.path()).arg("cluster.toml"));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--engine spark --master spark://head:7077"),
        "{message}"
    );

    // A parameter without a Spark equivalent is refused, naming the key and its line.
    write(
        dir.path(),
        "cg.toml",
        &format!(
            "{}\n[model]\nimplicit_prefs = true\nsolver = \"cg\"\n",
            job("engine = \"spark\"\n")
        ),
    );
    let output = run(submit(dir.path()).arg("cg.toml"));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("model.solver") && message.contains("cg.toml:"),
        "{message}"
    );

    // No spark-submit anywhere: exit 2 and nothing published.
    write(dir.path(), "plain.toml", &job(""));
    let output = run(submit(dir.path())
        .args(["--engine", "spark", "plain.toml"])
        .env_remove("SPARK_HOME")
        .env("PATH", "/nonexistent"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("spark-submit not found"));
    assert!(!dir.path().join("models/r/v1").exists());

    // --dry-run prints the spark-submit command, passing --conf spark.* through.
    let output = run(submit(dir.path()).args([
        "--dry-run",
        "--json",
        "--engine",
        "spark",
        "--master",
        "yarn",
        "--conf",
        "spark.executor.cores=3",
        "plain.toml",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = json(&output);
    let command = summary["spark_submit"].as_str().unwrap();
    assert!(
        command.contains("--master yarn") && command.contains("--conf spark.executor.cores=3"),
        "{command}"
    );
    assert!(summary["spark_app"].as_str().unwrap().ends_with(".py"));
    assert!(!dir.path().join("models/r").exists());
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn a_preparation_runs_on_spark_with_the_native_rows_and_split() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    // An event log in two Hive-style day directories, and item metadata.
    event_log_days(dir.path());
    let mut items = String::from("item,genre,in_stock\n");
    for item in 0..90 {
        items.push_str(&format!(
            "{item},{},{}\n",
            ["a", "b", "c"][item % 3],
            item % 7 != 0
        ));
    }
    write(dir.path(), "items.csv", &items);
    let job = r#"[job]
name = "prepared"
master = "local[2]"
[input]
path = "events/dt=*/part-*.csv"
sql = """
SELECT e."user", e.item, e.event, e.dt, i.genre
FROM input e JOIN items i ON e.item = i.item
WHERE i.in_stock
"""
[input.tables.items]
path = "items.csv"
[[input.steps]]
filter = "event <> 'cart'"
[[input.steps]]
with_columns = { weight = "CASE WHEN event = 'buy' THEN 3.0 ELSE 1.0 END" }
[[input.steps]]
group_by = ["user", "item"]
agg = { rating = "sum(weight)", days = "count(DISTINCT dt)" }
[[input.steps]]
sample = 0.9
seed = 5
[input.columns]
user = "user"
item = "item"
rating = "rating"
[split]
test_fraction = 0.25
[model]
rank = 4
max_iter = 5
implicit_prefs = true
"#;
    write(dir.path(), "prepared.toml", job);
    // Both manifests list the event files and the items table.
    same_als_run(dir.path(), "prepared.toml");

    // A step on a missing column: exit 2 from Spark too, naming the step.
    write(
        dir.path(),
        "bad.toml",
        &job.replace(
            "filter = \"event <> 'cart'\"",
            "filter = \"kind <> 'cart'\"",
        ),
    );
    let output = run(submit(dir.path()).args(["--engine", "spark", "bad.toml"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("input.steps"),
        "{}",
        stderr(&output)
    );
}

#[test]
#[ignore = "needs spark-submit and Java 17 (.ci/run installs pyspark)"]
fn dedupe_test_sources_weights_and_time_splits_run_on_spark_as_natively() {
    spark_bin();
    let dir = tempfile::tempdir().unwrap();
    // Events with repeated (user, item) pairs and times as text, equal times included.
    let mut events = String::from("user,item,rating,ts\n");
    for row in 0..2400u64 {
        let user = (row * 7) % 160;
        let item = (row * 11 + user) % 70;
        let minute = (row * 37) % 600;
        events.push_str(&format!(
            "u{user},{item},{},2026-11-{:02} {:02}:{:02}:00\n",
            1 + (row % 5),
            1 + (row % 20),
            minute / 60,
            minute % 60
        ));
    }
    write(dir.path(), "events.csv", &events);
    let mut later = String::from("user,item,rating,ts\n");
    for row in 0..500u64 {
        // Users and items the input has, and some it does not.
        later.push_str(&format!(
            "u{},{},{},2026-12-01 00:00:00\n",
            (row * 3) % 180,
            (row * 5) % 75,
            1 + (row % 4)
        ));
    }
    write(dir.path(), "later.csv", &later);
    let als = |name: &str, extra: &str| {
        format!(
            "[job]\nname = \"{name}\"\nmaster = \"local[2]\"\n\n[input]\npath = \"events.csv\"\n{extra}\n[model]\nrank = 3\nmax_iter = 4\ncold_start_strategy = \"drop\"\n"
        )
    };
    let jobs = [
        (
            "last.toml",
            als(
                "last",
                "dedupe = \"sum\"\n[split]\nmethod = \"per_user_last\"\ncolumn = \"ts\"\nn = 2\n",
            ),
        ),
        (
            "separate.toml",
            als(
                "separate",
                "dedupe = \"max\"\n[input.test]\npath = \"later.csv\"\n",
            ),
        ),
    ];
    for (file, job) in &jobs {
        write(dir.path(), file, job);
        same_als_run(dir.path(), file);
    }

    // A weighted classifier split by the last quarter of a date column's range: the same rows on both sides, and Spark's
    // own weighted evaluator agrees with submit's weighted metrics on Spark's predictions.
    let mut table = String::from("x,y,day,weight,label\n");
    for row in 0..2000u64 {
        let x = ((row * 7919) % 1000) as f64 / 100.0 - 5.0;
        let y = ((row * 104_729) % 997) as f64 / 99.7 - 5.0;
        let label = u8::from(x + 0.5 * y + ((row % 13) as f64 / 6.5 - 1.0) > 0.0);
        table.push_str(&format!(
            "{x:.3},{y:.3},2026-10-{:02},{},{label}\n",
            1 + (row % 28),
            [0, 1, 2, 5][(row % 4) as usize]
        ));
    }
    write(dir.path(), "table.csv", &table);
    write(
        dir.path(),
        "weighted.toml",
        "[job]\nname = \"weighted\"\nmaster = \"local[2]\"\n\n[input]\npath = \"table.csv\"\n\n[input.columns]\nlabel = \"label\"\nweight = \"weight\"\n\n[split]\nmethod = \"time\"\ncolumn = \"day\"\nfraction = 0.25\n\n[model]\nalgorithm = \"random_forest\"\ntask = \"classification\"\nnum_trees = 10\nmax_depth = 4\n",
    );
    let (native, spark) = run_both(dir.path(), "weighted.toml");
    let (native_metrics, spark_metrics) = (metrics(&native), metrics(&spark));
    same_counts(
        &native_metrics,
        &spark_metrics,
        &["rows", "train_rows", "test_rows", "features"],
    );
    let spark_own = &manifest(&spark)["spark"]["evaluator"];
    for metric in ["accuracy", "auc_roc"] {
        let (ours, theirs) = (
            spark_metrics[metric].as_f64().unwrap(),
            spark_own[metric].as_f64().unwrap(),
        );
        assert!((ours - theirs).abs() < 1e-9, "{metric}: {ours} vs {theirs}");
    }
    let (native_auc, spark_auc) = (
        native_metrics["auc_roc"].as_f64().unwrap(),
        spark_metrics["auc_roc"].as_f64().unwrap(),
    );
    assert!(
        (native_auc - spark_auc).abs() < 0.03,
        "native {native_auc} vs spark {spark_auc}"
    );

    // A separate test source for the weighted forest: counted apart from the input, as
    // natively.
    write(
        dir.path(),
        "later-table.csv",
        &table.lines().take(401).collect::<Vec<_>>().join("\n"),
    );
    write(
        dir.path(),
        "separate-table.toml",
        &std::fs::read_to_string(dir.path().join("weighted.toml"))
            .unwrap()
            .replace(
                "[split]\nmethod = \"time\"\ncolumn = \"day\"\nfraction = 0.25\n",
                "[input.test]\npath = \"later-table.csv\"\n",
            ),
    );
    let (native, spark) = run_both(dir.path(), "separate-table.toml");
    let (native_metrics, spark_metrics) = (metrics(&native), metrics(&spark));
    same_counts(
        &native_metrics,
        &spark_metrics,
        &[
            "rows_read",
            "rows",
            "train_rows",
            "test_rows",
            "test_rows_read",
            "weight_total",
            "rows_zero_weight",
        ],
    );

    // A bad weight is a job problem naming the row, on Spark as natively.
    write(
        dir.path(),
        "negative.csv",
        &table.replacen(",5,", ",-5,", 1),
    );
    write(
        dir.path(),
        "negative.toml",
        &std::fs::read_to_string(dir.path().join("weighted.toml"))
            .unwrap()
            .replace("table.csv", "negative.csv"),
    );
    let output = run(submit(dir.path()).args(["--engine", "spark", "negative.toml"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("row 4") && stderr(&output).contains("weight"),
        "{}",
        stderr(&output)
    );
}
