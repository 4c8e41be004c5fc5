//! Audio input for speech models: WAV decoding (`hound`: integer PCM of 8–32 bits and 32-bit
//! float), downmixing to mono, resampling to 16 kHz, and Whisper's log-mel spectrogram
//! computed as transformers' `WhisperFeatureExtractor` does.
//!
//! Resampling is `scipy.signal.resample_poly` (the rates reduced by their gcd, a Kaiser
//! windowed-sinc low-pass of `20·max(up, down) + 1` taps, β = 5), in f64. The spectrogram:
//! the audio padded with zeros (or cut) to 30 s, a centred STFT (reflect padding of
//! `n_fft / 2`, periodic Hann window, n_fft 400, hop 160), the power spectrum through a
//! Slaney-normalised mel filter bank on the Slaney scale (0–8 kHz), `log10(max(x, 1e-10))`,
//! clamped to `max - 8`, then `(x + 4) / 4`; the last STFT frame is dropped, leaving 3000.

use std::f64::consts::PI;
use std::io::Cursor;

use rayon::prelude::*;

use crate::error::{Result, RuntimeError};

/// The sample rate Whisper takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// STFT window length.
pub const N_FFT: usize = 400;
/// STFT hop.
pub const HOP_LENGTH: usize = 160;
/// Samples in one 30 s window at 16 kHz.
pub const CHUNK_SAMPLES: usize = 480_000;
/// Spectrogram frames of one 30 s window.
pub const CHUNK_FRAMES: usize = CHUNK_SAMPLES / HOP_LENGTH;

/// Lowest and highest input sample rates accepted (Hz).
const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Decoded PCM: interleaved channels scaled to [-1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Pcm {
    /// Samples per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// `frames × channels` samples, interleaved.
    pub samples: Vec<f64>,
}

impl Pcm {
    /// The channels averaged into one.
    pub fn mono(&self) -> Vec<f64> {
        let c = usize::from(self.channels.max(1));
        self.samples
            .chunks_exact(c)
            .map(|f| f.iter().sum::<f64>() / c as f64)
            .collect()
    }
}

fn bad(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidInput(format!("audio: {what}"))
}

/// Decodes a WAV file: integer PCM (8, 16, 24 or 32 bits; scaled by `2^(bits-1)`, 8-bit
/// unsigned centred first) or 32-bit float. Anything else, a truncated file or non-finite
/// samples is an [`RuntimeError::InvalidInput`] naming the problem.
pub fn decode_wav(bytes: &[u8]) -> Result<Pcm> {
    if bytes.is_empty() {
        return Err(bad("empty input (expected a WAV file)"));
    }
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a WAV file (no RIFF/WAVE header)"));
    }
    let reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| bad(format!("bad WAV: {e}")))?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(bad("WAV with 0 channels"));
    }
    if !RATES.contains(&spec.sample_rate) {
        return Err(bad(format!(
            "sample rate {} Hz is outside {}..={} Hz",
            spec.sample_rate,
            RATES.start(),
            RATES.end()
        )));
    }
    let samples: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) * scale))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("bad WAV data: {e}")))?
        }
        (hound::SampleFormat::Float, 32) => {
            let v: Vec<f64> = reader
                .into_samples::<f32>()
                .map(|s| s.map(f64::from))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("bad WAV data: {e}")))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad("float WAV with NaN or infinite samples"));
            }
            v
        }
        (format, bits) => {
            return Err(bad(format!(
                "unsupported WAV sample format: {bits}-bit {format:?} (expected 8/16/24/32-bit integer or 32-bit float PCM)"
            )));
        }
    };
    if samples.is_empty() {
        return Err(bad("the WAV file holds no samples"));
    }
    if !samples.len().is_multiple_of(usize::from(spec.channels)) {
        return Err(bad("truncated WAV data (a partial frame)"));
    }
    Ok(Pcm {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        samples,
    })
}

/// A WAV file as 16 kHz mono f32 samples (decoded, downmixed, resampled).
pub fn wav_to_16k_mono(bytes: &[u8]) -> Result<Vec<f32>> {
    let pcm = decode_wav(bytes)?;
    let mono = pcm.mono();
    let out = resample(&mono, pcm.sample_rate, SAMPLE_RATE)?;
    Ok(out.into_iter().map(|x| x as f32).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Resamples `x` from `from` Hz to `to` Hz as `scipy.signal.resample_poly(x, up, down)` does
/// with its defaults (see the module docs); the output has `ceil(len·up/down)` samples.
pub fn resample(x: &[f64], from: u32, to: u32) -> Result<Vec<f64>> {
    if from == 0 || to == 0 {
        return Err(bad("sample rate 0"));
    }
    let g = gcd(u64::from(from), u64::from(to));
    let (up, down) = ((u64::from(to) / g) as usize, (u64::from(from) / g) as usize);
    if up == 1 && down == 1 {
        return Ok(x.to_vec());
    }
    let max_rate = up.max(down);
    let half = 10 * max_rate;
    let taps = 2 * half + 1;
    // firwin(taps, 1/max_rate, window=("kaiser", 5.0)), scaled to unit DC gain, times `up`.
    let cutoff = 1.0 / max_rate as f64;
    let beta = 5.0;
    let i0_beta = bessel_i0(beta);
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let m = n as f64 - half as f64;
            let arg = cutoff * m;
            let sinc = if arg == 0.0 {
                1.0
            } else {
                (PI * arg).sin() / (PI * arg)
            };
            let r = 2.0 * n as f64 / (taps - 1) as f64 - 1.0;
            let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
            cutoff * sinc * w
        })
        .collect();
    let sum: f64 = h.iter().sum();
    let gain = up as f64 / sum;
    h.iter_mut().for_each(|v| *v *= gain);
    let n_in = x.len();
    let n_out = (n_in * up).div_ceil(down);
    // y[i] = Σ_n x[n]·h[half + i·down − n·up] over the taps in range.
    let out = (0..n_out)
        .map(|i| {
            let c = i * down + half; // index into h for n = 0
            let n_hi = (c / up).min(n_in.saturating_sub(1));
            let n_lo = (c.saturating_sub(taps - 1)).div_ceil(up);
            (n_lo..=n_hi)
                .filter(|&n| n < n_in)
                .map(|n| x[n] * h[c - n * up])
                .sum()
        })
        .collect();
    Ok(out)
}

#[derive(Clone, Copy, Debug, Default)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// A mixed-radix (recursive Cooley–Tukey over the smallest prime factor) complex FFT of one
/// fixed size, in f64.
struct Fft {
    n: usize,
    /// `exp(-2πik/n)` for `k` in `0..n`.
    twiddles: Vec<C>,
}

impl Fft {
    fn new(n: usize) -> Self {
        let twiddles = (0..n)
            .map(|k| {
                let a = -2.0 * PI * k as f64 / n as f64;
                C {
                    re: a.cos(),
                    im: a.sin(),
                }
            })
            .collect();
        Self { n, twiddles }
    }

    /// `out = DFT(x)`; both of length `n`.
    fn run(&self, x: &[C], out: &mut [C]) {
        self.rec(x, 0, 1, self.n, out);
    }

    /// DFT of the `len` elements `x[start + i·stride]`, into `out[..len]`.
    fn rec(&self, x: &[C], start: usize, stride: usize, len: usize, out: &mut [C]) {
        if len == 1 {
            out[0] = x[start];
            return;
        }
        let p = (2..=len).find(|p| len.is_multiple_of(*p)).unwrap_or(len);
        let m = len / p;
        for r in 0..p {
            self.rec(
                x,
                start + r * stride,
                stride * p,
                m,
                &mut out[r * m..(r + 1) * m],
            );
        }
        // Combine: y[q·m + k] = Σ_r out[r·m + k]·W_len^(r·(q·m + k)).
        let step = self.n / len;
        let mut small = [C::default(); 8];
        let mut big = Vec::new();
        let col: &mut [C] = if p <= small.len() {
            &mut small[..p]
        } else {
            big.resize(p, C::default());
            &mut big
        };
        for k in 0..m {
            for (r, c) in col.iter_mut().enumerate() {
                *c = out[r * m + k];
            }
            for q in 0..p {
                let j = q * m + k;
                let mut acc = C::default();
                for (r, c) in col.iter().enumerate() {
                    let w = self.twiddles[(r * j % len) * step];
                    let t = c.mul(w);
                    acc.re += t.re;
                    acc.im += t.im;
                }
                out[j] = acc;
            }
        }
    }
}

/// Whisper's log-mel spectrogram for one mel-bin count (80 or 128).
pub struct MelExtractor {
    n_mels: usize,
    /// `[n_mels][N_FFT / 2 + 1]`.
    filters: Vec<f64>,
    /// Per mel bin, the range of FFT bins where its filter is non-zero.
    support: Vec<std::ops::Range<usize>>,
    window: Vec<f64>,
    fft: Fft,
}

fn hz_to_mel(f: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 27.0 / 6.4f64.ln());
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() * logstep
    } else {
        3.0 * f / 200.0
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// `transformers.audio_utils.mel_filter_bank(n_fft/2+1, n_mels, 0, 8000, 16000,
/// norm="slaney", mel_scale="slaney")`, transposed to `[n_mels][bins]`.
fn mel_filters(n_mels: usize) -> Vec<f64> {
    let bins = N_FFT / 2 + 1;
    let nyquist = f64::from(SAMPLE_RATE / 2);
    let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(8000.0));
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0.0; n_mels * bins];
    for m in 0..n_mels {
        let enorm = 2.0 / (freqs[m + 2] - freqs[m]);
        for k in 0..bins {
            let f = nyquist * k as f64 / (bins - 1) as f64;
            let down = (f - freqs[m]) / (freqs[m + 1] - freqs[m]);
            let up = (freqs[m + 2] - f) / (freqs[m + 2] - freqs[m + 1]);
            out[m * bins + k] = down.min(up).max(0.0) * enorm;
        }
    }
    out
}

impl MelExtractor {
    /// The extractor for `n_mels` mel bins.
    pub fn new(n_mels: usize) -> Result<Self> {
        if !(1..=512).contains(&n_mels) {
            return Err(RuntimeError::InvalidModel(format!(
                "num_mel_bins {n_mels} is not in 1..=512"
            )));
        }
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / N_FFT as f64).cos())
            .collect();
        let filters = mel_filters(n_mels);
        let bins = N_FFT / 2 + 1;
        let support = filters
            .chunks_exact(bins)
            .map(|row| {
                let lo = row.iter().position(|&v| v != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&v| v != 0.0).map_or(lo, |i| i + 1);
                lo..hi
            })
            .collect();
        Ok(Self {
            n_mels,
            filters,
            support,
            window,
            fft: Fft::new(N_FFT),
        })
    }

    /// Mel bins.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The features of one 30 s window of 16 kHz samples (longer input is cut, shorter is
    /// padded with zeros): `[n_mels, 3000]` row-major.
    pub fn features(&self, samples: &[f32]) -> Vec<f32> {
        let n = CHUNK_SAMPLES;
        let pad = N_FFT / 2;
        let audio = |i: usize| -> f64 { samples.get(i).map_or(0.0, |&x| f64::from(x)) };
        // Centred STFT with reflect padding: padded[i] = x[reflect(i - pad)].
        let at = |i: usize| -> f64 {
            if i < pad {
                audio(pad - i)
            } else if i - pad < n {
                audio(i - pad)
            } else {
                audio(2 * (n - 1) - (i - pad))
            }
        };
        let bins = N_FFT / 2 + 1;
        let frames = CHUNK_FRAMES;
        // Frame-major `[frames][n_mels]`, computed in parallel blocks of frames.
        let block = 100;
        let mut by_frame = vec![0f64; frames * self.n_mels];
        by_frame
            .par_chunks_mut(block * self.n_mels)
            .enumerate()
            .for_each(|(b, out)| {
                let mut buf = vec![C::default(); N_FFT];
                let mut spec = vec![C::default(); N_FFT];
                let mut power = vec![0f64; bins];
                for (i, row) in out.chunks_exact_mut(self.n_mels).enumerate() {
                    let t = b * block + i;
                    for (j, v) in buf.iter_mut().enumerate() {
                        *v = C {
                            re: at(t * HOP_LENGTH + j) * self.window[j],
                            im: 0.0,
                        };
                    }
                    self.fft.run(&buf, &mut spec);
                    for (p, s) in power.iter_mut().zip(&spec) {
                        *p = s.re * s.re + s.im * s.im;
                    }
                    for (m, r) in row.iter_mut().enumerate() {
                        let range = self.support[m].clone();
                        let f = &self.filters[m * bins..(m + 1) * bins][range.clone()];
                        let v: f64 = f.iter().zip(&power[range]).map(|(a, b)| a * b).sum();
                        *r = v.max(1e-10).log10();
                    }
                }
            });
        let mut mel = vec![0f64; self.n_mels * frames];
        for (t, row) in by_frame.chunks_exact(self.n_mels).enumerate() {
            for (m, &v) in row.iter().enumerate() {
                mel[m * frames + t] = v;
            }
        }
        let max = mel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        mel.iter()
            .map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cur = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).expect("writer");
            write(&mut w);
            w.finalize().expect("finalize");
        }
        cur.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn fft_matches_a_direct_dft() {
        for n in [1, 2, 5, 12, 400] {
            let fft = Fft::new(n);
            let x: Vec<C> = (0..n)
                .map(|i| C {
                    re: ((i * 7 % 13) as f64 - 6.0) / 3.0,
                    im: ((i * 5 % 11) as f64 - 5.0) / 7.0,
                })
                .collect();
            let mut got = vec![C::default(); n];
            fft.run(&x, &mut got);
            for (k, g) in got.iter().enumerate() {
                let mut want = C::default();
                for (j, v) in x.iter().enumerate() {
                    let a = -2.0 * PI * (j * k) as f64 / n as f64;
                    let t = v.mul(C {
                        re: a.cos(),
                        im: a.sin(),
                    });
                    want.re += t.re;
                    want.im += t.im;
                }
                assert!(
                    (g.re - want.re).abs() < 1e-9 && (g.im - want.im).abs() < 1e-9,
                    "n {n} bin {k}"
                );
            }
        }
    }

    #[test]
    fn every_pcm_width_decodes_to_the_same_scale() {
        let values = [0.5f64, -0.25, 0.75, -1.0];
        for bits in [8u16, 16, 24, 32] {
            let full = f64::from(1u32 << (bits - 1));
            let bytes = wav(spec(1, 16000, bits, false), |w| {
                for v in values {
                    let s = (v * full) as i32;
                    if bits == 8 {
                        w.write_sample(s as i8).expect("write");
                    } else {
                        w.write_sample(s).expect("write");
                    }
                }
            });
            let pcm = decode_wav(&bytes).expect("decode");
            assert_eq!(pcm.samples, values, "{bits}-bit");
        }
        let bytes = wav(spec(2, 8000, 32, true), |w| {
            for v in [0.5f32, -0.5, 0.25, 0.75] {
                w.write_sample(v).expect("write");
            }
        });
        let pcm = decode_wav(&bytes).expect("decode");
        assert_eq!((pcm.channels, pcm.sample_rate), (2, 8000));
        assert_eq!(pcm.mono(), vec![0.0, 0.5]);
    }

    #[test]
    fn bad_wavs_are_named_errors() {
        let msg = |b: &[u8]| decode_wav(b).expect_err("must fail").to_string();
        assert!(msg(b"").contains("empty"), "{}", msg(b""));
        assert!(msg(b"hello, this is text").contains("not a WAV"));
        let good = wav(spec(1, 16000, 16, false), |w| {
            for i in 0..100 {
                w.write_sample(i as i16).expect("write");
            }
        });
        // Every truncation and a corrupted header fail cleanly.
        for cut in [12, 20, 30, 43, 44, 45, 101] {
            let e = msg(&good[..cut]);
            assert!(e.starts_with("invalid input: audio:"), "{cut}: {e}");
        }
        let mut odd = good.clone();
        odd[34] = 12; // bits per sample
        assert!(decode_wav(&odd).is_err());
        let slow = wav(spec(1, 100, 16, false), |w| {
            w.write_sample(1i16).expect("w")
        });
        assert!(msg(&slow).contains("sample rate"));
        let nan = wav(spec(1, 16000, 32, true), |w| {
            w.write_sample(f32::NAN).expect("w")
        });
        assert!(msg(&nan).contains("NaN"));
        let empty = wav(spec(1, 16000, 16, false), |_| {});
        assert!(msg(&empty).contains("no samples"));
    }

    #[test]
    fn a_44k_stereo_tone_resamples_to_16k_with_its_frequency_and_amplitude() {
        let (rate, f, amp) = (44_100u32, 440.0, 0.6);
        let n = rate as usize; // 1 s
        let bytes = wav(spec(2, rate, 16, false), |w| {
            for i in 0..n {
                let v = amp * (2.0 * PI * f * i as f64 / f64::from(rate)).sin();
                let s = (v * 32767.0).round() as i16;
                w.write_sample(s).expect("w");
                w.write_sample(s).expect("w");
            }
        });
        let out = wav_to_16k_mono(&bytes).expect("resample");
        assert_eq!(out.len(), 16_000);
        // Away from the edges (the filter's ramp), the ideal 16 kHz tone.
        let worst = (200..15_800)
            .map(|i| {
                let want = amp * (2.0 * PI * f * i as f64 / 16_000.0).sin();
                (f64::from(out[i]) - want).abs()
            })
            .fold(0f64, f64::max);
        assert!(worst < 2e-3, "max error {worst}");
        // A tone above 8 kHz is filtered out.
        let hi: Vec<f64> = (0..n)
            .map(|i| (2.0 * PI * 12_000.0 * i as f64 / f64::from(rate)).sin())
            .collect();
        let r = resample(&hi, rate, 16_000).expect("resample");
        let rms = (r[200..15_800].iter().map(|x| x * x).sum::<f64>() / 15_600.0).sqrt();
        assert!(rms < 1e-3, "rms {rms}");
        assert_eq!(resample(&hi, 16_000, 16_000).expect("same"), hi);
    }

    #[test]
    fn mel_filters_cover_the_band_with_slaney_area() {
        for n_mels in [80, 128] {
            let f = mel_filters(n_mels);
            let bins = N_FFT / 2 + 1;
            for m in 0..n_mels {
                let row = &f[m * bins..(m + 1) * bins];
                assert!(
                    row.iter().any(|&v| v > 0.0),
                    "filter {m} of {n_mels} is empty"
                );
            }
        }
        let x = MelExtractor::new(80).expect("mel");
        let silence = x.features(&[]);
        assert_eq!(silence.len(), 80 * CHUNK_FRAMES);
        assert!(silence.iter().all(|&v| v == silence[0]));
    }
}
