//! The hot loop of ALS: accumulating one row's normal equations `sum y y^T` and `sum r y`
//! over the factor rows of its ratings.
//!
//! Profiling the straightforward loop showed it bound by the latency of fetching random factor
//! rows, not by arithmetic. So the factor table keeps each row padded to 8 or 16 floats in
//! 64-byte aligned storage (one cache line per row for ranks up to 16, never two), and the loop
//! prefetches the rows of the entries [`LOOKAHEAD`] steps ahead, reaching into the following
//! rows (most rows are shorter than the distance needed).
//!
//! Three paths, chosen at run time:
//! - ranks up to 16 on CPUs with AVX-512VL ([`one_pass`]): the whole upper triangle is summed
//!   in one pass over the entries with every sum in one of the 32 vector registers (26 sums at
//!   rank 16); at rank 10 this halved the time per entry (2.9 against 4.3 ns from L2, 5.3
//!   against 9.7 ns from a 12.8 MB table), since a tiled pass rereads the rows;
//! - other CPUs with AVX2 and FMA ([`avx2`]) and larger ranks: tiles of four rows of the normal
//!   matrix stay in registers while the entries stream past, one pass per tile row;
//! - a portable loop elsewhere.
//!
//! Each entry of the matrix is summed in the same order in every path, so results do not depend
//! on the thread count; the two AVX paths agree to the bit on unweighted entries, and the
//! portable loop may differ from them in the last bits (a fused multiply-add rounds once).

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

    pub fn rank(&self) -> usize {
        self.rank
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

    /// Asks the CPU to fetch row `row` into cache (all its lines); a no-op elsewhere.
    #[inline(always)]
    pub fn prefetch_row(&self, row: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let start = self.as_slice().as_ptr().wrapping_add(row * self.stride);
            for line in 0..self.stride.div_ceil(16) {
                // SAFETY: a prefetch never faults, whatever the address.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        start.wrapping_add(16 * line).cast::<i8>(),
                    )
                };
            }
        }
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
    /// Columns of the entries that come next (the following rows), possibly none: the loop
    /// prefetches their factor rows while it finishes this row, since most rows are shorter
    /// than the prefetch distance needed to hide a cache miss.
    pub ahead: &'a [u32],
    /// `w` per rating; `None` means 1 (explicit feedback).
    pub weights: Option<&'a [f32]>,
    /// `t` per rating (the rating for explicit feedback).
    pub targets: &'a [f32],
}

/// How far ahead factor rows are prefetched, in entries: about the latency of a last-level
/// cache miss divided by the time of one entry.
pub const LOOKAHEAD: usize = 16;

/// Writes `sum w y y^T` into `normal` (`rank` rows of `stride` floats) and `sum t y` into
/// `right_side` (`stride` floats); `fixed` is the factor table the rows `y` come from. Only the
/// upper triangle of `normal` (`b >= a`) is written: the matrix is symmetric, and skipping the
/// lower part saves work at high ranks. Read entry `(a, b)` as
/// `normal[min(a, b) * stride + max(a, b)]`.
pub fn accumulate(
    terms: Terms<'_>,
    fixed: &FactorTable,
    normal: &mut [f32],
    right_side: &mut [f32],
) {
    // O(1) checks the unsafe paths below rely on (they index without bounds checks).
    assert_eq!(terms.columns.len(), terms.targets.len());
    assert!(
        terms
            .weights
            .is_none_or(|weights| weights.len() == terms.columns.len())
    );
    assert_eq!(normal.len(), fixed.rank * fixed.stride);
    assert_eq!(right_side.len(), fixed.stride);
    // A max reduction vectorizes (an early-exit `all` does not and cost 4% of a fit).
    let largest = terms
        .columns
        .iter()
        .fold(0u32, |largest, &c| largest.max(c));
    assert!(terms.columns.is_empty() || (largest as usize) < fixed.rows);
    #[cfg(target_arch = "x86_64")]
    {
        if fixed.stride <= 16 && one_pass_available() {
            // SAFETY: the CPU has the features (checked above); every column indexes a row of
            // `fixed`, targets and weights match the columns, and the output slices have the
            // kernel's sizes (all asserted above); rows are 8 or 16 floats at 32-byte aligned
            // offsets.
            unsafe { one_pass::accumulate(terms, fixed, normal, right_side) };
            return;
        }
        if avx2_available() {
            // SAFETY: as above, for AVX2 and FMA.
            unsafe { avx2::accumulate(terms, fixed, normal, right_side) };
            return;
        }
    }
    normal.fill(0.0);
    right_side.fill(0.0);
    portable(terms, fixed, normal, right_side);
}

/// AVX-512VL's 32 vector registers hold the whole normal matrix of a rank up to 16 (26 sums)
/// plus the factor row, so one pass over the entries suffices (see [`one_pass`]).
#[cfg(target_arch = "x86_64")]
fn one_pass_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        avx2_available()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
    })
}

#[cfg(target_arch = "x86_64")]
use crate::algo::cpu::avx2_fma as avx2_available;

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

/// Ranks up to 16 in a single pass over the entries, all sums in registers. For rows of 16
/// floats only rows 0..8 x columns 0..8 and rows 8.. x all columns are summed: by symmetry
/// they hold the whole upper triangle, with 8 + 2 (rank - 8) sums instead of the 2 rank a full
/// tile pass needs. Each entry is summed in the same order with the same products as in
/// [`avx2`] (`y_a y_b` and `y_b y_a` round alike), so unweighted results are bit-identical
/// to that path.
#[cfg(target_arch = "x86_64")]
mod one_pass {
    use std::arch::x86_64::*;

    use super::{FactorTable, LOOKAHEAD, Terms};

    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    pub unsafe fn accumulate(
        terms: Terms<'_>,
        fixed: &FactorTable,
        normal: &mut [f32],
        right_side: &mut [f32],
    ) {
        macro_rules! by_rank {
            ($($rank:literal => $low:literal, $high:literal;)*) => {
                match (fixed.rank, terms.weights.is_some()) {
                    $(
                        ($rank, false) => run::<$low, $high, false>(terms, fixed, normal, right_side),
                        ($rank, true) => run::<$low, $high, true>(terms, fixed, normal, right_side),
                    )*
                    _ => unreachable!("one-pass kernel used for rank {}", fixed.rank),
                }
            };
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            by_rank! {
                1 => 1, 0; 2 => 2, 0; 3 => 3, 0; 4 => 4, 0;
                5 => 5, 0; 6 => 6, 0; 7 => 7, 0; 8 => 8, 0;
                9 => 8, 1; 10 => 8, 2; 11 => 8, 3; 12 => 8, 4;
                13 => 8, 5; 14 => 8, 6; 15 => 8, 7; 16 => 8, 8;
            }
        }
    }

    /// `LOW` rows summed over columns 0..8, `HIGH` rows (from row 8) over columns 0..16.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    unsafe fn run<const LOW: usize, const HIGH: usize, const WEIGHTED: bool>(
        terms: Terms<'_>,
        fixed: &FactorTable,
        normal: &mut [f32],
        right_side: &mut [f32],
    ) {
        let (table, stride) = (fixed.as_slice().as_ptr(), fixed.stride);
        let columns = terms.columns;
        let entries = columns.len();
        let weights = terms.weights.unwrap_or(&[]);
        let mut low = [_mm256_setzero_ps(); LOW];
        let mut high = [[_mm256_setzero_ps(); 2]; HIGH];
        let mut right = [_mm256_setzero_ps(); 2];
        for j in 0..entries {
            // SAFETY (whole loop body): `j` indexes `columns`, `targets` and `weights` (same
            // lengths); columns index rows of the table (caller's contract), rows are `stride`
            // floats at 32-byte aligned offsets. A prefetch never faults, so its address is
            // only computed, not checked.
            unsafe {
                let next = j + LOOKAHEAD;
                let ahead = if next < entries {
                    Some(*columns.get_unchecked(next))
                } else {
                    terms.ahead.get(next - entries).copied()
                };
                if let Some(ahead) = ahead {
                    _mm_prefetch::<_MM_HINT_T0>(
                        table.wrapping_add(ahead as usize * stride).cast::<i8>(),
                    );
                }
                let y = table.add(*columns.get_unchecked(j) as usize * stride);
                let first = _mm256_load_ps(y);
                let second = if HIGH > 0 {
                    _mm256_load_ps(y.add(8))
                } else {
                    _mm256_setzero_ps()
                };
                let weight = if WEIGHTED {
                    _mm256_set1_ps(*weights.get_unchecked(j))
                } else {
                    _mm256_set1_ps(1.0)
                };
                for (a, sum) in low.iter_mut().enumerate() {
                    let mut scale = _mm256_broadcast_ss(&*y.add(a));
                    if WEIGHTED {
                        scale = _mm256_mul_ps(scale, weight);
                    }
                    *sum = _mm256_fmadd_ps(scale, first, *sum);
                }
                for (a, sums) in high.iter_mut().enumerate() {
                    let mut scale = _mm256_broadcast_ss(&*y.add(8 + a));
                    if WEIGHTED {
                        scale = _mm256_mul_ps(scale, weight);
                    }
                    sums[0] = _mm256_fmadd_ps(scale, first, sums[0]);
                    sums[1] = _mm256_fmadd_ps(scale, second, sums[1]);
                }
                let target = _mm256_set1_ps(*terms.targets.get_unchecked(j));
                right[0] = _mm256_fmadd_ps(target, first, right[0]);
                if HIGH > 0 {
                    right[1] = _mm256_fmadd_ps(target, second, right[1]);
                }
            }
        }
        // SAFETY: rows below `LOW + HIGH = rank` and columns below `stride` lie inside `normal`
        // (`rank * stride` floats); `right_side` holds `stride` floats.
        unsafe {
            let out = normal.as_mut_ptr();
            for (a, sum) in low.iter().enumerate() {
                _mm256_storeu_ps(out.add(a * stride), *sum);
            }
            for (a, sums) in high.iter().enumerate() {
                _mm256_storeu_ps(out.add((8 + a) * stride), sums[0]);
                _mm256_storeu_ps(out.add((8 + a) * stride + 8), sums[1]);
            }
            _mm256_storeu_ps(right_side.as_mut_ptr(), right[0]);
            if HIGH > 0 {
                _mm256_storeu_ps(right_side.as_mut_ptr().add(8), right[1]);
            }
        }
        // The upper entries (a < 8, b >= 8) were summed as their mirror images (b, a).
        for a in 0..LOW.min(8) {
            for b in 8..8 + HIGH {
                normal[a * stride + b] = normal[b * stride + a];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{FactorTable, LOOKAHEAD, Terms};

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
                    if prefetch {
                        let next = j + LOOKAHEAD;
                        let ahead = match terms.columns.get(next) {
                            Some(&column) => Some(column),
                            None => terms.ahead.get(next - terms.columns.len()).copied(),
                        };
                        if let Some(ahead) = ahead {
                            _mm_prefetch::<_MM_HINT_T0>(
                                table.wrapping_add(ahead as usize * stride).cast::<i8>(),
                            );
                        }
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
                    ahead: &[],
                    weights: weighted.then_some(&weights[..]),
                    targets: &targets,
                };
                let mut fast = (vec![f32::NAN; rank * stride], vec![f32::NAN; stride]);
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn one_pass_and_tiled_paths_give_the_same_bits() {
        if !one_pass_available() {
            eprintln!("SKIPPED: this CPU has no AVX-512VL");
            return;
        }
        for rank in 1..=16 {
            let rows = 40;
            let mut table = FactorTable::zeroed(rows, rank);
            let stride = table.stride();
            for (index, value) in table.as_mut_slice().iter_mut().enumerate() {
                if index % stride < rank {
                    *value = ((index * 53 % 97) as f32 - 48.0) / 17.0;
                }
            }
            let columns: Vec<u32> = (0..25).map(|j| (j * 11 % rows) as u32).collect();
            let targets: Vec<f32> = (0..25).map(|j| 0.5 + j as f32 / 7.0).collect();
            let terms = Terms {
                columns: &columns[..20],
                ahead: &columns[20..],
                weights: None,
                targets: &targets[..20],
            };
            let mut one = (vec![f32::NAN; rank * stride], vec![f32::NAN; stride]);
            let mut tiled = (vec![f32::NAN; rank * stride], vec![f32::NAN; stride]);
            // SAFETY: the CPU has AVX2, FMA and AVX-512VL (checked above); the columns index
            // the table and the outputs have the kernel's sizes.
            unsafe {
                one_pass::accumulate(terms, &table, &mut one.0, &mut one.1);
                avx2::accumulate(terms, &table, &mut tiled.0, &mut tiled.1);
            }
            for a in 0..rank {
                for b in a..rank {
                    let (x, y) = (one.0[a * stride + b], tiled.0[a * stride + b]);
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "rank {rank} ({a},{b}): {x} vs {y}"
                    );
                }
                assert_eq!(
                    one.1[a].to_bits(),
                    tiled.1[a].to_bits(),
                    "rank {rank} rhs {a}"
                );
            }
        }
    }
}
