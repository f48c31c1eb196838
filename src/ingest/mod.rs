//! Everything that reads data: files through polars (the only module that sees DataFrames),
//! LIBSVM through our own parser, and the built-in synthetic generators; and, being the polars
//! boundary, the tables written out through polars (factor Parquet files, job outputs).

pub mod dedupe;
pub mod ids;
pub mod libsvm;
mod numeric_text;
pub mod prepare;
pub mod reader;
pub mod remote;
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
    #[error("{}: row {row} (line {line}), column {}: {problem}: {}", path.display(), crate::text::shorten(column, 80), crate::text::shorten(value, 200))]
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
    #[error("duplicate (user, item) pairs: {reason}")]
    Duplicates { reason: String },
    /// The job file's preparation does not fit the data (a step on a missing column, bad
    /// SQL): a configuration mistake, exit code 2.
    #[error("{0}")]
    Job(crate::config::ConfigError),
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
    /// Each rating's time, when a time split asked for its column.
    pub times: Option<Vec<f64>>,
}

/// Reads ratings from the configured source, with the times in `time_column` if given.
pub fn read_ratings(
    input: &InputConfig,
    seed: u64,
    time_column: Option<&crate::config::ColumnRef>,
) -> Result<IngestedRatings, IngestError> {
    // A last group-by that sums over (user, item) is run by ingestion (see
    // `prepare::native_sum`): the reader leaves it out of the plan, and the dedupe below sums.
    let native_sum = prepare::native_sum(input, time_column);
    let rule = match native_sum {
        Some(_) => crate::config::prepare::Dedupe::Sum,
        None => input.dedupe,
    };
    let mut ingested = match &input.source {
        Source::Synthetic(spec) if !prepare::applies(input) => {
            if let Some(column) = time_column {
                return Err(IngestError::Malformed {
                    path: PathBuf::from("input.synthetic"),
                    problem: format!(
                        "split.column = {column}: synthetic ratings have no time column; use synthetic.kind = \"events\" (it has `timestamp`) or a file"
                    ),
                });
            }
            synthetic::ratings(spec, input, seed)?
        }
        _ => reader::read_ratings(input, seed, time_column, native_sum)?,
    };
    if ingested.ratings.is_empty() {
        return Err(ingested.counts.nothing_left());
    }
    dedupe::apply(&mut ingested.ratings, ingested.times.as_mut(), rule)?;
    Ok(ingested)
}

/// An input file's bytes: memory-mapped, so a large file costs page cache rather than heap
/// under `driver_memory` (an empty file has nothing to map). While mapped, a SIGBUS from the
/// file shrinking under us is reported as an input error naming it ([`crate::exec::mapped`]).
pub(crate) enum FileBytes {
    Mapped {
        map: memmap2::Mmap,
        /// Held while the map lives (see [`crate::exec::mapped`]).
        _guard: crate::exec::mapped::MappedRead,
    },
    Empty,
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped { map, .. } => map,
            FileBytes::Empty => &[],
        }
    }
}

impl FileBytes {
    /// Lets the kernel drop the mapped pages of `range` from this process; they stay in the
    /// page cache and are faulted in again if read. A file parsed in slices then holds only
    /// the slice being parsed in memory, not the whole file.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        if let FileBytes::Mapped { map, .. } = self {
            // SAFETY: the map is a read-only shared mapping of a file: dropping its pages
            // loses nothing, and a later read faults them in again from the file. A failure
            // only means the pages stay.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    range.start,
                    range.len(),
                )
            };
        }
    }
}

/// Refuses what is not a regular file before opening it: opening a FIFO blocks, and devices
/// such as `/dev/zero` never end or look empty.
pub(crate) fn check_regular(path: &Path) -> Result<(), IngestError> {
    use std::os::unix::fs::FileTypeExt;
    let metadata = std::fs::metadata(path).map_err(|error| unreadable(path, error))?;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(IngestError::Unreadable {
        path: path.to_path_buf(),
        reason: format!("it is {what}, not a regular file; inputs must be regular files"),
    })
}

/// Compressed files and UTF-16 text, told apart by their first bytes: polars would report them
/// as a missing build feature or as a bad row.
fn unsupported_encoding(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(
            "it is gzip-compressed; submit reads uncompressed files: decompress it first (gunzip -k FILE)",
        )
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(
            "it is zstd-compressed; submit reads uncompressed files: decompress it first (zstd -d FILE)",
        )
    } else if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        Some("it is UTF-16 text, not UTF-8; convert it first (iconv -f UTF-16 -t UTF-8 FILE)")
    } else {
        None
    }
}

/// The error for an input that cannot be opened or read.
pub(crate) fn unreadable(path: &Path, error: std::io::Error) -> IngestError {
    match error.kind() {
        std::io::ErrorKind::NotFound => IngestError::NotFound {
            path: path.to_path_buf(),
        },
        _ => IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        },
    }
}

pub(crate) fn read_file(path: &Path) -> Result<FileBytes, IngestError> {
    check_regular(path)?;
    let unreadable = |error| unreadable(path, error);
    let file = std::fs::File::open(path).map_err(unreadable)?;
    if file.metadata().map_err(unreadable)?.len() == 0 {
        return Ok(FileBytes::Empty);
    }
    let guard = crate::exec::mapped::reading(path);
    // SAFETY: the map is read-only and lives while the file is parsed. Another process
    // truncating the file meanwhile raises SIGBUS, which the guard turns into exit code 3.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(unreadable)?;
    if let Some(reason) = unsupported_encoding(&map) {
        return Err(IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        });
    }
    Ok(FileBytes::Mapped { map, _guard: guard })
}

/// The blake3 hash of `bytes` as hex; large inputs are hashed on the thread pool (the same
/// hash, a 1.8 GB file in a third of the time on two cores).
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    if bytes.len() < 1 << 24 {
        return blake3::hash(bytes).to_hex().to_string();
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(bytes);
    hasher.finalize().to_hex().to_string()
}

pub(crate) fn fingerprint(source: &Path, bytes: &[u8], rows: u64) -> Fingerprint {
    Fingerprint {
        source: remote::source_name(source),
        blake3: content_hash(bytes),
        bytes: bytes.len() as u64,
        rows,
    }
}
