//! The vector kernels of [`super::ItemScorer`]: four users' scores against 16 or 32 items at
//! a time with every sum in registers (AVX2 with FMA, or AVX-512F), and their threshold flags.
//! Both give the bits of one chain of fused multiply-adds per score; the portable loop is in
//! the parent module.

use super::GROUP;

/// The factor rows of a (padded) group of users, as the vector kernels read them.
#[cfg(target_arch = "x86_64")]
pub(super) fn group_rows<'a>(
    user_factors: &'a [f32],
    group: &[u32],
    rank: usize,
) -> [&'a [f32]; GROUP] {
    std::array::from_fn(|offset| {
        let user = group[offset] as usize;
        &user_factors[user * rank..(user + 1) * rank]
    })
}

/// The group's factors at each step of the rank: one zipped loop, where indexing four rows by
/// the step cost a bounds check per row per step (half again the kernel's instructions).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn by_rank(rows: [&[f32]; GROUP]) -> impl Iterator<Item = [f32; GROUP]> + '_ {
    let [first, second, third, fourth] = rows;
    first
        .iter()
        .zip(second)
        .zip(third)
        .zip(fourth)
        .map(|(((&first, &second), &third), &fourth)| [first, second, third, fourth])
}

/// AVX-512F with FMA: each score is the same chain of fused multiply-adds over the rank as in
/// the AVX2 kernel, one lane per item, so both give the same bits; the wider vectors double the
/// multiply-adds per instruction where the CPU has two 512-bit FMA ports (Intel's server cores)
/// and cost nothing where it splits them (AMD Zen 4).
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::super::{GROUP, ItemScorer, SCAN, TILE};

    /// The AVX2 kernel's contract, two panels (32 items) at a time: eight 16-lane sums, one per
    /// user and panel, each also the threshold test of one chunk.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn score_group(
        scorer: &ItemScorer,
        user_factors: &[f32],
        group: &[u32],
        tile_start: usize,
        width: usize,
        thresholds: &[f32; GROUP],
        scores: &mut [f32],
    ) -> [u64; GROUP] {
        let mut flags = [0u64; GROUP];
        let limits: [__m512; GROUP] = std::array::from_fn(|user| _mm512_set1_ps(thresholds[user]));
        let rank = scorer.rank;
        let rows = super::group_rows(user_factors, group, rank);
        // A chunk is tested only when whole; a partial one (the tile's end) is always scanned.
        let flag = |sum: __m512, limit: __m512, start: usize| -> u64 {
            let scan = start + SCAN > width || _mm512_cmp_ps_mask::<_CMP_GE_OQ>(sum, limit) != 0;
            u64::from(scan) << (start / SCAN)
        };
        let mut offset = 0;
        while offset < width {
            let first = scorer.panel(tile_start + offset).as_ptr();
            if offset + SCAN < width {
                let second = scorer.panel(tile_start + offset + SCAN).as_ptr();
                let mut left = [_mm512_setzero_ps(); GROUP];
                let mut right = [_mm512_setzero_ps(); GROUP];
                for (a, factors) in super::by_rank(rows).enumerate() {
                    // SAFETY: each panel holds `rank * SCAN` floats, and `a < rank`.
                    let (near, far) = unsafe {
                        (
                            _mm512_loadu_ps(first.add(a * SCAN)),
                            _mm512_loadu_ps(second.add(a * SCAN)),
                        )
                    };
                    for ((left, right), &factor) in
                        left.iter_mut().zip(right.iter_mut()).zip(&factors)
                    {
                        let factor = _mm512_set1_ps(factor);
                        *left = _mm512_fmadd_ps(factor, near, *left);
                        *right = _mm512_fmadd_ps(factor, far, *right);
                    }
                }
                for (user, (left, right)) in left.iter().zip(&right).enumerate() {
                    // SAFETY: `user * TILE + offset + 2 SCAN <= GROUP * TILE`: offsets are
                    // multiples of SCAN, `offset + SCAN < width <= TILE` and SCAN divides TILE.
                    unsafe {
                        let at = scores.as_mut_ptr().add(user * TILE + offset);
                        _mm512_storeu_ps(at, *left);
                        _mm512_storeu_ps(at.add(SCAN), *right);
                    }
                    flags[user] |= flag(*left, limits[user], offset)
                        | flag(*right, limits[user], offset + SCAN);
                }
                offset += 2 * SCAN;
            } else {
                let mut sums = [_mm512_setzero_ps(); GROUP];
                for (a, factors) in super::by_rank(rows).enumerate() {
                    // SAFETY: the panel holds `rank * SCAN` floats, and `a < rank`.
                    let near = unsafe { _mm512_loadu_ps(first.add(a * SCAN)) };
                    for (sum, &factor) in sums.iter_mut().zip(&factors) {
                        *sum = _mm512_fmadd_ps(_mm512_set1_ps(factor), near, *sum);
                    }
                }
                for (user, sum) in sums.iter().enumerate() {
                    // SAFETY: `user * TILE + offset + SCAN <= GROUP * TILE`.
                    unsafe {
                        _mm512_storeu_ps(scores.as_mut_ptr().add(user * TILE + offset), *sum)
                    };
                    flags[user] |= flag(*sum, limits[user], offset);
                }
                offset += SCAN;
            }
        }
        flags
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::super::{GROUP, ItemScorer, SCAN, TILE};

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn score_group(
        scorer: &ItemScorer,
        user_factors: &[f32],
        group: &[u32],
        tile_start: usize,
        width: usize,
        thresholds: &[f32; GROUP],
        scores: &mut [f32],
    ) -> [u64; GROUP] {
        let mut flags = [0u64; GROUP];
        let limits: [__m256; GROUP] = std::array::from_fn(|user| _mm256_set1_ps(thresholds[user]));
        let rank = scorer.rank;
        let rows = super::group_rows(user_factors, group, rank);
        let mut offset = 0;
        // Sixteen items (one panel) at a time: eight independent sums keep both FMA units busy
        // through the multiply-add latency (four sums, one per user, left half of them idle).
        // The last panel of the item table is padded with zeros, and the score buffer holds a
        // whole number of panels, so a tile's last partial panel is scored as a full one.
        while offset < width {
            let panel = scorer.panel(tile_start + offset).as_ptr();
            let mut low = [_mm256_setzero_ps(); GROUP];
            let mut high = [_mm256_setzero_ps(); GROUP];
            for (a, factors) in super::by_rank(rows).enumerate() {
                // SAFETY: the panel holds `rank * SCAN` floats, and `a < rank`.
                let (first, second) = unsafe {
                    let at = panel.add(a * SCAN);
                    (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)))
                };
                for ((low, high), &factor) in low.iter_mut().zip(high.iter_mut()).zip(&factors) {
                    let factor = _mm256_set1_ps(factor);
                    *low = _mm256_fmadd_ps(factor, first, *low);
                    *high = _mm256_fmadd_ps(factor, second, *high);
                }
            }
            for (user, (low, high)) in low.iter().zip(&high).enumerate() {
                // SAFETY: `user * TILE + offset + 16 <= GROUP * TILE`: TILE is a multiple of
                // SCAN and `offset < width <= TILE`.
                unsafe {
                    let at = scores.as_mut_ptr().add(user * TILE + offset);
                    _mm256_storeu_ps(at, *low);
                    _mm256_storeu_ps(at.add(8), *high);
                }
                // The threshold test of the selection, on the sums still in registers (NaN
                // compares false, as the scalar test does); a partial panel is always scanned.
                let above = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_max_ps(*low, *high), limits[user]);
                let scan = offset + SCAN > width || _mm256_movemask_ps(above) != 0;
                flags[user] |= u64::from(scan) << (offset / SCAN);
            }
            offset += SCAN;
        }
        flags
    }
}
