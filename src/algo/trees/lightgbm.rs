//! Export to LightGBM's text model format (`model.lgb.txt`), so Python users can load a model
//! with `lightgbm.Booster(model_file=...)` and get the same predictions without us.
//!
//! The mapping is exact because our split tests are LightGBM's: numeric splits send missing
//! values and `x <= threshold` left (decision type "default left, missing = NaN"); categorical
//! splits send the listed category indices left and everything else, NaN included, right.
//! Gradient boosting exports as `binary` (log-odds leaves), `multiclass` (one tree per class per
//! iteration, in LightGBM's order) or `regression`/`regression_l1`, with the starting scores
//! folded into the first iteration's trees as LightGBM does. Random forests export with
//! `average_output`; a binary forest classifier exports as a regression forest whose
//! prediction is the probability of class 1 (our soft vote, which a LightGBM `binary` forest
//! cannot express). Multiclass forests have no exact LightGBM form and are not exported.

use std::fmt::Write;

use super::{Ensemble, Loss, Node, Rule, Tree, TreeModel, TreeTask};

/// Per feature: `[min:max]` of a numeric column or the category count of a categorical one.
#[derive(Clone, Debug)]
pub enum FeatureInfo {
    Numeric {
        min: f64,
        max: f64,
    },
    /// The category names, index = category (what `pandas_categorical` lists).
    Categorical {
        names: Vec<String>,
    },
    Unused,
}

/// The LightGBM model text, or `None` when the model has no exact LightGBM form.
pub fn export(
    model: &TreeModel,
    feature_names: &[String],
    infos: &[FeatureInfo],
    monotone: &[i8],
) -> Option<String> {
    let multiclass = model.is_multiclass_boosting();
    let objective = match (model.ensemble, model.task, model.loss) {
        (Ensemble::Gbt, TreeTask::Classification, _) if multiclass => {
            &format!("multiclass num_class:{}", model.classes)
        }
        (Ensemble::Gbt, TreeTask::Classification, _) => "binary sigmoid:1",
        (Ensemble::Gbt, TreeTask::Regression, Some(Loss::Absolute)) => "regression_l1",
        (Ensemble::Gbt, TreeTask::Regression, _) => "regression",
        (Ensemble::RandomForest, TreeTask::Classification, _) if model.classes == 2 => "regression",
        (Ensemble::RandomForest, TreeTask::Regression, _) => "regression",
        (Ensemble::RandomForest, TreeTask::Classification, _) => return None,
    };
    let mut out = String::new();
    let per_iteration = if multiclass { model.classes } else { 1 };
    let _ = write!(
        out,
        "tree\nversion=v4\nnum_class={per_iteration}\nnum_tree_per_iteration={per_iteration}\nlabel_index=0\n"
    );
    let _ = writeln!(
        out,
        "max_feature_idx={}",
        feature_names.len().saturating_sub(1)
    );
    let _ = writeln!(out, "objective={objective}");
    if model.ensemble == Ensemble::RandomForest {
        out.push_str("average_output\n");
    }
    // LightGBM's feature names may not contain spaces.
    let names: Vec<String> = feature_names
        .iter()
        .map(|name| name.replace(|c: char| c.is_whitespace() || c == ':' || c == '=', "_"))
        .collect();
    let _ = writeln!(out, "feature_names={}", names.join(" "));
    let info_texts: Vec<String> = infos
        .iter()
        .map(|info| match info {
            FeatureInfo::Numeric { min, max } => format!("[{min}:{max}]"),
            FeatureInfo::Categorical { names } => (0..names.len())
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(":"),
            FeatureInfo::Unused => "none".to_owned(),
        })
        .collect();
    let _ = writeln!(out, "feature_infos={}", info_texts.join(" "));
    let blocks: Vec<String> = model
        .trees
        .iter()
        .enumerate()
        .map(|(index, tree)| {
            let offset = match model.ensemble {
                Ensemble::Gbt if multiclass && index < model.classes => {
                    model.class_init_scores[index]
                }
                Ensemble::Gbt if !multiclass && index == 0 => model.init_score,
                _ => 0.0,
            };
            let leaf_value = |value: &[f64]| match model.task {
                TreeTask::Classification if model.ensemble == Ensemble::RandomForest => value[1],
                _ => value[0] + offset,
            };
            format!("Tree={index}\n{}\n", tree_text(tree, &leaf_value))
        })
        .collect();
    let sizes: Vec<String> = blocks.iter().map(|block| block.len().to_string()).collect();
    let _ = writeln!(out, "tree_sizes={}\n", sizes.join(" "));
    for block in &blocks {
        out.push_str(block);
    }
    out.push_str("end of trees\n\n");
    out.push_str("parameters:\n[boosting: ");
    out.push_str(if model.ensemble == Ensemble::RandomForest {
        "rf"
    } else {
        "gbdt"
    });
    out.push_str("]\n");
    if monotone.iter().any(|direction| *direction != 0) {
        let _ = writeln!(
            out,
            "[monotone_constraints: {}]",
            join(monotone.iter()).replace(' ', ",")
        );
    }
    out.push_str("end of parameters\n\npandas_categorical:");
    out.push_str(&pandas_categorical(infos));
    out.push('\n');
    Some(out)
}

/// LightGBM's `pandas_categorical`: per categorical feature, in feature order, its categories
/// in index order, so that `Booster.predict` on a DataFrame whose categorical columns have
/// pandas' category dtype maps each value to our index (it re-codes the column with these
/// categories; a value not listed becomes missing, which our splits send right, as an unseen
/// category with `handle_invalid = "keep"`). Categories that all read as integers (a numeric
/// column declared categorical) are written as numbers, as pandas would hold them. `null`
/// without categorical features.
fn pandas_categorical(infos: &[FeatureInfo]) -> String {
    let lists: Vec<serde_json::Value> = infos
        .iter()
        .filter_map(|info| match info {
            FeatureInfo::Categorical { names } => {
                let numbers: Option<Vec<i64>> =
                    names.iter().map(|name| name.parse::<i64>().ok()).collect();
                Some(match numbers {
                    Some(numbers) => serde_json::json!(numbers),
                    None => serde_json::json!(names),
                })
            }
            _ => None,
        })
        .collect();
    if lists.is_empty() {
        "null".to_owned()
    } else {
        serde_json::Value::Array(lists).to_string()
    }
}

fn join<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|value| value.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tree_text(tree: &Tree, leaf_value: &dyn Fn(&[f64]) -> f64) -> String {
    // LightGBM numbers split nodes and leaves separately; a child < 0 is leaf !child.
    let mut internal_index = vec![0i64; tree.nodes.len()];
    let (mut internal, mut leaves) = (0i64, 0i64);
    for (at, node) in tree.nodes.iter().enumerate() {
        match node {
            Node::Split { .. } => {
                internal_index[at] = internal;
                internal += 1;
            }
            Node::Leaf { .. } => {
                internal_index[at] = !leaves;
                leaves += 1;
            }
        }
    }
    let mut split_feature = Vec::new();
    let mut split_gain = Vec::new();
    let mut threshold = Vec::new();
    let mut decision_type = Vec::new();
    let mut left_child = Vec::new();
    let mut right_child = Vec::new();
    let mut internal_weight = Vec::new();
    let mut leaf_values = Vec::new();
    let mut leaf_weight = Vec::new();
    let mut cat_boundaries = vec![0usize];
    let mut cat_threshold: Vec<u32> = Vec::new();
    for node in &tree.nodes {
        match node {
            Node::Split {
                feature,
                rule,
                left,
                right,
                gain,
                weight,
            } => {
                split_feature.push(feature.to_string());
                split_gain.push(format!("{gain}"));
                match rule {
                    Rule::Threshold { value, .. } => {
                        threshold.push(format!("{value}"));
                        // default_left (2) | missing type NaN (2 << 2)
                        decision_type.push("10".to_owned());
                    }
                    Rule::Categories { left } => {
                        threshold.push((cat_boundaries.len() - 1).to_string());
                        let words = left.iter().max().map_or(1, |max| *max as usize / 32 + 1);
                        let mut bits = vec![0u32; words];
                        for category in left {
                            bits[*category as usize / 32] |= 1 << (category % 32);
                        }
                        cat_threshold.extend(bits);
                        cat_boundaries.push(cat_threshold.len());
                        // categorical (1) | missing type NaN (2 << 2): NaN goes right
                        decision_type.push("9".to_owned());
                    }
                }
                left_child.push(internal_index[*left as usize]);
                right_child.push(internal_index[*right as usize]);
                internal_weight.push(format!("{weight}"));
            }
            Node::Leaf { value, weight } => {
                leaf_values.push(format!("{}", leaf_value(value)));
                leaf_weight.push(format!("{weight}"));
            }
        }
    }
    let num_cat = cat_boundaries.len() - 1;
    let mut text = String::new();
    let _ = writeln!(text, "num_leaves={leaves}");
    let _ = writeln!(text, "num_cat={num_cat}");
    let _ = writeln!(text, "split_feature={}", split_feature.join(" "));
    let _ = writeln!(text, "split_gain={}", split_gain.join(" "));
    let _ = writeln!(text, "threshold={}", threshold.join(" "));
    let _ = writeln!(text, "decision_type={}", decision_type.join(" "));
    let _ = writeln!(text, "left_child={}", join(left_child));
    let _ = writeln!(text, "right_child={}", join(right_child));
    let _ = writeln!(text, "leaf_value={}", leaf_values.join(" "));
    let _ = writeln!(text, "leaf_weight={}", leaf_weight.join(" "));
    let _ = writeln!(
        text,
        "leaf_count={}",
        leaf_weight
            .iter()
            .map(|w| w.parse::<f64>().unwrap_or(0.0).round() as u64)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(text, "internal_value={}", join(vec![0; internal as usize]));
    let _ = writeln!(text, "internal_weight={}", internal_weight.join(" "));
    let _ = writeln!(
        text,
        "internal_count={}",
        internal_weight
            .iter()
            .map(|w| w.parse::<f64>().unwrap_or(0.0).round() as u64)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if num_cat > 0 {
        let _ = writeln!(text, "cat_boundaries={}", join(cat_boundaries));
        let _ = writeln!(text, "cat_threshold={}", join(cat_threshold));
    }
    text.push_str("is_linear=0\nshrinkage=1\n\n");
    text
}
