//! Who trains a train job: this process (the native pass in [`crate::job`]) or Spark MLlib on a
//! cluster through spark-submit ([`spark`]). Both publish the same version layout.

pub mod spark;
pub mod spark_trees;
