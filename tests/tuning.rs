//! Hyperparameter search through the CLI: it finds a clearly better grid point than the worst,
//! deterministically; the refitted model equals a plain run with the winning values; grid
//! errors name the grid entry; budgets and --dry-run.

mod common;

use common::*;

const ALS_TUNING: &str = r#"[job]
name = "als-tuned"
[input]
synthetic = { kind = "ratings", users = 1500, items = 600, ratings = 40000, rank = 4, noise = 0.3 }
[model]
max_iter = 6
[tuning]
folds = 3
[tuning.grid]
rank = [1, 5]
reg_param = [0.05, 3.0]
"#;

#[test]
fn tuning_beats_the_worst_point_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", ALS_TUNING);
    let first = ok_json(dir.path(), &["job.toml"]);
    let tuning = &first["metrics"]["tuning"];
    assert_eq!(tuning["metric"], "rmse");
    assert_eq!(tuning["grid_points"], 4);
    assert_eq!(tuning["models_trained"], 12);
    let results = tuning["results"].as_array().unwrap();
    let best = results[0]["mean"].as_f64().unwrap();
    let worst = results[3]["mean"].as_f64().unwrap();
    assert!(best < 0.8 * worst, "best {best} vs worst {worst}");
    assert_eq!(
        tuning["winner_values"],
        serde_json::json!({"rank": 5, "reg_param": 0.05})
    );
    for result in results {
        assert_eq!(result["scores"].as_array().unwrap().len(), 3);
        assert!(result["std"].as_f64().unwrap() >= 0.0);
    }
    // Same seed, another thread count: the same search and the same model.
    let second = ok_json(dir.path(), &["job.toml", "--master", "local[1]"]);
    assert_eq!(second["metrics"]["tuning"], first["metrics"]["tuning"]);
    let model = |summary: &serde_json::Value| {
        std::fs::read(
            dir.path()
                .join(summary["version_dir"].as_str().unwrap())
                .join("model.als"),
        )
        .unwrap()
    };
    assert!(model(&first) == model(&second));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join(first["version_dir"].as_str().unwrap())
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["params"]["rank"], 5);
    assert_eq!(
        manifest["tuning"]["grid"]["rank"],
        serde_json::json!([1, 5])
    );
}

#[test]
fn the_refit_equals_a_plain_run_with_the_winning_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tuned.toml",
        "[job]\nname = \"tuned\"\n[input]\nsynthetic = { kind = \"classification\", rows = 6000, features = 5 }\n[model]\nalgorithm = \"gbt\"\nmax_iter = 20\n[tuning]\nmethod = \"train_validation_split\"\nmetric = \"log_loss\"\nparallelism = 2\n[tuning.grid]\nmax_depth = [1, 4]\nstep_size = [0.02, 0.3]\n",
    );
    let tuned = ok_json(dir.path(), &["tuned.toml"]);
    let winner = &tuned["metrics"]["tuning"]["winner_values"];
    assert_eq!(
        winner,
        &serde_json::json!({"max_depth": 4, "step_size": 0.3})
    );
    write(
        dir.path(),
        "plain.toml",
        "[job]\nname = \"plain\"\n[input]\nsynthetic = { kind = \"classification\", rows = 6000, features = 5 }\n[model]\nalgorithm = \"gbt\"\nmax_iter = 20\nmax_depth = 4\nstep_size = 0.3\n",
    );
    let plain = ok_json(dir.path(), &["plain.toml"]);
    let model = |summary: &serde_json::Value| {
        std::fs::read(
            dir.path()
                .join(summary["version_dir"].as_str().unwrap())
                .join("model.trees.json"),
        )
        .unwrap()
    };
    assert!(
        model(&tuned) == model(&plain),
        "the refit differs from the plain run"
    );
    assert_eq!(tuned["metrics"]["auc_roc"], plain["metrics"]["auc_roc"]);
}

#[test]
fn grid_errors_name_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[input]\nsynthetic = { kind = \"ratings\" }\n";
    let cases: [(&str, &[&str]); 6] = [
        (
            "[tuning.grid]\nrnak = [1, 2]\n",
            &[
                "unknown grid parameter",
                "tuning.grid.rnak",
                "did you mean `tuning.grid.rank`",
            ],
        ),
        (
            "[tuning.grid]\nrank = [5, 0]\n",
            &["model.rank", "out of range", "grid point", "rank = 0"],
        ),
        (
            "[tuning.grid]\nreg_param = [\"high\"]\n",
            &["wrong type in grid entry", "tuning.grid.reg_param"],
        ),
        (
            "[tuning.grid]\nmax_depth = [3, 4]\n",
            &["tuning.grid.max_depth", "does not apply to algorithm als"],
        ),
        (
            "[tuning]\nmetric = \"auc_roc\"\n[tuning.grid]\nrank = [2, 3]\n",
            &["tuning.metric", "does not fit"],
        ),
        ("[tuning]\nfolds = 4\n", &["tuning.folds", "without a grid"]),
    ];
    for (extra, words) in cases {
        write(dir.path(), "job.toml", &format!("{base}{extra}"));
        let output = run(submit(dir.path()).args(["job.toml", "--quiet"]));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{extra}\n{message}");
        for word in words {
            assert!(message.contains(word), "{extra}: no {word:?} in\n{message}");
        }
    }
}

#[test]
fn budgets_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", ALS_TUNING);
    let output = run(submit(dir.path()).args(["job.toml", "--dry-run"]));
    assert!(output.status.success());
    assert!(
        stderr(&output).contains("4 grid points; 13 models will be trained"),
        "{}",
        stderr(&output)
    );

    let limited = ok_json(dir.path(), &["job.toml", "--conf", "tuning.max_models=2"]);
    let tuning = &limited["metrics"]["tuning"];
    assert_eq!(tuning["points_evaluated"], 2);
    assert_eq!(tuning["stopped_by"], "max_models");

    let timed = ok_json(
        dir.path(),
        &["job.toml", "--conf", "tuning.max_seconds=0.000001"],
    );
    let tuning = &timed["metrics"]["tuning"];
    assert_eq!(tuning["points_evaluated"], 1, "one batch always runs");
    assert_eq!(tuning["stopped_by"], "max_seconds");
    assert!(
        timed["version"].as_u64().is_some(),
        "the best so far is published"
    );
}
