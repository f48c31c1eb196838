//! Everything that reads data: files through polars (the only module that sees DataFrames),
//! LIBSVM through our own parser, and the built-in synthetic generators; and, being the polars
//! boundary, the tables written out through polars (factor Parquet files, job outputs).

pub mod ids;
pub mod libsvm;
pub mod reader;
pub mod synthetic;
pub mod table;
pub mod tables;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{InputConfig, Source};
use crate::dataset::Ratings;

/// Stream of `sample_fraction`, apart from the split's: the same rows are kept for files and
/// synthetic sources alike.
pub(crate) const SAMPLE_STREAM: u64 = 0x5341_4D50_4C45;

/// A problem with the input data (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("input file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    #[error("{}: row {row} (line {line}), column {column}: {problem}: {value}", path.display())]
    BadValue {
        path: PathBuf,
        row: u64,
        line: u64,
        column: String,
        value: String,
        problem: String,
    },
    #[error("{}: no column {column}{hint}; the file has: {available}", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
        hint: String,
    },
    #[error("no data to train on: {reason}")]
    Empty { reason: String },
}

/// Content hash and row count of one input, recorded in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fingerprint {
    pub source: String,
    pub blake3: String,
    pub bytes: u64,
    pub rows: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IngestCounts {
    pub rows_read: u64,
    pub rows_dropped_null: u64,
    pub rows_sampled_out: u64,
}

impl IngestCounts {
    /// The error for a source that left no rows, saying where they went.
    pub fn nothing_left(&self) -> IngestError {
        IngestError::Empty {
            reason: format!(
                "{} rows read, {} dropped for missing values, {} left out by sample_fraction",
                self.rows_read, self.rows_dropped_null, self.rows_sampled_out
            ),
        }
    }
}

pub struct IngestedRatings {
    pub ratings: Ratings,
    pub fingerprints: Vec<Fingerprint>,
    pub counts: IngestCounts,
}

/// Reads ratings from the configured source.
pub fn read_ratings(input: &InputConfig, seed: u64) -> Result<IngestedRatings, IngestError> {
    let ingested = match &input.source {
        Source::Synthetic(spec) => synthetic::ratings(spec, input, seed)?,
        Source::Files(files) => reader::read_ratings(files, input, seed)?,
    };
    if ingested.ratings.is_empty() {
        return Err(ingested.counts.nothing_left());
    }
    Ok(ingested)
}

/// An input file's bytes: memory-mapped, so a large file costs page cache rather than heap
/// under `driver_memory` (an empty file has nothing to map).
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Empty => &[],
        }
    }
}

pub(crate) fn read_file(path: &Path) -> Result<FileBytes, IngestError> {
    if path.is_dir() {
        return Err(IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: "it is a directory, not a file".to_owned(),
        });
    }
    let unreadable = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => IngestError::NotFound {
            path: path.to_path_buf(),
        },
        _ => IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        },
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    if file.metadata().map_err(unreadable)?.len() == 0 {
        return Ok(FileBytes::Empty);
    }
    // SAFETY: the map is read-only and lives while the file is parsed; like every reader that
    // maps its input (polars included), it assumes no other process truncates the file meanwhile.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(unreadable)?;
    Ok(FileBytes::Mapped(map))
}

pub(crate) fn fingerprint(source: &Path, bytes: &[u8], rows: u64) -> Fingerprint {
    Fingerprint {
        source: source.display().to_string(),
        blake3: blake3::hash(bytes).to_hex().to_string(),
        bytes: bytes.len() as u64,
        rows,
    }
}
