//! `lattice model inference` (paid, through any node's `lattice_infer`; or `--local`),
//! `lattice model withdraw`, and `lattice receipt verify [--reexecute]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, U256, hex};
use alloy_sol_types::{SolCall, SolEvent};
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use lattice_contracts::ModelRegistry;
use lattice_evm::MODEL_REGISTRY_ADDRESS;
use lattice_executor::{SignedReceipt, content};
use lattice_runtime::{LoadOptions, Model, ModelSpec, Output, Request};
use serde_json::{Value, json};

use crate::Ctx;
use crate::model::{GenerateOpts, InputOpts, print_outputs};
use crate::registry::{RpcOpts, Signer, receipt_logs, send_tx, sign_call};
use crate::rpc_client::Rpc;

/// Arguments of `lattice model inference`.
#[derive(Debug, Args)]
pub(crate) struct InferenceArgs {
    /// The model: its id, name or root CID (with --local also a folder, a `.gguf` file, or a
    /// CID in the local store).
    model: String,
    #[command(flatten)]
    what: InputOpts,
    #[command(flatten)]
    generate: GenerateOpts,
    /// Run here, without the chain: free public models (or a folder/CID you hold). No fee, no
    /// receipt.
    #[arg(long)]
    local: bool,
    /// With --local: where to fetch model blocks the local store lacks (gateway or
    /// `kubo+http://`).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Write the signed receipt (JSON) to this file, for `lattice receipt verify`.
    #[arg(long, value_name = "FILE")]
    receipt_out: Option<PathBuf>,
    /// Give up waiting for the answer after this many seconds (the fee is refundable with
    /// the registry's `refund` after the request's deadline).
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// The paying key (hex, file, or keystore); dev account 0 on the dev chain.
    #[arg(long, env = "LATTICE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// A file whose first line is the keystore's password.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// Arguments of `lattice model withdraw`.
#[derive(Debug, Args)]
pub(crate) struct WithdrawArgs {
    /// The model whose revenue to withdraw (id, name or root CID); you must own it.
    model: String,
    /// The owner's key (hex, file, or keystore); dev account 0 on the dev chain.
    #[arg(long, env = "LATTICE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// A file whose first line is the keystore's password.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// `lattice receipt …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ReceiptCommand {
    /// Check a signed execution receipt: the EIP-712 signature is the executor's, the executor
    /// holds EXECUTOR_ROLE, the chain recorded the same output hash for the request, and with
    /// --reexecute that re-running the model on the request reproduces the output hash
    /// bit for bit. Exits non-zero on any failure.
    Verify(VerifyReceiptArgs),
}

/// Arguments of `lattice receipt verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyReceiptArgs {
    /// The receipt: a JSON file (as `model inference --receipt-out` writes it, or its `--json`
    /// output), the JSON itself, or a request id (fetched from the node).
    receipt: String,
    /// Re-run the model on the request document and compare the output hash.
    #[arg(long)]
    reexecute: bool,
    /// With --reexecute: where to fetch model blocks the local store lacks.
    #[arg(long = "peer")]
    peers: Vec<String>,
    #[command(flatten)]
    rpc: RpcOpts,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `lattice model inference`.
pub(crate) fn inference(ctx: &Ctx, args: InferenceArgs) -> anyhow::Result<()> {
    let request = args.what.request(&args.generate)?;
    if args.local {
        return local(ctx, &args, &request);
    }
    let rt = runtime()?;
    let answer = rt.block_on(async {
        let (signer, model, id) = signer_and_model(
            &args.rpc,
            args.key.as_deref(),
            args.password_file.as_deref(),
            &args.model,
        )
        .await?;
        let price = model_price(&model)?;
        let spin = ctx.spinner(&format!(
            "paying {price} wei for {}: waiting for an executor",
            model.get("name").and_then(Value::as_str).unwrap_or("?")
        ));
        let answer = pay_and_infer(&signer, id, price, &request.to_bytes(), args.timeout_s).await;
        spin.finish_and_clear();
        answer
    })?;
    if let (Some(path), Some(receipt)) = (&args.receipt_out, answer.get("receipt")) {
        write_json(path, receipt)?;
    }
    let status = answer.get("status").and_then(Value::as_str).unwrap_or("?");
    if ctx.json {
        ctx.print_json(&answer)?;
    } else {
        print_answer(&answer)?;
    }
    match status {
        "fulfilled" | "answered" => Ok(()),
        "pending" => bail!(
            "request {} still pending after {}s{}",
            answer.get("requestId").map_or_else(String::new, display),
            args.timeout_s,
            answer
                .get("reason")
                .and_then(Value::as_str)
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        other => bail!(
            "request {} {other}: {}",
            answer.get("requestId").map_or_else(String::new, display),
            answer
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ),
    }
}

fn display(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn no_namespace(e: anyhow::Error) -> anyhow::Error {
    let missing = e
        .downcast_ref::<crate::rpc_client::RpcError>()
        .is_some_and(|r| r.code == -32601);
    if missing {
        e.context("the node runs no executor, so it takes no inference requests (it was started with --no-executor, or without --executor-key off the dev chain; in `lattice testnet`, validator 0 runs it): send them to a node that does")
    } else {
        e
    }
}

/// The model's price per inference (wei) from its `lattice_getModel` view.
pub(crate) fn model_price(model: &Value) -> anyhow::Result<U256> {
    model
        .get("price")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .context("lattice_getModel: no price")
}

/// One paid request: signs `requestInference(id, sha256(document), price)` with value `price`
/// and hands it with the document to the node's `lattice_infer`, which submits it and waits up
/// to `timeout_s` for an executor to settle it; the node's answer.
pub(crate) async fn pay_and_infer(
    signer: &Signer,
    id: B256,
    price: U256,
    document: &[u8],
    timeout_s: u64,
) -> anyhow::Result<Value> {
    let call = ModelRegistry::requestInferenceCall {
        modelId: id,
        inputHash: content::sha256(document),
        maxFee: price,
    };
    let raw = sign_call(
        signer,
        "requestInference",
        MODEL_REGISTRY_ADDRESS,
        call.abi_encode(),
        price,
    )
    .await?;
    signer
        .rpc
        .call(
            "lattice_infer",
            json!([{
                "model": id,
                "document": BASE64.encode(document),
                "tx": hex::encode_prefixed(raw),
                "timeoutSecs": timeout_s,
            }]),
        )
        .await
        .map_err(no_namespace)
}

/// The node and key, and the model `what` names (its `lattice_getModel` view and id).
pub(crate) async fn signer_and_model(
    rpc: &RpcOpts,
    key: Option<&str>,
    password_file: Option<&Path>,
    what: &str,
) -> anyhow::Result<(Signer, Value, B256)> {
    let signer = Signer::connect(&rpc.rpc, key, password_file).await?;
    let model = get_model(&signer.rpc, what).await?;
    let id: B256 = model
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .context("lattice_getModel: no id")?;
    Ok((signer, model, id))
}

async fn get_model(rpc: &Rpc, what: &str) -> anyhow::Result<Value> {
    rpc.call("lattice_getModel", json!([what]))
        .await
        .map_err(no_namespace)
}

fn write_json(path: &Path, v: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn print_answer(answer: &Value) -> anyhow::Result<()> {
    if let Some(outputs) = answer.get("outputs") {
        let outputs: Vec<Output> = serde_json::from_value(outputs.clone())?;
        print_outputs(&outputs);
    }
    let field = |k: &str| answer.get(k).map_or_else(|| "-".to_string(), display);
    eprintln!(
        "request {} {} (fee {} wei){}",
        field("requestId"),
        field("status"),
        field("fee"),
        answer
            .get("reason")
            .and_then(Value::as_str)
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    if let Some(r) = answer.get("receipt") {
        let signed: SignedReceipt = serde_json::from_value(r.clone())?;
        eprintln!(
            "receipt: executor {}, output hash {}, model {}, block {}, signature {}",
            signed.receipt.executor,
            signed.receipt.outputHash,
            lattice_executor::rpc::cid_text(&signed.receipt.modelCid),
            signed.receipt.blockNumber,
            if signed.check_signature().is_ok() {
                "valid"
            } else {
                "INVALID"
            }
        );
    }
    Ok(())
}

/// `--local`: the model here (a folder, a CID in the store, or a free model from the chain,
/// fetched from --peer if missing), run deterministically as an executor would.
fn local(ctx: &Ctx, args: &InferenceArgs, request: &Request) -> anyhow::Result<()> {
    let dir = if Path::new(&args.model).exists() || args.model.parse::<cid::Cid>().is_ok() {
        ensure_local(ctx, &args.model, &args.peers)?
    } else {
        let rt = runtime()?;
        let model = rt.block_on(async {
            let rpc = Rpc::new(&args.rpc.rpc, 1)?;
            get_model(&rpc, &args.model).await
        })?;
        if model.get("price").and_then(Value::as_str) != Some("0")
            || model.get("private") == Some(&Value::Bool(true))
        {
            bail!(
                "{} is not a free public model: run it through the chain (drop --local)",
                args.model
            );
        }
        let root = model
            .get("latestRootCid")
            .and_then(Value::as_str)
            .context("lattice_getModel: no root CID")?
            .to_string();
        ensure_local(ctx, &root, &args.peers)?
    };
    let (outputs, doc, runtime) = run_deterministic(&dir, request)?;
    let hash = content::sha256(&doc);
    if ctx.json {
        return ctx.print_json(&json!({
            "model": dir,
            "outputs": outputs,
            "outputHash": hash,
            "runtime": runtime,
        }));
    }
    print_outputs(&outputs);
    eprintln!("output hash {hash} ({runtime}; local run, no fee, no receipt)");
    Ok(())
}

/// A model folder for `model` (a path, or a CID fetched from `peers` into the local store
/// when missing), every block checked.
fn ensure_local(ctx: &Ctx, model: &str, peers: &[String]) -> anyhow::Result<PathBuf> {
    if Path::new(model).exists() {
        return Ok(PathBuf::from(model));
    }
    let cid: cid::Cid = model
        .parse()
        .with_context(|| format!("{model}: not a CID"))?;
    let store = Arc::new(ctx.open_store()?);
    let complete = lattice_executor::folder::model_dir(&store, &cid, &ctx.datadir.join("models"));
    match complete {
        Ok(dir) => Ok(dir),
        Err(local) if !peers.is_empty() => {
            let sources: Vec<lattice_fetch::Source> = peers
                .iter()
                .map(|p| p.parse().with_context(|| format!("--peer {p}")))
                .collect::<anyhow::Result<_>>()?;
            let spin = ctx.spinner(&format!("fetching {cid}"));
            let fetched = runtime()?.block_on(lattice_fetch::fetch(
                Arc::clone(&store),
                cid,
                &sources,
                &lattice_fetch::FetchOptions::default(),
                &|_| {},
            ));
            spin.finish_and_clear();
            fetched.with_context(|| format!("fetching {cid} (locally: {local})"))?;
            Ok(lattice_executor::folder::model_dir(
                &store,
                &cid,
                &ctx.datadir.join("models"),
            )?)
        }
        Err(local) => Err(anyhow::Error::new(local).context("pass --peer to fetch it")),
    }
}

/// Runs `request` on the model in `dir` as executors do (deterministic mode, one input at a
/// time): the outputs, their canonical document, and the runtime's name.
pub(crate) fn run_deterministic(
    dir: &Path,
    request: &Request,
) -> anyhow::Result<(Vec<Output>, Vec<u8>, String)> {
    let options = LoadOptions {
        deterministic: true,
        ..LoadOptions::default()
    };
    let model = Model::load(ModelSpec::detect_with(dir, request.task)?, &options)?;
    let (outputs, doc) = run_loaded(&model, request)?;
    Ok((
        outputs,
        doc,
        lattice_executor::runtime_name(&model.describe()),
    ))
}

/// Runs `request` on a loaded model one input at a time: the outputs and their canonical
/// document.
pub(crate) fn run_loaded(
    model: &Model,
    request: &Request,
) -> anyhow::Result<(Vec<Output>, Vec<u8>)> {
    let inputs = request.inputs_for(model.task(), model.spec().family)?;
    let mut outputs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        outputs.push(model.run(input).with_context(|| format!("input {i}"))?);
    }
    let doc = lattice_runtime::outputs_document(&outputs);
    Ok((outputs, doc))
}

/// `lattice model withdraw`.
pub(crate) fn withdraw(ctx: &Ctx, args: WithdrawArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let out = rt.block_on(async {
        let (signer, model, id) = signer_and_model(
            &args.rpc,
            args.key.as_deref(),
            args.password_file.as_deref(),
            &args.model,
        )
        .await?;
        let call = ModelRegistry::withdrawCall { modelId: id };
        let (hash, receipt, block) = send_tx(
            ctx,
            &signer,
            "withdraw",
            MODEL_REGISTRY_ADDRESS,
            call.abi_encode(),
            U256::ZERO,
            Duration::from_secs(60),
        )
        .await?;
        let amount = receipt_logs(&receipt)
            .into_iter()
            .find_map(|(topics, data)| ModelRegistry::Withdrawn::decode_raw_log(topics, &data).ok())
            .map(|ev| ev.amount);
        let amount = amount.context("withdraw succeeded but emitted no Withdrawn event")?;
        Ok::<_, anyhow::Error>(json!({
            "model_id": id,
            "name": model.get("name"),
            "to": signer.address()?,
            "amount_wei": amount.to_string(),
            "tx": hash,
            "block": block,
        }))
    })?;
    if ctx.json {
        return ctx.print_json(&out);
    }
    println!(
        "withdrew {} wei from {} to {} (tx {}, block {})",
        out["amount_wei"].as_str().unwrap_or("?"),
        display(&out["name"]),
        display(&out["to"]),
        display(&out["tx"]),
        display(&out["block"])
    );
    Ok(())
}

/// `lattice receipt …`.
pub(crate) fn receipt(ctx: &Ctx, cmd: ReceiptCommand) -> anyhow::Result<()> {
    match cmd {
        ReceiptCommand::Verify(args) => verify_receipt(ctx, args),
    }
}

fn verify_receipt(ctx: &Ctx, args: VerifyReceiptArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let rpc = Rpc::new(&args.rpc.rpc, 1)?;
    let text = args.receipt.trim();
    let value: Value = if let Ok(id) = text.parse::<u64>() {
        rt.block_on(rpc.call("lattice_getReceipt", json!([id])))
            .map_err(no_namespace)
            .with_context(|| format!("fetching the receipt of request {id}"))?
    } else if text.starts_with('{') {
        serde_json::from_str(text).context("the receipt is not JSON")?
    } else {
        let bytes = std::fs::read(text).with_context(|| format!("reading {text}"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{text}: not JSON"))?
    };
    // A whole answer (`--json` of `model inference`, `lattice_getReceipt`) or the receipt.
    let receipt_value = match value.get("receipt") {
        Some(r) if r.get("signature").is_some() => r.clone(),
        Some(Value::Null) | None if value.get("status").is_some() => bail!(
            "request {} has no receipt: it is {}",
            value.get("requestId").map_or_else(String::new, display),
            value.get("status").map_or_else(String::new, display)
        ),
        _ => value.clone(),
    };
    let signed: SignedReceipt =
        serde_json::from_value(receipt_value).context("not a signed receipt")?;
    let mut problems = Vec::new();
    let mut report = json!({
        "requestId": signed.receipt.requestId.to_string(),
        "executor": signed.receipt.executor,
        "modelCid": lattice_executor::rpc::cid_text(&signed.receipt.modelCid),
        "outputHash": signed.receipt.outputHash,
    });
    match signed.check_signature() {
        Ok(()) => report["signature"] = json!("valid"),
        Err(e) => {
            report["signature"] = json!("invalid");
            problems.push(e.to_string());
        }
    }
    match rt.block_on(rpc.call("lattice_verifyReceipt", json!([signed]))) {
        Ok(v) => {
            for p in v
                .get("problems")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let p = display(p);
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
            report["chain"] = v;
        }
        Err(e) => problems.push(format!("on-chain checks: {:#}", no_namespace(e))),
    }
    if args.reexecute {
        match reexecute(ctx, &rt, &rpc, &signed, &args.peers) {
            Ok((hash, runtime)) => {
                report["reexecuted"] = json!({
                    "outputHash": hash,
                    "runtime": runtime,
                    "matches": hash == signed.receipt.outputHash,
                });
                if hash != signed.receipt.outputHash {
                    problems.push(format!(
                        "re-execution gave output hash {hash}, the receipt says {} (executor's runtime: {}; here: {runtime})",
                        signed.receipt.outputHash, signed.receipt.runtime
                    ));
                }
            }
            Err(e) => problems.push(format!("re-execution failed: {e:#}")),
        }
    }
    report["valid"] = json!(problems.is_empty());
    report["problems"] = json!(problems);
    if ctx.json {
        ctx.print_json(&report)?;
    } else {
        println!(
            "receipt of request {} by {}: signature {}",
            signed.receipt.requestId,
            signed.receipt.executor,
            report["signature"].as_str().unwrap_or("?")
        );
        if let Some(r) = report.get("reexecuted") {
            println!(
                "re-executed: output hash {} {}",
                display(&r["outputHash"]),
                if r["matches"] == json!(true) {
                    "matches bit for bit"
                } else {
                    "DIFFERS"
                }
            );
        }
        for p in &problems {
            println!("problem: {p}");
        }
    }
    if !problems.is_empty() {
        bail!(
            "the receipt does not check out ({} problem(s))",
            problems.len()
        );
    }
    if !ctx.json {
        println!("valid");
    }
    Ok(())
}

/// Re-runs the receipt's request: the document (local store, else the node's
/// `lattice_getRequest`, checked against the input hash), the model version it names (local
/// store, else --peer); returns the output hash and the runtime used.
fn reexecute(
    ctx: &Ctx,
    rt: &tokio::runtime::Runtime,
    rpc: &Rpc,
    signed: &SignedReceipt,
    peers: &[String],
) -> anyhow::Result<(B256, String)> {
    let input_hash = signed.receipt.inputHash;
    let v = rt
        .block_on(rpc.call("lattice_getRequest", json!([input_hash])))
        .map_err(no_namespace)
        .context("fetching the request document")?;
    let doc = BASE64
        .decode(
            v.get("document")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
        .context("the request document is not base64")?;
    if content::sha256(&doc) != input_hash {
        bail!("the node sent a request document that does not hash to {input_hash}");
    }
    let request = Request::from_bytes(&doc)?;
    let root = cid::Cid::try_from(signed.receipt.modelCid.as_ref())
        .context("the receipt's model CID does not parse")?;
    let dir = ensure_local(ctx, &root.to_string(), peers)?;
    let (_, out, runtime) = run_deterministic(&dir, &request)?;
    Ok((content::sha256(&out), runtime))
}
