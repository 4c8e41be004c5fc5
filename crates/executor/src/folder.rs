//! Model folders out of the store, checked on the way: what the runtime loads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use lattice_store::Store;

use crate::error::ExecutorError;

/// Files at least this large are linked to the store's data file instead of copied.
pub const LINK_MIN: u64 = 1 << 20;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Lays folder (or GGUF file) `cid` out in `<models>/<cid>/` for the runtime and returns that
/// path. Every block is checked against its CID before the runtime sees it: small files
/// (configs, tokenizers) are written out, large ones (weights) become symlinks to the store's
/// own data files after every leaf was hashed in place, so the runtime memory-maps the
/// store's bytes without a copy. A single file must be GGUF (named `model.gguf`).
///
/// The folder is built under a temporary name and renamed into place, so a crash leaves no
/// half folder under the final name; a folder another caller laid out meanwhile is kept.
pub fn model_dir(store: &Store, cid: &Cid, models: &Path) -> Result<PathBuf, ExecutorError> {
    if !store.has(cid)? {
        return Err(ExecutorError::Store(format!(
            "{cid} is not in the local store ({})",
            store.dir().display()
        )));
    }
    let io = |what: &str, e: std::io::Error| ExecutorError::Store(format!("{what}: {e}"));
    std::fs::create_dir_all(models).map_err(|e| io(&models.display().to_string(), e))?;
    let dest = models.join(cid.to_string());
    let tmp = models.join(format!(
        "{cid}.partial-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("clearing a stale folder", e))?;
    }
    let laid_out = if store.node(cid)?.is_dir() {
        lay_out(store, cid, &tmp)
    } else {
        single_file(store, cid, &tmp)
    };
    if let Err(e) = laid_out {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(match e {
            ExecutorError::Store(m) => {
                ExecutorError::Store(format!("reading {cid} out of the store: {m}"))
            }
            other => other,
        });
    }
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&dest);
    }
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another caller put its (equally checked) copy there first.
        if !dest.is_dir() {
            return Err(io(&dest.display().to_string(), e));
        }
    }
    Ok(dest)
}

/// A single file: only GGUF names itself (by its magic, read from the first block alone;
/// `file_path` then checks every block).
fn single_file(store: &Store, cid: &Cid, tmp: &Path) -> Result<(), ExecutorError> {
    let mut magic = Vec::with_capacity(4);
    store.cat(cid, 0, Some(4), &mut magic)?;
    if magic != b"GGUF" {
        return Err(ExecutorError::Store(format!(
            "{cid} is a file, not a model folder (config.json + weights) or a GGUF file"
        )));
    }
    std::fs::create_dir(tmp).map_err(|e| ExecutorError::Store(e.to_string()))?;
    link(&store.file_path(cid)?, &tmp.join("model.gguf"))
}

fn link(data: &Path, to: &Path) -> Result<(), ExecutorError> {
    // Absolute: a datadir given as a relative path would leave the link dangling.
    let data = std::path::absolute(data).map_err(|e| ExecutorError::Store(e.to_string()))?;
    std::os::unix::fs::symlink(data, to)
        .map_err(|e| ExecutorError::Store(format!("{}: {e}", to.display())))
}

fn lay_out(store: &Store, cid: &Cid, dest: &Path) -> Result<(), ExecutorError> {
    std::fs::create_dir(dest)
        .map_err(|e| ExecutorError::Store(format!("{}: {e}", dest.display())))?;
    for entry in store.ls(cid)? {
        if entry.name.is_empty()
            || entry.name.contains('/')
            || entry.name == "."
            || entry.name == ".."
        {
            return Err(ExecutorError::Store(format!(
                "{cid}: unsafe entry name {:?}",
                entry.name
            )));
        }
        let to = dest.join(&entry.name);
        if entry.is_dir {
            lay_out(store, &entry.cid, &to)?;
        } else if entry.file_size >= LINK_MIN {
            let data = store.file_path(&entry.cid).map_err(|e| {
                ExecutorError::Store(format!("{}: checking {}: {e}", entry.name, entry.cid))
            })?;
            link(&data, &to)?;
        } else {
            store.get(&entry.cid, &to).map_err(|e| {
                ExecutorError::Store(format!("{}: reading {}: {e}", entry.name, entry.cid))
            })?;
        }
    }
    Ok(())
}
