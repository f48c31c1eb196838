//! Bad data, resource limits and publishing under failure: exit codes, messages, and that no
//! partial version ever appears.

mod common;

use std::path::Path;

use common::*;

fn version_dirs(job_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(job_dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn bad_rating_names_file_row_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = ratings_csv(200, true);
    csv.push_str("7,3,abc\n");
    write(dir.path(), "r.csv", &csv);
    write(dir.path(), "job.toml", "[input]\npath = \"r.csv\"\n");
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.contains("r.csv: row 1201 (line 1202), column rating: not a number: \"abc\""),
        "{message}"
    );
}

#[test]
fn non_finite_rating_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.csv", "u,i,r\n1,2,3\n1,3,inf\n");
    write(dir.path(), "job.toml", "[input]\npath = \"r.csv\"\n");
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("row 2 (line 3), column r: a rating must be a finite number"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_empty_header_only_and_directory_inputs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "empty.csv", "");
    write(dir.path(), "header.csv", "user,item,rating\n");
    std::fs::create_dir(dir.path().join("folder.csv")).unwrap();
    for (path, words) in [
        ("missing.csv", "input file not found"),
        ("empty.csv", "the file is empty"),
        ("header.csv", "no data to train on"),
        ("folder.csv", "it is a directory"),
    ] {
        write(
            dir.path(),
            "job.toml",
            &format!("[input]\npath = \"{path}\"\n"),
        );
        let output = run(submit(dir.path()).args(["job.toml", "--json"]));
        assert_eq!(output.status.code(), Some(3), "{path}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(words),
            "{path}: {}",
            stderr(&output)
        );
        assert_eq!(json(&output)["kind"], "input");
    }
}

#[test]
fn wrong_column_name_suggests_the_close_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.csv", &ratings_csv(5, true));
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"r.csv\"\n[input.columns]\nuser = \"userid\"\n",
    );
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.contains("no column `userid` (did you mean `userId`?)"),
        "{message}"
    );
    assert!(message.contains("userId, movieId, rating"), "{message}");
}

#[test]
fn driver_memory_cap_stops_with_exit_4_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.toml",
        "[job]\nname = \"big\"\ndriver_memory = \"16M\"\n[input]\nsynthetic = { kind = \"ratings\", users = 20000, items = 5000, ratings = 3000000 }\n",
    );
    let output = run(submit(dir.path()).args(["job.toml", "--json"]));
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("driver_memory 16.0 MiB exceeded while"),
        "{message}"
    );
    assert!(message.contains("over the cap"), "{message}");
    assert_eq!(json(&output)["exit_code"], 4);
    assert_eq!(json(&output)["kind"], "resource");
    let published: Vec<String> = version_dirs(&dir.path().join("models/big"))
        .into_iter()
        .filter(|name| name.starts_with('v') || name == "latest")
        .collect();
    assert!(published.is_empty(), "{published:?}");
}

#[test]
fn failure_between_writing_and_publishing_leaves_nothing_and_next_run_is_v1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("inject", ""));
    let output = run(submit(dir.path())
        .arg("job.toml")
        .env(submit_fail_env(), "1"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("nothing was published"));
    let job_dir = dir.path().join("models/inject");
    assert!(
        version_dirs(&job_dir).is_empty(),
        "{:?}",
        version_dirs(&job_dir)
    );
    let output = run(submit(dir.path()).args(["job.toml", "--json"]));
    assert_eq!(json(&output)["version"], 1);
}

#[test]
fn leftover_staging_of_a_dead_process_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("stale", ""));
    // A staging directory as a killed run leaves it (pid far above any live process).
    let stale = dir.path().join("models/stale/.staging-999999999-1");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.als"), b"partial").unwrap();
    let output = run(submit(dir.path()).args(["job.toml", "--json"]));
    assert_eq!(
        json(&output)["version"],
        1,
        "a staging directory is never a version"
    );
    assert!(!stale.exists());
}

#[test]
fn concurrent_runs_publish_distinct_complete_versions() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("concurrent", ""));
    let children: Vec<_> = (0..3)
        .map(|_| {
            submit(dir.path())
                .args(["job.toml", "--json", "--quiet"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<u64> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            json(&output)["version"].as_u64().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, vec![1, 2, 3]);
    for version in versions {
        let loaded = submit::artifact::load_version(
            &dir.path().join(format!("models/concurrent/v{version}")),
        )
        .unwrap();
        assert_eq!(loaded.manifest.job, "concurrent");
    }
}

#[test]
fn loader_reads_latest_and_rejects_future_formats() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("loader", ""));
    let output = run(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert!(output.status.success());
    let latest = dir.path().join("models/loader/latest");
    let loaded = submit::artifact::load_version(&latest).unwrap();
    assert_eq!(loaded.model.als().unwrap().rank, 4);
    assert_eq!(loaded.manifest.params["rank"], 4);
    assert!(loaded.metrics["rmse"].as_f64().is_some());
    let manifest_path = dir.path().join("models/loader/v1/manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replace("\"format_version\": 2", "\"format_version\": 99"),
    )
    .unwrap();
    let error = submit::artifact::load_version(&latest)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("format version 99"), "{error}");
    assert!(error.contains("upgrade submit"), "{error}");
}

#[test]
fn diverging_training_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    // Ratings near f32's limit overflow the normal equations.
    let mut csv = String::from("u,i,r\n");
    for user in 0..20 {
        for item in 0..5 {
            csv.push_str(&format!("{user},{item},3.0e38\n"));
        }
    }
    write(dir.path(), "r.csv", &csv);
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"r.csv\"\n[split]\ntest_fraction = 0.0\n",
    );
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("non-finite"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn ragged_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.csv", "u,i,r\n1,2,3\n3,4,5,6\n7,8,9\n");
    write(dir.path(), "job.toml", "[input]\npath = \"r.csv\"\n");
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("r.csv: line 3 has 4 fields, the first line has 3"),
        "{}",
        stderr(&output)
    );
}
