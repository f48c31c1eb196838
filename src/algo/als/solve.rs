//! Small dense solves for the per-row normal equations: a k x k Cholesky factorization done in
//! place on a reused buffer, because a general linear-algebra call per row would allocate and
//! cost more than the arithmetic for the ranks ALS uses (5 to 200).

/// Solves `a x = b` for symmetric positive definite `a` (row-major `k x k`, overwritten by its
/// Cholesky factor); the solution replaces `b`. Returns false when `a` is not positive definite.
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> bool {
    debug_assert_eq!(a.len(), k * k);
    debug_assert_eq!(b.len(), k);
    // Lower factor L in the lower triangle of `a`, row by row; `inverse_pivots` keeps 1/L[j][j]
    // so the inner loops multiply instead of divide.
    let mut inverse_pivots = [0f64; 64];
    let mut inverse_pivot_vec;
    let inverse: &mut [f64] = if k <= 64 {
        &mut inverse_pivots[..k]
    } else {
        inverse_pivot_vec = vec![0f64; k];
        &mut inverse_pivot_vec
    };
    for i in 0..k {
        let (done, rest) = a.split_at_mut(i * k);
        let row_i = &mut rest[..k];
        for j in 0..i {
            let row_j = &done[j * k..j * k + j];
            let sum: f64 = row_i[..j].iter().zip(row_j).map(|(x, y)| x * y).sum();
            row_i[j] = (row_i[j] - sum) * inverse[j];
        }
        let squares: f64 = row_i[..i].iter().map(|x| x * x).sum();
        let diagonal = row_i[i] - squares;
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return false;
        }
        let pivot = diagonal.sqrt();
        row_i[i] = pivot;
        inverse[i] = 1.0 / pivot;
    }
    // Forward substitution: L y = b.
    for i in 0..k {
        let row_i = &a[i * k..i * k + i];
        let sum: f64 = row_i.iter().zip(&b[..i]).map(|(x, y)| x * y).sum();
        b[i] = (b[i] - sum) * inverse[i];
    }
    // Back substitution: L^T x = y.
    for i in (0..k).rev() {
        let mut value = b[i];
        for p in i + 1..k {
            value -= a[p * k + i] * b[p];
        }
        b[i] = value * inverse[i];
    }
    true
}

/// Minimizes `x^T a x / 2 - b^T x` subject to `x >= 0` (the normal equations of a non-negative
/// least squares problem) by projected coordinate descent: each coordinate is set to its exact
/// minimizer clipped at zero, sweeping until no coordinate moves by more than a relative 1e-10.
/// `a` must be symmetric positive definite (it is, with any positive ridge); `x` is overwritten.
pub fn nonnegative_least_squares(a: &[f64], b: &[f64], k: usize, x: &mut [f64]) {
    x.fill(0.0);
    let scale = b
        .iter()
        .fold(0.0f64, |max, value| max.max(value.abs()))
        .max(1e-300);
    for _sweep in 0..(50 * k).max(200) {
        let mut largest_move = 0.0f64;
        for i in 0..k {
            let diagonal = a[i * k + i];
            if diagonal <= 0.0 {
                continue;
            }
            let gradient: f64 = a[i * k..i * k + k]
                .iter()
                .zip(&*x)
                .map(|(p, q)| p * q)
                .sum::<f64>()
                - b[i];
            let updated = (x[i] - gradient / diagonal).max(0.0);
            largest_move = largest_move.max((updated - x[i]).abs() * diagonal);
            x[i] = updated;
        }
        if largest_move <= 1e-10 * scale {
            break;
        }
    }
}

/// Systems solved together by [`cholesky_solve_lanes`] for ranks up to
/// [`RIGHT_LOOKING_MAX_RANK`]. One system's factorization is a chain of dependent square roots,
/// divisions and updates; interleaving independent systems hides that latency. 16 made the
/// 4M-rating rank-10 fit faster than 8 (53 against 62 ns per system in isolation).
pub const SMALL_RANK_LANES: usize = 16;

/// Systems solved together above [`RIGHT_LOOKING_MAX_RANK`], where each system is long enough
/// to fill the pipeline and the matrices of 16 (512 KiB at rank 64) would not stay in cache:
/// 8 lanes fitted rank 64 about 12% faster than 16.
pub const LARGE_RANK_LANES: usize = 8;

/// Largest rank solved in the right-looking form (see [`cholesky_solve_lanes`]).
pub const RIGHT_LOOKING_MAX_RANK: usize = 16;

/// Solves `L` independent systems at once, entry `[i][lane]` belonging to system `lane`; `a`
/// is row-major `k x k` of which only the lower triangle is read (and overwritten by the
/// Cholesky factor), `b` is overwritten by the solution. Returns which systems were positive
/// definite; the others hold garbage and must be solved again by the caller. `L` must be a
/// multiple of 4.
///
/// Up to [`RIGHT_LOOKING_MAX_RANK`] the factorization is the right-looking (outer product)
/// form: after each pivot every entry of the trailing submatrix gets an independent update, so
/// the lanes' vector operations never wait on a running sum. Its AVX2 path and portable path
/// perform the same IEEE operations in the same order (a product and a difference, never
/// fused), so they agree to the bit. Above it, the left-looking (dot product) form reads each
/// finished row while keeping its sums in registers, where the right-looking form would rewrite
/// the whole trailing submatrix (`k^2 L` floats, more than the L1 cache) after every pivot.
///
/// Always inlined, so that the portable forms get the caller's target features (the caller
/// in `als` is compiled for AVX2 where the CPU has it).
#[inline(always)]
pub fn cholesky_solve_lanes<const L: usize>(
    a: &mut [[f64; L]],
    b: &mut [[f64; L]],
    k: usize,
) -> [bool; L] {
    const { assert!(L.is_multiple_of(4)) };
    assert_eq!(a.len(), k * k);
    assert_eq!(b.len(), k);
    if k > RIGHT_LOOKING_MAX_RANK {
        return left_looking(a, b, k);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_available() {
            // SAFETY: the CPU has AVX2 (checked above); the sizes are asserted above.
            return unsafe { avx2::right_looking(a, b, k) };
        }
    }
    right_looking(a, b, k)
}

#[cfg(target_arch = "x86_64")]
use crate::algo::cpu::avx2 as avx2_available;

#[inline(always)]
fn left_looking<const L: usize>(a: &mut [[f64; L]], b: &mut [[f64; L]], k: usize) -> [bool; L] {
    let mut positive = [true; L];
    let mut inverse = vec![[0f64; L]; k];
    for i in 0..k {
        let (done, rest) = a.split_at_mut(i * k);
        let row_i = &mut rest[..k];
        for j in 0..i {
            let row_j = &done[j * k..j * k + j];
            let mut sum = [0f64; L];
            for (x, y) in row_i[..j].iter().zip(row_j) {
                for lane in 0..L {
                    sum[lane] += x[lane] * y[lane];
                }
            }
            for lane in 0..L {
                row_i[j][lane] = (row_i[j][lane] - sum[lane]) * inverse[j][lane];
            }
        }
        let mut diagonal = row_i[i];
        for x in &row_i[..i] {
            for lane in 0..L {
                diagonal[lane] -= x[lane] * x[lane];
            }
        }
        for lane in 0..L {
            if !(diagonal[lane] > 0.0 && diagonal[lane].is_finite()) {
                positive[lane] = false;
                diagonal[lane] = 1.0;
            }
            let pivot = diagonal[lane].sqrt();
            row_i[i][lane] = pivot;
            inverse[i][lane] = 1.0 / pivot;
        }
    }
    for i in 0..k {
        let mut sum = [0f64; L];
        for (x, y) in a[i * k..i * k + i].iter().zip(&b[..i]) {
            for lane in 0..L {
                sum[lane] += x[lane] * y[lane];
            }
        }
        for lane in 0..L {
            b[i][lane] = (b[i][lane] - sum[lane]) * inverse[i][lane];
        }
    }
    for i in (0..k).rev() {
        let mut value = b[i];
        for p in i + 1..k {
            for lane in 0..L {
                value[lane] -= a[p * k + i][lane] * b[p][lane];
            }
        }
        for lane in 0..L {
            b[i][lane] = value[lane] * inverse[i][lane];
        }
    }
    positive
}

fn right_looking<const L: usize>(a: &mut [[f64; L]], b: &mut [[f64; L]], k: usize) -> [bool; L] {
    let mut positive = [true; L];
    let mut inverse = vec![[0f64; L]; k];
    for j in 0..k {
        let diagonal = a[j * k + j];
        for lane in 0..L {
            let value = diagonal[lane];
            let ok = value > 0.0 && value < f64::INFINITY;
            positive[lane] &= ok;
            let pivot = if ok { value } else { 1.0 }.sqrt();
            a[j * k + j][lane] = pivot;
            inverse[j][lane] = 1.0 / pivot;
        }
        for i in j + 1..k {
            for lane in 0..L {
                a[i * k + j][lane] *= inverse[j][lane];
            }
        }
        for i in j + 1..k {
            let left = a[i * k + j];
            for p in j + 1..=i {
                let right = a[p * k + j];
                for lane in 0..L {
                    a[i * k + p][lane] -= left[lane] * right[lane];
                }
            }
        }
    }
    for j in 0..k {
        for lane in 0..L {
            b[j][lane] *= inverse[j][lane];
        }
        let solved = b[j];
        for i in j + 1..k {
            for lane in 0..L {
                b[i][lane] -= a[i * k + j][lane] * solved[lane];
            }
        }
    }
    for i in (0..k).rev() {
        for lane in 0..L {
            b[i][lane] *= inverse[i][lane];
        }
        let solved = b[i];
        for p in 0..i {
            for lane in 0..L {
                b[p][lane] -= a[i * k + p][lane] * solved[lane];
            }
        }
    }
    positive
}

/// [`right_looking`] with each entry held as `L / 4` AVX2 registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `*target = *target * scale`, entrywise over `L` lanes.
    ///
    /// SAFETY (all helpers): the pointers address `L` floats each; the caller has AVX2.
    #[inline(always)]
    unsafe fn scale<const L: usize>(target: *mut f64, scale: *const f64) {
        for part in 0..L / 4 {
            // SAFETY: see above.
            unsafe {
                let value = _mm256_loadu_pd(target.add(4 * part));
                let factor = _mm256_loadu_pd(scale.add(4 * part));
                _mm256_storeu_pd(target.add(4 * part), _mm256_mul_pd(value, factor));
            }
        }
    }

    /// `*target = *target - *left * *right`, rounded after the product and the difference.
    #[inline(always)]
    unsafe fn subtract_product<const L: usize>(
        target: *mut f64,
        left: *const f64,
        right: *const f64,
    ) {
        for part in 0..L / 4 {
            // SAFETY: see `scale`.
            unsafe {
                let value = _mm256_loadu_pd(target.add(4 * part));
                let product = _mm256_mul_pd(
                    _mm256_loadu_pd(left.add(4 * part)),
                    _mm256_loadu_pd(right.add(4 * part)),
                );
                _mm256_storeu_pd(target.add(4 * part), _mm256_sub_pd(value, product));
            }
        }
    }

    // The loops index rows by number, as the algorithm is written.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn right_looking<const L: usize>(
        a: &mut [[f64; L]],
        b: &mut [[f64; L]],
        k: usize,
    ) -> [bool; L] {
        let matrix = a.as_mut_ptr().cast::<f64>();
        let right_side = b.as_mut_ptr().cast::<f64>();
        let mut inverse = vec![[0f64; L]; k];
        let mut failed = [0f64; L];
        // SAFETY (whole function): the caller asserted `a.len() == k * k` and `b.len() == k`,
        // so every `(i, j)` with `i, j < k` and every `i < k` addresses `L` floats inside
        // them; `inverse` has `k` entries and `failed` `L` floats; the CPU has AVX2.
        unsafe {
            let entry = |i: usize, j: usize| matrix.add((i * k + j) * L);
            let element = |i: usize| right_side.add(i * L);
            let one = _mm256_set1_pd(1.0);
            let zero = _mm256_setzero_pd();
            let infinity = _mm256_set1_pd(f64::INFINITY);
            for j in 0..k {
                let diagonal = entry(j, j);
                let inverse_j = inverse[j].as_mut_ptr();
                for part in 0..L / 4 {
                    let value = _mm256_loadu_pd(diagonal.add(4 * part));
                    let ok = _mm256_and_pd(
                        _mm256_cmp_pd::<_CMP_GT_OQ>(value, zero),
                        _mm256_cmp_pd::<_CMP_LT_OQ>(value, infinity),
                    );
                    let flags = failed.as_mut_ptr().add(4 * part);
                    let newly_failed = _mm256_andnot_pd(ok, one);
                    _mm256_storeu_pd(flags, _mm256_or_pd(_mm256_loadu_pd(flags), newly_failed));
                    let pivot = _mm256_sqrt_pd(_mm256_blendv_pd(one, value, ok));
                    _mm256_storeu_pd(diagonal.add(4 * part), pivot);
                    _mm256_storeu_pd(inverse_j.add(4 * part), _mm256_div_pd(one, pivot));
                }
                for i in j + 1..k {
                    scale::<L>(entry(i, j), inverse_j);
                }
                for i in j + 1..k {
                    for p in j + 1..=i {
                        subtract_product::<L>(entry(i, p), entry(i, j), entry(p, j));
                    }
                }
            }
            for j in 0..k {
                scale::<L>(element(j), inverse[j].as_ptr());
                for i in j + 1..k {
                    subtract_product::<L>(element(i), entry(i, j), element(j));
                }
            }
            for i in (0..k).rev() {
                scale::<L>(element(i), inverse[i].as_ptr());
                for p in 0..i {
                    subtract_product::<L>(element(p), entry(i, p), element(i));
                }
            }
        }
        std::array::from_fn(|lane| failed[lane] == 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_known_system() {
        // a = [[4, 2], [2, 3]], x = [1, -1] -> b = [2, -1]
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, -1.0];
        assert!(cholesky_solve(&mut a, &mut b, 2));
        assert!((b[0] - 1.0).abs() < 1e-12 && (b[1] + 1.0).abs() < 1e-12);
    }

    const LANES: usize = SMALL_RANK_LANES;

    /// `M M^T + 0.3 I` for a pseudo-random `M`, different per `lane`: positive definite.
    fn positive_definite(k: usize, lane: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..k * k)
            .map(|index| ((index * 31 + lane * 7) % 23) as f64 / 23.0 - 0.5)
            .collect();
        let mut a = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                let product: f64 = (0..k).map(|p| m[i * k + p] * m[j * k + p]).sum();
                a[i * k + j] = product + if i == j { 0.3 } else { 0.0 };
            }
        }
        a
    }

    fn lanes_match_single_solves<const L: usize>(k: usize) {
        let systems: Vec<(Vec<f64>, Vec<f64>)> = (0..L)
            .map(|lane| {
                let right = (0..k).map(|i| (i + lane) as f64 / 5.0 - 1.0).collect();
                (positive_definite(k, lane), right)
            })
            .collect();
        let mut a = vec![[0f64; L]; k * k];
        let mut b = vec![[0f64; L]; k];
        for (lane, (matrix, right)) in systems.iter().enumerate() {
            for (entry, value) in a.iter_mut().zip(matrix) {
                entry[lane] = *value;
            }
            for (entry, value) in b.iter_mut().zip(right) {
                entry[lane] = *value;
            }
        }
        a[0][3] = -1.0; // lane 3 is no longer positive definite
        let positive = cholesky_solve_lanes(&mut a, &mut b, k);
        let expected: [bool; L] = std::array::from_fn(|lane| lane != 3);
        assert_eq!(positive, expected, "k = {k}");
        for (lane, (matrix, right)) in systems.iter().enumerate().filter(|(lane, _)| *lane != 3) {
            let (mut matrix, mut right) = (matrix.clone(), right.clone());
            assert!(cholesky_solve(&mut matrix, &mut right, k));
            for i in 0..k {
                let scale = right[i].abs().max(1.0);
                assert!((right[i] - b[i][lane]).abs() < 1e-9 * scale, "k = {k}");
            }
        }
    }

    #[test]
    fn lanes_match_single_solves_and_flag_failures() {
        // Right-looking (k <= 16) and left-looking (k > 16) forms.
        for k in [3, 10, 16] {
            lanes_match_single_solves::<SMALL_RANK_LANES>(k);
        }
        for k in [17, 40] {
            lanes_match_single_solves::<LARGE_RANK_LANES>(k);
        }
    }

    #[test]
    fn vector_and_portable_lane_solves_agree_to_the_bit() {
        let k = 7;
        let mut a = vec![[0f64; LANES]; k * k];
        let mut b = vec![[0f64; LANES]; k];
        for lane in 0..LANES {
            for (entry, value) in a.iter_mut().zip(positive_definite(k, lane)) {
                entry[lane] = value;
            }
            for (i, entry) in b.iter_mut().enumerate() {
                entry[lane] = (i + lane) as f64 / 5.0 - 1.0;
            }
        }
        a[0][5] = f64::NAN;
        let (mut a_fast, mut b_fast) = (a.clone(), b.clone());
        let positive_fast = cholesky_solve_lanes(&mut a_fast, &mut b_fast, k);
        let positive = right_looking(&mut a, &mut b, k);
        assert_eq!(positive_fast, positive);
        assert!(!positive[5] && positive.iter().filter(|&&ok| ok).count() == LANES - 1);
        for i in 0..k {
            for lane in (0..LANES).filter(|&lane| lane != 5) {
                assert_eq!(
                    b_fast[i][lane].to_bits(),
                    b[i][lane].to_bits(),
                    "({i}, {lane})"
                );
            }
        }
    }

    #[test]
    fn nonnegative_solutions_are_never_negative_and_exact_when_unconstrained() {
        // Unconstrained optimum (1, -1) becomes (x1, 0) with x1 = b1 / a11.
        let a = vec![4.0, 2.0, 2.0, 3.0];
        let mut x = vec![0.0; 2];
        nonnegative_least_squares(&a, &[2.0, -1.0], 2, &mut x);
        assert!((x[0] - 0.5).abs() < 1e-9 && x[1] == 0.0, "{x:?}");
        // An interior optimum is found exactly.
        nonnegative_least_squares(&a, &[6.0, 5.0], 2, &mut x);
        assert!(
            (x[0] - 1.0).abs() < 1e-8 && (x[1] - 1.0).abs() < 1e-8,
            "{x:?}"
        );
    }

    #[test]
    fn rejects_indefinite_matrices() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        assert!(!cholesky_solve(&mut a, &mut b, 2));
    }
}
