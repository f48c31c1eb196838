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

/// Systems solved together by [`cholesky_solve_lanes`]. The small solves are bound by the
/// latency of their dependent multiply-adds, so more independent systems per step fill the
/// pipeline: 8 (two AVX2 registers of f64) made the 4M-rating fit about 20% faster than 4 in
/// side-by-side runs; 16 gained nothing more.
pub const LANES: usize = 8;

/// One matrix or vector entry of [`LANES`] independent systems.
pub type Lanes = [f64; LANES];

/// Solves [`LANES`] independent systems at once, entry `[i][lane]` belonging to system `lane`
/// (layout as in [`cholesky_solve`]). One system's factorization is a long chain of dependent
/// short dot products and square roots; interleaving independent systems lets every step run
/// as one vector operation and hides that latency. Returns which systems were positive
/// definite; the others hold garbage and must be solved again by the caller.
#[inline(always)]
pub fn cholesky_solve_lanes(a: &mut [Lanes], b: &mut [Lanes], k: usize) -> [bool; LANES] {
    debug_assert_eq!(a.len(), k * k);
    debug_assert_eq!(b.len(), k);
    let mut positive = [true; LANES];
    let mut inverse_storage = [[0f64; LANES]; 64];
    let mut inverse_vec;
    let inverse: &mut [Lanes] = if k <= 64 {
        &mut inverse_storage[..k]
    } else {
        inverse_vec = vec![[0f64; LANES]; k];
        &mut inverse_vec
    };
    for i in 0..k {
        let (done, rest) = a.split_at_mut(i * k);
        let row_i = &mut rest[..k];
        for j in 0..i {
            let row_j = &done[j * k..j * k + j];
            let mut sum = [0f64; LANES];
            for (x, y) in row_i[..j].iter().zip(row_j) {
                for lane in 0..LANES {
                    sum[lane] += x[lane] * y[lane];
                }
            }
            for lane in 0..LANES {
                row_i[j][lane] = (row_i[j][lane] - sum[lane]) * inverse[j][lane];
            }
        }
        let mut diagonal = row_i[i];
        for x in &row_i[..i] {
            for lane in 0..LANES {
                diagonal[lane] -= x[lane] * x[lane];
            }
        }
        for lane in 0..LANES {
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
        let mut sum = [0f64; LANES];
        for (x, y) in a[i * k..i * k + i].iter().zip(&b[..i]) {
            for lane in 0..LANES {
                sum[lane] += x[lane] * y[lane];
            }
        }
        for lane in 0..LANES {
            b[i][lane] = (b[i][lane] - sum[lane]) * inverse[i][lane];
        }
    }
    for i in (0..k).rev() {
        let mut value = b[i];
        for p in i + 1..k {
            for lane in 0..LANES {
                value[lane] -= a[p * k + i][lane] * b[p][lane];
            }
        }
        for lane in 0..LANES {
            b[i][lane] = value[lane] * inverse[i][lane];
        }
    }
    positive
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

    #[test]
    fn lanes_match_single_solves_and_flag_failures() {
        let k = 3;
        let systems: Vec<(Vec<f64>, Vec<f64>)> = (0..LANES)
            .map(|lane| {
                let d = 2.0 + lane as f64;
                let a = vec![d, 0.5, 0.1, 0.5, d, 0.3, 0.1, 0.3, d];
                (a, vec![1.0, -2.0, lane as f64])
            })
            .collect();
        let mut a = vec![[0f64; LANES]; k * k];
        let mut b = vec![[0f64; LANES]; k];
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
        let expected: [bool; LANES] = std::array::from_fn(|lane| lane != 3);
        assert_eq!(positive, expected);
        for (lane, (matrix, right)) in systems.iter().enumerate().filter(|(lane, _)| *lane != 3) {
            let (mut matrix, mut right) = (matrix.clone(), right.clone());
            assert!(cholesky_solve(&mut matrix, &mut right, k));
            for i in 0..k {
                assert!((right[i] - b[i][lane]).abs() < 1e-12);
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
