//! What the version's report plots, computed from the test predictions once at training time
//! and kept in `curves.json` (so `models report` can draw and compare versions later without the
//! data): ROC and precision-recall curves, calibration, score histograms, a sample of
//! predicted-versus-actual points and residuals, and activity distributions. Point lists are
//! thinned to a few hundred points; the curves' areas are in metrics.json, from every row.

use serde_json::{Value, json};

/// Points kept per curve.
const CURVE_POINTS: usize = 200;

/// Keeps about `keep` points, evenly by index, always the first and the last.
fn thin<T: Clone>(points: &[T], keep: usize) -> Vec<T> {
    if points.len() <= keep {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (keep - 1) as f64;
    (0..keep)
        .map(|index| points[((index as f64 * step).round() as usize).min(points.len() - 1)].clone())
        .collect()
}

/// Points of a curve, `(x, y)`.
pub type Curve = Vec<(f64, f64)>;

/// ROC `(false positive rate, true positive rate)` and precision-recall `(recall, precision)`
/// points for scores of the positive class, thresholds from high to low (ties together).
pub fn binary_curves(scores: &[f64], positive: &[bool]) -> (Curve, Curve) {
    let positives = positive.iter().filter(|p| **p).count() as f64;
    let negatives = scores.len() as f64 - positives;
    let mut roc = vec![(0.0, 0.0)];
    let mut pr = Vec::new();
    for (true_positives, false_positives) in
        crate::eval::classification::threshold_counts(scores, positive)
    {
        roc.push((
            false_positives / negatives.max(1.0),
            true_positives / positives.max(1.0),
        ));
        pr.push((
            true_positives / positives.max(1.0),
            true_positives / (true_positives + false_positives),
        ));
    }
    (thin(&roc, CURVE_POINTS), thin(&pr, CURVE_POINTS))
}

/// Reliability: per probability decile, (mean predicted, fraction positive, rows).
pub fn calibration(scores: &[f64], positive: &[bool], bins: usize) -> Vec<(f64, f64, u64)> {
    let mut sums = vec![(0.0, 0.0, 0u64); bins];
    for (score, positive) in scores.iter().zip(positive) {
        let bin = ((score * bins as f64).floor().max(0.0) as usize).min(bins - 1);
        sums[bin].0 += score;
        sums[bin].1 += f64::from(u8::from(*positive));
        sums[bin].2 += 1;
    }
    sums.into_iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(score, hits, count)| (score / count as f64, hits / count as f64, count))
        .collect()
}

/// The report data of a classifier: for two classes the curves, calibration and the positive
/// class's score histogram per true class; for more, each class's probability histogram among
/// the rows of that class and the others.
pub fn classification(probabilities: &[Vec<f64>], labels: &[f64], names: &[String]) -> Value {
    let classes = names.len();
    let bins = 20;
    if classes == 2 {
        let scores: Vec<f64> = probabilities.iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = labels.iter().map(|label| *label >= 0.5).collect();
        let (roc, pr) = binary_curves(&scores, &positive);
        let by_class: Vec<Value> = (0..2)
            .map(|class| {
                let values: Vec<f64> = scores
                    .iter()
                    .zip(&positive)
                    .filter(|(_, positive)| usize::from(**positive) == class)
                    .map(|(score, _)| *score)
                    .collect();
                json!({"class": names[class], "counts": crate::report::chart::bin_counts(&values, 0.0, 1.0, bins)})
            })
            .collect();
        return json!({
            "kind": "binary",
            "positive": names[1],
            "roc": roc,
            "pr": pr,
            "calibration": calibration(&scores, &positive, 10),
            "score_histograms": by_class,
        });
    }
    let by_class: Vec<Value> = (0..classes)
        .map(|class| {
            let values: Vec<f64> = probabilities
                .iter()
                .zip(labels)
                .filter(|(_, label)| **label as usize == class)
                .map(|(p, _)| p.get(class).copied().unwrap_or(0.0))
                .collect();
            json!({"class": names[class], "counts": crate::report::chart::bin_counts(&values, 0.0, 1.0, bins)})
        })
        .collect();
    json!({"kind": "multiclass", "score_histograms": by_class})
}

/// The report data of a regressor: up to 500 (predicted, actual) points and the residuals'
/// histogram over their 1st-99th percentile range.
pub fn regression(predicted: &[f64], actual: &[f64]) -> Value {
    let pairs: Vec<(f64, f64)> = predicted
        .iter()
        .copied()
        .zip(actual.iter().copied())
        .collect();
    let mut residuals: Vec<f64> = pairs.iter().map(|(p, y)| y - p).collect();
    residuals.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        residuals
            .get(((residuals.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (low, high) = (quantile(0.01), quantile(0.99));
    let (low, high) = if high > low {
        (low, high)
    } else {
        (low - 1.0, high + 1.0)
    };
    json!({
        "kind": "regression",
        "scatter": thin(&pairs, 500),
        "residuals": {"low": low, "high": high, "counts": crate::report::chart::bin_counts(&residuals, low, high, 30)},
    })
}

/// How many rows have 1, 2-3, 4-7, ... entries: (bin's lowest count, rows), power-of-two bins,
/// for log-log plots of user activity and item popularity.
pub fn log_histogram(counts: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut bins: Vec<u64> = Vec::new();
    for count in counts.filter(|count| *count > 0) {
        let bin = 63 - count.leading_zeros() as usize;
        if bins.len() <= bin {
            bins.resize(bin + 1, 0);
        }
        bins[bin] += 1;
    }
    bins.into_iter()
        .enumerate()
        .filter(|(_, rows)| *rows > 0)
        .map(|(bin, rows)| (1u64 << bin, rows))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_has_a_corner_roc_and_full_precision() {
        let scores = [0.9, 0.8, 0.3, 0.1];
        let positive = [true, true, false, false];
        let (roc, pr) = binary_curves(&scores, &positive);
        assert_eq!(
            roc,
            vec![(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(pr[1], (1.0, 1.0));
        let buckets = calibration(&scores, &positive, 10);
        assert_eq!(buckets.len(), 4);
        assert_eq!(
            log_histogram([1, 2, 3, 4, 9].into_iter()),
            vec![(1, 1), (2, 2), (4, 1), (8, 1)]
        );
    }
}
