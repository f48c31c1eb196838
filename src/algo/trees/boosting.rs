//! Gradient boosting: binary logistic, squared and absolute loss with one tree per iteration,
//! and multiclass softmax with one tree per class per iteration (LightGBM's gradients and
//! hessians; Spark has no multiclass boosting). Every leaf takes a Newton step `-G / H` times
//! `step_size`; absolute loss refits leaves to the median residual.

use rayon::prelude::*;

use super::binning::BinnedMatrix;
use super::learner::{self, Criterion, RowStats};
use super::{
    Ensemble, FEATURE_STREAM, Growth, Loss, Node, ROW_SAMPLE_STREAM, Tree, TreeModel, TreeParams,
    TreeTask, Validation, sigmoid,
};
use crate::dataset::Tabular;
use crate::dataset::split::{mix, unit};

/// Rows per parallel chunk of the per-row passes; fixed, and sums over rows are summed chunk
/// by chunk in order, so they do not depend on the thread count.
const CHUNK: usize = 4096;

fn loss_value(loss: Loss, score: f64, label: f64) -> f64 {
    match loss {
        Loss::Logistic => {
            // log(1 + exp(-z)) with z = score for y = 1 and -score for y = 0, stably.
            let z = if label > 0.5 { score } else { -score };
            if z > 0.0 {
                (-z).exp().ln_1p()
            } else {
                -z + z.exp().ln_1p()
            }
        }
        Loss::Squared => (score - label) * (score - label),
        Loss::Absolute => (score - label).abs(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

pub(super) fn train_boosting(
    table: &Tabular,
    growth: &Growth<'_>,
    params: &TreeParams,
    validation: Option<Validation<'_>>,
    base: Option<&TreeModel>,
    progress: &(dyn Fn(usize, &str) + Sync),
) -> TreeModel {
    let matrix = growth.matrix;
    let loss = match params.task {
        TreeTask::Classification => Loss::Logistic,
        TreeTask::Regression if params.loss_type == Loss::Logistic => Loss::Squared,
        TreeTask::Regression => params.loss_type,
    };
    let labels = &table.labels;
    let rows = table.rows();
    let weights = table.weights.as_deref();
    let init_score = match (base, loss) {
        (Some(base), _) => base.init_score,
        (None, Loss::Logistic) => {
            let positive = weighted_mean(labels, weights);
            let positive = positive.clamp(1e-15, 1.0 - 1e-15);
            (positive / (1.0 - positive)).ln()
        }
        (None, Loss::Squared) => weighted_mean(labels, weights),
        (None, Loss::Absolute) => match weights {
            Some(weights) => weighted_median(
                labels
                    .iter()
                    .copied()
                    .zip(weights.iter().copied())
                    .collect(),
            ),
            None => median(&mut labels.clone()),
        },
    };
    let mut scores = match base {
        Some(base) => continued_scores(base, table, 1),
        None => vec![init_score; rows],
    };
    let validation_matrix = validation
        .as_ref()
        .map(|validation| BinnedMatrix::with_bins(validation.table, matrix.bins.clone()));
    let mut validation_scores = match (base, &validation) {
        (Some(base), Some(validation)) => continued_scores(base, validation.table, 1),
        _ => vec![init_score; validation.as_ref().map_or(0, |v| v.table.rows())],
    };
    let mut stats = vec![0.0; rows * 2];
    // A continued model keeps the base's trees and numbers the new ones after them.
    let mut trees: Vec<Tree> = base.map_or_else(Vec::new, |base| base.trees.clone());
    let offset = trees.len();
    let mut validation_loss = base.map_or_else(Vec::new, |base| base.validation_loss.clone());
    let mut train_loss = base.map_or_else(Vec::new, |base| base.train_loss.clone());
    let mut best_error = f64::INFINITY;
    let mut best_count = offset;
    // Unweighted logistic boosting takes each iteration's training loss in the next
    // iteration's gradient pass, from the same scores and the same `exp`: a pass of its own
    // over the rows was 9% of a fit's CPU time. `unrecorded` says the scores hold a tree whose
    // loss is not yet in `train_loss`.
    let fused = loss == Loss::Logistic && weights.is_none();
    let mut unrecorded = false;
    for local in 0..params.max_iter {
        let iteration = offset + local;
        let stream = mix(mix(params.seed, ROW_SAMPLE_STREAM), iteration as u64);
        let partial_losses: Vec<f64> = stats
            .par_chunks_mut(2 * CHUNK)
            .enumerate()
            .map(|(chunk, out)| {
                // Whole pairs, assigned as arrays: a slice copy per row was a call to memmove.
                let pairs = out.as_chunks_mut::<2>().0;
                let first = chunk * CHUNK;
                if fused {
                    let (scores, labels) = (&scores[first..], &labels[first..]);
                    return logistic_chunk::<true>(scores, labels, pairs);
                }
                for (local, slot) in pairs.iter_mut().enumerate() {
                    let row = first + local;
                    let (score, label) = (scores[row], labels[row]);
                    let (gradient, hessian) = match loss {
                        Loss::Logistic => {
                            let p = sigmoid(score);
                            (p - label, (p * (1.0 - p)).max(1e-16))
                        }
                        Loss::Squared => (score - label, 1.0),
                        Loss::Absolute => ((score - label).signum(), 1.0),
                    };
                    match weights {
                        Some(weights) => *slot = [gradient * weights[row], hessian * weights[row]],
                        None => *slot = [gradient, hessian],
                    }
                }
                0.0
            })
            .collect();
        if unrecorded {
            train_loss.push(partial_losses.iter().sum::<f64>() / rows.max(1) as f64);
            unrecorded = false;
        }
        let sampled = sampled_rows(params, stream, rows);
        let sampled_all = sampled.len() == rows;
        let grown = growth.grow(
            RowStats::Dense(&stats),
            sampled,
            Criterion::Newton,
            mix(mix(params.seed, FEATURE_STREAM), iteration as u64),
        );
        let learner::Grown {
            tree: mut grown_tree,
            rows: grouped,
            leaves,
        } = grown;
        for &(node, start, end) in &leaves {
            let leaf_rows = &grouped[start..end];
            if let Node::Leaf { value, .. } = &mut grown_tree.nodes[node] {
                let residual = |row: u32| labels[row as usize] - scores[row as usize];
                let step = if loss == Loss::Absolute {
                    match weights {
                        Some(weights) => weighted_median(
                            leaf_rows
                                .iter()
                                .map(|&row| (residual(row), weights[row as usize]))
                                .collect(),
                        ),
                        None => median(
                            &mut leaf_rows
                                .iter()
                                .map(|&row| residual(row))
                                .collect::<Vec<_>>(),
                        ),
                    }
                } else {
                    value[0]
                };
                value[0] = step * params.step_size;
            }
        }
        let tree = grown_tree;
        if sampled_all {
            add_by_leaf(&mut scores, 1, 0, &tree, &leaves, &grouped);
        } else {
            add_tree(&mut scores, 1, 0, &tree, matrix);
        }
        if fused {
            unrecorded = true;
        } else {
            train_loss.push(mean_loss(&scores, weights, |row, score| {
                loss_value(loss, score, labels[row])
            }));
        }
        let mut detail = String::new();
        if let (Some(validation), Some(validation_matrix)) = (&validation, &validation_matrix) {
            add_tree(&mut validation_scores, 1, 0, &tree, validation_matrix);
            let validation_labels = &validation.table.labels;
            let error = match validation.table.weights.as_deref() {
                Some(weights) => mean_loss(&validation_scores, Some(weights), |row, score| {
                    loss_value(loss, score, validation_labels[row])
                }),
                None => {
                    validation_scores
                        .iter()
                        .zip(validation_labels)
                        .map(|(&score, &label)| loss_value(loss, score, label))
                        .sum::<f64>()
                        / validation_scores.len().max(1) as f64
                }
            };
            validation_loss.push(error);
            detail = format!("validation loss {error:.5}");
            trees.push(tree);
            progress(local + 1, &detail);
            // Spark's rule: stop once the improvement is below tol x max(error, 0.01).
            if best_error - error < params.validation_tol * error.max(0.01) {
                break;
            }
            if error < best_error {
                best_error = error;
                best_count = iteration + 1;
            }
            continue;
        }
        trees.push(tree);
        best_count = trees.len();
        progress(local + 1, &detail);
    }
    if unrecorded {
        train_loss.push(mean_logistic_loss(&scores, labels));
    }
    let trees_grown = base.map_or(0, |base| base.trees_grown - base.trees.len()) + trees.len();
    trees.truncate(best_count.max(1).min(trees_grown));
    TreeModel {
        ensemble: Ensemble::Gbt,
        task: params.task,
        classes: if params.task == TreeTask::Classification {
            2
        } else {
            1
        },
        loss: Some(loss),
        init_score,
        class_init_scores: Vec::new(),
        trees,
        trees_grown,
        validation_loss,
        train_loss,
    }
}

/// Rows whose `1 + exp(-|z|)` factors are multiplied before one logarithm: each factor is at
/// most 2, so the product stays below 2^32.
const LOG_GROUP: usize = 32;

/// The mean logistic loss `log(1 + exp(-z))` of unweighted rows, for the training curve. It is
/// `max(-z, 0) + log(1 + exp(-|z|))`, and the logarithms of 32 rows are taken as the logarithm
/// of their product: one `ln` per 32 rows instead of a `ln_1p` per row, which was 11% of a
/// boosting fit's CPU time. The result differs from the per-row sum only in the last digits
/// (a factor `1 + e` rounds away `e` below 2^-53, where a row's loss is itself below that).
fn mean_logistic_loss(scores: &[f64], labels: &[f64]) -> f64 {
    let partials: Vec<f64> = scores
        .par_chunks(CHUNK)
        .zip(labels.par_chunks(CHUNK))
        .map(|(scores, labels)| logistic_chunk::<false>(scores, labels, &mut []))
        .collect();
    partials.iter().sum::<f64>() / scores.len().max(1) as f64
}

/// The summed logistic loss of a chunk's rows (as [`mean_logistic_loss`] takes it) and, with
/// `PAIRS`, their gradient and hessian written to `pairs` (one per row; `scores` and `labels`
/// may run longer). One `e = exp(-|score|)` serves both: the loss factor is `1 + e` and the
/// probability `1 / (1 + e)`, or `e / (1 + e)` for a negative score, which is also exact
/// where `1 / (1 + exp(-score))` loses digits to a large `exp`.
fn logistic_chunk<const PAIRS: bool>(
    scores: &[f64],
    labels: &[f64],
    pairs: &mut [[f64; 2]],
) -> f64 {
    let rows = if PAIRS { pairs.len() } else { scores.len() };
    let (scores, labels) = (&scores[..rows], &labels[..rows]);
    let mut linear = 0.0;
    let mut logarithms = 0.0;
    for (group, (scores, labels)) in scores
        .chunks(LOG_GROUP)
        .zip(labels.chunks(LOG_GROUP))
        .enumerate()
    {
        let mut product = 1.0;
        for (at, (&score, &label)) in scores.iter().zip(labels).enumerate() {
            let e = (-score.abs()).exp();
            let factor = 1.0 + e;
            if PAIRS {
                let p = if score >= 0.0 {
                    1.0 / factor
                } else {
                    e / factor
                };
                pairs[group * LOG_GROUP + at] = [p - label, (p * (1.0 - p)).max(1e-16)];
            }
            let z = if label > 0.5 { score } else { -score };
            linear += (-z).max(0.0);
            product *= factor;
        }
        logarithms += f64::ln(product);
    }
    linear + logarithms
}

/// The (weighted) mean of `loss(row, score)` over rows, summed in fixed chunks in order (the
/// same sum for any thread count).
fn mean_loss(
    scores: &[f64],
    weights: Option<&[f64]>,
    loss: impl Fn(usize, f64) -> f64 + Sync,
) -> f64 {
    let partials: Vec<f64> = scores
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(chunk, scores)| {
            let rows = scores.iter().enumerate().map(|(local, &score)| {
                let row = chunk * CHUNK + local;
                (row, loss(row, score))
            });
            match weights {
                Some(weights) => rows.map(|(row, value)| value * weights[row]).sum::<f64>(),
                None => rows.map(|(_, value)| value).sum::<f64>(),
            }
        })
        .collect();
    let total = match weights {
        Some(weights) => weights.iter().sum::<f64>(),
        None => scores.len() as f64,
    };
    partials.iter().sum::<f64>() / if total > 0.0 { total } else { 1.0 }
}

/// The weighted mean of `values` (the plain mean without weights).
fn weighted_mean(values: &[f64], weights: Option<&[f64]>) -> f64 {
    match weights {
        Some(weights) => {
            let total: f64 = weights.iter().sum();
            values.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>()
                / total.max(f64::MIN_POSITIVE)
        }
        None => values.iter().sum::<f64>() / values.len().max(1) as f64,
    }
}

/// The median of `(value, weight)` pairs: the median of the values repeated by integer
/// weights (the mean of the two middle ones for an even total), extended to any weights.
fn weighted_median(mut pairs: Vec<(f64, f64)>) -> f64 {
    pairs.retain(|(_, weight)| *weight > 0.0);
    if pairs.is_empty() {
        return 0.0;
    }
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|(_, weight)| weight).sum();
    // The value at position `at` of the expanded, sorted list: the first whose cumulative
    // weight passes it.
    let value_at = |at: f64| {
        let mut cumulative = 0.0;
        for &(value, weight) in &pairs {
            cumulative += weight;
            if cumulative > at {
                return value;
            }
        }
        pairs[pairs.len() - 1].0
    };
    (value_at(total / 2.0 - 0.5) + value_at(total / 2.0)) / 2.0
}

/// Adds a new tree's leaf values to slot `slot` of each row's `width` scores, from the rows
/// the learner grouped by leaf (every row was in the tree's sample).
///
/// In parallel over fixed ranges of rows: each leaf's rows are ascending (the learner's
/// partition is stable), so the part of a leaf inside a range is found by binary search, and
/// every row still gets its one add.
fn add_by_leaf(
    scores: &mut [f64],
    width: usize,
    slot: usize,
    tree: &Tree,
    leaves: &[(usize, usize, usize)],
    rows: &[u32],
) {
    let leaf_values: Vec<(f64, &[u32])> = leaves
        .iter()
        .filter_map(|&(node, start, end)| match &tree.nodes[node] {
            Node::Leaf { value, .. } => Some((value[0], &rows[start..end])),
            Node::Split { .. } => None,
        })
        .collect();
    let part_rows = 4 * CHUNK;
    scores
        .par_chunks_mut(part_rows * width)
        .enumerate()
        .for_each(|(part, scores)| {
            let first = (part * part_rows) as u32;
            let end = first + (scores.len() / width) as u32;
            for &(value, leaf_rows) in &leaf_values {
                let from = leaf_rows.partition_point(|&row| row < first);
                let to = leaf_rows.partition_point(|&row| row < end);
                for &row in &leaf_rows[from..to] {
                    scores[(row - first) as usize * width + slot] += value;
                }
            }
        });
}

/// Adds a tree's leaf values to slot `slot` of each row's `width` scores, walking the tree for
/// every row of `matrix`.
fn add_tree(scores: &mut [f64], width: usize, slot: usize, tree: &Tree, matrix: &BinnedMatrix) {
    scores
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(row, score)| score[slot] += tree.leaf_binned(matrix, row)[0]);
}

/// The rows a boosting iteration fits: a Bernoulli(`subsampling_rate`) sample, or all.
fn sampled_rows(params: &TreeParams, stream: u64, rows: usize) -> Vec<u32> {
    if params.subsampling_rate < 1.0 {
        (0..rows as u32)
            .filter(|&row| unit(stream, u64::from(row)) < params.subsampling_rate)
            .collect()
    } else {
        (0..rows as u32).collect()
    }
}

/// The base model's raw scores (`width` per row) on `table`, summed in the order training
/// sums them, so that continuing a model equals having grown all its trees in one run.
fn continued_scores(base: &TreeModel, table: &Tabular, width: usize) -> Vec<f64> {
    let mut scores = vec![0.0; table.rows() * width];
    scores
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(row, out)| {
            if width == 1 {
                out[0] = base.init_score;
            } else {
                out.copy_from_slice(&base.class_init_scores);
            }
            for (index, tree) in base.trees.iter().enumerate() {
                out[index % width] += tree.leaf(|feature| table.features[feature][row])[0];
            }
        });
    scores
}

/// One parallel pass over the rows of multiclass boosting: adds each class's `deltas` (its
/// new tree's value per row; none before the first iteration) to the scores, writes the class
/// probabilities the next trees are grown on, and returns the summed softmax loss of the new
/// scores, summed in fixed chunks in order (the same sum for any thread count).
fn advance_softmax(
    scores: &mut [f64],
    probabilities: &mut [f64],
    deltas: &[&[f64]],
    labels: &[usize],
    weights: Option<&[f64]>,
) -> f64 {
    let classes = scores.len() / labels.len().max(1);
    let losses: Vec<f64> = scores
        .par_chunks_mut(classes * CHUNK)
        .zip(probabilities.par_chunks_mut(classes * CHUNK))
        .enumerate()
        .map(|(chunk, (scores, out))| {
            let mut loss = 0.0;
            let rows = scores
                .chunks_exact_mut(classes)
                .zip(out.chunks_exact_mut(classes));
            for (local, (scores, out)) in rows.enumerate() {
                let row = chunk * CHUNK + local;
                for (score, delta) in scores.iter_mut().zip(deltas) {
                    *score += delta[row];
                }
                out.copy_from_slice(scores);
                let row_loss = super::softmax(out) - scores[labels[row]];
                loss += weights.map_or(row_loss, |weights| row_loss * weights[row]);
            }
            loss
        })
        .collect();
    losses.iter().sum()
}

/// `-ln softmax(scores)[label]`, computed as log-sum-exp minus the label's score.
fn softmax_loss(scores: &[f64], label: usize) -> f64 {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = scores.iter().map(|score| (score - max).exp()).sum();
    max + total.ln() - scores[label]
}

/// Multiclass boosting with the softmax loss: each iteration computes every row's class
/// probabilities once, then grows one tree per class on `(p - y, K / (K - 1) * p (1 - p))`
/// (LightGBM's gradients and hessians; the factor makes the Newton step the one of the full
/// multinomial hessian's diagonal scaled to K - 1 free scores). The class trees of an iteration
/// are independent of each other and grow side by side. Scores start at the log of each
/// class's share of the training rows, as LightGBM's `boost_from_average`.
pub(super) fn train_softmax(
    table: &Tabular,
    growth: &Growth<'_>,
    params: &TreeParams,
    classes: usize,
    validation: Option<Validation<'_>>,
    base: Option<&TreeModel>,
    progress: &(dyn Fn(usize, &str) + Sync),
) -> TreeModel {
    let matrix = growth.matrix;
    let rows = table.rows();
    let labels: Vec<usize> = table.labels.iter().map(|&label| label as usize).collect();
    let weights = table.weights.as_deref();
    let total_weight = weights.map_or(rows as f64, |weights| weights.iter().sum());
    let class_init_scores: Vec<f64> = match base {
        Some(base) => base.class_init_scores.clone(),
        None => {
            let mut counts = vec![0.0f64; classes];
            labels
                .iter()
                .enumerate()
                .for_each(|(row, &label)| counts[label] += table.weight(row));
            counts
                .iter()
                .map(|&count| (count / total_weight.max(1.0)).max(1e-15).ln())
                .collect()
        }
    };
    let factor = classes as f64 / (classes as f64 - 1.0);
    let mut scores: Vec<f64> = match base {
        Some(base) => continued_scores(base, table, classes),
        None => class_init_scores
            .iter()
            .copied()
            .cycle()
            .take(rows * classes)
            .collect(),
    };
    let validation_matrix = validation
        .as_ref()
        .map(|validation| BinnedMatrix::with_bins(validation.table, matrix.bins.clone()));
    let validation_rows = validation.as_ref().map_or(0, |v| v.table.rows());
    let mut validation_scores: Vec<f64> = match (base, &validation) {
        (Some(base), Some(validation)) => continued_scores(base, validation.table, classes),
        _ => class_init_scores
            .iter()
            .copied()
            .cycle()
            .take(validation_rows * classes)
            .collect(),
    };
    let mut probabilities = vec![0.0; rows * classes];
    let mut trees: Vec<Tree> = base.map_or_else(Vec::new, |base| base.trees.clone());
    let offset = trees.len() / classes;
    let mut validation_loss = base.map_or_else(Vec::new, |base| base.validation_loss.clone());
    let mut train_loss = base.map_or_else(Vec::new, |base| base.train_loss.clone());
    let mut best_error = f64::INFINITY;
    let mut best_iterations = offset;
    advance_softmax(&mut scores, &mut probabilities, &[], &labels, weights);
    for local in 0..params.max_iter {
        let iteration = offset + local;
        let stream = mix(mix(params.seed, ROW_SAMPLE_STREAM), iteration as u64);
        let sampled = sampled_rows(params, stream, rows);
        let sampled_all = sampled.len() == rows;
        let grown: Vec<(Tree, Vec<f64>)> = (0..classes)
            .into_par_iter()
            .map(|class| {
                let mut stats = vec![0.0; rows * 2];
                for (row, slot) in stats.chunks_exact_mut(2).enumerate() {
                    let p = probabilities[row * classes + class];
                    let y = f64::from(u8::from(labels[row] == class));
                    let weight = weights.map_or(1.0, |weights| weights[row]);
                    slot[0] = (p - y) * weight;
                    slot[1] = (factor * p * (1.0 - p)).max(1e-16) * weight;
                }
                let mut grown = growth.grow(
                    RowStats::Dense(&stats),
                    sampled.clone(),
                    Criterion::Newton,
                    mix(
                        mix(params.seed, FEATURE_STREAM),
                        (iteration * classes + class) as u64,
                    ),
                );
                for node in &mut grown.tree.nodes {
                    if let Node::Leaf { value, .. } = node {
                        value[0] *= params.step_size;
                    }
                }
                // The class's addition to every row's score, made here, beside the other
                // classes' trees, rather than one class after another below.
                let mut delta = vec![0.0; rows];
                if sampled_all {
                    add_by_leaf(&mut delta, 1, 0, &grown.tree, &grown.leaves, &grown.rows);
                } else {
                    add_tree(&mut delta, 1, 0, &grown.tree, matrix);
                }
                (grown.tree, delta)
            })
            .collect();
        let deltas: Vec<&[f64]> = grown.iter().map(|(_, delta)| delta.as_slice()).collect();
        let loss = advance_softmax(&mut scores, &mut probabilities, &deltas, &labels, weights);
        train_loss.push(loss / total_weight.max(f64::MIN_POSITIVE));
        for (class, (tree, _)) in grown.into_iter().enumerate() {
            if let Some(validation_matrix) = &validation_matrix {
                add_tree(
                    &mut validation_scores,
                    classes,
                    class,
                    &tree,
                    validation_matrix,
                );
            }
            trees.push(tree);
        }
        let Some(validation) = &validation else {
            best_iterations = iteration + 1;
            progress(local + 1, "");
            continue;
        };
        let validation_weight = (0..validation_rows)
            .map(|row| validation.table.weight(row))
            .sum::<f64>();
        let error = validation_scores
            .chunks_exact(classes)
            .zip(&validation.table.labels)
            .enumerate()
            .map(|(row, (scores, &label))| {
                softmax_loss(scores, label as usize) * validation.table.weight(row)
            })
            .sum::<f64>()
            / validation_weight.max(f64::MIN_POSITIVE);
        validation_loss.push(error);
        progress(local + 1, &format!("validation loss {error:.5}"));
        // The binary rule: stop once the improvement is below tol x max(error, 0.01).
        if best_error - error < params.validation_tol * error.max(0.01) {
            break;
        }
        if error < best_error {
            best_error = error;
            best_iterations = iteration + 1;
        }
    }
    let trees_grown = base.map_or(0, |base| base.trees_grown - base.trees.len()) + trees.len();
    trees.truncate(best_iterations.max(1) * classes);
    TreeModel {
        ensemble: Ensemble::Gbt,
        task: TreeTask::Classification,
        classes,
        loss: Some(Loss::Logistic),
        init_score: 0.0,
        class_init_scores,
        trees,
        trees_grown,
        validation_loss,
        train_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_logistic_loss_equals_the_per_row_mean() {
        // Scores from confident to wrong, both labels, and a length that leaves partial groups.
        let scores: Vec<f64> = (0..10_007)
            .map(|row| ((row * 7919) % 2001) as f64 / 40.0 - 25.0)
            .collect();
        let labels: Vec<f64> = (0..scores.len())
            .map(|row| (row % 3 == 0) as u8 as f64)
            .collect();
        let expected = scores
            .iter()
            .zip(&labels)
            .map(|(&score, &label)| loss_value(Loss::Logistic, score, label))
            .sum::<f64>()
            / scores.len() as f64;
        let grouped = mean_logistic_loss(&scores, &labels);
        assert!(
            (grouped - expected).abs() <= 1e-12 * expected,
            "{grouped} against {expected}"
        );
        assert_eq!(mean_logistic_loss(&[], &[]), 0.0);
    }

    #[test]
    fn training_loss_is_each_prefix_models_log_loss() {
        let table = crate::ingest::synthetic::classification(3000, 5, 2, 4);
        let mut params =
            super::super::tests::params(super::super::Ensemble::Gbt, TreeTask::Classification);
        params.max_iter = 12;
        let model = super::super::train(&table, &params, None, &|_, _| {}).unwrap();
        assert_eq!(model.train_loss.len(), 12);
        for (trees, &reported) in model.train_loss.iter().enumerate() {
            let mut prefix = model.clone();
            prefix.trees.truncate(trees + 1);
            let log_loss = prefix
                .predict(&table)
                .iter()
                .zip(&table.labels)
                .map(|(p, &label)| -p[label as usize].ln())
                .sum::<f64>()
                / table.rows() as f64;
            assert!(
                (reported - log_loss).abs() <= 1e-9 * log_loss,
                "after {} trees: {reported} against {log_loss}",
                trees + 1
            );
        }
    }
}
