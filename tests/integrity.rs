//! Integrity: model files are checked against their manifest and for structure before any use,
//! damaged versions are reported (exit 3, naming the file) by every command that touches them,
//! and the registry never points `latest` at a bad version.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALS_JOB: &str = "[job]\nname = \"als\"\nmaster = \"local[2]\"\n[input]\nsynthetic = { kind = \"ratings\", users = 60, items = 40, ratings = 900, rank = 2 }\n[model]\nrank = 3\nmax_iter = 3\n";
const GBT_JOB: &str = "[job]\nname = \"gbt\"\nmaster = \"local[2]\"\n[input]\nsynthetic = { kind = \"classification\", rows = 400, features = 3 }\n[model]\nalgorithm = \"gbt\"\nmax_iter = 3\nmax_depth = 2\n";
const FOREST_JOB: &str = "[job]\nname = \"forest\"\nmaster = \"local[2]\"\n[input]\nsynthetic = { kind = \"classification\", rows = 400, features = 3, classes = 3 }\n[model]\nalgorithm = \"random_forest\"\nnum_trees = 3\nmax_depth = 3\n";

/// Runs a command, killing it after 60 s: a hang fails the test instead of stalling it.
fn run_bounded(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the command hung (killed after 60 s): {command:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records the version's files in its manifest again, as if the damage had been published:
/// what reaches the structural checks behind the hash check.
fn rehash(version: &Path) {
    let manifest_path = version.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let files = submit::artifact::verify::record_files(version).unwrap();
    manifest["files"] = serde_json::to_value(files).unwrap();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
}

/// A directory with the three jobs trained, plus predict and recommend jobs on their versions.
fn trained() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    write(dir.path(), "gbt.toml", GBT_JOB);
    write(dir.path(), "forest.toml", FOREST_JOB);
    for job in ["als.toml", "gbt.toml", "forest.toml"] {
        ok_json(dir.path(), &[job]);
    }
    write(dir.path(), "rows.csv", "f0,f1,f2\n0.1,0.2,0.3\n-1,2,0.5\n");
    write(dir.path(), "pairs.csv", "user,item\n1,1\n2,3\n");
    for (name, from, input) in [
        ("predict-gbt", "models/gbt/latest", "rows.csv"),
        ("predict-forest", "models/forest/latest", "rows.csv"),
        ("predict-als", "models/als/latest", "pairs.csv"),
    ] {
        let columns = if name == "predict-als" {
            "[input.columns]\nuser = \"user\"\nitem = \"item\"\n"
        } else {
            ""
        };
        write(
            dir.path(),
            &format!("{name}.toml"),
            &format!(
                "[job]\nkind = \"predict\"\n[model]\nfrom = \"{from}\"\n[input]\npath = \"{input}\"\n{columns}[output]\npath = \"out/{name}.csv\"\n"
            ),
        );
    }
    write(
        dir.path(),
        "recommend.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/als/latest\"\n[output]\npath = \"out/recs.csv\"\n",
    );
    dir
}

/// Runs `job` and asserts exit 3 with a message naming `file` and containing `words`.
fn refused(dir: &Path, job: &str, file: &str, words: &[&str]) {
    let output = run_bounded(submit(dir).args([job, "--quiet"]));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{job}: {text}");
    assert!(text.contains(file), "{job}: {text}");
    for word in words {
        assert!(text.contains(word), "{job}: expected {word:?} in {text}");
    }
    assert!(!text.contains("internal error"), "{text}");
}

#[test]
fn flipped_bits_and_truncations_of_every_model_file_are_refused_never_a_hang_or_panic() {
    let dir = trained();
    for (job, version, file) in [
        ("predict-gbt.toml", "models/gbt/v1", "model.trees.json"),
        (
            "predict-forest.toml",
            "models/forest/v1",
            "model.trees.json",
        ),
        ("predict-als.toml", "models/als/v1", "model.als"),
        ("recommend.toml", "models/als/v1", "model.als"),
        ("predict-gbt.toml", "models/gbt/v1", "metrics.json"),
        ("recommend.toml", "models/als/v1", "user_factors.parquet"),
    ] {
        let path = dir.path().join(version).join(file);
        let original = std::fs::read(&path).unwrap();
        let positions = [
            0,
            7,
            original.len() / 3,
            original.len() / 2,
            original.len() - 1,
        ];
        for (round, &at) in positions.iter().enumerate() {
            let mut damaged = original.clone();
            damaged[at] ^= 1 << (round % 8);
            std::fs::write(&path, &damaged).unwrap();
            refused(dir.path(), job, file, &["do not match"]);
            // Published that way (manifest re-hashed): the structural checks must catch or
            // survive it, without hanging or panicking.
            std::fs::copy(
                dir.path().join(version).join("manifest.json"),
                dir.path().join("manifest.keep"),
            )
            .unwrap();
            rehash(&dir.path().join(version));
            let output = run_bounded(submit(dir.path()).args([job, "--quiet"]));
            assert!(
                matches!(output.status.code(), Some(0) | Some(3)),
                "{file} byte {at}: {}",
                stderr(&output)
            );
            assert!(!stderr(&output).contains("internal error"));
            std::fs::copy(
                dir.path().join("manifest.keep"),
                dir.path().join(version).join("manifest.json"),
            )
            .unwrap();
        }
        for cut in [0, original.len() / 2, original.len() - 1] {
            std::fs::write(&path, &original[..cut]).unwrap();
            refused(dir.path(), job, file, &["truncated"]);
        }
        std::fs::write(&path, &original).unwrap();
        let output = run_bounded(submit(dir.path()).args([job, "--quiet"]));
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
}

/// Edits `model.trees.json` of `version` with `edit`, re-hashes the manifest, and expects the
/// predict job to refuse it with `words`.
fn edited_trees(
    dir: &Path,
    version: &str,
    job: &str,
    edit: impl Fn(&mut serde_json::Value),
    words: &[&str],
) {
    let path = dir.join(version).join("model.trees.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut model: serde_json::Value = serde_json::from_str(&original).unwrap();
    edit(&mut model);
    std::fs::write(&path, model.to_string()).unwrap();
    rehash(&dir.join(version));
    refused(dir, job, "model.trees.json", words);
    std::fs::write(&path, original).unwrap();
    rehash(&dir.join(version));
}

fn first_split(model: &mut serde_json::Value) -> &mut serde_json::Value {
    let nodes = model["model"]["trees"][0]["nodes"].as_array_mut().unwrap();
    nodes
        .iter_mut()
        .find(|node| node.get("split").is_some())
        .map(|node| &mut node["split"])
        .unwrap()
}

#[test]
fn structurally_broken_tree_models_are_refused_by_name() {
    let dir = trained();
    let dir = dir.path();
    // A child pointing back at the root: scoring would loop forever.
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| first_split(model)["left"] = 0.into(),
        &["reached twice"],
    );
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| first_split(model)["right"] = 999_999.into(),
        &["node 999999"],
    );
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| first_split(model)["feature"] = 99.into(),
        &["feature 99"],
    );
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| model["model"]["trees"][0]["nodes"] = serde_json::json!([]),
        &["no nodes"],
    );
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| model["model"]["classes"] = 5.into(),
        &["classes = 5"],
    );
    edited_trees(
        dir,
        "models/gbt/v1",
        "predict-gbt.toml",
        |model| {
            model["feature_names"].as_array_mut().unwrap().pop();
        },
        &["features"],
    );
    edited_trees(
        dir,
        "models/forest/v1",
        "predict-forest.toml",
        |model| {
            let nodes = model["model"]["trees"][0]["nodes"].as_array_mut().unwrap();
            let leaf = nodes
                .iter_mut()
                .find(|node| node.get("leaf").is_some())
                .unwrap();
            leaf["leaf"]["value"] = serde_json::json!([0.5]);
        },
        &["leaf", "holds 1 values"],
    );
}

/// The byte offset of the first user factor in `model.als` (after magic, layout, rank and the
/// integer user ids).
fn first_user_factor(bytes: &[u8]) -> usize {
    assert_eq!(bytes[16], 0, "integer user ids");
    let users = u64::from_le_bytes(bytes[17..25].try_into().unwrap()) as usize;
    25 + users * 8
}

#[test]
fn broken_als_models_are_refused_by_name() {
    let dir = trained();
    let version = dir.path().join("models/als/v1");
    let path = version.join("model.als");
    let original = std::fs::read(&path).unwrap();
    let factor = first_user_factor(&original);
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    for (value, word) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut bytes = original.clone();
        bytes[factor..factor + 4].copy_from_slice(&value.to_le_bytes());
        cases.push((bytes, word));
    }
    let mut duplicated = original.clone();
    let second_id: [u8; 8] = duplicated[33..41].try_into().unwrap();
    duplicated[25..33].copy_from_slice(&second_id);
    cases.push((duplicated, "appears twice"));
    let mut huge = original.clone();
    huge[17..25].copy_from_slice(&(1u64 << 33).to_le_bytes());
    cases.push((huge, "user ids"));
    for (bytes, word) in cases {
        std::fs::write(&path, &bytes).unwrap();
        rehash(&version);
        refused(dir.path(), "recommend.toml", "model.als", &[word]);
        refused(dir.path(), "predict-als.toml", "model.als", &[word]);
    }
}

#[test]
fn missing_files_show_in_list_show_and_verify() {
    let dir = trained();
    let verified = ok_json(dir.path(), &["models", "verify", "models"]);
    assert_eq!(verified["verified"].as_array().unwrap().len(), 3);
    std::fs::remove_file(dir.path().join("models/als/v1/model.als")).unwrap();
    let listed = ok_json(dir.path(), &["models", "list", "models/als"]);
    let version = &listed["jobs"][0]["versions"][0];
    assert_eq!(version["complete"], false, "{listed}");
    assert!(version["problem"].as_str().unwrap().contains("model.als"));
    let shown = run_bounded(submit(dir.path()).args(["models", "show", "models/als/v1"]));
    assert_eq!(shown.status.code(), Some(3));
    assert!(stderr(&shown).contains("missing"), "{}", stderr(&shown));
    let verify = run_bounded(submit(dir.path()).args(["models", "verify", "models", "--json"]));
    assert_eq!(verify.status.code(), Some(3));
    let error = json(&verify);
    assert!(
        error["error"].as_str().unwrap().contains("model.als"),
        "{error}"
    );
    // A Parquet export deleted: the other jobs still verify one by one.
    ok_json(dir.path(), &["models", "verify", "models/gbt"]);
    std::fs::remove_file(dir.path().join("models/gbt/v1/model.lgb.txt")).unwrap();
    let verify = run_bounded(submit(dir.path()).args(["models", "verify", "models/gbt/v1"]));
    assert_eq!(verify.status.code(), Some(3));
    assert!(stderr(&verify).contains("model.lgb.txt"));
}

#[test]
fn promote_and_rollback_refuse_damaged_versions_and_rollback_follows_the_history() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "als.toml",
        &format!("{ALS_JOB}[output]\npromote = \"if_better\"\n"),
    );
    ok_json(dir.path(), &["als.toml"]);
    // v2..v5: far too much regularization, so the gate keeps v1.
    for _ in 2..=5 {
        let worse = ok_json(dir.path(), &["als.toml", "--conf", "model.reg_param=50.0"]);
        assert_eq!(worse["promoted"], false);
    }
    ok_json(dir.path(), &["models", "promote", "models/als/v5"]);
    let rolled = ok_json(dir.path(), &["models", "rollback", "models/als"]);
    assert_eq!(
        rolled["latest"], 1,
        "back to the previously promoted version, not v4"
    );
    let history = ok_json(dir.path(), &["models", "history", "models/als"]);
    let entries = history["history"].as_array().unwrap();
    let moves: Vec<(serde_json::Value, &str)> = entries
        .iter()
        .map(|entry| (entry["to"].clone(), entry["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        [
            (1.into(), "run"),
            (5.into(), "promote"),
            (1.into(), "rollback")
        ]
    );

    // A hand-made v6 with a garbage manifest is never promoted.
    write(dir.path(), "models/als/v6/manifest.json", "{ garbage");
    let promote = run_bounded(submit(dir.path()).args(["models", "promote", "models/als/v6"]));
    assert_eq!(promote.status.code(), Some(3), "{}", stderr(&promote));
    assert!(stderr(&promote).contains("manifest.json"));
    // A damaged promoted version is skipped by rollback, which says so.
    ok_json(dir.path(), &["models", "promote", "models/als/v3"]);
    ok_json(dir.path(), &["models", "promote", "models/als/v4"]);
    std::fs::write(dir.path().join("models/als/v3/model.als"), b"damaged").unwrap();
    let rolled = ok_json(dir.path(), &["models", "rollback", "models/als"]);
    assert_eq!(rolled["latest"], 1, "{rolled}");
    assert_eq!(rolled["skipped"][0]["version"], 3);
    assert_eq!(
        std::fs::read_link(dir.path().join("models/als/latest")).unwrap(),
        Path::new("v1")
    );
}

#[test]
fn promote_racing_gc_never_leaves_latest_on_a_deleted_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    let job_dir = dir.path().join("models/als");
    for round in 0..40 {
        // Two versions, latest on the newer; then promote the older while gc keeps one.
        ok_json(dir.path(), &["als.toml"]);
        ok_json(dir.path(), &["als.toml"]);
        let versions = submit::artifact::store::versions(&job_dir).unwrap();
        let old = versions[versions.len() - 2];
        let promote = submit(dir.path())
            .args([
                "models",
                "promote",
                &format!("models/als/v{old}"),
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gc =
            run_bounded(submit(dir.path()).args(["models", "gc", "models/als", "--keep", "1"]));
        assert!(gc.status.success(), "{}", stderr(&gc));
        let _ = promote.wait_with_output();
        let latest = submit::artifact::store::current_latest(&job_dir);
        assert!(
            latest.is_some(),
            "round {round}: latest points at a deleted version"
        );
        submit::artifact::verify_version(&latest.unwrap().1).unwrap();
    }
}

#[test]
fn a_staging_directory_held_by_a_live_writer_survives_whatever_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    // As a writer in another PID namespace leaves it: a pid this namespace cannot see, and
    // the directory locked by a live process (this one).
    let live = dir.path().join("models/als/.staging-999999999-1");
    std::fs::create_dir_all(&live).unwrap();
    let holder = std::fs::File::open(&live).unwrap();
    holder.lock().unwrap();
    let dead = dir.path().join("models/als/.staging-1-2");
    std::fs::create_dir_all(&dead).unwrap();
    ok_json(dir.path(), &["als.toml"]);
    assert!(
        live.is_dir(),
        "a live writer's staging directory was removed"
    );
    assert!(
        !dead.exists(),
        "an unheld staging directory is stale, whatever its pid"
    );
    drop(holder);
    ok_json(dir.path(), &["als.toml"]);
    assert!(!live.exists());
}

#[test]
fn version_numbers_are_64_bit_and_the_impossible_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    ok_json(dir.path(), &["als.toml"]);
    std::fs::rename(
        dir.path().join("models/als/v1"),
        dir.path().join("models/als/v4294967295"),
    )
    .unwrap();
    let next = ok_json(dir.path(), &["als.toml"]);
    assert_eq!(next["version"], 4_294_967_296u64);
    std::fs::write(
        dir.path().join("models/als/.last-version"),
        u64::MAX.to_string(),
    )
    .unwrap();
    let output = run_bounded(submit(dir.path()).args(["als.toml", "--quiet"]));
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("largest number"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("internal error"));
}

#[test]
fn latest_replaced_by_a_directory_is_explained_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    ok_json(dir.path(), &["als.toml"]);
    let latest = dir.path().join("models/als/latest");
    std::fs::remove_file(&latest).unwrap();
    std::fs::create_dir(&latest).unwrap();
    let output = run_bounded(submit(dir.path()).args(["als.toml", "--json"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = json(&output);
    assert_eq!(summary["version"], 2);
    assert_eq!(summary["promoted"], false);
    assert!(stderr(&output).contains("published v2 but latest could not move"));
    assert!(stderr(&output).contains("is a directory"));
    let listed = ok_json(dir.path(), &["models", "list", "models/als"]);
    assert!(
        listed["jobs"][0]["latest_problem"]
            .as_str()
            .unwrap()
            .contains("a directory")
    );
    let human = run_bounded(submit(dir.path()).args(["models", "list", "models/als"]));
    assert!(stdout(&human).contains("note: `latest` is a directory"));
}

#[test]
fn skip_unchanged_publishes_nothing_when_inputs_and_job_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ratings.csv", &ratings_csv(40, true));
    write(
        dir.path(),
        "job.toml",
        "[job]\nname = \"nightly\"\n[input]\npath = \"ratings.csv\"\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n[model]\nrank = 2\nmax_iter = 2\n[output]\nskip_unchanged = true\n",
    );
    assert_eq!(ok_json(dir.path(), &["job.toml"])["version"], 1);
    let again = ok_json(dir.path(), &["job.toml", "--fail-if-not-promoted"]);
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["version"], 1);
    assert!(!dir.path().join("models/nightly/v2").exists());
    let human = run_bounded(submit(dir.path()).args(["job.toml"]));
    assert!(stderr(&human).contains("unchanged"), "{}", stderr(&human));
    // Changed parameters or changed data: a new version.
    assert_eq!(
        ok_json(dir.path(), &["job.toml", "--conf", "model.rank=3"])["version"],
        2
    );
    write(dir.path(), "ratings.csv", &ratings_csv(41, true));
    let changed = ok_json(dir.path(), &["job.toml", "--conf", "model.rank=3"]);
    assert_eq!(changed["version"], 3);
}

#[test]
fn non_regular_inputs_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ratings.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (path, word) in [
        (fifo.display().to_string(), "named pipe"),
        ("/dev/zero".to_owned(), "character device"),
    ] {
        write(
            dir.path(),
            "job.toml",
            &format!("[input]\npath = \"{path}\"\nformat = \"csv\"\n"),
        );
        let output = run_bounded(submit(dir.path()).args(["job.toml", "--quiet"]));
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        assert!(stderr(&output).contains(word), "{}", stderr(&output));
        assert!(stderr(&output).contains(&path));
    }
}

#[test]
fn compressed_and_utf16_inputs_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mut utf16 = vec![0xff, 0xfe];
    for unit in "user,item,rating\n1,2,3\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    std::fs::write(dir.path().join("r.csv"), utf16).unwrap();
    write(dir.path(), "job.toml", "[input]\npath = \"r.csv\"\n");
    let output = run_bounded(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("UTF-16 text, not UTF-8"),
        "{}",
        stderr(&output)
    );
    std::fs::write(dir.path().join("r.csv"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let output = run_bounded(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("gunzip"), "{}", stderr(&output));
    std::fs::write(dir.path().join("r.csv"), [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
    let output = run_bounded(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("zstd-compressed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn io_errors_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "als.toml", ALS_JOB);
    // A file where the output folder should be: the cause appears once, with the path.
    write(dir.path(), "models", "not a folder");
    let output = run_bounded(submit(dir.path()).args(["als.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    let cause = "Not a directory";
    assert_eq!(text.matches(cause).count(), 1, "{text}");
}

#[test]
fn a_named_column_in_a_file_read_without_a_header_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "adult.data",
        "39, State-gov, <=50K\n50, Private, >50K\n",
    );
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"adult.data\"\n[input.columns]\nlabel = \"income\"\n[model]\nalgorithm = \"gbt\"\n",
    );
    let output = run_bounded(submit(dir.path()).args(["job.toml", "--quiet"]));
    assert_eq!(output.status.code(), Some(3));
    let text = stderr(&output);
    assert!(text.contains("read without a header"), "{text}");
    assert!(text.contains("input.header = true"), "{text}");
}

#[test]
fn a_huge_single_line_is_not_repeated_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "wide.csv", &"x".repeat(2_000_000));
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"wide.csv\"\n[input.columns]\nuser = \"user\"\n",
    );
    let output = run_bounded(submit(dir.path()).args(["job.toml", "--json"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).len() < 2_000,
        "{} bytes on stderr",
        stderr(&output).len()
    );
    assert!(stdout(&output).len() < 2_000);
    assert!(stderr(&output).contains("more characters"));
}

#[test]
fn globs_are_linear_literal_names_win_and_directories_match() {
    let dir = tempfile::tempdir().unwrap();
    let body = ratings_csv(20, true);
    write(dir.path(), "ratings[2024].csv", &body);
    write(dir.path(), "events/dt=2026-11-01/part-0.csv", &body);
    write(dir.path(), "events/dt=2026-11-02/part-0.csv", &body);
    write(dir.path(), &"a".repeat(60), "");
    let columns = "[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n";
    let slow = format!("{}b.csv", "*a".repeat(30));
    for (pattern, expected) in [
        ("ratings[2024].csv", Some(1)),
        ("events/dt=2026-11-*/part-*.csv", Some(2)),
        ("events/**/*.csv", Some(2)),
        (slow.as_str(), None),
    ] {
        write(
            dir.path(),
            "job.toml",
            &format!("[input]\npath = \"{pattern}\"\n{columns}"),
        );
        let output = run_bounded(submit(dir.path()).args(["--dry-run", "--json", "job.toml"]));
        match expected {
            Some(files) => {
                assert_eq!(
                    output.status.code(),
                    Some(0),
                    "{pattern}: {}",
                    stderr(&output)
                );
                let resolved = json(&output)["resolved"].as_str().unwrap().to_owned();
                let paths = resolved
                    .lines()
                    .find(|line| line.starts_with("paths = "))
                    .unwrap();
                assert_eq!(paths.matches(".csv\"").count(), files, "{resolved}");
            }
            None => {
                assert_eq!(output.status.code(), Some(2));
                assert!(stderr(&output).contains("no file matches"));
            }
        }
    }
}

#[test]
fn jobs_publish_to_their_project_whatever_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    write(
        &project,
        "conf/defaults.toml",
        "[job]\nmaster = \"local[1]\"\n",
    );
    write(
        &project,
        "jobs/als.toml",
        &ALS_JOB.replace("master = \"local[2]\"\n", ""),
    );
    let elsewhere = dir.path().join("home");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let job = project.join("jobs/als.toml");
    let output = run_bounded(
        Command::new(binary())
            .current_dir(&elsewhere)
            .env_remove("SUBMIT_CONF_DIR")
            .args([job.to_str().unwrap(), "--json", "--quiet"]),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = json(&output);
    assert_eq!(
        summary["threads"], 1,
        "conf/defaults.toml of the project applies"
    );
    assert!(project.join("models/als/v1/manifest.json").is_file());
    assert!(!elsewhere.join("models").exists());
    // The nightly script finds the job from the repository root too, from any directory.
    let script = repository().join("scripts/nightly-retrain.sh");
    let missing = run_bounded(
        Command::new("bash")
            .current_dir(&elsewhere)
            .env("SUBMIT_BIN", binary())
            .args([script.to_str().unwrap(), "jobs/no-such-job.toml"]),
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no job file"));
}

#[test]
fn global_flags_work_before_models_commands() {
    let dir = trained();
    let output = run_bounded(submit(dir.path()).args(["--json", "models", "list"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["status"], "ok");
    let output =
        run_bounded(submit(dir.path()).args(["-q", "models", "gc", "models/als", "--keep", "1"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run_bounded(submit(dir.path()).args(["--master", "local[2]", "models", "list"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--master cannot be combined"));
}

#[test]
fn abandoned_temporaries_of_a_recommend_job_are_removed() {
    let dir = trained();
    let stale = dir.path().join("out/.recs.csv.tmp-999999");
    write(dir.path(), "out/.recs.csv.tmp-999999", "half a file");
    let other = dir.path().join("out/.other.csv.tmp-1");
    write(dir.path(), "out/.other.csv.tmp-1", "not ours");
    ok_json(dir.path(), &["recommend.toml"]);
    assert!(!stale.exists());
    assert!(
        other.exists(),
        "only temporaries of the same destination are touched"
    );
    assert!(dir.path().join("out/recs.csv").is_file());
}

#[test]
fn predict_keeps_passthrough_columns_and_follows_the_models_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut libsvm = String::new();
    for row in 0..200u32 {
        let label = row % 2;
        let category = row % 3;
        libsvm.push_str(&format!(
            "{label} 1:{}.5 2:{category} 3:{}\n",
            label * 3 + row % 4,
            row % 7
        ));
    }
    write(dir.path(), "data.txt", &libsvm);
    write(
        dir.path(),
        "train.toml",
        "[job]\nname = \"svm\"\n[input]\npath = \"data.txt\"\nformat = \"libsvm\"\n[model]\nalgorithm = \"random_forest\"\nnum_trees = 3\nmax_categories = 3\n",
    );
    let trained = ok_json(dir.path(), &["train.toml"]);
    assert_eq!(
        trained["metrics"]["counts"]["categorical_features"], 1,
        "{trained}"
    );
    // No format given: the .txt file is read as LIBSVM because the model was trained on it.
    write(
        dir.path(),
        "predict.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/svm/latest\"\n[input]\npath = \"data.txt\"\n[output]\npath = \"out.csv\"\n",
    );
    ok_json(dir.path(), &["predict.toml"]);
    let scored = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(scored.lines().count(), 201);

    // A categorical name that is not a feature is refused.
    let output = run_bounded(submit(dir.path()).args([
        "train.toml",
        "--conf",
        "input.columns.categorical=[\"f9\"]",
    ]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("`f9`"));

    // predict.keep copies id columns next to the scores.
    write(
        dir.path(),
        "table.csv",
        "id,f0,f1,f2\nA-1,0.1,0.2,0.3\n12345678901,1,2,3\n",
    );
    write(dir.path(), "gbt.toml", GBT_JOB);
    ok_json(dir.path(), &["gbt.toml"]);
    write(
        dir.path(),
        "keep.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/gbt/latest\"\n[input]\npath = \"table.csv\"\n[predict]\nkeep = [\"id\"]\n[output]\npath = \"kept.csv\"\n",
    );
    ok_json(dir.path(), &["keep.toml"]);
    let kept = std::fs::read_to_string(dir.path().join("kept.csv")).unwrap();
    let lines: Vec<&str> = kept.lines().collect();
    assert!(lines[0].starts_with("row,id,prediction"), "{kept}");
    assert!(lines[1].starts_with("0,A-1,"), "{kept}");
    assert!(lines[2].starts_with("1,12345678901,"), "{kept}");
}

#[test]
fn a_file_truncated_while_it_is_read_is_an_input_error() {
    // The SIGBUS guard: a mapped input that shrinks mid-read ends in exit 3 naming the file.
    // Reproduced deterministically by truncating the file from a second thread while the
    // fingerprint hash reads the map; repeated until the truncation lands inside the read.
    let dir = tempfile::tempdir().unwrap();
    let body = ratings_csv(400_000, true);
    let path = dir.path().join("big.csv");
    write(
        dir.path(),
        "job.toml",
        "[input]\npath = \"big.csv\"\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n[model]\nrank = 2\nmax_iter = 1\n",
    );
    let mut seen_bus = false;
    for delay in [5u64, 15, 30, 60, 100, 150] {
        std::fs::write(&path, &body).unwrap();
        let child = submit(dir.path())
            .args(["job.toml", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert_ne!(
            output.status.code(),
            None,
            "killed by a signal: {}",
            stderr(&output)
        );
        if stderr(&output).contains("the file changed") {
            assert_eq!(output.status.code(), Some(3));
            assert!(stderr(&output).contains("big.csv"));
            seen_bus = true;
        }
    }
    // Whether a truncation lands inside the read depends on timing; none may kill the process
    // by a signal (asserted above). Report rather than fail when none landed.
    if !seen_bus {
        eprintln!(
            "no truncation landed while the file was mapped; the signal path was not exercised"
        );
    }
}
