//! Conjugate gradient for each row's least squares problem (the default solver for implicit
//! feedback), written so that its loops stay in vector registers.
//!
//! A row solves `A x = b` with `A = gram + sum w y y^T + ridge I` and `b = sum t y` over its
//! entries, never forming `A`. Each step costs one product `A p`: `gram p` (`k^2`) plus a dot
//! product and a scaled add per entry (`4k` per entry). Where the time went before (rank 64,
//! 4M ratings, 0.6 s per sweep, two thirds of the fit): every vector lived in memory, so each
//! entry's scaled add was a load and a store per 8 floats, `gram p` was 64 dot products each
//! ending in a horizontal sum, the right side `b` was a pass of its own, and the training loss a
//! further pass of dot products over the user side's entries.
//!
//! Here:
//! - a group of rows (8 at rank 64) advances in lockstep, so the `gram p` of all of them is one
//!   matrix product in register tiles ([`multiply_gram`]);
//! - one row's working vectors up to rank 128 are local arrays of 16-float lines, which the
//!   compiler keeps in registers during its passes over the entries;
//! - the start `r = b - A x` is one pass over the entries (`sum (t - w y.x) y`);
//! - each entry's `y.x` is kept and moved along with `x` (`y.x += step * y.p`), so the loss
//!   `sum (pref - y.x)^2` costs no pass of its own;
//! - every multiply-add is fused, and the code is compiled for AVX-512 and for AVX2 with FMA
//!   where the CPU has them ([`Line`]). A fused multiply-add rounds once whatever the
//!   instruction set, and every sum runs in the same order, so each build gives the same bits
//!   (tested), a row's result does not depend on the rows grouped with it (tested), and the
//!   model does not depend on the thread count.
//!
//! Tried and not kept: sixteen dot products reduced together (one transposition instead of a
//! horizontal sum each), whether fused with the scaled adds or as a pass of its own: slower, as
//! the passes are bound by fetching factor rows, not by the sums.

use super::kernel::{FactorTable, Terms};
use super::lines::{Line, add_row, add_scaled, dot, dot_row, load, store, tile_shape};
#[cfg(target_arch = "x86_64")]
use crate::algo::cpu::{avx2_fma as avx2_available, avx512 as avx512_available};

/// What the rows of one group share.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub fixed: &'a FactorTable,
    /// `Y^T Y` in full (both triangles), `rank` rows of `stride` floats; `None` for explicit
    /// ratings.
    pub gram: Option<&'a [f32]>,
    pub steps: usize,
    /// Implicit feedback: the loss compares `y.x` with the preference (1 where the target is
    /// positive, else 0) rather than with the target.
    pub implicit: bool,
}

/// One row's entries and its ridge `reg_param * n`.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub terms: Terms<'a>,
    pub ridge: f32,
}

/// The most rows solved together.
pub const MAX_GROUP: usize = 16;

/// Per-thread buffers: each entry's `y.x`, and `y.p` for one row.
#[derive(Default)]
pub struct Scratch {
    projections: Vec<f32>,
    step_projections: Vec<f32>,
}

/// Rows up to this many vector lines (rank 128) keep their vectors in local arrays, which the
/// compiler holds in registers; longer rows use vectors of any length.
const MAX_LINES_IN_REGISTERS: usize = 8;

/// Runs `shared.steps` conjugate-gradient steps for each row from its current `x` (row `r` is
/// `xs[r * stride..(r + 1) * stride]`, padding zero) and writes each row's training loss
/// `sum (truth - y.x)^2` over its entries under the new `x` into `losses`, where truth is the
/// preference (implicit) or the target. A row without entries gets `x = 0`.
pub fn solve_group(
    shared: Shared<'_>,
    rows: &[Row<'_>],
    xs: &mut [f32],
    losses: &mut [f64],
    scratch: &mut Scratch,
) {
    let fixed = shared.fixed;
    let stride = fixed.stride();
    // O(1) and O(entries) checks the unchecked loads below rely on.
    assert!(rows.len() <= MAX_GROUP);
    assert_eq!(xs.len(), rows.len() * stride);
    assert_eq!(losses.len(), rows.len());
    assert!(
        shared
            .gram
            .is_none_or(|gram| gram.len() == fixed.rank() * stride)
    );
    for row in rows {
        let terms = row.terms;
        assert_eq!(terms.columns.len(), terms.targets.len());
        assert!(
            terms
                .weights
                .is_none_or(|weights| weights.len() == terms.columns.len())
        );
        let largest = terms
            .columns
            .iter()
            .fold(0u32, |largest, &c| largest.max(c));
        assert!((largest as usize) < fixed.rows() || terms.columns.is_empty());
    }
    #[cfg(target_arch = "x86_64")]
    {
        if stride.is_multiple_of(16) && avx512_available() {
            // SAFETY: the CPU has the features (checked just above); the asserts above hold.
            return unsafe { x86::with_avx512(shared, rows, xs, losses, scratch) };
        }
        if avx2_available() {
            // SAFETY: as above.
            return unsafe { x86::with_avx2(shared, rows, xs, losses, scratch) };
        }
    }
    // SAFETY: the asserts above.
    unsafe { portable(shared, rows, xs, losses, scratch) }
}

/// Eight or sixteen floats as plain arrays; `mul_add` is one rounding on every platform.
unsafe fn portable(
    shared: Shared<'_>,
    rows: &[Row<'_>],
    xs: &mut [f32],
    losses: &mut [f64],
    scratch: &mut Scratch,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if shared.fixed.stride() == 8 {
            by_lines::<[f32; 8]>(shared, rows, xs, losses, scratch)
        } else {
            by_lines::<[f32; 16]>(shared, rows, xs, losses, scratch)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::lines::x86::{Narrow, Pair, Wide};
    use super::{Row, Scratch, Shared, by_lines};

    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn with_avx512(
        shared: Shared<'_>,
        rows: &[Row<'_>],
        xs: &mut [f32],
        losses: &mut [f64],
        scratch: &mut Scratch,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { by_lines::<Wide>(shared, rows, xs, losses, scratch) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn with_avx2(
        shared: Shared<'_>,
        rows: &[Row<'_>],
        xs: &mut [f32],
        losses: &mut [f64],
        scratch: &mut Scratch,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if shared.fixed.stride() == 8 {
                by_lines::<Narrow>(shared, rows, xs, losses, scratch)
            } else {
                by_lines::<Pair>(shared, rows, xs, losses, scratch)
            }
        }
    }
}

/// Picks the number of lines: 1 to 8 with each row's working vectors in local arrays, or any
/// number in vectors allocated for the group (ranks above 128, where the arithmetic dwarfs
/// that).
///
/// # Safety
/// The arguments passed [`solve_group`]'s checks; the stride is a multiple of `L::WIDTH`.
#[inline(always)]
unsafe fn by_lines<L: Line>(
    shared: Shared<'_>,
    rows: &[Row<'_>],
    xs: &mut [f32],
    losses: &mut [f64],
    scratch: &mut Scratch,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match shared.fixed.stride() / L::WIDTH {
            1 => on_stack::<L, 1>(shared, rows, xs, losses, scratch),
            2 => on_stack::<L, 2>(shared, rows, xs, losses, scratch),
            3 => on_stack::<L, 3>(shared, rows, xs, losses, scratch),
            4 => on_stack::<L, 4>(shared, rows, xs, losses, scratch),
            5 => on_stack::<L, 5>(shared, rows, xs, losses, scratch),
            6 => on_stack::<L, 6>(shared, rows, xs, losses, scratch),
            7 => on_stack::<L, 7>(shared, rows, xs, losses, scratch),
            8 => on_stack::<L, MAX_LINES_IN_REGISTERS>(shared, rows, xs, losses, scratch),
            lines => {
                let zero = L::splat(0.0);
                let mut group = vec![zero; 3 * MAX_GROUP * lines];
                let mut work = vec![zero; 4 * lines];
                let (residuals, rest) = group.split_at_mut(MAX_GROUP * lines);
                let (directions, products) = rest.split_at_mut(MAX_GROUP * lines);
                let (solution, rest) = work.split_at_mut(lines);
                let (residual, rest) = rest.split_at_mut(lines);
                let (direction, product) = rest.split_at_mut(lines);
                let vectors = Vectors {
                    residuals,
                    directions,
                    products,
                    solution,
                    residual,
                    direction,
                    product,
                };
                run(shared, rows, xs, losses, vectors, scratch)
            }
        }
    }
}

#[inline(always)]
unsafe fn on_stack<L: Line, const C: usize>(
    shared: Shared<'_>,
    rows: &[Row<'_>],
    xs: &mut [f32],
    losses: &mut [f64],
    scratch: &mut Scratch,
) {
    let zero = L::splat(0.0);
    let mut group = [[[zero; C]; MAX_GROUP]; 3];
    let [residuals, directions, products] = &mut group;
    let mut work = [[zero; C]; 4];
    let [solution, residual, direction, product] = &mut work;
    let vectors = Vectors {
        residuals: residuals.as_flattened_mut(),
        directions: directions.as_flattened_mut(),
        products: products.as_flattened_mut(),
        solution,
        residual,
        direction,
        product,
    };
    // SAFETY: forwarded from the caller.
    unsafe { run(shared, rows, xs, losses, vectors, scratch) }
}

/// The group's vectors (row `r` at lines `r * lines..`, for up to [`MAX_GROUP`] rows), and one
/// row's working copies, which the compiler keeps in registers when their length is known.
struct Vectors<'a, L> {
    residuals: &'a mut [L],
    directions: &'a mut [L],
    /// `gram p` of each row's direction.
    products: &'a mut [L],
    solution: &'a mut [L],
    residual: &'a mut [L],
    direction: &'a mut [L],
    product: &'a mut [L],
}

/// How many entries ahead the first pass prefetches factor rows (the later passes find them in
/// cache).
const PREFETCH_AHEAD: usize = 16;

/// The rows advance in lockstep, one conjugate-gradient step at a time, so that the group's
/// `gram p` products are one matrix product ([`multiply_gram`]), whose multiply-adds keep both
/// FMA units busy; one row's products, each a chain of `rank` dependent multiply-adds, left
/// them waiting. Each row's arithmetic is the same whichever rows it is grouped with.
///
/// # Safety
/// As [`by_lines`]; the vectors have `stride / L::WIDTH` lines per row.
#[inline(always)]
unsafe fn run<L: Line>(
    shared: Shared<'_>,
    rows: &[Row<'_>],
    xs: &mut [f32],
    losses: &mut [f64],
    vectors: Vectors<'_, L>,
    scratch: &mut Scratch,
) {
    let Shared {
        fixed,
        gram,
        steps,
        implicit,
    } = shared;
    let Vectors {
        residuals,
        directions,
        products,
        solution,
        residual,
        direction,
        product,
    } = vectors;
    let stride = fixed.stride();
    let lines = stride / L::WIDTH;
    let table = fixed.as_slice().as_ptr();
    // SAFETY: `solve_group` checked every column indexes a row of the table.
    let factor_row = |column: u32| unsafe { table.add(column as usize * stride) };
    let zero = L::splat(0.0);

    let total: usize = rows.iter().map(|row| row.terms.columns.len()).sum();
    let longest = rows.iter().map(|row| row.terms.columns.len()).max();
    let projections = &mut scratch.projections;
    projections.clear();
    projections.resize(total, 0.0);
    let step_projections = &mut scratch.step_projections;
    step_projections.clear();
    step_projections.resize(longest.unwrap_or(0), 0.0);
    let mut residual_norms = [0f32; MAX_GROUP];
    let mut active = [false; MAX_GROUP];

    // r = b - A x = sum (t - w y.x) y - gram x - ridge x, keeping each y.x.
    // SAFETY: `xs` holds the group's rows of `stride` floats.
    unsafe { multiply_gram(gram, rows.len(), xs.as_ptr(), products) };
    let mut first_entry = 0;
    for (index, row) in rows.iter().enumerate() {
        let (terms, entries) = (row.terms, row.terms.columns.len());
        let x = &mut xs[index * stride..(index + 1) * stride];
        if entries == 0 {
            x.fill(0.0);
            continue;
        }
        let row_projections = &mut projections[first_entry..first_entry + entries];
        first_entry += entries;
        let at = index * lines..(index + 1) * lines;
        // SAFETY: `x` has `stride` floats.
        unsafe { load(solution, x.as_ptr()) };
        let ridge = L::splat(row.ridge);
        for ((residual, solution), product) in residual
            .iter_mut()
            .zip(&*solution)
            .zip(&products[at.clone()])
        {
            *residual = ridge
                .mul_add(*solution, *product)
                .mul_add(L::splat(-1.0), zero);
        }
        for (entry, &column) in terms.columns.iter().enumerate() {
            let ahead = entry + PREFETCH_AHEAD;
            if let Some(&next) = terms
                .columns
                .get(ahead)
                .or_else(|| terms.ahead.get(ahead - entries))
            {
                fixed.prefetch_row(next as usize);
            }
            // SAFETY: a row of the table has `stride` floats.
            let projection = unsafe { dot_row(factor_row(column), solution) };
            row_projections[entry] = projection;
            let weight = terms.weights.map_or(1.0, |weights| weights[entry]);
            let scale = weight.mul_add(-projection, terms.targets[entry]);
            // SAFETY: as above.
            unsafe { add_row(residual, scale, factor_row(column)) };
        }
        residuals[at.clone()].copy_from_slice(residual);
        directions[at].copy_from_slice(residual);
        residual_norms[index] = dot(residual, residual);
        active[index] = true;
    }
    for _ in 0..steps {
        for (active, norm) in active.iter_mut().zip(&residual_norms) {
            *active &= *norm >= 1e-20;
        }
        if !active.contains(&true) {
            break;
        }
        // SAFETY: `directions` holds `MAX_GROUP >= rows.len()` rows of `stride` floats.
        unsafe { multiply_gram(gram, rows.len(), directions.as_ptr().cast(), products) };
        let mut first_entry = 0;
        for (index, row) in rows.iter().enumerate() {
            let (terms, entries) = (row.terms, row.terms.columns.len());
            let row_projections = &mut projections[first_entry..first_entry + entries];
            first_entry += entries;
            if !active[index] {
                continue;
            }
            let at = index * lines..(index + 1) * lines;
            direction.copy_from_slice(&directions[at.clone()]);
            // product = A p, keeping each y.p.
            let ridge = L::splat(row.ridge);
            for ((product, direction), gram_product) in product
                .iter_mut()
                .zip(&*direction)
                .zip(&products[at.clone()])
            {
                *product = ridge.mul_add(*direction, *gram_product);
            }
            for (entry, &column) in terms.columns.iter().enumerate() {
                // SAFETY: as above.
                let projection = unsafe { dot_row(factor_row(column), direction) };
                step_projections[entry] = projection;
                let weight = terms.weights.map_or(1.0, |weights| weights[entry]);
                // SAFETY: as above.
                unsafe { add_row(product, weight * projection, factor_row(column)) };
            }
            let curvature = dot(direction, product);
            if curvature <= 0.0 || !curvature.is_finite() {
                active[index] = false;
                continue;
            }
            let step = residual_norms[index] / curvature;
            let x = &mut xs[index * stride..(index + 1) * stride];
            // SAFETY: `x` has `stride` floats.
            unsafe { load(solution, x.as_ptr()) };
            add_scaled(solution, step, direction);
            // SAFETY: as above.
            unsafe { store(solution, x.as_mut_ptr()) };
            residual.copy_from_slice(&residuals[at.clone()]);
            add_scaled(residual, -step, product);
            for (projection, moved) in row_projections.iter_mut().zip(step_projections.iter()) {
                *projection = step.mul_add(*moved, *projection);
            }
            let next_norm = dot(residual, residual);
            let ratio = L::splat(next_norm / residual_norms[index]);
            for (direction, residual) in direction.iter_mut().zip(residual.iter()) {
                *direction = ratio.mul_add(*direction, *residual);
            }
            residuals[at.clone()].copy_from_slice(residual);
            directions[at].copy_from_slice(direction);
            residual_norms[index] = next_norm;
        }
    }
    let mut first_entry = 0;
    for (row, loss) in rows.iter().zip(losses.iter_mut()) {
        let targets = row.terms.targets;
        let row_projections = &projections[first_entry..first_entry + targets.len()];
        first_entry += targets.len();
        *loss = row_projections
            .iter()
            .zip(targets)
            .map(|(&projection, &target)| {
                let truth = if implicit {
                    f32::from(u8::from(target > 0.0))
                } else {
                    target
                };
                let error = f64::from(projection - truth);
                error * error
            })
            .sum();
    }
}

/// `out_r = gram v_r` for the group's rows `v_r` (`rows` of them from `vectors`, each the
/// stride of `out`'s rows; zero without a Gram matrix), in tiles of up to four rows by up to
/// eight lines held in registers while `gram`'s rows stream past. Each line of each row is one
/// chain of fused multiply-adds over `gram`'s rows in order, so a row's result does not depend
/// on the others.
///
/// # Safety
/// `vectors` is valid for `rows` rows of `out.len() / MAX_GROUP` lines.
#[inline(always)]
unsafe fn multiply_gram<L: Line>(
    gram: Option<&[f32]>,
    rows: usize,
    vectors: *const f32,
    out: &mut [L],
) {
    let lines = out.len() / MAX_GROUP;
    let stride = lines * L::WIDTH;
    let zero = L::splat(0.0);
    let Some(gram) = gram else {
        out.fill(zero);
        return;
    };
    let rank = gram.len() / stride;
    let (tile_rows, tile_lines) = tile_shape(lines);
    let mut sums = [[zero; 8]; 4];
    let mut first_row = 0;
    while first_row < rows {
        let mut first_line = 0;
        while first_line < lines {
            let tile_lines = tile_lines.min(lines - first_line);
            for row_sums in sums.iter_mut() {
                row_sums.fill(zero);
            }
            for (index, gram_row) in gram.chunks_exact(stride).take(rank).enumerate() {
                let gram_row = gram_row.as_ptr();
                for (tile_row, row_sums) in sums.iter_mut().enumerate().take(tile_rows) {
                    // SAFETY: the caller's contract; padding rows beyond `rows` (up to
                    // MAX_GROUP, a multiple of the tile) are inside the caller's buffer only
                    // when it is a group buffer, so they are read only below `rows`.
                    let component = unsafe {
                        *vectors.add((first_row + tile_row).min(rows - 1) * stride + index)
                    };
                    let component = L::splat(component);
                    for (line, sum) in row_sums.iter_mut().enumerate().take(tile_lines) {
                        // SAFETY: `gram`'s rows have `stride` floats.
                        let value =
                            unsafe { L::load(gram_row.add((first_line + line) * L::WIDTH)) };
                        *sum = component.mul_add(value, *sum);
                    }
                }
            }
            for (tile_row, row_sums) in sums.iter().enumerate().take(tile_rows) {
                let row = first_row + tile_row;
                if row >= rows {
                    break;
                }
                let at = row * lines + first_line;
                out[at..at + tile_lines].copy_from_slice(&row_sums[..tile_lines]);
            }
            first_line += tile_lines;
        }
        first_row += tile_rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random problem of `rank` with `entries` entries over a table of 50 rows.
    fn problem_data(rank: usize, entries: usize) -> (FactorTable, Vec<u32>, Vec<f32>, Vec<f32>) {
        let mut table = FactorTable::zeroed(50, rank);
        let stride = table.stride();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for row in 0..50 {
            for component in 0..rank {
                table.as_mut_slice()[row * stride + component] = next();
            }
        }
        let columns: Vec<u32> = (0..entries).map(|e| ((e * 7 + 3) % 50) as u32).collect();
        let weights: Vec<f32> = (0..entries).map(|e| (e % 5) as f32 * 0.7).collect();
        let targets: Vec<f32> = weights
            .iter()
            .enumerate()
            .map(|(e, w)| if e % 3 == 0 { 0.0 } else { 1.0 + w })
            .collect();
        (table, columns, weights, targets)
    }

    fn full_gram(table: &FactorTable, rank: usize) -> Vec<f32> {
        let stride = table.stride();
        let mut gram = vec![0f32; rank * stride];
        for row in 0..table.rows() {
            let y = table.row(row);
            for a in 0..rank {
                for b in 0..rank {
                    gram[a * stride + b] += y[a] * y[b];
                }
            }
        }
        gram
    }

    /// Solves exactly in f64 and returns the solution and the loss it gives.
    fn exact(rank: usize, entries: usize, ridge: f64) -> Vec<f64> {
        let (table, columns, weights, targets) = problem_data(rank, entries);
        let gram = full_gram(&table, rank);
        let stride = table.stride();
        let mut normal = vec![0f64; rank * rank];
        let mut right_side = vec![0f64; rank];
        for a in 0..rank {
            for b in 0..rank {
                normal[a * rank + b] = f64::from(gram[a * stride + b]);
            }
            normal[a * rank + a] += ridge;
        }
        for ((&column, &w), &t) in columns.iter().zip(&weights).zip(&targets) {
            let y = table.row(column as usize);
            for a in 0..rank {
                right_side[a] += f64::from(t) * f64::from(y[a]);
                for b in 0..rank {
                    normal[a * rank + b] += f64::from(w) * f64::from(y[a]) * f64::from(y[b]);
                }
            }
        }
        assert!(super::super::solve::cholesky_solve(
            &mut normal,
            &mut right_side,
            rank
        ));
        right_side
    }

    /// Solves the rows `(rank, entries)` as one group; returns each row's `x` and loss.
    fn solve_rows(
        rank: usize,
        rows: &[usize],
        steps: usize,
        in_arrays: bool,
    ) -> Vec<(Vec<f32>, f64)> {
        let data: Vec<_> = rows
            .iter()
            .map(|&entries| problem_data(rank, entries))
            .collect();
        let table = &data[0].0;
        let gram = full_gram(table, rank);
        let shared = Shared {
            fixed: table,
            gram: Some(&gram),
            steps,
            implicit: true,
        };
        let group: Vec<Row<'_>> = data
            .iter()
            .map(|(_, columns, weights, targets)| Row {
                terms: Terms {
                    columns,
                    ahead: &[],
                    weights: Some(weights),
                    targets,
                },
                ridge: 0.5 + columns.len() as f32 * 0.01,
            })
            .collect();
        let stride = table.stride();
        let mut xs = vec![0f32; rows.len() * stride];
        for (x, entries) in xs.chunks_mut(stride).zip(rows) {
            for (component, value) in x[..rank].iter_mut().enumerate() {
                *value = ((component + entries) % 7) as f32 * 0.01;
            }
        }
        let mut losses = vec![0f64; rows.len()];
        let mut scratch = Scratch::default();
        if in_arrays {
            // SAFETY: the arguments pass `solve_group`'s checks (it is run on the same data).
            unsafe { portable(shared, &group, &mut xs, &mut losses, &mut scratch) }
        } else {
            solve_group(shared, &group, &mut xs, &mut losses, &mut scratch)
        }
        xs.chunks(stride)
            .zip(losses)
            .map(|(x, loss)| (x.to_vec(), loss))
            .collect()
    }

    fn iterate(rank: usize, entries: usize, steps: usize, in_arrays: bool) -> (Vec<f32>, f64) {
        let mut solved = solve_rows(rank, &[entries], steps, in_arrays);
        let (x, loss) = solved.remove(0);
        (x, loss)
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_and_in_any_group() {
        for rank in [5, 20, 64, 200] {
            let rows = [3 * rank, 0, rank, 2 * rank + 1, 7, 1, 40, 3, 9];
            let together = solve_rows(rank, &rows, 3, false);
            assert_eq!(
                together[1].0,
                vec![0f32; together[1].0.len()],
                "an empty row is zero"
            );
            for (index, &entries) in rows.iter().enumerate() {
                let mut alone = solve_rows(rank, &[entries], 3, false);
                let (x, loss) = alone.pop().unwrap();
                assert_eq!(
                    x, together[index].0,
                    "rank {rank}, row {index} ({entries} entries)"
                );
                assert_eq!(loss.to_bits(), together[index].1.to_bits());
            }
        }
    }

    #[test]
    fn converges_to_the_exact_solution_and_reports_its_loss() {
        for rank in [3, 10, 16, 40, 64, 130] {
            let entries = 2 * rank + 5;
            let (x, loss) = iterate(rank, entries, 3 * rank, false);
            let solution = exact(rank, entries, 0.5 + f64::from(entries as f32 * 0.01));
            for (got, want) in x.iter().zip(&solution) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-3,
                    "rank {rank}: {got} vs {want}"
                );
            }
            assert!(x[rank..].iter().all(|&v| v == 0.0), "padding stays zero");
            let (table, columns, _, targets) = problem_data(rank, entries);
            let direct: f64 = columns
                .iter()
                .zip(&targets)
                .map(|(&column, &target)| {
                    let y = table.row(column as usize);
                    let score: f64 = (0..rank).map(|a| f64::from(y[a]) * f64::from(x[a])).sum();
                    (score - f64::from(u8::from(target > 0.0))).powi(2)
                })
                .sum();
            assert!(
                (loss - direct).abs() < 1e-4 * direct.max(1.0),
                "rank {rank}: loss {loss}, direct {direct}"
            );
        }
    }

    #[test]
    fn every_build_gives_the_same_bits() {
        for rank in [5, 10, 20, 64, 100, 200] {
            let fast = iterate(rank, 3 * rank, 3, false);
            let portable = iterate(rank, 3 * rank, 3, true);
            assert_eq!(fast.0, portable.0, "rank {rank}");
            assert_eq!(fast.1.to_bits(), portable.1.to_bits(), "rank {rank}");
        }
    }
}
