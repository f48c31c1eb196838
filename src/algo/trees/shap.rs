//! Exact per-row feature contributions (TreeSHAP, Lundberg et al. 2018, "Consistent
//! individualized feature attribution for tree ensembles", algorithm 2): for each row, the Shapley
//! values of the features for the model's raw output, in polynomial time per tree, with node
//! weights (the training rows that reached each node) as the "cover" that conditions missing
//! features. A row's contributions plus the bias (the cover-weighted mean output) sum to its raw
//! score: the log-odds for binary boosting, each class's score for multiclass boosting, the
//! class probabilities of a forest classifier, the value for regression. The same quantity as
//! LightGBM's `pred_contrib` on the exported model.
//!
//! The walk keeps, per depth, the path of distinct features from the root with the fractions of
//! "zero" (feature unknown: cover-weighted) and "one" (feature known: the row's branch) paths
//! through it, and the permutation weights of each subset size; all paths of one row and tree
//! live in one buffer sized for the tree's depth, so nothing is allocated per node.

use super::{Ensemble, Node, Tree, TreeModel, TreeTask};

#[derive(Clone, Copy, Debug, Default)]
struct PathStep {
    /// The feature split on; `usize::MAX` for the root's placeholder.
    feature: usize,
    zero: f64,
    one: f64,
    weight: f64,
}

/// Explains rows of one model: the groups of outputs, each tree's bias and depth.
pub struct Explainer<'a> {
    model: &'a TreeModel,
    features: usize,
    groups: usize,
    /// The leaf values explained: `values` of them from `first_value` (a binary forest
    /// classifier explains its class-1 probability only, the other being one minus it).
    first_value: usize,
    values: usize,
    /// Per tree, its cover-weighted mean output (one per leaf value).
    expected: Vec<Vec<f64>>,
    /// The base of each group's bias: boosting's starting score(s).
    base: Vec<f64>,
    /// Path buffer length for the deepest tree.
    buffer: usize,
    /// Forests average their trees.
    scale: f64,
}

impl<'a> Explainer<'a> {
    pub fn new(model: &'a TreeModel, features: usize) -> Explainer<'a> {
        let groups = Explainer::group_count(model);
        let (first_value, values) = match (model.ensemble, model.task) {
            (Ensemble::RandomForest, TreeTask::Classification) if model.classes == 2 => (1, 1),
            (Ensemble::RandomForest, TreeTask::Classification) => (0, model.classes),
            _ => (0, 1),
        };
        let expected = model.trees.iter().map(expected_value).collect();
        let base = match model.ensemble {
            Ensemble::Gbt if model.is_multiclass_boosting() => model.class_init_scores.clone(),
            Ensemble::Gbt => vec![model.init_score],
            Ensemble::RandomForest => vec![0.0; groups],
        };
        let depth = model.trees.iter().map(Tree::depth).max().unwrap_or(0);
        let scale = match model.ensemble {
            Ensemble::RandomForest => 1.0 / model.trees.len().max(1) as f64,
            Ensemble::Gbt => 1.0,
        };
        Explainer {
            model,
            features,
            groups,
            first_value,
            values,
            expected,
            base,
            buffer: (depth + 1) * (depth + 2) / 2,
            scale,
        }
    }

    /// Sets of contributions per row: one per class for multiclass models, otherwise one (a
    /// binary classifier's explain class 1: its log-odds, or a forest's probability of it).
    pub fn group_count(model: &TreeModel) -> usize {
        match (model.ensemble, model.task) {
            (_, TreeTask::Regression) => 1,
            (Ensemble::Gbt, TreeTask::Classification) if model.is_multiclass_boosting() => {
                model.classes
            }
            (Ensemble::RandomForest, TreeTask::Classification) if model.classes > 2 => {
                model.classes
            }
            (_, TreeTask::Classification) => 1,
        }
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Values per row written by [`Explainer::explain`]: per group, one per feature then the
    /// bias.
    pub fn width(&self) -> usize {
        self.groups * (self.features + 1)
    }

    /// The contributions of one row (`row[j]` is feature `j`) into `out` (`width()` values).
    pub fn explain(&self, row: &[f32], out: &mut [f64]) {
        out.fill(0.0);
        let mut buffer = vec![PathStep::default(); self.buffer];
        let stride = self.features + 1;
        let multiclass = self.model.is_multiclass_boosting();
        for (index, tree) in self.model.trees.iter().enumerate() {
            let group = if multiclass { index % self.groups } else { 0 };
            let mut walk = Walk {
                tree,
                row,
                out: &mut out[group * stride..],
                stride,
                first_value: self.first_value,
                values: self.values,
                scale: self.scale,
            };
            walk.recurse(0, &mut buffer, 0, 1.0, 1.0, usize::MAX);
            let expected = &self.expected[index];
            for value in 0..self.values {
                out[(group + value) * stride + self.features] +=
                    self.scale * expected[self.first_value + value];
            }
        }
        for (group, base) in self.base.iter().enumerate() {
            out[group * stride + self.features] += base;
        }
    }
}

/// A tree's cover-weighted mean output (per leaf value).
fn expected_value(tree: &Tree) -> Vec<f64> {
    let root = node_weight(&tree.nodes[0]);
    let width = tree
        .nodes
        .iter()
        .find_map(|node| match node {
            Node::Leaf { value, .. } => Some(value.len()),
            Node::Split { .. } => None,
        })
        .unwrap_or(1);
    let mut expected = vec![0.0; width];
    let leaves = tree
        .nodes
        .iter()
        .filter(|node| matches!(node, Node::Leaf { .. }))
        .count();
    for node in &tree.nodes {
        if let Node::Leaf { value, weight } = node {
            // Weightless trees (a model from elsewhere) count their leaves alike.
            let share = if root > 0.0 {
                weight / root
            } else {
                1.0 / leaves as f64
            };
            for (total, value) in expected.iter_mut().zip(value) {
                *total += share * value;
            }
        }
    }
    expected
}

fn node_weight(node: &Node) -> f64 {
    match node {
        Node::Split { weight, .. } | Node::Leaf { weight, .. } => *weight,
    }
}

struct Walk<'t, 'o> {
    tree: &'t Tree,
    row: &'t [f32],
    /// This tree's first output group; group `g + v` starts at `v * stride`.
    out: &'o mut [f64],
    stride: usize,
    /// Leaf values added: `values` of them from `first_value`, to consecutive groups.
    first_value: usize,
    values: usize,
    scale: f64,
}

impl Walk<'_, '_> {
    /// Visits `node` with the parent's path in `buffer[..depth]`; this node's path goes right
    /// after it, and its children's after that.
    fn recurse(
        &mut self,
        node: usize,
        buffer: &mut [PathStep],
        depth: usize,
        zero: f64,
        one: f64,
        feature: usize,
    ) {
        let (parent, path) = buffer.split_at_mut(depth);
        path[..depth].copy_from_slice(parent);
        extend(path, depth, zero, one, feature);
        match &self.tree.nodes[node] {
            Node::Leaf { value, .. } => {
                let first = self.first_value;
                for index in 1..=depth {
                    let step = path[index];
                    let share = unwound_sum(path, depth, index) * (step.one - step.zero);
                    for offset in 0..self.values {
                        self.out[offset * self.stride + step.feature] +=
                            self.scale * share * value[first + offset];
                    }
                }
            }
            Node::Split {
                feature: split_feature,
                rule,
                left,
                right,
                weight,
                ..
            } => {
                let split_feature = *split_feature as usize;
                let (hot, cold) = if rule.value_goes_left(self.row[split_feature]) {
                    (*left as usize, *right as usize)
                } else {
                    (*right as usize, *left as usize)
                };
                let fraction = |child: usize| {
                    if *weight > 0.0 {
                        node_weight(&self.tree.nodes[child]) / weight
                    } else {
                        0.5
                    }
                };
                let (hot_fraction, cold_fraction) = (fraction(hot), fraction(cold));
                let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
                let mut depth = depth;
                // A feature met again: undo its earlier step and carry its fractions on.
                if let Some(index) = (1..=depth).find(|&index| path[index].feature == split_feature)
                {
                    incoming_zero = path[index].zero;
                    incoming_one = path[index].one;
                    unwind(path, depth, index);
                    depth -= 1;
                }
                self.recurse(
                    hot,
                    path,
                    depth + 1,
                    hot_fraction * incoming_zero,
                    incoming_one,
                    split_feature,
                );
                self.recurse(
                    cold,
                    path,
                    depth + 1,
                    cold_fraction * incoming_zero,
                    0.0,
                    split_feature,
                );
            }
        }
    }
}

/// `1 / n` for the small whole numbers the path arithmetic divides by (depths up to
/// [`super::check::MAX_LOADED_DEPTH`] plus two): a multiply instead of a divide in the
/// innermost loops.
const RECIPROCALS: [f64; 68] = {
    let mut table = [0.0; 68];
    let mut n = 1;
    while n < 68 {
        table[n] = 1.0 / n as f64;
        n += 1;
    }
    table
};

/// Appends a step to `path[..=depth]` (which held `depth` steps) and updates the weights of
/// every subset size.
fn extend(path: &mut [PathStep], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathStep {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let inverse_total = RECIPROCALS[depth + 1];
    for index in (0..depth).rev() {
        path[index + 1].weight += one * path[index].weight * (index + 1) as f64 * inverse_total;
        path[index].weight = zero * path[index].weight * (depth - index) as f64 * inverse_total;
    }
}

/// Removes step `index` from `path[..=depth]`, the inverse of [`extend`].
fn unwind(path: &mut [PathStep], depth: usize, index: usize) {
    let (one, zero) = (path[index].one, path[index].zero);
    let total = (depth + 1) as f64;
    let inverse_total = RECIPROCALS[depth + 1];
    let mut next = path[depth].weight;
    for at in (0..depth).rev() {
        if one != 0.0 {
            let kept = path[at].weight;
            path[at].weight = next * total * RECIPROCALS[at + 1] / one;
            next = kept - path[at].weight * zero * (depth - at) as f64 * inverse_total;
        } else {
            path[at].weight = path[at].weight * total * RECIPROCALS[depth - at] / zero;
        }
    }
    for at in index..depth {
        path[at].feature = path[at + 1].feature;
        path[at].zero = path[at + 1].zero;
        path[at].one = path[at + 1].one;
    }
}

/// The total weight `path` would have with step `index` unwound, without changing it. The
/// innermost loop of the walk (every leaf, every step of its path): divisions are hoisted out.
fn unwound_sum(path: &[PathStep], depth: usize, index: usize) -> f64 {
    let (one, zero) = (path[index].one, path[index].zero);
    let total = (depth + 1) as f64;
    let inverse_total = RECIPROCALS[depth + 1];
    let mut next = path[depth].weight;
    let mut sum = 0.0;
    if one != 0.0 {
        let scale = total / one;
        let zero_share = zero * inverse_total;
        for at in (0..depth).rev() {
            let weight = next * scale * RECIPROCALS[at + 1];
            sum += weight;
            next = path[at].weight - weight * zero_share * (depth - at) as f64;
        }
    } else if zero != 0.0 {
        let scale = total / zero;
        for at in (0..depth).rev() {
            sum += path[at].weight * scale * RECIPROCALS[depth - at];
        }
    }
    sum
}

impl TreeModel {
    /// Every row's contributions (`Explainer::width()` values per row, row after row), rows
    /// in parallel blocks.
    pub fn contributions(&self, table: &crate::dataset::Tabular) -> Vec<f64> {
        use rayon::prelude::*;
        const CHUNK: usize = 1024;
        let features = table.features.len();
        let explainer = Explainer::new(self, features);
        let width = explainer.width();
        let rows = table.rows();
        let mut out = vec![0.0; rows * width];
        out.par_chunks_mut(CHUNK * width)
            .enumerate()
            .for_each(|(chunk, out)| {
                let mut row = vec![0f32; features];
                for (local, out) in out.chunks_exact_mut(width).enumerate() {
                    let at = chunk * CHUNK + local;
                    for (value, column) in row.iter_mut().zip(&table.features) {
                        *value = column[at];
                    }
                    explainer.explain(&row, out);
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{params, xor};
    use super::super::{Ensemble, Node, Tree, TreeModel, TreeTask, train};
    use super::*;
    use crate::dataset::Tabular;

    /// The cover-conditional expectation of a tree's leaf values given the features in `known`
    /// (bit j set: feature j is known and follows the row's branch).
    fn conditional(tree: &Tree, node: usize, row: &[f32], known: u32, value: usize) -> f64 {
        match &tree.nodes[node] {
            Node::Leaf { value: values, .. } => values[value],
            Node::Split {
                feature,
                rule,
                left,
                right,
                weight,
                ..
            } => {
                let (left, right) = (*left as usize, *right as usize);
                if known & (1 << feature) != 0 {
                    let next = if rule.value_goes_left(row[*feature as usize]) {
                        left
                    } else {
                        right
                    };
                    conditional(tree, next, row, known, value)
                } else {
                    let share = |child: usize| node_weight(&tree.nodes[child]) / weight;
                    share(left) * conditional(tree, left, row, known, value)
                        + share(right) * conditional(tree, right, row, known, value)
                }
            }
        }
    }

    /// Shapley values by enumerating every subset, for one tree and leaf value.
    fn brute_force(tree: &Tree, row: &[f32], features: usize, value: usize) -> Vec<f64> {
        let factorial = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
        let mut phi = vec![0.0; features];
        for (feature, phi) in phi.iter_mut().enumerate() {
            for subset in 0u32..(1 << features) {
                if subset & (1 << feature) != 0 {
                    continue;
                }
                let size = subset.count_ones() as usize;
                let weight = factorial(size) * factorial(features - size - 1) / factorial(features);
                let with = conditional(tree, 0, row, subset | (1 << feature), value);
                let without = conditional(tree, 0, row, subset, value);
                *phi += weight * (with - without);
            }
        }
        phi
    }

    fn row_of(table: &Tabular, row: usize) -> Vec<f32> {
        table.features.iter().map(|column| column[row]).collect()
    }

    /// The model's raw score per group: boosting's summed scores, a forest's averages.
    fn raw_scores(model: &TreeModel, row: &[f32]) -> Vec<f64> {
        let groups = Explainer::group_count(model);
        let mut scores = vec![0.0; groups];
        let count = model.trees.len() as f64;
        for (index, tree) in model.trees.iter().enumerate() {
            let leaf = tree.leaf(|feature| row[feature]);
            match model.ensemble {
                Ensemble::Gbt => scores[index % groups] += leaf[0],
                Ensemble::RandomForest if model.task == TreeTask::Classification => {
                    let first = if model.classes == 2 { 1 } else { 0 };
                    for (group, score) in scores.iter_mut().enumerate() {
                        *score += leaf[first + group] / count;
                    }
                }
                Ensemble::RandomForest => scores[0] += leaf[0] / count,
            }
        }
        match model.ensemble {
            Ensemble::Gbt if model.is_multiclass_boosting() => {
                for (score, init) in scores.iter_mut().zip(&model.class_init_scores) {
                    *score += init;
                }
            }
            Ensemble::Gbt => scores[0] += model.init_score,
            Ensemble::RandomForest => {}
        }
        scores
    }

    fn models() -> Vec<(String, TreeModel, Tabular)> {
        let mut three = xor(1500, 3);
        for (row, label) in three.labels.iter_mut().enumerate() {
            if three.features[2][row] > 0.4 {
                *label = 2.0;
            }
        }
        let mut regression = xor(1500, 4);
        for (row, label) in regression.labels.iter_mut().enumerate() {
            *label = *label * 2.0 + f64::from(regression.features[3][row]);
        }
        let mut out = Vec::new();
        for (name, table, ensemble, task) in [
            (
                "gbt binary",
                xor(1500, 1),
                Ensemble::Gbt,
                TreeTask::Classification,
            ),
            (
                "gbt multiclass",
                three.clone(),
                Ensemble::Gbt,
                TreeTask::Classification,
            ),
            (
                "gbt regression",
                regression.clone(),
                Ensemble::Gbt,
                TreeTask::Regression,
            ),
            (
                "forest binary",
                xor(1500, 2),
                Ensemble::RandomForest,
                TreeTask::Classification,
            ),
            (
                "forest multiclass",
                three,
                Ensemble::RandomForest,
                TreeTask::Classification,
            ),
            (
                "forest regression",
                regression,
                Ensemble::RandomForest,
                TreeTask::Regression,
            ),
        ] {
            let mut p = params(ensemble, task);
            p.max_iter = 8;
            p.num_trees = 6;
            p.max_depth = 4;
            let model = train(&table, &p, None, &|_, _| {}).unwrap();
            out.push((name.to_owned(), model, table));
        }
        out
    }

    #[test]
    fn contributions_sum_to_the_raw_score() {
        for (name, model, table) in models() {
            let features = table.columns();
            let explainer = Explainer::new(&model, features);
            let mut out = vec![0.0; explainer.width()];
            for row in (0..table.rows()).step_by(37) {
                let values = row_of(&table, row);
                explainer.explain(&values, &mut out);
                let raw = raw_scores(&model, &values);
                for (group, raw) in raw.iter().enumerate() {
                    let sum: f64 = out[group * (features + 1)..(group + 1) * (features + 1)]
                        .iter()
                        .sum();
                    assert!((sum - raw).abs() < 1e-9, "{name} row {row}: {sum} vs {raw}");
                }
            }
        }
    }

    #[test]
    fn contributions_equal_shapley_values_by_enumeration() {
        for (name, model, table) in models() {
            let features = table.columns();
            let explainer = Explainer::new(&model, features);
            let groups = explainer.groups();
            let mut out = vec![0.0; explainer.width()];
            for row in (0..table.rows()).step_by(101) {
                let values = row_of(&table, row);
                explainer.explain(&values, &mut out);
                let mut expected = vec![0.0; explainer.width()];
                let count = model.trees.len() as f64;
                for (index, tree) in model.trees.iter().enumerate() {
                    for group in 0..groups {
                        let (target, value, scale) = match model.ensemble {
                            Ensemble::Gbt if groups > 1 && index % groups != group => continue,
                            Ensemble::Gbt => (group, 0, 1.0),
                            Ensemble::RandomForest
                                if model.task == TreeTask::Classification && model.classes == 2 =>
                            {
                                (0, 1, 1.0 / count)
                            }
                            Ensemble::RandomForest if model.task == TreeTask::Classification => {
                                (group, group, 1.0 / count)
                            }
                            Ensemble::RandomForest => (0, 0, 1.0 / count),
                        };
                        let phi = brute_force(tree, &values, features, value);
                        for (feature, phi) in phi.iter().enumerate() {
                            expected[target * (features + 1) + feature] += scale * phi;
                        }
                    }
                }
                for group in 0..groups {
                    for feature in 0..features {
                        let at = group * (features + 1) + feature;
                        assert!(
                            (out[at] - expected[at]).abs() < 1e-9,
                            "{name} row {row} group {group} feature {feature}: {} vs {}",
                            out[at],
                            expected[at]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_feature_split_on_twice_on_one_path_is_counted_once() {
        // x0 <= 0 then x0 <= -1 on the left: only x0 matters, so it takes the whole effect.
        let leaf = |value: f64, weight: f64| Node::Leaf {
            value: vec![value],
            weight,
        };
        let split = |feature: u32, value: f64, left: u32, right: u32, weight: f64| Node::Split {
            feature,
            rule: super::super::Rule::Threshold { value, bin: 0 },
            left,
            right,
            gain: 1.0,
            weight,
        };
        let tree = Tree {
            nodes: vec![
                split(0, 0.0, 1, 2, 100.0),
                split(0, -1.0, 3, 4, 60.0),
                leaf(5.0, 40.0),
                leaf(-3.0, 20.0),
                leaf(1.0, 40.0),
            ],
        };
        let model = TreeModel {
            ensemble: Ensemble::Gbt,
            task: TreeTask::Regression,
            classes: 1,
            loss: None,
            init_score: 0.0,
            class_init_scores: Vec::new(),
            trees: vec![tree.clone()],
            trees_grown: 1,
            validation_loss: Vec::new(),
            train_loss: Vec::new(),
        };
        let explainer = Explainer::new(&model, 2);
        let mut out = vec![0.0; 3];
        explainer.explain(&[-2.0, 7.0], &mut out);
        let mean = (40.0 * 5.0 + 20.0 * -3.0 + 40.0 * 1.0) / 100.0;
        assert!((out[2] - mean).abs() < 1e-12);
        assert!((out[0] - (-3.0 - mean)).abs() < 1e-12, "{out:?}");
        assert_eq!(out[1], 0.0);
        assert!((brute_force(&tree, &[-2.0, 7.0], 2, 0)[0] - out[0]).abs() < 1e-12);
    }
}
