//! `lattice bench testnet`: a local N-validator network (`lattice testnet`, real processes,
//! simplex over authenticated p2p on loopback) measured in one run:
//!
//! 1. **Finality latency**: single transfers sent one at a time, round-robin over the
//!    validators; for each, the time from `eth_sendRawTransaction` until the same node
//!    returns its receipt (a node only has receipts of finalized blocks). p50 / p99.
//! 2. **Throughput**: `lattice bench rpc` with its submissions spread over every
//!    validator: pre-signed transfers, timed until the last is finalized.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use anyhow::{Context as _, bail};
use lattice_evm::DEV_ACCOUNTS;
use serde_json::{Value, json};

use crate::Ctx;
use crate::bench::bench_rpc::{Percentiles, RpcArgs, RpcReport, print_rpc_report, rpc_bench};
use crate::rpc_client::{Rpc, quantity, sign};

/// Arguments of `lattice bench testnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct TestnetBenchArgs {
    /// Validators (processes) in the network.
    #[arg(long, default_value_t = 4)]
    validators: u16,
    /// Transfers timed one at a time for the finality latency.
    #[arg(long, default_value_t = 200)]
    latency_txs: usize,
    /// Transfers for the throughput phase.
    #[arg(long, default_value_t = 50_000)]
    txs: usize,
    /// Sending accounts in the throughput phase.
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Raw transactions per JSON-RPC batch in the throughput phase.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    validators: usize,
    /// Submit → receipt on the same node, one transfer at a time.
    finality: Percentiles,
    throughput: RpcReport,
}

/// Stops the testnet (SIGTERM, so it stops its validators) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        crate::testnet::terminate(&mut self.0);
    }
}

pub(crate) fn testnet(ctx: &Ctx, args: TestnetBenchArgs) -> anyhow::Result<()> {
    if args.validators == 0 || args.latency_txs == 0 {
        bail!("--validators and --latency-txs must be positive");
    }
    let dir = crate::scratch_dir("bench-testnet")?;
    let exe = std::env::current_exe().context("finding the lattice binary")?;
    let mut child = Command::new(exe)
        .arg("--datadir")
        .arg(&dir)
        .args(["--json", "testnet", "--port", "0", "--p2p-port", "0"])
        .arg("--validators")
        .arg(args.validators.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting lattice testnet")?;
    let stdout = child.stdout.take().context("testnet stdout")?;
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .context("the testnet printed nothing")?
        .context("reading the testnet's output")?;
    let started: Value = serde_json::from_str(&first).context("the testnet's start line")?;
    let rpcs: Vec<String> = started["validators"]
        .as_array()
        .context("no validators in the testnet's start line")?
        .iter()
        .filter_map(|v| v["rpc"].as_str().map(str::to_string))
        .collect();
    std::thread::spawn(move || lines.for_each(drop));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(async {
        let clients = rpcs
            .iter()
            .map(|u| Rpc::new(u, 4))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for c in &clients {
            wait_ready(c).await?;
        }
        let spin = ctx.spinner("finality latency");
        let finality = finality(&clients, args.latency_txs).await?;
        spin.finish_and_clear();
        let bench = RpcArgs {
            rpc: rpcs[0].clone(),
            submit_to: rpcs.clone(),
            txs: args.txs,
            senders: args.senders,
            batch: args.batch,
            concurrency: rpcs.len().max(4),
            tip_gwei: 1.0,
            timeout_s: 600,
        };
        let throughput = rpc_bench(ctx, &bench).await?;
        anyhow::Ok(Report {
            validators: rpcs.len(),
            finality,
            throughput,
        })
    })?;
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
    if ctx.json {
        return ctx.print_json(&report);
    }
    let f = &report.finality;
    println!(
        "{} validators (processes, loopback): finality (submit → receipt on the same node) \
         over {} transfers: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        report.validators, f.samples, f.p50_ms, f.p99_ms, f.max_ms
    );
    print_rpc_report(ctx, &report.throughput)
}

async fn wait_ready(rpc: &Rpc) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(v) = rpc.call("eth_blockNumber", json!([])).await
            && quantity(&v)? >= 1
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{} did not finalize a block within 60 s", rpc.url());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` transfers from dev account 8 one at a time, to the validators in turn, and
/// times each until its node returns the receipt.
async fn finality(clients: &[Rpc], n: usize) -> anyhow::Result<Percentiles> {
    let key: B256 = DEV_ACCOUNTS[8].private_key;
    let from = DEV_ACCOUNTS[8].address;
    let chain_id = quantity(&clients[0].call("eth_chainId", json!([])).await?)?;
    let mut nonce = quantity(
        &clients[0]
            .call("eth_getTransactionCount", json!([from, "pending"]))
            .await?,
    )?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let rpc = &clients[i % clients.len()];
        let tx = alloy_consensus::TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(0x5a)),
            value: U256::from(1u64),
            access_list: Default::default(),
            input: Bytes::new(),
        };
        let (raw, hash) = sign(key, tx)?;
        let t0 = Instant::now();
        rpc.call(
            "eth_sendRawTransaction",
            json!([format!("0x{}", alloy_primitives::hex::encode(&raw))]),
        )
        .await
        .with_context(|| format!("sending latency transfer {i} to {}", rpc.url()))?;
        loop {
            let r = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
            if !r.is_null() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("transfer {hash} not finalized within 60 s on {}", rpc.url());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t0.elapsed());
        nonce += 1;
    }
    Ok(Percentiles::of(times))
}
