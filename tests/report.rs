//! Every version's `report.html`, checked as a document: it is listed with its hash in the
//! manifest, each SVG parses, the figures and labels it shows are metrics.json's, nothing points
//! outside the file; `models report --compare` side by side; and, where Chromium is installed,
//! a real browser renders it to a PNG without console errors.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A table with string labels ("yes"/"no") and a string categorical.
fn churn_csv() -> String {
    let mut text = String::from("plan,usage,label\n");
    for row in 0..800u32 {
        let plan = ["basic", "plus", "pro"][(row % 3) as usize];
        let usage = f64::from((row * 7919) % 97) / 10.0;
        let yes = (plan == "basic") ^ (usage > 7.0) ^ (row % 17 == 0);
        text.push_str(&format!(
            "{plan},{usage},{}\n",
            if yes { "yes" } else { "no" }
        ));
    }
    text
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SVG elements of a page, each parsed as XML.
fn svgs(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("every <svg> is closed") + start + 6;
        let svg = &rest[start..end];
        roxmltree::Document::parse(svg).unwrap_or_else(|error| panic!("{error}: {svg}"));
        found.push(svg.to_owned());
        rest = &rest[end..];
    }
    found
}

fn self_contained(html: &str) {
    assert!(!html.contains("<script"), "no script");
    let outside = html
        .replace("http://www.w3.org/2000/svg", "")
        .matches("http")
        .count();
    assert_eq!(outside, 0, "no external URL");
    assert!(!html.contains("src="));
}

fn version_report(version: &Path) -> String {
    let manifest = read_json(&version.join("manifest.json"));
    let listed = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["path"] == "report.html" && entry["blake3"].is_string());
    assert!(listed, "report.html is hashed in the manifest");
    std::fs::read_to_string(version.join("report.html")).unwrap()
}

#[test]
fn every_kind_of_version_has_a_report_with_its_charts_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "churn.csv", &churn_csv());
    write(
        dir.path(),
        "gbt.toml",
        "[job]\nname = \"gbt\"\n[input]\npath = \"churn.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 30\nvalidation_fraction = 0.2\n",
    );
    write(
        dir.path(),
        "forest.toml",
        "[job]\nname = \"forest\"\n[input]\nsynthetic = { kind = \"regression\", rows = 800, features = 3 }\n[model]\nalgorithm = \"random_forest\"\ntask = \"regression\"\nnum_trees = 5\n",
    );
    write(
        dir.path(),
        "als.toml",
        "[job]\nname = \"als\"\n[input]\nsynthetic = { kind = \"ratings\", users = 100, items = 60, ratings = 2000, rank = 2 }\n[model]\nrank = 3\nmax_iter = 6\nimplicit_prefs = true\n[tuning]\nmethod = \"train_validation_split\"\n[tuning.grid]\nrank = [2, 3]\nreg_param = [0.05, 0.5]\n",
    );
    write(
        dir.path(),
        "explicit.toml",
        "[job]\nname = \"explicit\"\n[input]\nsynthetic = { kind = \"ratings\", users = 100, items = 60, ratings = 2000, rank = 2 }\n[model]\nrank = 3\nmax_iter = 6\n",
    );
    for job in ["gbt.toml", "forest.toml", "als.toml", "explicit.toml"] {
        ok_json(dir.path(), &[job]);
    }

    let gbt = dir.path().join("models/gbt/v1");
    let html = version_report(&gbt);
    self_contained(&html);
    let metrics = read_json(&gbt.join("metrics.json"));
    let charts = svgs(&html);
    assert!(charts.len() >= 8, "{} charts", charts.len());
    let auc = submit::report::chart::number(metrics["auc_roc"].as_f64().unwrap());
    assert!(html.contains(&format!("ROC curve (AUC {auc})")), "{html}");
    for words in [
        "precision-recall",
        "calibration",
        "confusion matrix",
        "feature importance",
        "training curve",
        "validation loss",
        "early stop",
        "predicted probability of yes",
        "time per phase",
        "Resolved job file",
    ] {
        assert!(html.contains(words), "the GBT report lacks {words:?}");
    }
    // The confusion matrix cells are metrics.json's, with the label names.
    let matrix = metrics["confusion_matrix"].as_array().unwrap();
    let confusion = charts
        .iter()
        .find(|svg| svg.contains("confusion matrix"))
        .unwrap();
    for count in matrix.iter().flat_map(|row| row.as_array().unwrap()) {
        assert!(
            confusion.contains(&format!(">{count}<")),
            "{count} in {confusion}"
        );
    }
    assert!(confusion.contains(">yes<") && confusion.contains(">no<"));

    let forest = dir.path().join("models/forest/v1");
    let html = version_report(&forest);
    self_contained(&html);
    svgs(&html);
    assert!(html.contains("predicted vs actual") && html.contains("residuals"));

    let als = dir.path().join("models/als/v1");
    let html = version_report(&als);
    self_contained(&html);
    svgs(&html);
    for words in [
        "popularity baseline",
        "user activity",
        "item popularity",
        "Tuning",
        "(winner)",
        "over the grid",
    ] {
        assert!(html.contains(words), "the ALS report lacks {words:?}");
    }

    let explicit = dir.path().join("models/explicit/v1");
    let html = version_report(&explicit);
    svgs(&html);
    let metrics = read_json(&explicit.join("metrics.json"));
    let baseline = metrics["baseline"]["rmse"].as_f64().unwrap();
    assert!(
        metrics["rmse"].as_f64().unwrap() < baseline,
        "the model beats the mean"
    );
    assert!(html.contains("guessing the training mean") && html.contains("training curve"));

    // Side by side: a second GBT version with another depth.
    ok_json(dir.path(), &["gbt.toml", "--conf", "model.max_depth=2"]);
    let out = dir.path().join("compare.html");
    let output = run(submit(dir.path()).args([
        "models",
        "report",
        "models/gbt/v1",
        "--compare",
        "models/gbt/v2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["versions"], serde_json::json!(["v1", "v2"]));
    let html = std::fs::read_to_string(&out).unwrap();
    self_contained(&html);
    assert_eq!(svgs(&html).len(), 2);
    assert!(
        html.contains("<tr class=\"changed\"><td>max_depth</td>"),
        "{html}"
    );
    assert!(html.contains("training curves overlaid"));
    // A damaged version is refused before anything is drawn.
    std::fs::write(gbt.join("curves.json"), "{}").unwrap();
    let output = run(submit(dir.path()).args(["models", "report", "models/gbt/v1"]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
#[ignore = "needs chromium (apt-get install chromium)"]
fn chromium_renders_a_report_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "churn.csv", &churn_csv());
    write(
        dir.path(),
        "gbt.toml",
        "[job]\nname = \"gbt\"\n[input]\npath = \"churn.csv\"\n[model]\nalgorithm = \"gbt\"\nmax_iter = 20\n",
    );
    ok_json(dir.path(), &["gbt.toml"]);
    let report = dir.path().join("models/gbt/v1/report.html");
    let png = dir.path().join("report.png");
    let profile = dir.path().join("chromium-profile");
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--hide-scrollbars",
            "--window-size=1340,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(png.is_file(), "no screenshot: {log}");
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "a blank page?"
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .collect();
    assert!(console_errors.is_empty(), "{console_errors:?}");
}
