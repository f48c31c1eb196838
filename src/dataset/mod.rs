//! In-memory data sets the algorithms train on: flat arrays, dense 0-based indices, no polars.

pub mod ratings;
pub mod split;
pub mod tabular;

pub use ratings::{Csr, Ids, Ratings};
pub use tabular::Tabular;
