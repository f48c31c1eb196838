//! In-memory data sets the algorithms train on: flat arrays, dense 0-based indices, no polars.

pub mod ratings;
pub mod split;
pub mod tabular;

pub use ratings::{Csr, Ids, Ratings};

/// The values whose `keep` flag is true, in order. The vector's memory is reused and then
/// trimmed: keeping a fifth of a large vector must not hold on to all of it.
pub fn keep_where<T>(values: Vec<T>, keep: &[bool]) -> Vec<T> {
    if keep.len() == values.len() && keep.iter().all(|kept| *kept) {
        return values;
    }
    let mut kept: Vec<T> = values
        .into_iter()
        .zip(keep)
        .filter(|(_, kept)| **kept)
        .map(|(value, _)| value)
        .collect();
    kept.shrink_to_fit();
    kept
}
pub use tabular::Tabular;
