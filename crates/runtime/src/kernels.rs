//! CPU kernels where candle's generic ones cost the most on encoders.
//!
//! [`Dense`] is `x·Wᵀ + b` for activations `[m, k]` and a weight kept in its checkpoint
//! packed once at load into panels of 16 output columns. A general GEMM (candle's) repacks
//! the weight on every call, which for a sentence (m ≈ 10–30 tokens) costs as much as the
//! multiplication itself. The kernel computes tiles of up to 6 tokens × 16 columns in AVX2
//! registers (FMA), streaming each panel in order. Panels are split across threads; each
//! output is summed over `k` in order by one thread, so results do not depend on the
//! thread count or on which other tokens share the call.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// A linear layer run by [`linear`] on the CPU (and by candle's matmul elsewhere).
pub struct Dense {
    /// `[n, k]` packed by [`pack`].
    weight: Vec<f32>,
    bias: Vec<f32>,
    n: usize,
    k: usize,
    /// The layer as candle holds it, kept only off the CPU (on the CPU the `Vec`s above
    /// are the one copy).
    tensor: Option<candle_nn::Linear>,
}

impl Dense {
    /// From a candle linear layer (weight `[n, k]`, bias `[n]`).
    pub fn new(layer: candle_nn::Linear) -> Result<Self> {
        let (n, k) = layer.weight().dims2()?;
        let weight = pack(&layer.weight().flatten_all()?.to_vec1::<f32>()?, n, k);
        let bias = match layer.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; n],
        };
        let tensor = (!layer.weight().device().is_cpu()).then_some(layer);
        Ok(Self {
            weight,
            bias,
            n,
            k,
            tensor,
        })
    }

    /// Bytes of weights held.
    pub fn bytes(&self) -> u64 {
        ((self.weight.len() + self.bias.len()) * 4) as u64
    }

    /// `x·Wᵀ + b` for `x` of shape `[m, k]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.tensor {
            Some(layer) => Ok(candle_nn::Module::forward(layer, x)?),
            None => Ok(x.apply_op1_no_bwd(self)?),
        }
    }
}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "lattice-dense"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = contiguous_f32(storage, layout, "lattice-dense")?;
        let (m, k) = layout.shape().dims2()?;
        if k != self.k {
            candle_core::bail!(
                "lattice-dense: input has {k} features, the weight {}",
                self.k
            );
        }
        let out = linear(data, m, k, &self.weight, self.n, &self.bias);
        Ok((CpuStorage::F32(out), Shape::from((m, self.n))))
    }
}

/// The f32 elements of a contiguous CPU tensor, or an error naming the op.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} takes f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous");
    };
    Ok(&data[start..end])
}

/// Columns per packed panel: two AVX registers of 8.
const PANEL: usize = 16;

/// `w` (`[n, k]`, row-major) repacked once as panels of 16 output columns, each `[k][16]`
/// contiguous (zero-padded past `n`), which the kernel streams through in order.
pub fn pack(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let panels = n.div_ceil(PANEL);
    let mut out = vec![0f32; panels * k * PANEL];
    for j in 0..n {
        let (p, c) = (j / PANEL, j % PANEL);
        for i in 0..k {
            out[(p * k + i) * PANEL + c] = w[j * k + i];
        }
    }
    out
}

/// Where a task writes its columns of the output (disjoint between tasks).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of one buffer that outlives them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `i` (a method, so closures capture the whole `Send` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `out[t][j] = Σ_i x[t][i]·w[j][i] + bias[j]`; `x` is `[m, k]`, `packed` is
/// [`pack`]`(w, n, k)`. Every output sums over `i` in order, in one thread.
pub fn linear(x: &[f32], m: usize, k: usize, packed: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
    let panels = n.div_ceil(PANEL);
    assert!(x.len() >= m * k && packed.len() >= panels * k * PANEL && bias.len() >= n);
    let mut out = vec![0f32; m * n];
    let ptr = OutPtr(out.as_mut_ptr());
    let run = |p: usize| {
        // SAFETY: this task writes only the columns of panel p.
        unsafe { panel(x, m, k, packed, n, bias, p, ptr) };
    };
    if m * n * k < 1 << 16 {
        (0..panels).for_each(run);
    } else {
        (0..panels).into_par_iter().for_each(run);
    }
    out
}

#[allow(clippy::too_many_arguments)]
unsafe fn panel(
    x: &[f32],
    m: usize,
    k: usize,
    packed: &[f32],
    n: usize,
    bias: &[f32],
    p: usize,
    out: OutPtr,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { avx2::panel(x, m, k, packed, n, bias, p, out.0) };
            return;
        }
    }
    let w = &packed[p * k * PANEL..(p + 1) * k * PANEL];
    let cols = (n - p * PANEL).min(PANEL);
    for t in 0..m {
        let mut acc = [0f32; PANEL];
        for i in 0..k {
            let xv = x[t * k + i];
            for (c, a) in acc.iter_mut().enumerate() {
                *a = xv.mul_add(w[i * PANEL + c], *a);
            }
        }
        for (c, a) in acc.iter().enumerate().take(cols) {
            let j = p * PANEL + c;
            // SAFETY: t < m and j < n, in this task's panel.
            unsafe { *out.0.add(t * n + j) = a + bias[j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::PANEL;

    /// `T` tokens × 16 columns: 2·T accumulators, per step of `i` two weight loads and `T`
    /// broadcasts.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const T: usize>(
        x: *const f32,
        k: usize,
        w: *const f32,
        n: usize,
        bias: &[f32],
        t0: usize,
        j0: usize,
        out: *mut f32,
    ) {
        unsafe {
            let mut lo = [_mm256_setzero_ps(); T];
            let mut hi = [_mm256_setzero_ps(); T];
            for i in 0..k {
                let w0 = _mm256_loadu_ps(w.add(i * PANEL));
                let w1 = _mm256_loadu_ps(w.add(i * PANEL + 8));
                for tt in 0..T {
                    let xv = _mm256_broadcast_ss(&*x.add((t0 + tt) * k + i));
                    lo[tt] = _mm256_fmadd_ps(xv, w0, lo[tt]);
                    hi[tt] = _mm256_fmadd_ps(xv, w1, hi[tt]);
                }
            }
            let cols = (n - j0).min(PANEL);
            let mut row = [0f32; PANEL];
            for tt in 0..T {
                _mm256_storeu_ps(row.as_mut_ptr(), lo[tt]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), hi[tt]);
                for (c, v) in row.iter().enumerate().take(cols) {
                    *out.add((t0 + tt) * n + j0 + c) = v + bias[j0 + c];
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel(
        x: &[f32],
        m: usize,
        k: usize,
        packed: &[f32],
        n: usize,
        bias: &[f32],
        p: usize,
        out: *mut f32,
    ) {
        let xp = x.as_ptr();
        let w = packed[p * k * PANEL..].as_ptr();
        let j0 = p * PANEL;
        let mut t = 0;
        unsafe {
            while t < m {
                let rows = (m - t).min(6);
                match rows {
                    6 => tile::<6>(xp, k, w, n, bias, t, j0, out),
                    5 => tile::<5>(xp, k, w, n, bias, t, j0, out),
                    4 => tile::<4>(xp, k, w, n, bias, t, j0, out),
                    3 => tile::<3>(xp, k, w, n, bias, t, j0, out),
                    2 => tile::<2>(xp, k, w, n, bias, t, j0, out),
                    _ => tile::<1>(xp, k, w, n, bias, t, j0, out),
                }
                t += rows;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, b: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for t in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|i| f64::from(x[t * k + i]) * f64::from(w[j * k + i]))
                    .sum();
                out[t * n + j] = s as f32 + b[j];
            }
        }
        out
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_a_naive_product_on_odd_shapes() {
        for &(m, k, n) in &[
            (1, 8, 1),
            (3, 13, 5),
            (7, 384, 33),
            (17, 1536, 384),
            (64, 384, 1152),
        ] {
            let (x, w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let got = linear(&x, m, k, &pack(&w, n, k), n, &b);
            let want = naive(&x, m, k, &w, n, &b);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{m}x{k}x{n}: {worst}");
        }
    }

    #[test]
    fn a_rows_result_does_not_depend_on_the_other_rows() {
        let (m, k, n) = (9, 384, 70);
        let (x, w, b) = (data(m * k, 4), data(n * k, 5), data(n, 6));
        let w = pack(&w, n, k);
        let all = linear(&x, m, k, &w, n, &b);
        for t in 0..m {
            let one = linear(&x[t * k..(t + 1) * k], 1, k, &w, n, &b);
            assert_eq!(one, all[t * n..(t + 1) * n], "row {t}");
        }
    }
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`, over a whole tensor: a rational erf (the one XLA and
/// Eigen use for f32, error ≈ 1e-7) that vectorizes, where candle calls libm's scalar `erff`
/// per element (an eighth of an encoder's time at batch 32).
pub struct Gelu;

impl Gelu {
    /// GELU of `x` (any shape; f32 on the CPU, candle's `gelu_erf` elsewhere).
    pub fn forward(x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            Ok(x.apply_op1_no_bwd(&Gelu)?)
        } else {
            Ok(x.gelu_erf()?)
        }
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "lattice-gelu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = contiguous_f32(storage, layout, "lattice-gelu")?;
        let src = data;
        let mut out = vec![0f32; src.len()];
        let chunk = 16 * 1024;
        let run = |(o, s): (&mut [f32], &[f32])| gelu_slice(s, o);
        if src.len() > chunk {
            out.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(run);
        } else {
            run((&mut out, src));
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

fn gelu_slice(src: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { gelu_avx2(src, out) };
            return;
        }
    }
    gelu_plain(src, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(src: &[f32], out: &mut [f32]) {
    gelu_plain(src, out);
}

#[inline(always)]
fn gelu_plain(src: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf for f32 as a rational function on [-4, 4] (erf is ±1 to f32 precision beyond).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600_1e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    p *= x;
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_2e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    p / q
}

#[cfg(test)]
mod erf_tests {
    #[test]
    fn erf_matches_libm_to_float_precision() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x <= 6.0 {
            let want = libm_erf(f64::from(x));
            worst = worst.max((f64::from(super::erf(x)) - want).abs());
            x += 1.0 / 1024.0;
        }
        assert!(worst < 1e-6, "max error {worst}");
    }

    /// erf in f64 by its series / continued fraction (independent of the code under test).
    fn libm_erf(x: f64) -> f64 {
        // Abramowitz–Stegun 7.1.26 is too coarse; integrate exp(-t²) with Simpson's rule.
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }
}

/// Self-attention of one layer straight from the fused `[b·s, 3h]` projection (queries
/// already scaled by 1/√d): per (item, head), scores against the item's unpadded keys,
/// softmax, weighted sum of values, written to `[b·s, h]`. One task per (item, head), so a
/// token's output depends only on its own item — padding keys are skipped, not masked — and
/// never on the thread count. Replaces candle's reshape/permute copies and the two batched
/// matmuls, which dispatched hundreds of tiny GEMMs per layer at batch 32.
pub struct Attention<'a> {
    /// Items in the batch.
    pub batch: usize,
    /// Tokens per item (padded).
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Per-token 1/0 mask, `[batch, seq]`; `None` = no padding.
    pub mask: Option<&'a [u32]>,
}

impl Attention<'_> {
    /// Runs on `qkv` (`[b·s, 3h]`, f32, CPU).
    pub fn forward(&self, qkv: &Tensor) -> Result<Tensor> {
        Ok(qkv.apply_op1_no_bwd(self)?)
    }
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "lattice-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = contiguous_f32(storage, layout, "lattice-attention")?;
        let (rows, three_h) = layout.shape().dims2()?;
        let (b, s, nh) = (self.batch, self.seq, self.heads);
        if rows != b * s || three_h % 3 != 0 || (three_h / 3) % nh != 0 {
            candle_core::bail!(
                "lattice-attention: shape [{rows}, {three_h}] for batch {b} × {s}, {nh} heads"
            );
        }
        if self.mask.is_some_and(|m| m.len() != b * s) {
            candle_core::bail!("lattice-attention: mask length");
        }
        let h = three_h / 3;
        let d = h / nh;
        let qkv = data;
        let mut out = vec![0f32; b * s * h];
        let ptr = OutPtr(out.as_mut_ptr());
        let task = |job: usize| {
            let (item, head) = (job / nh, job % nh);
            let valid: Vec<usize> = (0..s)
                .filter(|&j| self.mask.is_none_or(|m| m[item * s + j] != 0))
                .collect();
            let mut scores = vec![0f32; valid.len()];
            let mut ctx = vec![0f32; d];
            for i in 0..s {
                let q = &qkv[(item * s + i) * three_h + head * d..][..d];
                let mut max = f32::NEG_INFINITY;
                for (sc, &j) in scores.iter_mut().zip(&valid) {
                    let k = &qkv[(item * s + j) * three_h + h + head * d..][..d];
                    *sc = dot(q, k);
                    max = max.max(*sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                ctx.iter_mut().for_each(|c| *c = 0.0);
                for (&p, &j) in scores.iter().zip(&valid) {
                    let v = &qkv[(item * s + j) * three_h + 2 * h + head * d..][..d];
                    let p = p / sum;
                    for (c, &x) in ctx.iter_mut().zip(v) {
                        *c += p * x;
                    }
                }
                for (t, &c) in ctx.iter().enumerate() {
                    // SAFETY: row item·s+i, columns head·d.. of this (item, head) only.
                    unsafe { *ptr.at((item * s + i) * h + head * d + t) = c };
                }
            }
        };
        if b * nh * s * s * d < 1 << 15 {
            (0..b * nh).for_each(task);
        } else {
            (0..b * nh).into_par_iter().for_each(task);
        }
        Ok((CpuStorage::F32(out), Shape::from((b * s, h))))
    }
}

/// Dot product in 8 lanes (vectorizes without reassociating across lanes), fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += ca[l] * cb[l];
        }
    }
    let mut s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
    for (x, y) in a[chunks..].iter().zip(&b[chunks..]) {
        s += x * y;
    }
    s
}
