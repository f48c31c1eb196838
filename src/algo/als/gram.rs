//! `Y^T Y` over a whole factor table: the part of every implicit-feedback row's normal matrix
//! that all rows share, computed once per half-sweep.
//!
//! Both triangles are computed (the conjugate-gradient products read whole rows of it), in
//! register tiles of up to four output rows by up to eight lines that stay in registers while
//! a chunk of factor rows, small enough for L2, streams past. Entry `(a, b)` and entry `(b, a)`
//! are the same chain of fused multiply-adds (a product does not depend on the order of its
//! factors), so the matrix is exactly symmetric. Chunks are summed in order, so the result does
//! not depend on the thread count, and every instruction set gives the same bits ([`Line`]).
//! Before (the normal-equation kernel's upper triangle, 8192-row chunks) it took about 20 ms
//! per product at rank 64 over 200k rows, 8% of an implicit fit.

use rayon::prelude::*;

use super::kernel::FactorTable;
use super::lines::{Line, tile_shape};
#[cfg(target_arch = "x86_64")]
use crate::algo::cpu::{avx2_fma as avx2_available, avx512 as avx512_available};

/// Factor rows per chunk: 512 KiB at rank 64.
const CHUNK_ROWS: usize = 2048;

/// `Y^T Y` over every row of `fixed`: `rank` rows of `stride` floats, both triangles, padding
/// columns zero.
pub fn gram(fixed: &FactorTable) -> Vec<f32> {
    let (rank, stride) = (fixed.rank(), fixed.stride());
    let partials: Vec<Vec<f32>> = fixed
        .as_slice()
        .par_chunks(CHUNK_ROWS * stride)
        .map(|chunk| {
            let mut partial = vec![0f32; rank * stride];
            chunk_gram(chunk, rank, stride, &mut partial);
            partial
        })
        .collect();
    let mut total = vec![0f32; rank * stride];
    for partial in partials {
        for (sum, value) in total.iter_mut().zip(partial) {
            *sum += value;
        }
    }
    total
}

/// Writes the Gram matrix of the rows in `chunk` (`stride` floats each) into `out`.
fn chunk_gram(chunk: &[f32], rank: usize, stride: usize, out: &mut [f32]) {
    assert_eq!(chunk.len() % stride, 0);
    assert_eq!(out.len(), rank * stride);
    assert!(rank <= stride);
    #[cfg(target_arch = "x86_64")]
    {
        if stride.is_multiple_of(16) && avx512_available() {
            // SAFETY: the CPU has the features (checked just above); the asserts above hold.
            return unsafe { x86::with_avx512(chunk, rank, stride, out) };
        }
        if avx2_available() {
            // SAFETY: as above.
            return unsafe { x86::with_avx2(chunk, rank, stride, out) };
        }
    }
    // SAFETY: the asserts above.
    unsafe { portable(chunk, rank, stride, out) }
}

/// # Safety
/// As [`tiles`].
unsafe fn portable(chunk: &[f32], rank: usize, stride: usize, out: &mut [f32]) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if stride == 8 {
            tiles::<[f32; 8]>(chunk, rank, stride, out)
        } else {
            tiles::<[f32; 16]>(chunk, rank, stride, out)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::lines::x86::{Narrow, Pair, Wide};
    use super::tiles;

    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn with_avx512(chunk: &[f32], rank: usize, stride: usize, out: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { tiles::<Wide>(chunk, rank, stride, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn with_avx2(chunk: &[f32], rank: usize, stride: usize, out: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if stride == 8 {
                tiles::<Narrow>(chunk, rank, stride, out)
            } else {
                tiles::<Pair>(chunk, rank, stride, out)
            }
        }
    }
}

/// # Safety
/// `chunk` is whole rows of `stride` floats, a multiple of `L::WIDTH`; `out` has `rank` rows of
/// `stride` floats; `rank <= stride`.
#[inline(always)]
unsafe fn tiles<L: Line>(chunk: &[f32], rank: usize, stride: usize, out: &mut [f32]) {
    let lines = stride / L::WIDTH;
    let zero = L::splat(0.0);
    let (tile_rows, tile_lines) = tile_shape(lines);
    let mut first_output = 0;
    while first_output < rank {
        let mut first_line = 0;
        while first_line < lines {
            let tile_lines = tile_lines.min(lines - first_line);
            let mut sums = [[zero; 8]; 4];
            for row in chunk.chunks_exact(stride) {
                for (tile_row, row_sums) in sums.iter_mut().enumerate().take(tile_rows) {
                    // A tile reaching past the last output row repeats it (not stored).
                    let factor = L::splat(row[(first_output + tile_row).min(rank - 1)]);
                    for (line, sum) in row_sums.iter_mut().enumerate().take(tile_lines) {
                        // SAFETY: `row` has `stride` floats, `lines` lines of them.
                        let value =
                            unsafe { L::load(row.as_ptr().add((first_line + line) * L::WIDTH)) };
                        *sum = factor.mul_add(value, *sum);
                    }
                }
            }
            for (tile_row, row_sums) in sums.iter().enumerate().take(tile_rows) {
                let output = first_output + tile_row;
                if output >= rank {
                    break;
                }
                for (line, sum) in row_sums.iter().enumerate().take(tile_lines) {
                    let at = output * stride + (first_line + line) * L::WIDTH;
                    // SAFETY: `out` has `rank` rows of `stride` floats.
                    unsafe { sum.store(out[at..at + L::WIDTH].as_mut_ptr()) };
                }
            }
            first_line += tile_lines;
        }
        first_output += tile_rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize, rank: usize) -> FactorTable {
        let mut table = FactorTable::zeroed(rows, rank);
        let stride = table.stride();
        for row in 0..rows {
            for component in 0..rank {
                let value = ((row * 31 + component * 17) % 23) as f32 / 11.0 - 1.0;
                table.as_mut_slice()[row * stride + component] = value;
            }
        }
        table
    }

    #[test]
    fn equals_the_direct_sum_is_symmetric_and_the_same_in_every_build() {
        for (rows, rank) in [
            (5000, 64),
            (3000, 10),
            (2100, 7),
            (700, 130),
            (100, 1),
            (0, 5),
        ] {
            let fixed = table(rows, rank);
            let stride = fixed.stride();
            let product = gram(&fixed);
            for a in 0..rank {
                for b in 0..stride {
                    let direct: f64 = (0..rows)
                        .map(|row| {
                            let y = &fixed.as_slice()[row * stride..];
                            f64::from(y[a]) * f64::from(y[b])
                        })
                        .sum();
                    let got = product[a * stride + b];
                    assert!(
                        (f64::from(got) - direct).abs() <= 1e-4 * direct.abs().max(1.0),
                        "rank {rank} ({a}, {b}): {got} vs {direct}"
                    );
                    if b < rank {
                        assert_eq!(got.to_bits(), product[b * stride + a].to_bits());
                    }
                }
            }
            let mut portable_product = vec![0f32; rank * stride];
            let mut total = vec![0f32; rank * stride];
            for chunk in fixed.as_slice().chunks(CHUNK_ROWS * stride) {
                // SAFETY: whole rows; `rank <= stride`.
                unsafe { portable(chunk, rank, stride, &mut portable_product) };
                for (sum, value) in total.iter_mut().zip(&portable_product) {
                    *sum += value;
                }
            }
            assert_eq!(product, total, "rank {rank}");
        }
    }
}
