//! `lattice model deploy`, `model list` and `model info`: the on-chain ModelRegistry, reached
//! through any node's Ethereum JSON-RPC (`--rpc`, env `LATTICE_RPC`).
//!
//! `deploy` imports a folder into the local store (CIDv1, raw leaves, pinned) or takes a CID
//! already there, reads its `lattice.json` manifest (or detects the model), and sends a signed
//! EIP-1559 `registerModel` (or `addVersion` with `--version-of`) transaction, waiting for the
//! receipt. Keys come from `--key` / `LATTICE_KEY` (hex, or a file holding hex); without one,
//! dev account 0 is used, but only against the dev chain id.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex};
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use anyhow::{Context, bail};
use clap::Args;
use lattice_contracts::{ModelRegistry, model_id};
use lattice_evm::{DEV_ACCOUNTS, MODEL_REGISTRY_ADDRESS};
use serde_json::{Value, json};

use crate::Ctx;
use crate::rpc_client::{Rpc, RpcError, address_of, hex_bytes, quantity, sign};

/// Wei per ether.
const WEI_PER_ETH: u64 = 1_000_000_000_000_000_000;
/// Models per `listModels` page when searching by name or CID.
const SCAN_PAGE: u64 = 100;
/// The priority fee used when the node does not suggest one: 1 gwei.
const DEFAULT_TIP: u128 = 1_000_000_000;

/// Where the node is.
#[derive(Debug, Args)]
pub(crate) struct RpcOpts {
    /// The node's JSON-RPC HTTP endpoint.
    #[arg(long, env = "LATTICE_RPC", default_value = "http://127.0.0.1:8545")]
    pub(crate) rpc: String,
}

/// Arguments of `lattice model deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// A model folder (imported into the local store first) or the CID of one already there.
    model: String,
    /// Price per inference in ETH, as a decimal (e.g. 0.001; 0 = free).
    #[arg(long)]
    price: String,
    /// Register the model as private (inference only for the owner and granted accounts).
    #[arg(long)]
    private: bool,
    /// The model's name (default: `lattice.json`'s name, else the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Publish this folder as a new version of an existing model you own (its id, name or
    /// first root CID) instead of registering a new model.
    #[arg(long, value_name = "MODEL")]
    version_of: Option<String>,
    /// The signing key: 0x-prefixed hex, or a file holding it (hex, or an Ethereum JSON
    /// keystore, scrypt or pbkdf2, unlocked with --password-file or LATTICE_KEY_PASSWORD).
    /// Without one, dev account 0 signs, and only on the dev chain.
    #[arg(long, env = "LATTICE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// A file whose first line is the keystore's password.
    #[arg(long, value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// Give up waiting for the receipt after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// Arguments of `lattice model list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only models registered by this address.
    #[arg(long)]
    owner: Option<Address>,
    /// Skip this many models (registration order).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Show at most this many models.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// Arguments of `lattice model info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The model: its id (0x + 64 hex digits), a root CID of it, or its name.
    model: String,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// `lattice model deploy`.
pub(crate) fn deploy(ctx: &Ctx, args: DeployArgs) -> anyhow::Result<()> {
    let price = parse_eth(&args.price).context("--price")?;
    let rt = runtime()?;
    // The node and the key first: a folder may take long to import.
    let signer = rt.block_on(Signer::connect(
        &args.rpc.rpc,
        args.key.as_deref(),
        args.password_file.as_deref(),
    ))?;
    let model = prepare(ctx, &args)?;
    let out = rt.block_on(send_deploy(ctx, &args, &signer, model, price))?;
    if ctx.json {
        return ctx.print_json(&out);
    }
    let field = |k: &str| out.get(k).map_or_else(String::new, display_value);
    println!(
        "{} {} ({}) version {} in block {}",
        if field("action") == "registerModel" {
            "registered"
        } else {
            "added"
        },
        field("name"),
        field("root_cid"),
        field("version"),
        field("block")
    );
    println!("model id  {}", field("model_id"));
    println!("tx        {}", field("tx"));
    println!("owner     {}", field("owner"));
    println!("price     {} ETH", field("price_eth"));
    Ok(())
}

/// `lattice model list`.
pub(crate) fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let models = rt.block_on(async {
        let rpc = connect(&args.rpc.rpc).await?;
        match args.owner {
            Some(owner) => {
                let data = ModelRegistry::modelsByOwnerCall {
                    owner,
                    offset: U256::from(args.offset),
                    limit: U256::from(args.limit),
                }
                .abi_encode();
                let ids = ModelRegistry::modelsByOwnerCall::abi_decode_returns(
                    &registry_call(&rpc, &data).await?,
                )
                .context("decode modelsByOwner")?;
                let mut views = Vec::with_capacity(ids.len());
                for id in ids {
                    views.push(get_model(&rpc, id).await?.context("model vanished")?);
                }
                Ok::<_, anyhow::Error>(views)
            }
            None => list_page(&rpc, args.offset, args.limit).await,
        }
    })?;
    if ctx.json {
        let rows: Vec<Value> = models.iter().map(view_json).collect();
        return ctx.print_json(&rows);
    }
    if models.is_empty() {
        println!("no models");
        return Ok(());
    }
    println!(
        "{:<66}  {:<24}  {:<42}  {:>12}  {:>8}  flags",
        "ID", "NAME", "OWNER", "PRICE (ETH)", "VERSIONS"
    );
    for m in &models {
        println!(
            "{:<66}  {:<24}  {:<42}  {:>12}  {:>8}  {}",
            m.id,
            m.name,
            m.owner,
            format_eth(m.price),
            m.latest.saturating_add(U256::from(1)),
            flags(m)
        );
    }
    Ok(())
}

/// `lattice model info`.
pub(crate) fn info(ctx: &Ctx, args: InfoArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let (view, versions, available) = rt.block_on(async {
        let rpc = connect(&args.rpc.rpc).await?;
        let view = find_model(&rpc, &args.model).await?;
        // Whether the node holds the latest version (only nodes with the lattice_* namespace
        // say).
        let available = rpc
            .call("lattice_getModel", json!([view.id]))
            .await
            .ok()
            .and_then(|m| m.get("availableHere").and_then(Value::as_bool));
        let count = view.latest.saturating_add(U256::from(1));
        let mut versions = Vec::new();
        let mut v = U256::ZERO;
        while v < count {
            let data = ModelRegistry::getVersionCall {
                modelId: view.id,
                version: v,
            }
            .abi_encode();
            let ver = ModelRegistry::getVersionCall::abi_decode_returns(
                &registry_call(&rpc, &data).await?,
            )
            .context("decode getVersion")?;
            let pins = pin_count(&rpc, &ver.rootCid).await?;
            versions.push(json!({
                "version": v.to_string(),
                "root_cid": cid_text(&ver.rootCid),
                "manifest_cid": cid_text(&ver.manifestCid),
                "added_at": ver.addedAt,
                "pin_count": pins,
            }));
            v += U256::from(1);
        }
        Ok::<_, anyhow::Error>((view, versions, available))
    })?;
    let mut out = view_json(&view);
    let latest_pins = versions
        .last()
        .and_then(|v| v.get("pin_count"))
        .cloned()
        .unwrap_or(Value::Null);
    out["pin_count"] = latest_pins.clone();
    out["available_on_node"] = json!(available);
    out["versions"] = Value::Array(versions.clone());
    if ctx.json {
        return ctx.print_json(&out);
    }
    println!("id            {}", view.id);
    println!("name          {}", view.name);
    println!("owner         {}", view.owner);
    println!("format        {}", view.format);
    println!("architecture  {}", view.architecture);
    println!("price         {} ETH", format_eth(view.price));
    println!(
        "revenue       {} ETH (not withdrawn)",
        format_eth(view.revenue)
    );
    println!("created at    {}", format_time(view.createdAt));
    println!("status        {}", flags(&view));
    println!("root CID      {}", cid_text(&view.rootCid));
    println!(
        "pinned by     {} node(s) (announced in IPFSIncentives){}",
        display_value(&latest_pins),
        match available {
            Some(true) => "; the node at --rpc holds it",
            Some(false) => "; the node at --rpc does not hold it yet",
            None => "",
        }
    );
    println!("versions      {}", versions.len());
    for v in &versions {
        let s = |k: &str| v.get(k).map_or_else(String::new, display_value);
        let manifest = s("manifest_cid");
        println!(
            "  {:>3}  {}  pins {}  added {}{}",
            s("version"),
            s("root_cid"),
            s("pin_count"),
            v.get("added_at")
                .and_then(Value::as_u64)
                .map_or_else(String::new, format_time),
            if manifest.is_empty() {
                String::new()
            } else {
                format!("  manifest {manifest}")
            }
        );
    }
    Ok(())
}

// ----------------------------------------------------------------------------- deploy

/// Who sends `deploy`'s transaction, and where.
#[derive(Debug)]
pub(crate) struct Signer {
    pub(crate) rpc: Rpc,
    pub(crate) chain_id: u64,
    pub(crate) key: B256,
}

impl Signer {
    /// The node at `url` and the key from `key`/`password_file` (see [`signing_key`]).
    pub(crate) async fn connect(
        url: &str,
        key: Option<&str>,
        password_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let rpc = connect(url).await?;
        let chain_id = chain_id(&rpc).await?;
        let key = signing_key(key, password_file, chain_id, rpc.url())?;
        Ok(Self { rpc, chain_id, key })
    }

    /// The signing account.
    pub(crate) fn address(&self) -> anyhow::Result<Address> {
        address_of(self.key)
    }
}

/// What `deploy` sends: the CIDs and the metadata.
#[derive(Debug)]
struct Prepared {
    root: cid::Cid,
    manifest: Option<cid::Cid>,
    name: String,
    format: String,
    architecture: String,
}

/// Imports or finds the model in the local store and reads what to register.
fn prepare(ctx: &Ctx, args: &DeployArgs) -> anyhow::Result<Prepared> {
    let path = Path::new(&args.model);
    let store = ctx.open_store()?;
    let (root, detected, default_name) = if path.exists() {
        if !path.is_dir() {
            bail!(
                "{}: deploy takes a model folder or a CID, not a file",
                path.display()
            );
        }
        // Without a manifest, the runtime must recognise the folder before it is imported.
        let detected = if path.join("lattice.json").is_file() {
            None
        } else {
            Some(detect(path)?)
        };
        let opts = lattice_store::ImportOptions::cid_v1();
        let spin = ctx.spinner(&format!("importing {}", path.display()));
        let added = store.add_paths(&[path.to_path_buf()], &opts, &|_| {});
        spin.finish_and_clear();
        let added =
            added.with_context(|| format!("importing {} into the store", path.display()))?;
        let root = added
            .last()
            .with_context(|| format!("{}: nothing was imported", path.display()))?
            .cid;
        let name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| root.to_string());
        (root, detected, name)
    } else {
        let Ok(root) = args.model.parse::<cid::Cid>() else {
            bail!("{}: no such folder, and not a CID", args.model);
        };
        if !store.has(&root)? {
            bail!(
                "{root} is not in the local store ({}); add it first (lattice ipfs add -r --cid-version 1 FOLDER)",
                ctx.store_dir().display()
            );
        }
        (root, None, root.to_string())
    };
    // The manifest, when the folder has one.
    let manifest_cid = if store.node(&root)?.is_dir() {
        store
            .ls(&root)?
            .into_iter()
            .find(|e| e.name == "lattice.json" && !e.is_dir)
            .map(|e| e.cid)
    } else {
        None
    };
    if let Some(mcid) = manifest_cid {
        let mut buf = Vec::new();
        store
            .cat(&mcid, 0, Some(1 << 20), &mut buf)
            .with_context(|| format!("reading lattice.json ({mcid})"))?;
        let m: Value = serde_json::from_slice(&buf)
            .with_context(|| format!("lattice.json ({mcid}) is not JSON"))?;
        if let Some(schema) = m.get("schema").and_then(Value::as_str)
            && schema != "lattice.model/1"
        {
            bail!("lattice.json ({mcid}): unknown schema {schema:?}");
        }
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        return Ok(Prepared {
            root,
            manifest: Some(mcid),
            name: args.name.clone().or(text("name")).unwrap_or(default_name),
            format: text("format").unwrap_or_default(),
            architecture: text("architecture")
                .or(text("model_type"))
                .unwrap_or_default(),
        });
    }
    drop(store);
    let (format, architecture) = match detected {
        Some(d) => d,
        None => detect(&crate::model::model_path(ctx, &root.to_string())?)?,
    };
    Ok(Prepared {
        root,
        manifest: None,
        name: args.name.clone().unwrap_or(default_name),
        format,
        architecture,
    })
}

/// Format and architecture of a model folder without a manifest, as `lattice.json` would
/// name them: the weights format and `architectures[0]` of `config.json` (else its
/// `model_type`, else the family the runtime detected).
fn detect(folder: &Path) -> anyhow::Result<(String, String)> {
    let spec = lattice_runtime::ModelSpec::detect(folder)
        .with_context(|| format!("{}: not a model the runtime can run", folder.display()))?;
    let name_of = |v: serde_json::Result<Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let format = name_of(serde_json::to_value(spec.format));
    let architecture = spec
        .config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .or_else(|| spec.config.get("model_type").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| name_of(serde_json::to_value(spec.family)));
    Ok((format, architecture))
}

async fn send_deploy(
    ctx: &Ctx,
    args: &DeployArgs,
    signer: &Signer,
    model: Prepared,
    price: U256,
) -> anyhow::Result<Value> {
    let (rpc, key) = (&signer.rpc, signer.key);
    let from = address_of(key)?;
    let root_bytes = Bytes::from(model.root.to_bytes());
    let manifest_bytes = Bytes::from(model.manifest.map(|c| c.to_bytes()).unwrap_or_default());
    let id = model_id(&root_bytes);
    let (action, data) = match &args.version_of {
        None => {
            if let Some(existing) = get_model(rpc, id).await? {
                bail!(
                    "{} is already registered as model {} ({:?}, owner {}); publish a changed folder with --version-of {}",
                    model.root,
                    existing.id,
                    existing.name,
                    existing.owner,
                    existing.id
                );
            }
            let call = ModelRegistry::registerModelCall {
                rootCid: root_bytes.clone(),
                manifestCid: manifest_bytes.clone(),
                name: model.name.clone(),
                format: model.format.clone(),
                architecture: model.architecture.clone(),
                price,
                isPrivate: args.private,
            };
            ("registerModel", call.abi_encode())
        }
        Some(target) => {
            let target = find_model(rpc, target).await?;
            let call = ModelRegistry::addVersionCall {
                modelId: target.id,
                rootCid: root_bytes.clone(),
                manifestCid: manifest_bytes.clone(),
            };
            ("addVersion", call.abi_encode())
        }
    };
    let (hash, receipt, block) = send_tx(
        ctx,
        signer,
        action,
        MODEL_REGISTRY_ADDRESS,
        data,
        U256::ZERO,
        Duration::from_secs(args.timeout_s),
    )
    .await?;
    let (mut version, mut model_id_logged) = (None, None);
    for (topics, data) in receipt_logs(&receipt) {
        if let Ok(ev) = ModelRegistry::VersionAdded::decode_raw_log(topics, &data) {
            version = Some(ev.version);
            model_id_logged = Some(ev.modelId);
        }
    }
    let (Some(version), Some(logged_id)) = (version, model_id_logged) else {
        bail!("{action} transaction {hash} succeeded but emitted no VersionAdded event");
    };
    Ok(json!({
        "action": action,
        "tx": hash,
        "block": block,
        "model_id": logged_id,
        "version": version.to_string(),
        "root_cid": model.root.to_string(),
        "manifest_cid": model.manifest.map(|c| c.to_string()),
        "name": model.name,
        "format": model.format,
        "architecture": model.architecture,
        "owner": from,
        "price_wei": price.to_string(),
        "price_eth": format_eth(price),
        "private": args.private,
        "gas_used": receipt.get("gasUsed").map(quantity).transpose()?,
    }))
}

/// Signs a call of `to` with `data` and `value` from the signer's account, sends it and waits
/// for its receipt; a revert is replayed for its reason and fails with it. Returns the hash,
/// the receipt and its block.
pub(crate) async fn send_tx(
    ctx: &Ctx,
    signer: &Signer,
    action: &str,
    to: Address,
    data: Vec<u8>,
    value: U256,
    timeout: Duration,
) -> anyhow::Result<(B256, Value, Option<u64>)> {
    let raw = sign_call(signer, action, to, data.clone(), value).await?;
    let rpc = &signer.rpc;
    let from = address_of(signer.key)?;
    let tx_json = json!({"from": from, "to": to, "value": format!("{value:#x}"), "data": hex::encode_prefixed(&data)});
    let spin = ctx.spinner(&format!("{action}: sending"));
    let hash: B256 = rpc
        .call("eth_sendRawTransaction", json!([hex::encode_prefixed(raw)]))
        .await
        .with_context(|| format!("{action}: sending the transaction"))?
        .as_str()
        .and_then(|h| h.parse().ok())
        .with_context(|| format!("{action}: the node returned no transaction hash"))?;
    spin.set_message(format!("{action}: waiting for {hash}"));
    let receipt = wait_receipt(rpc, hash, timeout).await;
    spin.finish_and_clear();
    let receipt = receipt?;
    let block = receipt.get("blockNumber").map(quantity).transpose()?;
    if receipt.get("status") != Some(&json!("0x1")) {
        // Replay it on the state it ran on for the reason.
        let at = block.map_or_else(
            || json!("latest"),
            |b| json!(format!("{:#x}", b.saturating_sub(1))),
        );
        let reason = match rpc.call("eth_call", json!([tx_json, at])).await {
            Err(e) => format!("{:#}", explain_revert(e, action)),
            Ok(_) => "no reason given".to_string(),
        };
        bail!("{action} transaction {hash} failed in block {block:?}: {reason}");
    }
    Ok((hash, receipt, block))
}

/// Signs (without sending) an EIP-1559 call of `to` from the signer's account: gas from
/// `eth_estimateGas` (+25 %), a revert named by its custom error before anything is signed.
pub(crate) async fn sign_call(
    signer: &Signer,
    action: &str,
    to: Address,
    data: Vec<u8>,
    value: U256,
) -> anyhow::Result<Vec<u8>> {
    let (rpc, chain_id, key) = (&signer.rpc, signer.chain_id, signer.key);
    let from = address_of(key)?;
    let tx_json = json!({"from": from, "to": to, "value": format!("{value:#x}"), "data": hex::encode_prefixed(&data)});
    let estimate = match rpc.call("eth_estimateGas", json!([tx_json])).await {
        Ok(v) => quantity(&v)?,
        Err(e) => return Err(explain_revert(e, action)),
    };
    let gas = estimate + estimate / 4 + 10_000;
    let nonce = quantity(
        &rpc.call("eth_getTransactionCount", json!([from, "pending"]))
            .await?,
    )?;
    let (max_fee, tip) = fees(rpc).await?;
    let tx = alloy_consensus::TxEip1559 {
        chain_id,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: data.into(),
    };
    Ok(sign(key, tx)?.0)
}

/// The topics and data of every log in a JSON-RPC transaction receipt.
pub(crate) fn receipt_logs(receipt: &Value) -> Vec<(Vec<B256>, Vec<u8>)> {
    receipt
        .get("logs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|log| {
            let topics = log
                .get("topics")?
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str()?.parse().ok())
                .collect();
            let data = hex_bytes(log.get("data")?).ok()?;
            Some((topics, data))
        })
        .collect()
}

/// Max fee and tip: the next block's base fee from `eth_feeHistory` (else the latest block's,
/// else `eth_gasPrice`) doubled plus the tip `eth_maxPriorityFeePerGas` suggests (else 1 gwei).
async fn fees(rpc: &Rpc) -> anyhow::Result<(u128, u128)> {
    let tip = match rpc.call("eth_maxPriorityFeePerGas", json!([])).await {
        Ok(v) => u128::from(quantity(&v)?),
        Err(_) => DEFAULT_TIP,
    };
    let base = match rpc.call("eth_feeHistory", json!([1, "latest", []])).await {
        Ok(h) => h
            .get("baseFeePerGas")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .map(quantity)
            .transpose()?,
        Err(_) => None,
    };
    let base = match base {
        Some(b) => u128::from(b),
        None => u128::from(quantity(&rpc.call("eth_gasPrice", json!([])).await?)?),
    };
    Ok((base.saturating_mul(2).saturating_add(tip), tip))
}

/// Polls for the receipt of `hash` until it comes or `timeout` passes.
async fn wait_receipt(rpc: &Rpc, hash: B256, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
        if !r.is_null() {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!(
                "transaction {hash} sent but not included after {}s (it may still be; check with eth_getTransactionReceipt)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The key to sign with: `--key` (hex, a file of hex, or a JSON keystore file), else dev
/// account 0 on the dev chain.
pub(crate) fn signing_key(
    key: Option<&str>,
    password_file: Option<&Path>,
    chain_id: u64,
    url: &str,
) -> anyhow::Result<B256> {
    let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
        if chain_id == lattice_chain::DEV_CHAIN_ID {
            return Ok(DEV_ACCOUNTS[0].private_key);
        }
        bail!(
            "no signing key: pass --key (or set LATTICE_KEY); the node at {url} is chain {chain_id}, \
             not the dev chain ({}), so the dev account is not used",
            lattice_chain::DEV_CHAIN_ID
        );
    };
    if let Ok(k) = parse_hex_key(key) {
        return Ok(k);
    }
    let path = Path::new(key);
    if !path.is_file() {
        bail!("--key: neither a 32-byte hex private key nor a readable file");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--key: reading {}", path.display()))?;
    let text = text.trim();
    if text.starts_with('{') {
        return keystore_key(path, password_file);
    }
    parse_hex_key(text).with_context(|| format!("--key {}", path.display()))
}

/// The key in an Ethereum JSON keystore (v3, scrypt or pbkdf2), unlocked with the first line
/// of `password_file`, else `LATTICE_KEY_PASSWORD`.
fn keystore_key(path: &Path, password_file: Option<&Path>) -> anyhow::Result<B256> {
    let password = match password_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("--password-file {}", f.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        None => std::env::var("LATTICE_KEY_PASSWORD").map_err(|_| {
            anyhow::anyhow!(
                "--key {} is an encrypted keystore: pass --password-file FILE or set LATTICE_KEY_PASSWORD",
                path.display()
            )
        })?,
    };
    let signer = alloy_signer_local::PrivateKeySigner::decrypt_keystore(path, password)
        .with_context(|| {
            format!(
                "--key {}: cannot unlock the keystore (wrong password, or not a v3 keystore)",
                path.display()
            )
        })?;
    Ok(signer.to_bytes())
}

/// A 32-byte secp256k1 private key in hex, with or without `0x`.
fn parse_hex_key(s: &str) -> anyhow::Result<B256> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not a private key: expected 64 hex digits");
    }
    let key: B256 = digits.parse().context("not a private key")?;
    address_of(key)?;
    Ok(key)
}

/// An error of a call that may have reverted, with the contract's reason decoded.
fn explain_revert(e: anyhow::Error, action: &str) -> anyhow::Error {
    let Some(rpc_err) = e.downcast_ref::<RpcError>() else {
        return e.context(action.to_string());
    };
    match rpc_err.data_bytes() {
        Some(data) if !data.is_empty() => {
            anyhow::anyhow!("{action} reverted: {}", revert_reason(&data))
        }
        _ => anyhow::anyhow!("{action} refused: {}", rpc_err.message),
    }
}

/// The contract's reason in revert data: a ModelRegistry custom error by name with its
/// arguments, `Error(string)`, a panic code, or the raw hex.
fn revert_reason(data: &[u8]) -> String {
    use ModelRegistry::ModelRegistryErrors as E;
    if let Ok(err) = E::abi_decode(data) {
        return match err {
            E::NotModelOwner(x) => format!(
                "NotModelOwner: {} is not the owner of model {}",
                x.caller, x.modelId
            ),
            E::CidAlreadyUsed(x) => format!(
                "CidAlreadyUsed: this root CID is already registered (keccak {})",
                x.cidHash
            ),
            E::UnknownModel(x) => format!("UnknownModel: no model {}", x.modelId),
            E::EmptyCid(_) => "EmptyCid: the root CID is empty".to_string(),
            E::EnforcedPause(_) => "EnforcedPause: the registry is paused".to_string(),
            other => format!("{other:?}"),
        };
    }
    alloy_sol_types::decode_revert_reason(data).unwrap_or_else(|| hex::encode_prefixed(data))
}

// ----------------------------------------------------------------------------- reading

/// A client for `url`, checked with `eth_chainId` so a wrong URL fails clearly here.
async fn connect(url: &str) -> anyhow::Result<Rpc> {
    let rpc = Rpc::new(url, 1)?;
    chain_id(&rpc).await?;
    Ok(rpc)
}

/// `eth_chainId`, with a clear error when the node cannot be reached.
async fn chain_id(rpc: &Rpc) -> anyhow::Result<u64> {
    let v = rpc.call("eth_chainId", json!([])).await.with_context(|| {
        format!(
            "cannot reach a node at {} (start one with `lattice devnet`, or pass --rpc / LATTICE_RPC)",
            rpc.url()
        )
    })?;
    quantity(&v).context("eth_chainId")
}

/// `eth_call` on the registry; a revert becomes an error with its reason.
async fn registry_call(rpc: &Rpc, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    match rpc
        .call(
            "eth_call",
            crate::rpc_client::call_params(MODEL_REGISTRY_ADDRESS, data),
        )
        .await
    {
        Ok(v) => hex_bytes(&v),
        Err(e) => Err(explain_revert(e, "eth_call")),
    }
}

/// `getModel(id)`, `None` when the registry has no such model.
async fn get_model(rpc: &Rpc, id: B256) -> anyhow::Result<Option<ModelRegistry::ModelView>> {
    let data = ModelRegistry::getModelCall { modelId: id }.abi_encode();
    match rpc
        .call(
            "eth_call",
            crate::rpc_client::call_params(MODEL_REGISTRY_ADDRESS, &data),
        )
        .await
    {
        Ok(v) => Ok(Some(
            ModelRegistry::getModelCall::abi_decode_returns(&hex_bytes(&v)?)
                .context("decode getModel")?,
        )),
        Err(e) => {
            let unknown = e
                .downcast_ref::<RpcError>()
                .and_then(RpcError::data_bytes)
                .and_then(|d| ModelRegistry::ModelRegistryErrors::abi_decode(&d).ok())
                .is_some_and(|err| {
                    matches!(err, ModelRegistry::ModelRegistryErrors::UnknownModel(_))
                });
            if unknown {
                Ok(None)
            } else {
                Err(explain_revert(e, "getModel"))
            }
        }
    }
}

/// How many accounts announce pinning `cid` (`IPFSIncentives.pinCount`).
async fn pin_count(rpc: &Rpc, cid: &[u8]) -> anyhow::Result<u64> {
    let data = lattice_contracts::IPFSIncentives::pinCountCall(alloy_primitives::keccak256(cid))
        .abi_encode();
    let out = rpc
        .eth_call(lattice_evm::IPFS_INCENTIVES_ADDRESS, &data)
        .await
        .context("IPFSIncentives.pinCount")?;
    let n = lattice_contracts::IPFSIncentives::pinCountCall::abi_decode_returns(&out)
        .context("decode pinCount")?;
    Ok(n.saturating_to())
}

/// `listModels(offset, limit)`.
async fn list_page(
    rpc: &Rpc,
    offset: u64,
    limit: u64,
) -> anyhow::Result<Vec<ModelRegistry::ModelView>> {
    let data = ModelRegistry::listModelsCall {
        offset: U256::from(offset),
        limit: U256::from(limit),
    }
    .abi_encode();
    ModelRegistry::listModelsCall::abi_decode_returns(&registry_call(rpc, &data).await?)
        .context("decode listModels")
}

/// The model `what` names: an id (0x + 64 hex), a root CID (its first, else its latest
/// version's), or a name (which must be unique).
async fn find_model(rpc: &Rpc, what: &str) -> anyhow::Result<ModelRegistry::ModelView> {
    let what = what.trim();
    if what.starts_with("0x") && what.len() == 66 {
        let id: B256 = what
            .parse()
            .with_context(|| format!("{what}: not a model id (0x + 64 hex digits)"))?;
        return get_model(rpc, id)
            .await?
            .with_context(|| format!("no model with id {id} in the registry"));
    }
    let cid = what.parse::<cid::Cid>().ok();
    if let Some(cid) = &cid
        && let Some(m) = get_model(rpc, model_id(&cid.to_bytes())).await?
    {
        return Ok(m);
    }
    // Scan: a later version's root CID, or a name.
    let cid_bytes = cid.map(|c| c.to_bytes());
    let mut found = Vec::new();
    let mut offset = 0;
    loop {
        let page = list_page(rpc, offset, SCAN_PAGE).await?;
        let n = page.len() as u64;
        for m in page {
            let hit = match &cid_bytes {
                Some(b) => m.latestRootCid.as_ref() == b.as_slice(),
                None => m.name == what,
            };
            if hit {
                found.push(m);
            }
        }
        if n < SCAN_PAGE {
            break;
        }
        offset += n;
    }
    match found.len() {
        0 if cid_bytes.is_some() => bail!("no model in the registry has root CID {what}"),
        0 => bail!("no model named {what:?} in the registry (try `lattice model list`)"),
        1 => Ok(found.remove(0)),
        _ => {
            let ids: Vec<String> = found.iter().map(|m| m.id.to_string()).collect();
            bail!(
                "{} models are named {what:?}; name one by id: {}",
                ids.len(),
                ids.join(", ")
            )
        }
    }
}

/// One version of a registered model, as `model verify` checks it.
#[derive(Debug)]
pub(crate) struct OnChainVersion {
    /// The model's id.
    pub(crate) id: B256,
    /// The model's name.
    pub(crate) name: String,
    /// The version number.
    pub(crate) version: u64,
    /// The version's root CID (bytes as stored on chain).
    pub(crate) root_cid: Vec<u8>,
    /// The version's manifest CID, empty when none was recorded.
    pub(crate) manifest_cid: Vec<u8>,
}

/// The model `what` names (id, root CID or name, as `model info` takes) at `version`
/// (default: its latest), read from the node at `rpc_url`.
pub(crate) fn resolve_version(
    rpc_url: &str,
    what: &str,
    version: Option<u64>,
) -> anyhow::Result<OnChainVersion> {
    runtime()?.block_on(async {
        let rpc = connect(rpc_url).await?;
        let view = find_model(&rpc, what).await?;
        let latest: u64 = view
            .latest
            .try_into()
            .context("latest version out of range")?;
        let v = version.unwrap_or(latest);
        if v > latest {
            bail!(
                "model {:?} ({}) has no version {v}: its versions are 0..={latest}",
                view.name,
                view.id
            );
        }
        let data = ModelRegistry::getVersionCall {
            modelId: view.id,
            version: U256::from(v),
        }
        .abi_encode();
        let ver =
            ModelRegistry::getVersionCall::abi_decode_returns(&registry_call(&rpc, &data).await?)
                .context("decode getVersion")?;
        Ok(OnChainVersion {
            id: view.id,
            name: view.name,
            version: v,
            root_cid: ver.rootCid.to_vec(),
            manifest_cid: ver.manifestCid.to_vec(),
        })
    })
}

// ----------------------------------------------------------------------------- formatting

/// A `ModelView` as JSON.
fn view_json(m: &ModelRegistry::ModelView) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "owner": m.owner,
        "format": m.format,
        "architecture": m.architecture,
        "root_cid": cid_text(&m.rootCid),
        "latest_root_cid": cid_text(&m.latestRootCid),
        "latest_manifest_cid": cid_text(&m.latestManifestCid),
        "latest_version": m.latest.to_string(),
        "versions": m.latest.saturating_add(U256::from(1)).to_string(),
        "price_wei": m.price.to_string(),
        "price_eth": format_eth(m.price),
        "revenue_wei": m.revenue.to_string(),
        "revenue_eth": format_eth(m.revenue),
        "created_at": m.createdAt,
        "active": m.active,
        "private": m.isPrivate,
    })
}

fn flags(m: &ModelRegistry::ModelView) -> String {
    format!(
        "{}, {}",
        if m.active { "active" } else { "inactive" },
        if m.isPrivate { "private" } else { "public" }
    )
}

/// CID bytes as text (base32 for v1), empty for none, hex for bytes that are not a CID.
pub(crate) fn cid_text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    cid::Cid::try_from(bytes).map_or_else(|_| hex::encode_prefixed(bytes), |c| c.to_string())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
fn format_time(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A JSON value as plain text (strings without quotes).
fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A decimal ETH amount (`"0.001"`, `"2"`, `"1.5"`) in wei; at most 18 decimals.
pub(crate) fn parse_eth(s: &str) -> anyhow::Result<U256> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        bail!("{s:?} is not an ETH amount (a decimal like 0.001)");
    }
    if frac.len() > 18 {
        bail!("{s:?} has more than 18 decimals (1 wei = 0.000000000000000001 ETH)");
    }
    let parse = |p: &str| -> anyhow::Result<U256> {
        if p.is_empty() {
            return Ok(U256::ZERO);
        }
        U256::from_str_radix(p, 10).with_context(|| format!("{s:?} is too large"))
    };
    let frac_wei = parse(frac)? * U256::from(10u64).pow(U256::from(18 - frac.len()));
    parse(int)?
        .checked_mul(U256::from(WEI_PER_ETH))
        .and_then(|w| w.checked_add(frac_wei))
        .with_context(|| format!("{s:?} is too large"))
}

/// Wei as a decimal ETH amount without trailing zeros.
fn format_eth(wei: U256) -> String {
    let unit = U256::from(WEI_PER_ETH);
    let (int, frac) = (wei / unit, wei % unit);
    if frac.is_zero() {
        return int.to_string();
    }
    let frac = format!("{:0>18}", frac.to_string());
    format!("{int}.{}", frac.trim_end_matches('0'))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eth_amounts_parse_and_print() {
        let wei = |s: &str| parse_eth(s).expect(s);
        assert_eq!(wei("0.001"), U256::from(1_000_000_000_000_000u64));
        assert_eq!(wei("2"), U256::from(2u64) * U256::from(WEI_PER_ETH));
        assert_eq!(wei(".5"), U256::from(WEI_PER_ETH / 2));
        assert_eq!(wei("0.000000000000000001"), U256::from(1u64));
        assert_eq!(format_eth(wei("1.25")), "1.25");
        assert_eq!(format_eth(wei("0.001")), "0.001");
        assert_eq!(format_eth(U256::ZERO), "0");
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_795_716_816), "2026-11-26 18:13:36 UTC");
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000000000000000001",
            "abc",
            "1.2.3",
        ] {
            assert!(parse_eth(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_parse_from_hex_and_files() {
        let dev = DEV_ACCOUNTS[1];
        let hex_key = dev.private_key.to_string();
        assert_eq!(
            signing_key(Some(&hex_key), None, 1, "x").expect("hex key"),
            dev.private_key
        );
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{}\n", &hex_key[2..])).expect("write");
        let path = file.to_string_lossy().into_owned();
        assert_eq!(
            signing_key(Some(&path), None, 1, "x").expect("file key"),
            dev.private_key
        );
        assert_eq!(
            signing_key(None, None, lattice_chain::DEV_CHAIN_ID, "x").expect("dev"),
            DEV_ACCOUNTS[0].private_key
        );
        let err = signing_key(None, None, 1, "http://node").expect_err("no key on chain 1");
        assert!(format!("{err}").contains("no signing key"), "{err}");
        assert!(signing_key(Some("0x1234"), None, 1, "x").is_err());
        // An encrypted keystore, unlocked by a password file.
        let (_, _) = alloy_signer_local::PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut rand::thread_rng(),
            dev.private_key,
            "hunter2",
            Some("keystore.json"),
        )
        .expect("write keystore");
        let ks = dir.path().join("keystore.json");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").expect("write password");
        let ks_path = ks.to_string_lossy().into_owned();
        assert_eq!(
            signing_key(Some(&ks_path), Some(&pw), 1, "x").expect("keystore key"),
            dev.private_key
        );
        std::fs::write(&pw, "wrong\n").expect("write password");
        let err = signing_key(Some(&ks_path), Some(&pw), 1, "x").expect_err("wrong password");
        assert!(format!("{err}").contains("cannot unlock"), "{err}");
    }

    #[test]
    fn reverts_decode_by_name() {
        let err = ModelRegistry::NotModelOwner {
            modelId: B256::repeat_byte(1),
            caller: Address::repeat_byte(2),
        };
        let data = alloy_sol_types::SolError::abi_encode(&err);
        assert!(revert_reason(&data).starts_with("NotModelOwner"));
        assert_eq!(cid_text(&[]), "");
    }
}
