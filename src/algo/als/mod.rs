//! Alternating least squares with Spark MLlib's semantics, for explicit ratings and implicit
//! feedback.
//!
//! Each sweep solves every item factor with the user factors fixed, then every user factor
//! with the item factors fixed (Spark's order). Factors start as seeded Gaussian vectors scaled
//! to unit length (absolute values with `nonnegative`), as in Spark.
//!
//! Explicit: row `u` solves `(Y_u^T Y_u + reg_param * n_u * I) x_u = Y_u^T r_u`, `n_u` its
//! rating count (ALS-WR scaling, as Spark).
//!
//! Implicit (Hu, Koren and Volinsky, with Spark's conventions): confidence `c = 1 + alpha * |r|`,
//! preference `p = 1` for `r > 0` else 0, and row `u` solves
//! `(Y^T Y + sum (c - 1) y y^T + reg_param * n_u * I) x_u = sum c p y` over its entries, with
//! `n_u` its count of positive entries (as Spark). `Y^T Y` over all fixed rows is computed once per
//! half-sweep. The `implicit` library uses confidence `alpha * r` instead, and `implicit`'s
//! regularization is not scaled by the count.
//!
//! Solvers: Cholesky (exact, the default for explicit ratings), conjugate gradient with
//! `cg_steps` steps warm-started from the previous factors (the default for implicit feedback:
//! it never forms the k x k matrix, so its cost per entry is O(k) instead of O(k^2)), and a
//! non-negative least squares solve (projected coordinate descent on the normal equations) for
//! `nonnegative`.
//!
//! Hot loop ([`kernel`]): the normal equations of one row are accumulated from the factor table
//! into reused f32 buffers (no per-rating allocation; for ranks up to 16 in a single pass with
//! every sum in registers); the k x k systems are then solved in f64, 16 rows at a time up to
//! rank 16 and 8 above ([`solve::cholesky_solve_lanes`]). For explicit ratings the training
//! loss of a row comes from its normal equations (`sum r^2 - x.b - ridge |x|^2`), not from a
//! second pass over its ratings. Rows are independent, so they are solved in parallel on the
//! rayon pool; rayon's work stealing splits the row range down to small groups where power-law
//! row lengths make work uneven. Every row's arithmetic is sequential, groups depend only on
//! row numbers and the rank, and every reduction runs over fixed chunks in a fixed order, so
//! the model is bit-identical for any thread count.
//!
//! Where the time goes (4M ratings, rank 10, 2 threads, about 42 ms per iteration): about half
//! in the kernel, whose floor is the random fetch of factor rows (the user table is 12.8 MB,
//! beyond L2; the loop prefetches 16 entries ahead, across row ends), and most of the rest in
//! the 2.4M small solves (about 55 ns each, bound by the latency of the pivots' square roots
//! and divisions, which 16 interleaved systems hide only in part).

mod conjugate;
pub mod fold_in;
mod gram;
pub mod kernel;
mod lines;
pub mod recommend;
pub mod solve;

use rayon::prelude::*;

use kernel::{FactorTable, Terms};

use crate::dataset::Csr;
use crate::dataset::split::{mix, unit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    Cholesky,
    ConjugateGradient { steps: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlsParams {
    pub rank: usize,
    pub max_iter: usize,
    pub reg_param: f64,
    pub seed: u64,
    pub implicit_prefs: bool,
    pub alpha: f64,
    pub solver: Solver,
    /// Non-negative factors (an NNLS solve per row; `solver` is then not used).
    pub nonnegative: bool,
}

impl AlsParams {
    /// Spark's defaults for the given shape (used by tests and as documentation).
    pub fn explicit(rank: usize, max_iter: usize, reg_param: f64, seed: u64) -> AlsParams {
        AlsParams {
            rank,
            max_iter,
            reg_param,
            seed,
            implicit_prefs: false,
            alpha: 1.0,
            solver: Solver::Cholesky,
            nonnegative: false,
        }
    }
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

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums: a single running sum is a dependency chain the compiler
    // may not reorder (strict floating point), which keeps it scalar.
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Stream keys of the initial factors.
const USER_INIT: u64 = 0x5553_4552;
const ITEM_INIT: u64 = 0x4954_454D;

fn initial_factors(
    rows: usize,
    rank: usize,
    seed: u64,
    stream: u64,
    nonnegative: bool,
) -> FactorTable {
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
                let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                *value = if nonnegative { normal.abs() } else { normal } as f32;
            }
            let norm = dot(vector, vector).sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|value| *value /= norm);
            }
        });
    factors
}

/// One side's entries in the form the solves use: the CSR, per-entry weights and targets of the
/// normal equations, and each row's regularization count.
struct Side<'a> {
    csr: &'a Csr,
    weights: Option<Vec<f32>>,
    targets: std::borrow::Cow<'a, [f32]>,
    counts: Vec<f32>,
    /// Explicit feedback: each row's sum of squared ratings, so that its training loss
    /// `sum (r - x.y)^2 = sum r^2 - 2 x.b + x^T A x` comes from its normal equations (see
    /// [`explicit_losses`]) instead of a second pass over its ratings, which cost 8% of the fit.
    /// Empty for implicit feedback.
    squared_targets: Vec<f64>,
}

impl<'a> Side<'a> {
    fn new(csr: &'a Csr, params: &AlsParams) -> Side<'a> {
        if !params.implicit_prefs {
            let counts = (0..csr.rows()).map(|row| csr.row_len(row) as f32).collect();
            let squared_targets = (0..csr.rows())
                .into_par_iter()
                .map(|row| {
                    let ratings = csr.row(row).1;
                    ratings.iter().map(|&r| f64::from(r) * f64::from(r)).sum()
                })
                .collect();
            return Side {
                csr,
                weights: None,
                targets: std::borrow::Cow::Borrowed(&csr.values),
                counts,
                squared_targets,
            };
        }
        let alpha = params.alpha as f32;
        let weights: Vec<f32> = csr.values.par_iter().map(|r| alpha * r.abs()).collect();
        let targets: Vec<f32> = csr
            .values
            .par_iter()
            .map(|&r| if r > 0.0 { 1.0 + alpha * r.abs() } else { 0.0 })
            .collect();
        let counts = (0..csr.rows())
            .map(|row| csr.row(row).1.iter().filter(|&&r| r > 0.0).count() as f32)
            .collect();
        Side {
            csr,
            weights: Some(weights),
            targets: std::borrow::Cow::Owned(targets),
            counts,
            squared_targets: Vec::new(),
        }
    }

    fn terms(&self, row: usize) -> Terms<'_> {
        let range = self.csr.offsets[row]..self.csr.offsets[row + 1];
        let following = &self.csr.columns[range.end..];
        Terms {
            columns: &self.csr.columns[range.clone()],
            ahead: &following[..following.len().min(kernel::LOOKAHEAD)],
            weights: self.weights.as_ref().map(|weights| &weights[range.clone()]),
            targets: &self.targets[range],
        }
    }
}

/// Entry `(a, b)` of a symmetric matrix of which only the upper triangle is stored.
#[inline]
fn upper(matrix: &[f32], stride: usize, a: usize, b: usize) -> f32 {
    matrix[a.min(b) * stride + a.max(b)]
}

/// Per-thread buffers of one group of `L` row solves.
struct Scratch<const L: usize> {
    /// `L` normal matrices as the kernel writes them (`rank x stride` f32 each).
    normal_f32: Vec<f32>,
    right_side_f32: Vec<f32>,
    /// The same systems interleaved for the batched solve.
    normal_lanes: Vec<[f64; L]>,
    right_side_lanes: Vec<[f64; L]>,
    /// One system, for NNLS and for the fallback solve of a lane that was not positive definite.
    normal: Vec<f64>,
    right_side: Vec<f64>,
    /// The NNLS solution.
    nnls_solution: Vec<f64>,
    conjugate: conjugate::Scratch,
}

/// Solves every row of `side` against the fixed factors `fixed`, writing into `out` (whose
/// current values are the warm start of conjugate gradient). With `losses`, also writes each
/// row's sum of squared errors on its entries (rating, or preference for implicit feedback)
/// under the new factors, while its fixed rows are still in cache.
///
/// Rows go in fixed groups (the batched Cholesky) of a size set by the rank; the grouping
/// depends only on row numbers, so the result does not depend on the thread count.
fn solve_side(
    side: &Side<'_>,
    fixed: &FactorTable,
    gram: Option<&[f32]>,
    params: &AlsParams,
    out: &mut FactorTable,
    losses: Option<&mut [f64]>,
) {
    if params.rank <= solve::RIGHT_LOOKING_MAX_RANK {
        solve_side_in_groups::<{ solve::SMALL_RANK_LANES }>(side, fixed, gram, params, out, losses)
    } else {
        solve_side_in_groups::<{ solve::LARGE_RANK_LANES }>(side, fixed, gram, params, out, losses)
    }
}

fn solve_side_in_groups<const GROUP: usize>(
    side: &Side<'_>,
    fixed: &FactorTable,
    gram: Option<&[f32]>,
    params: &AlsParams,
    out: &mut FactorTable,
    losses: Option<&mut [f64]>,
) {
    let k = params.rank;
    let stride = fixed.stride();
    let with_losses = losses.is_some();
    let mut no_losses = Vec::new();
    let losses = match losses {
        Some(losses) => losses,
        None => {
            no_losses.resize(out.rows(), 0.0);
            &mut no_losses[..]
        }
    };
    out.as_mut_slice()
        .par_chunks_mut(stride * GROUP)
        .zip(losses.par_chunks_mut(GROUP))
        .enumerate()
        .with_min_len(4)
        .for_each_init(
            || Scratch::<GROUP> {
                normal_f32: vec![0.0; GROUP * k * stride],
                right_side_f32: vec![0.0; GROUP * stride],
                normal_lanes: vec![[0.0; GROUP]; k * k],
                right_side_lanes: vec![[0.0; GROUP]; k],
                normal: vec![0.0; k * k],
                right_side: vec![0.0; k],
                nnls_solution: vec![0.0; k],
                conjugate: conjugate::Scratch::default(),
            },
            |scratch, (group, (padded_rows, group_losses))| {
                let first_row = group * GROUP;
                if let (false, Solver::ConjugateGradient { steps }) =
                    (params.nonnegative, params.solver)
                {
                    let shared = conjugate::Shared {
                        fixed,
                        gram,
                        steps,
                        implicit: params.implicit_prefs,
                    };
                    let rows: [conjugate::Row<'_>; conjugate::MAX_GROUP] =
                        std::array::from_fn(|lane| {
                            let row = (first_row + lane).min(side.csr.rows() - 1);
                            conjugate::Row {
                                terms: side.terms(row),
                                ridge: params.reg_param as f32 * side.counts[row],
                            }
                        });
                    let rows_here = group_losses.len();
                    conjugate::solve_group(
                        shared,
                        &rows[..rows_here],
                        padded_rows,
                        group_losses,
                        &mut scratch.conjugate,
                    );
                    return;
                }
                let sweep = HalfSweep {
                    side,
                    fixed,
                    gram,
                    params,
                };
                solve_group(&sweep, first_row, padded_rows, group_losses.len(), scratch);
                if with_losses && !params.implicit_prefs {
                    explicit_losses(&sweep, first_row, padded_rows, group_losses, scratch);
                    return;
                }
                for (lane, loss) in group_losses.iter_mut().enumerate() {
                    *loss = 0.0;
                    if with_losses {
                        let terms = side.csr.row(first_row + lane);
                        let x = &padded_rows[lane * stride..lane * stride + k];
                        *loss = terms
                            .0
                            .iter()
                            .zip(terms.1)
                            .map(|(&column, &rating)| {
                                let truth = if params.implicit_prefs {
                                    f32::from(rating > 0.0)
                                } else {
                                    rating
                                };
                                let error = (dot(x, fixed.row(column as usize)) - truth) as f64;
                                error * error
                            })
                            .sum();
                    }
                }
            },
        );
}

/// Each row's training loss `sum (r - x.y)^2` from its normal equations as
/// [`solve_group`] left them in `scratch` (`A = sum y y^T` without the ridge,
/// `b = sum r y`): `sum r^2 - 2 x.b + x^T A x`, in f64. When `x` solves
/// `(A + ridge I) x = b` exactly (Cholesky), `x^T A x = x.b - ridge |x|^2` makes it O(k);
/// NNLS solutions do not satisfy that, so they take the O(k^2) quadratic form.
fn explicit_losses<const L: usize>(
    sweep: &HalfSweep<'_>,
    first_row: usize,
    padded_rows: &[f32],
    losses: &mut [f64],
    scratch: &Scratch<L>,
) {
    let (k, stride) = (sweep.params.rank, sweep.fixed.stride());
    for (lane, loss) in losses.iter_mut().enumerate() {
        let row = first_row + lane;
        let x = &padded_rows[lane * stride..lane * stride + k];
        let right_side = &scratch.right_side_f32[lane * stride..lane * stride + k];
        let linear: f64 = x
            .iter()
            .zip(right_side)
            .map(|(&xa, &ba)| f64::from(xa) * f64::from(ba))
            .sum();
        let quadratic = if sweep.params.nonnegative {
            let normal = &scratch.normal_f32[lane * k * stride..(lane + 1) * k * stride];
            let mut quadratic = 0f64;
            for a in 0..k {
                let xa = f64::from(x[a]);
                let row = &normal[a * stride..a * stride + k];
                let off_diagonal: f64 = (a + 1..k)
                    .map(|b| f64::from(row[b]) * f64::from(x[b]))
                    .sum();
                quadratic += xa * (f64::from(row[a]) * xa + 2.0 * off_diagonal);
            }
            quadratic
        } else {
            let ridge = sweep.params.reg_param * f64::from(sweep.side.counts[row]);
            let squared_norm: f64 = x.iter().map(|&xa| f64::from(xa) * f64::from(xa)).sum();
            linear - ridge * squared_norm
        };
        // Rounding can leave a tiny negative figure for a row fitted almost exactly.
        *loss = (sweep.side.squared_targets[row] - 2.0 * linear + quadratic).max(0.0);
    }
}

/// What every row solve of one half-sweep shares.
#[derive(Clone, Copy)]
struct HalfSweep<'a> {
    side: &'a Side<'a>,
    fixed: &'a FactorTable,
    gram: Option<&'a [f32]>,
    params: &'a AlsParams,
}

/// Solves up to `L` rows of one group by Cholesky (NNLS) from their normal equations
/// ([`solve_group_exactly_body`]; conjugate gradient is [`conjugate::solve_group`]). Compiled for AVX2
/// where the CPU has it, so that the copy into lanes and the inlined left-looking solve (ranks
/// above 16) take full-width vector steps. Rust never fuses a multiply and an add on its own,
/// so both builds give bit-identical results.
fn solve_group<const L: usize>(
    sweep: &HalfSweep<'_>,
    first_row: usize,
    padded_rows: &mut [f32],
    rows_here: usize,
    scratch: &mut Scratch<L>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn with_avx2<const L: usize>(
            sweep: &HalfSweep<'_>,
            first_row: usize,
            padded_rows: &mut [f32],
            rows_here: usize,
            scratch: &mut Scratch<L>,
        ) {
            solve_group_exactly_body(sweep, first_row, padded_rows, rows_here, scratch)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { with_avx2(sweep, first_row, padded_rows, rows_here, scratch) };
            return;
        }
    }
    solve_group_exactly_body(sweep, first_row, padded_rows, rows_here, scratch)
}

#[inline(always)]
fn solve_group_exactly_body<const L: usize>(
    sweep: &HalfSweep<'_>,
    first_row: usize,
    padded_rows: &mut [f32],
    rows_here: usize,
    scratch: &mut Scratch<L>,
) {
    let HalfSweep {
        side,
        fixed,
        gram,
        params,
    } = *sweep;
    let k = params.rank;
    let stride = fixed.stride();
    for lane in 0..L {
        let normal = &mut scratch.normal_f32[lane * k * stride..(lane + 1) * k * stride];
        let right_side = &mut scratch.right_side_f32[lane * stride..(lane + 1) * stride];
        let (empty, ridge) = if lane < rows_here {
            let row = first_row + lane;
            kernel::accumulate(side.terms(row), fixed, normal, right_side);
            (
                side.csr.row_len(row) == 0,
                params.reg_param * side.counts[row] as f64,
            )
        } else {
            (true, 0.0)
        };
        // Both Cholesky routines read only the lower triangle: entry (b, a) for b >= a is the
        // kernel's upper-triangle entry (a, b). An empty row gets the identity system, whose
        // solution is zero.
        let lanes = &mut scratch.normal_lanes;
        match (empty, gram) {
            (true, _) => {
                for a in 0..k {
                    for b in a..k {
                        lanes[b * k + a][lane] = f64::from(u8::from(a == b));
                    }
                }
            }
            (false, Some(gram)) => {
                for a in 0..k {
                    let (row, gram_row) = (
                        &normal[a * stride..a * stride + k],
                        &gram[a * stride..a * stride + k],
                    );
                    for b in a..k {
                        lanes[b * k + a][lane] = row[b] as f64 + gram_row[b] as f64;
                    }
                }
            }
            (false, None) => {
                for a in 0..k {
                    let row = &normal[a * stride..a * stride + k];
                    for b in a..k {
                        lanes[b * k + a][lane] = row[b] as f64;
                    }
                }
            }
        }
        for a in 0..k {
            lanes[a * k + a][lane] += ridge;
            scratch.right_side_lanes[a][lane] = if empty { 0.0 } else { right_side[a] as f64 };
        }
    }
    if params.nonnegative {
        for lane in 0..rows_here {
            for a in 0..k {
                for b in a..k {
                    let value = scratch.normal_lanes[b * k + a][lane];
                    scratch.normal[a * k + b] = value;
                    scratch.normal[b * k + a] = value;
                }
            }
            for (index, entry) in scratch.right_side_lanes.iter().enumerate() {
                scratch.right_side[index] = entry[lane];
            }
            let x = &mut padded_rows[lane * stride..lane * stride + k];
            solve::nonnegative_least_squares(
                &scratch.normal,
                &scratch.right_side,
                k,
                &mut scratch.nnls_solution,
            );
            for (target, value) in x.iter_mut().zip(&scratch.nnls_solution) {
                *target = *value as f32;
            }
        }
        return;
    }
    let positive =
        solve::cholesky_solve_lanes(&mut scratch.normal_lanes, &mut scratch.right_side_lanes, k);
    for lane in 0..rows_here {
        let x = &mut padded_rows[lane * stride..lane * stride + k];
        if positive[lane] {
            for (target, source) in x.iter_mut().zip(&scratch.right_side_lanes) {
                *target = source[lane] as f32;
            }
            continue;
        }
        // Not positive definite: singular only when reg_param = 0 and the row has fewer
        // entries than rank, so a tiny extra ridge picks a minimum-norm-like solution instead
        // of failing (NaN, reported as divergence, if even a large ridge fails).
        let row = first_row + lane;
        let normal = &scratch.normal_f32[lane * k * stride..(lane + 1) * k * stride];
        let right_side = &scratch.right_side_f32[lane * stride..(lane + 1) * stride];
        let ridge = params.reg_param * side.counts[row] as f64;
        let trace: f64 = (0..k).map(|a| normal[a * stride + a] as f64).sum();
        let mut jitter = 1e-6 * (trace / k as f64).max(1e-6);
        let mut solved = false;
        while !solved && jitter <= 1e6 {
            for (a, target) in scratch.right_side.iter_mut().enumerate() {
                for b in 0..k {
                    let gram_value = gram.map_or(0.0, |gram| upper(gram, stride, a, b) as f64);
                    scratch.normal[a * k + b] = upper(normal, stride, a, b) as f64 + gram_value;
                }
                scratch.normal[a * k + a] += ridge + jitter;
                *target = right_side[a] as f64;
            }
            solved = solve::cholesky_solve(&mut scratch.normal, &mut scratch.right_side, k);
            jitter *= 100.0;
        }
        for (target, &source) in x.iter_mut().zip(&scratch.right_side) {
            *target = if solved { source as f32 } else { f32::NAN };
        }
    }
}

/// Factors to start from (a warm start): for each user and item row of this fit, its row in
/// the base's factor tables (`rank` values per row), or `None` to start as a fresh fit does.
pub struct InitialFactors<'a> {
    pub users: Vec<Option<u32>>,
    pub user_factors: &'a [f32],
    pub items: Vec<Option<u32>>,
    pub item_factors: &'a [f32],
}

fn start_from(table: &mut FactorTable, rank: usize, rows: &[Option<u32>], base: &[f32]) {
    let stride = table.stride();
    table
        .as_mut_slice()
        .par_chunks_mut(stride)
        .zip(rows.par_iter())
        .for_each(|(padded, row)| {
            if let Some(row) = row {
                let at = *row as usize * rank;
                padded[..rank].copy_from_slice(&base[at..at + rank]);
            }
        });
}

/// Trains on the entries given both ways (by user and by item, as built from the same triples).
/// `on_iteration(iteration, train_rmse)` is called after every sweep; the figure is the RMSE of
/// the ratings (explicit) or of the preferences of the observed entries (implicit).
pub fn train(
    by_user: &Csr,
    by_item: &Csr,
    params: &AlsParams,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> Result<AlsModel, AlsError> {
    train_from(by_user, by_item, params, None, on_iteration)
}

/// [`train`] starting from `initial` factors (rank `params.rank`) where given.
pub fn train_from(
    by_user: &Csr,
    by_item: &Csr,
    params: &AlsParams,
    initial: Option<&InitialFactors<'_>>,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> Result<AlsModel, AlsError> {
    let k = params.rank;
    let users = by_user.rows();
    let items = by_item.rows();
    let mut user_factors = initial_factors(users, k, params.seed, USER_INIT, params.nonnegative);
    let mut item_factors = initial_factors(items, k, params.seed, ITEM_INIT, params.nonnegative);
    if let Some(initial) = initial {
        start_from(&mut user_factors, k, &initial.users, initial.user_factors);
        start_from(&mut item_factors, k, &initial.items, initial.item_factors);
    }
    let user_side = Side::new(by_user, params);
    let item_side = Side::new(by_item, params);
    let mut user_losses = vec![0f64; users];
    for iteration in 1..=params.max_iter {
        let user_gram = params.implicit_prefs.then(|| gram::gram(&user_factors));
        solve_side(
            &item_side,
            &user_factors,
            user_gram.as_deref(),
            params,
            &mut item_factors,
            None,
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
        let item_gram = params.implicit_prefs.then(|| gram::gram(&item_factors));
        solve_side(
            &user_side,
            &item_factors,
            item_gram.as_deref(),
            params,
            &mut user_factors,
            Some(&mut user_losses),
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
        fit_threads(threads, noise, |_| {})
    }

    fn fit_with(adjust: impl Fn(&mut AlsParams)) -> (AlsModel, f64) {
        fit_threads(2, 0.1, adjust)
    }

    fn fit_threads(threads: usize, noise: f64, adjust: impl Fn(&mut AlsParams)) -> (AlsModel, f64) {
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
        let mut params = AlsParams::explicit(5, 10, 0.02, 9);
        adjust(&mut params);
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

    fn implicit_fit(solver: Solver, nonnegative: bool) -> AlsModel {
        implicit_fit_threads(solver, nonnegative, 2)
    }

    fn implicit_fit_threads(solver: Solver, nonnegative: bool, threads: usize) -> AlsModel {
        let data = generate_ratings(300, 200, 6_000, 3, 0.1, 5);
        let rows: Vec<u32> = (0..data.len() as u32).collect();
        let by_user = Csr::build(data.users(), &data.user, &data.item, &data.rating, &rows);
        let by_item = Csr::build(data.items(), &data.item, &data.user, &data.rating, &rows);
        let params = AlsParams {
            implicit_prefs: true,
            alpha: 2.0,
            solver,
            nonnegative,
            ..AlsParams::explicit(6, 12, 0.05, 4)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&by_user, &by_item, &params, &mut |_, _| {}))
            .unwrap()
    }

    #[test]
    fn implicit_and_nonnegative_models_do_not_depend_on_the_thread_count() {
        for (solver, nonnegative) in [
            (Solver::ConjugateGradient { steps: 3 }, false),
            (Solver::Cholesky, false),
            (Solver::Cholesky, true),
        ] {
            assert_eq!(
                implicit_fit_threads(solver, nonnegative, 1),
                implicit_fit_threads(solver, nonnegative, 3),
                "{solver:?} nonnegative={nonnegative}"
            );
        }
    }

    #[test]
    fn conjugate_gradient_agrees_with_cholesky() {
        let exact = implicit_fit(Solver::Cholesky, false);
        let iterative = implicit_fit(Solver::ConjugateGradient { steps: 6 }, false);
        let (mut worst, mut scale) = (0f32, 0f32);
        for user in 0..exact.users() {
            for item in 0..exact.items() {
                let (Some(a), Some(b)) = (exact.predict(user, item), iterative.predict(user, item))
                else {
                    continue;
                };
                worst = worst.max((a - b).abs());
                scale = scale.max(a.abs());
            }
        }
        assert!(
            worst < 0.05 * scale.max(1.0),
            "largest score difference {worst} (scale {scale})"
        );
    }

    #[test]
    fn nonnegative_factors_are_never_negative() {
        let model = implicit_fit(Solver::Cholesky, true);
        assert!(
            model
                .user_factors
                .iter()
                .chain(&model.item_factors)
                .all(|&v| v >= 0.0)
        );
        assert!(model.user_factors.iter().any(|&v| v > 0.0));
        let (explicit, _) = fit_with(|params| params.nonnegative = true);
        assert!(
            explicit
                .user_factors
                .iter()
                .chain(&explicit.item_factors)
                .all(|&v| v >= 0.0)
        );
    }

    #[test]
    fn training_loss_from_the_normal_equations_matches_the_direct_sum() {
        for (nonnegative, solver) in [
            (false, Solver::Cholesky),
            (true, Solver::Cholesky),
            (false, Solver::ConjugateGradient { steps: 3 }),
        ] {
            let data = generate_ratings(300, 150, 9_000, 3, 0.2, 11);
            let rows: Vec<u32> = (0..data.len() as u32).collect();
            let by_user = Csr::build(data.users(), &data.user, &data.item, &data.rating, &rows);
            let by_item = Csr::build(data.items(), &data.item, &data.user, &data.rating, &rows);
            let params = AlsParams {
                nonnegative,
                solver,
                ..AlsParams::explicit(6, 4, 0.05, 2)
            };
            let mut reported = f64::NAN;
            let model = train(&by_user, &by_item, &params, &mut |_, rmse| reported = rmse).unwrap();
            let squared: f64 = rows
                .iter()
                .map(|&row| {
                    let row = row as usize;
                    let prediction = model
                        .predict(data.user[row] as usize, data.item[row] as usize)
                        .unwrap();
                    f64::from(prediction - data.rating[row]).powi(2)
                })
                .sum();
            let direct = (squared / rows.len() as f64).sqrt();
            assert!(
                (reported - direct).abs() < 1e-5 * direct,
                "nonnegative={nonnegative} {solver:?}: reported {reported}, direct {direct}"
            );
        }
    }

    #[test]
    fn explicit_conjugate_gradient_reaches_the_noise_level_for_any_thread_count() {
        let (exact, exact_rmse) = fit(2, 0.1);
        let (iterative, iterative_rmse) = fit_with(|params| {
            params.solver = Solver::ConjugateGradient { steps: 4 };
            params.max_iter = 15;
        });
        assert_ne!(exact, iterative);
        assert!(
            iterative_rmse < 0.2 && (iterative_rmse - exact_rmse).abs() < 0.05,
            "conjugate gradient test RMSE {iterative_rmse}, Cholesky {exact_rmse}"
        );
        let (threads_1, _) = fit_threads(1, 0.1, |params| {
            params.solver = Solver::ConjugateGradient { steps: 4 }
        });
        let (threads_3, _) = fit_threads(3, 0.1, |params| {
            params.solver = Solver::ConjugateGradient { steps: 4 }
        });
        assert_eq!(threads_1, threads_3);
    }

    #[test]
    fn same_model_for_any_thread_count() {
        assert_eq!(fit(1, 0.1).0, fit(3, 0.1).0);
    }

    #[test]
    fn unseen_rows_have_no_prediction() {
        let triples = Csr::build(2, &[0], &[0], &[4.0], &[0]);
        let by_item = Csr::build(2, &[0], &[0], &[4.0], &[0]);
        let params = AlsParams::explicit(2, 2, 0.0, 1);
        let model = train(&triples, &by_item, &params, &mut |_, _| {}).unwrap();
        assert!(model.predict(0, 0).is_some_and(|p| (p - 4.0).abs() < 0.01));
        assert_eq!(model.predict(1, 0), None);
        assert_eq!(model.predict(0, 1), None);
    }
}
