//! Metrics on the held-out split. Kept apart from the learners so tuning (later) and the
//! training job compute figures the same way.

pub mod classification;
pub mod curves;
pub mod metric;
pub mod ranking;
pub mod regression;
