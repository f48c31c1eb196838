//! `submit serve` through the real server on an ephemeral loopback port: predictions equal to a
//! predict job's on the same rows, recommendations equal to a recommend job's, hot reload under
//! load, a damaged version that keeps the old one serving, bad requests with their statuses,
//! and a clean stop on SIGTERM. No assertion is on wall-clock time.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::server::*;
use common::*;
use serde_json::{Value, json};

const GBT_JOB: &str = "[job]\nname = \"gbt\"\nmaster = \"local[2]\"\n[input]\npath = \"table.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 8\nmax_depth = 3\n";
const FOREST_JOB: &str = "[job]\nname = \"forest\"\nmaster = \"local[2]\"\n[input]\nsynthetic = { kind = \"regression\", rows = 600, features = 3 }\n[model]\nalgorithm = \"random_forest\"\ntask = \"regression\"\nnum_trees = 4\nmax_depth = 4\n";
const ALS_JOB: &str = "[job]\nname = \"als\"\nmaster = \"local[2]\"\n[input]\nsynthetic = { kind = \"ratings\", users = 80, items = 50, ratings = 1500, rank = 2 }\n[model]\nrank = 3\nmax_iter = 4\n";

/// A table with a string categorical and string labels, so names travel both ways.
fn table_csv() -> String {
    let mut text = String::from("x,colour,y,label\n");
    for row in 0..600u32 {
        let x = f64::from(row % 37) / 7.0 - 2.0;
        let colour = ["red", "green", "blue"][(row % 3) as usize];
        let y = f64::from((row * 7919) % 101) / 50.0 - 1.0;
        let positive = x + y + if colour == "red" { 0.7 } else { -0.3 } > 0.0;
        let missing = if row % 11 == 0 {
            String::new()
        } else {
            format!("{y}")
        };
        text.push_str(&format!(
            "{x},{colour},{missing},{}\n",
            if positive { "yes" } else { "no" }
        ));
    }
    text
}

fn trained() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "table.csv", &table_csv());
    write(dir.path(), "gbt.toml", GBT_JOB);
    write(dir.path(), "forest.toml", FOREST_JOB);
    write(dir.path(), "als.toml", ALS_JOB);
    for job in ["gbt.toml", "forest.toml", "als.toml"] {
        ok_json(dir.path(), &[job]);
    }
    dir
}

/// The rows of a CSV file as (header, rows of fields).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn tree_predictions_equal_the_predict_jobs_to_the_bit_in_every_body_format() {
    let dir = trained();
    let rows = "x,colour,y\n0.5,red,0.25\n-1.75,blue,\n1.2857142857142858,green,-0.9\n";
    write(dir.path(), "rows.csv", rows);
    write(
        dir.path(),
        "predict.toml",
        "[job]\nkind = \"predict\"\n[model]\nfrom = \"models/gbt/latest\"\n[input]\npath = \"rows.csv\"\n[output]\npath = \"scored.csv\"\n",
    );
    ok_json(dir.path(), &["predict.toml"]);
    let (header, scored) = read_csv(&dir.path().join("scored.csv"));
    let yes = header
        .iter()
        .position(|name| name == "probability_yes")
        .unwrap();
    let label = header.iter().position(|name| name == "prediction").unwrap();

    let server = Server::start(dir.path(), &[]);
    let split = json!({"dataframe_split": {
        "columns": ["x", "colour", "y"],
        "data": [[0.5, "red", 0.25], [-1.75, "blue", null], [1.2857142857142858, "green", -0.9]],
    }});
    let records = json!({"dataframe_records": [
        {"x": 0.5, "colour": "red", "y": 0.25},
        {"x": -1.75, "colour": "blue"},
        {"y": -0.9, "colour": "green", "x": 1.2857142857142858},
    ]});
    let (status, by_split) = server.post_json("/v1/models/gbt/predict", &split);
    assert_eq!(status, 200, "{by_split}");
    let (_, by_records) = server.post_json("/v1/models/gbt/predict", &records);
    let (_, csv_text) = server.request(
        "POST",
        "/v1/models/gbt/predict",
        "text/csv",
        rows.as_bytes(),
    );
    let by_csv: Value = serde_json::from_str(&csv_text).unwrap();
    assert_eq!(by_split["model"], "gbt");
    assert_eq!(by_split["version"], 1);
    for answer in [&by_split, &by_records, &by_csv] {
        for (row, fields) in scored.iter().enumerate() {
            let expected: f64 = fields[yes].parse().unwrap();
            let served = answer["probabilities"][row]["yes"].as_f64().unwrap();
            assert_eq!(served.to_bits(), expected.to_bits(), "row {row}: {answer}");
            assert_eq!(answer["predictions"][row], fields[label].as_str());
        }
    }
    // A pinned version answers the same; an absent one is 404.
    let (status, pinned) = server.post_json("/v1/models/gbt/versions/1/predict", &split);
    assert_eq!(status, 200);
    assert_eq!(pinned["probabilities"], by_split["probabilities"]);
    let (status, _) = server.post_json("/v1/models/gbt/versions/9/predict", &split);
    assert_eq!(status, 404);

    // Regression: one number per row.
    let (status, forest) = server.post_json(
        "/v1/models/forest/predict",
        &json!({"dataframe_split": {"columns": ["f0", "f1", "f2"], "data": [[0.1, 0.2, 0.3]]}}),
    );
    assert_eq!(status, 200, "{forest}");
    assert!(forest["predictions"][0].is_f64());
    assert!(forest.get("probabilities").is_none());
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn recommendations_and_pair_scores_equal_the_batch_jobs() {
    let dir = trained();
    write(
        dir.path(),
        "recommend.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/als/latest\"\n[recommend]\nk = 5\n[output]\npath = \"recs.csv\"\n",
    );
    ok_json(dir.path(), &["recommend.toml"]);
    let (_, recs) = read_csv(&dir.path().join("recs.csv"));
    let user = recs[0][0].clone();
    let expected: Vec<(String, String)> = recs
        .iter()
        .filter(|fields| fields[0] == user)
        .map(|fields| (fields[1].clone(), fields[2].clone()))
        .collect();
    let server = Server::start(dir.path(), &[]);
    let (status, answer) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": user.parse::<i64>().unwrap(), "k": 5}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["known_user"], true);
    let served: Vec<(String, String)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["item"].to_string(), item["score"].to_string()))
        .collect();
    assert_eq!(served.len(), expected.len());
    for ((item, score), (want_item, want_score)) in served.iter().zip(&expected) {
        assert_eq!(item, want_item);
        let (a, b): (f32, f32) = (score.parse().unwrap(), want_score.parse().unwrap());
        assert_eq!(a.to_bits(), b.to_bits(), "{answer}");
    }
    // Excluding the first item moves the second up.
    let (_, excluded) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": user, "k": 5, "exclude": [answer["items"][0]["item"]]}),
    );
    assert_eq!(excluded["items"][0]["item"], answer["items"][1]["item"]);
    // An unknown user gets the popular items, flagged.
    let (_, cold) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": "nobody", "k": 3}),
    );
    assert_eq!(cold["popular"], true);
    assert_eq!(cold["items"].as_array().unwrap().len(), 3);
    // Pairs: a known pair scores, an unknown one is null.
    let first_item = &answer["items"][0];
    let (status, pairs) = server.post_json(
        "/v1/models/als/predict",
        &json!({"dataframe_split": {"columns": ["user", "item"], "data": [[user, first_item["item"]], ["nobody", 1]]}}),
    );
    assert_eq!(status, 200, "{pairs}");
    // The same dot product, summed in another order by the blocked scorer.
    let (pair, listed) = (
        pairs["predictions"][0].as_f64().unwrap(),
        first_item["score"].as_f64().unwrap(),
    );
    assert!(
        (pair - listed).abs() <= 1e-5 * listed.abs().max(1.0),
        "{pair} {listed}"
    );
    assert!(pairs["predictions"][1].is_null());
    // A tree model has no recommendations.
    let (status, _) = server.post_json("/v1/models/gbt/recommend", &json!({"user": 1}));
    assert_eq!(status, 400);
}

#[test]
fn new_versions_are_hot_loaded_under_load_and_a_damaged_one_keeps_the_old() {
    let dir = trained();
    let server = Server::start(dir.path(), &[]);
    let body =
        json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": [[0.5, "red", 0.25]]}});
    let addr = server.addr.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (failures, requests) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0u64)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop, failures, requests, body) = (
                addr.clone(),
                stop.clone(),
                failures.clone(),
                requests.clone(),
                body.to_string(),
            );
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, text) = http(
                        &addr,
                        "POST",
                        "/v1/models/gbt/predict",
                        "application/json",
                        body.as_bytes(),
                    );
                    *requests.lock().unwrap() += 1;
                    if status != 200 {
                        failures.lock().unwrap().push(format!("{status} {text}"));
                    }
                }
            })
        })
        .collect();
    // A new version is published and promoted while requests run.
    ok_json(dir.path(), &["gbt.toml", "--conf", "model.max_depth=2"]);
    server.wait_for_log("gbt: now serving v2 (was v1)");
    let (_, answer) = server.post_json("/v1/models/gbt/predict", &body);
    assert_eq!(answer["version"], 2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert!(*requests.lock().unwrap() > 0);
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );

    // A damaged v3 becomes latest by hand: the server says so and keeps v2.
    let job = dir.path().join("models/gbt");
    copy_dir(&job.join("v2"), &job.join("v3"));
    std::fs::write(job.join("v3/model.trees.json"), b"{ damaged").unwrap();
    std::os::unix::fs::symlink("v3", job.join(".latest-test")).unwrap();
    std::fs::rename(job.join(".latest-test"), job.join("latest")).unwrap();
    server.wait_for_log("gbt: cannot load v3, still serving v2");
    let (status, answer) = server.post_json("/v1/models/gbt/predict", &body);
    assert_eq!((status, answer["version"].clone()), (200, json!(2)));
    let (_, listed) = server.get_json("/v1/models");
    let gbt = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gbt")
        .unwrap();
    assert_eq!(gbt["version"], 2);
    assert_eq!(server.stop(), Some(0));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn bad_requests_get_their_status_and_a_json_error_naming_the_field() {
    let dir = trained();
    let server = Server::start(dir.path(), &["--max-rows", "5", "--max-body", "64K"]);
    let check = |status: u16, body: &str, expected: u16, words: &[&str]| {
        assert_eq!(status, expected, "{body}");
        let error: Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(error["code"].is_string(), "{body}");
        for word in words {
            assert!(message.contains(word), "{word:?} not in {message}");
        }
    };
    let predict = "/v1/models/gbt/predict";
    let (status, body) = server.request("POST", predict, "application/json", b"{ not json");
    check(status, &body, 400, &["not valid JSON"]);
    let (status, body) = server.request("POST", predict, "application/json", b"{\"rows\": []}");
    check(status, &body, 400, &["dataframe_split"]);
    let wrong_column =
        json!({"dataframe_split": {"columns": ["x", "color", "y"], "data": [[1, "red", 2]]}});
    let (status, body) = server.request(
        "POST",
        predict,
        "application/json",
        wrong_column.to_string().as_bytes(),
    );
    check(status, &body, 400, &["no column `colour`", "color"]);
    let ragged =
        json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": [[1, "red"]]}});
    let (status, body) = server.request(
        "POST",
        predict,
        "application/json",
        ragged.to_string().as_bytes(),
    );
    check(status, &body, 400, &["data[0]", "2 values for 3 columns"]);
    let not_number = json!({"dataframe_records": [{"x": "abc", "colour": "red", "y": 1}]});
    let (status, body) = server.request(
        "POST",
        predict,
        "application/json",
        not_number.to_string().as_bytes(),
    );
    check(status, &body, 400, &["row 0", "`x`", "not a number"]);
    let unseen = json!({"dataframe_records": [{"x": 1, "colour": "purple", "y": 1}]});
    let (status, body) = server.request(
        "POST",
        predict,
        "application/json",
        unseen.to_string().as_bytes(),
    );
    check(status, &body, 400, &["`colour`", "purple", "never seen"]);
    let many = json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": vec![json!([1, "red", 1]); 6]}});
    let (status, body) = server.request(
        "POST",
        predict,
        "application/json",
        many.to_string().as_bytes(),
    );
    check(status, &body, 413, &["6 rows", "at most 5"]);
    let huge = vec![b' '; 100 * 1024];
    let (status, body) = server.request("POST", predict, "application/json", &huge);
    check(status, &body, 413, &[]);
    let (status, body) =
        server.request("POST", "/v1/models/nope/predict", "application/json", b"{}");
    check(status, &body, 404, &["no model `nope`"]);
    let (status, body) = server.request(
        "POST",
        "/v1/models/..%2Fetc/predict",
        "application/json",
        b"{}",
    );
    assert!(matches!(status, 400 | 404), "{status} {body}");
    let (status, body) = server.request(
        "POST",
        "/v1/models/gbt/versions/x1/predict",
        "application/json",
        b"{}",
    );
    check(status, &body, 400, &["not a version number"]);
    let (status, body) = server.request("GET", "/nowhere", "", b"");
    check(status, &body, 404, &["no such route"]);
    let (status, body) = server.request(
        "POST",
        "/v1/models/als/recommend",
        "application/json",
        b"{\"k\": 5}",
    );
    check(status, &body, 400, &["`user`"]);
    let (status, body) = server.request(
        "POST",
        "/v1/models/als/recommend",
        "application/json",
        b"{\"user\": 1, \"k\": 0}",
    );
    check(status, &body, 400, &["`k`", "1 to 10000"]);
    // The server is still up and counted all of it.
    let (status, health) = server.get_json("/healthz");
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
    let (_, metrics) = server.request("GET", "/metrics", "", b"");
    assert!(
        metrics
            .contains("submit_requests_total{route=\"/v1/models/{job}/predict\",status=\"400\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("submit_served_version{model=\"gbt\"} 1"),
        "{metrics}"
    );
    let (status, ready) = server.get_json("/readyz");
    assert_eq!(status, 200);
    assert_eq!(ready["models"].as_array().unwrap().len(), 3);
    assert!(!server.log().contains("panicked"), "{}", server.log());
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn serve_refuses_bad_flags_and_busy_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(submit(dir.path()).args(["serve", "--master", "yarn"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("`serve.master`") && stderr(&output).contains("--master"),
        "{}",
        stderr(&output)
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = listener.local_addr().unwrap().to_string();
    let output = run(submit(dir.path()).args(["serve", "--addr", &busy]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains(&busy));
}

#[test]
fn fold_in_equals_a_refit_of_the_users_row_and_similar_items_rank_by_cosine() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ratings.csv", &ratings_csv(60, true));
    write(
        dir.path(),
        "als.toml",
        "[job]\nname = \"als\"\n[input]\npath = \"ratings.csv\"\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n[split]\ntest_fraction = 0.0\n[model]\nrank = 3\nmax_iter = 6\nreg_param = 0.05\n",
    );
    ok_json(dir.path(), &["als.toml"]);
    let (ids, factors, rank) = submit::ingest::tables::read_factors(
        &dir.path().join("models/als/v1/user_factors.parquet"),
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    // User 7's training ratings, brought by a user the model has never seen.
    let user = 7usize;
    let ratings: Vec<Value> = ratings_csv(60, false)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0] == user.to_string()).then(|| {
                json!([
                    fields[1].parse::<i64>().unwrap(),
                    fields[2].parse::<f64>().unwrap()
                ])
            })
        })
        .collect();
    assert_eq!(ratings.len(), 6);
    let (status, folded) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": "newcomer", "k": 5, "ratings": ratings}),
    );
    assert_eq!(status, 200, "{folded}");
    assert_eq!(
        (folded["folded_in"].clone(), folded["known_user"].clone()),
        (json!(true), json!(false))
    );
    let (_, known) = server.post_json("/v1/models/als/recommend", &json!({"user": user, "k": 5}));
    let items = |answer: &Value| -> Vec<Value> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["item"].clone())
            .collect()
    };
    assert_eq!(items(&folded), items(&known), "{folded}\n{known}");
    let row = (0..ids.len())
        .find(|&row| ids.display(row) == user.to_string())
        .unwrap();
    let trained = &factors[row * rank..(row + 1) * rank];
    for (a, b) in folded["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(known["items"].as_array().unwrap())
    {
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{a} {b} (factors {trained:?})"
        );
    }
    // Unknown items in the ratings are counted, not fatal; an unusable pair is a 400.
    let (_, partly) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": "x", "ratings": [[9999, 4.0], [1, 3.0]]}),
    );
    assert_eq!(partly["unknown_items"], 1);
    let (status, _) = server.post_json(
        "/v1/models/als/recommend",
        &json!({"user": "x", "ratings": [[1]]}),
    );
    assert_eq!(status, 400);

    let (status, similar) =
        server.post_json("/v1/models/als/similar-items", &json!({"item": 3, "k": 4}));
    assert_eq!(status, 200, "{similar}");
    let list = similar["items"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|item| item["item"] != 3));
    let scores: Vec<f64> = list
        .iter()
        .map(|item| item["similarity"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );
    assert!(
        scores
            .iter()
            .all(|score| (-1.0001..=1.0001).contains(score))
    );
    let (status, _) = server.post_json("/v1/models/als/similar-items", &json!({"item": 123456}));
    assert_eq!(status, 404);

    // The batch jobs give the same lists: fold-in from a file, similar items for every item.
    let mut new_ratings = String::from("userId,movieId,rating\n");
    for pair in &ratings {
        new_ratings.push_str(&format!("newcomer,{},{}\n", pair[0], pair[1]));
    }
    new_ratings.push_str("newcomer,9999,4.0\n");
    write(dir.path(), "new-ratings.csv", &new_ratings);
    write(
        dir.path(),
        "fold-in.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/als/latest\"\n[input.columns]\nuser = \"userId\"\nitem = \"movieId\"\nrating = \"rating\"\n[recommend]\nk = 5\nusers_from = \"new-ratings.csv\"\n[output]\npath = \"folded.csv\"\n",
    );
    let summary = ok_json(dir.path(), &["fold-in.toml"]);
    let fold_in = &summary["metrics"]["fold_in"];
    assert_eq!(
        (
            fold_in["users"].clone(),
            fold_in["unknown_item_ratings"].clone()
        ),
        (json!(1), json!(1)),
        "{summary}"
    );
    let (header, rows) = read_csv(&dir.path().join("folded.csv"));
    assert_eq!(header, ["user", "item", "score", "rank"]);
    let batch_items: Vec<Value> = rows
        .iter()
        .map(|row| {
            assert_eq!(row[0], "newcomer");
            json!(row[1].parse::<i64>().unwrap())
        })
        .collect();
    assert_eq!(batch_items, items(&folded));
    write(
        dir.path(),
        "similar.toml",
        "[job]\nkind = \"recommend\"\n[model]\nfrom = \"models/als/latest\"\n[recommend]\nk = 4\ntarget = \"similar_items\"\n[output]\npath = \"similar.csv\"\n",
    );
    ok_json(dir.path(), &["similar.toml"]);
    let (header, rows) = read_csv(&dir.path().join("similar.csv"));
    assert_eq!(header, ["item", "similar_item", "similarity", "rank"]);
    let of_three: Vec<Value> = rows
        .iter()
        .filter(|row| row[0] == "3")
        .map(|row| json!(row[1].parse::<i64>().unwrap()))
        .collect();
    let served: Vec<Value> = list.iter().map(|item| item["item"].clone()).collect();
    assert_eq!(of_three, served);
    assert!(rows.iter().all(|row| row[0] != row[1]));
}

#[test]
fn open_inference_protocol_v2_answers_as_the_v1_routes() {
    let dir = trained();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.get_json("/v2/health/live").1["live"], true);
    assert_eq!(server.get_json("/v2/health/ready").1["ready"], true);
    assert_eq!(server.get_json("/v2/models/gbt/ready").1["ready"], true);
    let (status, metadata) = server.get_json("/v2/models/gbt");
    assert_eq!(status, 200);
    assert_eq!(metadata["versions"], json!(["1"]));
    let inputs: Vec<Value> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| input["name"].clone())
        .collect();
    assert_eq!(inputs, [json!("x"), json!("colour"), json!("y")]);
    let (_, v1) = server.post_json(
        "/v1/models/gbt/predict",
        &json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": [[0.5, "red", 0.25], [-1.0, "blue", null]]}}),
    );
    // One tensor per column ...
    let (status, by_columns) = server.post_json(
        "/v2/models/gbt/infer",
        &json!({"id": "r1", "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, -1.0]},
            {"name": "colour", "shape": [2, 1], "datatype": "BYTES", "data": [["red"], ["blue"]]},
            {"name": "y", "shape": [2], "datatype": "FP32", "data": [0.25, null]},
        ]}),
    );
    assert_eq!(status, 200, "{by_columns}");
    assert_eq!(by_columns["id"], "r1");
    assert_eq!(by_columns["model_version"], "1");
    assert_eq!(by_columns["outputs"][0]["name"], "predictions");
    assert_eq!(by_columns["outputs"][0]["data"], v1["predictions"]);
    let probabilities = &by_columns["outputs"][1];
    assert_eq!(probabilities["shape"], json!([2, 2]));
    // ... or one [rows, features] tensor in feature order: the same answer.
    let (_, by_matrix) = server.post_json(
        "/v2/models/gbt/versions/1/infer",
        &json!({"inputs": [{"name": "features", "shape": [2, 3], "datatype": "BYTES", "data": [0.5, "red", 0.25, -1.0, "blue", null]}]}),
    );
    assert_eq!(by_matrix["outputs"], by_columns["outputs"]);
    // The probabilities are in class order: row r holds v1's probabilities of row r.
    let flat: Vec<f64> = probabilities["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    for (row, expected) in v1["probabilities"].as_array().unwrap().iter().enumerate() {
        let mut want: Vec<f64> = expected
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let mut got = flat[row * 2..row * 2 + 2].to_vec();
        want.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        assert_eq!(want, got);
    }
    let (status, error) = server.post_json(
        "/v2/models/gbt/infer",
        &json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}),
    );
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("shape"));
    // ALS pairs.
    let (status, pairs) = server.post_json(
        "/v2/models/als/infer",
        &json!({"inputs": [
            {"name": "user", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "item", "shape": [1], "datatype": "INT64", "data": [2]},
        ]}),
    );
    assert_eq!(status, 200, "{pairs}");
    assert_eq!(pairs["outputs"][0]["shape"], json!([1]));
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn loadtest_reports_each_rate_step_with_a_plot() {
    let dir = trained();
    let server = Server::start(dir.path(), &[]);
    write(
        dir.path(),
        "row.json",
        &json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": [[0.5, "red", 0.25]]}}).to_string(),
    );
    let output = run(submit(dir.path()).args([
        "loadtest",
        "--addr",
        &server.addr,
        "--path",
        "/v1/models/gbt/predict",
        "--body",
        "row.json",
        "--rates",
        "50,100",
        "--step-s",
        "0.5",
        "--connections",
        "2",
        "--out",
        "report",
        "--json",
    ]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/loadtest.json")).unwrap(),
    )
    .unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["offered_rps"], 100.0);
    assert_eq!(steps[1]["requests"], 50);
    assert_eq!(steps[0]["errors"], 0);
    assert!(steps[1]["p99_ms"].as_f64().unwrap() >= steps[1]["p50_ms"].as_f64().unwrap());
    let svg = std::fs::read_to_string(dir.path().join("report/loadtest.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p99 latency against the offered rate"));
    assert!(svg.contains("latency of each request over time"));
    roxmltree::Document::parse(&svg).expect("the plot is well-formed SVG");
    let bad = run(submit(dir.path()).args([
        "loadtest",
        "--addr",
        &server.addr,
        "--path",
        "/",
        "--body",
        "row.json",
        "--rates",
        "0",
    ]));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let dir = trained();
    let server = Server::start(dir.path(), &[]);
    server.wait_for_log("gbt: serving v1");
    let body =
        json!({"dataframe_split": {"columns": ["x", "colour", "y"], "data": [[0.5, "red", 0.1]]}})
            .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "POST /v1/models/gbt/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    // Half the body is in: the request is in flight when the signal arrives.
    std::thread::sleep(std::time::Duration::from_millis(200));
    server.terminate();
    server.wait_for_log("shutting down");
    stream.write_all(rest).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"predictions\""), "{answer}");
    // New connections are refused once it stopped accepting; it exits 0.
    assert_eq!(server.wait(), Some(0));
}
