//! Fold-in: the factors of a user who was not in training (or who brings new interactions),
//! solved against the fixed item factors with the model's own loss, so that a served request can
//! recommend for them without a retrain. The same normal equations as a training half-sweep for
//! one row (explicit ALS-WR, or Spark's implicit confidence form), accumulated in f64 and solved
//! exactly (Cholesky, or non-negative least squares for `nonnegative` models).

use super::solve;

/// The parts of a model's parameters the loss needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldInLoss {
    pub reg_param: f64,
    pub implicit_prefs: bool,
    pub alpha: f64,
    pub nonnegative: bool,
}

/// `sum_i y_i y_i^T` over every item row (row-major `rank x rank`), which the implicit loss adds
/// to every row's system; computed once per loaded model.
pub fn item_gram(item_factors: &[f32], rank: usize) -> Vec<f64> {
    let mut gram = vec![0f64; rank * rank];
    for row in item_factors.chunks_exact(rank) {
        for a in 0..rank {
            let ya = f64::from(row[a]);
            for b in a..rank {
                gram[a * rank + b] += ya * f64::from(row[b]);
            }
        }
    }
    for a in 0..rank {
        for b in 0..a {
            gram[a * rank + b] = gram[b * rank + a];
        }
    }
    gram
}

/// The factor row for `entries` (item row, rating) against `item_factors`; `gram` is
/// [`item_gram`] for implicit models. `None` when the system cannot be solved (no entries with
/// `reg_param = 0`, or a non-finite result).
pub fn fold_in(
    item_factors: &[f32],
    rank: usize,
    entries: &[(u32, f32)],
    loss: FoldInLoss,
    gram: Option<&[f64]>,
) -> Option<Vec<f32>> {
    let k = rank;
    let mut normal = match (loss.implicit_prefs, gram) {
        (true, Some(gram)) => gram.to_vec(),
        _ => vec![0f64; k * k],
    };
    let mut right = vec![0f64; k];
    let mut count = 0usize;
    for &(item, rating) in entries {
        let y = &item_factors[item as usize * k..(item as usize + 1) * k];
        let (weight, target) = if loss.implicit_prefs {
            // c = 1 + alpha |r|; the Gram already holds the 1; p = 1 for r > 0.
            let confidence = 1.0 + loss.alpha * f64::from(rating).abs();
            let preference = if rating > 0.0 { 1.0 } else { 0.0 };
            (confidence - 1.0, confidence * preference)
        } else {
            (1.0, f64::from(rating))
        };
        if !loss.implicit_prefs || rating > 0.0 {
            count += 1;
        }
        for a in 0..k {
            let ya = f64::from(y[a]);
            right[a] += target * ya;
            for b in 0..k {
                normal[a * k + b] += weight * ya * f64::from(y[b]);
            }
        }
    }
    let ridge = loss.reg_param * count as f64;
    for a in 0..k {
        normal[a * k + a] += ridge;
    }
    let solution = if loss.nonnegative {
        let mut x = vec![0f64; k];
        solve::nonnegative_least_squares(&normal, &right, k, &mut x);
        x
    } else {
        if !solve::cholesky_solve(&mut normal, &mut right, k) {
            return None;
        }
        right
    };
    let factors: Vec<f32> = solution.iter().map(|&value| value as f32).collect();
    factors
        .iter()
        .all(|value| value.is_finite())
        .then_some(factors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_user_whose_ratings_the_items_explain() {
        // Items spanning rank 2; a user (1, -2) rates them exactly; a tiny ridge.
        let items = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -1.0];
        let user = [1.0f32, -2.0];
        let entries: Vec<(u32, f32)> = (0..4u32)
            .map(|item| {
                let y = &items[item as usize * 2..item as usize * 2 + 2];
                (item, y[0] * user[0] + y[1] * user[1])
            })
            .collect();
        let loss = FoldInLoss {
            reg_param: 1e-9,
            implicit_prefs: false,
            alpha: 1.0,
            nonnegative: false,
        };
        let x = fold_in(&items, 2, &entries, loss, None).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-5 && (x[1] + 2.0).abs() < 1e-5,
            "{x:?}"
        );
        let implicit = FoldInLoss {
            implicit_prefs: true,
            reg_param: 0.1,
            ..loss
        };
        let gram = item_gram(&items, 2);
        let x = fold_in(&items, 2, &[(2, 5.0)], implicit, Some(&gram)).unwrap();
        // Preferring item 2 (1, 1) points the user along it.
        assert!(x[0] > 0.0 && x[1] > 0.0, "{x:?}");
        assert!(
            fold_in(
                &items,
                2,
                &[],
                FoldInLoss {
                    reg_param: 0.0,
                    ..loss
                },
                None
            )
            .is_none()
        );
    }
}
