//! `gen-table`: writes the built-in synthetic classification table (binary by default) to CSV (`label` first,
//! then `f0..`), so the tree benchmark and its peers (LightGBM, XGBoost, scikit-learn, Spark)
//! can read the same file when `../shared/peers/gen_tabular.py` is not available.
//!
//! Usage: gen-table ROWS FEATURES OUT.csv [SEED] [CLASSES]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.len() < 3 {
        eprintln!("usage: gen-table ROWS FEATURES OUT.csv [SEED=11] [CLASSES=2]");
        return ExitCode::from(2);
    }
    let parse = |index: usize, default: u64| -> Option<u64> {
        arguments
            .get(index)
            .map_or(Some(default), |text| text.parse().ok())
    };
    let (Some(rows), Some(features), Some(seed), Some(classes)) =
        (parse(0, 0), parse(1, 0), parse(3, 11), parse(4, 2))
    else {
        eprintln!("error: ROWS, FEATURES, SEED and CLASSES must be whole numbers");
        return ExitCode::from(2);
    };
    if rows == 0 || !(1..=10_000).contains(&features) || !(2..=1000).contains(&classes) {
        eprintln!("error: need ROWS >= 1, 1 <= FEATURES <= 10000 and 2 <= CLASSES <= 1000");
        return ExitCode::from(2);
    }
    let table = submit::ingest::synthetic::classification(
        rows as usize,
        features as usize,
        classes as usize,
        seed,
    );
    let path = &arguments[2];
    let written = std::fs::File::create(path).and_then(|file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        write!(out, "label")?;
        for name in &table.feature_names {
            write!(out, ",{name}")?;
        }
        writeln!(out)?;
        for row in 0..table.rows() {
            write!(out, "{}", table.labels[row])?;
            for column in &table.features {
                write!(out, ",{:.6}", column[row])?;
            }
            writeln!(out)?;
        }
        out.flush()
    });
    match written {
        Ok(()) => {
            println!("{rows} rows, {features} features -> {path}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write {path}: {error}");
            ExitCode::from(1)
        }
    }
}
