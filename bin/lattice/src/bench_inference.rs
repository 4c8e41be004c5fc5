//! `lattice bench inference`: latency of a paid inference through a node (sign
//! `requestInference`, `lattice_infer`, wait for the executor's fulfilment) beside the same
//! model run directly in this process as executors run it (deterministic mode), as a ratio.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lattice_executor::content;
use lattice_runtime::{LoadOptions, Model, ModelSpec, Request};
use serde_json::{Value, json};

use crate::Ctx;
use crate::inference::{model_price, pay_and_infer, run_loaded, signer_and_model};
use crate::registry::RpcOpts;

/// Arguments of `lattice bench inference`.
#[derive(Debug, Args)]
pub(crate) struct InferenceBenchArgs {
    /// The registered model (id, name or root CID).
    #[arg(long)]
    model: String,
    /// The same model's folder here, for the direct-run peer.
    #[arg(long)]
    folder: PathBuf,
    /// The input text.
    #[arg(long, default_value = "Lattice runs models on a blockchain.")]
    input: String,
    /// Requests of each kind (sequential); the first of each is a warm-up (the node loads the
    /// model then), not counted.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// The paying key; dev account 0 on the dev chain.
    #[arg(long, env = "LATTICE_KEY", hide_env_values = true)]
    key: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `lattice bench inference`.
pub(crate) fn inference(ctx: &Ctx, a: InferenceBenchArgs) -> anyhow::Result<()> {
    let n = a.requests.max(2);
    let request = Request {
        inputs: vec![a.input.clone()],
        ..Request::default()
    };
    // The peer: the same request run directly on the model loaded once, as an executor runs
    // it once the model is in its cache.
    let options = LoadOptions {
        deterministic: true,
        ..LoadOptions::default()
    };
    let model = Model::load(ModelSpec::detect_with(&a.folder, None)?, &options)?;
    let mut direct = Vec::with_capacity(n);
    let mut direct_hash = None;
    for i in 0..n {
        let t = Instant::now();
        let (_, doc) = run_loaded(&model, &request)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        direct_hash = Some(content::sha256(&doc));
        if i > 0 {
            direct.push(ms);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (paid, paid_hash) = rt.block_on(async {
        let (signer, model, id) =
            signer_and_model(&a.rpc, a.key.as_deref(), None, &a.model).await?;
        let price = model_price(&model)?;
        let document = request.to_bytes();
        let mut times = Vec::with_capacity(n);
        let mut hash = None;
        for i in 0..n {
            let t = Instant::now();
            let answer = pay_and_infer(&signer, id, price, &document, 120).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if answer.get("status").and_then(Value::as_str) != Some("fulfilled") {
                bail!("request {i} was not fulfilled: {answer}");
            }
            hash = answer
                .get("outputHash")
                .and_then(Value::as_str)
                .and_then(|h| h.parse().ok());
            if i > 0 {
                times.push(ms);
            }
        }
        Ok::<_, anyhow::Error>((times, hash))
    })?;
    let mut paid = paid;
    direct.sort_by(f64::total_cmp);
    paid.sort_by(f64::total_cmp);
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&paid, 0.5), percentile(&paid, 0.99));
    let out = json!({
        "model": a.model,
        "requests": n - 1,
        "direct_p50_ms": d50,
        "direct_p99_ms": d99,
        "paid_p50_ms": p50,
        "paid_p99_ms": p99,
        "ratio_p50": p50 / d50,
        "same_output_hash": direct_hash.is_some() && direct_hash == paid_hash,
    });
    if ctx.json {
        return ctx.print_json(&out);
    }
    println!(
        "direct run (deterministic, model loaded once, this process): p50 {d50:.1} ms, p99 {d99:.1} ms\n\
         paid through the node (sign, submit, execute, fulfil, answer): p50 {p50:.1} ms, p99 {p99:.1} ms\n\
         ratio paid/direct p50: {:.2}; same output hash: {}",
        p50 / d50,
        out["same_output_hash"]
    );
    Ok(())
}
