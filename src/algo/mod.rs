//! The learners. They see flat arrays from `dataset` and typed parameters, never TOML or
//! DataFrames.

pub mod als;
pub mod cpu;
pub mod trees;
