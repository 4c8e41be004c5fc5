//! `lattice bench runtime`: MiniLM-L6 sentence embeddings at batch 1 and 32 on Lattice's
//! candle path (safetensors) and ONNX path (the int8 graph, and an fp32 export when
//! present), and SmolLM2 decode tokens/s. Prints one JSON line per configuration in the
//! shape `bench/runtime/peers.py` prints for ONNX Runtime (Python) and PyTorch, which
//! `bench/runtime/run.sh` runs in the same session and turns into ratios.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lattice_runtime::{GenerateParams, Input, LoadOptions, Model, ModelSpec, Output};

use crate::Ctx;

#[derive(Debug, Args)]
pub(crate) struct RuntimeArgs {
    /// The test-model cache (`tests/models/fetch.sh` prints it).
    #[arg(long, env = "LATTICE_TEST_MODELS")]
    models: Option<PathBuf>,
    /// One sentence per line; batch 1 cycles through them, batch 32 takes the first 32.
    #[arg(long, default_value = "bench/runtime/sentences.txt")]
    sentences: PathBuf,
    /// Timed runs at batch 1.
    #[arg(long, default_value_t = 200)]
    iters_b1: usize,
    /// Timed runs at batch 32.
    #[arg(long, default_value_t = 30)]
    iters_b32: usize,
    /// New tokens per SmolLM2 generation (0 skips it).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Run only these parts (comma-separated: candle, onnx, llm).
    #[arg(long, value_delimiter = ',', default_value = "candle,onnx,llm")]
    only: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(runtime: &str, model: &str, batch: usize, mut times: Vec<f64>) -> serde_json::Value {
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    serde_json::json!({
        "runtime": runtime,
        "model": model,
        "batch": batch,
        "threads": lattice_runtime::device::cpu_threads(),
        "p50_ms": percentile(&times, 0.5),
        "p90_ms": percentile(&times, 0.9),
        "mean_ms": mean,
        "iters": times.len(),
    })
}

fn embed_bench(
    model: &Model,
    runtime: &str,
    name: &str,
    sentences: &[String],
    a: &RuntimeArgs,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let one = |s: &str| {
        vec![Input::Text {
            text: s.to_string(),
        }]
    };
    let batch: Vec<Input> = sentences
        .iter()
        .take(32)
        .map(|s| Input::Text { text: s.clone() })
        .collect();
    let run = |inputs: &[Input]| -> anyhow::Result<f64> {
        let t = Instant::now();
        for r in model.run_batch(inputs) {
            match r? {
                Output::Embedding { .. } => {}
                other => bail!("expected an embedding, got {other:?}"),
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for s in sentences.iter().take(10) {
        run(&one(s))?;
    }
    let mut b1 = Vec::with_capacity(a.iters_b1);
    for i in 0..a.iters_b1 {
        b1.push(run(&one(&sentences[i % sentences.len()]))?);
    }
    for _ in 0..3 {
        run(&batch)?;
    }
    let mut b32 = Vec::with_capacity(a.iters_b32);
    for _ in 0..a.iters_b32 {
        b32.push(run(&batch)?);
    }
    Ok(vec![
        line(runtime, name, 1, b1),
        line(runtime, name, batch.len(), b32),
    ])
}

fn load(path: &Path) -> anyhow::Result<Model> {
    let spec = ModelSpec::detect(path)?;
    Ok(Model::load(spec, &LoadOptions::default())?)
}

pub(crate) fn runtime(ctx: &Ctx, a: RuntimeArgs) -> anyhow::Result<()> {
    let models = match &a.models {
        Some(m) => m.clone(),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/lattice/test-models"),
    };
    if !models.join("minilm").is_dir() {
        bail!(
            "{}: no test models; run tests/models/fetch.sh (or pass --models)",
            models.display()
        );
    }
    let text = std::fs::read_to_string(&a.sentences)
        .with_context(|| format!("{} (run from the repository root)", a.sentences.display()))?;
    let sentences: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if sentences.len() < 32 {
        bail!(
            "{}: need at least 32 sentences, found {}",
            a.sentences.display(),
            sentences.len()
        );
    }
    let part = |p: &str| a.only.iter().any(|o| o == p);
    let mut lines = Vec::new();
    if part("candle") {
        let candle = load(&models.join("minilm"))?;
        eprintln!("minilm: {}", candle.describe());
        lines.extend(embed_bench(
            &candle,
            "lattice-candle",
            "minilm-fp32",
            &sentences,
            &a,
        )?);
    }
    if part("onnx") {
        let int8 = load(&models.join("minilm-int8"))?;
        eprintln!("minilm-int8: {}", int8.describe());
        lines.extend(embed_bench(
            &int8,
            "lattice-onnx",
            "minilm-int8",
            &sentences,
            &a,
        )?);
        drop(int8);
        let fp32_onnx = models.join("minilm-onnx");
        if fp32_onnx.join("model.onnx").is_file() {
            let m = load(&fp32_onnx)?;
            lines.extend(embed_bench(
                &m,
                "lattice-onnx",
                "minilm-fp32",
                &sentences,
                &a,
            )?);
        } else {
            eprintln!(
                "{}: no fp32 ONNX export (bench/runtime/peers.py makes one); skipped",
                fp32_onnx.display()
            );
        }
    }
    if a.gen_tokens > 0 && part("llm") {
        let llm = load(&models.join("smollm2"))?;
        let params = GenerateParams {
            max_tokens: a.gen_tokens,
            ..Default::default()
        };
        let prompt = Input::Prompt {
            text: "Write a short story about a robot who learns to paint.".into(),
            params,
            chat: true,
        };
        llm.run(&prompt)?;
        let mut rates = Vec::new();
        let mut prompt_ms = Vec::new();
        for _ in 0..3 {
            if let Output::Generated { generation } = llm.run(&prompt)? {
                rates.push(generation.tokens_per_s);
                prompt_ms.push(generation.prompt_ms);
            }
        }
        rates.sort_by(f64::total_cmp);
        prompt_ms.sort_by(f64::total_cmp);
        lines.push(serde_json::json!({
            "runtime": "lattice-candle",
            "model": "smollm2-135m-q4_1",
            "batch": 1,
            "threads": lattice_runtime::device::cpu_threads(),
            "tokens_per_s": percentile(&rates, 0.5),
            "prompt_ms": percentile(&prompt_ms, 0.5),
            "new_tokens": a.gen_tokens,
        }));
    }
    for l in &lines {
        if ctx.json {
            println!("{l}");
        } else {
            println!(
                "{:<16} {:<20} b{:<3} p50 {:>9.3} ms  mean {:>9.3} ms{}",
                l["runtime"].as_str().unwrap_or(""),
                l["model"].as_str().unwrap_or(""),
                l["batch"],
                l["p50_ms"].as_f64().unwrap_or(f64::NAN),
                l["mean_ms"].as_f64().unwrap_or(f64::NAN),
                l["tokens_per_s"]
                    .as_f64()
                    .map(|t| format!("  {t:.1} tokens/s"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
