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
    let mut sums = ErrorSums::default();
    for (prediction, truth) in pairs {
        sums.add(prediction, truth);
    }
    sums.metrics()
}

/// The running sums behind [`RegressionMetrics`], so that parts of a large evaluation can be
/// summed apart and merged in a fixed order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSums {
    squared: f64,
    absolute: f64,
    predicted: u64,
    missing: u64,
}

impl ErrorSums {
    #[inline]
    pub fn add(&mut self, prediction: Option<f32>, truth: f32) {
        match prediction {
            Some(value) => {
                let error = value as f64 - truth as f64;
                self.squared += error * error;
                self.absolute += error.abs();
                self.predicted += 1;
            }
            None => self.missing += 1,
        }
    }

    pub fn merge(self, other: ErrorSums) -> ErrorSums {
        ErrorSums {
            squared: self.squared + other.squared,
            absolute: self.absolute + other.absolute,
            predicted: self.predicted + other.predicted,
            missing: self.missing + other.missing,
        }
    }

    pub fn metrics(self) -> RegressionMetrics {
        let predicted = self.predicted;
        let mean = |sum: f64| (predicted > 0).then(|| sum / predicted as f64);
        RegressionMetrics {
            rmse: mean(self.squared).map(f64::sqrt),
            mae: mean(self.absolute),
            predicted,
            missing: self.missing,
        }
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
