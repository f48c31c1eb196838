//! Seeded random choices that depend only on (seed, row number): the train/test split and row
//! sampling give the same rows whatever the thread count or file chunking.

/// A well-mixed 64-bit hash of `(seed, index)` (the SplitMix64 finalizer).
pub fn mix(seed: u64, index: u64) -> u64 {
    let mut z = base(seed).wrapping_add(index);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `mix(seed, index)` is the SplitMix64 finalizer of `base(seed) + index` (wrapping): the
/// Spark engine computes the same numbers in Spark SQL from this base.
pub fn base(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x632B_E59B_D9B4_E019)
}

/// A uniform number in [0, 1) from `(seed, index)`.
pub fn unit(seed: u64, index: u64) -> f64 {
    (mix(seed, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Stream of the split, kept apart from other uses of the job seed.
pub const SPLIT_STREAM: u64 = 0x0053_504C_4954;

/// Which rows are in the test part: each goes there with probability `test_fraction`.
pub fn test_mask(rows: usize, test_fraction: f64, seed: u64) -> Vec<bool> {
    use rayon::prelude::*;
    let stream = mix(seed, SPLIT_STREAM);
    // Each row's draw depends only on its number, so the pool can draw them in any order.
    (0..rows)
        .into_par_iter()
        .map(|row| unit(stream, row as u64) < test_fraction)
        .collect()
}

/// Row numbers of the training and test parts (the rows of [`test_mask`]).
pub fn train_test(rows: usize, test_fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mask = test_mask(rows, test_fraction, seed);
    let pick = |want: bool| {
        (0..rows as u32)
            .filter(|&row| mask[row as usize] == want)
            .collect()
    };
    (pick(false), pick(true))
}

/// Rows at or after `cutoff` go to test (`split.method = "time"`); times are in the unit the
/// ingest gives them (seconds since the Unix epoch for dates, the number itself otherwise).
pub fn time_mask(times: &[f64], cutoff: f64) -> Vec<bool> {
    times.iter().map(|&time| time >= cutoff).collect()
}

/// The cutoff that leaves the last `fraction` of the time range `[min, max]` to test.
pub fn fraction_cutoff(times: &[f64], fraction: f64) -> f64 {
    let (low, high) = times
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &time| {
            (low.min(time), high.max(time))
        });
    if low > high {
        return f64::INFINITY;
    }
    high - fraction * (high - low)
}

/// Each user's last `n` rows by time go to test (`split.method = "per_user_last"`); equal
/// times keep input order (the later row is the later interaction). A user keeps at least
/// one row for training, so that no user is held out whole.
pub fn per_user_last_mask(users: &[u32], times: &[f64], n: usize) -> Vec<bool> {
    let mut order: Vec<u32> = (0..users.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        users[a]
            .cmp(&users[b])
            .then(times[a].total_cmp(&times[b]))
            .then(a.cmp(&b))
    });
    let mut is_test = vec![false; users.len()];
    let mut start = 0;
    while start < order.len() {
        let user = users[order[start] as usize];
        let mut end = start + 1;
        while end < order.len() && users[order[end] as usize] == user {
            end += 1;
        }
        let held = n.min(end - start - 1);
        for &row in &order[end - held..end] {
            is_test[row as usize] = true;
        }
        start = end;
    }
    is_test
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_rules_assign_exact_rows() {
        let times = [5.0, 1.0, 9.0, 3.0, 7.0];
        assert_eq!(
            time_mask(&times, 7.0),
            vec![false, false, true, false, true]
        );
        assert_eq!(fraction_cutoff(&times, 0.25), 7.0);
        assert_eq!(fraction_cutoff(&[], 0.25), f64::INFINITY);
        // User 0: rows 0 (t 5), 2 (t 9), 4 (t 7); user 1: rows 1, 3 at equal times; user 2
        // has one row, which stays in training.
        let users = [0, 1, 0, 1, 0, 2];
        let times = [5.0, 2.0, 9.0, 2.0, 7.0, 1.0];
        assert_eq!(
            per_user_last_mask(&users, &times, 1),
            vec![false, false, true, true, false, false]
        );
        assert_eq!(
            per_user_last_mask(&users, &times, 2),
            vec![false, false, true, true, true, false]
        );
    }

    #[test]
    fn split_is_a_seeded_partition_near_the_fraction() {
        let (train, test) = train_test(100_000, 0.2, 42);
        assert_eq!(train.len() + test.len(), 100_000);
        assert!((test.len() as f64 / 100_000.0 - 0.2).abs() < 0.01);
        assert_eq!(train_test(100_000, 0.2, 42), (train.clone(), test));
        assert_ne!(train_test(100_000, 0.2, 43).0, train);
        assert!(train_test(10, 0.0, 1).1.is_empty());
        let stream = mix(42, SPLIT_STREAM);
        assert_eq!(mix(stream, 12345), {
            let mut z = base(stream).wrapping_add(12345);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        });
    }
}
