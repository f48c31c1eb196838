//! Spark tree ensembles as submit tree models, so that predict jobs score Spark-trained versions.
//!
//! The Spark application exports every node as Spark's own model files hold it (`trees.json`,
//! see `spark_app.py`); this module maps them one to one. A continuous split sends `x <=
//! threshold` left in both. Leaves: a random forest's classification leaf holds its class
//! counts, which Spark normalises per tree before averaging, so the leaf becomes those
//! probabilities; Spark's boosted trees sum `weight x prediction` over trees, and for
//! classification the probability is `1 / (1 + exp(-2 margin))` (labels as -1/+1), so a leaf
//! becomes `2 weight prediction` under submit's logistic link with a zero starting score.
//! Categorical splits are refused: their category indices follow Spark's indexers.

use serde::Deserialize;

use crate::algo::trees::{Ensemble, Node, Rule, Tree, TreeModel, TreeParams, TreeTask};

/// `trees.json` as the application writes it.
#[derive(Debug, Deserialize)]
pub struct ExportedTrees {
    pub weights: Vec<f64>,
    pub trees: Vec<Vec<ExportedNode>>,
}

/// One node: id, prediction, impurity stats, gain, count, left child, right child (-1 for a
/// leaf), split feature, threshold (or left categories), category count (-1: continuous).
#[derive(Debug, Deserialize)]
pub struct ExportedNode(
    i64,
    Option<f64>,
    Vec<Option<f64>>,
    Option<f64>,
    i64,
    i64,
    i64,
    i64,
    Vec<Option<f64>>,
    i64,
);

/// The ensemble as a submit model over `features` features with `classes` classes, or why it
/// cannot be one.
pub fn convert(
    exported: &ExportedTrees,
    params: &TreeParams,
    classes: usize,
    features: usize,
) -> Result<TreeModel, String> {
    if exported.weights.len() != exported.trees.len() {
        return Err(format!(
            "{} tree weights for {} trees",
            exported.weights.len(),
            exported.trees.len()
        ));
    }
    let classes = match params.task {
        TreeTask::Classification => classes.max(2),
        TreeTask::Regression => 1,
    };
    let trees = exported
        .trees
        .iter()
        .zip(&exported.weights)
        .enumerate()
        .map(|(index, (nodes, &weight))| {
            convert_tree(nodes, weight, params, classes, features)
                .map_err(|problem| format!("tree {index}: {problem}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let grown = trees.len();
    Ok(TreeModel {
        ensemble: params.ensemble,
        task: params.task,
        classes,
        loss: match params.ensemble {
            Ensemble::Gbt => Some(params.loss_type),
            Ensemble::RandomForest => None,
        },
        init_score: 0.0,
        class_init_scores: Vec::new(),
        trees,
        trees_grown: grown,
        validation_loss: Vec::new(),
        train_loss: Vec::new(),
    })
}

fn convert_tree(
    nodes: &[ExportedNode],
    weight: f64,
    params: &TreeParams,
    classes: usize,
    features: usize,
) -> Result<Tree, String> {
    if nodes.is_empty() {
        return Err("no nodes".to_owned());
    }
    let child = |id: i64| -> Result<u32, String> {
        usize::try_from(id)
            .ok()
            .filter(|&at| at < nodes.len())
            .map(|at| at as u32)
            .ok_or_else(|| format!("child {id} is not a node"))
    };
    let mut converted = Vec::with_capacity(nodes.len());
    for (position, node) in nodes.iter().enumerate() {
        let ExportedNode(
            id,
            prediction,
            stats,
            gain,
            count,
            left,
            right,
            feature,
            split,
            categories,
        ) = node;
        if *id != position as i64 {
            return Err(format!("node ids are not 0..{}", nodes.len()));
        }
        let count = *count as f64;
        if *left >= 0 {
            if *categories >= 0 {
                return Err(format!(
                    "node {id} splits feature {feature} by categories, which submit cannot map"
                ));
            }
            let feature = usize::try_from(*feature)
                .ok()
                .filter(|&index| index < features)
                .ok_or_else(|| format!("node {id} splits on feature {feature}"))?;
            let Some(Some(threshold)) = split.first().copied() else {
                return Err(format!("node {id} has no threshold"));
            };
            if (*left as usize) <= position || (*right as usize) <= position {
                return Err(format!("node {id} points back to an earlier node"));
            }
            converted.push(Node::Split {
                feature: feature as u32,
                // `bin` is only read while training on binned data, never for a loaded model.
                rule: Rule::Threshold {
                    value: threshold,
                    bin: 0,
                },
                left: child(*left)?,
                right: child(*right)?,
                gain: gain.unwrap_or(0.0),
                weight: count,
            });
            continue;
        }
        let prediction = prediction.ok_or_else(|| format!("leaf {id} has no prediction"))?;
        let value = match (params.ensemble, params.task) {
            (Ensemble::RandomForest, TreeTask::Classification) => {
                let mut counts: Vec<f64> = stats.iter().map(|v| v.unwrap_or(0.0)).collect();
                counts.resize(classes, 0.0);
                counts.truncate(classes);
                let total: f64 = counts.iter().sum();
                if total > 0.0 {
                    counts.iter().map(|count| count / total).collect()
                } else {
                    counts
                }
            }
            (Ensemble::RandomForest, TreeTask::Regression) => vec![prediction],
            (Ensemble::Gbt, TreeTask::Classification) => vec![2.0 * weight * prediction],
            (Ensemble::Gbt, TreeTask::Regression) => vec![weight * prediction],
        };
        converted.push(Node::Leaf {
            value,
            weight: count,
        });
    }
    Ok(Tree { nodes: converted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::trees::{FeatureSubset, Impurity, Loss};

    fn params(ensemble: Ensemble, task: TreeTask) -> TreeParams {
        TreeParams {
            ensemble,
            task,
            num_trees: 2,
            max_depth: 2,
            max_bins: 32,
            min_instances_per_node: 1,
            min_info_gain: 0.0,
            impurity: Impurity::Gini,
            subsampling_rate: 1.0,
            feature_subset_strategy: FeatureSubset::Auto,
            bootstrap: true,
            max_iter: 2,
            step_size: 0.1,
            loss_type: Loss::Logistic,
            validation_tol: 0.01,
            seed: 1,
            monotone_constraints: Vec::new(),
        }
    }

    /// One split on feature 0 at 5.25 with leaves predicting -0.5 (left) and 1 (right).
    fn stump(left_stats: Vec<f64>, right_stats: Vec<f64>) -> Vec<ExportedNode> {
        let stats = |values: Vec<f64>| values.into_iter().map(Some).collect();
        vec![
            ExportedNode(
                0,
                Some(0.0),
                vec![],
                Some(0.3),
                10,
                1,
                2,
                0,
                vec![Some(5.25)],
                -1,
            ),
            ExportedNode(
                1,
                Some(-0.5),
                stats(left_stats),
                None,
                4,
                -1,
                -1,
                -1,
                vec![],
                -1,
            ),
            ExportedNode(
                2,
                Some(1.0),
                stats(right_stats),
                None,
                6,
                -1,
                -1,
                -1,
                vec![],
                -1,
            ),
        ]
    }

    #[test]
    fn boosted_classifier_scores_as_spark() {
        let exported = ExportedTrees {
            weights: vec![1.0, 0.1],
            trees: vec![stump(vec![], vec![]), stump(vec![], vec![])],
        };
        let model = convert(
            &exported,
            &params(Ensemble::Gbt, TreeTask::Classification),
            2,
            1,
        )
        .unwrap();
        // x = 6 goes right in both trees: margin 1.0 + 0.1 = 1.1, Spark's p = 1/(1+e^-2.2).
        let probability = model.predict_row(|_| 6.0)[1];
        assert!((probability - 1.0 / (1.0 + (-2.2f64).exp())).abs() < 1e-12);
        // x = 5.25 is not above the threshold: left, margin -0.55.
        let probability = model.predict_row(|_| 5.25)[1];
        assert!((probability - 1.0 / (1.0 + (1.1f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn forest_classifier_averages_normalised_leaf_counts() {
        let exported = ExportedTrees {
            weights: vec![1.0, 1.0],
            trees: vec![
                stump(vec![3.0, 1.0], vec![1.0, 5.0]),
                stump(vec![1.0, 1.0], vec![0.0, 6.0]),
            ],
        };
        let model = convert(
            &exported,
            &params(Ensemble::RandomForest, TreeTask::Classification),
            2,
            1,
        )
        .unwrap();
        let right = model.predict_row(|_| 9.0);
        assert!(
            (right[1] - (5.0 / 6.0 + 1.0) / 2.0).abs() < 1e-12,
            "{right:?}"
        );
        let left = model.predict_row(|_| 0.0);
        assert!((left[0] - (0.75 + 0.5) / 2.0).abs() < 1e-12, "{left:?}");
    }

    #[test]
    fn categorical_splits_and_broken_trees_are_refused() {
        let mut nodes = stump(vec![], vec![]);
        nodes[0].9 = 3;
        let exported = ExportedTrees {
            weights: vec![1.0],
            trees: vec![nodes],
        };
        let problem = convert(
            &exported,
            &params(Ensemble::Gbt, TreeTask::Regression),
            1,
            1,
        )
        .unwrap_err();
        assert!(problem.contains("categories"), "{problem}");
        let mut nodes = stump(vec![], vec![]);
        nodes[0].5 = 7;
        let exported = ExportedTrees {
            weights: vec![1.0],
            trees: vec![nodes],
        };
        assert!(
            convert(
                &exported,
                &params(Ensemble::Gbt, TreeTask::Regression),
                1,
                1
            )
            .is_err()
        );
    }
}
