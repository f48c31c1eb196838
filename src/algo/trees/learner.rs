//! The one tree learner behind both ensembles: depth-wise growth over binned rows with
//! per-node histograms.
//!
//! Each node owns a contiguous range of one row-index array; splitting a node partitions its
//! range stably (rows stay in ascending order, which keeps the histogram pass close to
//! sequential). A histogram holds, per feature and bin, the sum of the rows' statistics: class
//! weights (random forest classification), weight / weighted sum / weighted sum of squares
//! (random forest regression), or gradient / hessian / count (boosting). When every feature is
//! a candidate at every node, only the smaller child's histogram is built from its rows and the
//! sibling's is the parent's minus it (histogram subtraction); with per-node feature sampling
//! (random forests) each node builds the histograms of its sampled features only, which is
//! less work than all of them.
//!
//! Large nodes are split into fixed 16,384-row chunks whose partial histograms are summed in
//! chunk order, so sums (and so the chosen splits) do not depend on the thread count.

use rayon::prelude::*;

use super::binning::{BinStore, BinnedMatrix, FeatureBins};
use super::joint::JointBins;
use super::{Node, Rule, Tree};
use crate::dataset::split::mix;

/// Rows per partial histogram; fixed so results do not depend on the thread count.
const CHUNK: usize = 16_384;
/// Smallest hessian sum a boosting leaf may have (LightGBM's `min_sum_hessian_in_leaf`).
const MIN_HESSIAN: f64 = 1e-3;

/// How split quality and leaf values are computed from summed row statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    /// Row statistics: weight of each class.
    Gini {
        classes: usize,
    },
    Entropy {
        classes: usize,
    },
    /// Row statistics: `[w, w * y, w * y^2]`.
    Variance,
    /// Row statistics: `[gradient, hessian]`; leaves are Newton steps `-G / H`. Two numbers
    /// instead of three make the histogram pass a third cheaper; the row count a child would
    /// have (for `min_instances_per_node`) is estimated from its hessian share, as LightGBM does,
    /// and node counts are exact once the rows are partitioned.
    Newton,
}

impl Criterion {
    pub fn width(self) -> usize {
        match self {
            Criterion::Gini { classes } | Criterion::Entropy { classes } => classes,
            Criterion::Variance => 3,
            Criterion::Newton => 2,
        }
    }

    /// Number (weight) of rows behind the statistics; for Newton, the hessian sum.
    pub fn count(self, stats: &[f64]) -> f64 {
        match self {
            Criterion::Gini { .. } | Criterion::Entropy { .. } => stats.iter().sum(),
            Criterion::Variance => stats[0],
            Criterion::Newton => stats[1],
        }
    }

    /// Rows of a child with statistics `child` of a node with `totals` over `node_count` rows.
    fn child_count(self, child: &[f64], totals: &[f64], node_count: f64) -> f64 {
        match self {
            Criterion::Newton if totals[1] > 0.0 => child[1] / totals[1] * node_count,
            _ => self.count(child),
        }
    }

    /// Spark's impurity (gini, entropy in bits, variance).
    fn impurity(self, stats: &[f64]) -> f64 {
        let total = self.count(stats);
        if total <= 0.0 {
            return 0.0;
        }
        match self {
            Criterion::Gini { .. } => {
                1.0 - stats.iter().map(|w| (w / total) * (w / total)).sum::<f64>()
            }
            Criterion::Entropy { .. } => -stats
                .iter()
                .filter(|w| **w > 0.0)
                .map(|w| (w / total) * (w / total).log2())
                .sum::<f64>(),
            Criterion::Variance => {
                let mean = stats[1] / total;
                (stats[2] / total - mean * mean).max(0.0)
            }
            Criterion::Newton => 0.0,
        }
    }

    /// Spark's information gain (impurity decrease weighted by child sizes); for boosting the
    /// Newton gain divided by the row count, which is exactly the variance gain for squared
    /// loss, so `min_info_gain` means the same in both ensembles.
    fn gain(self, parent: &[f64], left: &[f64], right: &[f64], node_count: f64) -> Option<f64> {
        match self {
            Criterion::Newton => {
                let (hessian_left, hessian_right) = (left[1], right[1]);
                if hessian_left < MIN_HESSIAN || hessian_right < MIN_HESSIAN {
                    return None;
                }
                let score = |stats: &[f64]| stats[0] * stats[0] / stats[1];
                Some((score(left) + score(right) - score(parent)) / node_count)
            }
            _ => {
                let total = self.count(parent);
                let (weight_left, weight_right) = (self.count(left), self.count(right));
                Some(
                    self.impurity(parent)
                        - weight_left / total * self.impurity(left)
                        - weight_right / total * self.impurity(right),
                )
            }
        }
    }

    /// [`Criterion::gain`] when outputs are held within `bounds`: for boosting, the loss
    /// reduction of the clamped Newton steps (`-(2 G w + H w^2)`, which is `G^2 / H` at the
    /// unclamped step); the impurity criteria do not depend on the output and are unchanged.
    fn bounded_gain(
        self,
        parent: &[f64],
        left: &[f64],
        right: &[f64],
        node_count: f64,
        bounds: Bounds,
    ) -> Option<f64> {
        match self {
            Criterion::Newton if !bounds.is_open() => {
                if left[1] < MIN_HESSIAN || right[1] < MIN_HESSIAN {
                    return None;
                }
                let score = |stats: &[f64]| {
                    let step = bounds.clamp(-stats[0] / stats[1]);
                    -(2.0 * stats[0] * step + stats[1] * step * step)
                };
                Some((score(left) + score(right) - score(parent)) / node_count)
            }
            _ => self.gain(parent, left, right, node_count),
        }
    }

    /// A leaf's prediction: class probabilities, the mean label, or the Newton step.
    pub fn leaf(self, stats: &[f64]) -> Vec<f64> {
        let total = self.count(stats);
        match self {
            Criterion::Gini { .. } | Criterion::Entropy { .. } => stats
                .iter()
                .map(|w| if total > 0.0 { w / total } else { 0.0 })
                .collect(),
            Criterion::Variance => vec![if total > 0.0 { stats[1] / total } else { 0.0 }],
            Criterion::Newton => vec![if stats[1] > 0.0 {
                -stats[0] / stats[1]
            } else {
                0.0
            }],
        }
    }

    /// The one number monotone constraints order: the leaf value (boosting, regression) or
    /// the probability of class 1 (binary classification).
    fn output(self, stats: &[f64]) -> f64 {
        match self {
            Criterion::Gini { .. } | Criterion::Entropy { .. } => {
                let total = self.count(stats);
                if total > 0.0 { stats[1] / total } else { 0.0 }
            }
            Criterion::Variance | Criterion::Newton => self.leaf(stats)[0],
        }
    }

    /// A leaf's prediction with its output held within `bounds` (monotone constraints).
    fn bounded_leaf(self, stats: &[f64], bounds: Bounds) -> Vec<f64> {
        let mut leaf = self.leaf(stats);
        if bounds.is_open() {
            return leaf;
        }
        match self {
            Criterion::Gini { .. } | Criterion::Entropy { .. } => {
                let p = bounds.clamp(self.output(stats));
                leaf = vec![1.0 - p, p];
            }
            Criterion::Variance | Criterion::Newton => leaf[0] = bounds.clamp(leaf[0]),
        }
        leaf
    }

    /// Order of categories for a categorical split (Spark orders by label statistics: mean
    /// label for regression, share of class 1 for binary classification; here the Newton step
    /// for boosting and the category's impurity for more than two classes). The Newton step
    /// is shrunk toward zero by ten units of hessian, as LightGBM's default `cat_smooth`: the
    /// step of a category with a handful of rows is mostly noise, and unshrunk it lands at
    /// either end of the order, where the prefix splits pick it first. On the census table
    /// this took the 32-bin AUC from 0.0012 below LightGBM's to 0.0004 below.
    fn category_key(self, stats: &[f64]) -> f64 {
        match self {
            Criterion::Gini { classes: 2 } | Criterion::Entropy { classes: 2 } => {
                stats[1] / self.count(stats)
            }
            Criterion::Gini { .. } | Criterion::Entropy { .. } => self.impurity(stats),
            Criterion::Variance => self.leaf(stats)[0],
            Criterion::Newton => -stats[0] / (stats[1] + CATEGORY_SMOOTHING),
        }
    }
}

/// Hessian added to a category's own when ordering categories (LightGBM's `cat_smooth`).
const CATEGORY_SMOOTHING: f64 = 10.0;

/// Spark's tree limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeLimits {
    pub max_depth: usize,
    pub min_instances_per_node: usize,
    pub min_info_gain: f64,
}

/// The range a node's output must stay in under monotone constraints (LightGBM's "basic"
/// method): a split on a constrained feature puts the midpoint of its two outputs between its
/// children, the left side below it for an increasing feature, and every node below inherits
/// its range, so no leaf on the "smaller" side of a constrained split can exceed a leaf on the
/// "larger" side.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bounds {
    lower: f64,
    upper: f64,
}

impl Bounds {
    const OPEN: Bounds = Bounds {
        lower: f64::NEG_INFINITY,
        upper: f64::INFINITY,
    };

    fn is_open(self) -> bool {
        self == Bounds::OPEN
    }

    fn clamp(self, value: f64) -> f64 {
        value.max(self.lower).min(self.upper)
    }
}

/// What one tree is grown from.
pub struct GrowInput<'a> {
    pub matrix: &'a BinnedMatrix,
    /// Feature pairs for the histograms of large nodes (see [`super::joint`]), when every
    /// node sees every feature.
    pub joint: Option<&'a JointBins>,
    /// Each row's statistics, `criterion.width()` numbers.
    pub stats: RowStats<'a>,
    /// Sample weights, by which boosting counts rows (`min_instances_per_node`, the gain per
    /// row); `None`: every row weighs 1. The impurity criteria carry weights in `stats`.
    pub row_weights: Option<&'a [f64]>,
    /// Rows of this tree (weight > 0), ascending.
    pub rows: Vec<u32>,
    pub criterion: Criterion,
    pub limits: TreeLimits,
    /// Features considered at each node; all of them means histogram subtraction applies.
    pub features_per_node: usize,
    /// Seed of this tree's feature sampling.
    pub seed: u64,
    /// Per feature: 1 (output never decreases as it grows), -1 (never increases) or 0; empty
    /// when no feature is constrained.
    pub monotone: &'a [i8],
}

/// A grown tree and, per leaf, the rows that reached it.
pub struct Grown {
    pub tree: Tree,
    /// The tree's rows, grouped by leaf.
    pub rows: Vec<u32>,
    /// `(node index, start, end)` of each leaf's rows in `rows`, in node order.
    pub leaves: Vec<(usize, usize, usize)>,
}

impl Grown {
    /// `(node index, rows)` for each leaf, in node order.
    pub fn leaf_rows(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.leaves
            .iter()
            .map(|&(node, start, end)| (node, &self.rows[start..end]))
    }
}

/// The (left, right) histograms of a split node's children, when they will be needed.
type ChildHistograms = Option<(Vec<f64>, Vec<f64>)>;

struct Pending {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    /// Rows (weighted for forests) in the node.
    count: f64,
    totals: Vec<f64>,
    histogram: Option<Vec<f64>>,
    bounds: Bounds,
}

#[derive(Clone, Debug)]
struct Choice {
    feature: usize,
    rule: Rule,
    gain: f64,
    left: Vec<f64>,
    right: Vec<f64>,
    /// The children's output ranges.
    bounds: (Bounds, Bounds),
}

/// The statistics rows add to histograms.
#[derive(Clone, Copy, Debug)]
pub enum RowStats<'a> {
    /// Row-major, `width` numbers per row.
    Dense(&'a [f64]),
    /// Class weights that are whole counts: row `r` adds `counts[r]` to class `labels[r]`
    /// and nothing to the others (a forest's bootstrap multiplicities on unweighted rows).
    /// The sums are those of the dense one-hot rows exactly (small integers add exactly in
    /// f64), read from two bytes per row instead of `8 x classes`: at depth 10 a node's rows
    /// are scattered, and the dense row was a cache miss of its own.
    ClassCounts { labels: &'a [u8], counts: &'a [u8] },
}

impl RowStats<'_> {
    /// The sums of `rows`' statistics (`width` numbers), added in row order. Two and three
    /// numbers a row are summed in registers: through memory, each add waited on the previous
    /// one's store, and the root's sum over every row ran alone on one thread for about 4% of
    /// a boosting fit.
    fn sum_rows(self, rows: &[u32], width: usize) -> Vec<f64> {
        fn fixed<const WIDTH: usize>(stats: &[f64], rows: &[u32]) -> Vec<f64> {
            let mut sums = [0.0; WIDTH];
            for &row in rows {
                let row = row as usize;
                for (sum, value) in sums.iter_mut().zip(&stats[row * WIDTH..(row + 1) * WIDTH]) {
                    *sum += value;
                }
            }
            sums.to_vec()
        }
        match (self, width) {
            (RowStats::Dense(stats), 2) => fixed::<2>(stats, rows),
            (RowStats::Dense(stats), 3) => fixed::<3>(stats, rows),
            _ => {
                let mut totals = vec![0.0; width];
                for &row in rows {
                    self.add_row(row as usize, &mut totals);
                }
                totals
            }
        }
    }

    /// Adds row `row`'s statistics to `totals` (`width` numbers).
    fn add_row(self, row: usize, totals: &mut [f64]) {
        match self {
            RowStats::Dense(stats) => {
                let width = totals.len();
                for (total, value) in totals.iter_mut().zip(&stats[row * width..][..width]) {
                    *total += value;
                }
            }
            RowStats::ClassCounts { labels, counts } => {
                totals[usize::from(labels[row])] += f64::from(counts[row]);
            }
        }
    }
}

/// Adds the statistics of `rows` into `out` (cells x width), for `features` or all of them.
pub fn build_histogram(
    matrix: &BinnedMatrix,
    stats: RowStats<'_>,
    width: usize,
    rows: &[u32],
    features: Option<&[usize]>,
    out: &mut [f64],
) {
    if rows.len() <= CHUNK {
        accumulate(matrix, stats, width, rows, features, out);
        return;
    }
    let partials: Vec<Vec<f64>> = rows
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut partial = vec![0.0; out.len()];
            accumulate(matrix, stats, width, chunk, features, &mut partial);
            partial
        })
        .collect();
    for partial in partials {
        for (total, value) in out.iter_mut().zip(&partial) {
            *total += value;
        }
    }
}

fn accumulate(
    matrix: &BinnedMatrix,
    stats: RowStats<'_>,
    width: usize,
    rows: &[u32],
    features: Option<&[usize]>,
    out: &mut [f64],
) {
    let stats = match stats {
        RowStats::Dense(stats) => stats,
        RowStats::ClassCounts { labels, counts } => {
            let counted = ClassCounted {
                labels,
                counts,
                width,
            };
            match &matrix.store {
                BinStore::Narrow(bins) => counted.add_rows(bins, matrix, rows, features, out),
                BinStore::Wide(bins) => counted.add_rows(bins, matrix, rows, features, out),
            }
            return;
        }
    };
    match (&matrix.store, width) {
        (BinStore::Narrow(bins), 2) => add_rows::<u8, 2>(bins, matrix, stats, rows, features, out),
        (BinStore::Narrow(bins), 3) => add_rows::<u8, 3>(bins, matrix, stats, rows, features, out),
        (BinStore::Narrow(bins), _) => {
            add_rows_any(bins, matrix, stats, width, rows, features, out)
        }
        (BinStore::Wide(bins), 2) => add_rows::<u16, 2>(bins, matrix, stats, rows, features, out),
        (BinStore::Wide(bins), 3) => add_rows::<u16, 3>(bins, matrix, stats, rows, features, out),
        (BinStore::Wide(bins), _) => add_rows_any(bins, matrix, stats, width, rows, features, out),
    }
}

#[inline(always)]
fn add_rows<B: Copy + Into<usize>, const WIDTH: usize>(
    bins: &[B],
    matrix: &BinnedMatrix,
    stats: &[f64],
    rows: &[u32],
    features: Option<&[usize]>,
    out: &mut [f64],
) {
    let columns = matrix.features;
    let offsets = &matrix.offsets[..columns];
    let cells = unchecked_cells(out, matrix, WIDTH);
    // Below the root, a node's rows are scattered: fetch the bins and statistics of the row
    // a few iterations ahead so their cache misses overlap.
    const AHEAD: usize = 24;
    for (position, &row) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(position + AHEAD) {
            prefetch(bins, ahead as usize * columns);
            prefetch(stats, ahead as usize * WIDTH);
        }
        let row = row as usize;
        let row_stats: [f64; WIDTH] = stats[row * WIDTH..row * WIDTH + WIDTH]
            .try_into()
            .unwrap_or([0.0; WIDTH]);
        let row_bins = &bins[row * columns..(row + 1) * columns];
        let add = |offset: usize, bin: B| {
            let cell = (offset + bin.into()) * WIDTH;
            debug_assert!(cell + WIDTH <= matrix.cells() * WIDTH);
            for (lane, value) in row_stats.into_iter().enumerate() {
                // SAFETY: `cell + WIDTH <= matrix.cells() * WIDTH <= out.len()` by the
                // matrix's invariant and the assertion above, and `out` is borrowed mutably
                // for this whole function, so nothing else reads or writes it.
                unsafe { *cells.add(cell + lane) += value };
            }
        };
        for_each_feature(offsets, row_bins, features, add);
    }
}

/// `out`'s cells for unchecked adds, once it is checked to hold all of `matrix`'s cells of
/// `width` values each. The adds are unchecked because this is the hottest loop of tree
/// training and the bounds check was a third of its instructions; every cell is in range by
/// `BinnedMatrix`'s invariant (a bin of feature `f` is below `offsets[f + 1] - offsets[f]`).
fn unchecked_cells(out: &mut [f64], matrix: &BinnedMatrix, width: usize) -> *mut f64 {
    assert!(
        out.len() >= matrix.cells() * width && matrix.offsets.len() > matrix.features,
        "histogram of {} values for {} cells",
        out.len(),
        matrix.cells()
    );
    out.as_mut_ptr()
}

/// Calls `add(offset, bin)` for each feature of a row (all of them, or those in `features`)
/// with the feature's histogram offset and the row's bin.
#[inline(always)]
fn for_each_feature<B: Copy>(
    offsets: &[usize],
    row_bins: &[B],
    features: Option<&[usize]>,
    mut add: impl FnMut(usize, B),
) {
    match features {
        None => {
            for (&offset, &bin) in offsets.iter().zip(row_bins) {
                add(offset, bin);
            }
        }
        Some(list) => {
            for &feature in list {
                add(offsets[feature], row_bins[feature]);
            }
        }
    }
}

/// [`RowStats::ClassCounts`] with the histogram's width.
struct ClassCounted<'a> {
    labels: &'a [u8],
    counts: &'a [u8],
    width: usize,
}

impl ClassCounted<'_> {
    fn add_rows<B: Copy + Into<usize>>(
        &self,
        bins: &[B],
        matrix: &BinnedMatrix,
        rows: &[u32],
        features: Option<&[usize]>,
        out: &mut [f64],
    ) {
        let columns = matrix.features;
        let offsets = &matrix.offsets[..columns];
        let width = self.width.max(1);
        // Unchecked adds, as in `add_rows`; the label is held below `width` by `min`.
        let cells = unchecked_cells(out, matrix, width);
        const AHEAD: usize = 16;
        for (position, &row) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(position + AHEAD) {
                prefetch(bins, ahead as usize * columns);
            }
            let row = row as usize;
            let label = usize::from(self.labels[row]).min(width - 1);
            let count = f64::from(self.counts[row]);
            let row_bins = &bins[row * columns..(row + 1) * columns];
            let add = |offset: usize, bin: B| {
                let cell = (offset + bin.into()) * width + label;
                debug_assert!(cell < matrix.cells() * width);
                // SAFETY: `cell < matrix.cells() * width <= out.len()` by the matrix's
                // invariant, `label < width` and the assertion above; `out` is borrowed
                // mutably for this whole function.
                unsafe { *cells.add(cell) += count };
            };
            for_each_feature(offsets, row_bins, features, add);
        }
    }
}

/// A hint to load `values[at]` into the cache; no effect on results.
#[inline(always)]
pub(super) fn prefetch<T>(values: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(value) = values.get(at) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint that never faults, and SSE is part of x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, at);
}

fn add_rows_any<B: Copy + Into<usize>>(
    bins: &[B],
    matrix: &BinnedMatrix,
    stats: &[f64],
    width: usize,
    rows: &[u32],
    features: Option<&[usize]>,
    out: &mut [f64],
) {
    let columns = matrix.features;
    for (position, &row) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(position + 12) {
            prefetch(bins, ahead as usize * columns);
            prefetch(stats, ahead as usize * width);
        }
        let row = row as usize;
        let row_stats = &stats[row * width..(row + 1) * width];
        let row_bins = &bins[row * columns..(row + 1) * columns];
        let mut add = |feature: usize| {
            let cell = (matrix.offsets[feature] + row_bins[feature].into()) * width;
            for (slot, value) in out[cell..cell + width].iter_mut().zip(row_stats) {
                *slot += value;
            }
        };
        match features {
            None => (0..columns).for_each(&mut add),
            Some(list) => list.iter().for_each(|&feature| add(feature)),
        }
    }
}

/// `count` features out of `all`, chosen by `seed` (a partial Fisher-Yates shuffle), sorted.
fn sample_features(all: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..all).collect();
    for at in 0..count.min(all) {
        let pick = at + (mix(seed, at as u64) % (all - at) as u64) as usize;
        order.swap(at, pick);
    }
    order.truncate(count.min(all));
    order.sort_unstable();
    order
}

/// Grows one tree depth by depth.
pub fn grow(input: GrowInput<'_>) -> Grown {
    let GrowInput {
        matrix,
        joint,
        stats,
        row_weights,
        mut rows,
        criterion,
        limits,
        features_per_node,
        seed,
        monotone,
    } = input;
    let width = criterion.width();
    let cells = matrix.cells();
    let all_features = features_per_node >= matrix.features;
    let mut nodes: Vec<Node> = vec![Node::Leaf {
        value: Vec::new(),
        weight: 0.0,
    }];
    let totals = stats.sum_rows(&rows, width);
    // Every node's histogram of all features: by feature pairs where that pays.
    let all_cells = |rows: &[u32]| {
        let mut histogram = vec![0.0; cells * width];
        match (joint, stats) {
            (Some(joint), RowStats::Dense(dense))
                if width == 2 && joint.pays_for(matrix, rows.len()) =>
            {
                joint.build(matrix, dense, rows, &mut histogram)
            }
            _ => build_histogram(matrix, stats, width, rows, None, &mut histogram),
        }
        histogram
    };
    let root_histogram = all_features.then(|| all_cells(&rows));
    let newton_count = |rows: &[u32]| -> f64 {
        match row_weights {
            Some(weights) => rows.iter().map(|&row| weights[row as usize]).sum(),
            None => rows.len() as f64,
        }
    };
    let root_count = if criterion == Criterion::Newton {
        newton_count(&rows)
    } else {
        criterion.count(&totals)
    };
    let mut level = vec![Pending {
        node: 0,
        start: 0,
        end: rows.len(),
        depth: 0,
        count: root_count,
        totals,
        histogram: root_histogram,
        bounds: Bounds::OPEN,
    }];
    let mut leaf_ranges: Vec<(usize, usize, usize)> = Vec::new();
    let mut scratch = vec![0u32; rows.len()];
    let min_count = limits.min_instances_per_node.max(1) as f64;
    while !level.is_empty() {
        let choices: Vec<Option<Choice>> = level
            .par_iter_mut()
            .map(|pending| {
                if pending.depth >= limits.max_depth || pending.count < 2.0 * min_count {
                    return None;
                }
                let features = (!all_features).then(|| {
                    sample_features(
                        matrix.features,
                        features_per_node,
                        mix(seed, pending.node as u64),
                    )
                });
                let histogram = pending.histogram.get_or_insert_with(|| {
                    let mut histogram = vec![0.0; cells * width];
                    build_histogram(
                        matrix,
                        stats,
                        width,
                        &rows[pending.start..pending.end],
                        features.as_deref(),
                        &mut histogram,
                    );
                    histogram
                });
                best_split(
                    matrix,
                    histogram,
                    &pending.totals,
                    pending.count,
                    criterion,
                    features.as_deref(),
                    Constraints {
                        limits: &limits,
                        monotone,
                        bounds: pending.bounds,
                    },
                )
            })
            .collect();

        // Partition each splitting node's rows, each on its own disjoint slice.
        let mut slices: Vec<(&mut [u32], &mut [u32])> = Vec::with_capacity(level.len());
        let (mut rest, mut scratch_rest): (&mut [u32], &mut [u32]) = (&mut rows, &mut scratch);
        let mut consumed = 0;
        for pending in &level {
            let (_, tail) = rest.split_at_mut(pending.start - consumed);
            let (mine, tail) = tail.split_at_mut(pending.end - pending.start);
            let (_, scratch_tail) = scratch_rest.split_at_mut(pending.start - consumed);
            let (scratch_mine, scratch_tail) =
                scratch_tail.split_at_mut(pending.end - pending.start);
            slices.push((mine, scratch_mine));
            rest = tail;
            scratch_rest = scratch_tail;
            consumed = pending.end;
        }
        let left_counts: Vec<usize> = slices
            .into_par_iter()
            .zip(choices.par_iter())
            .map(|((slice, scratch), choice)| match choice {
                Some(choice) => {
                    let column = choice.feature * matrix.rows..(choice.feature + 1) * matrix.rows;
                    match &matrix.by_column {
                        BinStore::Narrow(bins) => {
                            partition(&bins[column], slice, scratch, &choice.rule)
                        }
                        BinStore::Wide(bins) => {
                            partition(&bins[column], slice, scratch, &choice.rule)
                        }
                    }
                }
                None => 0,
            })
            .collect();

        let mut next = Vec::new();
        let mut child_work = Vec::new();
        for ((pending, choice), left_count) in level.into_iter().zip(choices).zip(left_counts) {
            let Some(choice) = choice else {
                nodes[pending.node] = Node::Leaf {
                    value: criterion.bounded_leaf(&pending.totals, pending.bounds),
                    weight: pending.count,
                };
                leaf_ranges.push((pending.node, pending.start, pending.end));
                continue;
            };
            let left_node = nodes.len();
            nodes.push(Node::Leaf {
                value: Vec::new(),
                weight: 0.0,
            });
            nodes.push(Node::Leaf {
                value: Vec::new(),
                weight: 0.0,
            });
            nodes[pending.node] = Node::Split {
                feature: choice.feature as u32,
                rule: choice.rule.clone(),
                left: left_node as u32,
                right: left_node as u32 + 1,
                gain: choice.gain,
                weight: pending.count,
            };
            let middle = pending.start + left_count;
            let depth = pending.depth + 1;
            let (left_count, right_count) = if criterion == Criterion::Newton {
                (
                    newton_count(&rows[pending.start..middle]),
                    newton_count(&rows[middle..pending.end]),
                )
            } else {
                (
                    criterion.count(&choice.left),
                    criterion.count(&choice.right),
                )
            };
            let left = Pending {
                node: left_node,
                start: pending.start,
                end: middle,
                depth,
                count: left_count,
                totals: choice.left,
                histogram: None,
                bounds: choice.bounds.0,
            };
            let right = Pending {
                node: left_node + 1,
                start: middle,
                end: pending.end,
                depth,
                count: right_count,
                totals: choice.right,
                histogram: None,
                bounds: choice.bounds.1,
            };
            // Children at the depth limit are leaves and need no histogram.
            let parent_histogram = if all_features && depth < limits.max_depth {
                pending.histogram
            } else {
                None
            };
            child_work.push((next.len(), parent_histogram));
            next.push(left);
            next.push(right);
        }
        // Subtraction: build the smaller child, derive the larger from the parent.
        let built: Vec<(usize, ChildHistograms)> = child_work
            .into_par_iter()
            .map(|(at, parent)| {
                let Some(mut parent) = parent else {
                    return (at, None);
                };
                let (left, right) = (&next[at], &next[at + 1]);
                let left_smaller = left.end - left.start <= right.end - right.start;
                let small = if left_smaller { left } else { right };
                let small_histogram = all_cells(&rows[small.start..small.end]);
                for (large, small) in parent.iter_mut().zip(&small_histogram) {
                    *large -= small;
                }
                (
                    at,
                    Some(if left_smaller {
                        (small_histogram, parent)
                    } else {
                        (parent, small_histogram)
                    }),
                )
            })
            .collect();
        for (at, histograms) in built {
            if let Some((left, right)) = histograms {
                next[at].histogram = Some(left);
                next[at + 1].histogram = Some(right);
            }
        }
        level = next;
    }
    leaf_ranges.sort_unstable();
    Grown {
        tree: Tree { nodes },
        rows,
        leaves: leaf_ranges,
    }
}

/// Moves rows going left to the front of `slice`, keeping order on both sides (`scratch`, as
/// long as `slice`, holds the right side meanwhile); returns how many went left.
///
/// Branch-free: every row is written to both sides and only the side it belongs to advances.
/// A split sends about as many rows each way in no pattern a predictor can learn, so a branch
/// per row mispredicted about half the time; this was 13% of a boosting fit's CPU time.
fn partition<B: Copy + Into<usize>>(
    column: &[B],
    slice: &mut [u32],
    scratch: &mut [u32],
    rule: &Rule,
) -> usize {
    let length = slice.len();
    let (mut write, mut right) = (0, 0);
    let mut place = |slice: &mut [u32], read: usize, left: bool| {
        let row = slice[read];
        // Both `write` and `right` are at most `read`: in bounds, and no unread row is lost.
        slice[write] = row;
        scratch[right] = row;
        write += usize::from(left);
        right += usize::from(!left);
    };
    match rule {
        Rule::Threshold { bin: split, .. } => {
            let split = *split as usize;
            for read in 0..length {
                let bin: usize = column[slice[read] as usize].into();
                place(slice, read, bin <= split);
            }
        }
        Rule::Categories { .. } => {
            for read in 0..length {
                let bin: usize = column[slice[read] as usize].into();
                place(slice, read, rule.bin_goes_left(bin));
            }
        }
    }
    slice[write..].copy_from_slice(&scratch[..right]);
    write
}

/// What a node's split must respect: Spark's limits, the per-feature monotone directions and
/// the node's output range.
#[derive(Clone, Copy)]
struct Constraints<'a> {
    limits: &'a TreeLimits,
    monotone: &'a [i8],
    bounds: Bounds,
}

fn best_split(
    matrix: &BinnedMatrix,
    histogram: &[f64],
    totals: &[f64],
    node_count: f64,
    criterion: Criterion,
    features: Option<&[usize]>,
    constraints: Constraints<'_>,
) -> Option<Choice> {
    let limits = constraints.limits;
    let min_count = limits.min_instances_per_node.max(1) as f64;
    let min_info_gain = limits.min_info_gain;
    let width = criterion.width();
    let mut best: Option<Choice> = None;
    let mut right = vec![0.0; width];
    // `rule` is only built for a split that beats the best so far.
    let mut consider = |feature: usize, rule: &dyn Fn() -> Rule, left: &[f64]| {
        for ((right, total), left) in right.iter_mut().zip(totals).zip(left) {
            *right = total - left;
        }
        if criterion.child_count(left, totals, node_count) < min_count
            || criterion.child_count(&right, totals, node_count) < min_count
        {
            return;
        }
        let direction = constraints.monotone.get(feature).copied().unwrap_or(0);
        let mut bounds = (constraints.bounds, constraints.bounds);
        if direction != 0 {
            let bound = constraints.bounds;
            let (left_output, right_output) = (
                bound.clamp(criterion.output(left)),
                bound.clamp(criterion.output(&right)),
            );
            if f64::from(direction) * (right_output - left_output) < 0.0 {
                return;
            }
            let middle = (left_output + right_output) / 2.0;
            if direction > 0 {
                bounds.0.upper = bounds.0.upper.min(middle);
                bounds.1.lower = bounds.1.lower.max(middle);
            } else {
                bounds.0.lower = bounds.0.lower.max(middle);
                bounds.1.upper = bounds.1.upper.min(middle);
            }
        }
        // Open bounds (no constraint on any ancestor) give the plain gain.
        let Some(gain) =
            criterion.bounded_gain(totals, left, &right, node_count, constraints.bounds)
        else {
            return;
        };
        // Spark: a split must gain something and at least `min_info_gain`.
        if !(gain > 1e-12 && gain >= min_info_gain) {
            return;
        }
        if best.as_ref().is_none_or(|best| gain > best.gain) {
            best = Some(Choice {
                feature,
                rule: rule(),
                gain,
                left: left.to_vec(),
                right: right.clone(),
                bounds,
            });
        }
    };
    let all: Vec<usize>;
    let features = match features {
        Some(list) => list,
        None => {
            all = (0..matrix.features).collect();
            &all
        }
    };
    for &feature in features {
        let cells =
            &histogram[matrix.offsets[feature] * width..matrix.offsets[feature + 1] * width];
        match &matrix.bins[feature] {
            FeatureBins::Numeric { thresholds } => {
                // Bin 0 (missing) always goes left with the smallest values.
                let mut left = cells[..width].to_vec();
                for (split_bin, threshold) in
                    thresholds.iter().enumerate().map(|(i, t)| (i + 1, *t))
                {
                    for (sum, value) in left
                        .iter_mut()
                        .zip(&cells[split_bin * width..(split_bin + 1) * width])
                    {
                        *sum += value;
                    }
                    consider(
                        feature,
                        &|| Rule::Threshold {
                            value: threshold,
                            bin: split_bin as u16,
                        },
                        &left,
                    );
                }
            }
            FeatureBins::Categorical { categories } => {
                let mut present: Vec<(f64, usize)> = (0..*categories)
                    .filter(|&category| {
                        criterion.count(&cells[category * width..(category + 1) * width]) > 0.0
                    })
                    .map(|category| {
                        (
                            criterion
                                .category_key(&cells[category * width..(category + 1) * width]),
                            category,
                        )
                    })
                    .collect();
                present.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let mut left = vec![0.0; width];
                for prefix in 0..present.len().saturating_sub(1) {
                    let category = present[prefix].1;
                    for (sum, value) in left
                        .iter_mut()
                        .zip(&cells[category * width..(category + 1) * width])
                    {
                        *sum += value;
                    }
                    let rule = || {
                        let mut set: Vec<u32> =
                            present[..=prefix].iter().map(|(_, c)| *c as u32).collect();
                        set.sort_unstable();
                        Rule::Categories { left: set }
                    };
                    consider(feature, &rule, &left);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Tabular;

    #[test]
    fn subtraction_equals_direct_construction() {
        let table = crate::ingest::synthetic::classification(5000, 6, 2, 9);
        let matrix = BinnedMatrix::fit(&table, 32, 1);
        let stats: Vec<f64> = (0..table.rows())
            .flat_map(|row| [row as f64 * 0.001, 1.0 + (row % 3) as f64, 1.0])
            .collect();
        let rows: Vec<u32> = (0..table.rows() as u32).collect();
        let cells = matrix.cells() * 3;
        let mut parent = vec![0.0; cells];
        build_histogram(
            &matrix,
            RowStats::Dense(&stats),
            3,
            &rows,
            None,
            &mut parent,
        );
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) = rows
            .iter()
            .partition(|&&row| matrix.bin(row as usize, 2) <= 10);
        let mut left = vec![0.0; cells];
        build_histogram(
            &matrix,
            RowStats::Dense(&stats),
            3,
            &left_rows,
            None,
            &mut left,
        );
        let mut right = vec![0.0; cells];
        build_histogram(
            &matrix,
            RowStats::Dense(&stats),
            3,
            &right_rows,
            None,
            &mut right,
        );
        for ((p, l), r) in parent.iter().zip(&left).zip(&right) {
            assert!((p - l - r).abs() <= 1e-9 * p.abs().max(1.0));
        }
    }

    #[test]
    fn class_counts_build_the_dense_one_hot_histogram_exactly() {
        let table = crate::ingest::synthetic::classification(40_000, 6, 3, 5);
        let matrix = BinnedMatrix::fit(&table, 32, 1);
        let labels: Vec<u8> = table.labels.iter().map(|&label| label as u8).collect();
        let counts: Vec<u8> = (0..table.rows()).map(|row| (row % 4) as u8).collect();
        let dense: Vec<f64> = (0..table.rows())
            .flat_map(|row| {
                let mut stats = [0.0; 3];
                stats[labels[row] as usize] = f64::from(counts[row]);
                stats
            })
            .collect();
        // More rows than one chunk, scattered, with and without a feature sample.
        let rows: Vec<u32> = (0..table.rows() as u32)
            .filter(|row| row % 3 != 0)
            .collect();
        for features in [None, Some(&[1usize, 4][..])] {
            let mut expected = vec![0.0; matrix.cells() * 3];
            build_histogram(
                &matrix,
                RowStats::Dense(&dense),
                3,
                &rows,
                features,
                &mut expected,
            );
            let mut counted = vec![0.0; matrix.cells() * 3];
            let stats = RowStats::ClassCounts {
                labels: &labels,
                counts: &counts,
            };
            build_histogram(&matrix, stats, 3, &rows, features, &mut counted);
            assert_eq!(counted, expected);
            let (mut dense_totals, mut counted_totals) = (vec![0.0; 3], vec![0.0; 3]);
            for &row in &rows {
                RowStats::Dense(&dense).add_row(row as usize, &mut dense_totals);
                stats.add_row(row as usize, &mut counted_totals);
            }
            assert_eq!(counted_totals, dense_totals);
        }
    }

    #[test]
    fn partition_is_stable_on_both_sides() {
        let column: Vec<u8> = (0..200u32).map(|row| ((row * 37) % 11) as u8).collect();
        let rows: Vec<u32> = (0..200).filter(|row| row % 3 != 1).collect();
        for rule in [
            Rule::Threshold { value: 0.0, bin: 4 },
            Rule::Threshold { value: 0.0, bin: 0 },
            Rule::Threshold {
                value: 0.0,
                bin: 10,
            },
            Rule::Categories {
                left: vec![1, 5, 7],
            },
        ] {
            let mut slice = rows.clone();
            let mut scratch = vec![0; rows.len()];
            let left = partition(&column, &mut slice, &mut scratch, &rule);
            let (expected_left, expected_right): (Vec<u32>, Vec<u32>) = rows
                .iter()
                .partition(|&&row| rule.bin_goes_left(column[row as usize].into()));
            assert_eq!(left, expected_left.len(), "{rule:?}");
            assert_eq!(slice[..left], expected_left[..], "{rule:?}");
            assert_eq!(slice[left..], expected_right[..], "{rule:?}");
        }
    }

    #[test]
    fn grows_a_pure_tree_on_a_threshold_rule() {
        // 20 distinct values, each its own bin, so the rule's cut is a bin boundary.
        let x: Vec<f32> = (0..1000).map(|i| (i % 20) as f32).collect();
        let labels: Vec<f64> = x.iter().map(|&v| f64::from(v >= 13.0)).collect();
        let table = Tabular::numeric(vec!["x".into()], vec![x], labels.clone());
        let matrix = BinnedMatrix::fit(&table, 32, 1);
        let stats: Vec<f64> = labels.iter().flat_map(|&y| [1.0 - y, y]).collect();
        let grown = grow(GrowInput {
            matrix: &matrix,
            joint: None,
            stats: RowStats::Dense(&stats),
            row_weights: None,
            rows: (0..1000).collect(),
            criterion: Criterion::Gini { classes: 2 },
            limits: TreeLimits {
                max_depth: 5,
                min_instances_per_node: 1,
                min_info_gain: 0.0,
            },
            features_per_node: 1,
            monotone: &[],
            seed: 1,
        });
        for (node, rows) in grown.leaf_rows() {
            let Node::Leaf { value, .. } = &grown.tree.nodes[node] else {
                panic!("not a leaf");
            };
            assert!(value[0] == 1.0 || value[1] == 1.0, "pure leaves: {value:?}");
            assert!(!rows.is_empty());
        }
        assert_eq!(grown.leaf_rows().map(|(_, r)| r.len()).sum::<usize>(), 1000);
    }
}
