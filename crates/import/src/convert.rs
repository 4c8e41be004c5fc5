//! PyTorch `pytorch_model.bin` → `model.safetensors`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ImportError, Result};

/// Converts the PyTorch checkpoint `bin` (a pickled state dict, zip or legacy format) into a
/// safetensors file at `out`, written through a temporary file and renamed, so a kill leaves
/// either nothing or the whole file. Tensors keep their names, shapes and dtypes; the output
/// is deterministic (safetensors sorts tensors), so the same checkpoint always gives the same
/// bytes and the same CID.
pub fn pytorch_to_safetensors(bin: &Path, out: &Path) -> Result<usize> {
    let err = |message: String| ImportError::Convert {
        path: bin.to_path_buf(),
        message,
    };
    let tensors = candle_core::pickle::read_all(bin).map_err(|e| err(e.to_string()))?;
    if tensors.is_empty() {
        return Err(err("no tensors in the checkpoint".to_string()));
    }
    let mut map = BTreeMap::new();
    for (name, t) in tensors {
        // Shared storages (tied weights) arrive as views; safetensors wants each tensor's
        // own contiguous bytes.
        let t = t.contiguous().map_err(|e| err(format!("{name}: {e}")))?;
        map.insert(name, t);
    }
    let n = map.len();
    let tmp = out.with_extension(format!("safetensors.tmp-{}", std::process::id()));
    let map: std::collections::HashMap<String, candle_core::Tensor> = map.into_iter().collect();
    candle_core::safetensors::save(&map, &tmp).map_err(|e| err(e.to_string()))?;
    let f = std::fs::File::open(&tmp).map_err(|e| ImportError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ImportError::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| ImportError::io(out, e))?;
    Ok(n)
}
