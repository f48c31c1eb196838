//! Labelled feature tables (from files, LIBSVM or the synthetic generators), stored column by
//! column, which is the layout the tree learners bin.

/// What a feature column holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FeatureKind {
    /// Numbers; NaN is a missing value.
    Numeric,
    /// Category indices `0..names.len()` stored as f32, in StringIndexer's order.
    Categorical { names: Vec<String> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tabular {
    pub feature_names: Vec<String>,
    pub kinds: Vec<FeatureKind>,
    /// `features[j][i]` is feature `j` of row `i`.
    pub features: Vec<Vec<f32>>,
    /// Regression targets, or class indices `0..classes` for classification.
    pub labels: Vec<f64>,
    /// Original class labels, index = class, when the label column was indexed.
    pub label_names: Option<Vec<String>>,
    /// Sample weight of each row (`input.columns.weight`); `None`: every row weighs 1.
    pub weights: Option<Vec<f64>>,
}

impl Tabular {
    /// A table of numeric features only.
    pub fn numeric(feature_names: Vec<String>, features: Vec<Vec<f32>>, labels: Vec<f64>) -> Self {
        Tabular {
            kinds: vec![FeatureKind::Numeric; features.len()],
            feature_names,
            features,
            labels,
            label_names: None,
            weights: None,
        }
    }

    /// Row `row`'s sample weight.
    pub fn weight(&self, row: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |weights| weights[row])
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn columns(&self) -> usize {
        self.features.len()
    }

    /// Classes of a classification table: the highest class index + 1, or the number of
    /// original labels when those are longer (a part of a table may lack the rarest classes).
    pub fn classes(&self) -> usize {
        (self.labels.iter().fold(0.0f64, |a, &b| a.max(b)) as usize + 1)
            .max(self.label_names.as_ref().map_or(0, Vec::len))
    }

    /// The rows whose `keep` flag is true, in order.
    pub fn select(&self, keep: &[bool]) -> Tabular {
        fn pick<T: Copy>(values: &[T], keep: &[bool]) -> Vec<T> {
            values
                .iter()
                .zip(keep)
                .filter(|(_, kept)| **kept)
                .map(|(value, _)| *value)
                .collect()
        }
        Tabular {
            feature_names: self.feature_names.clone(),
            kinds: self.kinds.clone(),
            features: self
                .features
                .iter()
                .map(|column| pick(column, keep))
                .collect(),
            labels: pick(&self.labels, keep),
            label_names: self.label_names.clone(),
            weights: self.weights.as_ref().map(|weights| pick(weights, keep)),
        }
    }
}
