//! `lattice bench rpc` and `lattice bench registry`: end-to-end load and latency through
//! Ethereum JSON-RPC over HTTP, against any dev chain (`lattice devnet`, `anvil`, …).
//!
//! Both only speak standard JSON-RPC, so the same command measures Lattice and its peers the
//! same way. Keys are derived deterministically and funded from dev account 0; everything is
//! signed and encoded before the clock starts, so the timed phase measures the node.
//!
//! What the node must serve: `eth_chainId`, `eth_blockNumber`, `eth_getBlockByNumber`
//! (`baseFeePerGas`, `transactions`, `gasUsed`), `eth_getBalance`, `eth_getTransactionCount`
//! (`latest` and `pending`), `eth_sendRawTransaction` (EIP-1559), `eth_getTransactionReceipt`,
//! `eth_estimateGas`, `eth_getCode` and `eth_call`, each also inside JSON-RPC batches of up to
//! `--batch` requests (500 by default).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex, keccak256};
use alloy_sol_types::{SolCall, SolConstructor};
use anyhow::{Context, bail};
use lattice_contracts::{ModelRegistry, model_id};
use lattice_evm::{DEV_ACCOUNTS, MODEL_REGISTRY_ADDRESS};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::Ctx;
use crate::rpc_client::{
    Rpc, address_of, batch_answers, call_params, hex_bytes, quantity, quantity_u256, sign,
};

const GWEI: u128 = 1_000_000_000;
/// Gas of a plain transfer.
const TRANSFER_GAS: u64 = 21_000;
/// Requests per JSON-RPC batch for the untimed bookkeeping (balances, nonces, blocks).
const BOOK_BATCH: usize = 200;

/// Arguments of `lattice bench rpc`.
#[derive(Debug, clap::Args)]
pub(crate) struct RpcArgs {
    /// JSON-RPC HTTP endpoint of the node under test.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub(crate) rpc: String,
    /// Spread the timed submissions over these endpoints too (connection i submits to
    /// endpoint i mod n): the nodes of one network, e.g. `lattice testnet`'s validators.
    /// Funding, nonces and inclusion are read from --rpc.
    #[arg(long = "submit-to")]
    pub(crate) submit_to: Vec<String>,
    /// Transfers to send (timed).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) txs: usize,
    /// Distinct sending accounts (derived keys, funded from dev account 0).
    #[arg(long, default_value_t = 200)]
    pub(crate) senders: usize,
    /// Raw transactions per `eth_sendRawTransaction` JSON-RPC batch.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// HTTP connections submitting at once; each owns a disjoint set of senders and sends its
    /// batches in order, so every sender's nonces reach the node in order.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Priority fee (tip) in gwei; the max fee is twice the latest base fee plus this.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) tip_gwei: f64,
    /// Give up waiting for inclusion after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout_s: u64,
}

/// Arguments of `lattice bench registry`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegistryArgs {
    /// JSON-RPC HTTP endpoint of the node under test.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc: String,
    /// Make sure at least this many models are registered before measuring.
    #[arg(long, default_value_t = 10_000)]
    models: usize,
    /// Timed `eth_call`s of each kind (`getModel`, `listModels`).
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Models per `listModels` page.
    #[arg(long, default_value_t = 100)]
    page: usize,
    /// Deploy a fresh ModelRegistry from dev account 0 first (for chains without one at genesis).
    #[arg(long, conflicts_with = "registry")]
    deploy: bool,
    /// The ModelRegistry to use (default: Lattice's genesis address).
    #[arg(long)]
    registry: Option<Address>,
    /// Accounts registering models (derived keys, funded from dev account 0).
    #[arg(long, default_value_t = 8)]
    registrants: usize,
    /// `registerModel` transactions per JSON-RPC batch.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Priority fee (tip) in gwei; the max fee is twice the latest base fee plus this.
    #[arg(long, default_value_t = 1.0)]
    tip_gwei: f64,
    /// Give up waiting for inclusion after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
}

/// A JSON-RPC batch of `eth_sendRawTransaction`s, ids `0..txs.len()`.
fn raw_tx_batch(txs: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
    let reqs: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
                   "params": [hex::encode_prefixed(tx)]})
        })
        .collect();
    Ok(serde_json::to_vec(&reqs)?)
}

/// Errors in the answer to a batch of `n` raw transactions: their count and a few messages.
fn count_errors(answer: anyhow::Result<Value>, n: usize, msgs: &mut Vec<String>) -> usize {
    let answers = answer.and_then(|a| batch_answers(&a, n));
    let mut note = |m: String| {
        if msgs.len() < 5 {
            msgs.push(m);
        }
    };
    match answers {
        Err(e) => {
            note(format!("{e:#}"));
            n
        }
        Ok(rs) => {
            let mut errors = 0;
            for e in rs.into_iter().filter_map(Result::err) {
                note(e);
                errors += 1;
            }
            errors
        }
    }
}

// --------------------------------------------------------------------------- chain helpers

/// A secp256k1 key derived from a tag and an index: `keccak256(tag ‖ i as u64 big-endian)`.
fn derived_key(tag: &str, i: usize) -> B256 {
    let mut buf = tag.as_bytes().to_vec();
    buf.extend_from_slice(&(i as u64).to_be_bytes());
    keccak256(buf)
}

/// What every transaction needs from the chain: its id and fees.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Fees {
    chain_id: u64,
    base_fee: u128,
    max_fee: u128,
    tip: u128,
}

impl Fees {
    /// An EIP-1559 transaction with these fees.
    fn tx(&self, nonce: u64, gas: u64, to: TxKind, value: U256, input: Bytes) -> TxEip1559 {
        TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: self.max_fee,
            max_priority_fee_per_gas: self.tip,
            to,
            value,
            access_list: Default::default(),
            input,
        }
    }
}

/// Chain id from `eth_chainId`; max fee = 2 × the latest block's base fee + tip.
async fn fees(rpc: &Rpc, tip_gwei: f64) -> anyhow::Result<Fees> {
    let chain_id = quantity(&rpc.call("eth_chainId", json!([])).await?)?;
    let block = rpc
        .call("eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    let base_fee = match block.get("baseFeePerGas") {
        Some(v) if !v.is_null() => u128::from(quantity(v)?),
        _ => 0,
    };
    let tip = (tip_gwei * GWEI as f64) as u128;
    Ok(Fees {
        chain_id,
        base_fee,
        max_fee: 2 * base_fee + tip,
        tip,
    })
}

/// `eth_getTransactionCount(addr, tag)` for many accounts, batched.
async fn nonces(rpc: &Rpc, addrs: &[Address], tag: &str) -> anyhow::Result<Vec<u64>> {
    let calls: Vec<(&str, Value)> = addrs
        .iter()
        .map(|a| ("eth_getTransactionCount", json!([a, tag])))
        .collect();
    rpc.batch(&calls, BOOK_BATCH)
        .await?
        .iter()
        .map(quantity)
        .collect()
}

/// Polls `eth_getTransactionCount(latest)` (batched) until every account reaches its nonce.
async fn wait_nonces(
    rpc: &Rpc,
    targets: &[(Address, u64)],
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut left = targets.to_vec();
    loop {
        let addrs: Vec<Address> = left.iter().map(|t| t.0).collect();
        let got = nonces(rpc, &addrs, "latest").await?;
        left = left
            .into_iter()
            .zip(got)
            .filter(|((_, want), got)| got < want)
            .map(|(t, _)| t)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} accounts still have pending transactions after {timeout:?} (e.g. {})",
                left.len(),
                left[0].0
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// Submits pre-encoded raw transactions in batches of `batch`, in order, over one connection;
/// fails on any error.
async fn submit_in_order(rpc: &Rpc, txs: &[Vec<u8>], batch: usize) -> anyhow::Result<()> {
    for part in txs.chunks(batch.max(1)) {
        let mut msgs = Vec::new();
        let errors = count_errors(rpc.post(raw_tx_batch(part)?).await, part.len(), &mut msgs);
        if errors > 0 {
            bail!("{errors} of {} transactions rejected: {msgs:?}", part.len());
        }
    }
    Ok(())
}

/// Tops every account in `to` with less than `need` wei up to `2 × need` from dev account 0,
/// then waits for the funding to be included. Returns how many were funded.
async fn fund(
    rpc: &Rpc,
    fees: &Fees,
    to: &[Address],
    need: U256,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let calls: Vec<(&str, Value)> = to
        .iter()
        .map(|a| ("eth_getBalance", json!([a, "latest"])))
        .collect();
    let balances = rpc.batch(&calls, BOOK_BATCH).await?;
    let mut poor = Vec::new();
    for (a, b) in to.iter().zip(&balances) {
        if quantity_u256(b)? < need {
            poor.push(*a);
        }
    }
    if poor.is_empty() {
        return Ok(0);
    }
    let funder = DEV_ACCOUNTS[0];
    let start = nonces(rpc, &[funder.address], "pending").await?[0];
    let txs = poor
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let tx = fees.tx(
                start + i as u64,
                TRANSFER_GAS,
                TxKind::Call(*a),
                need * U256::from(2),
                Bytes::new(),
            );
            sign(funder.private_key, tx).map(|(raw, _)| raw)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    submit_in_order(rpc, &txs, 500)
        .await
        .context("funding from dev account 0")?;
    let end = start + txs.len() as u64;
    wait_nonces(
        rpc,
        &[(funder.address, end)],
        Duration::from_millis(20),
        timeout,
    )
    .await
    .context("waiting for funding")?;
    Ok(poor.len())
}

/// Block statistics over a range of blocks.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct BlockStats {
    /// Blocks in the range.
    blocks: u64,
    /// Blocks with at least one transaction.
    blocks_with_txs: u64,
    /// Largest number of transactions in one block.
    max_txs_per_block: usize,
    /// Transactions in the range.
    txs: usize,
    /// Gas used in the range.
    gas_used: u64,
}

impl BlockStats {
    /// Adds the statistics of a following range.
    fn add(&mut self, more: BlockStats) {
        self.blocks += more.blocks;
        self.blocks_with_txs += more.blocks_with_txs;
        self.max_txs_per_block = self.max_txs_per_block.max(more.max_txs_per_block);
        self.txs += more.txs;
        self.gas_used += more.gas_used;
    }
}

/// Follows the chain from block `from` on (polling `eth_blockNumber` every `poll`, fetching each
/// new block once) until the blocks hold at least `txs` transactions; returns their statistics
/// and the last block read. Cheap for the node however long it takes, unlike polling nonces.
async fn wait_for_txs(
    rpc: &Rpc,
    from: u64,
    txs: usize,
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<(BlockStats, u64)> {
    let deadline = Instant::now() + timeout;
    let mut stats = BlockStats::default();
    let mut last = from - 1;
    loop {
        let head = quantity(&rpc.call("eth_blockNumber", json!([])).await?)?;
        if head > last {
            stats.add(block_stats_of(rpc, last + 1, head).await?);
            last = head;
        }
        if stats.txs >= txs {
            return Ok((stats, last));
        }
        if Instant::now() > deadline {
            bail!(
                "blocks {from}..={last} hold {} transactions after {timeout:?}, expected {txs}",
                stats.txs
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// Statistics of blocks `from..=to` (`eth_getBlockByNumber`, batched).
async fn block_stats_of(rpc: &Rpc, from: u64, to: u64) -> anyhow::Result<BlockStats> {
    let mut stats = BlockStats::default();
    if from > to {
        return Ok(stats);
    }
    let calls: Vec<(&str, Value)> = (from..=to)
        .map(|n| ("eth_getBlockByNumber", json!([format!("{n:#x}"), false])))
        .collect();
    for block in rpc.batch(&calls, BOOK_BATCH).await? {
        let txs = block
            .get("transactions")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        stats.blocks += 1;
        stats.blocks_with_txs += u64::from(txs > 0);
        stats.max_txs_per_block = stats.max_txs_per_block.max(txs);
        stats.txs += txs;
        stats.gas_used += block.get("gasUsed").map(quantity).transpose()?.unwrap_or(0);
    }
    Ok(stats)
}

/// A tokio runtime for the benchmark client (two workers: the machine may be small, and the
/// node under test shares it).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio runtime")
}

/// Splits `total` over `parts` as evenly as possible (the first ones get one more).
fn split(total: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

/// Round-robin order over senders: `(sender index, nonce offset)`, each sender's nonces
/// ascending. `counts[k]` is the number of transactions of `senders[k]`.
fn round_robin(senders: &[usize], counts: &[usize]) -> Vec<(usize, usize)> {
    let rounds = senders.iter().map(|&s| counts[s]).max().unwrap_or(0);
    let mut out = Vec::new();
    for r in 0..rounds {
        for &s in senders {
            if r < counts[s] {
                out.push((s, r));
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------ bench rpc

/// The result of `lattice bench rpc`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RpcReport {
    rpc: String,
    chain_id: u64,
    client_version: String,
    txs: usize,
    senders: usize,
    batch: usize,
    concurrency: usize,
    funded_senders: usize,
    sign_seconds: f64,
    submit_seconds: f64,
    included_seconds: f64,
    submit_tx_per_s: f64,
    tx_per_s: f64,
    errors: usize,
    last_tx: B256,
    last_tx_block: u64,
    first_block: u64,
    last_block: u64,
    block_stats: BlockStats,
    fees: Fees,
}

/// `lattice bench rpc`: pre-signs `--txs` transfers from `--senders` accounts, submits them in
/// JSON-RPC batches over `--concurrency` connections and waits until all are included.
pub(crate) fn rpc(ctx: &Ctx, args: RpcArgs) -> anyhow::Result<()> {
    if args.txs == 0 || args.senders == 0 || args.concurrency == 0 || args.batch == 0 {
        bail!("--txs, --senders, --concurrency and --batch must be positive");
    }
    let report = runtime()?.block_on(rpc_bench(ctx, &args))?;
    print_rpc_report(ctx, &report)
}

pub(crate) fn print_rpc_report(ctx: &Ctx, report: &RpcReport) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(report);
    }
    let r = report;
    let s = &r.block_stats;
    println!(
        "{} ({}, chain id {}): {} transfers from {} senders, batches of {}, {} connections",
        r.rpc, r.client_version, r.chain_id, r.txs, r.senders, r.batch, r.concurrency
    );
    println!(
        "signed in {:.2}s (untimed); base fee {} wei, max fee {} wei",
        r.sign_seconds, r.fees.base_fee, r.fees.max_fee
    );
    println!(
        "submitted in {:.3}s: {:.0} tx/s (submit only)",
        r.submit_seconds, r.submit_tx_per_s
    );
    println!(
        "all included in {:.3}s: {:.0} transfers/s end to end",
        r.included_seconds, r.tx_per_s
    );
    println!(
        "blocks {}..={}: {} blocks, {} with txs, max {} txs/block, {} txs, {} gas",
        r.first_block,
        r.last_block,
        s.blocks,
        s.blocks_with_txs,
        s.max_txs_per_block,
        s.txs,
        s.gas_used
    );
    Ok(())
}

/// The node's `web3_clientVersion`, empty if it has none.
async fn client_version(rpc: &Rpc) -> String {
    rpc.call("web3_clientVersion", json!([]))
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) async fn rpc_bench(ctx: &Ctx, args: &RpcArgs) -> anyhow::Result<RpcReport> {
    let rpc = Rpc::new(&args.rpc, args.concurrency)?;
    let submitters = if args.submit_to.is_empty() {
        vec![rpc.clone()]
    } else {
        args.submit_to
            .iter()
            .map(|u| Rpc::new(u, args.concurrency))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let timeout = Duration::from_secs(args.timeout_s);
    let client_version = client_version(&rpc).await;
    let fees = fees(&rpc, args.tip_gwei).await?;

    let keys: Vec<B256> = (0..args.senders)
        .map(|i| derived_key("lattice-bench-sender", i))
        .collect();
    let addrs = keys
        .iter()
        .map(|k| address_of(*k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counts = split(args.txs, args.senders);
    let max_count = counts.iter().copied().max().unwrap_or(0) as u128;
    let need = U256::from(max_count * (u128::from(TRANSFER_GAS) * fees.max_fee + 1));
    let spin = ctx.spinner("funding senders");
    let funded = fund(&rpc, &fees, &addrs, need, timeout).await?;
    spin.finish_and_clear();
    let start = nonces(&rpc, &addrs, "pending").await?;

    // Pre-sign: worker w owns senders w, w + c, w + 2c, …, round-robin over them.
    let spin = ctx.spinner("signing");
    let t_sign = Instant::now();
    let conc = args.concurrency.min(args.senders);
    let mut workers = Vec::with_capacity(conc);
    let mut last = None;
    for w in 0..conc {
        let mine: Vec<usize> = (w..args.senders).step_by(conc).collect();
        let plan = round_robin(&mine, &counts);
        let signed = plan
            .par_iter()
            .map(|&(s, k)| {
                let nonce = start[s] + k as u64;
                let mut seed = addrs[s].to_vec();
                seed.extend_from_slice(&nonce.to_be_bytes());
                let to = Address::from_word(keccak256(seed));
                sign(
                    keys[s],
                    fees.tx(
                        nonce,
                        TRANSFER_GAS,
                        TxKind::Call(to),
                        U256::from(1),
                        Bytes::new(),
                    ),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some((_, hash)) = signed.last() {
            last = Some(*hash);
        }
        let bodies = signed
            .chunks(args.batch)
            .map(|part| {
                let raws: Vec<Vec<u8>> = part.iter().map(|(raw, _)| raw.clone()).collect();
                Ok((raw_tx_batch(&raws)?, part.len()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        workers.push(bodies);
    }
    let last_tx = last.context("no transactions")?;
    let sign_seconds = t_sign.elapsed().as_secs_f64();
    spin.finish_and_clear();
    let targets: Vec<(Address, u64)> = addrs
        .iter()
        .zip(&start)
        .zip(&counts)
        .map(|((a, s), c)| (*a, s + *c as u64))
        .collect();
    let first_block = quantity(&rpc.call("eth_blockNumber", json!([])).await?)? + 1;

    // Timed: submit everything, then wait for every sender's final nonce.
    let spin = ctx.spinner(&format!("sending {} transfers", args.txs));
    let t0 = Instant::now();
    // Follow the blocks from the start, so the wait after the last submit is short.
    let follower = {
        let rpc = rpc.clone();
        let n = args.txs;
        tokio::spawn(async move {
            wait_for_txs(&rpc, first_block, n, Duration::from_millis(5), timeout).await
        })
    };
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(w, bodies)| {
            let rpc = submitters[w % submitters.len()].clone();
            tokio::spawn(async move {
                let mut msgs = Vec::new();
                let mut errors = 0;
                for (body, n) in bodies {
                    errors += count_errors(rpc.post(body).await, n, &mut msgs);
                }
                (errors, msgs)
            })
        })
        .collect();
    let mut errors = 0;
    let mut msgs = Vec::new();
    for task in tasks {
        let (e, m) = task.await.context("submit task")?;
        errors += e;
        msgs.extend(m);
    }
    let submit = t0.elapsed();
    if errors > 0 {
        follower.abort();
        bail!(
            "{errors} of {} transactions failed in {:.2}s (first: {msgs:?})",
            args.txs,
            submit.as_secs_f64()
        );
    }
    let (block_stats, last_block) = follower.await.context("block follower")??;
    let included = t0.elapsed();
    spin.finish_and_clear();

    // Untimed checks: every sender's nonce advanced, the last transaction succeeded.
    wait_nonces(&rpc, &targets, Duration::from_millis(100), timeout).await?;
    let receipt = rpc
        .call("eth_getTransactionReceipt", json!([last_tx]))
        .await?;
    if receipt.is_null() {
        bail!("no receipt for the last transaction {last_tx} although its nonce is used");
    }
    if receipt.get("status") != Some(&json!("0x1")) {
        bail!("the last transaction {last_tx} failed: {receipt}");
    }
    let last_tx_block = quantity(receipt.get("blockNumber").unwrap_or(&Value::Null))?;
    Ok(RpcReport {
        rpc: args.rpc.clone(),
        chain_id: fees.chain_id,
        client_version,
        txs: args.txs,
        senders: args.senders,
        batch: args.batch,
        concurrency: conc,
        funded_senders: funded,
        sign_seconds,
        submit_seconds: submit.as_secs_f64(),
        included_seconds: included.as_secs_f64(),
        submit_tx_per_s: args.txs as f64 / submit.as_secs_f64(),
        tx_per_s: args.txs as f64 / included.as_secs_f64(),
        errors,
        last_tx,
        last_tx_block,
        first_block,
        last_block,
        block_stats,
        fees,
    })
}

// ------------------------------------------------------------------------- bench registry

/// Percentiles of a set of timings (milliseconds).
#[derive(Debug, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
}

impl Percentiles {
    pub(crate) fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let n = times.len().max(1);
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let total: Duration = times.iter().sum();
        Self {
            samples: times.len(),
            p50_ms: ms(times.get(n / 2)),
            p99_ms: ms(times.get((n * 99 / 100).min(n - 1))),
            max_ms: ms(times.last()),
            mean_ms: total.as_secs_f64() * 1e3 / n as f64,
        }
    }
}

/// Latency percentiles of one kind of call.
#[derive(Debug, serde::Serialize)]
struct Latency {
    #[serde(flatten)]
    times: Percentiles,
    /// Mean size of the ABI-encoded result.
    result_bytes: usize,
}

impl Latency {
    fn of(times: Vec<Duration>, bytes: usize) -> Self {
        let n = times.len().max(1);
        Self {
            times: Percentiles::of(times),
            result_bytes: bytes / n,
        }
    }
}

/// The result of `lattice bench registry`.
#[derive(Debug, serde::Serialize)]
struct RegistryReport {
    rpc: String,
    chain_id: u64,
    client_version: String,
    registry: Address,
    deployed: bool,
    models: usize,
    registered_now: usize,
    register_seconds: f64,
    register_per_s: f64,
    register_gas: u64,
    page: usize,
    get_model: Latency,
    list_models: Latency,
}

/// `lattice bench registry`: fills a ModelRegistry up to `--models` models, then measures
/// single `eth_call`s of `getModel` and `listModels` (one in flight, keep-alive).
pub(crate) fn registry(ctx: &Ctx, args: RegistryArgs) -> anyhow::Result<()> {
    if args.registrants == 0 || args.batch == 0 || args.page == 0 {
        bail!("--registrants, --batch and --page must be positive");
    }
    let r = runtime()?.block_on(registry_bench(ctx, &args))?;
    if ctx.json {
        return ctx.print_json(&r);
    }
    println!(
        "{} ({}, chain id {}): ModelRegistry at {}{}, {} models",
        r.rpc,
        r.client_version,
        r.chain_id,
        r.registry,
        if r.deployed { " (deployed now)" } else { "" },
        r.models
    );
    if r.registered_now > 0 {
        println!(
            "registered {} models in {:.2}s: {:.0} registrations/s ({} gas each, max)",
            r.registered_now, r.register_seconds, r.register_per_s, r.register_gas
        );
    }
    for (name, l) in [
        ("getModel(id)".to_string(), &r.get_model),
        (format!("listModels(offset, {})", r.page), &r.list_models),
    ] {
        println!(
            "{name:<26} {} calls: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms ({} bytes)",
            l.times.samples,
            l.times.p50_ms,
            l.times.p99_ms,
            l.times.max_ms,
            l.times.mean_ms,
            l.result_bytes
        );
    }
    Ok(())
}

/// A deterministic CIDv1 (keccak-256 multihash) for bench model `i`, `codec` as given.
fn bench_cid(codec: u64, what: &str, i: usize) -> anyhow::Result<Bytes> {
    let digest = keccak256(format!("lattice-bench-{what}-{i}"));
    let mh = cid::multihash::Multihash::<64>::wrap(0x1b, digest.as_slice())
        .context("build multihash")?;
    Ok(cid::Cid::new_v1(codec, mh).to_bytes().into())
}

/// The `registerModel` call for bench model `i`.
fn register_call(i: usize) -> anyhow::Result<ModelRegistry::registerModelCall> {
    Ok(ModelRegistry::registerModelCall {
        rootCid: bench_cid(0x70, "model", i)?,
        manifestCid: bench_cid(0x71, "manifest", i)?,
        name: format!("bench-model-{i}"),
        format: "gguf".into(),
        architecture: "llama".into(),
        price: U256::from(1_000_000_000_000u64),
        isPrivate: false,
    })
}

/// A small deterministic PRNG (splitmix64) for sample positions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `modelCount()`.
async fn model_count(rpc: &Rpc, registry: Address) -> anyhow::Result<usize> {
    let out = rpc
        .eth_call(registry, &ModelRegistry::modelCountCall {}.abi_encode())
        .await
        .context("modelCount()")?;
    let n = ModelRegistry::modelCountCall::abi_decode_returns(&out).context("decode modelCount")?;
    usize::try_from(n).context("modelCount too large")
}

/// The ids of all registered models, in registration order (`listModels`, batched).
async fn all_ids(rpc: &Rpc, registry: Address, count: usize) -> anyhow::Result<Vec<B256>> {
    const PAGE: usize = 100;
    let calls: Vec<(&str, Value)> = (0..count)
        .step_by(PAGE)
        .map(|offset| {
            let data = ModelRegistry::listModelsCall {
                offset: U256::from(offset),
                limit: U256::from(PAGE),
            }
            .abi_encode();
            ("eth_call", call_params(registry, &data))
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for page in rpc.batch(&calls, 20).await? {
        let views = ModelRegistry::listModelsCall::abi_decode_returns(&hex_bytes(&page)?)
            .context("decode listModels")?;
        ids.extend(views.into_iter().map(|v| v.id));
    }
    Ok(ids)
}

/// Deploys a ModelRegistry from dev account 0 (admin, pool and treasury all dev account 0).
async fn deploy_registry(rpc: &Rpc, fees: &Fees, timeout: Duration) -> anyhow::Result<Address> {
    let dev = DEV_ACCOUNTS[0];
    let mut code = ModelRegistry::BYTECODE.to_vec();
    code.extend(
        ModelRegistry::constructorCall {
            admin: dev.address,
            pinningPool_: dev.address,
            treasury_: dev.address,
        }
        .abi_encode(),
    );
    let est = quantity(
        &rpc.call(
            "eth_estimateGas",
            json!([{"from": dev.address, "data": hex::encode_prefixed(&code)}]),
        )
        .await
        .context("estimate ModelRegistry deployment")?,
    )?;
    let nonce = nonces(rpc, &[dev.address], "pending").await?[0];
    let (raw, hash) = sign(
        dev.private_key,
        fees.tx(
            nonce,
            est + est / 5,
            TxKind::Create,
            U256::ZERO,
            code.into(),
        ),
    )?;
    rpc.call("eth_sendRawTransaction", json!([hex::encode_prefixed(raw)]))
        .await
        .context("deploy ModelRegistry")?;
    let deadline = Instant::now() + timeout;
    loop {
        let receipt = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
        if !receipt.is_null() {
            if receipt.get("status") != Some(&json!("0x1")) {
                bail!("ModelRegistry deployment failed: {receipt}");
            }
            let addr = receipt
                .get("contractAddress")
                .and_then(Value::as_str)
                .context("deployment receipt without contractAddress")?;
            return addr.parse().context("bad contractAddress");
        }
        if Instant::now() > deadline {
            bail!("ModelRegistry deployment {hash} not included after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers models until `modelCount() >= want`, from `registrants` derived accounts.
/// Returns (ids of all models, registered now, seconds, gas limit per registration).
async fn fill_registry(
    ctx: &Ctx,
    rpc: &Rpc,
    fees: &Fees,
    registry: Address,
    args: &RegistryArgs,
) -> anyhow::Result<(Vec<B256>, usize, f64, u64)> {
    let timeout = Duration::from_secs(args.timeout_s);
    let count = model_count(rpc, registry).await?;
    let mut ids = all_ids(rpc, registry, count).await?;
    if count >= args.models {
        return Ok((ids, 0, 0.0, 0));
    }
    let existing: HashSet<B256> = ids.iter().copied().collect();
    let mut calls = Vec::with_capacity(args.models - count);
    let mut i = 0;
    while calls.len() < args.models - count {
        let call = register_call(i)?;
        if !existing.contains(&model_id(&call.rootCid)) {
            calls.push(call);
        }
        i += 1;
    }

    let keys: Vec<B256> = (0..args.registrants.min(calls.len()))
        .map(|i| derived_key("lattice-bench-registrant", i))
        .collect();
    let addrs = keys
        .iter()
        .map(|k| address_of(*k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let est = quantity(
        &rpc.call(
            "eth_estimateGas",
            json!([{"from": addrs[0], "to": registry,
                    "data": hex::encode_prefixed(calls[0].abi_encode())}]),
        )
        .await
        .context("estimate registerModel")?,
    )?;
    // The first registration writes more fresh slots than later ones; keep a margin.
    let gas = est + est / 2;
    let counts = split(calls.len(), keys.len());
    let max_count = counts.iter().copied().max().unwrap_or(0) as u128;
    let need = U256::from(max_count * u128::from(gas) * fees.max_fee);
    let spin = ctx.spinner("funding registrants");
    fund(rpc, fees, &addrs, need, timeout).await?;
    spin.finish_and_clear();
    let start = nonces(rpc, &addrs, "pending").await?;

    // Registrant r sends calls r, r + R, r + 2R, … in nonce order over its own connection.
    let spin = ctx.spinner("signing registrations");
    let per: Vec<Vec<Vec<u8>>> = (0..keys.len())
        .into_par_iter()
        .map(|r| {
            calls
                .iter()
                .skip(r)
                .step_by(keys.len())
                .enumerate()
                .map(|(k, call)| {
                    let tx = fees.tx(
                        start[r] + k as u64,
                        gas,
                        TxKind::Call(registry),
                        U256::ZERO,
                        call.abi_encode().into(),
                    );
                    sign(keys[r], tx).map(|(raw, _)| raw)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    spin.finish_and_clear();
    let targets: Vec<(Address, u64)> = addrs
        .iter()
        .zip(&start)
        .zip(&per)
        .map(|((a, s), txs)| (*a, s + txs.len() as u64))
        .collect();

    let spin = ctx.spinner(&format!("registering {} models", calls.len()));
    let first_block = quantity(&rpc.call("eth_blockNumber", json!([])).await?)? + 1;
    let t0 = Instant::now();
    let tasks: Vec<_> = per
        .into_iter()
        .map(|txs| {
            let rpc = rpc.clone();
            let batch = args.batch;
            tokio::spawn(async move { submit_in_order(&rpc, &txs, batch).await })
        })
        .collect();
    for task in tasks {
        task.await.context("register task")??;
    }
    wait_for_txs(
        rpc,
        first_block,
        calls.len(),
        Duration::from_millis(20),
        timeout,
    )
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    spin.finish_and_clear();
    wait_nonces(rpc, &targets, Duration::from_millis(100), timeout).await?;
    let now = model_count(rpc, registry).await?;
    if now < args.models {
        bail!(
            "only {now} models after registering {} (some registerModel calls reverted?)",
            calls.len()
        );
    }
    let registered = now - count;
    ids.extend(calls.iter().map(|c| model_id(&c.rootCid)));
    Ok((ids, registered, seconds, gas))
}

async fn registry_bench(ctx: &Ctx, args: &RegistryArgs) -> anyhow::Result<RegistryReport> {
    let rpc = Rpc::new(&args.rpc, args.registrants)?;
    let timeout = Duration::from_secs(args.timeout_s);
    let client_version = client_version(&rpc).await;
    let fees = fees(&rpc, args.tip_gwei).await?;
    let registry = if args.deploy {
        deploy_registry(&rpc, &fees, timeout).await?
    } else {
        args.registry.unwrap_or(MODEL_REGISTRY_ADDRESS)
    };
    let code = rpc.call("eth_getCode", json!([registry, "latest"])).await?;
    if hex_bytes(&code)?.is_empty() {
        bail!("no contract at {registry} (use --deploy on chains without a genesis registry)");
    }
    let (ids, registered_now, register_seconds, register_gas) =
        fill_registry(ctx, &rpc, &fees, registry, args).await?;
    if ids.is_empty() {
        bail!("the registry is empty (--models 0?)");
    }

    // Timed: one request in flight on one keep-alive connection.
    let one = Rpc::new(&args.rpc, 1)?;
    let mut rng = SplitMix(0x1a77_1ce5);
    let spin = ctx.spinner("measuring eth_call latency");
    let mut get_times = Vec::with_capacity(args.samples);
    let mut get_bytes = 0;
    for k in 0..args.samples + 20 {
        let id = ids[rng.below(ids.len())];
        let data = ModelRegistry::getModelCall { modelId: id }.abi_encode();
        let t = Instant::now();
        let out = one.eth_call(registry, &data).await?;
        let d = t.elapsed();
        let view =
            ModelRegistry::getModelCall::abi_decode_returns(&out).context("decode getModel")?;
        if view.id != id {
            bail!("getModel({id}) returned model {}", view.id);
        }
        // The first 20 calls warm up the connection and caches.
        if k >= 20 {
            get_times.push(d);
            get_bytes += out.len();
        }
    }
    let page = args.page;
    let mut list_times = Vec::with_capacity(args.samples);
    let mut list_bytes = 0;
    for k in 0..args.samples + 20 {
        let offset = rng.below(ids.len().saturating_sub(page) + 1);
        let data = ModelRegistry::listModelsCall {
            offset: U256::from(offset),
            limit: U256::from(page),
        }
        .abi_encode();
        let t = Instant::now();
        let out = one.eth_call(registry, &data).await?;
        let d = t.elapsed();
        let views =
            ModelRegistry::listModelsCall::abi_decode_returns(&out).context("decode listModels")?;
        let want = page.min(ids.len() - offset);
        if views.len() != want {
            bail!(
                "listModels({offset}, {page}) returned {} models, expected {want}",
                views.len()
            );
        }
        if k >= 20 {
            list_times.push(d);
            list_bytes += out.len();
        }
    }
    spin.finish_and_clear();
    Ok(RegistryReport {
        rpc: args.rpc.clone(),
        chain_id: fees.chain_id,
        client_version,
        registry,
        deployed: args.deploy,
        models: ids.len(),
        registered_now,
        register_seconds,
        register_per_s: if register_seconds > 0.0 {
            registered_now as f64 / register_seconds
        } else {
            0.0
        },
        register_gas,
        page,
        get_model: Latency::of(get_times, get_bytes),
        list_models: Latency::of(list_times, list_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
    }

    #[test]
    fn round_robin_keeps_each_senders_nonces_in_order() {
        let counts = [2, 1, 3];
        let plan = round_robin(&[0, 2], &counts);
        assert_eq!(plan, vec![(0, 0), (2, 0), (0, 1), (2, 1), (2, 2)]);
    }

    #[test]
    fn batch_answers_are_matched_by_id() {
        let answer = json!([
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "nonce too low"}},
            {"jsonrpc": "2.0", "id": 0, "result": "0x01"},
        ]);
        let got = batch_answers(&answer, 2).expect("array");
        assert_eq!(got[0], Ok(json!("0x01")));
        assert!(got[1].as_ref().is_err_and(|e| e.contains("nonce too low")));
        let mut msgs = Vec::new();
        assert_eq!(count_errors(Ok(answer), 2, &mut msgs), 1);
        assert_eq!(count_errors(Ok(json!({"error": {}})), 3, &mut msgs), 3);
    }

    #[test]
    fn bench_models_have_distinct_ids() {
        let a = register_call(0).expect("call");
        let b = register_call(1).expect("call");
        assert_ne!(model_id(&a.rootCid), model_id(&b.rootCid));
        assert!(cid::Cid::try_from(a.rootCid.as_ref()).is_ok());
    }
}
