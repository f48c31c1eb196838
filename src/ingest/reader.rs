//! Reads rating files through polars: CSV/TSV/text (any separator, Spark's `::` included),
//! Parquet, NDJSON and Arrow IPC, then pulls the mapped columns into flat arrays.
//!
//! The fast path lets polars infer column types. When polars rejects a file, it is read again
//! with every column as text and parsed here, so that the error names the exact row and value
//! (and a file that merely defeated type inference still loads).

use std::io::Cursor;
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use super::ids::{self, RawIds};
use super::numeric_text;
use super::{
    Fingerprint, IngestCounts, IngestError, IngestedRatings, SAMPLE_STREAM, fingerprint, read_file,
};
use crate::config::{ColumnRef, FileSource, Format, InputConfig, NullPolicy, Source};
use crate::dataset::split;
use crate::dataset::{Ids, Ratings, keep_where};

/// Reads ratings, and the times in `time_column` when a time split needs them; with
/// `native_sum`, the preparation's last step is left out and the rating column is that value
/// (see [`super::prepare::native_sum`]), for the caller to sum.
pub fn read_ratings(
    input: &InputConfig,
    seed: u64,
    time_column: Option<&ColumnRef>,
    native_sum: Option<polars::prelude::Expr>,
) -> Result<IngestedRatings, IngestError> {
    let columns = &input.columns;
    if let Some(read) = read_numeric_text(input, time_column)? {
        return Ok(read);
    }
    let mut users: Option<RawIds> = None;
    let mut items: Option<RawIds> = None;
    let mut rating: Vec<f32> = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let mut used = vec![&columns.user, &columns.item, &columns.rating];
    used.extend(time_column);
    let (fingerprints, counts) = for_each_frame(
        input,
        seed,
        &used,
        true,
        native_sum,
        Some(&columns.rating),
        &mut |located, frame, keep| {
            if let Some(time_column) = time_column {
                let found = find_column(located.path, &frame, time_column)?;
                let values = keep_where(time_values(located, found)?, keep);
                times.reserve_exact(located.rows_to_come());
                times.extend(values);
            }
            // Take the three columns out and free each once converted: the frame is the
            // largest thing ingestion holds.
            let user_column = find_column(located.path, &frame, &columns.user)?.clone();
            let item_column = find_column(located.path, &frame, &columns.item)?.clone();
            let rating_column = find_column(located.path, &frame, &columns.rating)?.clone();
            drop(frame);
            let expected = located.rows_to_come();
            append_ids(
                &mut users,
                filter(id_values(located, &user_column)?, keep),
                expected,
            );
            drop(user_column);
            append_ids(
                &mut items,
                filter(id_values(located, &item_column)?, keep),
                expected,
            );
            drop(item_column);
            let values = rating_values(located, &rating_column, keep)?;
            drop(rating_column);
            rating.reserve_exact(located.rows_to_come());
            rating.extend(keep_where(values, keep));
            Ok(())
        },
    )?;
    let (user_ids, user) = ids::index(users.unwrap_or(RawIds::Integer(Vec::new())));
    let (item_ids, item) = ids::index(items.unwrap_or(RawIds::Integer(Vec::new())));
    Ok(IngestedRatings {
        ratings: Ratings {
            user_ids,
            item_ids,
            user,
            item,
            rating,
        },
        fingerprints,
        counts,
        times: time_column.map(|_| times),
    })
}

/// Ratings through [`numeric_text`] when the input is plain delimited files read whole (no
/// preparation, and so no native sum; no time column, `limit` or `sample_fraction`) and every
/// file fits its grammar; `None` sends the input through polars.
fn read_numeric_text(
    input: &InputConfig,
    time_column: Option<&ColumnRef>,
) -> Result<Option<IngestedRatings>, IngestError> {
    let Source::Files(files) = &input.source else {
        return Ok(None);
    };
    if !files.format.is_delimited_text()
        || super::prepare::applies(input)
        || time_column.is_some()
        || input.limit.is_some()
        || input.sample_fraction < 1.0
    {
        return Ok(None);
    }
    let columns = &input.columns;
    let Some((read, fingerprints)) = numeric_text::read(
        &files.paths,
        files.separator.as_deref(),
        files.header,
        [&columns.user, &columns.item, &columns.rating],
    )?
    else {
        return Ok(None);
    };
    let counts = IngestCounts {
        rows_read: read.users.len() as u64,
        ..IngestCounts::default()
    };
    let (user_ids, user) = ids::index(RawIds::Small(read.users));
    let (item_ids, item) = ids::index(RawIds::Small(read.items));
    Ok(Some(IngestedRatings {
        ratings: Ratings {
            user_ids,
            item_ids,
            user,
            item,
            rating: read.ratings,
        },
        fingerprints,
        counts,
        times: None,
    }))
}

/// A time column as seconds since the Unix epoch (dates, datetimes, text dates), or as its
/// own numbers; a value that is neither names its row.
pub(crate) fn time_values(located: &Located<'_>, column: &Column) -> Result<Vec<f64>, IngestError> {
    let path = located.path;
    let series = column.as_materialized_series();
    // Dates and datetimes are numbers underneath (days, or units since the epoch).
    let per_second = match series.dtype() {
        DataType::Datetime(unit, _) => Some(match unit {
            TimeUnit::Nanoseconds => 1e9,
            TimeUnit::Microseconds => 1e6,
            TimeUnit::Milliseconds => 1e3,
        }),
        DataType::Date => Some(1.0 / 86_400.0),
        numeric if numeric.is_primitive_numeric() => Some(1.0),
        _ => None,
    };
    if let Some(per_second) = per_second {
        let cast = series
            .to_physical_repr()
            .cast(&DataType::Float64)
            .map_err(|error| polars_error(path, error))?;
        let values = cast.f64().map_err(|error| polars_error(path, error))?;
        return Ok(values
            .iter()
            .map(|value| value.unwrap_or(0.0) / per_second)
            .collect());
    }
    let text = series
        .cast(&DataType::String)
        .map_err(|error| polars_error(path, error))?;
    let values = text.str().map_err(|error| polars_error(path, error))?;
    let mut times = Vec::with_capacity(values.len());
    for (row, value) in values.iter().enumerate() {
        let Some(value) = value else {
            times.push(0.0);
            continue;
        };
        let parsed = crate::text::parse_timestamp(value)
            .or_else(|| value.trim().parse::<f64>().ok().filter(|n| n.is_finite()));
        match parsed {
            Some(time) => times.push(time),
            None => {
                return Err(located.bad(
                    row,
                    column,
                    format!("{value:?}"),
                    "the split column must hold times: a date (2026-11-01), a date and time (2026-11-01 12:00:00, RFC 3339) or a number",
                ));
            }
        }
    }
    Ok(times)
}

/// Converts delimited text held in memory (header `user,item,rating`-style, any of the
/// separators the reader sniffs) to ratings, the same way a file is read: what the CSV row
/// conversion fuzz target drives. Returns the number of ratings.
pub fn ratings_from_text(bytes: &[u8]) -> Result<usize, IngestError> {
    let path = Path::new("fuzz-input.csv");
    let files = FileSource {
        paths: vec![path.to_path_buf()],
        format: Format::Text,
        separator: None,
        header: true,
        format_inferred: false,
    };
    let columns = [
        ColumnRef::Position(0),
        ColumnRef::Position(1),
        ColumnRef::Position(2),
    ];
    let (users, _, ratings) =
        columns_of(path, bytes, &files, [&columns[0], &columns[1], &columns[2]])?;
    let (_, indexed) = ids::index(users);
    Ok(indexed.len().min(ratings.len()))
}

/// The user, item and rating columns of one delimited file held whole, with every row kept.
fn columns_of(
    path: &Path,
    bytes: &[u8],
    files: &FileSource,
    columns: [&ColumnRef; 3],
) -> Result<(RawIds, RawIds, Vec<f32>), IngestError> {
    let frame = read_frame(path, bytes, files, None, Some(columns[2]))?;
    let located = Located {
        path,
        header_lines: u64::from(files.header),
        first_row: 0,
        file_rows: 0,
    };
    let keep = vec![true; frame.height()];
    let users = id_values(&located, find_column(path, &frame, columns[0])?)?;
    let items = id_values(&located, find_column(path, &frame, columns[1])?)?;
    let ratings = rating_values(&located, find_column(path, &frame, columns[2])?, &keep)?;
    Ok((users, items, ratings))
}

/// Reads only id columns (users to recommend for, or (user, item) pairs to score), with the
/// same null policy, `limit` and `sample_fraction` as ratings; one id list per column.
pub fn read_id_columns(
    input: &InputConfig,
    seed: u64,
    wanted: &[&ColumnRef],
) -> Result<(Vec<Ids>, IngestCounts), IngestError> {
    let mut columns: Vec<Option<RawIds>> = wanted.iter().map(|_| None).collect();
    let (_, counts) = for_each_frame(
        input,
        seed,
        wanted,
        true,
        None,
        None,
        &mut |located, frame, keep| {
            for (target, column) in columns.iter_mut().zip(wanted) {
                let found = find_column(located.path, &frame, column)?;
                append_ids(
                    target,
                    filter(id_values(located, found)?, keep),
                    located.rows_to_come(),
                );
            }
            Ok(())
        },
    )?;
    Ok((
        columns
            .into_iter()
            .map(|column| column.unwrap_or(RawIds::Integer(Vec::new())).into_ids())
            .collect(),
        counts,
    ))
}

/// Appends `more` to `all`, first making room for `expected` more ids (see
/// [`Located::rows_to_come`]).
fn append_ids(all: &mut Option<RawIds>, more: RawIds, expected: usize) {
    match all {
        Some(all) => {
            all.reserve_exact(expected);
            all.extend(more);
        }
        None => {
            let mut more = more;
            more.reserve_exact(expected.saturating_sub(more.len()));
            *all = Some(more);
        }
    }
}

/// Where a frame came from, to name file, row and line in errors.
pub(crate) struct Located<'a> {
    pub(crate) path: &'a Path,
    header_lines: u64,
    /// Rows of the file before this frame (a Parquet file is handed on in slices).
    first_row: u64,
    /// Rows a file read in slices hands on in all (this frame's and the rest), so whoever
    /// collects them can size its arrays once rather than doubling them slice by slice; 0 when
    /// the frame is the whole file (its arrays are taken as they are).
    file_rows: usize,
}

impl Located<'_> {
    /// How many more values to make room for before appending this frame's: the whole file's
    /// rows at its first frame, nothing at the frames after it (the room is there already).
    pub(crate) fn rows_to_come(&self) -> usize {
        if self.first_row == 0 {
            self.file_rows
        } else {
            0
        }
    }

    pub(crate) fn bad(
        &self,
        row: usize,
        column: &Column,
        value: String,
        problem: &str,
    ) -> IngestError {
        IngestError::BadValue {
            path: self.path.to_path_buf(),
            row: self.first_row + row as u64 + 1,
            line: self.first_row + row as u64 + 1 + self.header_lines,
            column: column.name().to_string(),
            value,
            problem: problem.to_owned(),
        }
    }
}

pub(crate) type PerFile<'a> =
    dyn FnMut(&Located<'_>, DataFrame, &[bool]) -> Result<(), IngestError> + 'a;

/// Hands `per_file` each frame of the input and which of its rows to keep: the files in turn,
/// or the one frame the preparation makes ([`super::prepare`]). `used_is_all`: `per_file` reads
/// no column but `used`, so the preparation may leave the others out. `native_sum`: the
/// preparation's last step is left to the caller's dedupe (see [`super::prepare::native_sum`]).
pub(crate) fn for_each_frame(
    input: &InputConfig,
    seed: u64,
    used: &[&ColumnRef],
    used_is_all: bool,
    native_sum: Option<polars::prelude::Expr>,
    float_column: Option<&ColumnRef>,
    per_file: &mut PerFile<'_>,
) -> Result<(Vec<Fingerprint>, IngestCounts), IngestError> {
    if super::prepare::applies(input) {
        let only = used_is_all.then_some(used);
        let (frame, fingerprints) = super::prepare::prepared_frame(input, only, native_sum)?;
        let located = Located {
            path: Path::new(super::prepare::PREPARED),
            header_lines: 0,
            first_row: 0,
            file_rows: 0,
        };
        let mut counts = IngestCounts::default();
        hand_on(&located, frame, input, seed, used, &mut counts, per_file)?;
        return Ok((fingerprints, counts));
    }
    let Source::Files(files) = &input.source else {
        return Err(IngestError::Empty {
            reason: "this job reads files".to_owned(),
        });
    };
    for_each_file(files, input, seed, used, float_column, per_file)
}

/// Reads each file in turn (honouring `limit`), then hands the frames on ([`hand_on`]).
fn for_each_file(
    files: &FileSource,
    input: &InputConfig,
    seed: u64,
    used: &[&ColumnRef],
    float_column: Option<&ColumnRef>,
    per_file: &mut PerFile<'_>,
) -> Result<(Vec<Fingerprint>, IngestCounts), IngestError> {
    let mut counts = IngestCounts::default();
    let mut fingerprints = Vec::new();
    for path in &files.paths {
        let remaining = input
            .limit
            .map(|limit| limit.saturating_sub(counts.rows_read));
        if remaining == Some(0) {
            break;
        }
        let bytes = read_file(path)?;
        if files.format == Format::Parquet {
            let slices = parquet_slices(
                path,
                &bytes,
                remaining.map(|rows| rows as usize),
                PARQUET_SLICE_ROWS,
            )?;
            let rows = slices.last().map_or(0, |(first, length)| first + length);
            fingerprints.push(fingerprint(path, &bytes, rows as u64));
            for (first, length) in slices {
                let frame = read_parquet_slice(path, &bytes, first, length)?;
                let located = Located {
                    path,
                    header_lines: 0,
                    first_row: first as u64,
                    file_rows: rows,
                };
                hand_on(&located, frame, input, seed, used, &mut counts, per_file)?;
            }
            continue;
        }
        // A limit reads the file's first rows whole (polars stops early).
        let slices = match remaining {
            None => text_slices(&bytes, files, TEXT_SLICE_BYTES),
            Some(_) => None,
        };
        if let Some(TextSlices {
            ranges,
            rows,
            separator,
        }) = slices
        {
            let header_lines = u64::from(files.header);
            let mut print = fingerprint(path, &bytes, 0);
            bytes.release(0..bytes.len());
            let mut first_row = 0;
            let mut schema = None;
            for range in ranges {
                let frame = read_text_slice(
                    path,
                    &bytes,
                    range.clone(),
                    separator,
                    files,
                    float_column,
                    &mut schema,
                )?;
                bytes.release(range);
                let height = frame.height();
                let located = Located {
                    path,
                    header_lines,
                    first_row: first_row as u64,
                    file_rows: rows,
                };
                hand_on(&located, frame, input, seed, used, &mut counts, per_file)?;
                first_row += height;
            }
            print.rows = first_row as u64;
            fingerprints.push(print);
            continue;
        }
        let frame = read_frame(
            path,
            &bytes,
            files,
            remaining.map(|rows| rows as usize),
            float_column,
        )?;
        fingerprints.push(fingerprint(path, &bytes, frame.height() as u64));
        drop(bytes);
        let located = Located {
            path,
            header_lines: u64::from(files.header && files.format.is_delimited_text()),
            first_row: 0,
            file_rows: 0,
        };
        hand_on(&located, frame, input, seed, used, &mut counts, per_file)?;
    }
    Ok((fingerprints, counts))
}

/// Bytes of a large delimited file parsed at a time (cut at line ends). Parsed whole, the
/// 100M-rating CSV (1.8 GB) was all in memory, mapped, beside the whole frame of its columns;
/// in slices, ingestion holds one slice of text and one of columns more than its result.
const TEXT_SLICE_BYTES: usize = if cfg!(test) { 4 << 10 } else { 64 << 20 };

/// How a delimited file is parsed in slices ([`text_slices`]).
struct TextSlices {
    /// Byte ranges, each ending at a line end (the first with the header).
    ranges: Vec<std::ops::Range<usize>>,
    /// The file's lines less the header: blank lines, which polars skips, make this an upper
    /// bound (it only sizes the arrays).
    rows: usize,
    separator: u8,
}

/// The slices a delimited file is parsed in, or `None` to parse it whole: files under two
/// slices, separators of more than one byte (rewritten in a copy), and files with a double
/// quote anywhere, where a quoted field may hold a line end and a cut could fall inside it.
/// The rows are counted in the same pass as the quote check.
fn text_slices(bytes: &[u8], files: &FileSource, slice_bytes: usize) -> Option<TextSlices> {
    if !files.format.is_delimited_text() || bytes.len() < 2 * slice_bytes {
        return None;
    }
    let separator = files
        .separator
        .clone()
        .unwrap_or_else(|| sniff_separator(bytes));
    let &[separator] = separator.as_bytes() else {
        return None;
    };
    // Per 1 MiB chunk (in cache for its second look): a quote, and the line ends.
    let (quoted, line_ends) = bytes
        .par_chunks(1 << 20)
        .map(|chunk| (chunk.contains(&b'"'), numeric_text::line_ends(chunk)))
        .reduce(|| (false, 0), |a, b| (a.0 || b.0, a.1 + b.1));
    if quoted {
        return None;
    }
    let lines = line_ends + usize::from(bytes.last().is_some_and(|&byte| byte != b'\n'));
    let rows = lines.saturating_sub(usize::from(files.header));
    Some(TextSlices {
        ranges: numeric_text::cut(bytes, slice_bytes),
        rows,
        separator,
    })
}

/// Parses one slice of a delimited file ([`text_slices`]). The first (with the header) is
/// typed as a whole file is, and its schema is kept; later slices are read with that schema,
/// or all as text when they do not fit it (as a separate file would be; ids then become text
/// for the whole input, see [`RawIds::extend`]). When even that fails, the whole file is read
/// the usual way for the error, which then names the row and line in the whole file.
fn read_text_slice(
    path: &Path,
    bytes: &super::FileBytes,
    range: std::ops::Range<usize>,
    separator: u8,
    files: &FileSource,
    float_column: Option<&ColumnRef>,
    schema: &mut Option<SchemaRef>,
) -> Result<DataFrame, IngestError> {
    let data = &bytes[range];
    let Some(first) = schema.clone() else {
        let frame = read_frame(path, data, files, None, float_column)?;
        *schema = Some(frame.schema().clone());
        return Ok(frame);
    };
    let read = |schema: SchemaRef| {
        CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(schema))
            .with_rechunk(false)
            .map_parse_options(|options| options.with_separator(separator))
            .into_reader_with_file_handle(Cursor::new(data))
            .finish()
    };
    let as_text = || {
        Arc::new(Schema::from_iter(
            first
                .iter_names()
                .map(|name| Field::new(name.clone(), DataType::String)),
        ))
    };
    let frame = parsed(path, || {
        Ok(read(first.clone()).or_else(|_| read(as_text())).ok())
    })?;
    match frame {
        Some(frame) => Ok(frame),
        None => match read_frame(path, bytes, files, None, float_column) {
            Err(error) => Err(error),
            Ok(_) => Err(IngestError::Malformed {
                path: path.to_path_buf(),
                problem:
                    "a part of the file could not be parsed with the columns of its first rows"
                        .to_owned(),
            }),
        },
    }
}

/// Rows of a Parquet file decoded at a time: whole row groups adding up to about this many.
/// Decoding the whole file at once held every column at its stored width (100M ratings as
/// 64-bit ids and doubles: 2.4 GB) beside the arrays converted from it; in slices, ingestion
/// holds one slice more than its result.
const PARQUET_SLICE_ROWS: usize = 4 << 20;

/// `(first row, rows)` of the slices a Parquet file is read in, covering its first `limit`
/// rows (all without one), each made of whole row groups adding up to at least `slice_rows`
/// (the last may be less, and `limit` may cut a group); at least one (perhaps empty) slice,
/// so a file without rows still shows its columns.
fn parquet_slices(
    path: &Path,
    bytes: &[u8],
    limit: Option<usize>,
    slice_rows: usize,
) -> Result<Vec<(usize, usize)>, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: "the file is empty".to_owned(),
        });
    }
    let groups: Vec<usize> = parsed(path, || {
        let mut reader = ParquetReader::new(Cursor::new(bytes));
        let metadata = reader
            .get_metadata()
            .map_err(|error| polars_error(path, error))?;
        Ok(metadata
            .row_groups
            .iter()
            .map(|group| group.num_rows())
            .collect())
    })?;
    let wanted = groups
        .iter()
        .sum::<usize>()
        .min(limit.unwrap_or(usize::MAX));
    let mut slices = Vec::new();
    // `first`: where the pending slice starts; `end`: the end of the groups taken so far.
    let (mut first, mut end) = (0, 0);
    for group in groups {
        if end >= wanted {
            break;
        }
        end += group;
        if end - first >= slice_rows {
            let stop = end.min(wanted);
            slices.push((first, stop - first));
            first = stop;
        }
    }
    if first < wanted {
        slices.push((first, wanted - first));
    }
    if slices.is_empty() {
        slices.push((0, 0));
    }
    Ok(slices)
}

/// Rows `first..first + length` of a Parquet file as a frame.
fn read_parquet_slice(
    path: &Path,
    bytes: &[u8],
    first: usize,
    length: usize,
) -> Result<DataFrame, IngestError> {
    parsed(path, || {
        ParquetReader::new(Cursor::new(bytes))
            .with_slice(Some((first, length)))
            .finish()
            .map_err(|error| polars_error(path, error))
    })
}

/// Runs `work` on the file at `path`, turning a polars panic inside it into an input error.
fn parsed<T>(path: &Path, work: impl FnOnce() -> Result<T, IngestError>) -> Result<T, IngestError> {
    crate::exec::contain_panics(work).unwrap_or_else(|message| {
        Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: format!("the file could not be parsed (polars: {message})"),
        })
    })
}

/// Hands `per_file` the frame and which rows to keep: rows with a missing value in `used`
/// columns are an error or dropped (null policy), and `sample_fraction` leaves out rows by
/// the seed (by their position in the whole input, so files split differently agree).
fn hand_on(
    located: &Located<'_>,
    frame: DataFrame,
    input: &InputConfig,
    seed: u64,
    used: &[&ColumnRef],
    counts: &mut IngestCounts,
    per_file: &mut PerFile<'_>,
) -> Result<(), IngestError> {
    let sample_stream = split::mix(seed, SAMPLE_STREAM);
    let mut keep = vec![true; frame.height()];
    for column in used {
        let column = find_column(located.path, &frame, column)?;
        if column.null_count() == 0 {
            continue;
        }
        for (row, is_null) in column.as_materialized_series().is_null().iter().enumerate() {
            if is_null == Some(true) {
                if input.null_policy == NullPolicy::Error {
                    return Err(located.bad(
                        row,
                        column,
                        "(missing)".to_owned(),
                        "missing value (set `input.null_policy = \"drop\"` to skip such rows)",
                    ));
                }
                keep[row] = false;
            }
        }
    }
    counts.rows_dropped_null += keep.iter().filter(|kept| !**kept).count() as u64;
    if input.sample_fraction < 1.0 {
        for (row, kept) in keep.iter_mut().enumerate() {
            let global_row = counts.rows_read + row as u64;
            if *kept && split::unit(sample_stream, global_row) >= input.sample_fraction {
                *kept = false;
                counts.rows_sampled_out += 1;
            }
        }
    }
    counts.rows_read += frame.height() as u64;
    per_file(located, frame, &keep)
}

/// A whole file as a frame (for formats the preparation does not scan lazily).
pub(crate) fn read_whole(
    path: &Path,
    bytes: &[u8],
    files: &FileSource,
) -> Result<DataFrame, IngestError> {
    read_frame(path, bytes, files, None, None)
}

fn filter(raw: RawIds, keep: &[bool]) -> RawIds {
    match raw {
        RawIds::Integer(values) => RawIds::Integer(keep_where(values, keep)),
        RawIds::Small(values) => RawIds::Small(keep_where(values, keep)),
        RawIds::Text(values) => RawIds::Text(keep_where(values, keep)),
    }
}

pub(crate) fn polars_error(path: &Path, error: PolarsError) -> IngestError {
    IngestError::Malformed {
        path: path.to_path_buf(),
        problem: error.to_string(),
    }
}

fn read_frame(
    path: &Path,
    bytes: &[u8],
    files: &FileSource,
    limit: Option<usize>,
    float_column: Option<&ColumnRef>,
) -> Result<DataFrame, IngestError> {
    parsed(path, || {
        read_frame_unguarded(path, bytes, files, limit, float_column)
    })
}

fn read_frame_unguarded(
    path: &Path,
    bytes: &[u8],
    files: &FileSource,
    limit: Option<usize>,
    float_column: Option<&ColumnRef>,
) -> Result<DataFrame, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: "the file is empty".to_owned(),
        });
    }
    let frame = match files.format {
        Format::Csv | Format::Tsv | Format::Text => {
            read_delimited(path, bytes, files, limit, float_column)?
        }
        Format::Parquet => ParquetReader::new(Cursor::new(bytes))
            .with_slice(limit.map(|rows| (0, rows)))
            .finish()
            .map_err(|error| polars_error(path, error))?,
        Format::Ipc => IpcReader::new(Cursor::new(bytes))
            .with_n_rows(limit)
            .finish()
            .map_err(|error| polars_error(path, error))?,
        Format::Ndjson => {
            let frame = JsonReader::new(Cursor::new(bytes))
                .with_json_format(JsonFormat::JsonLines)
                .finish()
                .map_err(|error| polars_error(path, error))?;
            match limit {
                Some(rows) => frame.head(Some(rows)),
                None => frame,
            }
        }
        Format::Libsvm => {
            return Err(IngestError::Malformed {
                path: path.to_path_buf(),
                problem: "libsvm files hold feature vectors, not ratings".to_owned(),
            });
        }
    };
    Ok(frame)
}

/// The separator polars should split on; multi-byte separators are rewritten to one byte.
const UNIT_SEPARATOR: u8 = 0x1f;

/// The separator the native reader would use for a delimited file without `separator`.
pub fn sniffed_separator(path: &Path) -> Result<String, IngestError> {
    use std::io::Read;
    super::check_regular(path)?;
    let mut head = Vec::with_capacity(1 << 16);
    std::fs::File::open(path)
        .and_then(|file| file.take(1 << 16).read_to_end(&mut head))
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => IngestError::NotFound {
                path: path.to_path_buf(),
            },
            _ => IngestError::Unreadable {
                path: path.to_path_buf(),
                reason: error.to_string(),
            },
        })?;
    Ok(sniff_separator(&head))
}

pub(crate) fn sniff_separator(bytes: &[u8]) -> String {
    let first_line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let first = String::from_utf8_lossy(&bytes[..first_line_end.min(1 << 16)]);
    ["::", "\t", ",", ";", "|", " "]
        .into_iter()
        .find(|candidate| first.contains(candidate))
        .unwrap_or(",")
        .to_owned()
}

/// Names in the first line of delimited text (quotes and a carriage return stripped).
fn header_names(data: &[u8], separator: u8) -> Vec<String> {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    data[..end]
        .split(|&b| b == separator)
        .map(|field| {
            String::from_utf8_lossy(field)
                .trim_end_matches('\r')
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

fn read_delimited(
    path: &Path,
    bytes: &[u8],
    files: &FileSource,
    limit: Option<usize>,
    float_column: Option<&ColumnRef>,
) -> Result<DataFrame, IngestError> {
    let separator = files
        .separator
        .clone()
        .unwrap_or_else(|| sniff_separator(bytes));
    let rewritten;
    let (data, separator_byte) = if separator.len() == 1 {
        (bytes, separator.as_bytes()[0])
    } else {
        rewritten = replace_all(bytes, separator.as_bytes(), UNIT_SEPARATOR);
        (&rewritten[..], UNIT_SEPARATOR)
    };
    // The rating column is read as f32 from the start (it is stored as f32 anyway): a 4-byte
    // instead of an 8-byte column in the frame, the largest thing ingestion holds.
    let float_name = float_column.and_then(|column| match column {
        ColumnRef::Name(name) => Some(name.clone()),
        ColumnRef::Position(position) if !files.header => Some(format!("column_{}", position + 1)),
        ColumnRef::Position(position) => header_names(data, separator_byte).get(*position).cloned(),
    });
    let overwrite = float_name.map(|name| {
        Arc::new(Schema::from_iter([Field::new(
            name.into(),
            DataType::Float32,
        )]))
    });
    let read = |infer_types: bool| {
        CsvReadOptions::default()
            .with_has_header(files.header)
            .with_schema_overwrite(if infer_types { overwrite.clone() } else { None })
            .with_infer_schema_length(Some(if infer_types { 1000 } else { 0 }))
            .with_n_rows(limit)
            .with_rechunk(false)
            .map_parse_options(|options| options.with_separator(separator_byte))
            .into_reader_with_file_handle(Cursor::new(data))
            .finish()
    };
    match read(true) {
        Ok(frame) => Ok(frame),
        // Inference or parsing failed: take everything as text; `extract` names the bad row.
        Err(first_error) => read(false).map_err(|_| {
            ragged_line(path, data, separator_byte)
                .unwrap_or_else(|| polars_error(path, first_error))
        }),
    }
}

/// The first line whose field count differs from the first line's (quotes not considered), as
/// an error naming it: the usual reason a delimited file cannot be read even as text.
fn ragged_line(path: &Path, data: &[u8], separator: u8) -> Option<IngestError> {
    let mut lines = data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty() && *line != b"\r");
    let (_, first) = lines.next()?;
    let expected = first.iter().filter(|&&b| b == separator).count() + 1;
    lines.find_map(|(index, line)| {
        let fields = line.iter().filter(|&&b| b == separator).count() + 1;
        (fields != expected).then(|| IngestError::Malformed {
            path: path.to_path_buf(),
            problem: format!(
                "line {} has {fields} fields, the first line has {expected}",
                index + 1
            ),
        })
    })
}

fn replace_all(bytes: &[u8], pattern: &[u8], with: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(pattern) {
            out.push(with);
            at += pattern.len();
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    out
}

/// An id column as integers (integer columns, integral floats, all-integer text) or strings.
/// Missing values become placeholders in rows the null policy drops.
fn id_values(located: &Located<'_>, column: &Column) -> Result<RawIds, IngestError> {
    let path = located.path;
    let series = column.as_materialized_series();
    let dtype = series.dtype();
    if dtype.is_integer() {
        let cast = series
            .cast(&DataType::Int64)
            .map_err(|error| polars_error(path, error))?;
        let values = cast.i64().map_err(|error| polars_error(path, error))?;
        // Without missing values the chunks' slices are checked and converted directly, side
        // by side. The check is a fold the compiler vectorizes: polars' `min` and `max` were
        // two scalar passes per column, 0.8 s of a 100M-row Parquet file's ingest.
        if values.null_count() == 0 {
            let slices = value_slices(values);
            let fits_u32 = slices.par_iter().all(|slice| {
                slice.iter().fold(true, |fits, &value| {
                    fits & (value as u64 <= u64::from(u32::MAX))
                })
            });
            return Ok(if fits_u32 {
                RawIds::Small(convert_slices(&slices, |v| v as u32))
            } else {
                RawIds::Integer(convert_slices(&slices, |v| v))
            });
        }
        let fits_u32 = values.min().is_none_or(|min| min >= 0)
            && values.max().is_none_or(|max| max <= i64::from(u32::MAX));
        Ok(if fits_u32 {
            RawIds::Small(values.iter().map(|v| v.unwrap_or(0) as u32).collect())
        } else {
            RawIds::Integer(values.iter().map(|v| v.unwrap_or(0)).collect())
        })
    } else if dtype.is_float() {
        let cast = series
            .cast(&DataType::Float64)
            .map_err(|error| polars_error(path, error))?;
        let values = cast.f64().map_err(|error| polars_error(path, error))?;
        let mut out = Vec::with_capacity(values.len());
        for (row, value) in values.iter().enumerate() {
            let value = value.unwrap_or(0.0);
            if value.fract() != 0.0 || !value.is_finite() || value.abs() > 9.0e15 {
                return Err(located.bad(
                    row,
                    column,
                    value.to_string(),
                    "an id must be an integer or a string",
                ));
            }
            out.push(value as i64);
        }
        Ok(RawIds::Integer(out))
    } else if matches!(dtype, DataType::String) {
        let values = series.str().map_err(|error| polars_error(path, error))?;
        // Text that is all integers (e.g. after the all-text fallback) stays integer ids.
        let parsed: Option<Vec<i64>> = values
            .iter()
            .map(|value| value.map_or(Some(0), |text| text.trim().parse().ok()))
            .collect();
        Ok(match parsed {
            Some(numbers) => RawIds::Integer(numbers),
            None => RawIds::Text(
                values
                    .iter()
                    .map(|value| value.unwrap_or("").to_owned())
                    .collect(),
            ),
        })
    } else {
        Err(located.bad(
            0,
            column,
            format!("type {dtype}"),
            "an id column must hold integers or strings",
        ))
    }
}

/// `convert` applied to the values of `slices` (a column's chunks), in order, with the chunks
/// converted side by side on the thread pool: a 100M-row column in half the time on two cores.
fn convert_slices<T: Copy + Sync, U: Copy + Default + Send>(
    slices: &[&[T]],
    convert: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let total = slices.iter().map(|slice| slice.len()).sum();
    let mut out = vec![U::default(); total];
    let mut pieces = Vec::with_capacity(slices.len());
    let mut rest = out.as_mut_slice();
    for slice in slices {
        let (head, tail) = rest.split_at_mut(slice.len());
        pieces.push((head, *slice));
        rest = tail;
    }
    pieces.into_par_iter().for_each(|(target, source)| {
        for (to, &from) in target.iter_mut().zip(source) {
            *to = convert(from);
        }
    });
    out
}

/// The value buffers of a column's chunks (the values under any nulls included).
fn value_slices<T: PolarsNumericType>(values: &ChunkedArray<T>) -> Vec<&[T::Native]> {
    values
        .downcast_iter()
        .map(|array| array.values().as_slice())
        .collect()
}

/// Float ratings from a column's chunks; a kept value that is not finite (before narrowing to
/// f32) names its row.
fn float_ratings<T: Copy + Sync + Into<f64> + std::fmt::Display>(
    located: &Located<'_>,
    column: &Column,
    keep: &[bool],
    slices: &[&[T]],
    narrow: impl Fn(T) -> f32 + Sync,
) -> Result<Vec<f32>, IngestError> {
    let all_finite = slices.par_iter().all(|slice| {
        slice
            .iter()
            .all(|&value| Into::<f64>::into(value).is_finite())
    });
    if !all_finite
        && let Some((row, value)) = slices
            .iter()
            .flat_map(|slice| slice.iter())
            .zip(keep)
            .enumerate()
            .find(|(_, (value, kept))| **kept && !Into::<f64>::into(**value).is_finite())
            .map(|(row, (value, _))| (row, *value))
    {
        return Err(located.bad(
            row,
            column,
            value.to_string(),
            "a rating must be a finite number",
        ));
    }
    Ok(convert_slices(slices, narrow))
}

/// A rating column as f32; every kept value must be a finite number.
fn rating_values(
    located: &Located<'_>,
    column: &Column,
    keep: &[bool],
) -> Result<Vec<f32>, IngestError> {
    let path = located.path;
    let series = column.as_materialized_series();
    // The usual cases, a float column without missing values (f32 from text, f64 from
    // Parquet): its slices converted side by side, with no per-value option.
    if let Ok(values) = series.f32()
        && values.null_count() == 0
    {
        return float_ratings(located, column, keep, &value_slices(values), |value| value);
    }
    if let Ok(values) = series.f64()
        && values.null_count() == 0
    {
        return float_ratings(located, column, keep, &value_slices(values), |value| {
            value as f32
        });
    }
    let mut rating = Vec::with_capacity(series.len());
    if series.dtype().is_primitive_numeric() {
        let cast = series
            .cast(&DataType::Float64)
            .map_err(|error| polars_error(path, error))?;
        let values = cast.f64().map_err(|error| polars_error(path, error))?;
        for (row, value) in values.iter().enumerate() {
            let value = value.unwrap_or(0.0);
            if keep[row] && !value.is_finite() {
                return Err(located.bad(
                    row,
                    column,
                    value.to_string(),
                    "a rating must be a finite number",
                ));
            }
            rating.push(value as f32);
        }
    } else if matches!(series.dtype(), DataType::String) {
        let values = series.str().map_err(|error| polars_error(path, error))?;
        for (row, value) in values.iter().enumerate() {
            let Some(text) = value.filter(|_| keep[row]) else {
                rating.push(0.0);
                continue;
            };
            match text.trim().parse::<f64>() {
                Ok(number) if number.is_finite() => rating.push(number as f32),
                Ok(_) => {
                    return Err(located.bad(
                        row,
                        column,
                        format!("{text:?}"),
                        "a rating must be a finite number",
                    ));
                }
                Err(_) => {
                    return Err(located.bad(row, column, format!("{text:?}"), "not a number"));
                }
            }
        }
    } else {
        return Err(located.bad(
            0,
            column,
            format!("type {}", series.dtype()),
            "a rating column must hold numbers",
        ));
    }
    Ok(rating)
}

/// The column name closest to `name`, when one is close enough.
pub(crate) fn closest_name<'a>(names: &'a [String], name: &str) -> Option<&'a str> {
    names
        .iter()
        .max_by(|a, b| strsim::jaro_winkler(a, name).total_cmp(&strsim::jaro_winkler(b, name)))
        .filter(|candidate| strsim::jaro_winkler(candidate, name) > 0.8)
        .map(String::as_str)
}

/// ` (did you mean `x`?)` for [`closest_name`], when there is one; else nothing.
pub(crate) fn did_you_mean(names: &[String], name: &str) -> String {
    closest_name(names, name).map_or_else(String::new, |close| {
        format!(" (did you mean `{}`?)", crate::text::shorten(close, 80))
    })
}

pub(crate) fn find_column<'a>(
    path: &Path,
    frame: &'a DataFrame,
    column: &ColumnRef,
) -> Result<&'a Column, IngestError> {
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|name| name.to_string())
        .collect();
    let available = || crate::text::column_list(&names);
    // Polars names the columns of a file read without a header column_1, column_2, ...
    let headerless = !names.is_empty()
        && names.iter().all(|name| {
            name.strip_prefix("column_")
                .is_some_and(|digits| digits.parse::<u64>().is_ok())
        });
    match column {
        ColumnRef::Name(name) => frame.column(name).map_err(|_| {
            let hint = if headerless {
                " (the file was read without a header, so its columns have no names: set `input.header = true` if its first line holds names, or give 0-based positions such as `label = 14`)".to_owned()
            } else {
                did_you_mean(&names, name)
            };
            IngestError::MissingColumn {
                path: path.to_path_buf(),
                column: format!("`{}`", crate::text::shorten(name, 80)),
                available: available(),
                hint,
            }
        }),
        ColumnRef::Position(position) => {
            frame
                .columns()
                .get(*position)
                .ok_or_else(|| IngestError::MissingColumn {
                    path: path.to_path_buf(),
                    column: format!("at position {position} (0-based)"),
                    available: available(),
                    hint: String::new(),
                })
        }
    }
}

/// One file's user, item and rating columns as the polars path reads them: what
/// [`numeric_text`]'s tests compare against.
#[cfg(test)]
pub(crate) fn columns_through_polars(
    path: &Path,
    files: &FileSource,
    columns: [&ColumnRef; 3],
) -> Result<(RawIds, RawIds, Vec<f32>), IngestError> {
    columns_of(path, &read_file(path)?, files, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Parquet file of `rows` rows (`user` = row, `item` = row % 7) in groups of `group`.
    fn parquet_bytes(rows: i64, group: usize) -> Vec<u8> {
        let mut frame = df!(
            "user" => (0..rows).collect::<Vec<i64>>(),
            "item" => (0..rows).map(|row| row % 7).collect::<Vec<i64>>(),
        )
        .unwrap();
        let mut bytes = Vec::new();
        ParquetWriter::new(&mut bytes)
            .with_row_group_size(Some(group))
            .finish(&mut frame)
            .unwrap();
        bytes
    }

    #[test]
    fn parquet_slices_are_whole_groups_that_cover_the_file_or_its_limit() {
        let path = Path::new("slices.parquet");
        let bytes = parquet_bytes(1000, 100);
        let slices = |limit, slice_rows| parquet_slices(path, &bytes, limit, slice_rows).unwrap();
        assert_eq!(
            slices(None, 250),
            vec![(0, 300), (300, 300), (600, 300), (900, 100)]
        );
        assert_eq!(
            slices(None, 1),
            (0..10).map(|g| (g * 100, 100)).collect::<Vec<_>>()
        );
        assert_eq!(slices(None, 5000), vec![(0, 1000)]);
        assert_eq!(
            slices(Some(450), 200),
            vec![(0, 200), (200, 200), (400, 50)]
        );
        assert_eq!(slices(Some(0), 200), vec![(0, 0)]);
        // The slices read back as the whole file, row for row.
        let mut users = Vec::new();
        for (first, length) in slices(None, 250) {
            let frame = read_parquet_slice(path, &bytes, first, length).unwrap();
            users.extend(
                frame
                    .column("user")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .into_no_null_iter(),
            );
        }
        assert_eq!(users, (0..1000).collect::<Vec<i64>>());
        let empty = parquet_bytes(0, 100);
        assert_eq!(
            parquet_slices(path, &empty, None, 250).unwrap(),
            vec![(0, 0)]
        );
        assert!(parquet_slices(path, b"", None, 250).is_err());
        assert!(parquet_slices(path, b"not parquet at all", None, 250).is_err());
    }

    #[test]
    fn a_slice_names_rows_and_lines_of_the_whole_file() {
        let frame = df!("rating" => [1.0f64, 2.0]).unwrap();
        let column = frame.column("rating").unwrap();
        let located = Located {
            path: Path::new("events.parquet"),
            header_lines: 0,
            first_row: 4_194_304,
            file_rows: 10_000_000,
        };
        let IngestError::BadValue { row, line, .. } = located.bad(1, column, "2".to_owned(), "bad")
        else {
            panic!("not a bad value");
        };
        assert_eq!((row, line), (4_194_306, 4_194_306));
    }

    /// Reads `text` (written to `name` in `dir`) as a train job's input.
    fn read_text(
        dir: &Path,
        name: &str,
        text: &str,
    ) -> Result<super::super::IngestedRatings, IngestError> {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let job = format!(
            "[job]\nname = \"slices\"\n[input]\npath = \"{}\"\n[model]\nrank = 2\n",
            path.display()
        );
        let config = crate::config::validate::validate_text(&dir.join("job.toml"), &job).unwrap();
        let crate::config::Task::Train(task) = config.task else {
            panic!("a train job");
        };
        super::read_ratings(&task.input, 7, None, None)
    }

    #[test]
    fn a_csv_read_in_slices_equals_it_read_whole_and_names_rows_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = String::new();
        for row in 0..5000 {
            let user = (row * 7919) % 613;
            let item = if row == 4321 {
                "x17".to_owned()
            } else {
                ((row * 31) % 97).to_string()
            };
            body.push_str(&format!("{user},{item},{}.5\n", row % 5));
        }
        assert!(body.len() > 8 * TEXT_SLICE_BYTES);
        // A double quote anywhere makes the file parse whole.
        let sliced = read_text(
            dir.path(),
            "sliced.csv",
            &format!("user,item,rating\n{body}"),
        )
        .unwrap();
        let whole = read_text(
            dir.path(),
            "whole.csv",
            &format!("\"user\",item,rating\n{body}"),
        )
        .unwrap();
        assert_eq!(sliced.ratings, whole.ratings);
        assert_eq!(sliced.counts, whole.counts);
        assert_eq!(sliced.fingerprints[0].rows, 5000);
        assert_eq!(whole.fingerprints[0].rows, 5000);
        assert!(
            matches!(sliced.ratings.item_ids, Ids::Text(_)),
            "a text id in a late slice"
        );

        let mut lines: Vec<&str> = body.lines().collect();
        let broken = "12,34,high".to_owned();
        lines[3999] = &broken;
        let text = format!("user,item,rating\n{}\n", lines.join("\n"));
        let error = |name: &str, text: &str| match read_text(dir.path(), name, text) {
            Ok(_) => panic!("{name} should not load"),
            Err(error) => error.to_string(),
        };
        let sliced = error("bad.csv", &text);
        let whole = error("bad-whole.csv", &text.replacen("user", "\"user\"", 1));
        assert!(
            sliced.contains("4000") && sliced.contains("4001"),
            "{sliced}"
        );
        assert_eq!(
            sliced.replace("bad.csv", "F"),
            whole.replace("bad-whole.csv", "F")
        );
    }

    #[test]
    fn sniffs_spark_separators() {
        assert_eq!(sniff_separator(b"0::2::3::1424380312\n"), "::");
        assert_eq!(sniff_separator(b"1\t2\t3\n"), "\t");
        assert_eq!(sniff_separator(b"1,2,3"), ",");
    }

    #[test]
    fn replaces_multibyte_separators() {
        assert_eq!(replace_all(b"a::b::c", b"::", b'|'), b"a|b|c".to_vec());
    }
}
