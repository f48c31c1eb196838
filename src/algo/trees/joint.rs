//! Histograms over pairs of features, for nodes with many rows: with few bins per feature
//! (Spark's default is 32), a row adds its statistics once per pair of features, into the
//! pair's joint cell, and each feature's histogram is then the sum of the joint cells along
//! the other feature.
//!
//! The histogram pass is bound by its instructions (per feature: load the bin, load the
//! feature's offset, load, add and store the cell). Here a row reads one precomputed cell
//! number per pair and adds once per pair: half the adds and no offset loads. The joint
//! histogram is larger (33 x 33 cells per pair at 32 bins, about 240 KB for 28 features, in
//! L2 instead of L1), and the adds then wait on L2: on the benchmark's 1M x 28 table the pass
//! took 29% fewer samples but the boosting fit only 4-5% less time. Summing the joint cells
//! along each feature costs a few cells per row of a large node, so small nodes keep the
//! direct pass.

use rayon::prelude::*;

use super::binning::{BinStore, BinnedMatrix};
use super::learner::prefetch;

/// Most joint cells a pair may have: 33 x 33 (32 bins and the missing bin) fits, 64 bins do
/// not (their joint histogram would no longer fit L2 beside the rest).
const PAIR_CELLS: usize = 2048;
/// Rows per partial joint histogram; fixed, so sums do not depend on the thread count.
const CHUNK: usize = 65_536;

/// One group of features with its cells in the joint histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Group {
    /// Features `first` and `second` (of `second_cells` cells): the joint cell of bins
    /// `(a, b)` is `offset + a * second_cells + b`.
    Pair {
        first: usize,
        second: usize,
        second_cells: usize,
        offset: usize,
    },
    /// A feature with too many bins to pair: cell `offset + bin`.
    Single { feature: usize, offset: usize },
}

impl Group {
    /// The joint cell of a row with bins `row_bins` (one per feature).
    fn cell(self, row_bins: &[u8]) -> usize {
        match self {
            Group::Pair {
                first,
                second,
                second_cells,
                offset,
            } => {
                offset + usize::from(row_bins[first]) * second_cells + usize::from(row_bins[second])
            }
            Group::Single { feature, offset } => offset + usize::from(row_bins[feature]),
        }
    }
}

/// Each row's cell number per group, row-major, over a [`BinnedMatrix`]'s bins.
///
/// Invariant, relied on by the unchecked adds: every cell number is below `cells`.
#[derive(Clone, Debug)]
pub struct JointBins {
    groups: Vec<Group>,
    cells: usize,
    index: Vec<u16>,
}

impl JointBins {
    /// Pairs neighbouring features whose joint cells fit [`PAIR_CELLS`]; `None` when no pair
    /// forms, when the bins are stored in two bytes, or when the joint histogram would need
    /// cell numbers past 16 bits.
    pub fn new(matrix: &BinnedMatrix) -> Option<JointBins> {
        let BinStore::Narrow(bins) = &matrix.store else {
            return None;
        };
        let cells_of = |feature: usize| matrix.bins[feature].cells();
        let mut groups = Vec::new();
        let mut cells = 0;
        let mut feature = 0;
        while feature < matrix.features {
            let next = feature + 1;
            if next < matrix.features && cells_of(feature) * cells_of(next) <= PAIR_CELLS {
                groups.push(Group::Pair {
                    first: feature,
                    second: next,
                    second_cells: cells_of(next),
                    offset: cells,
                });
                cells += cells_of(feature) * cells_of(next);
                feature += 2;
            } else {
                groups.push(Group::Single {
                    feature,
                    offset: cells,
                });
                cells += cells_of(feature);
                feature += 1;
            }
        }
        let pairs = groups
            .iter()
            .filter(|group| matches!(group, Group::Pair { .. }))
            .count();
        if pairs == 0 || cells > usize::from(u16::MAX) + 1 {
            return None;
        }
        let columns = matrix.features;
        let width = groups.len();
        let mut index = vec![0u16; matrix.rows * width];
        if matrix.rows > 0 {
            index
                .par_chunks_mut(CHUNK * width)
                .enumerate()
                .for_each(|(chunk, out)| {
                    for (local, out) in out.chunks_mut(width).enumerate() {
                        let row = chunk * CHUNK + local;
                        let row_bins = &bins[row * columns..(row + 1) * columns];
                        for (slot, group) in out.iter_mut().zip(&groups) {
                            // Below `cells` (at most 65,536) by the matrix's invariant.
                            *slot = group.cell(row_bins) as u16;
                        }
                    }
                });
        }
        Some(JointBins {
            groups,
            cells,
            index,
        })
    }

    /// Whether `rows` rows are enough for the joint pass to beat the direct one: it saves an
    /// add per pair and row, and costs clearing and summing the joint cells.
    pub fn pays_for(&self, matrix: &BinnedMatrix, rows: usize) -> bool {
        let saved = matrix.features - self.groups.len();
        rows * saved >= 8 * self.cells
    }

    /// Adds the statistics of `rows` (two numbers a row, row-major in `stats`) into `out`,
    /// the per-feature histogram of `matrix` (`matrix.cells() x 2` numbers).
    pub fn build(&self, matrix: &BinnedMatrix, stats: &[f64], rows: &[u32], out: &mut [f64]) {
        const WIDTH: usize = 2;
        assert!(
            out.len() >= matrix.cells() * WIDTH && stats.len() >= matrix.rows * WIDTH,
            "histogram of {} values for {} cells",
            out.len(),
            matrix.cells()
        );
        let joint = if rows.len() <= CHUNK {
            self.accumulate(stats, rows)
        } else {
            let partials: Vec<Vec<f64>> = rows
                .par_chunks(CHUNK)
                .map(|chunk| self.accumulate(stats, chunk))
                .collect();
            let mut partials = partials.into_iter();
            let mut joint = partials.next().unwrap_or_default();
            for partial in partials {
                for (total, value) in joint.iter_mut().zip(&partial) {
                    *total += value;
                }
            }
            joint
        };
        for group in &self.groups {
            match *group {
                Group::Pair {
                    first,
                    second,
                    second_cells,
                    offset,
                } => {
                    let first_cells = matrix.bins[first].cells();
                    let block =
                        &joint[offset * WIDTH..(offset + first_cells * second_cells) * WIDTH];
                    let first_out = matrix.offsets[first] * WIDTH;
                    let second_out = matrix.offsets[second] * WIDTH;
                    for (a, line) in block.chunks_exact(second_cells * WIDTH).enumerate() {
                        for (b, cell) in line.chunks_exact(WIDTH).enumerate() {
                            for lane in 0..WIDTH {
                                out[first_out + a * WIDTH + lane] += cell[lane];
                                out[second_out + b * WIDTH + lane] += cell[lane];
                            }
                        }
                    }
                }
                Group::Single { feature, offset } => {
                    let block =
                        &joint[offset * WIDTH..(offset + matrix.bins[feature].cells()) * WIDTH];
                    let start = matrix.offsets[feature] * WIDTH;
                    for (total, value) in out[start..start + block.len()].iter_mut().zip(block) {
                        *total += value;
                    }
                }
            }
        }
    }

    /// The joint histogram of `rows`, summed in row order.
    fn accumulate(&self, stats: &[f64], rows: &[u32]) -> Vec<f64> {
        const WIDTH: usize = 2;
        let mut joint = vec![0.0; self.cells * WIDTH];
        let groups = self.groups.len();
        let cells = joint.as_mut_ptr();
        // As in the direct pass: a node's rows below the root are scattered, so the row's
        // cell numbers and statistics are fetched a few rows ahead.
        const AHEAD: usize = 24;
        for (position, &row) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(position + AHEAD) {
                prefetch(&self.index, ahead as usize * groups);
                prefetch(stats, ahead as usize * WIDTH);
            }
            let row = row as usize;
            let row_stats: [f64; WIDTH] = stats[row * WIDTH..row * WIDTH + WIDTH]
                .try_into()
                .unwrap_or([0.0; WIDTH]);
            for &cell in &self.index[row * groups..(row + 1) * groups] {
                let cell = usize::from(cell) * WIDTH;
                debug_assert!(cell + WIDTH <= self.cells * WIDTH);
                for (lane, value) in row_stats.into_iter().enumerate() {
                    // SAFETY: every cell number is below `self.cells` (the type's
                    // invariant), so `cell + lane < joint.len()`; `joint` is owned here and
                    // only written through `cells`.
                    unsafe { *cells.add(cell + lane) += value };
                }
            }
        }
        joint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::trees::binning::BinnedMatrix;
    use crate::algo::trees::learner::{RowStats, build_histogram};
    use crate::dataset::Tabular;
    use crate::dataset::split::unit;

    /// A table of `features` columns whose values take `levels[f]` distinct values.
    fn table(rows: usize, levels: &[usize]) -> Tabular {
        let features = levels
            .iter()
            .enumerate()
            .map(|(feature, &level)| {
                (0..rows)
                    .map(|row| (unit(feature as u64, row as u64) * level as f64).floor() as f32)
                    .collect()
            })
            .collect();
        let names = (0..levels.len())
            .map(|feature| format!("f{feature}"))
            .collect();
        Tabular::numeric(names, features, vec![0.0; rows])
    }

    #[test]
    fn pair_sums_equal_the_direct_histogram() {
        // Pairs of 32-bin features, one of 200 bins alone, and an odd one out at the end.
        let levels = [40, 40, 7, 300, 40, 40, 40];
        let rows = 150_000;
        let table = table(rows, &levels);
        let matrix = BinnedMatrix::fit(&table, 32, 1);
        let matrix_wide_bins = BinnedMatrix::fit(&table, 200, 1);
        let joint = JointBins::new(&matrix).expect("pairs form at 32 bins");
        assert!(joint.groups.len() < levels.len());
        assert!(joint.pays_for(&matrix, rows) && !joint.pays_for(&matrix, 100));
        let stats: Vec<f64> = (0..rows * 2)
            .map(|k| unit(9, k as u64) - if k % 2 == 0 { 0.5 } else { 0.0 })
            .collect();
        // Every other row, scattered as below the root, and every row.
        for selected in [
            (0..rows as u32)
                .filter(|row| row % 3 != 0)
                .collect::<Vec<_>>(),
            (0..rows as u32).collect(),
        ] {
            let mut direct = vec![0.0; matrix.cells() * 2];
            build_histogram(
                &matrix,
                RowStats::Dense(&stats),
                2,
                &selected,
                None,
                &mut direct,
            );
            let mut paired = vec![0.0; matrix.cells() * 2];
            joint.build(&matrix, &stats, &selected, &mut paired);
            for (cell, (a, b)) in direct.iter().zip(&paired).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-9 * (1.0 + a.abs()),
                    "cell {cell}: {a} {b}"
                );
            }
            // The same bits on one thread as on three.
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                let mut histogram = vec![0.0; matrix.cells() * 2];
                pool.install(|| joint.build(&matrix, &stats, &selected, &mut histogram));
                histogram
            };
            assert_eq!(on(1), paired);
            assert_eq!(on(3), paired);
        }
        // 200 bins pair with nothing.
        let wide = JointBins::new(&matrix_wide_bins);
        assert!(
            wide.is_none_or(|joint| joint.groups.iter().all(|group| match group {
                Group::Pair { first, second, .. } =>
                    matrix_wide_bins.bins[*first].cells() * matrix_wide_bins.bins[*second].cells()
                        <= PAIR_CELLS,
                Group::Single { .. } => true,
            }))
        );
    }
}
