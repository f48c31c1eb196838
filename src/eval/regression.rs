//! Regression metrics (RMSE, MAE) over predictions that may be missing (cold start).

use serde::Serialize;

/// Metrics over the rows that got a prediction; `missing` counts those that did not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegressionMetrics {
    /// `None` when no row could be predicted (serialized as null, never NaN).
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
    pub predicted: u64,
    pub missing: u64,
}

/// `pairs` yields (prediction, truth); a `None` prediction is a missing one.
pub fn evaluate(pairs: impl Iterator<Item = (Option<f32>, f32)>) -> RegressionMetrics {
    let mut squared = 0.0f64;
    let mut absolute = 0.0f64;
    let mut predicted = 0u64;
    let mut missing = 0u64;
    for (prediction, truth) in pairs {
        match prediction {
            Some(value) => {
                let error = value as f64 - truth as f64;
                squared += error * error;
                absolute += error.abs();
                predicted += 1;
            }
            None => missing += 1,
        }
    }
    let mean = |sum: f64| (predicted > 0).then(|| sum / predicted as f64);
    RegressionMetrics {
        rmse: mean(squared).map(f64::sqrt),
        mae: mean(absolute),
        predicted,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // errors 1, -2 and one missing: RMSE = sqrt((1 + 4) / 2), MAE = 1.5
        let metrics = evaluate([(Some(2.0), 1.0), (Some(1.0), 3.0), (None, 5.0)].into_iter());
        assert!((metrics.rmse.unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(metrics.mae, Some(1.5));
        assert_eq!((metrics.predicted, metrics.missing), (2, 1));
        assert_eq!(evaluate(std::iter::empty()).rmse, None);
    }
}
