//! `lattice model …`: running models locally (`model run`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lattice_runtime::model::LoadOptions;
use lattice_runtime::{GenerateParams, Model, ModelSpec, Output, Request, Task};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Register a model folder (or a CID in the local store) in the on-chain ModelRegistry,
    /// or publish it as a new version of a model you own (`--version-of`).
    Deploy(crate::registry::DeployArgs),
    /// List the models registered on chain.
    List(crate::registry::ListArgs),
    /// Show one registered model and all its versions.
    Info(crate::registry::InfoArgs),
    /// Check a registered model end to end: every block's CID (fetching missing ones from
    /// --peer), the root and manifest against the chain, the files against lattice.json, and
    /// (unless --no-run) one smoke inference. Exits non-zero on any failure.
    Verify(crate::verify::VerifyArgs),
    /// Run a model locally on one input (or several `--input`s as one batch) and print the
    /// result: an embedding, labels, generated text.
    Run(RunArgs),
    /// Pay for one inference of a registered model and wait for the answer: the outputs and
    /// the executor's signed receipt (`--local`: run a free model here, without the chain).
    Inference(crate::inference::InferenceArgs),
    /// Withdraw a model's accrued revenue to its owner.
    Withdraw(crate::inference::WithdrawArgs),
    /// Import a model (a folder in Hugging Face layout, or a repository id from the Hugging
    /// Face cache or hub) into the store with a `lattice.json` manifest; prints its CID.
    Import(crate::import::ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A model folder (Hugging Face layout), a single `.gguf`/`.onnx` file, or the CID of a
    /// folder in the local store (verified block by block as it is read out).
    model: String,
    #[command(flatten)]
    what: InputOpts,
    /// cpu, cuda, cuda:N or metal (default: the best one found).
    #[arg(long)]
    device: Option<String>,
    /// candle or onnx (default: the one the weights need).
    #[arg(long)]
    backend: Option<String>,
    /// Deterministic mode: inputs run one at a time, deterministic kernels.
    #[arg(long)]
    deterministic: bool,
    /// Labels to print for classifiers.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[command(flatten)]
    generate: GenerateOpts,
}

/// What to run a model on, in `model run` and `model inference`.
#[derive(Debug, Args)]
pub(crate) struct InputOpts {
    /// Text to embed or classify, or the prompt to continue (repeat for a batch); with
    /// zero-shot models, the candidate labels for the `--file` image (repeat for each).
    #[arg(long, required_unless_present = "file")]
    input: Vec<String>,
    /// A file to run on: an image for image models (and CLIP), a WAV file for speech models,
    /// UTF-8 text otherwise. Only zero-shot models take it together with `--input`.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The task (embed, classify, generate, classify-image, zero-shot, transcribe); default: what the
    /// model is for.
    #[arg(long)]
    task: Option<String>,
}

impl InputOpts {
    /// The request document these options and `generate` describe (the file read in).
    pub(crate) fn request(&self, generate: &GenerateOpts) -> anyhow::Result<Request> {
        Ok(Request {
            inputs: self.input.clone(),
            file: self
                .file
                .as_ref()
                .map(|f| std::fs::read(f).with_context(|| format!("--file {}", f.display())))
                .transpose()?,
            task: self.task.as_deref().map(str::parse::<Task>).transpose()?,
            params: generate.params(),
            chat: generate.chat,
        })
    }
}

/// Generation settings of `model run` and `model inference`.
#[derive(Debug, Args)]
pub(crate) struct GenerateOpts {
    /// Most new tokens (generation).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature; 0 = greedy (generation).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold (generation).
    #[arg(long)]
    top_p: Option<f64>,
    /// Top-k sampling (generation).
    #[arg(long)]
    top_k_sampling: Option<usize>,
    /// Sampler seed (generation).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this string is generated (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Wrap the input in the model's chat template as one user message (generation).
    #[arg(long)]
    pub(crate) chat: bool,
}

impl GenerateOpts {
    /// As the runtime takes them.
    pub(crate) fn params(&self) -> GenerateParams {
        GenerateParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k_sampling,
            seed: self.seed,
            stop: self.stop.clone(),
        }
    }
}

pub(crate) fn run(ctx: &Ctx, cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Deploy(args) => crate::registry::deploy(ctx, args),
        ModelCommand::List(args) => crate::registry::list(ctx, args),
        ModelCommand::Info(args) => crate::registry::info(ctx, args),
        ModelCommand::Verify(args) => crate::verify::verify(ctx, args),
        ModelCommand::Run(args) => run_model(ctx, args),
        ModelCommand::Import(args) => crate::import::run(ctx, args),
        ModelCommand::Inference(args) => crate::inference::inference(ctx, args),
        ModelCommand::Withdraw(args) => crate::inference::withdraw(ctx, args),
    }
}

/// A folder or file on disk for `model`: itself when it exists, else a folder (or GGUF) CID
/// from the store laid out in `<datadir>/models/<cid>/` for this run, every block checked
/// (see [`lattice_executor::folder::model_dir`]).
pub(crate) fn model_path(ctx: &Ctx, model: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let Ok(cid) = model.parse::<cid::Cid>() else {
        bail!("{model}: no such file or folder, and not a CID");
    };
    let store = ctx.open_store()?;
    Ok(lattice_executor::folder::model_dir(
        &store,
        &cid,
        &ctx.datadir.join("models"),
    )?)
}

fn run_model(ctx: &Ctx, a: RunArgs) -> anyhow::Result<()> {
    let path = model_path(ctx, &a.model)?;
    let request = a.what.request(&a.generate)?;
    let spec = ModelSpec::detect_with(&path, request.task)?;
    let options = LoadOptions {
        backend: a.backend.as_deref().map(str::parse).transpose()?,
        device: a.device.as_deref().map(str::parse).transpose()?,
        deterministic: a.deterministic,
        top_k: a.top_k,
    };
    let spin = ctx.spinner(&format!("loading {}", path.display()));
    let t = Instant::now();
    let model = Model::load(spec, &options)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    spin.finish_and_clear();

    let inputs = request.inputs_for(model.task(), model.spec().family)?;
    let t = Instant::now();
    let results = model.run_batch(&inputs);
    let run_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut outputs = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        outputs.push(r.with_context(|| format!("input {i}"))?);
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "model": model.spec().dir,
            "weights": model.spec().weights,
            "family": model.spec().family,
            "format": model.spec().format,
            "task": model.task().to_string(),
            "backend": model.backend(),
            "device": model.device().to_string(),
            "runtime": model.describe(),
            "load_ms": load_ms,
            "run_ms": run_ms,
            "outputs": outputs,
        }));
    }
    eprintln!(
        "{} ({:?} {:?}, {}) on {}: loaded in {load_ms:.0} ms, ran in {run_ms:.1} ms",
        model.spec().weights.display(),
        model.spec().family,
        model.spec().format,
        model.task(),
        model.describe()
    );
    print_outputs(&outputs);
    Ok(())
}

/// Prints outputs for a person: an embedding's head, labels, generated text, a transcript.
pub(crate) fn print_outputs(outputs: &[Output]) {
    for out in outputs {
        match out {
            Output::Embedding { vector } => {
                let head: Vec<String> = vector.iter().take(8).map(|x| format!("{x:.6}")).collect();
                println!("embedding[{}] = [{}, …]", vector.len(), head.join(", "));
            }
            Output::Labels { labels, .. } => {
                for l in labels {
                    println!("{:>8.4}  {} ({})", l.score, l.label, l.index);
                }
            }
            Output::Generated { generation } => {
                println!("{}", generation.text);
                eprintln!(
                    "{} prompt tokens, {} new ({:?}), prompt {:.0} ms, {:.1} tokens/s",
                    generation.prompt_tokens,
                    generation.tokens.len(),
                    generation.stop_reason,
                    generation.prompt_ms,
                    generation.tokens_per_s
                );
            }
            Output::Transcript { text, tokens } => {
                println!("{text}");
                eprintln!("{} tokens", tokens.len());
            }
        }
    }
}
