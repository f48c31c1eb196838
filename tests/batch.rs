//! Recommend and predict jobs through the CLI, on a model version trained in the same test.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use common::*;

/// Trains a small implicit model on string-free integer ids; returns its version directory.
fn trained(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "train.toml",
        "[job]\nname = \"shop\"\n[input]\nsynthetic = { kind = \"interactions\", users = 400, items = 150, ratings = 6000, rank = 4 }\n[model]\nimplicit_prefs = true\nrank = 8\nmax_iter = 6\n",
    );
    let output = run(submit(dir).args(["train.toml", "--quiet"]));
    assert!(output.status.success(), "{}", stderr(&output));
    dir.join("models/shop/latest")
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn recommendations_leave_out_seen_items_and_serve_unknown_users_popular_items() {
    let dir = tempfile::tempdir().unwrap();
    let version = trained(dir.path());
    let model = submit::artifact::load_version(&version).unwrap().model;
    let model = model.als().unwrap();
    write(
        dir.path(),
        "recommend.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/shop/latest\"\n[recommend]\nk = 5\n[output]\npath = \"out/recs.csv\"\n",
    );
    let output = run(submit(dir.path()).args(["recommend.toml", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = json(&output);
    assert_eq!(summary["kind"], "recommend");
    let rows = read_csv(&dir.path().join("out/recs.csv"));
    assert_eq!(rows.len(), model.user_ids.len() * 5);
    let submit::dataset::Ids::Integer(user_ids) = &model.user_ids else {
        panic!("integer ids")
    };
    let submit::dataset::Ids::Integer(item_ids) = &model.item_ids else {
        panic!("integer ids")
    };
    let user_row: HashMap<i64, usize> = user_ids
        .iter()
        .enumerate()
        .map(|(row, id)| (*id, row))
        .collect();
    let mut lists: HashMap<i64, Vec<(i64, f32, u32)>> = HashMap::new();
    for row in &rows {
        lists.entry(row[0].parse().unwrap()).or_default().push((
            row[1].parse().unwrap(),
            row[2].parse().unwrap(),
            row[3].parse().unwrap(),
        ));
    }
    for (user, list) in &lists {
        let seen: HashSet<i64> = model
            .seen(user_row[user])
            .iter()
            .map(|&item| item_ids[item as usize])
            .collect();
        assert!(
            list.iter().all(|(item, _, _)| !seen.contains(item)),
            "user {user} got a seen item"
        );
        let ranks: Vec<u32> = list.iter().map(|entry| entry.2).collect();
        assert_eq!(ranks, vec![1, 2, 3, 4, 5]);
        assert!(
            list.windows(2).all(|pair| pair[0].1 >= pair[1].1),
            "best first"
        );
    }

    // A file of users, one of them unknown: it gets the most popular items.
    write(
        dir.path(),
        "users.csv",
        &format!("user\n{}\n{}\n987654\n", user_ids[0], user_ids[1]),
    );
    write(
        dir.path(),
        "some.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/shop/latest\"\n[input]\npath = \"users.csv\"\n[recommend]\nk = 3\n[output]\npath = \"some.csv\"\n",
    );
    let output = run(submit(dir.path()).args(["some.toml", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        json(&output)["metrics"]["counts"]["unknown_ids_given_popular"],
        1
    );
    let rows = read_csv(&dir.path().join("some.csv"));
    assert_eq!(rows.len(), 9);
    let counts = model.item_counts();
    let mut popular: Vec<usize> = (0..counts.len()).collect();
    popular.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let cold: Vec<i64> = rows
        .iter()
        .filter(|row| row[0] == "987654")
        .map(|row| row[1].parse().unwrap())
        .collect();
    let expected: Vec<i64> = popular.iter().take(3).map(|&item| item_ids[item]).collect();
    assert_eq!(cold, expected);
    // With cold_start = "drop" the unknown user is skipped and counted.
    let output = run(submit(dir.path()).args([
        "some.toml",
        "--json",
        "--conf",
        "recommend.cold_start=\"drop\"",
    ]));
    assert_eq!(json(&output)["metrics"]["counts"]["unknown_ids_dropped"], 1);
    assert_eq!(read_csv(&dir.path().join("some.csv")).len(), 6);
}

#[test]
fn top_users_per_item_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    trained(dir.path());
    write(
        dir.path(),
        "items.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/shop/latest\"\n[recommend]\nk = 4\ntarget = \"items\"\n[output]\npath = \"by-item.parquet\"\n",
    );
    let output = run(submit(dir.path()).args(["items.toml", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = json(&output)["metrics"]["counts"]["rows_written"]
        .as_u64()
        .unwrap();
    assert!(rows > 0 && rows.is_multiple_of(4));
    let bytes = std::fs::read(dir.path().join("by-item.parquet")).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
}

#[test]
fn predict_scores_pairs_and_leaves_unknown_ones_empty() {
    let dir = tempfile::tempdir().unwrap();
    let version = trained(dir.path());
    let model = submit::artifact::load_version(&version).unwrap().model;
    let model = model.als().unwrap();
    let submit::dataset::Ids::Integer(user_ids) = &model.user_ids else {
        panic!()
    };
    let submit::dataset::Ids::Integer(item_ids) = &model.item_ids else {
        panic!()
    };
    write(
        dir.path(),
        "pairs.csv",
        &format!(
            "u,i\n{},{}\n{},424242\n",
            user_ids[3], item_ids[2], user_ids[3]
        ),
    );
    write(
        dir.path(),
        "predict.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/shop/v1\"\n[input]\npath = \"pairs.csv\"\n[output]\npath = \"scores.csv\"\n",
    );
    let output = run(submit(dir.path()).args(["predict.toml", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["metrics"]["counts"]["cold_start_missing"], 1);
    let rows = read_csv(&dir.path().join("scores.csv"));
    let rank = model.rank;
    let expected: f32 = (0..rank)
        .map(|a| model.user_factors[3 * rank + a] * model.item_factors[2 * rank + a])
        .sum();
    let got: f32 = rows[0][2].parse().unwrap();
    assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    assert_eq!(rows[1].get(2).map(String::as_str).unwrap_or(""), "");
}

#[test]
fn parquet_factors_equal_the_binary_model() {
    let dir = tempfile::tempdir().unwrap();
    let version = trained(dir.path());
    let model = submit::artifact::load_version(&version).unwrap().model;
    let model = model.als().unwrap();
    let (user_ids, user_factors, rank) =
        submit::ingest::tables::read_factors(&version.join("user_factors.parquet")).unwrap();
    assert_eq!(
        (user_ids, user_factors, rank),
        (
            model.user_ids.clone(),
            model.user_factors.clone(),
            model.rank
        )
    );
    let (item_ids, item_factors, _) =
        submit::ingest::tables::read_factors(&version.join("item_factors.parquet")).unwrap();
    assert_eq!(
        (item_ids, item_factors),
        (model.item_ids.clone(), model.item_factors.clone())
    );
}

#[test]
fn batch_job_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A missing model version is an input error (3), with the path.
    write(
        dir.path(),
        "missing.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/none/latest\"\n[output]\npath = \"r.csv\"\n",
    );
    let output = run(submit(dir.path()).arg("missing.toml"));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("models/none/latest"),
        "{}",
        stderr(&output)
    );
    // Training keys in a recommend job, and a missing output path, are config errors (2).
    write(
        dir.path(),
        "wrong.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"m\"\nrank = 3\n[output]\npath = \"r.csv\"\n",
    );
    let output = run(submit(dir.path()).arg("wrong.toml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("does not apply to a recommend job"),
        "{}",
        stderr(&output)
    );
    write(
        dir.path(),
        "nopath.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"m\"\n[input]\npath = \"p.csv\"\n",
    );
    let output = run(submit(dir.path()).arg("nopath.toml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("missing required key `output.path`"),
        "{}",
        stderr(&output)
    );
    // Recommend keys in a train job are refused too.
    write(
        dir.path(),
        "train.toml",
        &synthetic_job("x", "[recommend]\nk = 3\n"),
    );
    let output = run(submit(dir.path()).arg("train.toml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("does not apply to a train job"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unwritable_output_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    trained(dir.path());
    std::fs::create_dir(dir.path().join("taken.csv")).unwrap();
    write(
        dir.path(),
        "recommend.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/shop/latest\"\n[output]\npath = \"taken.csv\"\n",
    );
    let output = run(submit(dir.path()).args(["recommend.toml", "--json"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(json(&output)["kind"], "output");
    assert!(
        dir.path().join("taken.csv").is_dir(),
        "the directory is left alone"
    );
}
