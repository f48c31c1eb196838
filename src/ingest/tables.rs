//! Tables going out through polars (the other side of the polars boundary): factor tables that
//! Python reads without us, and the output files of recommendation and scoring jobs.

use std::path::Path;

use polars::prelude::*;

use crate::dataset::Ids;

/// A column of an output table, already in its final order.
pub enum OutputColumn {
    Ids(String, Ids),
    Floats(String, Vec<Option<f32>>),
    Counts(String, Vec<u32>),
    Doubles(String, Vec<f64>),
    /// Copied input values (missing ones empty).
    Text(String, Vec<Option<String>>),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {reason}", path.display())]
pub struct WriteError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

fn column(output: OutputColumn) -> Column {
    match output {
        OutputColumn::Ids(name, Ids::Integer(values)) => Column::new(name.into(), values),
        OutputColumn::Ids(name, Ids::Text(values)) => Column::new(name.into(), values),
        OutputColumn::Floats(name, values) => Column::new(name.into(), values),
        OutputColumn::Counts(name, values) => Column::new(name.into(), values),
        OutputColumn::Doubles(name, values) => Column::new(name.into(), values),
        OutputColumn::Text(name, values) => Column::new(name.into(), values),
    }
}

/// The file formats output tables can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Parquet,
}

/// Writes `columns` to `path` as CSV or Parquet.
pub fn write_table(
    path: &Path,
    format: TableFormat,
    columns: Vec<OutputColumn>,
) -> Result<(), WriteError> {
    let failed = |reason: String| WriteError {
        path: path.to_path_buf(),
        reason,
    };
    let mut frame = DataFrame::new_infer_height(columns.into_iter().map(column).collect())
        .map_err(|error| failed(error.to_string()))?;
    let file = std::fs::File::create(path).map_err(|error| failed(error.to_string()))?;
    match format {
        TableFormat::Csv => CsvWriter::new(file)
            .include_header(true)
            .finish(&mut frame)
            .map_err(|error| failed(error.to_string())),
        TableFormat::Parquet => ParquetWriter::new(file)
            .finish(&mut frame)
            .map(|_| ())
            .map_err(|error| failed(error.to_string())),
    }
}

/// `id` then `f0 .. f{rank-1}` (f32): the factor table layout Python users load with pandas.
pub fn write_factors(
    path: &Path,
    ids: &Ids,
    factors: &[f32],
    rank: usize,
) -> Result<(), WriteError> {
    let rows = ids.len();
    let mut columns = vec![OutputColumn::Ids("id".to_owned(), ids.clone())];
    for component in 0..rank {
        let values = (0..rows)
            .map(|row| Some(factors[row * rank + component]))
            .collect();
        columns.push(OutputColumn::Floats(format!("f{component}"), values));
    }
    write_table(path, TableFormat::Parquet, columns)
}

/// Reads a factor table written by [`write_factors`]: ids, row-major factors and rank.
pub fn read_factors(path: &Path) -> Result<(Ids, Vec<f32>, usize), WriteError> {
    let failed = |reason: String| WriteError {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|error| failed(error.to_string()))?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|error| failed(error.to_string()))?;
    let id_column = frame
        .column("id")
        .map_err(|error| failed(error.to_string()))?;
    let ids = match id_column.dtype() {
        DataType::String => Ids::Text(
            id_column
                .str()
                .map_err(|error| failed(error.to_string()))?
                .iter()
                .map(|value| value.unwrap_or_default().to_owned())
                .collect(),
        ),
        _ => Ids::Integer(
            id_column
                .cast(&DataType::Int64)
                .and_then(|cast| {
                    cast.i64()
                        .map(|values| values.iter().map(|v| v.unwrap_or(0)).collect())
                })
                .map_err(|error| failed(error.to_string()))?,
        ),
    };
    let rank = frame.width() - 1;
    let mut factors = vec![0f32; ids.len() * rank];
    for component in 0..rank {
        let values = frame
            .column(&format!("f{component}"))
            .and_then(|column| column.cast(&DataType::Float32))
            .map_err(|error| failed(error.to_string()))?;
        let values = values.f32().map_err(|error| failed(error.to_string()))?;
        for (row, value) in values.iter().enumerate() {
            factors[row * rank + component] = value.unwrap_or(f32::NAN);
        }
    }
    Ok((ids, factors, rank))
}
