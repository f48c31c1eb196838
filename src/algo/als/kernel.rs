//! The hot loop of ALS: accumulating one row's normal equations `sum y y^T` and `sum r y`
//! over the factor rows of its ratings.
//!
//! Profiling the straightforward loop showed it bound by the latency of fetching random factor
//! rows, not by arithmetic. So the factor table keeps each row padded to 8 or 16 floats in
//! 64-byte aligned storage (one cache line per row for ranks up to 16, never two), the loop
//! prefetches the rows of ratings a few steps ahead, and on CPUs with AVX2 and FMA (detected at
//! run time) a block of four rows of the normal matrix stays in registers while the ratings
//! stream past: per rating and block, two loads, four broadcasts and eight fused multiply-adds.
//! The floor is then the memory system's random-access throughput for the first block; later
//! blocks reread the same rows from L1. Other CPUs and larger ranks use a portable loop with the
//! same summation order per entry, so results do not depend on the thread count (they may differ
//! in the last bits between the two code paths, as the rounding of a fused multiply-add differs).

/// One 64-byte cache line of floats; the factor table is a vector of these.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct CacheLine([f32; 16]);

/// Factors stored row-major with rows padded to `stride` floats, 64-byte aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct FactorTable {
    rows: usize,
    rank: usize,
    stride: usize,
    lines: Vec<CacheLine>,
}

/// Padding of a row of `rank` floats: 8 or a multiple of 16, so rows never straddle lines.
/// Padding floats are always zero.
pub fn stride_for(rank: usize) -> usize {
    if rank <= 8 { 8 } else { rank.div_ceil(16) * 16 }
}

impl FactorTable {
    pub fn zeroed(rows: usize, rank: usize) -> FactorTable {
        let stride = stride_for(rank);
        FactorTable {
            rows,
            rank,
            stride,
            lines: vec![CacheLine([0.0; 16]); (rows * stride).div_ceil(16)],
        }
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: CacheLine is repr(C) over [f32; 16], so the lines are contiguous floats.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.rows * self.stride)
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr().cast::<f32>(),
                self.rows * self.stride,
            )
        }
    }

    /// The `rank` factors of row `row`.
    pub fn row(&self, row: usize) -> &[f32] {
        &self.as_slice()[row * self.stride..row * self.stride + self.rank]
    }

    /// Rows without padding (`rows x rank`), for the saved model.
    pub fn compact(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|row| self.row(row).iter().copied())
            .collect()
    }
}

/// The per-rating inputs of one row's normal equations: `sum w y y^T` and `sum t y`.
#[derive(Clone, Copy)]
pub struct Terms<'a> {
    pub columns: &'a [u32],
    /// `w` per rating; `None` means 1 (explicit feedback).
    pub weights: Option<&'a [f32]>,
    /// `t` per rating (the rating for explicit feedback).
    pub targets: &'a [f32],
}

/// Adds `sum w y y^T` into `normal` (`rank` rows of `stride` floats) and `sum t y` into
/// `right_side` (`stride` floats); `fixed` is the factor table the rows `y` come from. Both
/// outputs must be zero on entry. Only the upper triangle of `normal` (`b >= a`) is
/// guaranteed: the matrix is symmetric, and skipping the lower tiles halves the work at high
/// ranks. Read entry `(a, b)` as `normal[min(a, b) * stride + max(a, b)]`.
pub fn accumulate(
    terms: Terms<'_>,
    fixed: &FactorTable,
    normal: &mut [f32],
    right_side: &mut [f32],
) {
    debug_assert_eq!(terms.columns.len(), terms.targets.len());
    debug_assert!(
        terms
            .weights
            .is_none_or(|weights| weights.len() == terms.columns.len())
    );
    debug_assert_eq!(normal.len(), fixed.rank * fixed.stride);
    debug_assert_eq!(right_side.len(), fixed.stride);
    assert!(
        terms
            .columns
            .iter()
            .all(|&column| (column as usize) < fixed.rows)
    );
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked above); every column indexes a row of
            // `fixed` (asserted above), rows are a multiple of 8 floats at 32-byte aligned
            // offsets, and the output slices have the sizes asserted above.
            unsafe { avx2::accumulate(terms, fixed, normal, right_side) };
            return;
        }
    }
    portable(terms, fixed, normal, right_side);
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

fn portable(terms: Terms<'_>, fixed: &FactorTable, normal: &mut [f32], right_side: &mut [f32]) {
    let (k, stride) = (fixed.rank, fixed.stride);
    let table = fixed.as_slice();
    for (j, (&column, &target)) in terms.columns.iter().zip(terms.targets).enumerate() {
        let weight = terms.weights.map_or(1.0, |weights| weights[j]);
        let y = &table[column as usize * stride..column as usize * stride + k];
        for (a, &ya) in y.iter().enumerate() {
            let scaled = weight * ya;
            let normal_row = &mut normal[a * stride + a..a * stride + k];
            for (entry, &yb) in normal_row.iter_mut().zip(&y[a..]) {
                *entry += scaled * yb;
            }
        }
        for (entry, &ya) in right_side[..k].iter_mut().zip(y) {
            *entry += target * ya;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{FactorTable, Terms};

    /// How far ahead factor rows are prefetched, in ratings.
    const PREFETCH_DISTANCE: usize = 8;

    /// Walks the upper triangle of the normal matrix in tiles of up to 4 rows x 16 columns
    /// (8 for 8-float rows); each tile streams over the ratings with its sums in registers.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accumulate(
        terms: Terms<'_>,
        fixed: &FactorTable,
        normal: &mut [f32],
        right_side: &mut [f32],
    ) {
        let table = fixed.as_slice().as_ptr();
        let stride = fixed.stride;
        let width = stride.min(16);
        let mut first_row = 0;
        while first_row < fixed.rank {
            let rows = (fixed.rank - first_row).min(4);
            let mut first_column = 0;
            while first_column < stride {
                if first_column + width > first_row {
                    let tile = Tile {
                        table,
                        stride,
                        first_row,
                        first_column,
                    };
                    // SAFETY: forwarded from the caller's contract; the tile lies inside
                    // `normal` (rows < rank, columns < stride).
                    unsafe {
                        match (width, rows, terms.weights.is_some()) {
                            (16, 4, false) => tile.run::<4, 2, false>(terms, normal, right_side),
                            (16, 3, false) => tile.run::<3, 2, false>(terms, normal, right_side),
                            (16, 2, false) => tile.run::<2, 2, false>(terms, normal, right_side),
                            (16, _, false) => tile.run::<1, 2, false>(terms, normal, right_side),
                            (16, 4, true) => tile.run::<4, 2, true>(terms, normal, right_side),
                            (16, 3, true) => tile.run::<3, 2, true>(terms, normal, right_side),
                            (16, 2, true) => tile.run::<2, 2, true>(terms, normal, right_side),
                            (16, _, true) => tile.run::<1, 2, true>(terms, normal, right_side),
                            (_, 4, false) => tile.run::<4, 1, false>(terms, normal, right_side),
                            (_, 3, false) => tile.run::<3, 1, false>(terms, normal, right_side),
                            (_, 2, false) => tile.run::<2, 1, false>(terms, normal, right_side),
                            (_, _, false) => tile.run::<1, 1, false>(terms, normal, right_side),
                            (_, 4, true) => tile.run::<4, 1, true>(terms, normal, right_side),
                            (_, 3, true) => tile.run::<3, 1, true>(terms, normal, right_side),
                            (_, 2, true) => tile.run::<2, 1, true>(terms, normal, right_side),
                            (_, _, true) => tile.run::<1, 1, true>(terms, normal, right_side),
                        }
                    }
                }
                first_column += width;
            }
            first_row += rows;
        }
    }

    struct Tile {
        table: *const f32,
        stride: usize,
        first_row: usize,
        first_column: usize,
    }

    impl Tile {
        /// Rows `first_row..+ROWS`, columns `first_column..+8*HALVES` of the normal matrix;
        /// tiles of the first row block also accumulate their part of the right-hand side.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<const ROWS: usize, const HALVES: usize, const WEIGHTED: bool>(
            &self,
            terms: Terms<'_>,
            normal: &mut [f32],
            right_side: &mut [f32],
        ) {
            let (table, stride) = (self.table, self.stride);
            let mut sums = [[_mm256_setzero_ps(); HALVES]; ROWS];
            let mut right = [_mm256_setzero_ps(); HALVES];
            let with_right_side = self.first_row == 0;
            let prefetch = with_right_side && self.first_column == 0;
            let weights = terms.weights.unwrap_or(&[]);
            for (j, (&column, &target)) in terms.columns.iter().zip(terms.targets).enumerate() {
                // SAFETY (whole loop body): columns index rows of the table (caller's
                // contract); rows are `stride` floats at 32-byte aligned offsets, and the tile's
                // columns are inside the row.
                unsafe {
                    if prefetch && let Some(&ahead) = terms.columns.get(j + PREFETCH_DISTANCE) {
                        _mm_prefetch::<_MM_HINT_T0>(
                            table.add(ahead as usize * stride).cast::<i8>(),
                        );
                    }
                    let y = table.add(column as usize * stride);
                    let mut halves = [_mm256_setzero_ps(); HALVES];
                    for (half, slot) in halves.iter_mut().enumerate() {
                        *slot = _mm256_load_ps(y.add(self.first_column + 8 * half));
                    }
                    let weight = if WEIGHTED {
                        _mm256_set1_ps(*weights.get_unchecked(j))
                    } else {
                        _mm256_set1_ps(1.0)
                    };
                    for (offset, row_sums) in sums.iter_mut().enumerate() {
                        let mut scale = _mm256_broadcast_ss(&*y.add(self.first_row + offset));
                        if WEIGHTED {
                            scale = _mm256_mul_ps(scale, weight);
                        }
                        for half in 0..HALVES {
                            row_sums[half] = _mm256_fmadd_ps(scale, halves[half], row_sums[half]);
                        }
                    }
                    if with_right_side {
                        let scale = _mm256_set1_ps(target);
                        for half in 0..HALVES {
                            right[half] = _mm256_fmadd_ps(scale, halves[half], right[half]);
                        }
                    }
                }
            }
            // SAFETY: the tile lies inside `normal` (`rank * stride` floats) and its columns
            // inside `right_side` (`stride` floats).
            unsafe {
                for (offset, row_sums) in sums.iter().enumerate() {
                    let out = normal
                        .as_mut_ptr()
                        .add((self.first_row + offset) * stride + self.first_column);
                    for (half, sum) in row_sums.iter().enumerate() {
                        _mm256_storeu_ps(out.add(8 * half), *sum);
                    }
                }
                if with_right_side {
                    let out = right_side.as_mut_ptr().add(self.first_column);
                    for (half, sum) in right.iter().enumerate() {
                        _mm256_storeu_ps(out.add(8 * half), *sum);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_paths_agree_on_the_upper_triangle() {
        for rank in [1, 3, 4, 8, 10, 16, 20, 64] {
            let rows = 50;
            let mut table = FactorTable::zeroed(rows, rank);
            let stride = table.stride();
            for (index, value) in table.as_mut_slice().iter_mut().enumerate() {
                if index % stride < rank {
                    *value = ((index * 37 % 101) as f32 - 50.0) / 50.0;
                }
            }
            let columns: Vec<u32> = (0..30).map(|j| (j * 7 % rows) as u32).collect();
            let targets: Vec<f32> = (0..30).map(|j| 1.0 + j as f32 / 10.0).collect();
            let weights: Vec<f32> = (0..30).map(|j| 0.5 + (j % 3) as f32).collect();
            for weighted in [false, true] {
                let terms = Terms {
                    columns: &columns,
                    weights: weighted.then_some(&weights[..]),
                    targets: &targets,
                };
                let mut fast = (vec![0.0; rank * stride], vec![0.0; stride]);
                let mut slow = (vec![0.0; rank * stride], vec![0.0; stride]);
                accumulate(terms, &table, &mut fast.0, &mut fast.1);
                portable(terms, &table, &mut slow.0, &mut slow.1);
                for a in 0..rank {
                    for b in a..rank {
                        let (x, y) = (fast.0[a * stride + b], slow.0[a * stride + b]);
                        assert!((x - y).abs() < 1e-3, "rank {rank} ({a},{b}): {x} vs {y}");
                    }
                    assert!((fast.1[a] - slow.1[a]).abs() < 1e-3, "rank {rank} rhs {a}");
                }
            }
        }
    }
}
