//! `input.dedupe`: what several rows for one (user, item) pair become. Spark keeps them all as
//! separate observations (our default, `keep`); event-derived data usually wants one rating
//! per pair, and a log with accidental repeats wants to be told.
//!
//! Runs on the indexed ids (no strings, no polars): a sort of row numbers by pair, then one
//! pass over each run of equal pairs. The surviving row of a pair stays where its first row
//! was, so the input order (which the seeded split follows) is kept.

use rayon::prelude::*;

use super::IngestError;
use crate::config::prepare::Dedupe;
use crate::dataset::{Ratings, keep_where};

/// Applies `rule` in place; returns how many rows were merged away. A pair's rows merged into
/// one take the latest of their `times`, when there are times.
pub fn apply(
    ratings: &mut Ratings,
    mut times: Option<&mut Vec<f64>>,
    rule: Dedupe,
) -> Result<usize, IngestError> {
    if rule == Dedupe::Keep || ratings.len() < 2 {
        return Ok(0);
    }
    // Rows grouped by user (a counting sort, in row order), then each user's rows sorted by
    // (item, row) in parallel: the order of a sort of all rows by (pair, row), which took 10 s
    // at 100M rows (every comparison fetched two ids of two random rows). A key holds the item
    // and the row, so the pass below reads no ids.
    let rows = ratings.len();
    let users = ratings
        .user
        .iter()
        .max()
        .map_or(0, |&user| user as usize + 1);
    let mut starts = vec![0usize; users + 1];
    for &user in &ratings.user {
        starts[user as usize + 1] += 1;
    }
    for user in 0..users {
        starts[user + 1] += starts[user];
    }
    let mut keys = vec![0u64; rows];
    let mut next = starts.clone();
    for (row, (&user, &item)) in ratings.user.iter().zip(&ratings.item).enumerate() {
        let at = &mut next[user as usize];
        keys[*at] = (u64::from(item) << 32) | row as u64;
        *at += 1;
    }
    drop(next);
    let mut segments: Vec<&mut [u64]> = Vec::with_capacity(users);
    let mut rest = keys.as_mut_slice();
    for window in starts.windows(2) {
        let (segment, tail) = rest.split_at_mut(window[1] - window[0]);
        segments.push(segment);
        rest = tail;
    }
    // Keys are distinct (rows are), so an unstable sort is exact.
    segments
        .par_iter_mut()
        .with_min_len(256)
        .for_each(|segment| segment.sort_unstable());
    drop(segments);
    let item_of = |key: u64| (key >> 32) as u32;
    let row_of = |key: u64| key as u32;
    let mut keep = vec![true; rows];
    let mut value = ratings.rating.clone();
    let mut merged = 0;
    let mut group: Vec<u32> = Vec::new();
    for window in starts.windows(2) {
        let segment = &keys[window[0]..window[1]];
        let mut start = 0;
        while start < segment.len() {
            let item = item_of(segment[start]);
            let mut end = start + 1;
            while end < segment.len() && item_of(segment[end]) == item {
                end += 1;
            }
            if end - start > 1 {
                group.clear();
                group.extend(segment[start..end].iter().map(|&key| row_of(key)));
                let rows = &group[..];
                if rule == Dedupe::Error {
                    let (first, second) = (rows[0] as usize, rows[1] as usize);
                    return Err(IngestError::Duplicates {
                        reason: format!(
                            "input.dedupe = \"error\": user {} and item {} appear in rows {} and {} of the input (after missing values were dropped){}; set input.dedupe to first, last, sum, mean or max to combine them, or keep to treat them as separate observations",
                            ratings.user_ids.display(ratings.user[first] as usize),
                            ratings.item_ids.display(ratings.item[first] as usize),
                            first + 1,
                            second + 1,
                            if rows.len() > 2 {
                                format!(" ({} rows in all)", rows.len())
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
                let values = rows.iter().map(|&row| ratings.rating[row as usize]);
                let combined = match rule {
                    Dedupe::First => ratings.rating[rows[0] as usize],
                    Dedupe::Last => ratings.rating[rows[rows.len() - 1] as usize],
                    Dedupe::Sum => values.map(f64::from).sum::<f64>() as f32,
                    Dedupe::Mean => (values.map(f64::from).sum::<f64>() / rows.len() as f64) as f32,
                    Dedupe::Max => values.fold(f32::NEG_INFINITY, f32::max),
                    Dedupe::Keep | Dedupe::Error => unreachable!("handled above"),
                };
                value[rows[0] as usize] = combined;
                if let Some(times) = times.as_deref_mut() {
                    let latest = rows
                        .iter()
                        .map(|&row| times[row as usize])
                        .fold(f64::NEG_INFINITY, f64::max);
                    times[rows[0] as usize] = latest;
                }
                for &row in &rows[1..] {
                    keep[row as usize] = false;
                }
                merged += rows.len() - 1;
            }
            start = end;
        }
    }
    if merged == 0 {
        return Ok(0);
    }
    let kept = |values: &[u32]| -> Vec<u32> {
        values
            .iter()
            .zip(&keep)
            .filter_map(|(value, kept)| kept.then_some(*value))
            .collect()
    };
    if let Some(times) = times {
        *times = keep_where(std::mem::take(times), &keep);
    }
    ratings.user = kept(&ratings.user);
    ratings.item = kept(&ratings.item);
    ratings.rating = keep_where(value, &keep);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Ids;

    fn ratings(rows: &[(u32, u32, f32)]) -> Ratings {
        Ratings {
            user_ids: Ids::Integer((0..10).collect()),
            item_ids: Ids::Integer((100..110).collect()),
            user: rows.iter().map(|row| row.0).collect(),
            item: rows.iter().map(|row| row.1).collect(),
            rating: rows.iter().map(|row| row.2).collect(),
        }
    }

    const ROWS: [(u32, u32, f32); 5] = [
        (0, 1, 1.0),
        (1, 1, 5.0),
        (0, 1, 3.0),
        (2, 0, 2.0),
        (0, 1, 2.0),
    ];

    #[test]
    fn each_rule_combines_a_pair_where_its_first_row_was() {
        for (rule, expected) in [
            (Dedupe::First, 1.0),
            (Dedupe::Last, 2.0),
            (Dedupe::Sum, 6.0),
            (Dedupe::Mean, 2.0),
            (Dedupe::Max, 3.0),
        ] {
            let mut data = ratings(&ROWS);
            assert_eq!(apply(&mut data, None, rule).unwrap(), 2, "{rule:?}");
            assert_eq!(data.user, vec![0, 1, 2], "{rule:?}");
            assert_eq!(data.item, vec![1, 1, 0], "{rule:?}");
            assert_eq!(data.rating, vec![expected, 5.0, 2.0], "{rule:?}");
        }
    }

    #[test]
    fn a_merged_pair_takes_its_latest_time() {
        let mut data = ratings(&ROWS);
        let mut times = vec![10.0, 20.0, 50.0, 40.0, 30.0];
        apply(&mut data, Some(&mut times), Dedupe::First).unwrap();
        assert_eq!(times, vec![50.0, 20.0, 40.0]);
    }

    #[test]
    fn keep_changes_nothing_and_error_names_the_pair_and_rows() {
        let mut data = ratings(&ROWS);
        assert_eq!(apply(&mut data, None, Dedupe::Keep).unwrap(), 0);
        assert_eq!(data.len(), 5);
        let message = apply(&mut data, None, Dedupe::Error)
            .unwrap_err()
            .to_string();
        assert!(message.contains("user 0 and item 101"), "{message}");
        assert!(message.contains("rows 1 and 3"), "{message}");
        assert!(message.contains("3 rows in all"), "{message}");
    }
}
