//! Running unattended: the `models` registry commands, the promotion gate, and crash safety
//! (runs killed with SIGKILL at many moments leave only complete versions).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn job(extra: &str) -> String {
    format!(
        "[job]\nname = \"reg\"\n[input]\nsynthetic = {{ kind = \"ratings\", users = 400, items = 200, ratings = 8000, rank = 3, noise = 0.2 }}\n[model]\nrank = 4\nmax_iter = 5\n{extra}"
    )
}

#[test]
fn list_show_diff_promote_rollback_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &job(""));
    for reg_param in ["0.1", "0.5", "2.0"] {
        ok_json(
            dir.path(),
            &[
                "job.toml",
                "--conf",
                &format!("model.reg_param={reg_param}"),
            ],
        );
    }
    let listed = ok_json(dir.path(), &["models", "list", "models"]);
    let versions = listed["jobs"][0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(listed["jobs"][0]["latest"], 3);
    assert_eq!(versions[2]["latest"], true);
    assert_eq!(versions[0]["algorithm"], "als");
    assert_eq!(versions[0]["metric"], "rmse");

    let shown = ok_json(dir.path(), &["models", "show", "models/reg/latest"]);
    assert_eq!(shown["manifest"]["params"]["reg_param"], 2.0);
    assert!(shown["metrics"]["rmse"].as_f64().is_some());

    let diff = ok_json(
        dir.path(),
        &["models", "diff", "models/reg/v1", "models/reg/v3"],
    );
    let reg = diff["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "reg_param")
        .unwrap();
    assert_eq!(reg["changed"], true);
    assert!((reg["delta"].as_f64().unwrap() - 1.9).abs() < 1e-9);
    assert!(
        diff["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["key"] == "rmse" && row["delta"].is_number())
    );

    let promoted = ok_json(dir.path(), &["models", "promote", "models/reg/v1"]);
    assert_eq!(
        (promoted["latest"].as_u64(), promoted["previous"].as_u64()),
        (Some(1), Some(3))
    );
    let target = std::fs::read_link(dir.path().join("models/reg/latest")).unwrap();
    assert_eq!(target, Path::new("v1"));

    // Roll back from v3: latest goes back to v1, the version that was latest before it.
    ok_json(dir.path(), &["models", "promote", "models/reg/v3"]);
    let rolled = ok_json(dir.path(), &["models", "rollback", "models/reg"]);
    assert_eq!(rolled["latest"], 1);
    // Again: v3 was latest before v1 was promoted by hand, and before that v2.
    let rolled = ok_json(dir.path(), &["models", "rollback", "models/reg"]);
    assert_eq!(rolled["latest"], 3);
    let rolled = ok_json(dir.path(), &["models", "rollback", "models/reg"]);
    assert_eq!(rolled["latest"], 2);

    // gc keeps the newest one and latest (v2).
    let collected = ok_json(dir.path(), &["models", "gc", "models/reg", "--keep", "1"]);
    assert_eq!(collected["removed"], serde_json::json!([1]));
    assert_eq!(collected["kept"], serde_json::json!([2, 3]));

    let human = run(submit(dir.path()).args(["models", "list", "models/reg"]));
    assert!(stdout(&human).contains("v2") && stdout(&human).contains('*'));
    let missing = run(submit(dir.path()).args(["models", "show", "models/reg/v9"]));
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
}

#[test]
fn promotion_gate_keeps_latest_on_the_better_version() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.toml",
        &job("[output]\npromote = \"if_better\"\nmin_improvement = 0.001\n"),
    );
    let first = ok_json(dir.path(), &["job.toml"]);
    assert_eq!(first["promoted"], true);
    // Far too much regularization: a worse model is kept as v2 but does not become latest.
    let worse = ok_json(dir.path(), &["job.toml", "--conf", "model.reg_param=20.0"]);
    assert_eq!(worse["version"], 2);
    assert_eq!(worse["promoted"], false);
    assert_eq!(worse["promotion"]["metric"], "rmse");
    assert_eq!(worse["promotion"]["current_version"], 1);
    assert!(worse["promotion"]["new"].as_f64() > worse["promotion"]["current"].as_f64());
    assert_eq!(
        std::fs::read_link(dir.path().join("models/reg/latest")).unwrap(),
        Path::new("v1")
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models/reg/v2/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["promotion"]["promoted"], false);

    let refused = run(submit(dir.path()).args([
        "job.toml",
        "--quiet",
        "--fail-if-not-promoted",
        "--conf",
        "model.reg_param=20.0",
    ]));
    assert_eq!(refused.status.code(), Some(6), "{}", stderr(&refused));
    assert!(
        dir.path().join("models/reg/v3/manifest.json").is_file(),
        "the version is kept"
    );

    let better = ok_json(
        dir.path(),
        &[
            "job.toml",
            "--conf",
            "model.reg_param=0.05",
            "--conf",
            "model.rank=6",
        ],
    );
    assert_eq!(better["promoted"], true, "{better}");
    assert_eq!(
        std::fs::read_link(dir.path().join("models/reg/latest")).unwrap(),
        Path::new("v4")
    );
}

#[test]
fn killed_runs_leave_only_complete_versions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.toml",
        "[job]\nname = \"crash\"\n[input]\nsynthetic = { kind = \"ratings\", users = 3000, items = 1500, ratings = 120000, rank = 4 }\n[model]\nrank = 8\nmax_iter = 6\n",
    );
    // How long a whole run takes here, to spread the kills over it.
    let started = std::time::Instant::now();
    let output = run(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert!(output.status.success());
    let full = started.elapsed().as_millis().max(20) as u64;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..24 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = state % (full + full / 4);
        let mut child = submit(dir.path())
            .args(["job.toml", "--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let job_dir = dir.path().join("models/crash");
    let versions = submit::artifact::store::versions(&job_dir).unwrap();
    assert!(!versions.is_empty());
    for version in &versions {
        let loaded = submit::artifact::load_version(&job_dir.join(format!("v{version}")));
        assert!(
            loaded.is_ok(),
            "v{version} is not complete: {:?}",
            loaded.err()
        );
    }
    let latest = submit::artifact::store::current_latest(&job_dir)
        .expect("latest points at a complete version");
    assert!(versions.contains(&latest.0));
    let listed = ok_json(dir.path(), &["models", "list", "models/crash"]);
    assert!(
        listed["jobs"][0]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["complete"] == true)
    );
    // The next run removes what killed runs left behind.
    ok_json(dir.path(), &["job.toml"]);
    let leftovers: Vec<String> = std::fs::read_dir(&job_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with(".staging-")
                || name.starts_with(".latest-")
                || name.starts_with(".deleting-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_versions_resolved_job_reproduces_it_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, model_file) in [
        (
            "als",
            "[input]\nsynthetic = { kind = \"ratings\", users = 300, items = 200, ratings = 6000 }\n[model]\nrank = 4\nmax_iter = 4\n",
            "model.als",
        ),
        (
            "gbt",
            "[input]\nsynthetic = { kind = \"classification\", rows = 3000, features = 4 }\n[model]\nalgorithm = \"gbt\"\nmax_iter = 10\nsubsampling_rate = 0.7\n",
            "model.trees.json",
        ),
        (
            "forest",
            "[input]\nsynthetic = { kind = \"regression\", rows = 3000, features = 4 }\n[model]\nalgorithm = \"random_forest\"\ntask = \"regression\"\nnum_trees = 5\n",
            "model.trees.json",
        ),
    ] {
        write(
            dir.path(),
            &format!("{name}.toml"),
            &format!("[job]\nname = \"{name}\"\nmaster = \"local[2]\"\n{body}"),
        );
        let first = ok_json(
            dir.path(),
            &[&format!("{name}.toml"), "--conf", "job.seed=7"],
        );
        let version = dir.path().join(first["version_dir"].as_str().unwrap());
        // The resolved job records the seed and everything else; rerun it on one thread.
        let resolved = version.join("job.resolved.toml");
        assert!(
            std::fs::read_to_string(&resolved)
                .unwrap()
                .contains("seed = 7")
        );
        let again = ok_json(
            dir.path(),
            &[resolved.to_str().unwrap(), "--master", "local[1]"],
        );
        let again_dir = dir.path().join(again["version_dir"].as_str().unwrap());
        assert_eq!(again["version"], 2, "{name}");
        assert!(
            std::fs::read(version.join(model_file)).unwrap()
                == std::fs::read(again_dir.join(model_file)).unwrap(),
            "{name}: the resolved job did not reproduce the model"
        );
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(version.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["seed"], 7);
        assert!(manifest["inputs"][0]["blake3"].is_string());
        // Another seed gives another model.
        let other = ok_json(
            dir.path(),
            &[&format!("{name}.toml"), "--conf", "job.seed=8"],
        );
        let other_dir = dir.path().join(other["version_dir"].as_str().unwrap());
        assert!(
            std::fs::read(version.join(model_file)).unwrap()
                != std::fs::read(other_dir.join(model_file)).unwrap()
        );
    }
}
