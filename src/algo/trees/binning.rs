//! Quantile binning: every feature value becomes a small bin number once, before any tree is
//! grown, so split search scans at most `max_bins` histogram cells instead of sorting values.
//!
//! Numeric features: bin 0 holds missing values (NaN); bins `1..=n` hold values, split at
//! thresholds halfway between neighbouring distinct values of a sample (every distinct value
//! keeps its own bin when there are at most `max_bins` of them, otherwise LightGBM's greedy cuts
//! with zero in a bin of its own).
//! A value `x` is in bin `b > 1` when `thresholds[b - 2] < x <= thresholds[b - 1]`, the same
//! test the saved trees apply to raw values, so training and prediction agree exactly.
//! Categorical features: bin = category index.
//!
//! The matrix is row-major (one row's bins are adjacent) because histograms are built row by
//! row: a row's gradient statistics are loaded once and added into every feature's histogram.

use rayon::prelude::*;

use crate::dataset::split::{mix, unit};
use crate::dataset::tabular::{FeatureKind, Tabular};

/// Rows sampled to place the cuts (LightGBM samples 200,000 too; Spark far fewer).
const SAMPLE_ROWS: usize = 200_000;
const SAMPLE_STREAM: u64 = 0x4249_4E53;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FeatureBins {
    /// Value bins `1..=thresholds.len() + 1`; bin 0 is missing.
    Numeric {
        thresholds: Vec<f64>,
    },
    Categorical {
        categories: usize,
    },
}

impl FeatureBins {
    /// Number of histogram cells, missing bin included.
    pub fn cells(&self) -> usize {
        match self {
            FeatureBins::Numeric { thresholds } => thresholds.len() + 2,
            // At least one cell, so `bin` (which gives 0 here) is always below `cells`.
            FeatureBins::Categorical { categories } => (*categories).max(1),
        }
    }

    pub fn bin(&self, value: f32) -> usize {
        match self {
            FeatureBins::Numeric { thresholds } => {
                if value.is_nan() {
                    0
                } else {
                    let value = f64::from(value);
                    1 + thresholds.partition_point(|&threshold| threshold < value)
                }
            }
            FeatureBins::Categorical { categories } => {
                (value.max(0.0) as usize).min(categories.saturating_sub(1))
            }
        }
    }
}

/// The rows whose values place the cuts (`None`: all of them): each row with probability
/// `SAMPLE_ROWS / rows`, drawn by row number, so every column of a table samples the same rows
/// and the draws are made once for all of them.
fn sampled_rows(rows: usize, seed: u64) -> Option<Vec<u32>> {
    let stream = mix(seed, SAMPLE_STREAM);
    let fraction = SAMPLE_ROWS as f64 / rows.max(1) as f64;
    (fraction < 1.0).then(|| {
        (0..rows as u32)
            .into_par_iter()
            .filter(|&row| unit(stream, u64::from(row)) < fraction)
            .collect()
    })
}

/// Cut points for one numeric column, at most `max_bins` value bins, placed on its values at
/// the sampled `rows` (all rows for `None`; see [`sampled_rows`]).
fn thresholds_of_sample(values: &[f32], rows: Option<&[u32]>, max_bins: usize) -> Vec<f64> {
    let mut sample: Vec<f32> = match rows {
        None => values
            .iter()
            .copied()
            .filter(|value| !value.is_nan())
            .collect(),
        Some(rows) => rows
            .iter()
            .map(|&row| values[row as usize])
            .filter(|value| !value.is_nan())
            .collect(),
    };
    sort_total(&mut sample);
    let mut distinct: Vec<(f32, usize)> = Vec::new();
    for value in sample {
        match distinct.last_mut() {
            // -0.0 and 0.0 are one value for `<=`.
            Some((last, count)) if *last == value => *count += 1,
            _ => distinct.push((value, 1)),
        }
    }
    let midpoint = cut_between;
    if distinct.len() <= max_bins {
        // Every distinct value its own bin.
        return greedy_thresholds(&distinct, max_bins);
    }
    // Zero is a bin of its own (sparse columns: zero is "nothing", and a cut next to it is the
    // split that matters), and the negative and positive values share the other bins by their
    // row counts, each part binned greedily. LightGBM bins the same way.
    let zeros: usize = distinct
        .iter()
        .filter(|(value, _)| *value == 0.0)
        .map(|(_, count)| count)
        .sum();
    let negative = distinct.partition_point(|(value, _)| *value < 0.0);
    let positive = distinct.partition_point(|(value, _)| *value <= 0.0);
    let (below, above) = (&distinct[..negative], &distinct[positive..]);
    if zeros == 0 && (below.is_empty() || above.is_empty()) {
        return greedy_thresholds(&distinct, max_bins);
    }
    let parts =
        usize::from(!below.is_empty()) + usize::from(zeros > 0) + usize::from(!above.is_empty());
    if max_bins < parts {
        return greedy_thresholds(&distinct, max_bins);
    }
    let rows = |part: &[(f32, usize)]| part.iter().map(|(_, count)| count).sum::<usize>();
    // Value bins left once zero has its own, split between the two signs by their rows.
    let signed_bins = max_bins - usize::from(zeros > 0);
    let below_bins = if below.is_empty() {
        0
    } else {
        let share = rows(below) as f64 / (rows(below) + rows(above)) as f64;
        ((share * signed_bins as f64) as usize)
            .clamp(1, signed_bins - usize::from(!above.is_empty()))
    };
    let mut thresholds = greedy_thresholds(below, below_bins);
    if let (Some(last), Some(next)) = (below.last(), distinct.get(negative)) {
        thresholds.push(midpoint(last.0, next.0));
    }
    if let Some(first) = above.first() {
        if zeros > 0 {
            thresholds.push(midpoint(distinct[positive - 1].0, first.0));
        }
        thresholds.extend(greedy_thresholds(above, signed_bins - below_bins));
    }
    thresholds
}

/// Sorts `values` (no NaN) in `f32::total_cmp` order by a radix sort of their order-preserving
/// bit patterns, four passes of a byte (a pass whose byte is the same for all is skipped).
/// Sorting every column's 200,000-value sample by comparisons was most of the cut placement,
/// itself a tenth of a short boosting fit. Written here rather than taken from a crate: it is
/// a dozen lines, and the exact order (-0.0 before 0.0) is what the cuts are tested against.
fn sort_total(values: &mut [f32]) {
    let key = |value: f32| {
        let bits = value.to_bits();
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | 1 << 31
        }
    };
    let mut keys: Vec<u32> = values.iter().map(|&value| key(value)).collect();
    let mut moved = vec![0u32; keys.len()];
    for shift in [0, 8, 16, 24] {
        let mut starts = [0usize; 256];
        for &key in &keys {
            starts[(key >> shift) as usize & 0xff] += 1;
        }
        if starts.contains(&keys.len()) {
            continue;
        }
        let mut at = 0;
        for start in starts.iter_mut() {
            (*start, at) = (at, at + *start);
        }
        for &key in &keys {
            let bucket = &mut starts[(key >> shift) as usize & 0xff];
            moved[*bucket] = key;
            *bucket += 1;
        }
        std::mem::swap(&mut keys, &mut moved);
    }
    for (value, key) in values.iter_mut().zip(keys) {
        *value = f32::from_bits(if key >> 31 == 1 {
            key & !(1 << 31)
        } else {
            !key
        });
    }
}

/// Cuts for sorted distinct `(value, rows)` pairs, at most `max_bins` bins. Greedy, as
/// LightGBM's bin finder: a value that alone holds a bin's share of the rows (a heavy mass)
/// gets a bin to itself, and the other values fill bins of an equal share of the rows the
/// heavy ones leave, recomputed after every cut. The values before a heavy one close their bin
/// early only once it holds half a share, so no bin is spent on a few stray rows. Fixed
/// quantiles would spend the bins a heavy mass "owns" on the next few distinct values, one
/// each, and leave the rest of the range coarse.
fn greedy_thresholds(distinct: &[(f32, usize)], max_bins: usize) -> Vec<f64> {
    let midpoint = cut_between;
    if max_bins <= 1 {
        return Vec::new();
    }
    if distinct.len() <= max_bins {
        return distinct
            .windows(2)
            .map(|pair| midpoint(pair[0].0, pair[1].0))
            .collect();
    }
    let total: usize = distinct.iter().map(|(_, count)| count).sum();
    let heavy_share = total as f64 / max_bins as f64;
    let heavy: Vec<bool> = distinct
        .iter()
        .map(|(_, count)| *count as f64 >= heavy_share)
        .collect();
    let heavy_rows: usize = distinct
        .iter()
        .zip(&heavy)
        .filter(|(_, heavy)| **heavy)
        .map(|((_, count), _)| count)
        .sum();
    let heavy_count = heavy.iter().filter(|heavy| **heavy).count();
    let mut rows_left = (total - heavy_rows) as f64;
    let mut bins_left = max_bins.saturating_sub(heavy_count).max(1) as f64;
    let mut share = rows_left / bins_left;
    let mut thresholds = Vec::with_capacity(max_bins - 1);
    let mut current = 0usize;
    for index in 0..distinct.len() - 1 {
        let count = distinct[index].1;
        if !heavy[index] {
            rows_left -= count as f64;
        }
        current += count;
        let before_heavy = heavy[index + 1] && current as f64 >= (share / 2.0).max(1.0);
        if heavy[index] || current as f64 >= share || before_heavy {
            thresholds.push(midpoint(distinct[index].0, distinct[index + 1].0));
            if thresholds.len() >= max_bins - 1 {
                break;
            }
            current = 0;
            if !heavy[index] {
                bins_left = (bins_left - 1.0).max(1.0);
                share = rows_left / bins_left;
            }
        }
    }
    thresholds
}

/// A cut between neighbouring values `low < high`: halfway between the two adjacent f32
/// numbers around their midpoint, so no f32 value sits on it. Python users feed LightGBM f64
/// values that we store as f32; an f64 `x` and its f32 rounding then fall on the same side of
/// every cut, and the exported model predicts what ours does.
fn cut_between(low: f32, high: f32) -> f64 {
    let middle = (f64::from(low) + f64::from(high)) / 2.0;
    let mut below = middle as f32;
    if f64::from(below) > middle {
        below = below.next_down();
    }
    (f64::from(below) + f64::from(below.next_up())) / 2.0
}

/// Bin numbers as bytes, or as 16-bit numbers when `max_bins` needs them.
#[derive(Clone, Debug, PartialEq)]
pub enum BinStore {
    Narrow(Vec<u8>),
    Wide(Vec<u16>),
}

/// The whole table as bin numbers, row-major, with each feature's histogram offset.
///
/// Invariant, relied on by the histogram pass's unchecked adds: every stored bin of feature
/// `f` is below `offsets[f + 1] - offsets[f]` (`FeatureBins::bin` is below `cells`), and
/// `offsets` has `features + 1` entries. Only [`BinnedMatrix::with_bins`] builds one.
#[derive(Clone, Debug)]
pub struct BinnedMatrix {
    pub rows: usize,
    pub features: usize,
    /// Row-major: one row's bins are adjacent (histogram construction).
    pub store: BinStore,
    /// Column-major copy: one feature's bins are adjacent (partitioning rows at a split and
    /// walking trees touch one feature of many rows; from the row-major store each would cost
    /// a cache line).
    pub by_column: BinStore,
    pub bins: Vec<FeatureBins>,
    /// Feature `f`'s cells are `offsets[f]..offsets[f + 1]` of a histogram.
    pub offsets: Vec<usize>,
}

impl BinnedMatrix {
    /// Places the cuts on `table` and bins it.
    pub fn fit(table: &Tabular, max_bins: usize, seed: u64) -> BinnedMatrix {
        let rows = sampled_rows(table.rows(), seed);
        let bins: Vec<FeatureBins> = table
            .features
            .par_iter()
            .zip(&table.kinds)
            .map(|(column, kind)| match kind {
                FeatureKind::Numeric => FeatureBins::Numeric {
                    thresholds: thresholds_of_sample(column, rows.as_deref(), max_bins),
                },
                FeatureKind::Categorical { names } => FeatureBins::Categorical {
                    categories: names.len().max(1),
                },
            })
            .collect();
        Self::with_bins(table, bins)
    }

    /// Bins `table` with cuts placed before (the validation part with the training cuts).
    pub fn with_bins(table: &Tabular, bins: Vec<FeatureBins>) -> BinnedMatrix {
        let rows = table.rows();
        let features = table.columns();
        let mut offsets = Vec::with_capacity(features + 1);
        offsets.push(0);
        for feature in &bins {
            offsets.push(offsets.last().copied().unwrap_or(0) + feature.cells());
        }
        let widest = bins.iter().map(FeatureBins::cells).max().unwrap_or(1);
        let store = if widest <= 256 {
            BinStore::Narrow(bin_rows(table, &bins, |bin| bin as u8))
        } else {
            BinStore::Wide(bin_rows(table, &bins, |bin| bin as u16))
        };
        let by_column = match &store {
            BinStore::Narrow(bins) => BinStore::Narrow(transpose(bins, rows, features)),
            BinStore::Wide(bins) => BinStore::Wide(transpose(bins, rows, features)),
        };
        BinnedMatrix {
            rows,
            features,
            store,
            by_column,
            bins,
            offsets,
        }
    }

    pub fn cells(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    pub fn bin(&self, row: usize, feature: usize) -> usize {
        let at = feature * self.rows + row;
        match &self.by_column {
            BinStore::Narrow(bins) => bins[at] as usize,
            BinStore::Wide(bins) => bins[at] as usize,
        }
    }
}

/// Every row's bins, row-major, in parallel over fixed chunks of rows.
fn bin_rows<B: Copy + Default + Send>(
    table: &Tabular,
    bins: &[FeatureBins],
    narrow: impl Fn(usize) -> B + Sync,
) -> Vec<B> {
    const CHUNK: usize = 8192;
    let features = table.columns().max(1);
    let mut out = vec![B::default(); table.rows() * table.columns()];
    out.par_chunks_mut(CHUNK * features)
        .enumerate()
        .for_each(|(chunk, out)| {
            for (local, row_out) in out.chunks_mut(features).enumerate() {
                let row = chunk * CHUNK + local;
                for (feature, cell) in row_out.iter_mut().enumerate() {
                    *cell = narrow(bins[feature].bin(table.features[feature][row]));
                }
            }
        });
    out
}

fn transpose<B: Copy + Default + Send + Sync>(
    row_major: &[B],
    rows: usize,
    features: usize,
) -> Vec<B> {
    let mut out = vec![B::default(); rows * features];
    if rows == 0 {
        return out;
    }
    out.par_chunks_mut(rows)
        .enumerate()
        .for_each(|(feature, column)| {
            for (row, cell) in column.iter_mut().enumerate() {
                *cell = row_major[row * features + feature];
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One column's cuts as [`BinnedMatrix::fit`] places them.
    fn numeric_thresholds(values: &[f32], max_bins: usize, seed: u64) -> Vec<f64> {
        thresholds_of_sample(
            values,
            sampled_rows(values.len(), seed).as_deref(),
            max_bins,
        )
    }

    #[test]
    fn the_radix_sort_gives_the_total_order() {
        for length in [0usize, 1, 2, 1000, 70_000] {
            let mut values: Vec<f32> = (0..length)
                .map(|k| {
                    let unit = unit(11, k as u64);
                    match k % 9 {
                        0 => -0.0,
                        1 => 0.0,
                        2 => f32::INFINITY,
                        3 => f32::NEG_INFINITY,
                        4 => f32::from_bits(k as u32 % 100),
                        5 => (unit as f32) * 3.0,
                        _ => ((unit - 0.5) * 1e6) as f32,
                    }
                })
                .collect();
            let mut expected = values.clone();
            expected.sort_unstable_by(f32::total_cmp);
            sort_total(&mut values);
            let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&values), bits(&expected), "{length} values");
        }
    }

    #[test]
    fn few_distinct_values_keep_their_own_bins() {
        let values = [3.0, 1.0, 2.0, 2.0, f32::NAN, 1.0];
        let thresholds = numeric_thresholds(&values, 32, 1);
        assert_eq!(thresholds.len(), 2);
        assert!((thresholds[0] - 1.5).abs() < 1e-6 && (thresholds[1] - 2.5).abs() < 1e-6);
        let bins = FeatureBins::Numeric { thresholds };
        let binned: Vec<usize> = values.iter().map(|&v| bins.bin(v)).collect();
        assert_eq!(binned, vec![3, 1, 2, 2, 0, 1]);
    }

    #[test]
    fn cuts_never_sit_on_an_f32_value() {
        // -0.0440 and -0.0436 have -0.0438 (an f32) as their exact f64 midpoint.
        for (low, high) in [(-0.044f32, -0.0436f32), (1.0, 3.0), (0.1, 0.1f32.next_up())] {
            let cut = cut_between(low, high);
            assert!(f64::from(low) < cut && cut < f64::from(high));
            assert_ne!(f64::from(cut as f32), cut, "{low} {high}");
        }
    }

    #[test]
    fn zero_keeps_its_own_bin_between_negative_and_positive_values() {
        // 60% zeros, a fifth of the rest negative; also a heavy positive value (7.0), whose bin
        // ends at it (the few values just below may join it, as in LightGBM).
        let values: Vec<f32> = (0..20_000)
            .map(|i| match i % 10 {
                0 => -1.0 - ((i * 7919) % 997) as f32 / 10.0,
                1..=3 => 1.0 + ((i * 104_729) % 9973) as f32 / 100.0,
                4 => 7.0,
                _ => 0.0,
            })
            .collect();
        for max_bins in [3, 4, 16, 32, 255] {
            let thresholds = numeric_thresholds(&values, max_bins, 5);
            assert!(thresholds.len() < max_bins, "{max_bins}: {thresholds:?}");
            assert!(thresholds.windows(2).all(|pair| pair[0] < pair[1]));
            let bins = FeatureBins::Numeric { thresholds };
            let zero = bins.bin(0.0);
            assert!(bins.bin(-1.0) < zero && zero < bins.bin(1.0), "{max_bins}");
            if max_bins >= 16 {
                let heavy = bins.bin(7.0);
                assert!(
                    values.iter().all(|&v| v <= 7.0 || bins.bin(v) > heavy),
                    "a bin ends at 7.0 ({max_bins} bins): {bins:?}"
                );
                // Negatives hold a fifth of the non-zero rows and a fifth of the other bins.
                let negative_bins = zero - 1;
                assert_eq!(negative_bins, (max_bins - 1) / 5, "{max_bins}");
            }
        }
        // Two bins cannot hold three parts: plain greedy cuts instead.
        assert_eq!(numeric_thresholds(&values, 2, 5).len(), 1);
    }

    #[test]
    fn a_heavy_mass_gets_one_bin_and_the_rest_of_the_range_shares_the_others() {
        // 90% zeros, the rest spread over (0, 100].
        let values: Vec<f32> = (0..20_000)
            .map(|i| {
                if i % 10 == 0 {
                    1.0 + ((i * 7919) % 9973) as f32 / 100.0
                } else {
                    0.0
                }
            })
            .collect();
        let thresholds = numeric_thresholds(&values, 32, 5);
        assert_eq!(thresholds.len(), 31);
        let bins = FeatureBins::Numeric { thresholds };
        let mut counts = vec![0usize; 33];
        values
            .iter()
            .for_each(|&value| counts[bins.bin(value)] += 1);
        assert_eq!(counts[1], 18_000, "the zeros: {counts:?}");
        // The 2,000 other values share 31 bins evenly (about 65 each).
        assert!(
            counts[2..].iter().all(|&count| (40..=100).contains(&count)),
            "{counts:?}"
        );
    }

    #[test]
    fn binning_is_monotone_and_respects_max_bins() {
        let values: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 10_007) as f32 / 3.0)
            .collect();
        for max_bins in [2, 16, 32, 255] {
            let thresholds = numeric_thresholds(&values, max_bins, 3);
            assert!(thresholds.len() < max_bins);
            assert!(
                thresholds.len() + 1 >= max_bins * 9 / 10,
                "{max_bins}: {}",
                thresholds.len()
            );
            assert!(thresholds.windows(2).all(|pair| pair[0] < pair[1]));
            let bins = FeatureBins::Numeric { thresholds };
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            let binned: Vec<usize> = sorted.iter().map(|&v| bins.bin(v)).collect();
            assert!(binned.windows(2).all(|pair| pair[0] <= pair[1]));
            assert_eq!(binned[0], 1);
        }
    }
}
