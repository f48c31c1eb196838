//! The structure a loaded ensemble must have before it scores a row: scoring walks child
//! indices without bounds checks on the way, so a model file that was edited or damaged must be
//! refused here (a cycle would loop forever, an index past the end would panic).

use super::{Ensemble, Node, Rule, TreeModel, TreeTask};

/// Deeper than any tree `max_depth` (at most 30) or the Spark engine can grow.
pub const MAX_LOADED_DEPTH: usize = 64;

impl TreeModel {
    /// Checks that every tree is a tree (each node reached once from the root, children in
    /// range, depth at most [`MAX_LOADED_DEPTH`]), that splits use features that exist (with
    /// sorted category lists) and that leaves hold finite values of the right width for the
    /// task and class count. `categories[j]` is the number of categories of feature `j`, `None`
    /// for numeric features.
    pub fn validate(&self, categories: &[Option<usize>]) -> Result<(), String> {
        let features = categories.len();
        let multiclass = self.task == TreeTask::Classification
            && self.ensemble == Ensemble::Gbt
            && self.classes > 2;
        if !multiclass && !self.class_init_scores.is_empty() {
            return Err(
                "class starting scores belong to multiclass gbt classifiers only".to_owned(),
            );
        }
        match (self.task, self.ensemble, self.classes) {
            (TreeTask::Regression, _, 1) => {}
            (TreeTask::Regression, _, classes) => {
                return Err(format!(
                    "a regression model has classes = {classes}; it must be 1"
                ));
            }
            (TreeTask::Classification, Ensemble::Gbt, 2) => {}
            (TreeTask::Classification, Ensemble::Gbt, classes)
                if (3..=1 << 16).contains(&classes) =>
            {
                if self.class_init_scores.len() != classes {
                    return Err(format!(
                        "a gbt classifier with classes = {classes} has {} class starting scores; multiclass boosting needs one per class",
                        self.class_init_scores.len()
                    ));
                }
                if !self.trees.len().is_multiple_of(classes) {
                    return Err(format!(
                        "a {classes}-class gbt classifier has {} trees, not a whole number of iterations",
                        self.trees.len()
                    ));
                }
                if let Some(bad) = self.class_init_scores.iter().find(|s| !s.is_finite()) {
                    return Err(format!("a class starting score is {bad}"));
                }
            }
            (TreeTask::Classification, Ensemble::Gbt, classes) => {
                return Err(format!(
                    "a gbt classifier has classes = {classes} with {} class starting scores",
                    self.class_init_scores.len()
                ));
            }
            (TreeTask::Classification, Ensemble::RandomForest, classes)
                if (2..=1 << 20).contains(&classes) => {}
            (TreeTask::Classification, Ensemble::RandomForest, classes) => {
                return Err(format!(
                    "a classifier has classes = {classes}; it must be at least 2"
                ));
            }
        }
        if !self.init_score.is_finite() {
            return Err(format!("init_score is {}", self.init_score));
        }
        if self.ensemble == Ensemble::RandomForest && self.trees.is_empty() {
            return Err("a random forest with no trees".to_owned());
        }
        let leaf_width = match (self.ensemble, self.task) {
            (Ensemble::RandomForest, TreeTask::Classification) => self.classes,
            _ => 1,
        };
        for (index, tree) in self.trees.iter().enumerate() {
            check_tree(tree, categories, features, leaf_width)
                .map_err(|problem| format!("tree {index}: {problem}"))?;
        }
        Ok(())
    }
}

fn check_tree(
    tree: &super::Tree,
    categories: &[Option<usize>],
    features: usize,
    leaf_width: usize,
) -> Result<(), String> {
    let nodes = &tree.nodes;
    if nodes.is_empty() {
        return Err("it has no nodes".to_owned());
    }
    let mut reached = vec![false; nodes.len()];
    reached[0] = true;
    let mut pending = vec![(0usize, 0usize)];
    while let Some((at, depth)) = pending.pop() {
        match &nodes[at] {
            Node::Leaf { value, .. } => {
                if value.len() != leaf_width {
                    return Err(format!(
                        "leaf {at} holds {} values; this model's leaves hold {leaf_width}",
                        value.len()
                    ));
                }
                if let Some(bad) = value.iter().find(|value| !value.is_finite()) {
                    return Err(format!("leaf {at} holds {bad}"));
                }
            }
            Node::Split {
                feature,
                rule,
                left,
                right,
                ..
            } => {
                let feature = *feature as usize;
                if feature >= features {
                    return Err(format!(
                        "node {at} splits on feature {feature}, but the model has {features} features"
                    ));
                }
                match rule {
                    Rule::Threshold { value, .. } if value.is_nan() => {
                        return Err(format!("node {at} has a NaN threshold"));
                    }
                    Rule::Threshold { .. } => {}
                    Rule::Categories { left } => {
                        if !left.windows(2).all(|pair| pair[0] < pair[1]) {
                            return Err(format!("node {at}: its category list is not sorted"));
                        }
                        if let (Some(count), Some(last)) = (categories[feature], left.last())
                            && *last as usize >= count
                        {
                            return Err(format!(
                                "node {at} sends category {last} left, but feature {feature} has {count} categories"
                            ));
                        }
                    }
                }
                if depth + 1 > MAX_LOADED_DEPTH {
                    return Err(format!("it is deeper than {MAX_LOADED_DEPTH} levels"));
                }
                for child in [*left as usize, *right as usize] {
                    if child >= nodes.len() {
                        return Err(format!(
                            "node {at} points at node {child}, but the tree has {} nodes",
                            nodes.len()
                        ));
                    }
                    if reached[child] {
                        return Err(format!(
                            "node {child} is reached twice (from node {at}): the nodes do not form a tree"
                        ));
                    }
                    reached[child] = true;
                    pending.push((child, depth + 1));
                }
            }
        }
    }
    Ok(())
}
