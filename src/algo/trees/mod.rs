//! Tree ensembles with Spark MLlib's parameters: random forests and gradient-boosted trees, for
//! classification and regression, grown by the one learner in [`learner`].
//!
//! The two ensembles differ only in how rows are sampled and how tree outputs combine:
//! - Random forest: each tree sees a bootstrap sample (Poisson(`subsampling_rate`) weights per
//!   row, as Spark) or a Bernoulli subsample, considers a seeded sample of features at each
//!   node, and trees are averaged (class probabilities for classification, Spark's soft vote).
//!   Trees are grown in parallel.
//! - Gradient boosting: trees fit the loss's gradient and hessian and leaves take a Newton step
//!   `-G / H` (times `step_size`), starting from the best constant (log-odds of the positive
//!   rate, mean, median). Spark fits the first tree to the labels and later trees to the
//!   residuals with mean-of-gradient leaves; for squared loss that is the same step, for
//!   logistic loss Newton steps reach a given log-loss in fewer trees (LightGBM and XGBoost do
//!   the same), and the model is then directly LightGBM's (see [`lightgbm`]). Absolute loss
//!   refits each leaf to the median residual of its rows, which Newton steps cannot express.
//!
//! Every random choice is a hash of (seed, tree, row or node), so the same seed gives the same
//! model whatever the thread count.

pub mod binning;
mod boosting;
mod check;
mod complete;
pub mod flat;
mod joint;
pub mod learner;
pub mod lightgbm;
pub mod shap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use self::binning::BinnedMatrix;
use self::flat::FlatTrees;
use self::learner::{Criterion, GrowInput, RowStats, TreeLimits};
use crate::dataset::Tabular;
use crate::dataset::split::{mix, unit};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("the label has a single class ({class}); classification needs at least two")]
    SingleClass { class: String },
    #[error("the table has no feature columns")]
    NoFeatures,
    #[error("model.monotone_constraints: {problem}")]
    Monotone { problem: String },
    #[error("model.init_from: {problem}")]
    WarmStart { problem: String },
    #[error("every training row has weight 0 (input.columns.weight)")]
    NoWeight,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensemble {
    RandomForest,
    Gbt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeTask {
    Classification,
    Regression,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impurity {
    Gini,
    Entropy,
    Variance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    Logistic,
    Squared,
    Absolute,
}

/// Spark's `featureSubsetStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSubset {
    Auto,
    All,
    OneThird,
    Sqrt,
    Log2,
    Fraction(f64),
    Count(usize),
}

/// Checked parameters of either ensemble (Spark's names and defaults).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TreeParams {
    pub ensemble: Ensemble,
    pub task: TreeTask,
    pub num_trees: usize,
    pub max_depth: usize,
    pub max_bins: usize,
    pub min_instances_per_node: usize,
    pub min_info_gain: f64,
    pub impurity: Impurity,
    pub subsampling_rate: f64,
    pub feature_subset_strategy: FeatureSubset,
    pub bootstrap: bool,
    pub max_iter: usize,
    pub step_size: f64,
    pub loss_type: Loss,
    pub validation_tol: f64,
    pub seed: u64,
    /// `(feature name, 1 or -1)`: outputs never decrease (1) or increase (-1) along it.
    pub monotone_constraints: Vec<(String, i8)>,
}

impl TreeParams {
    /// Per feature of `names`, its `monotone_constraints` direction (0: unconstrained).
    pub fn monotone_by_feature(&self, names: &[String]) -> Vec<i8> {
        names
            .iter()
            .map(|name| {
                self.monotone_constraints
                    .iter()
                    .find(|(constrained, _)| constrained == name)
                    .map_or(0, |(_, direction)| *direction)
            })
            .collect()
    }
}

impl FeatureSubset {
    /// Features per node, as Spark resolves the strategy.
    pub fn resolve(self, features: usize, params: &TreeParams) -> usize {
        let features_f = features as f64;
        let count = match self {
            FeatureSubset::Auto => match (params.ensemble, params.task) {
                (Ensemble::Gbt, _) => features,
                (Ensemble::RandomForest, _) if params.num_trees == 1 => features,
                (Ensemble::RandomForest, TreeTask::Classification) => {
                    features_f.sqrt().ceil() as usize
                }
                (Ensemble::RandomForest, TreeTask::Regression) => {
                    (features_f / 3.0).ceil() as usize
                }
            },
            FeatureSubset::All => features,
            FeatureSubset::OneThird => (features_f / 3.0).ceil() as usize,
            FeatureSubset::Sqrt => features_f.sqrt().ceil() as usize,
            FeatureSubset::Log2 => features_f.log2().ceil().max(1.0) as usize,
            FeatureSubset::Fraction(fraction) => (fraction * features_f).ceil() as usize,
            FeatureSubset::Count(count) => count,
        };
        count.clamp(1, features.max(1))
    }
}

/// How a split sends a row left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Numeric: missing values and `x <= value` go left; `bin` is the same test on bins.
    Threshold { value: f64, bin: u16 },
    /// Categorical: these category indices go left, every other (and unseen ones) right.
    Categories { left: Vec<u32> },
}

impl Rule {
    pub fn bin_goes_left(&self, bin: usize) -> bool {
        match self {
            Rule::Threshold { bin: split, .. } => bin <= *split as usize,
            Rule::Categories { left } => left.binary_search(&(bin as u32)).is_ok(),
        }
    }

    pub fn value_goes_left(&self, value: f32) -> bool {
        match self {
            Rule::Threshold {
                value: threshold, ..
            } => value.is_nan() || f64::from(value) <= *threshold,
            Rule::Categories { left } => {
                value >= 0.0 && left.binary_search(&(value as u32)).is_ok()
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Split {
        feature: u32,
        rule: Rule,
        left: u32,
        right: u32,
        gain: f64,
        weight: f64,
    },
    /// Class probabilities (forest classification) or one value.
    Leaf { value: Vec<f64>, weight: f64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf a row reaches; `feature(j)` gives the row's raw value of feature `j`.
    pub fn leaf(&self, feature: impl Fn(usize) -> f32) -> &[f64] {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Leaf { value, .. } => return value,
                Node::Split {
                    feature: index,
                    rule,
                    left,
                    right,
                    ..
                } => {
                    at = if rule.value_goes_left(feature(*index as usize)) {
                        *left
                    } else {
                        *right
                    } as usize;
                }
            }
        }
    }

    fn leaf_binned(&self, matrix: &BinnedMatrix, row: usize) -> &[f64] {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Leaf { value, .. } => return value,
                Node::Split {
                    feature,
                    rule,
                    left,
                    right,
                    ..
                } => {
                    at = if rule.bin_goes_left(matrix.bin(row, *feature as usize)) {
                        *left
                    } else {
                        *right
                    } as usize;
                }
            }
        }
    }

    pub fn depth(&self) -> usize {
        fn walk(nodes: &[Node], at: usize) -> usize {
            match &nodes[at] {
                Node::Leaf { .. } => 0,
                Node::Split { left, right, .. } => {
                    1 + walk(nodes, *left as usize).max(walk(nodes, *right as usize))
                }
            }
        }
        walk(&self.nodes, 0)
    }
}

/// A trained ensemble: everything prediction needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeModel {
    pub ensemble: Ensemble,
    pub task: TreeTask,
    /// Classes for classification, 1 for regression.
    pub classes: usize,
    pub loss: Option<Loss>,
    /// Boosting: the starting score (log-odds or constant) before the first tree.
    pub init_score: f64,
    /// Multiclass boosting: each class's starting score. The trees then come in iterations of
    /// `classes` trees, tree `t` adding to class `t % classes`; empty for every other model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_init_scores: Vec<f64>,
    pub trees: Vec<Tree>,
    /// Boosting: trees kept by early stopping out of those grown.
    pub trees_grown: usize,
    /// Boosting: validation loss after each grown tree, when a validation part was given.
    pub validation_loss: Vec<f64>,
    /// Boosting: mean training loss after each grown tree (summed in row order, so the same
    /// for any thread count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_loss: Vec<f64>,
}

impl TreeModel {
    /// Softmax boosting over more than two classes (one tree per class per iteration).
    pub fn is_multiclass_boosting(&self) -> bool {
        self.ensemble == Ensemble::Gbt && !self.class_init_scores.is_empty()
    }

    /// Class probabilities (classification) or the predicted value, for one row.
    pub fn predict_row(&self, feature: impl Fn(usize) -> f32 + Copy) -> Vec<f64> {
        match self.ensemble {
            Ensemble::RandomForest => {
                let mut sum = vec![0.0; self.classes];
                for tree in &self.trees {
                    for (total, value) in sum.iter_mut().zip(tree.leaf(feature)) {
                        *total += value;
                    }
                }
                let count = self.trees.len().max(1) as f64;
                sum.iter().map(|total| total / count).collect()
            }
            Ensemble::Gbt if self.is_multiclass_boosting() => {
                // Each class summed from +0.0 in tree order, as the flat scorer sums.
                let mut totals = vec![0.0; self.classes];
                for (index, tree) in self.trees.iter().enumerate() {
                    totals[index % self.classes] += tree.leaf(feature)[0];
                }
                let mut scores: Vec<f64> = self
                    .class_init_scores
                    .iter()
                    .zip(&totals)
                    .map(|(init, total)| init + total)
                    .collect();
                softmax(&mut scores);
                scores
            }
            Ensemble::Gbt => {
                // Summed from +0.0 in tree order, as the flat scorer sums.
                let mut total = 0.0;
                for tree in &self.trees {
                    total += tree.leaf(feature)[0];
                }
                let score = self.init_score + total;
                match self.task {
                    TreeTask::Classification => {
                        let p = sigmoid(score);
                        vec![1.0 - p, p]
                    }
                    TreeTask::Regression => vec![score],
                }
            }
        }
    }

    /// Predictions for every row of `table` (same columns as training), in row order: the
    /// flat layout, blocks of rows in parallel.
    pub fn predict(&self, table: &Tabular) -> Vec<Vec<f64>> {
        const CHUNK: usize = 4096;
        let flat = FlatTrees::new(self);
        let width = flat.outputs();
        let features = table.features.len();
        let rows = table.rows();
        let chunks: Vec<Vec<f64>> = (0..rows.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let start = chunk * CHUNK;
                let end = (start + CHUNK).min(rows);
                let mut matrix = vec![0f32; (end - start) * features];
                for (feature, column) in table.features.iter().enumerate() {
                    for (row, value) in column[start..end].iter().enumerate() {
                        matrix[row * features + feature] = *value;
                    }
                }
                let mut out = vec![0.0; (end - start) * width];
                flat.predict_into(&matrix, features, &mut out);
                out
            })
            .collect();
        chunks
            .iter()
            .flat_map(|chunk| chunk.chunks_exact(width).map(<[f64]>::to_vec))
            .collect()
    }

    /// Spark's feature importances: per tree, each split adds gain x node weight to its
    /// feature; tree vectors are normalised to sum 1, summed, and normalised again.
    pub fn feature_importances(&self, features: usize) -> Vec<f64> {
        let mut total = vec![0.0; features];
        for tree in &self.trees {
            let mut importance = vec![0.0; features];
            for node in &tree.nodes {
                if let Node::Split {
                    feature,
                    gain,
                    weight,
                    ..
                } = node
                {
                    importance[*feature as usize] += gain * weight;
                }
            }
            let sum: f64 = importance.iter().sum();
            if sum > 0.0 {
                for (total, value) in total.iter_mut().zip(&importance) {
                    *total += value / sum;
                }
            }
        }
        let sum: f64 = total.iter().sum();
        if sum > 0.0 {
            total.iter_mut().for_each(|value| *value /= sum);
        }
        total
    }
}

pub fn sigmoid(score: f64) -> f64 {
    1.0 / (1.0 + (-score).exp())
}

/// Scores to probabilities in place (shifted by the largest score, so no exp overflows).
/// Returns the log-sum-exp of the scores it replaced (the softmax loss is it minus the
/// label's score).
pub fn softmax(scores: &mut [f64]) -> f64 {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    for score in scores.iter_mut() {
        *score = (*score - max).exp();
        total += *score;
    }
    for score in scores.iter_mut() {
        *score /= total;
    }
    max + total.ln()
}

const ROW_SAMPLE_STREAM: u64 = 0x524F_5753;
const FEATURE_STREAM: u64 = 0x4645_4154;

/// Poisson(`mean`) draws from uniform numbers by the inverse CDF (means here are at most 1).
/// The cumulative probabilities are computed once, in the order a per-draw loop would sum
/// them, so a draw is a short scan and no `exp` per row (it was a tenth of a forest's fit).
struct Poisson {
    /// `P(X <= count)` for counts 0..=64.
    cumulative: [f64; 65],
}

impl Poisson {
    fn new(mean: f64) -> Poisson {
        let mut cumulative = [0.0; 65];
        let mut probability = (-mean).exp();
        let mut sum = probability;
        cumulative[0] = sum;
        for (count, slot) in cumulative.iter_mut().enumerate().skip(1) {
            probability *= mean / count as f64;
            sum += probability;
            *slot = sum;
        }
        Poisson { cumulative }
    }

    /// The smallest count whose cumulative probability reaches `uniform`, at most 64.
    fn draw(&self, uniform: f64) -> u32 {
        let mut count = 0;
        while count < 64 && uniform > self.cumulative[count] {
            count += 1;
        }
        count as u32
    }
}

/// Optional held-out rows that boosting scores after each tree (Spark's `runWithValidation`).
pub struct Validation<'a> {
    pub table: &'a Tabular,
}

/// Trains the ensemble `params` describes on `table`; `progress(trees done, detail)`.
pub fn train(
    table: &Tabular,
    params: &TreeParams,
    validation: Option<Validation<'_>>,
    progress: &(dyn Fn(usize, &str) + Sync),
) -> Result<TreeModel, TreeError> {
    train_from(table, params, validation, None, progress)
}

/// [`train`], continuing boosting from `base` (LightGBM's `input_model`): its trees are kept
/// and `max_iter` more are grown on the scores it gives each row; the caller checks that the
/// base has this table's features. The same seed and data give exactly the model one run with
/// all the iterations would have.
pub fn train_from(
    table: &Tabular,
    params: &TreeParams,
    validation: Option<Validation<'_>>,
    base: Option<&TreeModel>,
    progress: &(dyn Fn(usize, &str) + Sync),
) -> Result<TreeModel, TreeError> {
    if let Some(base) = base {
        check_base(base, params, table)?;
    }
    // A row of weight 0 counts nowhere (sums, counts, medians): it is left out up front.
    let weighted_rows;
    let table = match &table.weights {
        Some(weights) if weights.contains(&0.0) => {
            let keep: Vec<bool> = weights.iter().map(|weight| *weight > 0.0).collect();
            weighted_rows = table.select(&keep);
            &weighted_rows
        }
        _ => table,
    };
    if table.rows() == 0 {
        return Err(TreeError::NoWeight);
    }
    if table.columns() == 0 {
        return Err(TreeError::NoFeatures);
    }
    let classes = match params.task {
        TreeTask::Classification => {
            let classes = table.classes();
            let distinct = {
                let mut seen = vec![false; classes];
                table.labels.iter().for_each(|&y| seen[y as usize] = true);
                seen.iter().filter(|s| **s).count()
            };
            if distinct < 2 {
                let class = table.labels.first().copied().unwrap_or(0.0) as usize;
                let name = table
                    .label_names
                    .as_ref()
                    .and_then(|names| names.get(class).cloned())
                    .unwrap_or_else(|| class.to_string());
                return Err(TreeError::SingleClass { class: name });
            }
            classes
        }
        TreeTask::Regression => 1,
    };
    let monotone = monotone_directions(table, params, classes)?;
    let matrix = BinnedMatrix::fit(table, params.max_bins, params.seed);
    let features_per_node = params
        .feature_subset_strategy
        .resolve(table.columns(), params);
    let limits = TreeLimits {
        max_depth: params.max_depth,
        min_instances_per_node: params.min_instances_per_node,
        min_info_gain: params.min_info_gain,
    };
    // Pairs of features for the histograms of large nodes, when every node sees every
    // feature (with per-node sampling a node builds only its sampled features' cells).
    let joint = (features_per_node >= matrix.features)
        .then(|| joint::JointBins::new(&matrix))
        .flatten();
    let growth = Growth {
        matrix: &matrix,
        joint: joint.as_ref(),
        limits,
        features_per_node,
        monotone: &monotone,
        row_weights: table.weights.as_deref(),
    };
    match params.ensemble {
        Ensemble::RandomForest => Ok(train_forest(table, &growth, params, classes, progress)),
        Ensemble::Gbt if classes > 2 => Ok(boosting::train_softmax(
            table, &growth, params, classes, validation, base, progress,
        )),
        Ensemble::Gbt => Ok(boosting::train_boosting(
            table, &growth, params, validation, base, progress,
        )),
    }
}

/// What every tree of one fit is grown with: the binned rows and the learner's settings.
struct Growth<'a> {
    matrix: &'a BinnedMatrix,
    joint: Option<&'a joint::JointBins>,
    limits: TreeLimits,
    features_per_node: usize,
    monotone: &'a [i8],
    /// Sample weights, for boosting's weighted row counts (`None`: every row weighs 1).
    row_weights: Option<&'a [f64]>,
}

impl Growth<'_> {
    fn grow(
        &self,
        stats: RowStats<'_>,
        rows: Vec<u32>,
        criterion: Criterion,
        seed: u64,
    ) -> learner::Grown {
        learner::grow(GrowInput {
            matrix: self.matrix,
            joint: self.joint,
            stats,
            row_weights: self.row_weights,
            rows,
            criterion,
            limits: self.limits,
            features_per_node: self.features_per_node,
            seed,
            monotone: self.monotone,
        })
    }
}

/// A base model boosting can continue: gbt, of this task and class count.
fn check_base(base: &TreeModel, params: &TreeParams, table: &Tabular) -> Result<(), TreeError> {
    let problem = if params.ensemble != Ensemble::Gbt || base.ensemble != Ensemble::Gbt {
        Some("only gbt models continue from a base (a forest's trees do not depend on each other: train more of them)".to_owned())
    } else if base.task != params.task {
        Some(
            format!(
                "the base is a {:?} model and this job trains {:?}",
                base.task, params.task
            )
            .to_lowercase(),
        )
    } else if params.task == TreeTask::Classification && base.classes != table.classes().max(2) {
        Some(format!(
            "the base has {} classes and this table {}",
            base.classes,
            table.classes()
        ))
    } else if params.task == TreeTask::Regression
        && base.loss
            != Some(match params.loss_type {
                Loss::Absolute => Loss::Absolute,
                _ => Loss::Squared,
            })
    {
        Some("the base was trained with another loss_type".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(TreeError::WarmStart { problem }),
        None => Ok(()),
    }
}

/// Per feature, the direction `params.monotone_constraints` gives it (0: none); empty when
/// nothing is constrained.
fn monotone_directions(
    table: &Tabular,
    params: &TreeParams,
    classes: usize,
) -> Result<Vec<i8>, TreeError> {
    if params
        .monotone_constraints
        .iter()
        .all(|(_, direction)| *direction == 0)
    {
        return Ok(Vec::new());
    }
    if params.ensemble == Ensemble::RandomForest
        && params.task == TreeTask::Classification
        && classes > 2
    {
        return Err(TreeError::Monotone {
            problem: format!(
                "a {classes}-class forest has no single output to keep monotone; constraints apply to regression, binary classification and gbt"
            ),
        });
    }
    if params.ensemble == Ensemble::Gbt
        && params.task == TreeTask::Regression
        && params.loss_type == Loss::Absolute
    {
        return Err(TreeError::Monotone {
            problem: "absolute loss refits leaves to median residuals, which no bound holds; use loss_type = \"squared\"".to_owned(),
        });
    }
    for (name, _) in &params.monotone_constraints {
        let Some(feature) = table.feature_names.iter().position(|known| known == name) else {
            return Err(TreeError::Monotone {
                problem: format!(
                    "`{name}` is not a feature; the features are: {}",
                    crate::text::shorten(&table.feature_names.join(", "), 300)
                ),
            });
        };
        if matches!(
            table.kinds[feature],
            crate::dataset::tabular::FeatureKind::Categorical { .. }
        ) {
            return Err(TreeError::Monotone {
                problem: format!("`{name}` is categorical; only numeric features have an order"),
            });
        }
    }
    Ok(params.monotone_by_feature(&table.feature_names))
}

fn train_forest(
    table: &Tabular,
    growth: &Growth<'_>,
    params: &TreeParams,
    classes: usize,
    progress: &(dyn Fn(usize, &str) + Sync),
) -> TreeModel {
    let criterion = match (params.task, params.impurity) {
        (TreeTask::Regression, _) => Criterion::Variance,
        (TreeTask::Classification, Impurity::Entropy) => Criterion::Entropy { classes },
        (TreeTask::Classification, _) => Criterion::Gini { classes },
    };
    let width = criterion.width();
    // Spark samples with replacement only when there is more than one tree.
    let with_replacement = params.bootstrap && params.num_trees > 1;
    let poisson = Poisson::new(params.subsampling_rate);
    // Unweighted classification: a row's statistics are its multiplicity at its class, held
    // as two bytes (`RowStats::ClassCounts`) instead of `classes` numbers.
    let class_labels: Option<Vec<u8>> = (criterion != Criterion::Variance
        && table.weights.is_none()
        && classes <= usize::from(u8::MAX) + 1)
        .then(|| table.labels.iter().map(|&label| label as u8).collect());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let trees: Vec<Tree> = (0..params.num_trees)
        .into_par_iter()
        .map(|tree_index| {
            let stream = mix(mix(params.seed, ROW_SAMPLE_STREAM), tree_index as u64);
            let mut rows = Vec::with_capacity(table.rows());
            let (mut stats, mut counts) = match class_labels {
                Some(_) => (Vec::new(), vec![0u8; table.rows()]),
                None => (vec![0.0; table.rows() * width], Vec::new()),
            };
            for (row, label) in table.labels.iter().enumerate() {
                let multiplicity = if with_replacement {
                    poisson.draw(unit(stream, row as u64))
                } else if params.subsampling_rate < 1.0 {
                    u32::from(unit(stream, row as u64) < params.subsampling_rate)
                } else {
                    1
                };
                if multiplicity == 0 {
                    continue;
                }
                rows.push(row as u32);
                if class_labels.is_some() {
                    // At most 64 (`Poisson::draw`).
                    counts[row] = multiplicity as u8;
                    continue;
                }
                let weight = f64::from(multiplicity) * table.weight(row);
                let slot = &mut stats[row * width..(row + 1) * width];
                match criterion {
                    Criterion::Variance => {
                        slot[0] = weight;
                        slot[1] = weight * label;
                        slot[2] = weight * label * label;
                    }
                    _ => slot[*label as usize] = weight,
                }
            }
            let row_stats = match &class_labels {
                Some(labels) => RowStats::ClassCounts {
                    labels,
                    counts: &counts,
                },
                None => RowStats::Dense(&stats),
            };
            let grown = growth.grow(
                row_stats,
                rows,
                criterion,
                mix(mix(params.seed, FEATURE_STREAM), tree_index as u64),
            );
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(finished, "");
            grown.tree
        })
        .collect();
    TreeModel {
        ensemble: Ensemble::RandomForest,
        task: params.task,
        classes: if params.task == TreeTask::Classification {
            classes
        } else {
            1
        },
        loss: None,
        init_score: 0.0,
        class_init_scores: Vec::new(),
        trees_grown: trees.len(),
        trees,
        validation_loss: Vec::new(),
        train_loss: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn poisson_table_draws_what_the_per_draw_loop_drew() {
        let reference = |mean: f64, uniform: f64| {
            let mut probability = (-mean).exp();
            let mut cumulative = probability;
            let mut count = 0;
            while uniform > cumulative && count < 64 {
                count += 1;
                probability *= mean / f64::from(count);
                cumulative += probability;
            }
            count
        };
        for mean in [0.1, 0.5, 0.632, 1.0] {
            let table = Poisson::new(mean);
            for step in 0..=100_000 {
                let uniform = f64::from(step) / 100_000.0;
                assert_eq!(
                    table.draw(uniform),
                    reference(mean, uniform),
                    "{mean} {uniform}"
                );
            }
            assert_eq!(table.draw(1.0 - 1e-17), reference(mean, 1.0 - 1e-17));
        }
    }

    pub(crate) fn params(ensemble: Ensemble, task: TreeTask) -> TreeParams {
        TreeParams {
            ensemble,
            task,
            num_trees: 20,
            max_depth: 5,
            max_bins: 32,
            min_instances_per_node: 1,
            min_info_gain: 0.0,
            impurity: if task == TreeTask::Regression {
                Impurity::Variance
            } else {
                Impurity::Gini
            },
            subsampling_rate: 1.0,
            feature_subset_strategy: FeatureSubset::Auto,
            bootstrap: true,
            max_iter: 50,
            step_size: 0.3,
            loss_type: Loss::Logistic,
            validation_tol: 0.01,
            seed: 7,
            monotone_constraints: Vec::new(),
        }
    }

    /// XOR of the signs of two features, plus three noise features.
    pub(crate) fn xor(rows: usize, seed: u64) -> Tabular {
        let stream = mix(seed, 99);
        let features: Vec<Vec<f32>> = (0..5)
            .map(|j| {
                (0..rows)
                    .map(|i| (unit(stream, (i * 5 + j) as u64) * 2.0 - 1.0) as f32)
                    .collect()
            })
            .collect();
        let labels = (0..rows)
            .map(|i| f64::from((features[0][i] > 0.0) != (features[1][i] > 0.0)))
            .collect();
        Tabular::numeric((0..5).map(|j| format!("x{j}")).collect(), features, labels)
    }

    fn accuracy(model: &TreeModel, table: &Tabular) -> f64 {
        let predictions = model.predict(table);
        predictions
            .iter()
            .zip(&table.labels)
            .filter(|(p, y)| (p[1] > 0.5) == (**y > 0.5))
            .count() as f64
            / table.rows() as f64
    }

    #[test]
    fn both_ensembles_learn_xor() {
        let (train_table, test_table) = (xor(4000, 1), xor(2000, 2));
        for ensemble in [Ensemble::RandomForest, Ensemble::Gbt] {
            let mut p = params(ensemble, TreeTask::Classification);
            p.feature_subset_strategy = FeatureSubset::All;
            let model = train(&train_table, &p, None, &|_, _| {}).unwrap();
            let accuracy = accuracy(&model, &test_table);
            assert!(accuracy > 0.95, "{ensemble:?}: {accuracy}");
            let importances = model.feature_importances(5);
            assert!(importances[0] + importances[1] > 0.7, "{importances:?}");
        }
    }

    /// `table` with each row repeated by its integer weight, and the weights dropped.
    fn repeated_by_weight(table: &Tabular) -> Tabular {
        let rows: Vec<usize> = (0..table.rows())
            .flat_map(|row| std::iter::repeat_n(row, table.weight(row) as usize))
            .collect();
        Tabular {
            feature_names: table.feature_names.clone(),
            kinds: table.kinds.clone(),
            features: table
                .features
                .iter()
                .map(|column| rows.iter().map(|&row| column[row]).collect())
                .collect(),
            labels: rows.iter().map(|&row| table.labels[row]).collect(),
            label_names: table.label_names.clone(),
            weights: None,
        }
    }

    #[test]
    fn weighted_boosting_matches_boosting_on_repeated_rows() {
        for (task, loss, classes) in [
            (TreeTask::Classification, Loss::Logistic, 2),
            (TreeTask::Regression, Loss::Squared, 1),
            (TreeTask::Regression, Loss::Absolute, 1),
            (TreeTask::Classification, Loss::Logistic, 3),
        ] {
            let mut table = xor(600, 4);
            // Few distinct values per feature, so both tables get the same bins.
            for column in &mut table.features {
                column.iter_mut().for_each(|v| *v = (*v * 4.0).round());
            }
            if classes == 3 {
                table.labels = (0..600).map(|row| (row % 3) as f64).collect();
                for row in 0..600 {
                    if table.features[0][row] > 1.0 {
                        table.labels[row] = 2.0;
                    }
                }
            }
            let stream = mix(9, 1);
            table.weights = Some(
                (0..600)
                    .map(|row| (unit(stream, row) * 4.0).floor())
                    .collect(),
            );
            let repeated = repeated_by_weight(&table);
            let mut p = params(Ensemble::Gbt, task);
            p.loss_type = loss;
            p.max_iter = 10;
            p.min_instances_per_node = 4;
            p.feature_subset_strategy = FeatureSubset::All;
            let weighted_model = train(&table, &p, None, &|_, _| {}).unwrap();
            let repeated_model = train(&repeated, &p, None, &|_, _| {}).unwrap();
            assert_eq!(weighted_model.trees.len(), repeated_model.trees.len());
            for (a, b) in weighted_model
                .predict(&repeated)
                .iter()
                .zip(repeated_model.predict(&repeated))
            {
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-9, "{task:?} {loss:?}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn boosting_fits_a_smooth_surface() {
        // One generated table (its weights depend on the seed), split 3:1.
        let all = crate::ingest::synthetic::regression(8000, 4, 0.1, 3);
        let is_train: Vec<bool> = (0..all.rows()).map(|row| row % 4 != 0).collect();
        let is_test: Vec<bool> = is_train.iter().map(|train| !train).collect();
        let (table, test) = (all.select(&is_train), all.select(&is_test));
        let mut p = params(Ensemble::Gbt, TreeTask::Regression);
        p.loss_type = Loss::Squared;
        p.max_iter = 100;
        let model = train(&table, &p, None, &|_, _| {}).unwrap();
        let mean = test.labels.iter().sum::<f64>() / test.rows() as f64;
        let (mut residual, mut total) = (0.0, 0.0);
        for (prediction, label) in model.predict(&test).iter().zip(&test.labels) {
            residual += (prediction[0] - label).powi(2);
            total += (label - mean).powi(2);
        }
        let r2 = 1.0 - residual / total;
        assert!(r2 > 0.9, "r2 {r2}");
        let forest = train(
            &table,
            &params(Ensemble::RandomForest, TreeTask::Regression),
            None,
            &|_, _| {},
        )
        .unwrap();
        let residual: f64 = forest
            .predict(&test)
            .iter()
            .zip(&test.labels)
            .map(|(p, y)| (p[0] - y).powi(2))
            .sum();
        assert!(
            1.0 - residual / total > 0.6,
            "forest r2 {}",
            1.0 - residual / total
        );
    }

    #[test]
    fn same_model_for_any_thread_count() {
        let binary = crate::ingest::synthetic::classification(40_000, 6, 2, 5);
        let multiclass = crate::ingest::synthetic::classification(20_000, 6, 4, 5);
        for (ensemble, table) in [
            (Ensemble::RandomForest, &binary),
            (Ensemble::Gbt, &binary),
            (Ensemble::Gbt, &multiclass),
        ] {
            let mut p = params(ensemble, TreeTask::Classification);
            p.max_iter = 10;
            p.num_trees = 6;
            p.subsampling_rate = 0.8;
            let fit = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| train(table, &p, None, &|_, _| {}).unwrap())
            };
            assert_eq!(fit(1), fit(3), "{ensemble:?} {}", table.classes());
        }
    }

    #[test]
    fn early_stopping_keeps_the_best_iteration() {
        let table = xor(3000, 5);
        let mut noisy = xor(1000, 6);
        // Flip a third of the validation labels: its loss soon stops improving.
        for (i, label) in noisy.labels.iter_mut().enumerate() {
            if i % 3 == 0 {
                *label = 1.0 - *label;
            }
        }
        let mut p = params(Ensemble::Gbt, TreeTask::Classification);
        p.max_iter = 200;
        let model = train(&table, &p, Some(Validation { table: &noisy }), &|_, _| {}).unwrap();
        assert!(model.trees_grown < 200, "stopped early");
        let best = model.trees.len();
        let losses = &model.validation_loss;
        assert!(losses[best - 1] <= losses.iter().copied().fold(f64::INFINITY, f64::min) + 1e-12);
        // The training curve has a point for every tree grown, the one that stopped it too
        // (its loss is taken after the loop: the next gradient pass never ran).
        assert_eq!(model.train_loss.len(), model.trees_grown);
        assert_eq!(losses.len(), model.trees_grown);
    }

    #[test]
    fn a_saved_and_reloaded_model_predicts_exactly_the_same() {
        let table = crate::ingest::synthetic::classification(3000, 4, 3, 2);
        let model = train(
            &table,
            &params(Ensemble::RandomForest, TreeTask::Classification),
            None,
            &|_, _| {},
        )
        .unwrap();
        let text = serde_json::to_string(&model).unwrap();
        let reloaded: TreeModel = serde_json::from_str(&text).unwrap();
        assert_eq!(reloaded, model);
        assert_eq!(reloaded.predict(&table), model.predict(&table));
    }

    /// y rises with x0 and falls with x1 on average, but a bump in the middle of x0 and noise
    /// make unconstrained trees go the wrong way in places.
    fn bumpy(rows: usize, classification: bool) -> Tabular {
        let stream = mix(11, 3);
        let features: Vec<Vec<f32>> = (0..3)
            .map(|j| {
                (0..rows)
                    .map(|i| (unit(stream, (i * 3 + j) as u64) * 4.0 - 2.0) as f32)
                    .collect()
            })
            .collect();
        let labels = (0..rows)
            .map(|i| {
                let (a, b, c) = (
                    f64::from(features[0][i]),
                    f64::from(features[1][i]),
                    f64::from(features[2][i]),
                );
                let bump = if (0.2..0.6).contains(&a) { -1.5 } else { 0.0 };
                let noise = unit(stream, (rows * 3 + i) as u64) - 0.5;
                let y = a - 0.7 * b + bump + c * c * 0.3 + noise;
                if classification {
                    f64::from(u8::from(y > 0.0))
                } else {
                    y
                }
            })
            .collect();
        Tabular {
            features,
            feature_names: vec!["up".into(), "down".into(), "free".into()],
            kinds: vec![crate::dataset::tabular::FeatureKind::Numeric; 3],
            labels,
            label_names: None,
            weights: None,
        }
    }

    #[test]
    fn monotone_constraints_hold_on_a_grid_for_every_model_kind() {
        for (ensemble, task) in [
            (Ensemble::Gbt, TreeTask::Regression),
            (Ensemble::Gbt, TreeTask::Classification),
            (Ensemble::RandomForest, TreeTask::Regression),
            (Ensemble::RandomForest, TreeTask::Classification),
        ] {
            let table = bumpy(4000, task == TreeTask::Classification);
            let mut p = params(ensemble, task);
            p.max_iter = 30;
            p.max_depth = 6;
            let free = train(&table, &p, None, &|_, _| {}).unwrap();
            p.monotone_constraints = vec![("up".into(), 1), ("down".into(), -1)];
            let model = train(&table, &p, None, &|_, _| {}).unwrap();
            let output = |model: &TreeModel, row: [f32; 3]| {
                let prediction = model.predict_row(|feature| row[feature]);
                *prediction.last().unwrap()
            };
            let grid: Vec<f32> = (0..81).map(|step| -2.0 + step as f32 * 0.05).collect();
            let mut free_violations = 0;
            for base in 0..40 {
                let row: Vec<f32> = (0..3).map(|j| table.features[j][base]).collect();
                for (feature, direction) in [(0usize, 1.0), (1, -1.0)] {
                    let mut previous: Option<(f64, f64)> = None;
                    for &value in &grid {
                        let mut point = [row[0], row[1], row[2]];
                        point[feature] = value;
                        let (constrained, unconstrained) =
                            (output(&model, point), output(&free, point));
                        if let Some((before, free_before)) = previous {
                            assert!(
                                direction * (constrained - before) >= -1e-12,
                                "{ensemble:?} {task:?} feature {feature} at {value}: {before} -> {constrained}"
                            );
                            if direction * (unconstrained - free_before) < -1e-9 {
                                free_violations += 1;
                            }
                        }
                        previous = Some((constrained, unconstrained));
                    }
                }
            }
            assert!(
                free_violations > 0,
                "{ensemble:?} {task:?}: the data never tests the constraint"
            );
        }
    }

    #[test]
    fn boosting_continued_from_a_base_equals_one_longer_run() {
        let binary = crate::ingest::synthetic::classification(3000, 4, 2, 3);
        let multiclass = crate::ingest::synthetic::classification(3000, 4, 3, 3);
        for (table, subsampling_rate) in [(&binary, 1.0), (&binary, 0.7), (&multiclass, 1.0)] {
            let mut p = params(Ensemble::Gbt, TreeTask::Classification);
            p.subsampling_rate = subsampling_rate;
            p.max_iter = 20;
            let whole = train(table, &p, None, &|_, _| {}).unwrap();
            p.max_iter = 10;
            let base = train(table, &p, None, &|_, _| {}).unwrap();
            let continued = train_from(table, &p, None, Some(&base), &|_, _| {}).unwrap();
            assert_eq!(
                continued,
                whole,
                "{} classes, rate {subsampling_rate}",
                table.classes()
            );
        }
        let mut p = params(Ensemble::Gbt, TreeTask::Regression);
        let base = train(
            &binary,
            &params(Ensemble::Gbt, TreeTask::Classification),
            None,
            &|_, _| {},
        )
        .unwrap();
        p.loss_type = Loss::Squared;
        let error = train_from(&binary, &p, None, Some(&base), &|_, _| {}).unwrap_err();
        assert!(error.to_string().contains("model.init_from"), "{error}");
    }

    #[test]
    fn monotone_constraints_name_real_numeric_features() {
        let mut p = params(Ensemble::Gbt, TreeTask::Regression);
        p.monotone_constraints = vec![("nope".into(), 1)];
        let error = train(&bumpy(200, false), &p, None, &|_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("nope") && error.contains("up, down, free"),
            "{error}"
        );
    }

    #[test]
    fn multiclass_boosting_learns_three_classes() {
        let all = crate::ingest::synthetic::classification(5000, 4, 3, 1);
        let is_test: Vec<bool> = (0..all.rows()).map(|row| row % 5 < 2).collect();
        let is_train: Vec<bool> = is_test.iter().map(|test| !test).collect();
        let (table, test) = (all.select(&is_train), all.select(&is_test));
        let accuracy = |model: &TreeModel, table: &Tabular| {
            let predictions = model.predict(table);
            let argmax = |p: &Vec<f64>| (0..p.len()).max_by(|a, b| p[*a].total_cmp(&p[*b]));
            predictions
                .iter()
                .zip(&table.labels)
                .filter(|(p, y)| argmax(p) == Some(**y as usize))
                .count() as f64
                / table.rows() as f64
        };
        let mut p = params(Ensemble::Gbt, TreeTask::Classification);
        p.max_iter = 30;
        let model = train(&table, &p, None, &|_, _| {}).unwrap();
        assert_eq!(model.classes, 3);
        assert_eq!(model.trees.len(), 90);
        let forest = train(
            &table,
            &params(Ensemble::RandomForest, TreeTask::Classification),
            None,
            &|_, _| {},
        )
        .unwrap();
        let (boosted, averaged) = (accuracy(&model, &test), accuracy(&forest, &test));
        assert!(
            boosted > 0.8 && boosted >= averaged - 0.02,
            "{boosted} vs forest {averaged}"
        );
        let losses = &model.train_loss;
        assert!(
            losses.windows(2).all(|pair| pair[1] <= pair[0] + 1e-12),
            "{losses:?}"
        );
        let row = model.predict_row(|feature| test.features[feature][0]);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
