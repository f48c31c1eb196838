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

/// Adds `sum y y^T` into `normal` (`rank` rows of `stride` floats) and `sum r y` into
/// `right_side` (`stride` floats) over the ratings `(columns[j], values[j])`; `fixed` is the
/// factor table the rows `y` come from. Both outputs must be zero on entry.
pub fn accumulate(
    columns: &[u32],
    values: &[f32],
    fixed: &FactorTable,
    normal: &mut [f32],
    right_side: &mut [f32],
) {
    debug_assert_eq!(columns.len(), values.len());
    debug_assert_eq!(normal.len(), fixed.rank * fixed.stride);
    debug_assert!(columns.iter().all(|&column| (column as usize) < fixed.rows));
    #[cfg(target_arch = "x86_64")]
    {
        if fixed.stride <= 16 && avx2_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked above); every column indexes a row of
            // `fixed` (checked by the callers' CSR construction), rows are 8 or 16 floats and
            // 32-byte aligned, and the output slices have the sizes asserted above.
            unsafe { avx2::accumulate(columns, values, fixed, normal, right_side) };
            return;
        }
    }
    portable(columns, values, fixed, normal, right_side);
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

fn portable(
    columns: &[u32],
    values: &[f32],
    fixed: &FactorTable,
    normal: &mut [f32],
    right_side: &mut [f32],
) {
    let (k, stride) = (fixed.rank, fixed.stride);
    let table = fixed.as_slice();
    for (&column, &rating) in columns.iter().zip(values) {
        let y = &table[column as usize * stride..column as usize * stride + k];
        for (a, &ya) in y.iter().enumerate() {
            let normal_row = &mut normal[a * stride..a * stride + k];
            for (entry, &yb) in normal_row.iter_mut().zip(y) {
                *entry += ya * yb;
            }
        }
        for (entry, &ya) in right_side[..k].iter_mut().zip(y) {
            *entry += rating * ya;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::FactorTable;

    /// How far ahead factor rows are prefetched, in ratings.
    const PREFETCH_DISTANCE: usize = 8;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accumulate(
        columns: &[u32],
        values: &[f32],
        fixed: &FactorTable,
        normal: &mut [f32],
        right_side: &mut [f32],
    ) {
        let table = fixed.as_slice().as_ptr();
        let stride = fixed.stride;
        let mut row = 0;
        while row < fixed.rank {
            let group = (fixed.rank - row).min(4);
            // SAFETY: forwarded from the caller's contract.
            unsafe {
                match (stride, group) {
                    (16, 4) => block::<4, 2>(columns, values, table, row, normal, right_side),
                    (16, 3) => block::<3, 2>(columns, values, table, row, normal, right_side),
                    (16, 2) => block::<2, 2>(columns, values, table, row, normal, right_side),
                    (16, _) => block::<1, 2>(columns, values, table, row, normal, right_side),
                    (_, 4) => block::<4, 1>(columns, values, table, row, normal, right_side),
                    (_, 3) => block::<3, 1>(columns, values, table, row, normal, right_side),
                    (_, 2) => block::<2, 1>(columns, values, table, row, normal, right_side),
                    (_, _) => block::<1, 1>(columns, values, table, row, normal, right_side),
                }
            }
            row += group;
        }
    }

    /// Rows `first..first + ROWS` of the normal matrix for rows of `8 * HALVES` floats; the
    /// first block also accumulates the right-hand side.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const ROWS: usize, const HALVES: usize>(
        columns: &[u32],
        values: &[f32],
        table: *const f32,
        first: usize,
        normal: &mut [f32],
        right_side: &mut [f32],
    ) {
        let stride = 8 * HALVES;
        let mut sums = [[_mm256_setzero_ps(); HALVES]; ROWS];
        let mut right = [_mm256_setzero_ps(); HALVES];
        let with_right_side = first == 0;
        for (j, (&column, &rating)) in columns.iter().zip(values).enumerate() {
            // SAFETY (whole loop body): columns index rows of the table (caller's contract);
            // rows are `stride` floats at 32-byte aligned offsets.
            unsafe {
                if with_right_side && let Some(&ahead) = columns.get(j + PREFETCH_DISTANCE) {
                    _mm_prefetch::<_MM_HINT_T0>(table.add(ahead as usize * stride).cast::<i8>());
                }
                let y = table.add(column as usize * stride);
                let mut halves = [_mm256_setzero_ps(); HALVES];
                for (half, slot) in halves.iter_mut().enumerate() {
                    *slot = _mm256_load_ps(y.add(8 * half));
                }
                for (offset, row_sums) in sums.iter_mut().enumerate() {
                    let scale = _mm256_broadcast_ss(&*y.add(first + offset));
                    for half in 0..HALVES {
                        row_sums[half] = _mm256_fmadd_ps(scale, halves[half], row_sums[half]);
                    }
                }
                if with_right_side {
                    let scale = _mm256_set1_ps(rating);
                    for half in 0..HALVES {
                        right[half] = _mm256_fmadd_ps(scale, halves[half], right[half]);
                    }
                }
            }
        }
        // SAFETY: `normal` has `rank * stride` floats and `first + ROWS <= rank`;
        // `right_side` has `stride` floats.
        unsafe {
            for (offset, row_sums) in sums.iter().enumerate() {
                let out = normal.as_mut_ptr().add((first + offset) * stride);
                for (half, sum) in row_sums.iter().enumerate() {
                    _mm256_storeu_ps(out.add(8 * half), *sum);
                }
            }
            if with_right_side {
                for (half, sum) in right.iter().enumerate() {
                    _mm256_storeu_ps(right_side.as_mut_ptr().add(8 * half), *sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_paths_agree() {
        for rank in [1, 3, 4, 8, 10, 16, 20] {
            let rows = 50;
            let mut table = FactorTable::zeroed(rows, rank);
            let stride = table.stride();
            for (index, value) in table.as_mut_slice().iter_mut().enumerate() {
                if index % stride < rank {
                    *value = ((index * 37 % 101) as f32 - 50.0) / 50.0;
                }
            }
            let columns: Vec<u32> = (0..30).map(|j| (j * 7 % rows) as u32).collect();
            let values: Vec<f32> = (0..30).map(|j| 1.0 + j as f32 / 10.0).collect();
            let mut fast = (vec![0.0; rank * stride], vec![0.0; stride]);
            let mut slow = (vec![0.0; rank * stride], vec![0.0; stride]);
            accumulate(&columns, &values, &table, &mut fast.0, &mut fast.1);
            portable(&columns, &values, &table, &mut slow.0, &mut slow.1);
            for (a, b) in fast.0.iter().zip(&slow.0).chain(fast.1.iter().zip(&slow.1)) {
                assert!((a - b).abs() < 1e-4, "rank {rank}: {a} vs {b}");
            }
        }
    }
}
