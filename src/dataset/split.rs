//! Seeded random choices that depend only on (seed, row number): the train/test split and row
//! sampling give the same rows whatever the thread count or file chunking.

/// A well-mixed 64-bit hash of `(seed, index)` (the SplitMix64 finalizer).
pub fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from `(seed, index)`.
pub fn unit(seed: u64, index: u64) -> f64 {
    (mix(seed, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Stream of the split, kept apart from other uses of the job seed.
const SPLIT_STREAM: u64 = 0x0053_504C_4954;

/// Row numbers of the training and test parts; each row goes to test with probability
/// `test_fraction`.
pub fn train_test(rows: usize, test_fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut train = Vec::with_capacity(rows);
    let mut test = Vec::with_capacity((rows as f64 * test_fraction * 1.1) as usize + 16);
    let stream = mix(seed, SPLIT_STREAM);
    for row in 0..rows {
        if unit(stream, row as u64) < test_fraction {
            test.push(row as u32);
        } else {
            train.push(row as u32);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition_near_the_fraction() {
        let (train, test) = train_test(100_000, 0.2, 42);
        assert_eq!(train.len() + test.len(), 100_000);
        assert!((test.len() as f64 / 100_000.0 - 0.2).abs() < 0.01);
        assert_eq!(train_test(100_000, 0.2, 42), (train.clone(), test));
        assert_ne!(train_test(100_000, 0.2, 43).0, train);
        assert!(train_test(10, 0.0, 1).1.is_empty());
    }
}
