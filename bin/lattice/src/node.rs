//! `lattice node --dev` / `lattice devnet`: a single-validator dev chain
//! with the Ethereum JSON-RPC on one port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::utils::format_ether;
use anyhow::{Context as _, bail};
use clap::Args;
use lattice_chain::{DEV_CHAIN_ID, Node, NodeConfig, dev};
use lattice_evm::{DEV_ACCOUNTS, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};

use crate::Ctx;

/// The mnemonic the dev accounts derive from (anvil's and hardhat's).
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Options of `lattice node` and `lattice devnet`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Run a single-validator dev chain (the only mode until BFT consensus
    /// lands; `lattice devnet` implies it).
    #[arg(long)]
    dev: bool,
    /// Interface the JSON-RPC server binds.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// JSON-RPC port (HTTP and WebSocket); 0 picks a free one.
    #[arg(long, short, default_value_t = 8545)]
    port: u16,
    /// Seconds between blocks (fractions allowed).
    #[arg(long, short = 'b', default_value_t = 1.0, conflicts_with = "instant")]
    block_time: f64,
    /// Seal a block as soon as transactions are pending instead of on an
    /// interval.
    #[arg(long)]
    instant: bool,
    /// Chain id of a new chain (an existing datadir keeps its own).
    #[arg(long, default_value_t = DEV_CHAIN_ID)]
    chain_id: u64,
    /// Block gas limit.
    #[arg(long, default_value_t = 300_000_000)]
    gas_limit: u64,
}

impl NodeArgs {
    /// Options of `lattice devnet`, which always runs the dev chain.
    pub(crate) fn devnet(mut self) -> Self {
        self.dev = true;
        self
    }
}

/// Runs the node until Ctrl-C or SIGTERM.
pub(crate) fn run(ctx: &Ctx, args: NodeArgs) -> anyhow::Result<()> {
    if !args.dev {
        bail!(
            "only the dev chain exists so far: run `lattice node --dev` or `lattice devnet` \
             (multi-validator consensus is not built yet)"
        );
    }
    let sealing = if args.instant {
        dev::Sealing::Instant
    } else {
        if !(args.block_time.is_finite() && args.block_time >= 0.01) {
            bail!(
                "--block-time must be at least 0.01 seconds, got {}",
                args.block_time
            );
        }
        dev::Sealing::Interval(Duration::from_secs_f64(args.block_time))
    };
    let dir = ctx.datadir.join("chain");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let genesis = lattice_chain::dev_genesis(args.chain_id, args.gas_limit);
    let config = NodeConfig {
        gas_limit: args.gas_limit,
        call_gas_cap: args.gas_limit,
        ..NodeConfig::dev()
    };
    let path = dir.join("chain.redb");
    let node = Arc::new(
        Node::open(&path, &genesis, config)
            .with_context(|| format!("opening the chain in {}", path.display()))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(ctx, args, node, sealing))
}

async fn serve(
    ctx: &Ctx,
    args: NodeArgs,
    node: Arc<Node>,
    sealing: dev::Sealing,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let server = lattice_rpc::start(addr, Arc::clone(&node), lattice_rpc::RpcConfig::default())
        .await
        .with_context(|| format!("starting JSON-RPC on {addr}"))?;
    let local = server.local_addr();
    let head = node.head()?;
    let chain_id = node.chain_id()?;
    print_banner(ctx, &node, chain_id, head.number, local, sealing)?;

    let sealer = tokio::spawn(dev::run(Arc::clone(&node), sealing));
    let result = tokio::select! {
        r = sealer => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("block production stopped")),
            Err(e) => Err(anyhow::anyhow!("block production task failed: {e}")),
        },
        _ = shutdown_signal() => Ok(()),
    };
    server.stop();
    server.stopped().await;
    if result.is_ok() && !ctx.json {
        eprintln!("stopped at block {}", node.head()?.number);
    }
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_banner(
    ctx: &Ctx,
    node: &Node,
    chain_id: u64,
    head: u64,
    local: SocketAddr,
    sealing: dev::Sealing,
) -> anyhow::Result<()> {
    let mut balances = Vec::new();
    for a in &DEV_ACCOUNTS {
        balances.push(node.account(a.address)?.balance);
    }
    let mode = match sealing {
        dev::Sealing::Instant => "instant".to_string(),
        dev::Sealing::Interval(d) => format!("every {:?}", d),
    };
    if ctx.json {
        let accounts: Vec<_> = DEV_ACCOUNTS
            .iter()
            .zip(&balances)
            .map(|(a, b)| {
                serde_json::json!({
                    "address": a.address,
                    "private_key": a.private_key,
                    "balance_wei": b.to_string(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "chain_id": chain_id,
            "head": head,
            "rpc": format!("http://{local}"),
            "ws": format!("ws://{local}"),
            "sealing": mode,
            "datadir": ctx.datadir,
            "mnemonic": DEV_MNEMONIC,
            "accounts": accounts,
            "model_registry": MODEL_REGISTRY_ADDRESS,
            "ipfs_incentives": IPFS_INCENTIVES_ADDRESS,
        });
        println!("{v}");
    } else {
        let mut out = String::new();
        out.push_str(&format!(
            "Lattice dev chain {} (chain id {chain_id})\n\n",
            env!("CARGO_PKG_VERSION")
        ));
        out.push_str("Available Accounts\n==================\n");
        for (i, (a, b)) in DEV_ACCOUNTS.iter().zip(&balances).enumerate() {
            out.push_str(&format!("({i}) {} ({} ETH)\n", a.address, format_ether(*b)));
        }
        out.push_str("\nPrivate Keys\n==================\n");
        for (i, a) in DEV_ACCOUNTS.iter().enumerate() {
            out.push_str(&format!("({i}) {}\n", a.private_key));
        }
        out.push_str(&format!(
            "\nWallet\n==================\nMnemonic:          {DEV_MNEMONIC}\n\
             Derivation path:   m/44'/60'/0'/0/\n\n\
             System contracts\n==================\n\
             ModelRegistry:     {MODEL_REGISTRY_ADDRESS}\n\
             IPFSIncentives:    {IPFS_INCENTIVES_ADDRESS}\n\n\
             Datadir:           {}\n\
             Head block:        {head}\n\
             Block production:  {mode}\n\n\
             Listening on {local}\n",
            ctx.datadir.display()
        ));
        print!("{out}");
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    Ok(())
}
