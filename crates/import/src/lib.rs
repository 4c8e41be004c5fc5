//! Model import: turns a model from a local folder in Hugging Face layout, the local
//! Hugging Face hub cache, or the Hugging Face hub itself into a folder in the store
//! (UnixFS, CIDv1 with raw leaves, pinned) holding the model's files and a `lattice.json`
//! manifest (`docs/manifest.md`).
//!
//! Owns: resolving a source to files on disk ([`Source`], [`HubConfig`]: the cache layout of
//! `huggingface_hub`, resumable and sha256-checked downloads into it), choosing the files a
//! model needs ([`select()`]), converting PyTorch checkpoints to safetensors
//! ([`pytorch_to_safetensors`]), converting llama-family checkpoints to one quantized GGUF
//! (`--quantize`, [`Quantization`]; module `gguf`), the manifest ([`Manifest`]) and the import
//! itself ([`Importer`]).
//!
//! Never: imports a model the runtime refuses ([`lattice_runtime::ModelSpec::detect`] decides
//! before anything is stored); keeps a downloaded LFS file whose sha256 is not the one the
//! hub announced; leaves a half-written file under a final name (downloads go to
//! `*.incomplete`, everything else through a temporary file and a rename); stores a file
//! except through [`lattice_store::Store::add_paths`].
//!
//! Main types: [`Importer`] (one store, one work folder, one hub configuration),
//! [`ImportRequest`] (what to import), [`Imported`] (the root CID and the manifest).

use std::path::{Path, PathBuf};

use cid::Cid;
use lattice_runtime::ModelSpec;
use lattice_store::{ImportOptions, Store};
use sha2::{Digest, Sha256};

mod convert;
mod error;
mod gguf;
mod hub;
mod manifest;
mod select;

pub use convert::pytorch_to_safetensors;
pub use error::{ImportError, Result};
pub use gguf::{GGUF_FILE, QUANTIZE_SUPPORTED, Quantization};
pub use hub::{HubConfig, is_commit};
pub use manifest::{FileEntry, MANIFEST_FILE, Manifest, SCHEMA, SourceInfo, license_of};
pub use select::{PYTORCH_BIN, select};

use error::io;

/// Progress of long steps (downloads, hashing, conversion, the store import); every method
/// has a do-nothing default.
pub trait Observer: Sync {
    /// A step starts; `total` bytes when known.
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    /// `bytes` more are done.
    fn advance(&self, _bytes: u64) {}
    /// The step is over.
    fn end(&self) {}
}

/// An [`Observer`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder on disk in Hugging Face layout.
    Folder(PathBuf),
    /// A Hugging Face repository id, `org/name`.
    Repo(String),
}

impl Source {
    /// A folder when `s` names an existing path, else a repository id when it looks like
    /// `org/name`.
    pub fn parse(s: &str) -> Result<Self> {
        let path = Path::new(s);
        if path.exists() {
            if !path.is_dir() {
                return Err(ImportError::Source(format!(
                    "{s}: not a folder (a model is imported from a folder in Hugging Face layout)"
                )));
            }
            return Ok(Source::Folder(path.to_path_buf()));
        }
        let ok_part = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match s.split_once('/') {
            Some((org, name)) if ok_part(org) && ok_part(name) => Ok(Source::Repo(s.to_string())),
            _ => Err(ImportError::Source(format!(
                "{s}: no such folder, and not a Hugging Face repository id (org/name)"
            ))),
        }
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// A folder or a repository id (see [`Source::parse`]).
    pub source: String,
    /// Branch, tag or commit of a repository (default `main`).
    pub revision: Option<String>,
    /// The model's name in the manifest (default: the repository id or the folder's name).
    pub name: Option<String>,
    /// Download from the hub even when the cache has the revision.
    pub download: bool,
    /// Convert the checkpoint (a llama-family decoder) to one GGUF file with its weights
    /// quantized so ([`QUANTIZE_SUPPORTED`] says which models); the imported folder holds
    /// `model.gguf` instead of the checkpoint.
    pub quantize: Option<Quantization>,
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The folder's root CID (pinned).
    pub cid: Cid,
    /// The manifest written into the folder.
    pub manifest: Manifest,
    /// Bytes of all files in the folder, the manifest included.
    pub bytes: u64,
}

/// Imports models into one store.
#[derive(Debug)]
pub struct Importer<'a> {
    store: &'a Store,
    work: PathBuf,
    hub: HubConfig,
}

/// A model folder found on disk, before staging.
struct Resolved {
    dir: PathBuf,
    /// Names the staging folder: the same source always stages at the same path.
    stage_key: String,
    source: SourceInfo,
    name: String,
}

impl<'a> Importer<'a> {
    /// An importer into `store`, keeping its staging folders and converted checkpoints under
    /// `work` (e.g. `<datadir>/import`), with the hub and cache of `hub`.
    pub fn new(store: &'a Store, work: impl Into<PathBuf>, hub: HubConfig) -> Self {
        Importer {
            store,
            work: work.into(),
            hub,
        }
    }

    /// Imports one model: resolves the source (downloading when needed), checks the runtime
    /// can run it, converts a PyTorch checkpoint, writes the manifest and adds the folder to
    /// the store. Running it again on the same source gives the same CID and reuses the
    /// store's import cache and the converted checkpoint.
    pub fn import(&self, req: &ImportRequest, observer: &dyn Observer) -> Result<Imported> {
        let resolved = self.resolve(req, observer)?;
        let name = req.name.clone().unwrap_or(resolved.name);
        let files = list_files(&resolved.dir)?;
        let chosen = select(&files);
        if chosen.is_empty() {
            return Err(ImportError::Unsupported(format!(
                "{}: no model files (config.json, tokenizer, weights); supported: {}",
                resolved.dir.display(),
                lattice_runtime::spec::SUPPORTED
            )));
        }
        for f in &chosen {
            let p = resolved.dir.join(f);
            if !p.is_file() {
                return Err(ImportError::Source(format!(
                    "{}: missing or a broken link (an incomplete cache? import with --download)",
                    p.display()
                )));
            }
        }
        // Judged before any work: a model --quantize cannot convert is refused here.
        let plan = match req.quantize {
            Some(_) => Some(gguf::precheck(&resolved.dir, &chosen)?),
            None => None,
        };

        // Stage: a folder of links to the chosen files, at a path that depends only on the
        // source, so the store's import cache recognises the files on a rerun.
        let stage = self
            .work
            .join("staging")
            .join(&hub::hex(&Sha256::digest(resolved.stage_key.as_bytes()))[..16]);
        if stage.exists() {
            std::fs::remove_dir_all(&stage).map_err(io(&stage))?;
        }
        std::fs::create_dir_all(&stage).map_err(io(&stage))?;
        let mut bin = None;
        let mut checkpoint = Vec::new();
        for f in &chosen {
            let from = resolved.dir.join(f);
            if f == PYTORCH_BIN {
                bin = Some(from);
                continue;
            }
            let target = from.canonicalize().map_err(io(&from))?;
            if plan.is_some() && !select::is_metadata(f) {
                // Quantized: the checkpoint is read, not imported.
                if f.ends_with(".safetensors") {
                    checkpoint.push(target);
                }
                continue;
            }
            let to = stage.join(f);
            std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
        }
        if let (Some(plan), Some(q)) = (&plan, req.quantize) {
            if let Some(bin) = &bin {
                checkpoint = vec![self.convert(bin, observer)?];
            }
            let out = self.quantized(&resolved.stage_key, &stage, &checkpoint, q, &name)?;
            if !out.is_file() {
                gguf::write(plan, &checkpoint, q, &name, &out, observer)?;
            }
            let link = stage.join(GGUF_FILE);
            std::os::unix::fs::symlink(&out, &link).map_err(io(&link))?;
            bin = None;
        }
        let weights = stage.join("model.safetensors");
        if bin.is_some() {
            // Placeholder: the runtime decides from names and config.json before the
            // checkpoint is converted.
            std::fs::File::create(&weights).map_err(io(&weights))?;
        }
        ModelSpec::detect(&stage).map_err(|e| ImportError::Unsupported(e.to_string()))?;
        if let Some(bin) = bin {
            let converted = self.convert(&bin, observer)?;
            std::fs::remove_file(&weights).map_err(io(&weights))?;
            std::os::unix::fs::symlink(&converted, &weights).map_err(io(&weights))?;
        }
        let spec =
            ModelSpec::detect(&stage).map_err(|e| ImportError::Unsupported(e.to_string()))?;

        // First pass: each file's CID for the manifest (not pinned; the second pass finds
        // every file in the store's import cache).
        let total: u64 = dir_size(&stage)?;
        observer.begin("importing", Some(total));
        let step = |n: u64| observer.advance(n);
        let opts = ImportOptions {
            pin: false,
            ..ImportOptions::cid_v1()
        };
        let added = self
            .store
            .add_paths(std::slice::from_ref(&stage), &opts, &step)?;
        observer.end();
        let mut entries: Vec<FileEntry> = added
            .iter()
            .filter_map(|a| {
                let (_, path) = a.name.split_once('/')?;
                Some(FileEntry {
                    path: path.to_string(),
                    size: a.file_size,
                    cid: a.cid.to_string(),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let license = std::fs::read_to_string(stage.join("README.md"))
            .ok()
            .and_then(|r| license_of(&r));
        let mut manifest = Manifest::new(name, resolved.source, &spec, entries, license);
        manifest.quantization = req.quantize.map(|q| q.as_str().to_string());
        let mut json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ImportError::Source(format!("manifest: {e}")))?;
        json.push(b'\n');
        hub::write_atomic(&stage.join(MANIFEST_FILE), &json)?;

        let added = self.store.add_paths(
            std::slice::from_ref(&stage),
            &ImportOptions::cid_v1(),
            &|_| {},
        )?;
        let root = added
            .last()
            .ok_or_else(|| ImportError::Source("the store added nothing".to_string()))?;
        let bytes = manifest.files.iter().map(|f| f.size).sum::<u64>() + json.len() as u64;
        Ok(Imported {
            cid: root.cid,
            manifest,
            bytes,
        })
    }

    /// The folder a request names, downloading it into the hub cache when needed.
    fn resolve(&self, req: &ImportRequest, observer: &dyn Observer) -> Result<Resolved> {
        match Source::parse(&req.source)? {
            Source::Folder(dir) => {
                if req.revision.is_some() {
                    return Err(ImportError::Source(format!(
                        "{}: --revision applies to repository ids, not folders",
                        dir.display()
                    )));
                }
                let canon = dir.canonicalize().map_err(io(&dir))?;
                let name = canon
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".to_string());
                Ok(Resolved {
                    // The folder's name, not its path: the CID must not depend on where the
                    // folder happens to be.
                    source: SourceInfo {
                        kind: "folder".to_string(),
                        repo: name.clone(),
                        revision: None,
                    },
                    stage_key: format!("folder:{}", canon.display()),
                    dir: canon,
                    name,
                })
            }
            Source::Repo(repo) => {
                let rev = req.revision.as_deref().unwrap_or("main");
                let cached = if req.download {
                    None
                } else {
                    self.hub.resolve_cached(&repo, rev)?
                };
                // Cached or downloaded, it is the same repository at the same commit (and
                // the same bytes), so the manifest — and the CID — say the same.
                let (dir, commit) = match cached {
                    Some(found) => found,
                    None => self.hub.download_for(&repo, rev, req.quantize, observer)?,
                };
                Ok(Resolved {
                    stage_key: format!("hf:{repo}@{commit}"),
                    dir,
                    source: SourceInfo {
                        kind: "hf".to_string(),
                        repo: repo.clone(),
                        revision: Some(commit),
                    },
                    name: repo,
                })
            }
        }
    }

    /// Where the GGUF of a quantized import is kept: under `<work>/quantized/`, named by the
    /// source, the quantization, the name, the staged metadata's bytes and the checkpoint
    /// files' sizes and modification times, so a rerun reuses it and a changed source does not.
    fn quantized(
        &self,
        stage_key: &str,
        stage: &Path,
        checkpoint: &[PathBuf],
        q: Quantization,
        name: &str,
    ) -> Result<PathBuf> {
        let mut h = Sha256::new();
        for part in [GGUF_KEY_VERSION, stage_key, q.as_str(), name] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut meta: Vec<PathBuf> = std::fs::read_dir(stage)
            .map_err(io(stage))?
            .map(|e| e.map(|e| e.path()).map_err(io(stage)))
            .collect::<Result<_>>()?;
        meta.sort();
        for p in &meta {
            h.update(
                p.file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or_default(),
            );
            h.update(std::fs::read(p).map_err(io(p))?);
        }
        for p in checkpoint {
            let m = std::fs::metadata(p).map_err(io(p))?;
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{}\0{}\0{mtime}\0", p.display(), m.len()).as_bytes());
        }
        let dir = self.work.join("quantized");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir.join(format!("{}-{q}.gguf", &hub::hex(&h.finalize())[..32])))
    }

    /// `bin` converted to safetensors, kept under `<work>/converted/<sha256 of bin>` so a
    /// rerun reuses it.
    fn convert(&self, bin: &Path, observer: &dyn Observer) -> Result<PathBuf> {
        let len = std::fs::metadata(bin).map_err(io(bin))?.len();
        observer.begin(&format!("hashing {PYTORCH_BIN}"), Some(len));
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::open(bin).map_err(io(bin))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(io(bin))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            observer.advance(n as u64);
        }
        observer.end();
        let dir = self.work.join("converted");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let out = dir.join(format!("{}.safetensors", hub::hex(&hasher.finalize())));
        if !out.is_file() {
            observer.begin(&format!("converting {PYTORCH_BIN} to safetensors"), None);
            let done = pytorch_to_safetensors(bin, &out);
            observer.end();
            done?;
        }
        Ok(out)
    }
}

/// Bumped when the GGUF conversion changes, so cached conversions are redone.
const GGUF_KEY_VERSION: &str = "lattice-gguf-1";

/// Refuses a model the runtime cannot run from its metadata alone: `dir` holds the
/// metadata files of `files` (the weights may still be missing); a scratch folder gets links
/// to them and empty stand-ins for the weights, and [`ModelSpec::detect`] judges it. With
/// `quantize`, the question is whether `--quantize` can convert it instead.
pub(crate) fn precheck(dir: &Path, files: &[String], quantize: Option<Quantization>) -> Result<()> {
    if quantize.is_some() {
        return gguf::precheck(dir, files).map(|_| ());
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("lattice-precheck-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    let judged = (|| {
        for f in files {
            let from = dir.join(f);
            if f == PYTORCH_BIN {
                let to = scratch.join("model.safetensors");
                std::fs::File::create(&to).map_err(io(&to))?;
            } else if from.is_file() {
                let to = scratch.join(f);
                std::os::unix::fs::symlink(&from, &to).map_err(io(&to))?;
            } else {
                let to = scratch.join(f);
                std::fs::File::create(&to).map_err(io(&to))?;
            }
        }
        ModelSpec::detect(&scratch).map_err(|e| {
            ImportError::Unsupported(
                e.to_string()
                    .replace(&scratch.display().to_string(), "the model"),
            )
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    judged.map(|_| ())
}

/// The names of the regular files (links followed) at the top of `dir`.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Broken links count too: they are reported as missing files.
        if !entry.path().is_dir() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes of the files (links followed) at the top of `dir`.
fn dir_size(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = entry.map_err(io(dir))?.path();
        n += std::fs::metadata(&p).map_err(io(&p))?.len();
    }
    Ok(n)
}
