//! Lines of 16 floats (8 for ranks up to 8) in vector registers: one 64-byte factor-table line
//! per AVX-512 register, two AVX2 registers, or a plain array elsewhere, with the few
//! operations the conjugate-gradient solve and the Gram matrix need.
//!
//! Every implementation computes the same bits: a multiply-add is fused (one rounding, also in
//! the array version through `f32::mul_add`), and a line's lanes are summed in one fixed order.
//! The callers compile their loops once per instruction set (`#[target_feature]` wrappers
//! around generic code), so the choice of instruction set changes speed, never results.

/// The register tile of a product whose outputs are rows of `lines` lines: how many output
/// rows by how many lines are summed at once. At most 16 sums, leaving registers for the
/// streamed row's lines and the broadcast factors.
#[inline(always)]
pub fn tile_shape(lines: usize) -> (usize, usize) {
    match lines {
        1..=4 => (4, lines),
        5..=8 => (2, lines),
        _ => (1, 8),
    }
}

/// A vector register's worth of floats (or an array standing in for one). Every
/// implementation computes the same bits: `mul_add` rounds once, and `sum` adds the halves
/// first, then their halves, down to one float.
pub trait Line: Copy {
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
pub mod x86 {
    use std::arch::x86_64::*;

    use super::Line;

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
        fn sum(self) -> f32 {
            sum_256(self.0)
        }
    }
}

/// # Safety
/// `source` is valid for the lines' floats.
#[inline(always)]
pub unsafe fn load<L: Line>(lines: &mut [L], source: *const f32) {
    for (index, line) in lines.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        *line = unsafe { L::load(source.add(index * L::WIDTH)) };
    }
}

/// # Safety
/// `target` is valid for writing the lines' floats.
#[inline(always)]
pub unsafe fn store<L: Line>(lines: &[L], target: *mut f32) {
    for (index, line) in lines.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { line.store(target.add(index * L::WIDTH)) };
    }
}

/// `target += scale * row`, fused, for a row of floats in memory.
///
/// # Safety
/// `row` is valid for the lines' floats.
#[inline(always)]
pub unsafe fn add_row<L: Line>(target: &mut [L], scale: f32, row: *const f32) {
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
pub unsafe fn dot_row<L: Line>(row: *const f32, vector: &[L]) -> f32 {
    let mut sum = L::splat(0.0);
    for (index, line) in vector.iter().enumerate() {
        // SAFETY: the caller's contract.
        sum = unsafe { L::load(row.add(index * L::WIDTH)) }.mul_add(*line, sum);
    }
    sum.sum()
}

/// `target += scale * source`, fused.
#[inline(always)]
pub fn add_scaled<L: Line>(target: &mut [L], scale: f32, source: &[L]) {
    let scale = L::splat(scale);
    for (target, source) in target.iter_mut().zip(source) {
        *target = scale.mul_add(*source, *target);
    }
}

/// Fused multiply-adds per lane over the lines, then the lanes summed (see [`Line::sum`]).
#[inline(always)]
pub fn dot<L: Line>(a: &[L], b: &[L]) -> f32 {
    let mut sum = L::splat(0.0);
    for (a, b) in a.iter().zip(b) {
        sum = a.mul_add(*b, sum);
    }
    sum.sum()
}
