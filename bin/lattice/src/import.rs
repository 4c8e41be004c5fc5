//! `lattice model import`: a model folder, a Hugging Face cache entry or a hub repository
//! into the store, with its `lattice.json` manifest (the work is `lattice-import`'s).

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use lattice_import::{HubConfig, ImportRequest, Imported, Importer, Observer, Quantization};

use crate::Ctx;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A folder in Hugging Face layout, or a repository id `org/name` (from the local
    /// Hugging Face cache, else downloaded from $HF_ENDPOINT, default https://huggingface.co).
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    source: Option<String>,
    /// Branch, tag or commit of a repository (default: main).
    #[arg(long)]
    revision: Option<String>,
    /// The model's name in the manifest (default: the repository id or folder name).
    #[arg(long)]
    name: Option<String>,
    /// Download from the hub even when the cache has the revision.
    #[arg(long)]
    download: bool,
    /// Import every source listed in FILE (one a line, `#` comments; folders relative to the
    /// current directory), reporting each; exits non-zero when any failed.
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// Convert a llama-family checkpoint (LlamaForCausalLM, MistralForCausalLM with a
    /// byte-level BPE tokenizer.json) to one `model.gguf` with its weight matrices quantized
    /// (norms stay F32; with q4_0 the output head is Q6_K/Q8_0, as llama.cpp's); the folder
    /// imported holds the GGUF instead of the checkpoint.
    #[arg(long, value_enum, value_name = "TYPE")]
    quantize: Option<QuantizeArg>,
}

/// `--quantize` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum QuantizeArg {
    /// 4-bit blocks of 32 (4.5 bits a weight).
    #[value(name = "q4_0")]
    Q4_0,
    /// 8-bit blocks of 32 (8.5 bits a weight).
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<QuantizeArg> for Quantization {
    fn from(q: QuantizeArg) -> Self {
        match q {
            QuantizeArg::Q4_0 => Quantization::Q4_0,
            QuantizeArg::Q8_0 => Quantization::Q8_0,
        }
    }
}

/// Progress bars on stderr (hidden with `--json` or without a terminal).
struct Bars<'a> {
    ctx: &'a Ctx,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Observer for Bars<'_> {
    fn begin(&self, what: &str, total: Option<u64>) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(old) = b.take() {
                old.finish_and_clear();
            }
            *b = Some(self.ctx.progress(total, what));
        }
    }
    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(bytes);
        }
    }
    fn end(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}

fn summary(source: &str, m: &Imported) -> serde_json::Value {
    serde_json::json!({
        "source": source,
        "cid": m.cid.to_string(),
        "name": m.manifest.name,
        "task": m.manifest.task,
        "format": m.manifest.format,
        "files": m.manifest.files,
        "bytes": m.bytes,
        "revision": m.manifest.source.revision,
        "quantization": m.manifest.quantization,
    })
}

pub(crate) fn run(ctx: &Ctx, a: ImportArgs) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    let importer = Importer::new(&store, ctx.datadir.join("import"), HubConfig::from_env());
    let bars = Bars {
        ctx,
        bar: Mutex::new(None),
    };
    let request = |source: &str| ImportRequest {
        source: source.to_string(),
        revision: a.revision.clone(),
        name: a.name.clone(),
        download: a.download,
        quantize: a.quantize.map(Into::into),
    };
    let Some(batch) = &a.batch else {
        let source = a.source.as_deref().unwrap_or_default();
        let m = importer.import(&request(source), &bars)?;
        bars.end();
        if ctx.json {
            return ctx.print_json(&summary(source, &m));
        }
        eprintln!(
            "imported {} ({}, {}{}): {} files, {} bytes",
            m.manifest.name,
            m.manifest.task,
            m.manifest.format,
            m.manifest
                .quantization
                .as_deref()
                .map(|q| format!(" {q}"))
                .unwrap_or_default(),
            m.manifest.files.len() + 1,
            m.bytes
        );
        println!("{}", m.cid);
        return Ok(());
    };
    if a.name.is_some() {
        bail!("--name names one model; in a batch each model is named after its source");
    }
    let text = std::fs::read_to_string(batch)
        .with_context(|| format!("reading the batch file {}", batch.display()))?;
    let sources: Vec<&str> = text
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(s, _)| s).trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut results = Vec::new();
    let mut failed = 0;
    for source in &sources {
        match importer.import(&request(source), &bars) {
            Ok(m) => {
                bars.end();
                if !ctx.json {
                    println!("ok      {source} {}", m.cid);
                }
                let mut s = summary(source, &m);
                s["ok"] = true.into();
                results.push(s);
            }
            Err(e) => {
                bars.end();
                failed += 1;
                if !ctx.json {
                    println!("FAILED  {source}: {e}");
                }
                results.push(serde_json::json!({
                    "source": source,
                    "ok": false,
                    "error": e.to_string(),
                }));
            }
        }
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "results": results,
            "imported": sources.len() - failed,
            "failed": failed,
        }))?;
    }
    if failed > 0 {
        bail!("{failed} of {} imports failed", sources.len());
    }
    Ok(())
}
