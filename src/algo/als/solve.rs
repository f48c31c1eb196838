//! Small dense solves for the per-row normal equations: a k x k Cholesky factorization done in
//! place on a reused buffer, because a general linear-algebra call per row would allocate and
//! cost more than the arithmetic for the ranks ALS uses (5 to 200).

/// Solves `a x = b` for symmetric positive definite `a` (row-major `k x k`, overwritten by its
/// Cholesky factor); the solution replaces `b`. Returns false when `a` is not positive definite.
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> bool {
    debug_assert_eq!(a.len(), k * k);
    debug_assert_eq!(b.len(), k);
    for j in 0..k {
        let mut diagonal = a[j * k + j];
        for p in 0..j {
            diagonal -= a[j * k + p] * a[j * k + p];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return false;
        }
        let pivot = diagonal.sqrt();
        a[j * k + j] = pivot;
        for i in j + 1..k {
            let mut value = a[i * k + j];
            for p in 0..j {
                value -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = value / pivot;
        }
    }
    // Forward substitution: L y = b.
    for i in 0..k {
        let mut value = b[i];
        for p in 0..i {
            value -= a[i * k + p] * b[p];
        }
        b[i] = value / a[i * k + i];
    }
    // Back substitution: L^T x = y.
    for i in (0..k).rev() {
        let mut value = b[i];
        for p in i + 1..k {
            value -= a[p * k + i] * b[p];
        }
        b[i] = value / a[i * k + i];
    }
    true
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
    fn rejects_indefinite_matrices() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        assert!(!cholesky_solve(&mut a, &mut b, 2));
    }
}
