//! Alternating least squares for explicit ratings, with Spark MLlib's semantics.
//!
//! Each sweep solves every item factor with the user factors fixed, then every user factor
//! with the item factors fixed (Spark's order). Row `u` solves
//! `(Y_u^T Y_u + reg_param * n_u * I) x_u = Y_u^T r_u`, where `n_u` is its rating count
//! (ALS-WR scaling, as Spark). Factors start as seeded Gaussian vectors scaled to unit length,
//! as in Spark.
//!
//! Hot loop ([`kernel`]): the normal equations of one row are accumulated from the factor table
//! into reused f32 buffers (no per-rating allocation); the k x k system is then solved in f64 by
//! an in-place Cholesky. Rows are independent, so they
//! are solved in parallel on the rayon pool; rayon's work stealing splits the row range down to
//! single rows where power-law row lengths make work uneven. Every row's arithmetic is
//! sequential and every reduction runs over fixed chunks in a fixed order, so the model is
//! bit-identical for any thread count.

pub mod kernel;
pub mod solve;

use rayon::prelude::*;

use kernel::FactorTable;

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
const USER_INIT: u64 = 0x5553_4552;
const ITEM_INIT: u64 = 0x4954_454D;

fn initial_factors(rows: usize, rank: usize, seed: u64, stream: u64) -> FactorTable {
    let key = mix(seed, stream);
    let mut factors = FactorTable::zeroed(rows, rank);
    let stride = factors.stride();
    factors
        .as_mut_slice()
        .par_chunks_mut(stride)
        .enumerate()
        .for_each(|(row, padded)| {
            let vector = &mut padded[..rank];
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

/// Per-thread buffers of one group of row solves.
struct Scratch {
    /// `LANES` normal matrices as the kernel writes them (`rank x stride` f32 each).
    normal_f32: Vec<f32>,
    right_side_f32: Vec<f32>,
    /// The same systems interleaved for the batched solve.
    normal_lanes: Vec<solve::Lanes>,
    right_side_lanes: Vec<solve::Lanes>,
    /// One system for the fallback solve of a lane that was not positive definite.
    normal: Vec<f64>,
    right_side: Vec<f64>,
}

/// Solves every row of `by_row` against the fixed factors `fixed`, writing into `out`. With
/// `with_losses`, also writes each row's sum of squared training errors under the new factors
/// into `losses`, while its fixed rows are still in cache.
///
/// Rows go in fixed groups of [`solve::LANES`] (the batched Cholesky); the grouping depends
/// only on row numbers, so the result does not depend on the thread count.
fn solve_side(
    by_row: &Csr,
    fixed: &FactorTable,
    rank: usize,
    reg_param: f64,
    out: &mut FactorTable,
    losses: &mut [f64],
    with_losses: bool,
) {
    const GROUP: usize = solve::LANES;
    let k = rank;
    let stride = fixed.stride();
    out.as_mut_slice()
        .par_chunks_mut(stride * GROUP)
        .zip(losses.par_chunks_mut(GROUP))
        .enumerate()
        .with_min_len(4)
        .for_each_init(
            || Scratch {
                normal_f32: vec![0.0; GROUP * k * stride],
                right_side_f32: vec![0.0; GROUP * stride],
                normal_lanes: vec![[0.0; GROUP]; k * k],
                right_side_lanes: vec![[0.0; GROUP]; k],
                normal: vec![0.0; k * k],
                right_side: vec![0.0; k],
            },
            |scratch, (group, (padded_rows, group_losses))| {
                let first_row = group * GROUP;
                let rows_here = group_losses.len();
                scratch.normal_f32.fill(0.0);
                scratch.right_side_f32.fill(0.0);
                for lane in 0..GROUP {
                    let normal =
                        &mut scratch.normal_f32[lane * k * stride..(lane + 1) * k * stride];
                    let right_side =
                        &mut scratch.right_side_f32[lane * stride..(lane + 1) * stride];
                    let count = if lane < rows_here {
                        let (columns, values) = by_row.row(first_row + lane);
                        kernel::accumulate(columns, values, fixed, normal, right_side);
                        columns.len()
                    } else {
                        0
                    };
                    // An empty lane gets the identity system, whose solution is zero.
                    let ridge = if count == 0 {
                        1.0
                    } else {
                        reg_param * count as f64
                    };
                    for a in 0..k {
                        for b in 0..k {
                            scratch.normal_lanes[a * k + b][lane] = normal[a * stride + b] as f64;
                        }
                        scratch.normal_lanes[a * k + a][lane] += ridge;
                        scratch.right_side_lanes[a][lane] = right_side[a] as f64;
                    }
                }
                let positive = solve::cholesky_solve_lanes(
                    &mut scratch.normal_lanes,
                    &mut scratch.right_side_lanes,
                    k,
                );
                for (lane, loss) in group_losses.iter_mut().enumerate() {
                    let (columns, values) = by_row.row(first_row + lane);
                    let x = &mut padded_rows[lane * stride..lane * stride + k];
                    if positive[lane] {
                        for (target, source) in x.iter_mut().zip(&scratch.right_side_lanes) {
                            *target = source[lane] as f32;
                        }
                    } else {
                        solve_with_ridge(
                            &scratch.normal_f32[lane * k * stride..(lane + 1) * k * stride],
                            &scratch.right_side_f32[lane * stride..(lane + 1) * stride],
                            reg_param * columns.len() as f64,
                            k,
                            stride,
                            &mut scratch.normal,
                            &mut scratch.right_side,
                        );
                        for (target, &source) in x.iter_mut().zip(&scratch.right_side) {
                            *target = source as f32;
                        }
                    }
                    *loss = 0.0;
                    if with_losses {
                        let x = &*x;
                        *loss = columns
                            .iter()
                            .zip(values)
                            .map(|(&column, &rating)| {
                                let error = (dot(x, fixed.row(column as usize)) - rating) as f64;
                                error * error
                            })
                            .sum();
                    }
                }
            },
        );
}

/// The fallback for a system that was not positive definite: singular only when
/// reg_param = 0 and the row has fewer ratings than rank, so a tiny extra ridge picks a
/// minimum-norm-like solution instead of failing. The solution is left in `right_side`
/// (NaN if even a large ridge fails, which the caller reports as divergence).
fn solve_with_ridge(
    normal_f32: &[f32],
    right_side_f32: &[f32],
    ridge: f64,
    k: usize,
    stride: usize,
    normal: &mut [f64],
    right_side: &mut [f64],
) {
    let trace: f64 = (0..k).map(|a| normal_f32[a * stride + a] as f64).sum();
    let mut jitter = 1e-6 * (trace / k as f64).max(1e-6);
    while jitter <= 1e6 {
        for a in 0..k {
            for b in 0..k {
                normal[a * k + b] = normal_f32[a * stride + b] as f64;
            }
            normal[a * k + a] += ridge + jitter;
            right_side[a] = right_side_f32[a] as f64;
        }
        if solve::cholesky_solve(normal, right_side, k) {
            return;
        }
        jitter *= 100.0;
    }
    right_side.fill(f64::NAN);
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
    let mut item_losses = vec![0f64; items];
    let mut user_losses = vec![0f64; users];
    for iteration in 1..=params.max_iter {
        solve_side(
            by_item,
            &user_factors,
            k,
            params.reg_param,
            &mut item_factors,
            &mut item_losses,
            false,
        );
        if item_factors
            .as_slice()
            .par_iter()
            .any(|value| !value.is_finite())
        {
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
            &mut user_losses,
            true,
        );
        if user_factors
            .as_slice()
            .par_iter()
            .any(|value| !value.is_finite())
        {
            return Err(AlsError::NonFinite {
                iteration,
                side: "user factors",
            });
        }
        // Summed in row order, so the figure does not depend on the thread count.
        let squared: f64 = user_losses.iter().sum();
        on_iteration(iteration, (squared / by_user.nnz().max(1) as f64).sqrt());
    }
    let user_seen = (0..users).map(|user| by_user.row_len(user) > 0).collect();
    let item_seen = (0..items).map(|item| by_item.row_len(item) > 0).collect();
    Ok(AlsModel {
        rank: k,
        user_factors: user_factors.compact(),
        item_factors: item_factors.compact(),
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
