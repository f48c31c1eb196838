//! Data preparation in the job file (issue 16): named tables, `input.sql`, `[[input.steps]]`,
//! Hive-partitioned directories, `input.dedupe` and the synthetic event log, through the CLI
//! on small files whose right answer is worked out by hand here.

mod common;

use common::{run, stderr, stdout, submit, write};

const RATINGS: &str = "user,item,rating,ts\n1,10,4.0,100\n1,11,3.0,200\n2,10,5.0,150\n2,12,1.0,300\n3,11,2.0,50\n3,12,4.5,400\n1,10,2.0,500\n";
const ITEMS: &str = "item,genre\n10,drama\n11,comedy\n12,drama\n";

fn job(dir: &std::path::Path, body: &str) -> String {
    write(dir, "data/ratings.csv", RATINGS);
    write(dir, "data/items.csv", ITEMS);
    let text = format!(
        "[job]\nmaster = \"local[2]\"\n[model]\nrank = 2\nmax_iter = 2\n[split]\ntest_fraction = 0.0\n[output]\ndir = \"models\"\n{body}"
    );
    write(dir, "job.toml", &text).display().to_string()
}

/// The `data` line's rating count of a successful run.
fn ratings_trained(dir: &std::path::Path, job: &str) -> String {
    let output = run(submit(dir).arg(job));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output) + &stderr(&output);
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with("data"))
        .unwrap_or_default()
        .to_owned();
    line.trim_start_matches(|c: char| c.is_whitespace() || c.is_alphabetic())
        .trim()
        .to_owned()
}

#[test]
fn sql_join_filter_and_dedupe_give_the_rows_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // Drama items are 10 and 12: rows (1,10) twice, (2,10), (2,12), (3,12); mean merges
    // the two (1,10) rows, leaving 4 ratings from 3 users over 2 items.
    let job = job(
        dir.path(),
        "[input]\npath = \"data/ratings.csv\"\ndedupe = \"mean\"\nsql = \"SELECT r.\\\"user\\\", r.item, r.rating FROM input r JOIN items i ON r.item = i.item WHERE i.genre = 'drama'\"\n[input.tables.items]\npath = \"data/items.csv\"\n",
    );
    assert!(
        ratings_trained(dir.path(), &job).starts_with("4 ratings, 3 users, 2 items"),
        "{}",
        ratings_trained(dir.path(), &job)
    );
}

/// The `model.als` of the one version a job published under `models/NAME`.
fn model_bytes(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("models").join(name).join("v1").join("model.als"))
        .unwrap_or_else(|error| panic!("models/{name}/v1/model.als: {error}"))
}

#[test]
fn a_last_group_by_summing_over_the_pair_trains_on_the_sums_worked_out_by_hand() {
    // Ingestion sums such a group-by itself (as `dedupe = "sum"`); the pairs must keep their
    // first appearance order and the sums be those of a stable group-by, so the model is the
    // one trained on the hand-summed file. (1,10) appears twice: 4.0 + 2.0, and 2 events.
    for (aggregate, summed) in [
        (
            "sum(rating)",
            "user,item,rating\n1,10,6.0\n1,11,3.0\n2,10,5.0\n2,12,1.0\n3,11,2.0\n3,12,4.5\n",
        ),
        (
            "count(*)",
            "user,item,rating\n1,10,2\n1,11,1\n2,10,1\n2,12,1\n3,11,1\n3,12,1\n",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        job(dir.path(), "");
        write(dir.path(), "data/summed.csv", summed);
        let head = "[job]\nmaster = \"local[2]\"\n[model]\nrank = 2\nmax_iter = 3\n[split]\ntest_fraction = 0.0\n[output]\ndir = \"models\"\n";
        let grouped = write(
            dir.path(),
            "grouped.toml",
            &format!(
                "{head}[input]\npath = \"data/ratings.csv\"\ndedupe = \"error\"\n[input.tables.items]\npath = \"data/items.csv\"\n[[input.steps]]\njoin = \"items\"\non = \"item\"\n[[input.steps]]\ngroup_by = [\"item\", \"user\"]\nagg = {{ genres = \"count(genre)\", rating = \"{aggregate}\" }}\n[input.columns]\nuser = \"user\"\nitem = \"item\"\nrating = \"rating\"\n"
            ),
        );
        let by_hand = write(
            dir.path(),
            "by-hand.toml",
            &format!("{head}[input]\npath = \"data/summed.csv\"\n"),
        );
        for job in [&grouped, &by_hand] {
            assert_eq!(
                ratings_trained(dir.path(), &job.display().to_string()),
                "6 ratings, 3 users, 3 items; train 6, test 0",
                "{aggregate}"
            );
        }
        assert_eq!(
            model_bytes(dir.path(), "grouped"),
            model_bytes(dir.path(), "by-hand"),
            "{aggregate}"
        );
        // Ingestion read the 7 joined rows and summed them (polars' group-by hands on 6).
        let output =
            run(submit(dir.path()).args(["--quiet", "--json", &grouped.display().to_string()]));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(summary["metrics"]["counts"]["rows_read"], 7, "{aggregate}");
    }
}

#[test]
fn steps_join_filter_derive_and_select() {
    let dir = tempfile::tempdir().unwrap();
    // Drama rows before ts 450: (1,10,100), (2,10), (2,12), (3,12); the later (1,10) is out.
    let job = job(
        dir.path(),
        r#"[input]
path = "data/ratings.csv"
dedupe = "error"
[input.tables.items]
path = "data/items.csv"
[[input.steps]]
join = "items"
on = "item"
[[input.steps]]
filter = "genre = 'drama' AND ts < 450"
[[input.steps]]
with_columns = { score = "rating * 2" }
[[input.steps]]
select = ["user", "item", "score"]
[input.columns]
rating = "score"
"#,
    );
    assert!(ratings_trained(dir.path(), &job).starts_with("4 ratings, 3 users, 2 items"));
    let plan = run(submit(dir.path()).args(["--dry-run", "--verbose", &job]));
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(stderr(&plan).contains("INNER JOIN"), "{}", stderr(&plan));
}

#[test]
fn a_step_on_a_missing_column_points_at_the_step_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        "[input]\npath = \"data/ratings.csv\"\n[input.tables.items]\npath = \"data/items.csv\"\n[[input.steps]]\nfilter = \"ratng > 2\"\n",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("no column `ratng`"), "{message}");
    assert!(message.contains("job.toml:15:"), "{message}");
    assert!(message.contains("did you mean `rating`?"), "{message}");
    // An unknown step kind and an unknown table are caught before any data is read.
    let job = job_with(dir.path(), "[[input.steps]]\nfliter = \"rating > 2\"\n");
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("did you mean `filter`?"),
        "{}",
        stderr(&output)
    );
    let job = job_with(
        dir.path(),
        "[[input.steps]]\njoin = \"itmes\"\non = \"item\"\n",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown table `itmes`"),
        "{}",
        stderr(&output)
    );
    let job = job_with(dir.path(), "");
    let bad_sql = job.replace("job.toml", "sql.toml");
    let text = std::fs::read_to_string(&job).unwrap() + "";
    std::fs::write(
        &bad_sql,
        text.replace(
            "[input]\n",
            "[input]\nsql = \"SELECT nothing_here FROM input\"\n",
        ),
    )
    .unwrap();
    let output = run(submit(dir.path()).arg(&bad_sql));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("input.sql"), "{message}");
    assert!(message.contains("items (item, genre)"), "{message}");
}

fn job_with(dir: &std::path::Path, steps: &str) -> String {
    job(
        dir,
        &format!(
            "[input]\npath = \"data/ratings.csv\"\n[input.tables.items]\npath = \"data/items.csv\"\n{steps}"
        ),
    )
}

#[test]
fn hive_partition_directories_become_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "events/dt=1/part-0.csv",
        "user,item,rating\n1,1,1\n2,2,1\n",
    );
    write(
        dir.path(),
        "events/dt=2/part-0.csv",
        "user,item,rating\n1,2,1\n3,3,1\n3,1,1\n",
    );
    let job = job(
        dir.path(),
        "[input]\npath = \"events/dt=*/part-*.csv\"\n[[input.steps]]\nfilter = \"dt = 2\"\n",
    );
    assert!(ratings_trained(dir.path(), &job).starts_with("3 ratings, 2 users, 3 items"));
}

#[test]
fn dedupe_error_names_the_repeated_pair() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        "[input]\npath = \"data/ratings.csv\"\ndedupe = \"error\"\n",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("user 1 and item 10 appear in rows 1 and 7"),
        "{}",
        stderr(&output)
    );
}

/// `(train_ratings, test_ratings)` of a job on RATINGS with the given `[split]` body.
fn split_counts(dir: &std::path::Path, split: &str) -> (u64, u64) {
    write(dir, "data/ratings.csv", RATINGS);
    let text = format!(
        "[job]\nmaster = \"local[2]\"\n[input]\npath = \"data/ratings.csv\"\n[model]\nrank = 2\nmax_iter = 2\n[split]\n{split}\n[output]\ndir = \"models\"\n"
    );
    let job = write(dir, "split.toml", &text).display().to_string();
    let summary = common::ok_json(dir, &[&job]);
    let counts = &summary["metrics"]["counts"];
    (
        counts["train_ratings"].as_u64().unwrap(),
        counts["test_ratings"].as_u64().unwrap(),
    )
}

#[test]
fn time_and_per_user_last_splits_hold_out_the_rows_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // ts >= 300: rows (2,12,300), (3,12,400), (1,10,500).
    let cutoff = "method = \"time\"\ncolumn = \"ts\"\ncutoff = 300";
    assert_eq!(split_counts(dir.path(), cutoff), (4, 3));
    // The range 50..500: its last quarter starts at 387.5, rows at 400 and 500.
    let fraction = "method = \"time\"\ncolumn = \"ts\"\nfraction = 0.25";
    assert_eq!(split_counts(dir.path(), fraction), (5, 2));
    // Each user's latest row; with n = 2 user 1 gives two, users 2 and 3 keep one each.
    let last = "method = \"per_user_last\"\ncolumn = \"ts\"";
    assert_eq!(split_counts(dir.path(), last), (4, 3));
    assert_eq!(split_counts(dir.path(), &format!("{last}\nn = 2")), (3, 4));
}

#[test]
fn a_text_date_column_splits_at_a_date_and_bad_split_keys_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dated.csv",
        "user,item,rating,day\n1,10,4,2026-10-01\n1,11,3,2026-11-02\n2,10,5,2026-10-20 08:00:00\n2,11,2,2026-11-01\n",
    );
    let body = |split: &str| {
        format!(
            "[input]\npath = \"dated.csv\"\n[model]\nrank = 2\nmax_iter = 2\n[split]\n{split}\n[output]\ndir = \"models\"\n"
        )
    };
    write(
        dir.path(),
        "dated.toml",
        &body("method = \"time\"\ncolumn = \"day\"\ncutoff = \"2026-11-01\""),
    );
    let summary = common::ok_json(dir.path(), &["dated.toml"]);
    assert_eq!(
        summary["metrics"]["counts"]["test_ratings"].as_u64(),
        Some(2)
    );

    write(
        dir.path(),
        "nocolumn.toml",
        &body("method = \"per_user_last\""),
    );
    let output = run(submit(dir.path()).arg("nocolumn.toml"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("split.column"),
        "{}",
        stderr(&output)
    );

    write(
        dir.path(),
        "mixed.toml",
        &body("method = \"time\"\ncolumn = \"day\"\nfraction = 0.2\nn = 3"),
    );
    let output = run(submit(dir.path()).arg("mixed.toml"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("split.n"), "{}", stderr(&output));

    write(
        dir.path(),
        "wrong.csv",
        "user,item,rating,day\n1,10,4,soon\n",
    );
    write(
        dir.path(),
        "wrong.toml",
        &body("method = \"time\"\ncolumn = \"day\"\ncutoff = \"2026-11-01\"")
            .replace("dated.csv", "wrong.csv"),
    );
    let output = run(submit(dir.path()).arg("wrong.toml"));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("\"soon\""), "{}", stderr(&output));
}

#[test]
fn a_separate_test_file_is_the_test_split_after_the_same_steps() {
    let dir = tempfile::tempdir().unwrap();
    // Every input row that passes the filter (rating >= 2: all but (2,12,1.0)) trains; the
    // test file's rows pass the same filter, so (1,12,1.0) is dropped and user 9 is a cold
    // start.
    write(
        dir.path(),
        "data/test.csv",
        "user,item,rating,ts\n1,12,1.0,600\n2,11,3.0,610\n3,10,4.0,620\n9,10,5.0,630\n",
    );
    let job = job(
        dir.path(),
        "[input]\npath = \"data/ratings.csv\"\n[[input.steps]]\nfilter = \"rating >= 2\"\n[input.test]\npath = \"data/test.csv\"\n",
    );
    let summary = common::ok_json(dir.path(), &[&job]);
    let counts = &summary["metrics"]["counts"];
    assert_eq!(counts["train_ratings"].as_u64(), Some(6), "{counts}");
    assert_eq!(counts["test_ratings"].as_u64(), Some(3), "{counts}");
    assert_eq!(counts["test_cold_start"].as_u64(), Some(1), "{counts}");
    // The resolved job records the test source and reproduces the same counts.
    let version = dir.path().join("models/job/v1");
    let resolved = std::fs::read_to_string(version.join("job.resolved.toml")).unwrap();
    assert!(resolved.contains("[input.test]"), "{resolved}");
    let again = common::ok_json(
        dir.path(),
        &[version.join("job.resolved.toml").to_str().unwrap()],
    );
    assert_eq!(again["metrics"]["counts"], summary["metrics"]["counts"]);

    // A split of the input beside [input.test] is a configuration error.
    let job = write(
        dir.path(),
        "both.toml",
        "[input]\npath = \"data/ratings.csv\"\n[input.test]\npath = \"data/test.csv\"\n[split]\nmethod = \"time\"\ncolumn = \"ts\"\ncutoff = 300\n[output]\ndir = \"models\"\n",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("split.method"),
        "{}",
        stderr(&output)
    );
    // An unknown key in the section gets a suggestion.
    let job = write(
        dir.path(),
        "typo.toml",
        "[input]\npath = \"data/ratings.csv\"\n[input.test]\npaht = \"data/test.csv\"\n",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("input.test.path"),
        "{}",
        stderr(&output)
    );
}

const TABLE: &str = "color,size,label\nred,1,1\nblue,2,0\nred,3,1\ngreen,1,0\nblue,3,0\nred,2,1\ngreen,2,1\nblue,1,0\n";

fn tree_job(dir: &std::path::Path, name: &str, extra: &str) -> String {
    write(dir, "data/table.csv", TABLE);
    let text = format!(
        "[job]\nmaster = \"local[2]\"\n[input]\npath = \"data/table.csv\"\n[model]\nalgorithm = \"random_forest\"\nnum_trees = 3\nmax_depth = 3\n{extra}\n[output]\ndir = \"models\"\n"
    );
    write(dir, name, &text).display().to_string()
}

#[test]
fn a_tree_job_scores_a_separate_test_file_with_the_training_categories() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data/test.csv",
        "color,size,label\nblue,2,0\nred,1,1\ngreen,3,1\n",
    );
    let job = tree_job(
        dir.path(),
        "trees.toml",
        "[input.test]\npath = \"data/test.csv\"",
    );
    let summary = common::ok_json(dir.path(), &[&job]);
    let counts = &summary["metrics"]["counts"];
    assert_eq!(counts["train_rows"].as_u64(), Some(8), "{counts}");
    assert_eq!(counts["test_rows"].as_u64(), Some(3), "{counts}");

    // A colour the training rows never had: an error naming the row, or skipped.
    write(
        dir.path(),
        "data/unseen.csv",
        "color,size,label\nblue,2,0\npurple,1,1\n",
    );
    let job = tree_job(
        dir.path(),
        "unseen.toml",
        "[input.test]\npath = \"data/unseen.csv\"",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("row 2") && stderr(&output).contains("purple"),
        "{}",
        stderr(&output)
    );
    let job = tree_job(
        dir.path(),
        "skip.toml",
        "handle_invalid = \"skip\"\n[input.test]\npath = \"data/unseen.csv\"",
    );
    let summary = common::ok_json(dir.path(), &[&job]);
    assert_eq!(summary["metrics"]["counts"]["test_rows"].as_u64(), Some(1));

    // A class the training rows never had.
    write(dir.path(), "data/class.csv", "color,size,label\nblue,2,7\n");
    let job = tree_job(
        dir.path(),
        "class.toml",
        "[input.test]\npath = \"data/class.csv\"",
    );
    let output = run(submit(dir.path()).arg(&job));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a class of the training rows"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_tree_job_splits_by_time_and_keeps_the_time_column_out_of_the_features() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data/timed.csv",
        "color,size,day,label\nred,1,2026-11-01,1\nblue,2,2026-11-02,0\nred,3,2026-11-03,1\ngreen,1,2026-11-04,0\nblue,3,2026-11-05,0\nred,2,2026-11-06,1\ngreen,2,2026-11-07,1\nblue,1,2026-11-08,0\n",
    );
    let text = "[job]\nmaster = \"local[2]\"\n[input]\npath = \"data/timed.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 3\n[split]\nmethod = \"time\"\ncolumn = \"day\"\ncutoff = \"2026-11-06\"\n[output]\ndir = \"models\"\n";
    write(dir.path(), "timed.toml", text);
    let summary = common::ok_json(dir.path(), &["timed.toml"]);
    let counts = &summary["metrics"]["counts"];
    assert_eq!(counts["train_rows"].as_u64(), Some(5), "{counts}");
    assert_eq!(counts["test_rows"].as_u64(), Some(3), "{counts}");
    assert_eq!(counts["features"].as_u64(), Some(2), "{counts}");

    write(
        dir.path(),
        "per_user.toml",
        &text.replace(
            "method = \"time\"\ncolumn = \"day\"\ncutoff = \"2026-11-06\"",
            "method = \"per_user_last\"\ncolumn = \"day\"",
        ),
    );
    let output = run(submit(dir.path()).arg("per_user.toml"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("split.method"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_sql_join_keeps_the_row_order_so_runs_repeat_to_the_byte() {
    // Polars SQL joins rows in no fixed order; a `sample` step and the seeded split follow row
    // positions, so runs of this job differed until SQL joins kept their left side's order.
    let dir = tempfile::tempdir().unwrap();
    common::event_log_days(dir.path());
    let items: String = std::iter::once("item,in_stock\n".to_owned())
        .chain((0..90).map(|item| format!("{item},{}\n", item % 7 != 0)))
        .collect();
    write(dir.path(), "items.csv", &items);
    let job = write(
        dir.path(),
        "prepared.toml",
        r#"[job]
master = "local[2]"
[input]
path = "events/dt=*/part-*.csv"
sql = "SELECT e.\"user\", e.item, e.event, e.dt FROM input e JOIN items i ON e.item = i.item WHERE i.in_stock"
[input.tables.items]
path = "items.csv"
[[input.steps]]
with_columns = { weight = "CASE WHEN event = 'buy' THEN 3.0 ELSE 1.0 END" }
[[input.steps]]
group_by = ["user", "item"]
agg = { rating = "sum(weight)" }
[[input.steps]]
sample = 0.9
seed = 5
[input.columns]
user = "user"
item = "item"
rating = "rating"
[model]
rank = 4
max_iter = 3
[output]
dir = "models"
"#,
    );
    let mut models = Vec::new();
    for version in 1..=4 {
        let output = run(submit(dir.path()).arg(&job));
        assert!(output.status.success(), "{}", stderr(&output));
        models.push(
            std::fs::read(
                dir.path()
                    .join(format!("models/prepared/v{version}/model.als")),
            )
            .unwrap(),
        );
    }
    assert!(models.windows(2).all(|pair| pair[0] == pair[1]));
}
