//! Scoring layout for a trained ensemble: every tree's nodes in one array of 16-byte nodes
//! (feature, f32 threshold, two child links; leaves are links with the top bit set into one
//! array of leaf values), walked for a block of rows per tree so that a tree's nodes stay in
//! cache while the block passes through. What evaluation, predict jobs and the server score
//! with; the same answers as [`TreeModel::predict_row`] to the bit.
//!
//! The threshold is stored as the largest f32 not above the f64 split value: features are f32,
//! so `x <= t` and `x <= t32` agree for every x, and NaN (missing) still goes left.

use super::complete::CompleteTrees;
use super::{Ensemble, Node, Rule, TreeModel, TreeTask, sigmoid};

/// A child link that names a leaf (its index into the leaf values) rather than a node.
pub(super) const LEAF: u32 = 1 << 31;
/// A node's feature with this bit set tests categories (threshold bits: a category range).
const CATEGORICAL: u32 = 1 << 31;
/// Rows that pass through one tree at a time.
const BLOCK: usize = super::complete::BLOCK;

#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(super) struct FlatNode {
    pub(super) feature: u32,
    pub(super) threshold: f32,
    pub(super) left: u32,
    pub(super) right: u32,
}

pub(super) fn is_categorical(node: &FlatNode) -> bool {
    node.feature & CATEGORICAL != 0
}

#[derive(Clone, Debug)]
pub struct FlatTrees {
    nodes: Vec<FlatNode>,
    /// Each tree's root: a node index, or a leaf link for a one-leaf tree.
    roots: Vec<u32>,
    /// `values_per_leaf` values per leaf.
    leaf_values: Vec<f64>,
    values_per_leaf: usize,
    /// Sums kept per row: `values_per_leaf`, or the class count for multiclass boosting,
    /// whose tree `t` adds its one value to class `t % classes`.
    sums_per_row: usize,
    /// Category lists of categorical splits (sorted), as (start, end) into `categories`.
    category_ranges: Vec<(u32, u32)>,
    categories: Vec<u32>,
    ensemble: Ensemble,
    task: TreeTask,
    classes: usize,
    init_score: f64,
    class_init_scores: Vec<f64>,
    /// The same trees padded to complete binary trees, when they are numeric and shallow
    /// enough (see [`super::complete`]).
    complete: Option<CompleteTrees>,
}

/// The largest f32 that is not above `value` (NaN stays NaN).
fn f32_at_or_below(value: f64) -> f32 {
    let rounded = value as f32;
    if f64::from(rounded) > value {
        rounded.next_down()
    } else {
        rounded
    }
}

impl FlatTrees {
    pub fn new(model: &TreeModel) -> FlatTrees {
        let values_per_leaf = match model.ensemble {
            Ensemble::RandomForest => model.classes.max(1),
            Ensemble::Gbt => 1,
        };
        let sums_per_row = if model.is_multiclass_boosting() {
            model.classes
        } else {
            values_per_leaf
        };
        let mut flat = FlatTrees {
            nodes: Vec::new(),
            roots: Vec::with_capacity(model.trees.len()),
            leaf_values: Vec::new(),
            values_per_leaf,
            sums_per_row,
            category_ranges: Vec::new(),
            categories: Vec::new(),
            ensemble: model.ensemble,
            task: model.task,
            classes: model.classes,
            init_score: model.init_score,
            class_init_scores: model.class_init_scores.clone(),
            complete: None,
        };
        for tree in &model.trees {
            let base = flat.nodes.len() as u32;
            // Node i of the tree becomes flat node `base + split_index[i]`, leaves get links.
            let mut links = Vec::with_capacity(tree.nodes.len());
            let mut splits = 0u32;
            for node in &tree.nodes {
                match node {
                    Node::Split { .. } => {
                        links.push(base + splits);
                        splits += 1;
                    }
                    Node::Leaf { value, .. } => {
                        let leaf = (flat.leaf_values.len() / values_per_leaf) as u32;
                        let mut values = value.clone();
                        values.resize(values_per_leaf, 0.0);
                        flat.leaf_values.extend_from_slice(&values);
                        links.push(LEAF | leaf);
                    }
                }
            }
            for node in &tree.nodes {
                if let Node::Split {
                    feature,
                    rule,
                    left,
                    right,
                    ..
                } = node
                {
                    let (feature, threshold) = match rule {
                        Rule::Threshold { value, .. } => (*feature, f32_at_or_below(*value)),
                        Rule::Categories { left } => {
                            let start = flat.categories.len() as u32;
                            flat.categories.extend_from_slice(left);
                            flat.category_ranges
                                .push((start, flat.categories.len() as u32));
                            (
                                *feature | CATEGORICAL,
                                f32::from_bits(flat.category_ranges.len() as u32 - 1),
                            )
                        }
                    };
                    flat.nodes.push(FlatNode {
                        feature,
                        threshold,
                        left: links[*left as usize],
                        right: links[*right as usize],
                    });
                }
            }
            flat.roots.push(links.first().copied().unwrap_or(LEAF));
        }
        flat.complete = CompleteTrees::new(&flat.nodes, &flat.roots);
        flat
    }

    /// Where a row at `link` goes next. The numeric test is a select, not a branch: which
    /// child a row takes is a coin flip to the branch predictor.
    #[inline]
    fn step(&self, link: u32, row: &[f32]) -> u32 {
        let node = &self.nodes[link as usize];
        let value = row[(node.feature & !CATEGORICAL) as usize];
        let goes_right = if node.feature & CATEGORICAL == 0 {
            // NaN compares false: missing values go left, as `x <= t` with NaN sent left does.
            value > node.threshold
        } else {
            let (start, end) = self.category_ranges[node.threshold.to_bits() as usize];
            !(value >= 0.0
                && self.categories[start as usize..end as usize]
                    .binary_search(&(value as u32))
                    .is_ok())
        };
        let mask = 0u32.wrapping_sub(u32::from(goes_right));
        node.left ^ ((node.left ^ node.right) & mask)
    }

    /// The leaves (each one's first value's index) the rows of a block reach from `root`. The
    /// rows advance one level at a time, side by side: each row's walk is a chain of dependent
    /// loads, and interleaving many chains keeps the core busy instead of waiting on each.
    #[inline]
    fn leaves(&self, root: u32, block: &[f32], features: usize, leaves: &mut [u32]) {
        leaves.fill(root);
        loop {
            let mut moved = false;
            for (offset, link) in leaves.iter_mut().enumerate() {
                if *link & LEAF == 0 {
                    *link = self.step(*link, &block[offset * features..(offset + 1) * features]);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Values per row of [`FlatTrees::predict_into`]: class probabilities, or one value.
    pub fn outputs(&self) -> usize {
        match (self.ensemble, self.task) {
            (_, TreeTask::Regression) => 1,
            (Ensemble::Gbt, TreeTask::Classification) => self.classes.max(2),
            (Ensemble::RandomForest, TreeTask::Classification) => self.classes.max(1),
        }
    }

    /// Scores the rows of a row-major matrix (`features` values per row) into `out`
    /// (`outputs()` values per row), as `predict_row` would one by one.
    pub fn predict_into(&self, matrix: &[f32], features: usize, out: &mut [f64]) {
        let rows = matrix.len() / features.max(1);
        let width = self.outputs();
        debug_assert_eq!(out.len(), rows * width);
        let per_row = self.sums_per_row;
        let mut sums = vec![0.0f64; BLOCK * per_row];
        let mut all_leaves = [0u32; BLOCK];
        let complete = self
            .complete
            .as_ref()
            .filter(|complete| complete.usable(features));
        for start in (0..rows).step_by(BLOCK) {
            let count = BLOCK.min(rows - start);
            let sums = &mut sums[..count * per_row];
            sums.fill(0.0);
            let block = &matrix[start * features..(start + count) * features];
            for (index, &root) in self.roots.iter().enumerate() {
                match complete {
                    Some(complete) => {
                        complete.leaves(index, block, features, &mut all_leaves[..count])
                    }
                    None => self.leaves(root, block, features, &mut all_leaves[..count]),
                }
                let leaves = &all_leaves[..count];
                // The slot of the row's sums this tree adds to: all of them, or its class's.
                let slot = if per_row == self.values_per_leaf {
                    0
                } else {
                    index % per_row
                };
                // One and two values a leaf (boosting and regression; binary forests) with
                // the count fixed, so each row's adds are straight-line code.
                match self.values_per_leaf {
                    1 => self.add_leaf_values::<1>(sums, per_row, slot, leaves),
                    2 => self.add_leaf_values::<2>(sums, per_row, slot, leaves),
                    _ => {
                        for (sum, link) in sums.chunks_exact_mut(per_row).zip(leaves.iter()) {
                            let at = (link & !LEAF) as usize * self.values_per_leaf;
                            for (total, value) in sum[slot..slot + self.values_per_leaf]
                                .iter_mut()
                                .zip(&self.leaf_values[at..at + self.values_per_leaf])
                            {
                                *total += value;
                            }
                        }
                    }
                }
            }
            for (offset, sum) in sums.chunks_exact(per_row).enumerate() {
                let target = &mut out[(start + offset) * width..(start + offset + 1) * width];
                self.finish(sum, target);
            }
        }
    }

    /// Adds the values of the leaves reached (`VALUES` a leaf) to the rows' sums, from `slot`.
    #[inline(always)]
    fn add_leaf_values<const VALUES: usize>(
        &self,
        sums: &mut [f64],
        per_row: usize,
        slot: usize,
        leaves: &[u32],
    ) {
        for (sum, link) in sums.chunks_exact_mut(per_row).zip(leaves) {
            let at = (link & !LEAF) as usize * VALUES;
            let values: &[f64; VALUES] = self.leaf_values[at..at + VALUES]
                .try_into()
                .expect("a leaf's values");
            let totals: &mut [f64; VALUES] = (&mut sum[slot..slot + VALUES])
                .try_into()
                .expect("a row's sums");
            for (total, value) in totals.iter_mut().zip(values) {
                *total += value;
            }
        }
    }

    /// Turns a row's summed leaf values into its outputs (`predict_row`'s last step).
    fn finish(&self, sum: &[f64], target: &mut [f64]) {
        match self.ensemble {
            Ensemble::RandomForest => {
                let count = self.roots.len().max(1) as f64;
                for (target, total) in target.iter_mut().zip(sum) {
                    *target = total / count;
                }
            }
            Ensemble::Gbt if !self.class_init_scores.is_empty() => {
                for ((target, init), total) in
                    target.iter_mut().zip(&self.class_init_scores).zip(sum)
                {
                    *target = init + total;
                }
                super::softmax(target);
            }
            Ensemble::Gbt => {
                let score = self.init_score + sum[0];
                match self.task {
                    TreeTask::Classification => {
                        let p = sigmoid(score);
                        target[0] = 1.0 - p;
                        target[1] = p;
                    }
                    TreeTask::Regression => target[0] = score,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{params, xor};
    use super::super::{Node, Rule, train};
    use super::*;
    use crate::dataset::split::{mix, unit};
    use crate::dataset::tabular::Tabular;

    /// XOR plus a categorical feature with 6 categories that shifts the label, and missing
    /// values in the first feature.
    fn mixed(rows: usize, seed: u64, regression: bool) -> Tabular {
        let mut table = xor(rows, seed);
        let stream = mix(seed, 7);
        let categories: Vec<f32> = (0..rows)
            .map(|row| (unit(stream, row as u64) * 6.0).floor() as f32)
            .collect();
        for (row, category) in categories.iter().enumerate() {
            if *category < 2.0 {
                table.labels[row] = 1.0 - table.labels[row];
            }
            if row % 13 == 0 {
                table.features[0][row] = f32::NAN;
            }
            if regression {
                table.labels[row] = table.labels[row] * 3.0 + f64::from(table.features[2][row]);
            }
        }
        table.features.push(categories);
        table.feature_names.push("colour".to_owned());
        table
            .kinds
            .push(crate::dataset::tabular::FeatureKind::Categorical {
                names: (0..6).map(|c| format!("c{c}")).collect(),
            });
        table
    }

    #[test]
    fn flat_scoring_equals_row_by_row_to_the_bit() {
        for task in [TreeTask::Classification, TreeTask::Regression] {
            let regression = task == TreeTask::Regression;
            let (train_table, test_table) =
                (mixed(3000, 1, regression), mixed(5000, 2, regression));
            for ensemble in [Ensemble::RandomForest, Ensemble::Gbt] {
                let mut p = params(ensemble, task);
                p.max_iter = 20;
                let model = train(&train_table, &p, None, &|_, _| {}).unwrap();
                let uses_categories = model.trees.iter().flat_map(|tree| &tree.nodes).any(|node| {
                    matches!(
                        node,
                        Node::Split {
                            rule: Rule::Categories { .. },
                            ..
                        }
                    )
                });
                assert!(uses_categories, "{ensemble:?} {task:?}");
                let flat = model.predict(&test_table);
                for (row, predicted) in flat.iter().enumerate() {
                    let one = model.predict_row(|feature| test_table.features[feature][row]);
                    let same = one.len() == predicted.len()
                        && one
                            .iter()
                            .zip(predicted)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{ensemble:?} {task:?} row {row}: {one:?} vs {predicted:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_complete_tree_walk_of_numeric_trees_equals_row_by_row_to_the_bit() {
        // Numeric trees of depth 5 and 9, with missing values and exact threshold hits, and a
        // row count that leaves a partial last block.
        let mut train_table = xor(4000, 3);
        let mut test_table = xor(1000, 4);
        for table in [&mut train_table, &mut test_table] {
            for row in (0..table.rows()).step_by(11) {
                table.features[1][row] = f32::NAN;
            }
        }
        let model = train(
            &train_table,
            &params(Ensemble::Gbt, TreeTask::Classification),
            None,
            &|_, _| {},
        )
        .unwrap();
        let split_values: Vec<f32> = model
            .trees
            .iter()
            .flat_map(|tree| &tree.nodes)
            .filter_map(|node| match node {
                Node::Split {
                    rule: Rule::Threshold { value, .. },
                    ..
                } => Some(f32_at_or_below(*value)),
                _ => None,
            })
            .collect();
        for (row, value) in split_values.iter().enumerate().take(200) {
            test_table.features[0][row * 3] = *value;
        }
        for (ensemble, task, depth) in [
            (Ensemble::Gbt, TreeTask::Classification, 5),
            (Ensemble::RandomForest, TreeTask::Classification, 9),
            (Ensemble::RandomForest, TreeTask::Regression, 9),
            (Ensemble::Gbt, TreeTask::Regression, 5),
        ] {
            let mut p = params(ensemble, task);
            p.max_depth = depth;
            let model = train(&train_table, &p, None, &|_, _| {}).unwrap();
            let flat = FlatTrees::new(&model);
            assert!(flat.complete.is_some(), "{ensemble:?} {task:?}");
            let predicted = model.predict(&test_table);
            for (row, predicted) in predicted.iter().enumerate() {
                let one = model.predict_row(|feature| test_table.features[feature][row]);
                let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&one),
                    bits(predicted),
                    "{ensemble:?} {task:?} row {row}"
                );
            }
        }
        // A categorical split keeps the flat walk.
        let mixed_model = train(
            &mixed(3000, 1, false),
            &params(Ensemble::Gbt, TreeTask::Classification),
            None,
            &|_, _| {},
        )
        .unwrap();
        assert!(FlatTrees::new(&mixed_model).complete.is_none());
    }

    #[test]
    fn flat_scoring_of_multiclass_boosting_equals_row_by_row_to_the_bit() {
        let mut train_table = mixed(3000, 1, false);
        let test_table = mixed(2000, 2, false);
        // A third class: rows whose third feature is high.
        for (row, label) in train_table.labels.iter_mut().enumerate() {
            if train_table.features[2][row] > 0.5 {
                *label = 2.0;
            }
        }
        let mut p = params(Ensemble::Gbt, TreeTask::Classification);
        p.max_iter = 10;
        let model = train(&train_table, &p, None, &|_, _| {}).unwrap();
        assert_eq!((model.classes, model.trees.len()), (3, 30));
        for (row, predicted) in model.predict(&test_table).iter().enumerate() {
            let one = model.predict_row(|feature| test_table.features[feature][row]);
            let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(predicted), "row {row}");
        }
    }

    #[test]
    fn thresholds_round_down_to_the_same_test() {
        for value in [0.1f64, -0.1, 1e-40, 3.0, f64::from(0.7f32), 1e30, -1e30] {
            let threshold = f32_at_or_below(value);
            assert!(f64::from(threshold) <= value);
            let above = threshold.next_up();
            assert!(f64::from(above) > value, "{value}");
        }
    }
}
