//! Choosing where a model runs: the backend (candle or ONNX Runtime) and the device (CPU,
//! a CUDA device, Metal), automatically from the model's format and the hardware found, or as
//! the caller says.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::spec::Format;

/// The engine that executes a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// candle (pure Rust): safetensors and GGUF weights.
    Candle,
    /// ONNX Runtime through `ort`: `.onnx` graphs.
    Onnx,
}

impl Backend {
    /// The backend for a weights format (the only one that can run it).
    pub fn for_format(format: Format) -> Self {
        match format {
            Format::Onnx => Backend::Onnx,
            Format::Safetensors | Format::Gguf => Backend::Candle,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Candle => "candle",
            Backend::Onnx => "onnx",
        })
    }
}

impl FromStr for Backend {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "candle" => Ok(Backend::Candle),
            "onnx" | "ort" => Ok(Backend::Onnx),
            _ => Err(RuntimeError::Device(format!(
                "unknown backend {s:?} (expected candle or onnx)"
            ))),
        }
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU (all backends).
    Cpu,
    /// CUDA device N (the `cuda` feature).
    Cuda(usize),
    /// Apple's GPU (the `metal` feature).
    Metal,
}

impl DeviceChoice {
    /// The best device this build and machine have: CUDA 0, then Metal, then the CPU.
    pub fn auto() -> Self {
        if candle_core::utils::cuda_is_available() {
            DeviceChoice::Cuda(0)
        } else if candle_core::utils::metal_is_available() {
            DeviceChoice::Metal
        } else {
            DeviceChoice::Cpu
        }
    }

    /// The candle device, or an error saying which feature or hardware is missing.
    pub fn candle_device(&self) -> Result<candle_core::Device> {
        match *self {
            DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
            DeviceChoice::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(RuntimeError::Device(
                        "cuda requested but this build has no CUDA support (build with --features cuda)"
                            .into(),
                    ));
                }
                candle_core::Device::new_cuda(n)
                    .map_err(|e| RuntimeError::Device(format!("cuda:{n}: {e}")))
            }
            DeviceChoice::Metal => {
                if !candle_core::utils::metal_is_available() {
                    return Err(RuntimeError::Device(
                        "metal requested but this build has no Metal support (build with --features metal)"
                            .into(),
                    ));
                }
                candle_core::Device::new_metal(0)
                    .map_err(|e| RuntimeError::Device(format!("metal: {e}")))
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal => f.write_str("metal"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "metal" => Ok(DeviceChoice::Metal),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(RuntimeError::Device(format!(
                    "unknown device {s:?} (expected cpu, cuda, cuda:N or metal)"
                ))),
            },
        }
    }
}

/// The CPU's vector features that matter for inference speed, for reports.
pub fn cpu_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            out.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            out.push("fma");
        }
        if std::arch::is_x86_feature_detected!("f16c") {
            out.push("f16c");
        }
    }
    #[cfg(target_arch = "aarch64")]
    out.push("neon");
    out
}

/// Threads the CPU kernels use (candle reads `CANDLE_NUM_THREADS`/`RAYON_NUM_THREADS` once;
/// ONNX sessions are built with the same number).
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() -> Result<()> {
        for s in ["cpu", "cuda:0", "cuda:3", "metal"] {
            assert_eq!(s.parse::<DeviceChoice>()?.to_string(), s);
        }
        assert_eq!("cuda".parse::<DeviceChoice>()?, DeviceChoice::Cuda(0));
        let e = "gpu"
            .parse::<DeviceChoice>()
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("gpu") && e.contains("cuda:N"), "{e}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert_eq!("onnx".parse::<Backend>()?, Backend::Onnx);
        assert!("tf".parse::<Backend>().is_err());
        Ok(())
    }

    #[test]
    fn cpu_build_refuses_gpu_devices_by_name() {
        if !candle_core::utils::cuda_is_available() {
            let e = DeviceChoice::Cuda(0)
                .candle_device()
                .expect_err("must fail")
                .to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
