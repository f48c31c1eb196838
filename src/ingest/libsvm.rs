//! LIBSVM / SVMlight files (`label index:value ...`, 1-based ascending indices), which polars
//! has no reader for. One pass over the bytes; every error names the line.

use std::path::Path;

use super::IngestError;
use crate::dataset::Tabular;

/// Parses LIBSVM text into a dense column-major table; absent features are 0, as in Spark.
/// `num_features` fixes the width (as Spark's `numFeatures`); `None` uses the largest index.
pub fn parse(
    path: &Path,
    bytes: &[u8],
    num_features: Option<usize>,
) -> Result<Tabular, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|error| IngestError::Malformed {
        path: path.to_path_buf(),
        problem: format!("not UTF-8 text ({error})"),
    })?;
    let mut labels = Vec::new();
    let mut entries: Vec<(u32, u32, f32)> = Vec::new();
    let mut width = 0usize;
    for (line_index, line) in text.lines().enumerate() {
        let line_number = line_index as u64 + 1;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let bad = |value: &str, problem: &str| IngestError::BadValue {
            path: path.to_path_buf(),
            row: labels.len() as u64 + 1,
            line: line_number,
            column: "libsvm".to_owned(),
            value: format!("{value:?}"),
            problem: problem.to_owned(),
        };
        let mut fields = content.split_ascii_whitespace();
        let label_text = fields.next().unwrap_or("");
        let label: f64 = label_text
            .parse()
            .ok()
            .filter(|label: &f64| label.is_finite())
            .ok_or_else(|| bad(label_text, "the label is not a finite number"))?;
        let row = labels.len() as u32;
        let mut previous = 0u64;
        for field in fields {
            let (index_text, value_text) = field
                .split_once(':')
                .ok_or_else(|| bad(field, "expected index:value"))?;
            let index: u64 = index_text
                .parse()
                .map_err(|_| bad(field, "the index is not a positive integer"))?;
            if index == 0 {
                return Err(bad(field, "indices are 1-based; 0 is not allowed"));
            }
            if index <= previous {
                return Err(bad(
                    field,
                    "indices must be strictly ascending (no duplicates)",
                ));
            }
            if index > 10_000_000 {
                return Err(bad(field, "index above 10,000,000 features"));
            }
            let value: f32 = value_text
                .parse()
                .ok()
                .filter(|value: &f32| value.is_finite())
                .ok_or_else(|| bad(field, "the value is not a finite number"))?;
            previous = index;
            width = width.max(index as usize);
            entries.push((row, index as u32 - 1, value));
        }
        labels.push(label);
    }
    if let Some(declared) = num_features {
        if width > declared {
            return Err(IngestError::Malformed {
                path: path.to_path_buf(),
                problem: format!("feature index {width} is above num_features = {declared}"),
            });
        }
        width = declared;
    }
    let rows = labels.len();
    // Rows are stored densely: a file with a few huge indices would ask for far more memory
    // than it holds. Refuse it before allocating, naming the shape.
    let dense_bytes = rows.saturating_mul(width).saturating_mul(4);
    if dense_bytes > crate::exec::memory::headroom() {
        return Err(IngestError::Malformed {
            path: path.to_path_buf(),
            problem: format!(
                "{rows} rows x {width} features (largest index) need {} MiB as a dense table, more than driver_memory leaves ({} MiB); raise driver_memory or check the indices",
                dense_bytes >> 20,
                crate::exec::memory::headroom() >> 20
            ),
        });
    }
    let mut features = vec![vec![0f32; rows]; width];
    for (row, column, value) in entries {
        features[column as usize][row as usize] = value;
    }
    Ok(Tabular::numeric(
        (1..=width).map(|index| format!("f{index}")).collect(),
        features,
        labels,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Tabular, IngestError> {
        parse(Path::new("t.libsvm"), text.as_bytes(), None)
    }

    #[test]
    fn reads_sparse_rows() {
        let table = parse_text("1 1:0.5 3:2\n0 2:1 # comment\n\n").unwrap();
        assert_eq!(table.labels, vec![1.0, 0.0]);
        assert_eq!(
            table.features,
            vec![vec![0.5, 0.0], vec![0.0, 1.0], vec![2.0, 0.0]]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, words) in [
            ("1 2:1 1:1", "ascending"),
            ("1 0:1", "1-based"),
            ("x 1:1", "label"),
            ("1\n1 1:nan", "finite"),
            ("1 3", "index:value"),
        ] {
            let error = parse_text(text).unwrap_err().to_string();
            assert!(error.contains(words), "{text}: {error}");
            assert!(error.contains("line"), "{error}");
        }
    }

    #[test]
    fn reads_the_spark_sample_when_present() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sample_libsvm_data.txt");
        if let Ok(bytes) = std::fs::read(&path) {
            let table = parse(&path, &bytes, None).unwrap();
            assert!(table.rows() >= 100);
            assert_eq!(table.columns(), 692);
        }
    }
}
