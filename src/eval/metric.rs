//! Evaluators by name, as Spark's `metricName`s: what each measures, which direction is
//! better, and which kind of model it applies to. Tuning and the train jobs pick figures by
//! these names.

use serde::Serialize;

use super::classification::ClassificationMetrics;
use super::ranking::RankingMetrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Rmse,
    Mse,
    Mae,
    R2,
    Accuracy,
    F1,
    WeightedPrecision,
    WeightedRecall,
    AucRoc,
    AucPr,
    LogLoss,
    PrecisionAtK,
    RecallAtK,
    NdcgAtK,
    MapAtK,
}

/// What a metric scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Regression,
    Classification,
    Ranking,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::Rmse,
        Metric::Mse,
        Metric::Mae,
        Metric::R2,
        Metric::Accuracy,
        Metric::F1,
        Metric::WeightedPrecision,
        Metric::WeightedRecall,
        Metric::AucRoc,
        Metric::AucPr,
        Metric::LogLoss,
        Metric::PrecisionAtK,
        Metric::RecallAtK,
        Metric::NdcgAtK,
        Metric::MapAtK,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Rmse => "rmse",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::WeightedPrecision => "weighted_precision",
            Metric::WeightedRecall => "weighted_recall",
            Metric::AucRoc => "auc_roc",
            Metric::AucPr => "auc_pr",
            Metric::LogLoss => "log_loss",
            Metric::PrecisionAtK => "precision_at_k",
            Metric::RecallAtK => "recall_at_k",
            Metric::NdcgAtK => "ndcg_at_k",
            Metric::MapAtK => "map_at_k",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }

    pub fn names() -> String {
        Metric::ALL.map(Metric::name).join(", ")
    }

    /// Errors and losses are better lower; everything else higher.
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Metric::Rmse | Metric::Mse | Metric::Mae | Metric::LogLoss
        )
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::Rmse | Metric::Mse | Metric::Mae | Metric::R2 => MetricKind::Regression,
            Metric::PrecisionAtK | Metric::RecallAtK | Metric::NdcgAtK | Metric::MapAtK => {
                MetricKind::Ranking
            }
            _ => MetricKind::Classification,
        }
    }

    /// Whether `candidate` beats `best` in this metric's direction (ties do not).
    pub fn better(self, candidate: f64, best: f64) -> bool {
        if self.higher_is_better() {
            candidate > best
        } else {
            candidate < best
        }
    }

    pub fn of_classification(self, metrics: &ClassificationMetrics) -> Option<f64> {
        match self {
            Metric::Accuracy => Some(metrics.accuracy),
            Metric::F1 => Some(metrics.f1),
            Metric::WeightedPrecision => Some(metrics.weighted_precision),
            Metric::WeightedRecall => Some(metrics.weighted_recall),
            Metric::AucRoc => metrics.auc_roc,
            Metric::AucPr => metrics.auc_pr,
            Metric::LogLoss => Some(metrics.log_loss),
            _ => None,
        }
    }

    pub fn of_ranking(self, metrics: &RankingMetrics) -> Option<f64> {
        match self {
            Metric::PrecisionAtK => Some(metrics.precision_at_k),
            Metric::RecallAtK => Some(metrics.recall_at_k),
            Metric::NdcgAtK => Some(metrics.ndcg_at_k),
            Metric::MapAtK => Some(metrics.map_at_k),
            _ => None,
        }
    }

    pub fn of_regression(self, metrics: &RegressionScores) -> Option<f64> {
        match self {
            Metric::Rmse => Some(metrics.rmse),
            Metric::Mse => Some(metrics.mse),
            Metric::Mae => Some(metrics.mae),
            Metric::R2 => metrics.r2,
            _ => None,
        }
    }
}

/// Spark's RegressionEvaluator figures over (prediction, truth) pairs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegressionScores {
    pub rmse: f64,
    pub mse: f64,
    pub mae: f64,
    /// 1 - SS_res / SS_tot; `None` when the truth is constant.
    pub r2: Option<f64>,
}

pub fn regression_scores(pairs: &[(f64, f64)]) -> RegressionScores {
    regression_scores_weighted(pairs, None)
}

/// [`regression_scores`] with each pair counted by its weight (Spark's `weightCol`).
pub fn regression_scores_weighted(
    pairs: &[(f64, f64)],
    weights: Option<&[f64]>,
) -> RegressionScores {
    let weight = |row: usize| weights.map_or(1.0, |weights| weights[row]);
    let count = match weights {
        Some(weights) => weights.iter().sum::<f64>(),
        None => pairs.len() as f64,
    };
    let count = if count > 0.0 { count } else { 1.0 };
    let mean = pairs
        .iter()
        .enumerate()
        .map(|(row, (_, truth))| weight(row) * truth)
        .sum::<f64>()
        / count;
    let (mut squared, mut absolute, mut total) = (0.0, 0.0, 0.0);
    for (row, (prediction, truth)) in pairs.iter().enumerate() {
        squared += weight(row) * (prediction - truth).powi(2);
        absolute += weight(row) * (prediction - truth).abs();
        total += weight(row) * (truth - mean).powi(2);
    }
    RegressionScores {
        rmse: (squared / count).sqrt(),
        mse: squared / count,
        mae: absolute / count,
        r2: (total > 0.0).then(|| 1.0 - squared / total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{classification, ranking};

    // Expected values computed with scikit-learn 1.9.1 on these literals:
    //   mean_squared_error, mean_absolute_error, r2_score,
    //   accuracy_score, f1_score/precision_score/recall_score(average="weighted"),
    //   roc_auc_score, log_loss; and by hand for the ranking figures.
    const TRUTH: [f64; 6] = [3.0, -0.5, 2.0, 7.0, 4.2, 0.0];
    const PREDICTED: [f64; 6] = [2.5, 0.0, 2.0, 8.0, 4.0, -0.3];

    #[test]
    fn regression_matches_scikit_learn() {
        let pairs: Vec<(f64, f64)> = PREDICTED.iter().copied().zip(TRUTH).collect();
        let scores = regression_scores(&pairs);
        assert!(
            (scores.mse - 0.27166666666666667).abs() < 1e-12,
            "{scores:?}"
        );
        assert!((scores.rmse - 0.27166666666666667f64.sqrt()).abs() < 1e-12);
        assert!((scores.mae - 0.4166666666666667).abs() < 1e-12);
        assert!((scores.r2.unwrap() - 0.9579987116169207).abs() < 1e-12);
    }

    #[test]
    fn classification_matches_scikit_learn() {
        // Three classes; probabilities per row.
        let probabilities = vec![
            vec![0.7, 0.2, 0.1],
            vec![0.2, 0.5, 0.3],
            vec![0.1, 0.3, 0.6],
            vec![0.4, 0.4, 0.2],
            vec![0.3, 0.3, 0.4],
            vec![0.05, 0.9, 0.05],
            vec![0.6, 0.1, 0.3],
        ];
        let labels = [0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0];
        let metrics = classification::evaluate(&probabilities, &labels, 3);
        assert!(
            (metrics.accuracy - 0.5714285714285714).abs() < 1e-12,
            "{metrics:?}"
        );
        assert!((metrics.f1 - 0.6).abs() < 1e-12, "{metrics:?}");
        assert!((metrics.weighted_precision - 0.6666666666666666).abs() < 1e-12);
        assert!((metrics.weighted_recall - 0.5714285714285714).abs() < 1e-12);
        assert!((metrics.log_loss - 0.7128920863497888).abs() < 1e-12);
        // Binary: scikit-learn's roc_auc_score and average_precision differ for PR (step vs
        // trapezoid), so AUC-ROC only.
        let scores = [0.1, 0.4, 0.35, 0.8, 0.65, 0.2];
        let positive = [false, false, true, true, true, false];
        let (roc, _) = classification::binary_areas(&scores, &positive);
        assert!((roc.unwrap() - 0.888888888888889).abs() < 1e-12);
    }

    #[test]
    fn ranking_by_hand() {
        // One user: recommended [1, 2, 3, 4], relevant {1, 3, 9}, k = 4.
        let metrics = ranking::evaluate(4, [(&[1u32, 2, 3, 4][..], &[1u32, 3, 9][..])].into_iter());
        assert!((metrics.precision_at_k - 0.5).abs() < 1e-12);
        assert!((metrics.recall_at_k - 2.0 / 3.0).abs() < 1e-12);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((metrics.ndcg_at_k - dcg / ideal).abs() < 1e-12);
        assert!((metrics.map_at_k - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        for metric in [Metric::Rmse, Metric::LogLoss] {
            assert!(!metric.higher_is_better());
        }
        assert!(Metric::AucRoc.better(0.9, 0.8) && Metric::Rmse.better(0.8, 0.9));
        assert_eq!(Metric::parse("ndcg_at_k"), Some(Metric::NdcgAtK));
    }
}
