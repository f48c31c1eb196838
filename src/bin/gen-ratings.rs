//! `gen-ratings`: writes the built-in synthetic ratings to a CSV file, so benchmarks and peers
//! (Spark, `implicit`) can read exactly the data `submit` generates.
//!
//! Usage: gen-ratings RATINGS USERS ITEMS OUT.csv [RANK] [NOISE] [SEED]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.len() < 4 {
        eprintln!("usage: gen-ratings RATINGS USERS ITEMS OUT.csv [RANK=10] [NOISE=0.5] [SEED=7]");
        return ExitCode::from(2);
    }
    let number = |index: usize, default: f64| -> Option<f64> {
        arguments
            .get(index)
            .map_or(Some(default), |text| text.parse().ok())
    };
    let (Some(ratings), Some(users), Some(items), Some(rank), Some(noise), Some(seed)) = (
        number(0, 0.0),
        number(1, 0.0),
        number(2, 0.0),
        number(4, 10.0),
        number(5, 0.5),
        number(6, 7.0),
    ) else {
        eprintln!("error: RATINGS, USERS, ITEMS, RANK, NOISE and SEED must be numbers");
        return ExitCode::from(2);
    };
    if ratings < 1.0 || users < 1.0 || items < 1.0 || ratings > users * items / 2.0 {
        eprintln!("error: need 1 <= RATINGS <= USERS x ITEMS / 2");
        return ExitCode::from(2);
    }
    let data = submit::ingest::synthetic::generate_ratings(
        users as usize,
        items as usize,
        ratings as u64,
        rank as usize,
        noise,
        seed as u64,
    );
    let path = &arguments[3];
    let written = std::fs::File::create(path).and_then(|file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        writeln!(out, "user_id,item_id,rating")?;
        for ((user, item), rating) in data.user.iter().zip(&data.item).zip(&data.rating) {
            writeln!(out, "{user},{item},{rating:.3}")?;
        }
        out.flush()
    });
    match written {
        Ok(()) => {
            println!(
                "{} ratings, {users} users, {items} items -> {path}",
                data.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write {path}: {error}");
            ExitCode::from(1)
        }
    }
}
