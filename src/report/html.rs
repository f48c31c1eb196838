//! `report.html`: one self-contained page per version (inline SVG and CSS, no script, no
//! network) drawn from the version's own files (manifest, metrics, curves, resolved job), and
//! the side-by-side page of `submit models report --compare`.

use std::fmt::Write;

use serde_json::Value;

use super::chart::{self, Axis, Mark, Rule, Series, escape, number};

/// The files of one version a report is drawn from.
pub struct VersionFiles {
    /// `v<N>` (or the staging name before it has one).
    pub label: String,
    pub manifest: Value,
    pub metrics: Value,
    pub curves: Value,
    pub resolved_toml: String,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1340px;margin:24px auto;padding:0 16px;color:#222}h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}th{background:#f4f4f4}.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{border:1px solid #eee}pre{background:#f8f8f8;padding:10px;font-size:12px;overflow:auto}.changed{background:#fff3c4}.better{color:#007a3d}.worse{color:#b00020}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::Number(number) => number.as_f64().map_or_else(
            || number.to_string(),
            |value| {
                if number.is_f64() {
                    format!("{value:.6}")
                } else {
                    number.to_string()
                }
            },
        ),
        Value::String(text) => escape(text),
        other => escape(&crate::text::shorten(&other.to_string(), 200)),
    }
}

/// A metric as a table shows it: whole numbers without decimals, others to six places.
fn figure(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.6}")
    }
}

fn bytes(value: &Value) -> String {
    value.as_f64().map_or_else(
        || "—".to_owned(),
        |bytes| format!("{:.1} MiB", bytes / (1u64 << 20) as f64),
    )
}

/// The headline figures of a version: every number at the top of metrics.json.
fn scalar_metrics(metrics: &Value) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    if let Some(fields) = metrics.as_object() {
        for (key, value) in fields {
            if matches!(
                key.as_str(),
                "peak_heap_bytes" | "peak_rss_bytes" | "threads"
            ) {
                continue;
            }
            if let Some(number) = value.as_f64() {
                found.push((key.clone(), number));
            }
        }
    }
    found
}

fn header(version: &VersionFiles) -> String {
    let manifest = &version.manifest;
    let metrics = &version.metrics;
    let mut html = String::new();
    let _ = write!(
        html,
        "<h1>{} {} — {}</h1><table>",
        escape(manifest["job"].as_str().unwrap_or("job")),
        escape(&version.label),
        escape(manifest["algorithm"].as_str().unwrap_or(""))
    );
    let fingerprints: Vec<String> = manifest["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|input| {
                    format!(
                        "{} ({})",
                        input["path"]
                            .as_str()
                            .or(input["source"].as_str())
                            .unwrap_or("input"),
                        input["blake3"]
                            .as_str()
                            .or(input["fingerprint"].as_str())
                            .map_or_else(|| cell(input), |hash| hash.chars().take(16).collect())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let promotion = match &manifest["promotion"] {
        Value::Null => "always (latest moves to every new version)".to_owned(),
        record => format!(
            "{}: {}",
            if record["promoted"].as_bool() == Some(true) {
                "promoted"
            } else {
                "not promoted"
            },
            record["reason"].as_str().unwrap_or("")
        ),
    };
    for (name, value) in [
        ("engine", cell(&manifest["engine"])),
        (
            "master",
            format!(
                "{} ({} threads)",
                cell(&manifest["master"]),
                cell(&manifest["threads"])
            ),
        ),
        ("seed", cell(&manifest["seed"])),
        ("created", cell(&manifest["created_at"])),
        (
            "tool",
            format!("submit {}", cell(&manifest["tool_version"])),
        ),
        ("data", escape(&fingerprints.join("; "))),
        ("peak heap", bytes(&metrics["peak_heap_bytes"])),
        ("peak RSS", bytes(&metrics["peak_rss_bytes"])),
        ("promotion", escape(&promotion)),
    ] {
        let _ = write!(html, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    html.push_str("</table>");
    html
}

fn durations_chart(metrics: &Value) -> Option<String> {
    let timings = metrics["timings_s"].as_object()?;
    let bars: Vec<(String, f64)> = [
        "ingest",
        "prepare",
        "tuning",
        "fit",
        "evaluate",
        "before_publish",
    ]
    .iter()
    .filter_map(|phase| Some(((*phase).to_owned(), timings.get(*phase)?.as_f64()?)))
    .collect();
    (!bars.is_empty()).then(|| chart::bars("time per phase", "seconds", &bars))
}

fn loss_chart(curves: &Value, metrics: &Value) -> Option<String> {
    let points = |key: &str| -> Vec<(f64, f64)> {
        curves[key]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .enumerate()
                    .filter_map(|(at, value)| Some(((at + 1) as f64, value.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let train = points("train_loss");
    let validation = points("validation_loss");
    if train.is_empty() && validation.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    if !train.is_empty() {
        series.push(Series::new(
            curves["train_loss_name"]
                .as_str()
                .unwrap_or("training loss"),
            train,
            Mark::Line,
        ));
    }
    if !validation.is_empty() {
        series.push(Series::new("validation loss", validation, Mark::Dashed));
    }
    let rules: Vec<Rule> = metrics["trees"]["kept"]
        .as_f64()
        .filter(|kept| Some(*kept) != metrics["trees"]["grown"].as_f64())
        .map(|kept| Rule {
            x: kept,
            label: format!("early stop: {kept} trees kept"),
        })
        .into_iter()
        .collect();
    Some(chart::plot(
        "training curve",
        &Axis::linear("iteration"),
        &Axis::linear(curves["loss_unit"].as_str().unwrap_or("loss")),
        &series,
        &rules,
    ))
}

fn pairs(value: &Value) -> Vec<(f64, f64)> {
    value
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|point| Some((point.get(0)?.as_f64()?, point.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn histogram_series(value: &Value) -> Vec<(String, Vec<u64>)> {
    value
        .as_array()
        .map(|classes| {
            classes
                .iter()
                .map(|class| {
                    (
                        format!("true class {}", class["class"].as_str().unwrap_or("?")),
                        class["counts"]
                            .as_array()
                            .map(|counts| counts.iter().filter_map(Value::as_u64).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tree_charts(curves: &Value, metrics: &Value, charts: &mut Vec<String>) {
    let evaluation = &curves["evaluation"];
    if evaluation["kind"] == "binary" {
        let positive = evaluation["positive"].as_str().unwrap_or("1");
        charts.push(chart::plot(
            &format!(
                "ROC curve (AUC {})",
                number(metrics["auc_roc"].as_f64().unwrap_or(f64::NAN))
            ),
            &Axis::linear("false positive rate").fixed(0.0, 1.0),
            &Axis::linear("true positive rate").fixed(0.0, 1.0),
            &[
                Series::new("model", pairs(&evaluation["roc"]), Mark::Line),
                Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], Mark::Dashed),
            ],
            &[],
        ));
        charts.push(chart::plot(
            &format!(
                "precision-recall (AUC {})",
                number(metrics["auc_pr"].as_f64().unwrap_or(f64::NAN))
            ),
            &Axis::linear(&format!("recall of class {positive}")).fixed(0.0, 1.0),
            &Axis::linear("precision").fixed(0.0, 1.0),
            &[Series::new("model", pairs(&evaluation["pr"]), Mark::Line)],
            &[],
        ));
        charts.push(chart::plot(
            "calibration (reliability)",
            &Axis::linear(&format!("mean predicted probability of {positive}")).fixed(0.0, 1.0),
            &Axis::linear(&format!("observed fraction of {positive}")).fixed(0.0, 1.0),
            &[
                Series::new("model", pairs(&evaluation["calibration"]), Mark::Line),
                Series::new("perfect", vec![(0.0, 0.0), (1.0, 1.0)], Mark::Dashed),
            ],
            &[],
        ));
        charts.push(chart::histogram(
            &format!("predicted probability of {positive}, by true class"),
            &Axis::linear(&format!("probability of {positive}")),
            "test rows",
            (0.0, 1.0),
            &histogram_series(&evaluation["score_histograms"]),
        ));
    } else if evaluation["kind"] == "multiclass" {
        charts.push(chart::histogram(
            "predicted probability of the true class",
            &Axis::linear("probability"),
            "test rows",
            (0.0, 1.0),
            &histogram_series(&evaluation["score_histograms"]),
        ));
    } else if evaluation["kind"] == "regression" {
        let scatter = pairs(&evaluation["scatter"]);
        let (low, high) = scatter
            .iter()
            .flat_map(|(p, y)| [*p, *y])
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
                (low.min(v), high.max(v))
            });
        charts.push(chart::plot(
            "predicted vs actual (test sample)",
            &Axis::linear("predicted"),
            &Axis::linear("actual"),
            &[
                Series::new("test rows", scatter, Mark::Dots),
                Series::new(
                    "predicted = actual",
                    vec![(low, low), (high, high)],
                    Mark::Dashed,
                ),
            ],
            &[],
        ));
        let residuals = &evaluation["residuals"];
        charts.push(chart::histogram(
            "residuals (actual - predicted), 1st to 99th percentile",
            &Axis::linear("residual"),
            "test rows",
            (
                residuals["low"].as_f64().unwrap_or(0.0),
                residuals["high"].as_f64().unwrap_or(1.0),
            ),
            &[(
                "test rows".to_owned(),
                residuals["counts"]
                    .as_array()
                    .map(|counts| counts.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            )],
        ));
    }
    if let (Some(matrix), Some(classes)) = (
        metrics["confusion_matrix"].as_array(),
        metrics["classes"].as_array(),
    ) {
        let names: Vec<String> = classes
            .iter()
            .map(|class| {
                class
                    .as_str()
                    .map_or_else(|| class.to_string(), str::to_owned)
            })
            .collect();
        let values: Vec<Vec<f64>> = matrix
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|cells| cells.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default()
            })
            .collect();
        charts.push(chart::heat_map(
            "confusion matrix (test rows)",
            "actual class",
            "predicted class",
            &names,
            &names,
            &values,
        ));
    }
    if let Some(importances) = metrics["feature_importances"].as_array() {
        let bars = top_features(importances, "importance");
        charts.push(chart::bars(
            "feature importance (split gain x node weight, Spark's rule; top 25)",
            "share of total importance",
            &bars,
        ));
    }
    let contributions = &metrics["feature_contributions"];
    if let Some(features) = contributions["features"].as_array() {
        let bars = top_features(features, "mean_abs");
        let rows = contributions["rows"].as_u64().unwrap_or(0);
        charts.push(chart::bars(
            &format!("mean |contribution| (TreeSHAP over {rows} test rows; top 25)"),
            "mean absolute contribution to the raw score",
            &bars,
        ));
    }
}

/// The first 25 `{"feature": name, key: value}` entries of a ranked metrics list, as bars.
fn top_features(entries: &[Value], key: &str) -> Vec<(String, f64)> {
    entries
        .iter()
        .take(25)
        .filter_map(|entry| Some((entry["feature"].as_str()?.to_owned(), entry[key].as_f64()?)))
        .collect()
}

fn als_charts(curves: &Value, metrics: &Value, charts: &mut Vec<String>) {
    if let Some(baseline) = metrics["baseline"].as_object() {
        let bars: Vec<(String, f64)> = ["rmse", "mae"]
            .iter()
            .flat_map(|key| {
                [
                    metrics[*key]
                        .as_f64()
                        .map(|value| (format!("{key}: model"), value)),
                    baseline
                        .get(*key)
                        .and_then(Value::as_f64)
                        .map(|value| (format!("{key}: training mean"), value)),
                ]
            })
            .flatten()
            .collect();
        if !bars.is_empty() {
            charts.push(chart::bars(
                "test error: the model beside guessing the training mean",
                "error (rating units)",
                &bars,
            ));
        }
    }
    if let Some(baseline) = metrics["ranking"]["popularity_baseline"].as_object() {
        let mut bars = Vec::new();
        for (key, popular) in baseline {
            if let (Some(ours), Some(popular)) = (metrics[key.as_str()].as_f64(), popular.as_f64())
            {
                bars.push((format!("{key}: model"), ours));
                bars.push((format!("{key}: popularity"), popular));
            }
        }
        if !bars.is_empty() {
            charts.push(chart::bars(
                &format!(
                    "ranking metrics at k = {}: the model beside the popularity baseline",
                    cell(&metrics["ranking"]["k"])
                ),
                "metric value",
                &bars,
            ));
        }
    }
    for (key, title, axis) in [
        (
            "user_activity",
            "user activity (training ratings per user)",
            "ratings per user (bin start)",
        ),
        (
            "item_popularity",
            "item popularity (training ratings per item)",
            "ratings per item (bin start)",
        ),
    ] {
        let points = pairs(&curves[key]);
        if !points.is_empty() {
            charts.push(chart::plot(
                &format!("{title}, log-log"),
                &Axis::log(axis),
                &Axis::log(if key == "user_activity" {
                    "users"
                } else {
                    "items"
                }),
                &[Series::new("rows", points, Mark::Line)],
                &[],
            ));
        }
    }
}

fn tuning_section(metrics: &Value) -> String {
    let tuning = &metrics["tuning"];
    let Some(results) = tuning["results"].as_array() else {
        return String::new();
    };
    let mut html = format!(
        "<h2>Tuning</h2><p>{} over {} fold(s), metric {} ({} is better); {} of {} grid points, {} models.</p><table><tr><th>grid point</th><th>mean</th><th>std</th></tr>",
        cell(&tuning["method"]),
        cell(&tuning["folds"]),
        cell(&tuning["metric"]),
        if tuning["higher_is_better"].as_bool() == Some(true) {
            "higher"
        } else {
            "lower"
        },
        cell(&tuning["points_evaluated"]),
        cell(&tuning["grid_points"]),
        cell(&tuning["models_trained"]),
    );
    for (rank, result) in results.iter().enumerate() {
        let values = result["values"]
            .as_object()
            .map(|values| {
                values
                    .iter()
                    .map(|(name, value)| format!("{name} = {value}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr{}><td>{}{}</td><td>{}</td><td>± {}</td></tr>",
            if rank == 0 { " class=\"changed\"" } else { "" },
            escape(&values),
            if rank == 0 { " (winner)" } else { "" },
            cell(&result["mean"]),
            cell(&result["std"]),
        );
    }
    html.push_str("</table>");
    // Two parameters: the mean as a heat map over the grid.
    if let Some(grid) = tuning["grid"].as_object()
        && grid.len() == 2
    {
        let names: Vec<&String> = grid.keys().collect();
        let axis_values =
            |name: &str| -> Vec<Value> { grid[name].as_array().cloned().unwrap_or_default() };
        let (rows, columns) = (axis_values(names[0]), axis_values(names[1]));
        let values: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|column| {
                        results
                            .iter()
                            .find(|result| {
                                result["values"][names[0].as_str()] == *row
                                    && result["values"][names[1].as_str()] == *column
                            })
                            .and_then(|result| result["mean"].as_f64())
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect();
        let label = |value: &Value| value.to_string();
        html.push_str("<div class=\"charts\">");
        html.push_str(&chart::heat_map(
            &format!(
                "mean {} over the grid",
                tuning["metric"].as_str().unwrap_or("score")
            ),
            names[0],
            names[1],
            &rows.iter().map(label).collect::<Vec<_>>(),
            &columns.iter().map(label).collect::<Vec<_>>(),
            &values,
        ));
        html.push_str("</div>");
    }
    html
}

fn metrics_table(metrics: &Value) -> String {
    let mut html = String::from("<table><tr><th>metric</th><th>value</th></tr>");
    for (name, value) in scalar_metrics(metrics) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&name),
            figure(value)
        );
    }
    html.push_str("</table>");
    if let Some(counts) = metrics["counts"].as_object() {
        html.push_str("<table><tr><th>count</th><th>value</th></tr>");
        for (name, value) in counts {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(name),
                cell(value)
            );
        }
        html.push_str("</table>");
    }
    html
}

/// The report of one version.
pub fn render(version: &VersionFiles) -> String {
    let mut body = header(version);
    body.push_str("<h2>Metrics (test split)</h2>");
    body.push_str(&metrics_table(&version.metrics));
    let mut charts = Vec::new();
    if let Some(svg) = durations_chart(&version.metrics) {
        charts.push(svg);
    }
    if let Some(svg) = loss_chart(&version.curves, &version.metrics) {
        charts.push(svg);
    }
    if version.manifest["algorithm"] == "als" {
        als_charts(&version.curves, &version.metrics, &mut charts);
    } else {
        tree_charts(&version.curves, &version.metrics, &mut charts);
    }
    body.push_str("<h2>Charts</h2><div class=\"charts\">");
    for svg in &charts {
        body.push_str(svg);
    }
    body.push_str("</div>");
    body.push_str(&tuning_section(&version.metrics));
    let _ = write!(
        body,
        "<h2>Parameters</h2><pre>{}</pre><h2>Resolved job file</h2><pre>{}</pre>",
        escape(&serde_json::to_string_pretty(&version.manifest["params"]).unwrap_or_default()),
        escape(&version.resolved_toml)
    );
    page(
        &format!(
            "{} {} report",
            version.manifest["job"].as_str().unwrap_or("job"),
            version.label
        ),
        &body,
    )
}

/// Several versions side by side: metrics with deltas against the first, the parameters that
/// differ highlighted, the headline metric over the versions and the training curves overlaid.
pub fn compare(versions: &[VersionFiles]) -> String {
    let Some(first) = versions.first() else {
        return page("no versions", "<p>no versions</p>");
    };
    let mut body = format!(
        "<h1>{}: {} versions compared</h1>",
        escape(first.manifest["job"].as_str().unwrap_or("job")),
        versions.len()
    );
    let mut names: Vec<String> = Vec::new();
    for version in versions {
        for (name, _) in scalar_metrics(&version.metrics) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    body.push_str("<h2>Metrics</h2><table><tr><th>metric</th>");
    for version in versions {
        let _ = write!(body, "<th>{}</th>", escape(&version.label));
    }
    body.push_str("</tr>");
    for name in &names {
        let _ = write!(body, "<tr><td>{}</td>", escape(name));
        // The names are top-level numbers of metrics.json: read each directly.
        let base = first.metrics[name.as_str()].as_f64();
        let lower_is_better = crate::eval::metric::Metric::parse(name)
            .is_some_and(|metric| !metric.higher_is_better());
        for version in versions {
            let value = version.metrics[name.as_str()].as_f64();
            match (value, base) {
                (Some(value), Some(base)) if version.label != first.label => {
                    let delta = value - base;
                    let better = (delta < 0.0) == lower_is_better && delta != 0.0;
                    let _ = write!(
                        body,
                        "<td>{} <span class=\"{}\">({}{})</span></td>",
                        figure(value),
                        if delta == 0.0 {
                            ""
                        } else if better {
                            "better"
                        } else {
                            "worse"
                        },
                        if delta >= 0.0 { "+" } else { "" },
                        figure(delta)
                    );
                }
                (Some(value), _) => {
                    let _ = write!(body, "<td>{}</td>", figure(value));
                }
                (None, _) => body.push_str("<td>—</td>"),
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</table><h2>Parameters</h2><table><tr><th>parameter</th>");
    for version in versions {
        let _ = write!(body, "<th>{}</th>", escape(&version.label));
    }
    body.push_str("</tr>");
    let mut parameters: Vec<String> = Vec::new();
    for version in versions {
        if let Some(params) = version.manifest["params"].as_object() {
            for key in params.keys() {
                if !parameters.contains(key) {
                    parameters.push(key.clone());
                }
            }
        }
    }
    for parameter in &parameters {
        let values: Vec<&Value> = versions
            .iter()
            .map(|version| &version.manifest["params"][parameter.as_str()])
            .collect();
        let differs = values.iter().any(|value| *value != values[0]);
        let _ = write!(
            body,
            "<tr{}><td>{}</td>",
            if differs { " class=\"changed\"" } else { "" },
            escape(parameter)
        );
        for value in values {
            let _ = write!(body, "<td>{}</td>", cell(value));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table><h2>Charts</h2><div class=\"charts\">");
    if let Some(headline) = crate::artifact::headline_metric(&first.metrics).map(|(name, _)| name) {
        let points: Vec<(f64, f64)> = versions
            .iter()
            .enumerate()
            .filter_map(|(at, version)| {
                Some(((at + 1) as f64, version.metrics[headline].as_f64()?))
            })
            .collect();
        body.push_str(&chart::plot(
            &format!("{headline} by version ({} first)", first.label),
            &Axis::linear("version, in the order given"),
            &Axis::linear(headline),
            &[Series::new(headline, points, Mark::Line)],
            &[],
        ));
    }
    let curves: Vec<Series> = versions
        .iter()
        .filter_map(|version| {
            let points: Vec<(f64, f64)> = version.curves["train_loss"]
                .as_array()?
                .iter()
                .enumerate()
                .filter_map(|(at, value)| Some(((at + 1) as f64, value.as_f64()?)))
                .collect();
            (!points.is_empty()).then(|| Series::new(&version.label, points, Mark::Line))
        })
        .collect();
    if !curves.is_empty() {
        body.push_str(&chart::plot(
            "training curves overlaid",
            &Axis::linear("iteration"),
            &Axis::linear(first.curves["loss_unit"].as_str().unwrap_or("loss")),
            &curves,
            &[],
        ));
    }
    body.push_str("</div>");
    page(
        &format!(
            "{} comparison",
            first.manifest["job"].as_str().unwrap_or("job")
        ),
        &body,
    )
}
