//! Conjugate gradient for one row's least squares problem (the default solver for implicit
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
//! - the vectors of a row up to rank 128 are local arrays of 16-float lines, which the compiler
//!   keeps in registers (a generic length above that, in scratch);
//! - `gram p` is a sum of `gram`'s rows scaled by `p`'s components, in two interleaved sums so
//!   that the multiply-adds do not wait on each other;
//! - the start `r = b - A x` is one pass over the entries (`sum (t - w y.x) y`);
//! - each entry's `y.x` is kept and moved along with `x` (`y.x += step * y.p`), so the loss
//!   `sum (pref - y.x)^2` costs no pass of its own;
//! - every multiply-add is fused (`mul_add`), and the code is compiled for AVX-512 and for
//!   AVX2 with FMA where the CPU has them. A fused multiply-add rounds once whatever the
//!   instruction set, and every sum runs in the same order, so each build gives the same bits
//!   (tested), and the result does not depend on the thread count.

use super::kernel::{FactorTable, Terms};

/// What one row's solve reads besides its own factors.
#[derive(Clone, Copy)]
pub struct Problem<'a> {
    pub terms: Terms<'a>,
    pub fixed: &'a FactorTable,
    /// `Y^T Y` in full (both triangles), `rank` rows of `stride` floats; `None` for explicit
    /// ratings.
    pub gram: Option<&'a [f32]>,
    pub ridge: f32,
    pub steps: usize,
    /// Implicit feedback: the loss compares `y.x` with the preference (1 where the target is
    /// positive, else 0) rather than with the target.
    pub implicit: bool,
}

/// Per-thread buffers: each entry's `y.x` and `y.p`.
#[derive(Default)]
pub struct Scratch {
    projections: Vec<f32>,
    step_projections: Vec<f32>,
}

/// Rows up to this many vector lines (rank 128) keep their vectors in local arrays, which the
/// compiler holds in registers; longer rows use vectors of any length.
const MAX_LINES_IN_REGISTERS: usize = 8;

/// Runs `problem.steps` conjugate-gradient steps from the current `x` (the row's `stride`
/// padded floats, padding zero) and returns the row's training loss `sum (truth - y.x)^2` over
/// its entries under the new `x`, where truth is the preference (implicit) or the target.
pub fn solve(problem: Problem<'_>, x: &mut [f32], scratch: &mut Scratch) -> f64 {
    let (terms, fixed) = (problem.terms, problem.fixed);
    let stride = fixed.stride();
    // O(1) and O(entries) checks the unchecked loads below rely on.
    assert_eq!(x.len(), stride);
    assert_eq!(terms.columns.len(), terms.targets.len());
    assert!(
        terms
            .weights
            .is_none_or(|weights| weights.len() == terms.columns.len())
    );
    assert!(
        problem
            .gram
            .is_none_or(|gram| gram.len() == fixed.rank() * stride)
    );
    let largest = terms
        .columns
        .iter()
        .fold(0u32, |largest, &c| largest.max(c));
    assert!((largest as usize) < fixed.rows() || terms.columns.is_empty());
    if terms.columns.is_empty() {
        x.fill(0.0);
        return 0.0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if stride % 16 == 0 && avx512_available() {
            // SAFETY: the CPU has the features (checked just above); the asserts above hold.
            return unsafe { x86::with_avx512(problem, x, scratch) };
        }
        if avx2_available() {
            // SAFETY: as above.
            return unsafe { x86::with_avx2(problem, x, scratch) };
        }
    }
    // SAFETY: the asserts above.
    unsafe { portable(problem, x, scratch) }
}

/// Eight or sixteen floats as plain arrays; `mul_add` is one rounding on every platform.
unsafe fn portable(problem: Problem<'_>, x: &mut [f32], scratch: &mut Scratch) -> f64 {
    // SAFETY: forwarded from the caller.
    unsafe {
        if x.len() == 8 {
            by_lines::<[f32; 8]>(problem, x, scratch)
        } else {
            by_lines::<[f32; 16]>(problem, x, scratch)
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| avx2_available() && std::is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

/// A vector register's worth of floats (or an array standing in for one). Every
/// implementation computes the same bits: `mul_add` rounds once, and `sum` adds the halves
/// first, then their halves, down to one float.
trait Line: Copy {
    const WIDTH: usize;
    /// # Safety
    /// `source` must be valid for `WIDTH` floats (no alignment needed).
    unsafe fn load(source: *const f32) -> Self;
    /// # Safety
    /// `target` must be valid for writing `WIDTH` floats.
    unsafe fn store(self, target: *mut f32);
    fn splat(value: f32) -> Self;
    /// `self * factor + addend`, rounded once.
    fn mul_add(self, factor: Self, addend: Self) -> Self;
    fn add(self, other: Self) -> Self;
    fn sum(self) -> f32;
}

impl<const N: usize> Line for [f32; N] {
    const WIDTH: usize = N;

    #[inline(always)]
    unsafe fn load(source: *const f32) -> Self {
        // SAFETY: the caller's contract.
        unsafe { source.cast::<[f32; N]>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn store(self, target: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { target.cast::<[f32; N]>().write_unaligned(self) }
    }

    #[inline(always)]
    fn splat(value: f32) -> Self {
        [value; N]
    }

    #[inline(always)]
    fn mul_add(self, factor: Self, addend: Self) -> Self {
        std::array::from_fn(|lane| self[lane].mul_add(factor[lane], addend[lane]))
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        std::array::from_fn(|lane| self[lane] + other[lane])
    }

    #[inline(always)]
    fn sum(self) -> f32 {
        let mut values = self;
        let mut width = N;
        while width > 1 {
            width /= 2;
            for lane in 0..width {
                values[lane] += values[lane + width];
            }
        }
        values[0]
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Line, Problem, Scratch, by_lines};

    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn with_avx512(problem: Problem<'_>, x: &mut [f32], scratch: &mut Scratch) -> f64 {
        // SAFETY: forwarded from the caller.
        unsafe { by_lines::<Wide>(problem, x, scratch) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn with_avx2(problem: Problem<'_>, x: &mut [f32], scratch: &mut Scratch) -> f64 {
        // SAFETY: forwarded from the caller.
        unsafe {
            if x.len() == 8 {
                by_lines::<Narrow>(problem, x, scratch)
            } else {
                by_lines::<Pair>(problem, x, scratch)
            }
        }
    }

    /// Eight floats to a float: the halves of a 256-bit register first.
    #[inline(always)]
    fn sum_256(eight: __m256) -> f32 {
        // SAFETY: only called from the AVX2 and AVX-512 builds above (inlined into them).
        unsafe {
            let four = _mm_add_ps(
                _mm256_castps256_ps128(eight),
                _mm256_extractf128_ps::<1>(eight),
            );
            let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
            _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)))
        }
    }

    /// Sixteen floats in one AVX-512 register.
    #[derive(Clone, Copy)]
    pub struct Wide(__m512);

    impl Line for Wide {
        const WIDTH: usize = 16;

        #[inline(always)]
        unsafe fn load(source: *const f32) -> Self {
            // SAFETY: the caller's contract; the CPU has AVX-512F (this type is only used in
            // `with_avx512`).
            Wide(unsafe { _mm512_loadu_ps(source) })
        }

        #[inline(always)]
        unsafe fn store(self, target: *mut f32) {
            // SAFETY: as for `load`.
            unsafe { _mm512_storeu_ps(target, self.0) }
        }

        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: the CPU has AVX-512F (see `load`).
            Wide(unsafe { _mm512_set1_ps(value) })
        }

        #[inline(always)]
        fn mul_add(self, factor: Self, addend: Self) -> Self {
            // SAFETY: as for `splat`.
            Wide(unsafe { _mm512_fmadd_ps(self.0, factor.0, addend.0) })
        }

        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: as for `splat`.
            Wide(unsafe { _mm512_add_ps(self.0, other.0) })
        }

        #[inline(always)]
        fn sum(self) -> f32 {
            // SAFETY: as for `splat`.
            unsafe {
                let low = _mm512_castps512_ps256(self.0);
                let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(self.0)));
                sum_256(_mm256_add_ps(low, high))
            }
        }
    }

    /// Sixteen floats in two AVX2 registers (low and high eight).
    #[derive(Clone, Copy)]
    pub struct Pair(__m256, __m256);

    impl Line for Pair {
        const WIDTH: usize = 16;

        #[inline(always)]
        unsafe fn load(source: *const f32) -> Self {
            // SAFETY: the caller's contract; the CPU has AVX2 and FMA (this type is only used
            // in `with_avx2`).
            unsafe { Pair(_mm256_loadu_ps(source), _mm256_loadu_ps(source.add(8))) }
        }

        #[inline(always)]
        unsafe fn store(self, target: *mut f32) {
            // SAFETY: as for `load`.
            unsafe {
                _mm256_storeu_ps(target, self.0);
                _mm256_storeu_ps(target.add(8), self.1);
            }
        }

        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: as for `load`.
            unsafe { Pair(_mm256_set1_ps(value), _mm256_set1_ps(value)) }
        }

        #[inline(always)]
        fn mul_add(self, factor: Self, addend: Self) -> Self {
            // SAFETY: as for `load`.
            unsafe {
                Pair(
                    _mm256_fmadd_ps(self.0, factor.0, addend.0),
                    _mm256_fmadd_ps(self.1, factor.1, addend.1),
                )
            }
        }

        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: as for `load`.
            unsafe {
                Pair(
                    _mm256_add_ps(self.0, other.0),
                    _mm256_add_ps(self.1, other.1),
                )
            }
        }

        #[inline(always)]
        fn sum(self) -> f32 {
            // SAFETY: as for `load`.
            sum_256(unsafe { _mm256_add_ps(self.0, self.1) })
        }
    }

    /// Eight floats in one AVX2 register (ranks up to 8).
    #[derive(Clone, Copy)]
    pub struct Narrow(__m256);

    impl Line for Narrow {
        const WIDTH: usize = 8;

        #[inline(always)]
        unsafe fn load(source: *const f32) -> Self {
            // SAFETY: as for `Pair::load`.
            Narrow(unsafe { _mm256_loadu_ps(source) })
        }

        #[inline(always)]
        unsafe fn store(self, target: *mut f32) {
            // SAFETY: as for `Pair::load`.
            unsafe { _mm256_storeu_ps(target, self.0) }
        }

        #[inline(always)]
        fn splat(value: f32) -> Self {
            // SAFETY: as for `Pair::load`.
            Narrow(unsafe { _mm256_set1_ps(value) })
        }

        #[inline(always)]
        fn mul_add(self, factor: Self, addend: Self) -> Self {
            // SAFETY: as for `Pair::load`.
            Narrow(unsafe { _mm256_fmadd_ps(self.0, factor.0, addend.0) })
        }

        #[inline(always)]
        fn add(self, other: Self) -> Self {
            // SAFETY: as for `Pair::load`.
            Narrow(unsafe { _mm256_add_ps(self.0, other.0) })
        }

        #[inline(always)]
        fn sum(self) -> f32 {
            sum_256(self.0)
        }
    }
}

/// Picks the number of lines: 1 to 8 with the vectors in local arrays, or any number in
/// vectors allocated for the row (ranks above 128, where the row's arithmetic dwarfs that).
///
/// # Safety
/// `problem` passed [`solve`]'s checks; `x` has `stride` floats, a multiple of `L::WIDTH`.
#[inline(always)]
unsafe fn by_lines<L: Line>(problem: Problem<'_>, x: &mut [f32], scratch: &mut Scratch) -> f64 {
    // SAFETY: forwarded from the caller.
    unsafe {
        match x.len() / L::WIDTH {
            1 => in_registers::<L, 1>(problem, x, scratch),
            2 => in_registers::<L, 2>(problem, x, scratch),
            3 => in_registers::<L, 3>(problem, x, scratch),
            4 => in_registers::<L, 4>(problem, x, scratch),
            5 => in_registers::<L, 5>(problem, x, scratch),
            6 => in_registers::<L, 6>(problem, x, scratch),
            7 => in_registers::<L, 7>(problem, x, scratch),
            8 => in_registers::<L, MAX_LINES_IN_REGISTERS>(problem, x, scratch),
            lines => {
                let mut vectors = vec![L::splat(0.0); 5 * lines];
                let mut components = vec![0f32; x.len()];
                let (solution, rest) = vectors.split_at_mut(lines);
                let (residual, rest) = rest.split_at_mut(lines);
                let (direction, rest) = rest.split_at_mut(lines);
                let (product, spare) = rest.split_at_mut(lines);
                let vectors = Vectors {
                    solution,
                    residual,
                    direction,
                    product,
                    spare,
                    components: &mut components,
                };
                run(problem, x, vectors, scratch)
            }
        }
    }
}

#[inline(always)]
unsafe fn in_registers<L: Line, const C: usize>(
    problem: Problem<'_>,
    x: &mut [f32],
    scratch: &mut Scratch,
) -> f64 {
    let mut vectors = [[L::splat(0.0); C]; 5];
    let [solution, residual, direction, product, spare] = &mut vectors;
    let mut components = [0f32; 128];
    let vectors = Vectors {
        solution,
        residual,
        direction,
        product,
        spare,
        components: &mut components[..C * L::WIDTH],
    };
    // SAFETY: forwarded from the caller.
    unsafe { run(problem, x, vectors, scratch) }
}

/// The row's working vectors, each `stride` floats as lines.
struct Vectors<'a, L> {
    solution: &'a mut [L],
    residual: &'a mut [L],
    direction: &'a mut [L],
    product: &'a mut [L],
    /// The second of the two interleaved sums of `gram p`.
    spare: &'a mut [L],
    /// The vector being multiplied by `gram`, as floats (`stride`).
    components: &'a mut [f32],
}

/// How many entries ahead the first pass prefetches factor rows (the later passes find them in
/// cache).
const PREFETCH_AHEAD: usize = 8;

/// # Safety
/// As [`by_lines`]; the vectors have `stride / L::WIDTH` lines.
#[inline(always)]
unsafe fn run<L: Line>(
    problem: Problem<'_>,
    x: &mut [f32],
    vectors: Vectors<'_, L>,
    scratch: &mut Scratch,
) -> f64 {
    let Problem {
        terms,
        fixed,
        gram,
        ridge,
        steps,
        implicit,
    } = problem;
    let Vectors {
        solution,
        residual,
        direction,
        product,
        spare,
        components,
    } = vectors;
    let (stride, entries) = (fixed.stride(), terms.columns.len());
    let table = fixed.as_slice().as_ptr();
    // SAFETY: `solve` checked every column indexes a row of the table.
    let factor_row = |column: u32| unsafe { table.add(column as usize * stride) };
    let weight = |entry: usize| terms.weights.map_or(1.0, |weights| weights[entry]);
    let projections = &mut scratch.projections;
    projections.clear();
    projections.resize(entries, 0.0);
    let step_projections = &mut scratch.step_projections;
    step_projections.clear();
    step_projections.resize(entries, 0.0);
    // SAFETY: `x` has `stride` floats, the lines' total.
    unsafe { load(solution, x.as_ptr()) };

    // r = b - A x = sum (t - w y.x) y - gram x - ridge x, keeping each y.x.
    multiply_gram(gram, ridge, solution, residual, spare, components);
    for line in residual.iter_mut() {
        *line = line.mul_add(L::splat(-1.0), L::splat(0.0));
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
        projections[entry] = projection;
        let scale = weight(entry).mul_add(-projection, terms.targets[entry]);
        // SAFETY: as above.
        unsafe { add_row(residual, scale, factor_row(column)) };
    }
    direction.copy_from_slice(residual);
    let mut residual_norm = dot(residual, residual);
    for _ in 0..steps {
        if residual_norm < 1e-20 {
            break;
        }
        // product = A p, keeping each y.p.
        multiply_gram(gram, ridge, direction, product, spare, components);
        for (entry, &column) in terms.columns.iter().enumerate() {
            // SAFETY: as above.
            let projection = unsafe { dot_row(factor_row(column), direction) };
            step_projections[entry] = projection;
            // SAFETY: as above.
            unsafe { add_row(product, weight(entry) * projection, factor_row(column)) };
        }
        let curvature = dot(direction, product);
        if curvature <= 0.0 || !curvature.is_finite() {
            break;
        }
        let step = residual_norm / curvature;
        add_scaled(solution, step, direction);
        add_scaled(residual, -step, product);
        for (projection, moved) in projections.iter_mut().zip(step_projections.iter()) {
            *projection = step.mul_add(*moved, *projection);
        }
        let next_norm = dot(residual, residual);
        let ratio = L::splat(next_norm / residual_norm);
        for (direction, residual) in direction.iter_mut().zip(residual.iter()) {
            *direction = ratio.mul_add(*direction, *residual);
        }
        residual_norm = next_norm;
    }
    // SAFETY: as for the load.
    unsafe { store(solution, x.as_mut_ptr()) };
    projections
        .iter()
        .zip(terms.targets)
        .map(|(&projection, &target)| {
            let truth = if implicit {
                f32::from(u8::from(target > 0.0))
            } else {
                target
            };
            let error = f64::from(projection - truth);
            error * error
        })
        .sum()
}

/// # Safety
/// `source` is valid for the lines' floats.
#[inline(always)]
unsafe fn load<L: Line>(lines: &mut [L], source: *const f32) {
    for (index, line) in lines.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        *line = unsafe { L::load(source.add(index * L::WIDTH)) };
    }
}

/// # Safety
/// `target` is valid for writing the lines' floats.
#[inline(always)]
unsafe fn store<L: Line>(lines: &[L], target: *mut f32) {
    for (index, line) in lines.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { line.store(target.add(index * L::WIDTH)) };
    }
}

/// `out = gram v + ridge v` (just `ridge v` without a Gram matrix), as a sum of `gram`'s rows
/// scaled by `v`'s components: two interleaved sums (even and odd rows) so that consecutive
/// multiply-adds into a line do not wait on each other.
#[inline(always)]
fn multiply_gram<L: Line>(
    gram: Option<&[f32]>,
    ridge: f32,
    v: &[L],
    out: &mut [L],
    spare: &mut [L],
    components: &mut [f32],
) {
    let zero = L::splat(0.0);
    let ridge = L::splat(ridge);
    for (out, v) in out.iter_mut().zip(v) {
        *out = ridge.mul_add(*v, zero);
    }
    let Some(gram) = gram else {
        return;
    };
    let stride = components.len();
    // SAFETY: `components` has as many floats as the lines.
    unsafe { store(v, components.as_mut_ptr()) };
    spare.fill(zero);
    let rank = gram.len() / stride;
    let gram_row = |index: usize| gram[index * stride..][..stride].as_ptr();
    let mut index = 0;
    while index + 1 < rank {
        // SAFETY: each row of `gram` has `stride` floats.
        unsafe {
            add_row(out, components[index], gram_row(index));
            add_row(spare, components[index + 1], gram_row(index + 1));
        }
        index += 2;
    }
    if index < rank {
        // SAFETY: as above.
        unsafe { add_row(out, components[index], gram_row(index)) };
    }
    for (out, spare) in out.iter_mut().zip(spare.iter()) {
        *out = out.add(*spare);
    }
}

/// `target += scale * row`, fused, for a row of floats in memory.
///
/// # Safety
/// `row` is valid for the lines' floats.
#[inline(always)]
unsafe fn add_row<L: Line>(target: &mut [L], scale: f32, row: *const f32) {
    let scale = L::splat(scale);
    for (index, target) in target.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        let line = unsafe { L::load(row.add(index * L::WIDTH)) };
        *target = scale.mul_add(line, *target);
    }
}

/// `row . vector` for a row of floats in memory, summed as [`dot`].
///
/// # Safety
/// `row` is valid for the lines' floats.
#[inline(always)]
unsafe fn dot_row<L: Line>(row: *const f32, vector: &[L]) -> f32 {
    let mut sum = L::splat(0.0);
    for (index, line) in vector.iter().enumerate() {
        // SAFETY: the caller's contract.
        sum = unsafe { L::load(row.add(index * L::WIDTH)) }.mul_add(*line, sum);
    }
    sum.sum()
}

/// `target += scale * source`, fused.
#[inline(always)]
fn add_scaled<L: Line>(target: &mut [L], scale: f32, source: &[L]) {
    let scale = L::splat(scale);
    for (target, source) in target.iter_mut().zip(source) {
        *target = scale.mul_add(*source, *target);
    }
}

/// Fused multiply-adds per lane over the lines, then the lanes summed (see [`Line::sum`]).
#[inline(always)]
fn dot<L: Line>(a: &[L], b: &[L]) -> f32 {
    let mut sum = L::splat(0.0);
    for (a, b) in a.iter().zip(b) {
        sum = a.mul_add(*b, sum);
    }
    sum.sum()
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

    fn iterate(rank: usize, entries: usize, steps: usize, in_arrays: bool) -> (Vec<f32>, f64) {
        let (table, columns, weights, targets) = problem_data(rank, entries);
        let gram = full_gram(&table, rank);
        let problem = Problem {
            terms: Terms {
                columns: &columns,
                ahead: &[],
                weights: Some(&weights),
                targets: &targets,
            },
            fixed: &table,
            gram: Some(&gram),
            ridge: 0.5,
            steps,
            implicit: true,
        };
        let mut x = vec![0f32; table.stride()];
        let mut scratch = Scratch::default();
        let loss = if in_arrays {
            unsafe { portable(problem, &mut x, &mut scratch) }
        } else {
            solve(problem, &mut x, &mut scratch)
        };
        (x, loss)
    }

    #[test]
    fn converges_to_the_exact_solution_and_reports_its_loss() {
        for rank in [3, 10, 16, 40, 64, 130] {
            let entries = 2 * rank + 5;
            let (x, loss) = iterate(rank, entries, 3 * rank, false);
            let solution = exact(rank, entries, 0.5);
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
