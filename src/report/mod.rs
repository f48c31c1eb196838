//! What a run tells its caller: a short human summary on stderr and, with `--json`, one JSON
//! object on stdout (for errors too), so wrappers and cron jobs can parse the outcome.

pub mod chart;
pub mod html;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub status: &'static str,
    pub job: String,
    pub kind: &'static str,
    pub version: Option<u64>,
    pub version_dir: Option<String>,
    /// The file a recommend or predict job wrote.
    pub output: Option<String>,
    pub algorithm: String,
    pub metrics: serde_json::Value,
    pub master: String,
    pub threads: usize,
    pub duration_s: f64,
    pub peak_heap_bytes: usize,
    pub dry_run: bool,
    /// Train jobs: whether `latest` now points at the new version, and the gate's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<serde_json::Value>,
    /// Train jobs with `output.skip_unchanged`: nothing was published because the inputs and
    /// the resolved job equal those of `version` (the current latest).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

fn number(value: &serde_json::Value, key: &str) -> String {
    match value.get(key).and_then(serde_json::Value::as_f64) {
        Some(number) => format!("{number:.4}"),
        None => "n/a".to_owned(),
    }
}

/// The few lines a person reads at the end of a run.
pub fn human(summary: &Summary) -> String {
    if summary.unchanged {
        return format!(
            "unchanged: the inputs and the resolved job are those of latest (version {}, {}); nothing was published (output.skip_unchanged)",
            summary.version.unwrap_or(0),
            summary.version_dir.as_deref().unwrap_or("-")
        );
    }
    let counts = &summary.metrics["counts"];
    if let Some(output) = &summary.output {
        let facts: Vec<String> = counts
            .as_object()
            .map(|object| {
                object
                    .iter()
                    .map(|(key, value)| format!("{key} {value}"))
                    .collect()
            })
            .unwrap_or_default();
        return format!(
            "wrote {output} ({} job)\n  counts   {}\n{}",
            summary.kind,
            facts.join(", "),
            run_line(summary),
        );
    }
    let count = |key: &str| {
        counts
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let latest = match (&summary.promoted, &summary.promotion) {
        (Some(false), Some(record)) if record["current_version"].is_u64() => format!(
            "; latest stays v{}: {}",
            record["current_version"],
            record["reason"].as_str().unwrap_or("not better")
        ),
        (Some(false), Some(record)) => format!(
            "; latest did not move: {}",
            record["reason"].as_str().unwrap_or("not better")
        ),
        (Some(false), None) => "; latest did not move".to_owned(),
        _ => ", now latest".to_owned(),
    };
    let mut text = format!(
        "published {} (version {}{latest})\n",
        summary.version_dir.as_deref().unwrap_or("-"),
        summary.version.unwrap_or(0),
    );
    if summary.algorithm != "als" {
        text.push_str(&format!(
            "  data     {} rows, {} features ({} categorical); train {}, validation {}, test {}\n",
            count("rows"),
            count("features"),
            count("categorical_features"),
            count("train_rows"),
            count("validation_rows"),
            count("test_rows"),
        ));
        let headline = headline(
            summary,
            &[
                "accuracy", "f1", "auc_roc", "auc_pr", "log_loss", "rmse", "mae", "r2",
            ],
        );
        let trees = &summary.metrics["trees"];
        text.push_str(&format!(
            "  metrics  {}\n  model    {} with {} trees (grown {}, deepest {})\n",
            if headline.is_empty() {
                "n/a (empty test split)".to_owned()
            } else {
                headline.join("  ")
            },
            summary.algorithm,
            trees["kept"],
            trees["grown"],
            trees["max_depth_reached"],
        ));
        text.push_str(&run_line(summary));
        return text;
    }
    text.push_str(&format!(
        "  data     {} ratings, {} users, {} items; train {}, test {}\n",
        count("ratings"),
        count("users"),
        count("items"),
        count("train_ratings"),
        count("test_ratings"),
    ));
    let cold = count("test_cold_start");
    let headline = headline(
        summary,
        &[
            "rmse",
            "mae",
            "precision_at_k",
            "recall_at_k",
            "ndcg_at_k",
            "map_at_k",
        ],
    );
    text.push_str(&format!(
        "  metrics  {}  (train rmse {}; {} test rows cold start: {})\n",
        if headline.is_empty() {
            "n/a".to_owned()
        } else {
            headline.join("  ")
        },
        number(&summary.metrics, "train_rmse"),
        cold,
        counts
            .get("cold_start_strategy")
            .and_then(serde_json::Value::as_str)
            .map_or("", |strategy| if strategy == "drop" {
                "dropped"
            } else {
                "counted as missing"
            }),
    ));
    text.push_str(&run_line(summary));
    text
}

/// `name value` for each of `keys` the metrics hold (nulls left out).
fn headline(summary: &Summary, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|key| {
            summary
                .metrics
                .get(**key)
                .is_some_and(|value| !value.is_null())
        })
        .map(|key| format!("{key} {}", number(&summary.metrics, key)))
        .collect()
}

/// The last line of every summary: where it ran, how long, how much heap.
fn run_line(summary: &Summary) -> String {
    // A cluster master's parallelism is the cluster's; only local masters have a thread count.
    let threads = if summary.master.starts_with("local") {
        format!(
            " ({} thread{})",
            summary.threads,
            if summary.threads == 1 { "" } else { "s" }
        )
    } else {
        " (the cluster's executors)".to_owned()
    };
    format!(
        "  run      {}{threads}, {:.2}s, peak heap {:.1} MiB",
        summary.master,
        summary.duration_s,
        summary.peak_heap_bytes as f64 / (1 << 20) as f64,
    )
}

/// The `--json` object of a failed run.
pub fn error_json(exit_code: u8, kind: &str, message: &str) -> String {
    serde_json::json!({
        "status": "error",
        "exit_code": exit_code,
        "kind": kind,
        "error": message,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(master: &str, threads: usize) -> Summary {
        Summary {
            status: "ok",
            job: "j".to_owned(),
            kind: "train",
            version: Some(1),
            version_dir: Some("models/j/v1".to_owned()),
            output: None,
            algorithm: "als".to_owned(),
            metrics: serde_json::json!({}),
            master: master.to_owned(),
            threads,
            duration_s: 1.0,
            peak_heap_bytes: 0,
            dry_run: false,
            promoted: Some(true),
            promotion: None,
            unchanged: false,
        }
    }

    #[test]
    fn a_cluster_run_does_not_claim_a_thread_count() {
        assert!(run_line(&summary("spark://head:7077", 1)).contains("(the cluster's executors)"));
        assert!(run_line(&summary("local[1]", 1)).contains("(1 thread)"));
        assert!(run_line(&summary("local[2]", 2)).contains("(2 threads)"));
        let unchanged = Summary {
            unchanged: true,
            ..summary("local[2]", 2)
        };
        assert!(human(&unchanged).starts_with("unchanged"));
    }
}
