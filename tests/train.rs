//! Training jobs end to end through the CLI: formats, ids, split and cold start, threads,
//! precedence, progress output, every job in jobs/, and the scripts.

mod common;

use std::path::Path;

use common::*;
use polars::prelude::*;

fn train_ok(dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = run(submit(dir).args(args).args(["--json"]));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        stderr(&output),
        stdout(&output)
    );
    json(&output)
}

#[test]
fn quickstart_publishes_v1_then_v2() {
    let dir = tempfile::tempdir().unwrap();
    // The job publishes into its project (the parent of its jobs/ folder): a copy here.
    let text = std::fs::read_to_string(repository().join("jobs/quickstart.toml")).unwrap();
    let job = write(dir.path(), "jobs/quickstart.toml", &text);
    let job = job.to_str().unwrap();
    let first = train_ok(dir.path(), &[job]);
    assert_eq!(first["version"], 1);
    assert_eq!(first["status"], "ok");
    assert_eq!(first["job"], "quickstart");
    assert_eq!(first["threads"], 2);
    assert!(first["duration_s"].as_f64().unwrap() > 0.0);
    let second = train_ok(dir.path(), &[job]);
    assert_eq!(second["version"], 2);
    let job_dir = dir.path().join("models/quickstart");
    assert_eq!(
        std::fs::read_link(job_dir.join("latest")).unwrap(),
        Path::new("v2")
    );
    for file in [
        "manifest.json",
        "metrics.json",
        "job.resolved.toml",
        "model.als",
    ] {
        assert!(job_dir.join("v1").join(file).is_file(), "{file}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("v1/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["format_version"], 2);
    assert_eq!(manifest["algorithm"], "als");
    assert_eq!(manifest["params"]["rank"], 10);
    assert_eq!(manifest["seed"], 42);
    assert_eq!(manifest["master"], "local[2]");
    assert_eq!(manifest["inputs"][0]["rows"], 100000);
    assert!(manifest["durations_s"]["fit"].as_f64().is_some());
    assert!(manifest["created_at"].as_str().unwrap().ends_with('Z'));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("v1/metrics.json")).unwrap())
            .unwrap();
    assert!(metrics["rmse"].as_f64().unwrap() < 1.0);
    assert!(metrics["peak_heap_bytes"].as_u64().unwrap() > 0);
    // The resolved job runs again as it is and gives the same model.
    let resolved = job_dir.join("v1/job.resolved.toml");
    let third = train_ok(dir.path(), &[resolved.to_str().unwrap()]);
    assert_eq!(third["metrics"]["rmse"], first["metrics"]["rmse"]);
}

#[test]
fn every_job_in_the_jobs_folder_runs() {
    let mut jobs: Vec<_> = std::fs::read_dir(repository().join("jobs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    // Train jobs first: batch jobs read the versions they publish.
    let is_batch = |job: &std::path::PathBuf| {
        let text = std::fs::read_to_string(job).unwrap();
        text.contains("kind = \"recommend\"") || text.contains("kind = \"predict\"")
    };
    jobs.sort_by_key(|job| (is_batch(job), job.clone()));
    assert!(jobs.len() >= 3);
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    for job in jobs {
        let text = std::fs::read_to_string(&job).unwrap();
        if text.contains("shared/data") && !repository().join("../shared/data").is_dir() {
            eprintln!("skipping {} (../shared/data is not here)", job.display());
            continue;
        }
        let job_path = job.to_str().unwrap();
        if is_batch(&job) {
            // Point the batch job at the scratch models and output.
            let from = text
                .lines()
                .find_map(|line| line.strip_prefix("from = \""))
                .and_then(|rest| rest.split('/').rev().nth(1))
                .expect("batch jobs name their model as .../<job>/latest");
            let output = dir.path().join("out.csv");
            let summary = train_ok(
                dir.path(),
                &[
                    job_path,
                    "--conf",
                    &format!("model.from={}", models.join(from).join("latest").display()),
                    "--conf",
                    &format!("output.path={}", output.display()),
                ],
            );
            assert!(output.is_file(), "{}", job.display());
            assert!(
                summary["metrics"]["counts"]["rows_written"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
            continue;
        }
        let mut arguments = vec![
            job_path.to_owned(),
            "--conf".to_owned(),
            format!("output.dir={}", models.display()),
        ];
        if text.contains("/events/") {
            // The feedback job reads the server's event log: one written as the server does.
            let mut events = String::from("user,item,value,timestamp\n");
            for row in 0..3000u64 {
                let user = row % 97;
                let item = (row * 7 + user * 3) % 61;
                events.push_str(&format!(
                    "{user},{item},{},{}.000\n",
                    1 + row % 3,
                    1_796_083_200 + row
                ));
            }
            let log = write(dir.path(), "events/2026-12-01.csv", &events);
            arguments.push("--conf".to_owned());
            arguments.push(format!(
                "input.path={}",
                log.parent().unwrap().join("*.csv").display()
            ));
        }
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let summary = train_ok(dir.path(), &arguments);
        assert!(
            summary["version"].as_u64().unwrap() >= 1,
            "{}",
            job.display()
        );
        // Every train job reports its headline metric.
        let headline = ["rmse", "accuracy", "precision_at_k"]
            .iter()
            .any(|key| summary["metrics"][key].as_f64().is_some());
        assert!(headline, "{}: {summary}", job.display());
    }
}

#[test]
fn spark_sample_movielens_file_loads() {
    let sample = repository().join("../shared/data/sample_movielens_ratings.txt");
    if !sample.is_file() {
        eprintln!("skipping: {} is not here", sample.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No format, separator or header given: all inferred (.txt -> text, `::` sniffed).
    let job = format!(
        "[input]\npath = \"{}\"\n[model]\nmax_iter = 5\n",
        sample.display()
    );
    write(dir.path(), "job.toml", &job);
    let summary = train_ok(dir.path(), &["job.toml"]);
    assert_eq!(summary["metrics"]["counts"]["ratings"], 1501);
    assert_eq!(summary["metrics"]["counts"]["users"], 30);
    assert_eq!(summary["metrics"]["counts"]["items"], 100);
}

#[test]
fn reaches_the_noise_level_on_synthetic_low_rank_data() {
    let dir = tempfile::tempdir().unwrap();
    let job = "[input]\nsynthetic = { kind = \"ratings\", users = 1000, items = 500, ratings = 50000, rank = 4, noise = 0.1 }\n[model]\nrank = 5\nmax_iter = 10\nreg_param = 0.02\n";
    write(dir.path(), "job.toml", job);
    let summary = train_ok(dir.path(), &["job.toml"]);
    let rmse = summary["metrics"]["rmse"].as_f64().unwrap();
    assert!(
        rmse < 0.2,
        "test RMSE {rmse} should be near the noise level 0.1"
    );
}

fn write_frame(dir: &Path, name: &str, format: &str) -> String {
    let mut frame = df!(
        "user" => &["ann", "bob", "cy", "ann", "bob", "cy", "ann", "dee"],
        "item" => &[10i64, 10, 11, 11, 12, 12, 12, 10],
        "rating" => &[4.0f64, 3.0, 5.0, 2.0, 1.0, 4.5, 3.5, 2.5],
        "extra" => &[1i64, 2, 3, 4, 5, 6, 7, 8]
    )
    .unwrap();
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    match format {
        "parquet" => {
            ParquetWriter::new(file).finish(&mut frame).unwrap();
        }
        "ipc" => IpcWriter::new(file).finish(&mut frame).unwrap(),
        "ndjson" => JsonWriter::new(file)
            .with_json_format(JsonFormat::JsonLines)
            .finish(&mut frame)
            .unwrap(),
        _ => unreachable!(),
    }
    name.to_owned()
}

#[test]
fn reads_parquet_ipc_and_ndjson_with_string_ids() {
    for (name, format) in [
        ("r.parquet", "parquet"),
        ("r.arrow", "ipc"),
        ("r.ndjson", "ndjson"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_frame(dir.path(), name, format);
        let job = format!(
            "[input]\npath = \"{name}\"\n[input.columns]\nuser = \"user\"\nitem = \"item\"\nrating = \"rating\"\n[split]\ntest_fraction = 0.0\n[model]\nrank = 2\nmax_iter = 3\n"
        );
        write(dir.path(), "job.toml", &job);
        let summary = train_ok(dir.path(), &["job.toml"]);
        assert_eq!(summary["metrics"]["counts"]["ratings"], 8, "{format}");
        assert_eq!(summary["metrics"]["counts"]["users"], 4, "{format}");
        assert_eq!(summary["metrics"]["counts"]["items"], 3, "{format}");
        // Positions work on self-describing formats too.
        let by_position = job
            .replace("\"user\"", "0")
            .replace("\"item\"", "1")
            .replace("\"rating\"", "2");
        write(dir.path(), "job.toml", &by_position);
        let summary = train_ok(dir.path(), &["job.toml"]);
        assert_eq!(summary["metrics"]["counts"]["users"], 4, "{format}");
    }
}

#[test]
fn string_ids_survive_into_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(dir.path(), "r.parquet", "parquet");
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"r.parquet\"\n[split]\ntest_fraction = 0.0\n[model]\nrank = 2\nmax_iter = 2\n",
    );
    let summary = train_ok(dir.path(), &["job.toml"]);
    let version = submit::artifact::load_version(Path::new(
        summary["version_dir"]
            .as_str()
            .map(|d| dir.path().join(d))
            .unwrap()
            .as_path(),
    ))
    .unwrap();
    assert_eq!(
        version.model.als().unwrap().user_ids,
        submit::dataset::Ids::Text(vec!["ann".into(), "bob".into(), "cy".into(), "dee".into()])
    );
    assert_eq!(
        version.model.als().unwrap().item_ids,
        submit::dataset::Ids::Integer(vec![10, 11, 12])
    );
    assert_eq!(version.model.als().unwrap().user_factors.len(), 4 * 2);
}

#[test]
fn csv_tsv_and_text_with_names_positions_and_separators() {
    let dir = tempfile::tempdir().unwrap();
    let csv = ratings_csv(50, true);
    write(dir.path(), "r.csv", &csv);
    write(dir.path(), "r.tsv", &csv.replace(',', "\t"));
    write(
        dir.path(),
        "r.dat",
        &ratings_csv(50, false).replace(',', "::"),
    );
    write(dir.path(), "r.psv", &csv.replace(',', "|"));
    for (path, extra) in [
        (
            "r.csv",
            "[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n",
        ),
        ("r.tsv", ""),
        ("r.dat", "separator = \"::\"\n"),
        ("r.psv", "format = \"csv\"\nseparator = \"|\"\n"),
    ] {
        let job = format!("[input]\npath = \"{path}\"\n{extra}");
        write(dir.path(), "job.toml", &job);
        let summary = train_ok(dir.path(), &["job.toml", "--conf", "model.max_iter=2"]);
        assert_eq!(summary["metrics"]["counts"]["ratings"], 300, "{path}");
        assert_eq!(summary["metrics"]["counts"]["users"], 50, "{path}");
    }
}

/// A plain numeric CSV is read by submit's own reader, the same rows with a quoted header by
/// polars: the models must be byte for byte the same.
#[test]
fn the_numeric_reader_and_polars_train_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("userId,movieId,rating,note\n");
    for (row, line) in ratings_csv(80, false).lines().enumerate() {
        // Ratings of several shapes: integers, decimals, an exponent, a trailing point.
        let line = match row % 4 {
            0 => line.replace(".5", "5e-1"),
            1 => format!("{line}0"),
            _ => line.to_owned(),
        };
        csv.push_str(&format!("{line},n{row}\n"));
    }
    write(dir.path(), "plain.csv", &csv);
    let quoted = csv.replacen(
        "userId,movieId,rating,note",
        "\"userId\",\"movieId\",\"rating\",\"note\"",
        1,
    );
    write(dir.path(), "quoted.csv", &quoted);
    let mut models = Vec::new();
    for name in ["plain", "quoted"] {
        let job = format!(
            "[job]\nname = \"{name}\"\n[input]\npath = \"{name}.csv\"\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n[model]\nmax_iter = 3\n"
        );
        write(dir.path(), "job.toml", &job);
        let summary = train_ok(dir.path(), &["job.toml"]);
        assert_eq!(summary["metrics"]["counts"]["ratings"], 480, "{name}");
        models.push((
            std::fs::read(dir.path().join(format!("models/{name}/v1/model.als"))).unwrap(),
            summary["metrics"]["rmse"].clone(),
        ));
    }
    assert_eq!(models[0].1, models[1].1);
    assert!(
        models[0].0 == models[1].0,
        "model.als differs between the two readers"
    );
}

#[test]
fn several_paths_a_glob_limit_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/part-1.csv", &ratings_csv(20, true));
    write(dir.path(), "data/part-2.csv", &ratings_csv(30, true));
    write(
        dir.path(),
        "jobs/glob.toml",
        "[input]\npath = \"../data/part-*.csv\"\n",
    );
    let summary = train_ok(dir.path(), &["jobs/glob.toml"]);
    assert_eq!(summary["metrics"]["counts"]["ratings"], 300);
    assert_eq!(summary["metrics"]["counts"]["users"], 30);
    write(
        dir.path(),
        "jobs/paths.toml",
        "[input]\npaths = [\"../data/part-1.csv\", \"../data/part-2.csv\"]\nlimit = 150\n",
    );
    let summary = train_ok(dir.path(), &["jobs/paths.toml"]);
    assert_eq!(summary["metrics"]["counts"]["rows_read"], 150);
    let summary = train_ok(
        dir.path(),
        &["jobs/glob.toml", "--conf", "input.sample_fraction=0.5"],
    );
    let kept = summary["metrics"]["counts"]["ratings"].as_u64().unwrap();
    assert!((100..200).contains(&kept), "kept {kept} of 300");
}

#[test]
fn null_policy_error_or_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = ratings_csv(10, true);
    csv.push_str("3,7,\n");
    write(dir.path(), "r.csv", &csv);
    write(dir.path(), "job.toml", "[input]\npath = \"r.csv\"\n");
    let output = run(submit(dir.path()).arg("job.toml"));
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.contains("r.csv: row 61 (line 62), column rating: missing value"),
        "{message}"
    );
    let summary = train_ok(
        dir.path(),
        &["job.toml", "--conf", "input.null_policy=\"drop\""],
    );
    assert_eq!(summary["metrics"]["counts"]["rows_dropped_null"], 1);
    assert_eq!(summary["metrics"]["counts"]["ratings"], 60);
}

#[test]
fn cold_start_rows_are_dropped_or_counted_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    // Many users with a single rating: some of those land only in the test split.
    let mut csv = ratings_csv(30, true);
    for user in 100..160 {
        csv.push_str(&format!("{user},1,3.0\n"));
    }
    write(dir.path(), "r.csv", &csv);
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"r.csv\"\n[model]\nmax_iter = 3\n",
    );
    let nan = train_ok(dir.path(), &["job.toml"]);
    let counts = &nan["metrics"]["counts"];
    let cold = counts["test_cold_start"].as_u64().unwrap();
    assert!(cold > 0);
    assert_eq!(counts["test_missing_predictions"].as_u64(), Some(cold));
    assert_eq!(
        counts["test_predicted"].as_u64().unwrap() + cold,
        counts["test_ratings"].as_u64().unwrap()
    );
    assert!(
        nan["metrics"]["rmse"].as_f64().unwrap().is_finite(),
        "metrics never become NaN"
    );
    let drop = train_ok(
        dir.path(),
        &["job.toml", "--conf", "model.cold_start_strategy=\"drop\""],
    );
    assert_eq!(
        drop["metrics"]["counts"]["test_cold_start_dropped"].as_u64(),
        Some(cold)
    );
    assert_eq!(drop["metrics"]["rmse"], nan["metrics"]["rmse"]);
}

#[test]
fn same_model_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("threads", ""));
    let one = train_ok(dir.path(), &["job.toml", "--master", "local"]);
    let three = train_ok(dir.path(), &["job.toml", "--master", "local[3]"]);
    assert_eq!(one["threads"], 1);
    assert_eq!(three["threads"], 3);
    assert_eq!(one["metrics"]["threads"], 1);
    let model = |summary: &serde_json::Value| {
        std::fs::read(
            dir.path()
                .join(summary["version_dir"].as_str().unwrap())
                .join("model.als"),
        )
        .unwrap()
    };
    assert_eq!(model(&one), model(&three));
    assert_eq!(one["metrics"]["rmse"], three["metrics"]["rmse"]);
}

#[test]
fn precedence_defaults_file_job_flags_conf() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "site.toml",
        "[job]\nmaster = \"local[3]\"\nseed = 5\n[model]\nrank = 3\n",
    );
    write(
        dir.path(),
        "job.toml",
        &synthetic_job("precedence", "").replace("master = \"local[2]\"\n", ""),
    );
    let summary = train_ok(dir.path(), &["job.toml", "--properties-file", "site.toml"]);
    assert_eq!(summary["threads"], 3, "defaults file applies");
    let manifest = |summary: &serde_json::Value| -> serde_json::Value {
        let path = dir
            .path()
            .join(summary["version_dir"].as_str().unwrap())
            .join("manifest.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert_eq!(manifest(&summary)["seed"], 5);
    assert_eq!(
        manifest(&summary)["params"]["rank"],
        4,
        "job file beats defaults file"
    );
    let summary = train_ok(
        dir.path(),
        &[
            "job.toml",
            "--properties-file",
            "site.toml",
            "--master",
            "local[2]",
            "--name",
            "renamed",
        ],
    );
    assert_eq!(summary["threads"], 2, "flag beats defaults file");
    assert_eq!(summary["job"], "renamed");
    let summary = train_ok(
        dir.path(),
        &[
            "job.toml",
            "--master",
            "local[2]",
            "--conf",
            "job.master=local[1]",
            "--conf",
            "model.rank=6",
        ],
    );
    assert_eq!(summary["threads"], 1, "--conf beats flags");
    assert_eq!(manifest(&summary)["params"]["rank"], 6);
    // conf/defaults.toml in the working directory is picked up without a flag.
    write(
        dir.path(),
        "conf/defaults.toml",
        "[job]\nmaster = \"local[3]\"\n",
    );
    let output = run(submit(dir.path())
        .env_remove("SUBMIT_CONF_DIR")
        .args(["job.toml", "--json"]));
    assert_eq!(json(&output)["threads"], 3);
}

#[test]
fn dry_run_prints_the_resolved_job_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", "[input]\npath = \"missing.csv\"\n");
    let output = run(submit(dir.path()).args(["job.toml", "--dry-run", "--conf", "model.rank=7"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let resolved = stdout(&output);
    assert!(resolved.contains("rank = 7"), "{resolved}");
    assert!(resolved.contains("name = \"job\""), "{resolved}");
    assert!(resolved.contains("format = \"csv\""), "{resolved}");
    assert!(!dir.path().join("models").exists());
    let output = run(submit(dir.path()).args(["job.toml", "--dry-run", "--json"]));
    let object = json(&output);
    assert_eq!(object["dry_run"], true);
    assert!(object["resolved"].as_str().unwrap().contains("[model]"));
}

#[test]
fn progress_is_plain_lines_off_a_terminal_and_silent_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", &synthetic_job("progress", ""));
    let output = run(submit(dir.path()).arg("job.toml"));
    let text = stderr(&output);
    assert!(!text.contains('\u{1b}'), "no control characters: {text:?}");
    assert!(text.contains("training als 8/8 train_rmse"), "{text}");
    assert!(
        text.lines().next().unwrap().starts_with("20"),
        "timestamped: {text}"
    );
    assert!(
        text.contains("published ") && text.contains("models/progress/v1"),
        "{text}"
    );
    let output = run(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(0));
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
}

#[test]
fn help_documents_flags_precedence_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(submit(dir.path()).arg("--help"));
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for words in [
        "--master",
        "--driver-memory",
        "--executor-memory",
        "--conf",
        "--name",
        "--verbose",
        "--properties-file",
        "--dry-run",
        "--engine",
        "--quiet",
        "--json",
        "precedence",
        "Exit codes",
    ] {
        assert!(help.contains(words), "--help lacks {words}");
    }
}

#[test]
fn scripts_ci_smoke_runs_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("bash")
        .arg(repository().join("scripts/ci-smoke.sh"))
        .current_dir(repository())
        .env("SUBMIT_BIN", binary())
        .env("SMOKE_OUTPUT_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("quickstart"),
        "{}",
        stdout(&output)
    );
    // Another project's job folder, given as the argument.
    let project = tempfile::tempdir().unwrap();
    write(project.path(), "jobs/mine.toml", &synthetic_job("mine", ""));
    let scratch = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("bash")
        .arg(repository().join("scripts/ci-smoke.sh"))
        .arg(project.path().join("jobs"))
        .env("SUBMIT_BIN", binary())
        .env("SMOKE_OUTPUT_DIR", scratch.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "ok   mine");
    assert!(scratch.path().join("mine/v1/manifest.json").is_file());
    let output = std::process::Command::new("bash")
        .arg(repository().join("scripts/ci-smoke.sh"))
        .arg(project.path().join("nowhere"))
        .env("SUBMIT_BIN", binary())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn scripts_nightly_retrain_logs_and_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.toml", &synthetic_job("nightly", ""));
    write(
        dir.path(),
        "bad.toml",
        "[model]\nrank = 0\n[input]\npath = \"r.csv\"\n",
    );
    let log = dir.path().join("nightly.log");
    let nightly = |job: &str| {
        std::process::Command::new("bash")
            .arg(repository().join("scripts/nightly-retrain.sh"))
            .arg(job)
            .current_dir(dir.path())
            .env("SUBMIT_BIN", binary())
            .env("SUBMIT_LOG", &log)
            .env("SUBMIT_CONF_DIR", dir.path().join("no-conf"))
            .output()
            .unwrap()
    };
    let output = nightly("good.toml");
    assert!(
        output.status.success(),
        "{:?} {} {}",
        output.status,
        stderr(&output),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        stdout(&output).is_empty() && stderr(&output).is_empty(),
        "quiet under cron"
    );
    let output = nightly("bad.toml");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("failed with exit code 2"),
        "{}",
        stderr(&output)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    assert!(
        text.contains("=== exit code 0") && text.contains("=== exit code 2"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no control characters in the log");
    // Exit 6 (published, not promoted) is logged as what it is, not as a failure.
    write(
        dir.path(),
        "gated.toml",
        &synthetic_job(
            "nightly",
            "[output]\npromote = \"if_better\"\nmin_improvement = 1000.0\n",
        ),
    );
    let output = std::process::Command::new("bash")
        .arg(repository().join("scripts/nightly-retrain.sh"))
        .args(["gated.toml", "--fail-if-not-promoted"])
        .current_dir(dir.path())
        .env("SUBMIT_BIN", binary())
        .env("SUBMIT_LOG", &log)
        .env("SUBMIT_CONF_DIR", dir.path().join("no-conf"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert!(
        stderr(&output).contains("published a new version, but the promotion gate kept latest"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn implicit_feedback_beats_popularity_on_ranking_metrics() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.toml",
        "[input]\nsynthetic = { kind = \"interactions\", users = 2000, items = 800, ratings = 40000, rank = 8 }\n[model]\nimplicit_prefs = true\nrank = 16\nmax_iter = 10\nreg_param = 0.05\n[eval]\nk = 10\n",
    );
    let summary = train_ok(dir.path(), &["job.toml"]);
    let metrics = &summary["metrics"];
    let precision = metrics["precision_at_k"].as_f64().unwrap();
    let baseline = metrics["ranking"]["popularity_baseline"]["precision_at_k"]
        .as_f64()
        .unwrap();
    assert!(
        precision > 2.0 * baseline,
        "precision@10 {precision} vs popularity {baseline}"
    );
    for key in ["recall_at_k", "ndcg_at_k", "map_at_k"] {
        let value = metrics[key].as_f64().unwrap();
        assert!(
            value
                > metrics["ranking"]["popularity_baseline"][key]
                    .as_f64()
                    .unwrap(),
            "{key}"
        );
        assert!((0.0..=1.0).contains(&value), "{key} {value}");
    }
    assert!(
        metrics["rmse"].is_null(),
        "no RMSE of counts for implicit feedback"
    );
    assert_eq!(metrics["ranking"]["k"], 10);
    // The exact solver gives nearly the same ranking quality as conjugate gradient.
    let exact = train_ok(
        dir.path(),
        &["job.toml", "--conf", "model.solver=\"cholesky\""],
    );
    let exact_precision = exact["metrics"]["precision_at_k"].as_f64().unwrap();
    assert!(
        (exact_precision - precision).abs() < 0.01,
        "{exact_precision} vs {precision}"
    );
}

#[test]
fn a_warm_started_als_reaches_the_base_rmse_in_fewer_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str, extra: &str| {
        format!(
            "[job]\nname = \"{name}\"\n[input]\nsynthetic = {{ kind = \"ratings\", users = 600, items = 300, ratings = 30000, rank = 6, noise = 0.3, seed = 4 }}\n[model]\nrank = 8\nreg_param = 0.05\n{extra}\n"
        )
    };
    write(dir.path(), "base.toml", &job("base", "max_iter = 12"));
    write(dir.path(), "fresh.toml", &job("fresh", "max_iter = 2"));
    write(
        dir.path(),
        "warm.toml",
        &job("warm", "max_iter = 2\ninit_from = \"models/base/latest\""),
    );
    let rmse = |file: &str| {
        train_ok(dir.path(), &[file])["metrics"]["rmse"]
            .as_f64()
            .unwrap()
    };
    let base = rmse("base.toml");
    let (fresh, warm) = (rmse("fresh.toml"), rmse("warm.toml"));
    assert!(warm <= base * 1.005, "warm {warm} vs base {base}");
    assert!(fresh > warm * 1.02, "fresh {fresh} vs warm {warm}");
    write(
        dir.path(),
        "rank.toml",
        &job(
            "rank",
            "max_iter = 2\nrank = 4\ninit_from = \"models/base/latest\"",
        )
        .replace("rank = 8\n", ""),
    );
    let output = run(submit(dir.path()).args(["rank.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the base has rank 8"),
        "{}",
        stderr(&output)
    );
}
