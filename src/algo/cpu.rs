//! Which vector instruction sets this CPU has, asked in one place: the kernels pick their
//! implementation by it, and each implementation gives the same results (only the speed
//! differs).

/// AVX2.
#[cfg(target_arch = "x86_64")]
pub fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// AVX2 with fused multiply-add.
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma() -> bool {
    avx2() && std::is_x86_feature_detected!("fma")
}

/// AVX-512F, with AVX2 and FMA (every CPU with AVX-512 has both, and the AVX-512 kernels
/// use them for their tails).
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    avx2_fma() && std::is_x86_feature_detected!("avx512f")
}
