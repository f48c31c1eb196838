//! Tree ensembles end to end through the CLI: metric targets on synthetic rules, string
//! categoricals with missing values, predict jobs, thread-count determinism, the LightGBM
//! export (when Python's `lightgbm` is installed) and the tree-specific configuration errors.

mod common;

use common::*;

fn metric(summary: &serde_json::Value, key: &str) -> f64 {
    summary["metrics"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
}

/// A deterministic number in [0, 1) from (row, column).
fn noise(row: usize, column: usize) -> f64 {
    let mut z = (row as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(column as u64 * 0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 29;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A churn-like table: `plan` (string categorical, decides most of the label), `usage` (numeric
/// with empty cells), `tenure` (numeric), label `churned` as "yes" / "no".
fn churn_csv(rows: usize, plans: &[&str]) -> String {
    let mut text = String::from("customer,plan,usage,tenure,churned\n");
    for row in 0..rows {
        let plan = plans[(noise(row, 0) * plans.len() as f64) as usize];
        let usage = noise(row, 1) * 100.0;
        let tenure = (noise(row, 2) * 60.0).floor();
        let risky = matches!(plan, "basic" | "trial");
        let churned = (risky && usage < 70.0) || (!risky && tenure < 6.0);
        let usage_text = if row % 10 == 3 {
            String::new()
        } else {
            format!("{usage:.3}")
        };
        text.push_str(&format!(
            "c{row},{plan},{usage_text},{tenure},{}\n",
            if churned { "yes" } else { "no" }
        ));
    }
    text
}

#[test]
fn both_ensembles_reach_their_targets_on_synthetic_tables() {
    let dir = tempfile::tempdir().unwrap();
    let table = r#"synthetic = { kind = "classification", rows = 20000, features = 6, classes = 2, seed = 5 }"#;
    for (algorithm, extra, target) in [
        ("gbt", "max_iter = 60\nmax_depth = 4", 0.9),
        ("random_forest", "num_trees = 40\nmax_depth = 8", 0.86),
    ] {
        write(
            dir.path(),
            "job.toml",
            &format!(
                "[job]\nname = \"{algorithm}\"\n[input]\n{table}\n[model]\nalgorithm = \"{algorithm}\"\n{extra}\n"
            ),
        );
        let summary = ok_json(dir.path(), &["job.toml"]);
        let accuracy = metric(&summary, "accuracy");
        assert!(accuracy > target, "{algorithm}: accuracy {accuracy}");
        assert!(metric(&summary, "auc_roc") > target, "{summary}");
        for key in ["f1", "auc_pr", "log_loss"] {
            metric(&summary, key);
        }
        let importances = summary["metrics"]["feature_importances"]
            .as_array()
            .unwrap();
        assert_eq!(importances.len(), 6);
        let version = dir.path().join(summary["version_dir"].as_str().unwrap());
        for file in [
            "model.trees.json",
            "model.lgb.txt",
            "manifest.json",
            "metrics.json",
        ] {
            assert!(version.join(file).is_file(), "{file}");
        }
    }
    write(
        dir.path(),
        "regression.toml",
        "[input]\nsynthetic = { kind = \"regression\", rows = 20000, features = 4, noise = 0.1 }\n[model]\nalgorithm = \"gbt\"\ntask = \"regression\"\nmax_iter = 80\n",
    );
    let summary = ok_json(dir.path(), &["regression.toml"]);
    let r2 = metric(&summary, "r2");
    assert!(r2 > 0.9, "r2 {r2}");
    assert!(metric(&summary, "rmse") < 0.6);
}

#[test]
fn multiclass_boosting_trains_early_stops_and_predicts_every_class() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x,y,z,kind\n");
    let names = ["bird", "cat", "dog", "fish"];
    for row in 0..6000 {
        let x: Vec<f64> = (0..3).map(|j| noise(row, j + 20) * 4.0 - 2.0).collect();
        let class = match (x[0] > 0.0, x[1] + 0.5 * x[2] > 0.3) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        csv.push_str(&format!(
            "{:.4},{:.4},{:.4},{}\n",
            x[0], x[1], x[2], names[class]
        ));
    }
    write(dir.path(), "animals.csv", &csv);
    write(
        dir.path(),
        "train.toml",
        "[job]\nname = \"animals\"\n[input]\npath = \"animals.csv\"\n[input.columns]\nlabel = \"kind\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 200\nstep_size = 0.3\nvalidation_fraction = 0.2\n",
    );
    let summary = ok_json(dir.path(), &["train.toml"]);
    assert!(metric(&summary, "accuracy") > 0.95, "{summary}");
    assert!(metric(&summary, "log_loss") < 0.2, "{summary}");
    let version = dir.path().join(summary["version_dir"].as_str().unwrap());
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(version.join("metrics.json")).unwrap()).unwrap();
    let (kept, grown) = (
        metrics["trees"]["kept"].as_u64().unwrap(),
        metrics["trees"]["grown"].as_u64().unwrap(),
    );
    assert!(
        kept % 4 == 0 && kept < grown && grown < 800,
        "{}",
        metrics["trees"]
    );
    let lightgbm = std::fs::read_to_string(version.join("model.lgb.txt")).unwrap();
    assert!(lightgbm.contains("objective=multiclass num_class:4"));
    write(
        dir.path(),
        "predict.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/animals/latest\"\n[input]\npath = \"animals.csv\"\n[output]\npath = \"animals-scored.csv\"\n",
    );
    ok_json(dir.path(), &["predict.toml"]);
    let scored = std::fs::read_to_string(dir.path().join("animals-scored.csv")).unwrap();
    // Classes in StringIndexer's order (most frequent first).
    let mut header: Vec<&str> = scored.lines().next().unwrap().split(',').collect();
    header[2..].sort_unstable();
    assert_eq!(
        header.join(","),
        "row,prediction,probability_bird,probability_cat,probability_dog,probability_fish"
    );
    for line in scored.lines().skip(1).take(50) {
        let total: f64 = line
            .split(',')
            .skip(2)
            .map(|p| p.parse::<f64>().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{line}");
    }
}

#[test]
fn a_warm_started_gbt_equals_one_longer_run_and_a_mismatched_base_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let table = r#"synthetic = { kind = "classification", rows = 5000, features = 4, classes = 3, seed = 2 }"#;
    let job = |name: &str, extra: &str| {
        format!(
            "[job]\nname = \"{name}\"\n[input]\n{table}\n[model]\nalgorithm = \"gbt\"\n{extra}\n"
        )
    };
    write(dir.path(), "whole.toml", &job("whole", "max_iter = 16"));
    write(dir.path(), "base.toml", &job("base", "max_iter = 8"));
    write(
        dir.path(),
        "more.toml",
        &job("more", "max_iter = 8\ninit_from = \"models/base/latest\""),
    );
    for file in ["whole.toml", "base.toml", "more.toml"] {
        ok_json(dir.path(), &[file]);
    }
    let model = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(
            dir.path()
                .join(format!("models/{name}/latest/model.trees.json")),
        )
        .unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["model"].clone()
    };
    assert_eq!(model("more"), model("whole"));
    assert_eq!(model("more")["trees"].as_array().unwrap().len(), 48);

    let other = r#"synthetic = { kind = "classification", rows = 500, features = 5, classes = 3, seed = 2 }"#;
    write(
        dir.path(),
        "mismatch.toml",
        &format!(
            "[input]\n{other}\n[model]\nalgorithm = \"gbt\"\ninit_from = \"models/base/latest\"\n"
        ),
    );
    let output = run(submit(dir.path()).args(["mismatch.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("model.init_from: the base's features"),
        "{}",
        stderr(&output)
    );
    write(
        dir.path(),
        "forest.toml",
        &format!(
            "[input]\n{table}\n[model]\nalgorithm = \"random_forest\"\ninit_from = \"models/base/latest\"\n"
        ),
    );
    let output = run(submit(dir.path()).args(["forest.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("num_trees"), "{}", stderr(&output));
}

#[test]
fn string_categoricals_and_missing_values_train_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let plans = ["basic", "premium", "trial", "family"];
    write(dir.path(), "churn.csv", &churn_csv(6000, &plans));
    // 64 bins: tenure's 60 whole months keep a bin each, so the rule's cut at 6 is there (at
    // 32, zero's own bin pairs 1-2, 3-4, 5-6 and the cut falls a month off).
    write(
        dir.path(),
        "train.toml",
        "[job]\nname = \"churn\"\n[input]\npath = \"churn.csv\"\n[input.columns]\nlabel = \"churned\"\nfeatures = [\"plan\", \"usage\", \"tenure\"]\n[model]\nalgorithm = \"gbt\"\nmax_iter = 40\nmax_bins = 64\n",
    );
    let summary = ok_json(dir.path(), &["train.toml"]);
    assert!(metric(&summary, "accuracy") > 0.97, "{summary}");
    assert_eq!(summary["metrics"]["counts"]["categorical_features"], 1);
    assert_eq!(
        summary["metrics"]["classes"],
        serde_json::json!(["no", "yes"])
    );

    // Scoring: an unseen plan is an error by default, scored with `keep`, dropped with `skip`.
    write(
        dir.path(),
        "new.csv",
        &churn_csv(200, &["basic", "premium", "student"]),
    );
    let predict = |handle_invalid: &str| {
        write(
            dir.path(),
            "predict.toml",
            &format!(
                "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/churn/latest\"\nhandle_invalid = \"{handle_invalid}\"\n[input]\npath = \"new.csv\"\n[output]\npath = \"scores.csv\"\n"
            ),
        );
        run(submit(dir.path()).args(["predict.toml", "--quiet"]))
    };
    let refused = predict("error");
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("\"student\""),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.path().join("scores.csv").exists());

    let kept = predict("keep");
    assert_eq!(kept.status.code(), Some(0), "{}", stderr(&kept));
    let scores = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    let mut lines = scores.lines();
    assert_eq!(
        lines.next(),
        Some("row,prediction,probability_no,probability_yes")
    );
    assert_eq!(scores.lines().count(), 201);
    let data = churn_csv(200, &["basic", "premium", "student"]);
    let mut right = 0;
    for (line, truth) in lines.zip(data.lines().skip(1)) {
        let fields: Vec<&str> = line.split(',').collect();
        let expected = truth.rsplit(',').next().unwrap();
        let plan = truth.split(',').nth(1).unwrap();
        assert!(fields[1] == "yes" || fields[1] == "no");
        let (no, yes): (f64, f64) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
        assert!((no + yes - 1.0).abs() < 1e-9);
        if plan != "student" && fields[1] == expected {
            right += 1;
        }
    }
    assert!(right > 120, "{right} of the known-plan rows right");

    let skipped = predict("skip");
    assert_eq!(skipped.status.code(), Some(0), "{}", stderr(&skipped));
    let scores = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    let students = data
        .lines()
        .filter(|line| line.contains(",student,"))
        .count();
    assert_eq!(scores.lines().count(), 201 - students);
}

#[test]
fn a_categorical_feature_may_have_more_categories_than_max_bins() {
    // 300 shops (more than one byte of bins) with max_bins = 16: Spark would refuse this job;
    // the native engine gives every category its own bin and learns the label from it.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("shop,amount,bought\n");
    for row in 0..6000 {
        let shop = (noise(row, 0) * 300.0) as usize;
        let amount = noise(row, 1) * 10.0;
        let bought = shop.is_multiple_of(3) != (amount > 9.0);
        text.push_str(&format!("s{shop},{amount:.3},{}\n", u8::from(bought)));
    }
    write(dir.path(), "shops.csv", &text);
    write(
        dir.path(),
        "train.toml",
        "[job]\nname = \"shops\"\n[input]\npath = \"shops.csv\"\n[input.columns]\nlabel = \"bought\"\n[model]\nalgorithm = \"gbt\"\nmax_bins = 16\nmax_iter = 30\nmax_depth = 3\n",
    );
    let summary = ok_json(dir.path(), &["train.toml"]);
    assert!(metric(&summary, "accuracy") > 0.95, "{summary}");
    assert_eq!(summary["metrics"]["counts"]["categorical_features"], 1);
}

#[test]
fn one_and_two_threads_give_byte_identical_models() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, classes, extra) in [
        ("gbt", 2, "max_iter = 15\nsubsampling_rate = 0.8"),
        ("random_forest", 2, "num_trees = 8\nmax_depth = 6"),
        ("gbt", 4, "max_iter = 8\nmonotone_constraints = { f1 = 1 }"),
    ] {
        write(
            dir.path(),
            &format!("{algorithm}.toml"),
            &format!(
                "[input]\nsynthetic = {{ kind = \"classification\", rows = 40000, features = 5, classes = {classes} }}\n[model]\nalgorithm = \"{algorithm}\"\n{extra}\n"
            ),
        );
        let mut files = Vec::new();
        for master in ["local[1]", "local[2]"] {
            let summary = ok_json(
                dir.path(),
                &[&format!("{algorithm}.toml"), "--master", master],
            );
            let version = dir.path().join(summary["version_dir"].as_str().unwrap());
            files.push((
                std::fs::read(version.join("model.trees.json")).unwrap(),
                std::fs::read(version.join("model.lgb.txt")).unwrap(),
            ));
        }
        assert!(
            files[0] == files[1],
            "{algorithm}: models differ between 1 and 2 threads"
        );
    }
}

#[test]
#[ignore = "needs Python with lightgbm and pandas (SUBMIT_PYTHON; .ci/run installs them)"]
fn lightgbm_loads_the_export_and_predicts_the_same() {
    let python = std::env::var("SUBMIT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let available = std::process::Command::new(&python)
        .args(["-c", "import lightgbm, pandas"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        available,
        "{python} cannot import lightgbm and pandas: set SUBMIT_PYTHON (as .ci/run does) or unset --include-ignored"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,c,d,label\n");
    for row in 0..4000 {
        let x: Vec<f64> = (0..4).map(|j| noise(row, j) * 4.0 - 2.0).collect();
        let missing = if row % 13 == 0 {
            String::new()
        } else {
            format!("{:.4}", x[1])
        };
        let y = f64::from(x[0] * x[1] + x[2] > 0.3);
        csv.push_str(&format!(
            "{:.4},{missing},{:.4},{:.4},{y}\n",
            x[0], x[2], x[3]
        ));
    }
    write(dir.path(), "table.csv", &csv);
    let mut regression_csv = String::from("a,b,c,label\n");
    for row in 0..3000 {
        let x: Vec<f64> = (0..3).map(|j| noise(row, j + 7) * 4.0 - 2.0).collect();
        regression_csv.push_str(&format!(
            "{:.4},{:.4},{:.4},{:.5}\n",
            x[0],
            x[1],
            x[2],
            x[0] * 2.0 + (x[1] * 3.0).sin()
        ));
    }
    write(dir.path(), "regression.csv", &regression_csv);
    let mut multiclass_csv = String::from("a,b,c,label\n");
    for row in 0..3000 {
        let x: Vec<f64> = (0..3).map(|j| noise(row, j + 11) * 4.0 - 2.0).collect();
        let label = if x[0] + x[1] > 1.0 {
            0
        } else if x[2] * x[0] > 0.0 {
            1
        } else {
            2
        };
        multiclass_csv.push_str(&format!("{:.4},{:.4},{:.4},{label}\n", x[0], x[1], x[2]));
    }
    write(dir.path(), "multiclass.csv", &multiclass_csv);
    write(
        dir.path(),
        "churn.csv",
        &churn_csv(3000, &["basic", "premium", "trial", "family", "student"]),
    );
    let churn_columns =
        "[input.columns]\nlabel = \"churned\"\nfeatures = [\"plan\", \"usage\", \"tenure\"]";
    for (name, data, model) in [
        (
            "gbt-strings",
            "churn.csv",
            format!("algorithm = \"gbt\"\nmax_iter = 20\n{churn_columns}"),
        ),
        (
            "forest-strings",
            "churn.csv",
            format!("algorithm = \"random_forest\"\nnum_trees = 8\n{churn_columns}"),
        ),
        (
            "gbt",
            "table.csv",
            "algorithm = \"gbt\"\nmax_iter = 25".to_owned(),
        ),
        (
            "gbt-multiclass",
            "multiclass.csv",
            "algorithm = \"gbt\"\nmax_iter = 20".to_owned(),
        ),
        (
            "gbt-monotone",
            "regression.csv",
            "algorithm = \"gbt\"\ntask = \"regression\"\nmax_iter = 25\nmonotone_constraints = { a = 1, c = -1 }".to_owned(),
        ),
        (
            "forest",
            "table.csv",
            "algorithm = \"random_forest\"\nnum_trees = 10".to_owned(),
        ),
        (
            "gbt-l2",
            "regression.csv",
            "algorithm = \"gbt\"\ntask = \"regression\"\nmax_iter = 25".to_owned(),
        ),
        (
            "gbt-l1",
            "regression.csv",
            "algorithm = \"gbt\"\ntask = \"regression\"\nloss_type = \"absolute\"\nmax_iter = 25".to_owned(),
        ),
        (
            "forest-reg",
            "regression.csv",
            "algorithm = \"random_forest\"\ntask = \"regression\"\nnum_trees = 10".to_owned(),
        ),
    ] {
        write(
            dir.path(),
            "train.toml",
            &format!("[job]\nname = \"{name}\"\n[input]\npath = \"{data}\"\n[model]\n{model}\n"),
        );
        ok_json(dir.path(), &["train.toml"]);
        write(
            dir.path(),
            "predict.toml",
            &format!(
                "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/{name}/latest\"\n[input]\npath = \"{data}\"\n[predict]\ncontributions = true\n[output]\npath = \"{name}.csv\"\n"
            ),
        );
        ok_json(dir.path(), &["predict.toml"]);
        let check = std::process::Command::new(&python)
            .arg(repository().join("scripts/check_lightgbm.py"))
            .arg(dir.path().join(format!("models/{name}/latest")))
            .arg(dir.path().join(data))
            .arg(dir.path().join(format!("{name}.csv")))
            .arg("--contributions")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn tree_configuration_and_data_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, i32, &[&str]); 8] = [
        (
            "[input]\nsynthetic = { kind = \"classification\" }\n[model]\nalgorithm = \"gbt\"\nmonotone_constraints = { f0 = 2 }\n",
            2,
            &["model.monotone_constraints.f0", "job.toml:5:31", "-1"],
        ),
        (
            "[input]\nsynthetic = { kind = \"classification\" }\n[model]\nalgorithm = \"gbt\"\nmonotone_constraints = { age = 1 }\n",
            3,
            &["model.monotone_constraints", "`age` is not a feature", "f0"],
        ),
        (
            "[input]\nsynthetic = { kind = \"ratings\" }\n[model]\nmonotone_constraints = { f0 = 1 }\n",
            2,
            &[
                "model.monotone_constraints",
                "does not apply to algorithm als",
            ],
        ),
        (
            "[input]\nsynthetic = { kind = \"classification\" }\n[model]\nalgorithm = \"gbt\"\nrank = 10\n",
            2,
            &["model.rank", "does not apply to algorithm gbt"],
        ),
        (
            "[input]\nsynthetic = { kind = \"classification\" }\n[model]\nalgorithm = \"random_forest\"\nimpurity = \"variance\"\n",
            2,
            &["model.impurity", "does not fit the task"],
        ),
        (
            "[input]\nsynthetic = { kind = \"ratings\" }\n[model]\nalgorithm = \"gbt\"\n",
            2,
            &["labelled table"],
        ),
        (
            "[input]\nsynthetic = { kind = \"classification\" }\n[model]\nalgorithm = \"random_forest\"\nfeature_subset_strategy = \"most\"\n",
            2,
            &["feature_subset_strategy", "sqrt"],
        ),
        (
            "[input]\npath = \"one-class.csv\"\n[model]\nalgorithm = \"random_forest\"\n",
            3,
            &["single class"],
        ),
    ];
    write(
        dir.path(),
        "one-class.csv",
        "x,label\n1,a\n2,a\n3,a\n4,a\n5,a\n6,a\n",
    );
    for (job, code, words) in cases {
        write(dir.path(), "job.toml", job);
        let output = run(submit(dir.path()).args(["job.toml", "--quiet"]));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{job}\n{message}");
        for word in words {
            assert!(message.contains(word), "{job}: no {word:?} in\n{message}");
        }
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn validation_column_and_max_categories_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x,level,holdout,label\n");
    for row in 0..3000 {
        let x = noise(row, 1) * 10.0;
        let level = (noise(row, 2) * 4.0).floor();
        let label = u8::from(x > 5.0) ^ u8::from(level == 2.0);
        let holdout = if row % 5 == 0 { "true" } else { "false" };
        csv.push_str(&format!("{x:.3},{level},{holdout},{label}\n"));
    }
    write(dir.path(), "table.csv", &csv);
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"table.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 300\nstep_size = 0.3\nvalidation_column = \"holdout\"\nmax_categories = 4\n",
    );
    let summary = ok_json(dir.path(), &["job.toml"]);
    let counts = &summary["metrics"]["counts"];
    assert_eq!(
        counts["features"], 2,
        "the validation column is not a feature"
    );
    assert_eq!(counts["categorical_features"], 1, "level has 4 values");
    let validation = counts["validation_rows"].as_u64().unwrap();
    assert!((400..=560).contains(&validation), "{validation}");
    let trees = &summary["metrics"]["trees"];
    assert!(
        trees["grown"].as_u64().unwrap() < 300,
        "stopped early: {trees}"
    );
    assert!(metric(&summary, "accuracy") > 0.97, "{summary}");
}

#[test]
fn a_class_seen_only_in_the_test_split_is_scored_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let is_test = submit::dataset::split::test_mask(400, 0.2, 42);
    let rare = is_test.iter().position(|test| *test).unwrap();
    let mut csv = String::from("x,label\n");
    for row in 0..400 {
        let label = if row == rare {
            2
        } else {
            usize::from(noise(row, 0) > 0.5)
        };
        csv.push_str(&format!("{:.4},{label}\n", noise(row, 0)));
    }
    write(dir.path(), "t.csv", &csv);
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"t.csv\"\n[model]\nalgorithm = \"random_forest\"\nnum_trees = 5\n",
    );
    let summary = ok_json(dir.path(), &["job.toml"]);
    assert_eq!(
        summary["metrics"]["classes"],
        serde_json::json!(["0", "1", "2"])
    );
    assert!(metric(&summary, "accuracy") > 0.9);
}

/// Rows `x1,x2,label` (and `weight` when `weighted`) with integer weights 0 to 3; unweighted,
/// each row is written `weight` times instead.
fn weighted_csv(weighted: bool) -> String {
    let mut text = String::from(if weighted {
        "x1,x2,weight,label\n"
    } else {
        "x1,x2,label\n"
    });
    for row in 0..400 {
        let x1 = (noise(row, 0) * 8.0).floor();
        let x2 = (noise(row, 1) * 6.0).floor();
        let weight = (noise(row, 2) * 4.0).floor() as usize;
        let label = u8::from(x1 + x2 > 6.0 || noise(row, 3) < 0.1);
        if weighted {
            text.push_str(&format!("{x1},{x2},{weight},{label}\n"));
        } else {
            for _ in 0..weight {
                text.push_str(&format!("{x1},{x2},{label}\n"));
            }
        }
    }
    text
}

#[test]
fn a_weighted_forest_equals_one_on_rows_repeated_by_their_weights() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "weighted.csv", &weighted_csv(true));
    write(dir.path(), "repeated.csv", &weighted_csv(false));
    // Each job is tested on its own file: weighted metrics equal those of the repeated rows.
    let job = |name: &str, file: &str, extra: &str| {
        write(
            dir.path(),
            &format!("{name}.toml"),
            &format!(
                "[job]\nmaster = \"local[2]\"\n[input]\npath = \"{file}\"\n{extra}\n[input.test]\npath = \"{file}\"\n[model]\nalgorithm = \"random_forest\"\nnum_trees = 4\nmax_depth = 5\nbootstrap = false\nmin_instances_per_node = 3\n[output]\ndir = \"models\"\n"
            ),
        );
        ok_json(dir.path(), &[&format!("{name}.toml")])
    };
    let weighted = job(
        "weighted",
        "weighted.csv",
        "columns = { weight = \"weight\" }",
    );
    let repeated = job("repeated", "repeated.csv", "");
    let model = |name: &str| {
        std::fs::read_to_string(
            dir.path()
                .join(format!("models/{name}/v1/model.trees.json")),
        )
        .unwrap()
    };
    assert_eq!(model("weighted"), model("repeated"));
    for key in ["auc_roc", "accuracy", "log_loss", "f1"] {
        let (a, b) = (metric(&weighted, key), metric(&repeated, key));
        assert!((a - b).abs() < 1e-12, "{key}: {a} vs {b}");
    }
    assert!(metric(&weighted, "auc_roc") > 0.8, "{weighted}");

    // A negative weight names its row; weights on a LIBSVM source are a configuration error.
    write(
        dir.path(),
        "negative.csv",
        "x1,x2,weight,label\n1,2,1,0\n2,1,-1,1\n",
    );
    write(
        dir.path(),
        "negative.toml",
        "[input]\npath = \"negative.csv\"\ncolumns = { weight = \"weight\" }\n[model]\nalgorithm = \"gbt\"\n",
    );
    let output = run(submit(dir.path()).arg("negative.toml"));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("kept row 2 has -1"),
        "{}",
        stderr(&output)
    );
}
