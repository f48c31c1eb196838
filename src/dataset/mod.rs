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

/// Keeps the values whose `keep` is true, in place and in order: each value is copied to the
/// write position and the position advances only when it is kept, so there is no branch per
/// value (a split's test rows are a seeded fifth of them, which a predictor cannot learn) and
/// no second array. Values beyond `keep` are dropped.
pub fn retain_copies<T: Copy>(values: &mut Vec<T>, keep: &[bool]) {
    let length = values.len().min(keep.len());
    let mut write = 0;
    for (read, &kept) in keep[..length].iter().enumerate() {
        // `write <= read`: nothing unread is overwritten.
        values[write] = values[read];
        write += usize::from(kept);
    }
    values.truncate(write);
    values.shrink_to_fit();
}
pub use tabular::Tabular;
