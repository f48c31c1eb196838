//! Labelled feature tables (from LIBSVM files or the synthetic generators), stored column by
//! column, which is the layout the tree learners bin and scan.

#[derive(Clone, Debug, PartialEq)]
pub struct Tabular {
    pub feature_names: Vec<String>,
    /// `features[j][i]` is feature `j` of row `i`.
    pub features: Vec<Vec<f32>>,
    pub labels: Vec<f64>,
}

impl Tabular {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn columns(&self) -> usize {
        self.features.len()
    }
}
