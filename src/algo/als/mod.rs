//! Alternating least squares for explicit ratings, with Spark MLlib's semantics.
//!
//! Each sweep solves every item factor with the user factors fixed, then every user factor
//! with the item factors fixed (Spark's order). Row `u` solves
//! `(Y_u^T Y_u + reg_param * n_u * I) x_u = Y_u^T r_u`, where `n_u` is its rating count
//! (ALS-WR scaling, as Spark). Factors start as seeded Gaussian vectors scaled to unit length,
//! as in Spark.
//!
//! Hot loop: the normal equations of one row are accumulated as rank-1 updates straight from
//! the factor table into a reused f32 buffer (no per-rating allocation, no gather copy); the
//! k x k system is then solved in f64 by an in-place Cholesky. Rows are independent, so they
//! are solved in parallel on the rayon pool; rayon's work stealing splits the row range down to
//! single rows where power-law row lengths make work uneven. Every row's arithmetic is
//! sequential and every reduction runs over fixed chunks in a fixed order, so the model is
//! bit-identical for any thread count.

pub mod solve;

use rayon::prelude::*;

use crate::dataset::Csr;
use crate::dataset::split::{mix, unit};

#[derive(Clone, Debug, PartialEq)]
pub struct AlsParams {
    pub rank: usize,
    pub max_iter: usize,
    pub reg_param: f64,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AlsError {
    #[error(
        "ALS diverged: non-finite factors in iteration {iteration} ({side}); try a larger reg_param"
    )]
    NonFinite {
        iteration: usize,
        side: &'static str,
    },
}

/// Trained factors over the training data's dense indices.
#[derive(Clone, Debug, PartialEq)]
pub struct AlsModel {
    pub rank: usize,
    /// `users x rank`, row-major.
    pub user_factors: Vec<f32>,
    /// `items x rank`, row-major.
    pub item_factors: Vec<f32>,
    /// Whether each user / item had training ratings (others have no factors).
    pub user_seen: Vec<bool>,
    pub item_seen: Vec<bool>,
}

impl AlsModel {
    pub fn users(&self) -> usize {
        self.user_seen.len()
    }

    pub fn items(&self) -> usize {
        self.item_seen.len()
    }

    /// Predicted rating, or `None` for a user or item without training data (cold start).
    pub fn predict(&self, user: usize, item: usize) -> Option<f32> {
        if !*self.user_seen.get(user)? || !*self.item_seen.get(item)? {
            return None;
        }
        let k = self.rank;
        Some(dot(
            &self.user_factors[user * k..(user + 1) * k],
            &self.item_factors[item * k..(item + 1) * k],
        ))
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Stream keys of the initial factors.
const USER_INIT: u64 = 0x55_53_45_52;
const ITEM_INIT: u64 = 0x49_54_45_4D;

fn initial_factors(rows: usize, rank: usize, seed: u64, stream: u64) -> Vec<f32> {
    let key = mix(seed, stream);
    let mut factors = vec![0f32; rows * rank];
    factors
        .par_chunks_mut(rank)
        .enumerate()
        .for_each(|(row, vector)| {
            let row_key = mix(key, row as u64);
            for (component, value) in vector.iter_mut().enumerate() {
                let u1 = unit(row_key, 2 * component as u64).max(f64::MIN_POSITIVE);
                let u2 = unit(row_key, 2 * component as u64 + 1);
                *value = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
            }
            let norm = dot(vector, vector).sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|value| *value /= norm);
            }
        });
    factors
}

/// Per-thread buffers of one row solve.
struct Scratch {
    normal_f32: Vec<f32>,
    normal: Vec<f64>,
    right_side: Vec<f64>,
    right_side_f32: Vec<f32>,
}

/// Solves every row of `by_row` against the fixed factors `fixed`, writing into `out`.
fn solve_side(by_row: &Csr, fixed: &[f32], rank: usize, reg_param: f64, out: &mut [f32]) {
    let k = rank;
    out.par_chunks_mut(k)
        .enumerate()
        .with_min_len(16)
        .for_each_init(
            || Scratch {
                normal_f32: vec![0.0; k * k],
                normal: vec![0.0; k * k],
                right_side: vec![0.0; k],
                right_side_f32: vec![0.0; k],
            },
            |scratch, (row, x)| {
                let (columns, values) = by_row.row(row);
                if columns.is_empty() {
                    x.fill(0.0);
                    return;
                }
                scratch.normal_f32.fill(0.0);
                scratch.right_side_f32.fill(0.0);
                for (&column, &rating) in columns.iter().zip(values) {
                    let y = &fixed[column as usize * k..column as usize * k + k];
                    for (a, &ya) in y.iter().enumerate() {
                        let normal_row = &mut scratch.normal_f32[a * k..a * k + k];
                        for (entry, &yb) in normal_row.iter_mut().zip(y) {
                            *entry += ya * yb;
                        }
                    }
                    for (entry, &ya) in scratch.right_side_f32.iter_mut().zip(y) {
                        *entry += rating * ya;
                    }
                }
                let ridge = reg_param * columns.len() as f64;
                let mut jitter = 0.0;
                loop {
                    for (target, &source) in scratch.normal.iter_mut().zip(&scratch.normal_f32) {
                        *target = source as f64;
                    }
                    for a in 0..k {
                        scratch.normal[a * k + a] += ridge + jitter;
                    }
                    for (target, &source) in
                        scratch.right_side.iter_mut().zip(&scratch.right_side_f32)
                    {
                        *target = source as f64;
                    }
                    if solve::cholesky_solve(&mut scratch.normal, &mut scratch.right_side, k) {
                        break;
                    }
                    // Singular only when reg_param = 0 and the row has fewer ratings than rank:
                    // a tiny ridge picks the minimum-norm-like solution instead of failing.
                    let trace: f64 = (0..k).map(|a| scratch.normal_f32[a * k + a] as f64).sum();
                    jitter = if jitter == 0.0 {
                        1e-6 * (trace / k as f64).max(1e-6)
                    } else {
                        jitter * 100.0
                    };
                    if jitter > 1e6 {
                        scratch.right_side.fill(f64::NAN);
                        break;
                    }
                }
                for (target, &source) in x.iter_mut().zip(&scratch.right_side) {
                    *target = source as f32;
                }
            },
        );
}

/// Root mean squared error over the ratings in `by_user`, reduced in fixed chunks.
pub fn rmse(by_user: &Csr, user_factors: &[f32], item_factors: &[f32], rank: usize) -> f64 {
    const CHUNK: usize = 4096;
    let rows = by_user.rows();
    let partial: Vec<f64> = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut sum = 0.0f64;
            for user in chunk * CHUNK..((chunk + 1) * CHUNK).min(rows) {
                let x = &user_factors[user * rank..(user + 1) * rank];
                let (items, values) = by_user.row(user);
                for (&item, &rating) in items.iter().zip(values) {
                    let y = &item_factors[item as usize * rank..(item as usize + 1) * rank];
                    let error = (dot(x, y) - rating) as f64;
                    sum += error * error;
                }
            }
            sum
        })
        .collect();
    let total: f64 = partial.iter().sum();
    (total / by_user.nnz().max(1) as f64).sqrt()
}

/// Trains on the ratings given both ways (by user and by item, as built from the same triples).
/// `on_iteration(iteration, train_rmse)` is called after every sweep.
pub fn train(
    by_user: &Csr,
    by_item: &Csr,
    params: &AlsParams,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> Result<AlsModel, AlsError> {
    let k = params.rank;
    let users = by_user.rows();
    let items = by_item.rows();
    let mut user_factors = initial_factors(users, k, params.seed, USER_INIT);
    let mut item_factors = initial_factors(items, k, params.seed, ITEM_INIT);
    for iteration in 1..=params.max_iter {
        solve_side(
            by_item,
            &user_factors,
            k,
            params.reg_param,
            &mut item_factors,
        );
        if item_factors.par_iter().any(|value| !value.is_finite()) {
            return Err(AlsError::NonFinite {
                iteration,
                side: "item factors",
            });
        }
        solve_side(
            by_user,
            &item_factors,
            k,
            params.reg_param,
            &mut user_factors,
        );
        if user_factors.par_iter().any(|value| !value.is_finite()) {
            return Err(AlsError::NonFinite {
                iteration,
                side: "user factors",
            });
        }
        on_iteration(iteration, rmse(by_user, &user_factors, &item_factors, k));
    }
    let user_seen = (0..users).map(|user| by_user.row_len(user) > 0).collect();
    let item_seen = (0..items).map(|item| by_item.row_len(item) > 0).collect();
    Ok(AlsModel {
        rank: k,
        user_factors,
        item_factors,
        user_seen,
        item_seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::split::train_test;
    use crate::ingest::synthetic::generate_ratings;

    fn fit(threads: usize, noise: f64) -> (AlsModel, f64) {
        let data = generate_ratings(800, 400, 40_000, 4, noise, 3);
        let (train_rows, test_rows) = train_test(data.len(), 0.2, 1);
        let by_user = Csr::build(
            data.users(),
            &data.user,
            &data.item,
            &data.rating,
            &train_rows,
        );
        let by_item = Csr::build(
            data.items(),
            &data.item,
            &data.user,
            &data.rating,
            &train_rows,
        );
        // The generator adds a constant offset to a rank-4 signal: rank 5 can fit it.
        let params = AlsParams {
            rank: 5,
            max_iter: 10,
            reg_param: 0.02,
            seed: 9,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let model = pool
            .install(|| train(&by_user, &by_item, &params, &mut |_, _| {}))
            .unwrap();
        let mut squared = 0.0;
        let mut count = 0;
        for &row in &test_rows {
            let row = row as usize;
            if let Some(prediction) =
                model.predict(data.user[row] as usize, data.item[row] as usize)
            {
                squared += ((prediction - data.rating[row]) as f64).powi(2);
                count += 1;
            }
        }
        (model, (squared / count as f64).sqrt())
    }

    #[test]
    fn reaches_the_noise_level_on_low_rank_data() {
        let (_, test_rmse) = fit(2, 0.1);
        assert!(
            test_rmse < 0.2,
            "test RMSE {test_rmse} should approach the noise level 0.1"
        );
    }

    #[test]
    fn same_model_for_any_thread_count() {
        assert_eq!(fit(1, 0.1).0, fit(3, 0.1).0);
    }

    #[test]
    fn unseen_rows_have_no_prediction() {
        let triples = Csr::build(2, &[0], &[0], &[4.0], &[0]);
        let by_item = Csr::build(2, &[0], &[0], &[4.0], &[0]);
        let params = AlsParams {
            rank: 2,
            max_iter: 2,
            reg_param: 0.0,
            seed: 1,
        };
        let model = train(&triples, &by_item, &params, &mut |_, _| {}).unwrap();
        assert!(model.predict(0, 0).is_some_and(|p| (p - 4.0).abs() < 0.01));
        assert_eq!(model.predict(1, 0), None);
        assert_eq!(model.predict(0, 1), None);
    }
}
