//! Classification metrics with Spark's definitions: accuracy, weighted F1 (Spark's `f1`),
//! log-loss, and for two classes the areas under the ROC and precision-recall curves
//! (BinaryClassificationMetrics: ties share one curve point, PR starts at recall 0 with the
//! first point's precision, trapezoids in between).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    pub f1: f64,
    /// Precision and recall per class, weighted by the class's share of rows (Spark's
    /// `weightedPrecision` / `weightedRecall`).
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub log_loss: f64,
    pub auc_roc: Option<f64>,
    pub auc_pr: Option<f64>,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

/// `probabilities[i]` are row i's class probabilities, `labels[i]` its class.
pub fn evaluate(
    probabilities: &[Vec<f64>],
    labels: &[f64],
    classes: usize,
) -> ClassificationMetrics {
    evaluate_weighted(probabilities, labels, None, classes)
}

/// [`evaluate`] with each row counted by its weight (Spark's evaluators with `weightCol`); the
/// confusion matrix still counts rows.
pub fn evaluate_weighted(
    probabilities: &[Vec<f64>],
    labels: &[f64],
    weights: Option<&[f64]>,
    classes: usize,
) -> ClassificationMetrics {
    let weight = |row: usize| weights.map_or(1.0, |weights| weights[row]);
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut weighted = vec![vec![0.0f64; classes]; classes];
    let mut log_loss = 0.0;
    let mut total = 0.0;
    for (row, (probability, &label)) in probabilities.iter().zip(labels).enumerate() {
        let truth = label as usize;
        // Ties go to the lower class index, as Spark's argmax.
        let predicted = (0..classes).fold(0, |best, class| {
            if probability[class] > probability[best] {
                class
            } else {
                best
            }
        });
        confusion[truth][predicted] += 1;
        weighted[truth][predicted] += weight(row);
        total += weight(row);
        log_loss -= weight(row) * probability[truth].clamp(1e-15, 1.0).ln();
    }
    let rows = if total > 0.0 { total } else { 1.0 };
    let correct: f64 = (0..classes).map(|class| weighted[class][class]).sum();
    let (mut f1, mut weighted_precision, mut weighted_recall) = (0.0, 0.0, 0.0);
    for (class, row) in weighted.iter().enumerate() {
        let truth_count: f64 = row.iter().sum();
        let predicted_count: f64 = weighted.iter().map(|truth| truth[class]).sum();
        let hits = row[class];
        let precision = if predicted_count > 0.0 {
            hits / predicted_count
        } else {
            0.0
        };
        let recall = if truth_count > 0.0 {
            hits / truth_count
        } else {
            0.0
        };
        let f = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let share = truth_count / rows;
        f1 += f * share;
        weighted_precision += precision * share;
        weighted_recall += recall * share;
    }
    let (auc_roc, auc_pr) = if classes == 2 {
        let scores: Vec<f64> = probabilities.iter().map(|p| p[1]).collect();
        let positives: Vec<bool> = labels.iter().map(|&label| label > 0.5).collect();
        binary_areas_weighted(&scores, &positives, weights)
    } else {
        (None, None)
    };
    ClassificationMetrics {
        accuracy: correct / rows,
        f1,
        weighted_precision,
        weighted_recall,
        log_loss: log_loss / rows,
        auc_roc,
        auc_pr,
        confusion,
    }
}

/// Positive and negative rows at or above each distinct score, from the highest score down
/// (tied scores form one threshold): the sweep behind ROC and precision-recall.
pub fn threshold_counts(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    threshold_weights(scores, positive, None)
}

/// [`threshold_counts`] with each row counted by its weight.
fn threshold_weights(
    scores: &[f64],
    positive: &[bool],
    weights: Option<&[f64]>,
) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_positive, mut false_positive) = (0.0, 0.0);
    let mut counts = Vec::new();
    let mut at = 0;
    while at < order.len() {
        let score = scores[order[at]];
        while at < order.len() && scores[order[at]] == score {
            let weight = weights.map_or(1.0, |weights| weights[order[at]]);
            if positive[order[at]] {
                true_positive += weight;
            } else {
                false_positive += weight;
            }
            at += 1;
        }
        counts.push((true_positive, false_positive));
    }
    counts
}

/// Areas under ROC and PR for scores of positive/negative rows; `None` without both kinds.
pub fn binary_areas(scores: &[f64], positive: &[bool]) -> (Option<f64>, Option<f64>) {
    binary_areas_weighted(scores, positive, None)
}

/// [`binary_areas`] with each row counted by its weight.
fn binary_areas_weighted(
    scores: &[f64],
    positive: &[bool],
    weights: Option<&[f64]>,
) -> (Option<f64>, Option<f64>) {
    let weight = |row: usize| weights.map_or(1.0, |weights| weights[row]);
    let total_positive: f64 = (0..positive.len())
        .filter(|&row| positive[row])
        .map(weight)
        .sum();
    let total_negative: f64 = (0..positive.len())
        .filter(|&row| !positive[row])
        .map(weight)
        .sum();
    if total_positive == 0.0 || total_negative == 0.0 {
        return (None, None);
    }
    let (mut roc, mut pr) = (0.0, 0.0);
    let (mut previous_tpr, mut previous_fpr) = (0.0, 0.0);
    let mut previous_recall = 0.0;
    let mut previous_precision: Option<f64> = None;
    for (true_positive, false_positive) in threshold_weights(scores, positive, weights) {
        let (tpr, fpr) = (
            true_positive / total_positive,
            false_positive / total_negative,
        );
        roc += (fpr - previous_fpr) * (tpr + previous_tpr) / 2.0;
        let precision = true_positive / (true_positive + false_positive);
        let recall = tpr;
        let start_precision = previous_precision.unwrap_or(precision);
        pr += (recall - previous_recall) * (precision + start_precision) / 2.0;
        previous_tpr = tpr;
        previous_fpr = fpr;
        previous_recall = recall;
        previous_precision = Some(precision);
    }
    (Some(roc), Some(pr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_weights_count_as_repeated_rows() {
        let probabilities: Vec<Vec<f64>> = [0.9, 0.8, 0.7, 0.4, 0.3]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        let labels = [1.0, 0.0, 1.0, 0.0, 1.0];
        let weights = [2.0, 1.0, 0.0, 3.0, 1.0];
        let weighted = evaluate_weighted(&probabilities, &labels, Some(&weights), 2);
        let mut repeated_probabilities = Vec::new();
        let mut repeated_labels = Vec::new();
        for row in 0..5 {
            for _ in 0..weights[row] as usize {
                repeated_probabilities.push(probabilities[row].clone());
                repeated_labels.push(labels[row]);
            }
        }
        let repeated = evaluate(&repeated_probabilities, &repeated_labels, 2);
        for (a, b) in [
            (weighted.accuracy, repeated.accuracy),
            (weighted.f1, repeated.f1),
            (weighted.log_loss, repeated.log_loss),
            (weighted.auc_roc.unwrap(), repeated.auc_roc.unwrap()),
            (weighted.auc_pr.unwrap(), repeated.auc_pr.unwrap()),
        ] {
            assert!((a - b).abs() < 1e-12, "{weighted:?} vs {repeated:?}");
        }
    }

    #[test]
    fn hand_computed_values() {
        // scores 0.9(+) 0.8(-) 0.7(+) 0.4(-): ROC pairs ranked right 3 of 4 -> 0.75.
        let probabilities: Vec<Vec<f64>> = [0.9, 0.8, 0.7, 0.4]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        let labels = [1.0, 0.0, 1.0, 0.0];
        let metrics = evaluate(&probabilities, &labels, 2);
        assert!((metrics.auc_roc.unwrap() - 0.75).abs() < 1e-12);
        // PR points: (0,1) (0.5,1) (0.5,0.5) (1,0.667) (1,0.5): 0.5*1 + 0.5*(0.5+0.6667)/2
        assert!((metrics.auc_pr.unwrap() - (0.5 + 0.5 * (0.5 + 2.0 / 3.0) / 2.0)).abs() < 1e-12);
        assert_eq!(metrics.accuracy, 0.75);
        assert_eq!(metrics.confusion, vec![vec![1, 1], vec![0, 2]]);
        // class 0: precision 1, recall 0.5, F 2/3; class 1: precision 2/3, recall 1, F 0.8
        assert!((metrics.f1 - (0.5 * 2.0 / 3.0 + 0.5 * 0.8)).abs() < 1e-12);
        assert!((metrics.weighted_precision - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        assert!((metrics.weighted_recall - 0.75).abs() < 1e-12);
        let expected_log_loss = -(0.9f64.ln() + 0.2f64.ln() + 0.7f64.ln() + 0.6f64.ln()) / 4.0;
        assert!((metrics.log_loss - expected_log_loss).abs() < 1e-12);
    }

    #[test]
    fn ties_share_a_point() {
        let (roc, _) = binary_areas(&[0.5, 0.5], &[true, false]);
        assert_eq!(roc, Some(0.5));
    }
}
