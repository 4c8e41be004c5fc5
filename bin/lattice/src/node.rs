//! `lattice node --dev` / `lattice devnet`: a single-validator dev chain with the Ethereum
//! JSON-RPC on one port; `lattice node --config FILE`: one validator of a multi-validator
//! network (commonware simplex over authenticated p2p), same JSON-RPC.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::utils::format_ether;
use anyhow::{Context as _, bail};
use clap::Args;
use lattice_chain::{DEV_CHAIN_ID, Node, NodeConfig, dev};
use lattice_evm::{DEV_ACCOUNTS, Genesis, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};

use crate::Ctx;

/// The mnemonic the dev accounts derive from (anvil's and hardhat's).
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Options of `lattice node` and `lattice devnet`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Run a single-validator dev chain (`lattice devnet` implies it).
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Run one validator of a multi-validator network: a JSON file naming the genesis,
    /// this validator's key, its p2p address and every validator's (see
    /// docs/consensus.md; `lattice testnet` writes one per node).
    #[arg(long)]
    config: Option<PathBuf>,
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
    /// The executor's key (hex, a file of hex, or a JSON keystore with --password-file):
    /// the account that runs paid inference requests and signs their receipts. On the dev
    /// chain, dev account 9 (which genesis makes an executor).
    #[arg(long, env = "LATTICE_EXECUTOR_KEY", hide_env_values = true)]
    executor_key: Option<String>,
    /// Password file of an --executor-key keystore.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Run no executor: this node answers no inference requests.
    #[arg(long)]
    no_executor: bool,
    /// Where to fetch model blocks and request documents this node lacks: an IPFS gateway
    /// (`http://host:port`, e.g. another node's --gateway-port or `lattice ipfs serve`) or a
    /// Kubo RPC API (`kubo+http://host:5001`). Repeatable; every block is checked.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Memory for loaded models (weights bytes; least recently used are dropped), e.g.
    /// 10GB, 512MiB.
    #[arg(long, default_value = "10GB", value_parser = parse_size)]
    model_cache: u64,
    /// Seconds between attempts at inference requests that failed on this node (a model no
    /// peer had yet, a key without the role) while they stay pending.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    executor_retry_s: u64,
    /// Also serve the store over the IPFS trustless gateway and Kubo RPC API on this port
    /// (same interface as JSON-RPC; 0 picks a free one), so other nodes can fetch models,
    /// request documents and outputs from this one.
    #[arg(long)]
    gateway_port: Option<u16>,
}

/// A byte size: a number with an optional unit (B, KB, MB, GB, TB powers of 1000; KiB, MiB,
/// GiB, TiB powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: not a size (e.g. 10GB, 512MiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(bytes as u64)
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
    if let Some(config) = args.config.clone() {
        return crate::testnet::run_validator(ctx, args, &config);
    }
    if !args.dev {
        bail!(
            "say which chain: `lattice node --dev` (or `lattice devnet`) for a single-validator \
             dev chain, `lattice node --config FILE` for a validator of a network"
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
    let node = open_chain(
        ctx,
        &lattice_chain::dev_genesis(args.chain_id, args.gas_limit),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(ctx, args, node, Production::Dev(sealing)))
}

/// Opens (or starts, from `genesis`) the chain in `<datadir>/chain/chain.redb`, with
/// blocks and `eth_call` capped at the genesis gas limit.
pub(crate) fn open_chain(ctx: &Ctx, genesis: &Genesis) -> anyhow::Result<Arc<Node>> {
    let dir = ctx.datadir.join("chain");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = NodeConfig {
        gas_limit: genesis.gas_limit,
        call_gas_cap: genesis.gas_limit,
        ..NodeConfig::dev()
    };
    let path = dir.join("chain.redb");
    Ok(Arc::new(Node::open(&path, genesis, config).with_context(
        || format!("opening the chain in {}", path.display()),
    )?))
}

/// Who makes blocks.
pub(crate) enum Production {
    /// This process alone (the dev chain).
    Dev(dev::Sealing),
    /// simplex, with this node as one of the validators.
    Consensus(Box<ConsensusRole>),
}

/// A running validator and what the banner says about it.
pub(crate) struct ConsensusRole {
    pub(crate) validator: lattice_consensus::Validator,
    pub(crate) network: commonware_runtime::Handle<()>,
    pub(crate) key: String,
    pub(crate) p2p: SocketAddr,
    pub(crate) validators: usize,
}

impl Production {
    fn describe(&self) -> String {
        match self {
            Production::Dev(dev::Sealing::Instant) => "instant".to_string(),
            Production::Dev(dev::Sealing::Interval(d)) => format!("every {d:?}"),
            Production::Consensus(c) => {
                format!("simplex BFT, one of {} validators", c.validators)
            }
        }
    }
}

pub(crate) async fn serve(
    ctx: &Ctx,
    args: NodeArgs,
    node: Arc<Node>,
    production: Production,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let chain_id = node.chain_id()?;
    let store = Arc::new(ctx.open_store().with_context(|| {
        format!(
            "opening the store in {} (is another lattice process using this datadir?)",
            ctx.store_dir().display()
        )
    })?);
    let peers: Vec<lattice_fetch::Source> = args
        .peers
        .iter()
        .map(|p| p.parse().with_context(|| format!("--peer {p}")))
        .collect::<anyhow::Result<_>>()?;
    let executor = match executor_key(&args, chain_id)? {
        None => None,
        Some(key) => {
            let mut config = lattice_executor::ExecutorConfig::new(key, ctx.datadir.join("models"));
            config.cache_bytes = args.model_cache;
            config.retry_every = std::time::Duration::from_secs(args.executor_retry_s);
            config.peers = peers.clone();
            Some(lattice_executor::Executor::new(
                Arc::clone(&node),
                Arc::clone(&store),
                config,
            )?)
        }
    };
    // Every node answers the read-only lattice_* methods; an executor adds the rest.
    let extra: lattice_rpc::Methods = match &executor {
        Some(ex) => lattice_executor::rpc::methods(Arc::clone(ex)),
        None => lattice_executor::rpc::read_methods(lattice_executor::Reader::new(
            Arc::clone(&node),
            Arc::clone(&store),
            peers,
        )?)
        .into(),
    };
    let server = lattice_rpc::start_with(
        addr,
        Arc::clone(&node),
        lattice_rpc::RpcConfig::default(),
        extra,
    )
    .await
    .with_context(|| format!("starting JSON-RPC on {addr}"))?;
    let local = server.local_addr();
    let gateway = match args.gateway_port {
        None => None,
        Some(port) => {
            let at = SocketAddr::new(args.host, port);
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the gateway on {at}"))?;
            Some(listener)
        }
    };
    let gateway_addr = gateway.as_ref().and_then(|l| l.local_addr().ok());
    let head = node.head()?;
    let banner = Banner {
        chain_id,
        head: head.number,
        rpc: local,
        gateway: gateway_addr,
        executor: executor.as_ref().map(|e| e.address()),
    };
    print_banner(ctx, &node, &banner, &production)?;

    if let Some(listener) = gateway {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            if let Err(e) =
                lattice_gateway::serve(listener, store, lattice_gateway::Limits::default()).await
            {
                tracing::error!(error = %e, "gateway stopped");
            }
        });
    }
    if let Some(ex) = &executor {
        tokio::spawn(Arc::clone(ex).run());
    }
    let result = match production {
        Production::Dev(sealing) => {
            let sealer = tokio::spawn(dev::run(Arc::clone(&node), sealing));
            tokio::select! {
                r = sealer => match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("block production stopped")),
                    Err(e) => Err(anyhow::anyhow!("block production task failed: {e}")),
                },
                _ = shutdown_signal() => Ok(()),
            }
        }
        Production::Consensus(role) => {
            let ConsensusRole {
                validator, network, ..
            } = *role;
            let result = tokio::select! {
                r = validator.engine => Err(anyhow::anyhow!("consensus stopped: {r:?}")),
                r = validator.application => Err(anyhow::anyhow!("the consensus application stopped: {r:?}")),
                r = network => Err(anyhow::anyhow!("p2p stopped: {r:?}")),
                _ = shutdown_signal() => Ok(()),
            };
            validator.gossip.abort();
            result
        }
    };
    server.stop();
    server.stopped().await;
    if result.is_ok() && !ctx.json {
        eprintln!("stopped at block {}", node.head()?.number);
    }
    result
}

pub(crate) async fn shutdown_signal() {
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

/// The executor's key: --executor-key, else on the dev chain dev account
/// [`lattice_chain::DEV_EXECUTOR`]; `None` with --no-executor or when there is no key.
fn executor_key(args: &NodeArgs, chain_id: u64) -> anyhow::Result<Option<alloy_primitives::B256>> {
    if args.no_executor {
        return Ok(None);
    }
    match args.executor_key.as_deref() {
        Some(k) => Ok(Some(
            crate::registry::signing_key(Some(k), args.password_file.as_deref(), chain_id, "")
                .context("--executor-key")?,
        )),
        None if chain_id == DEV_CHAIN_ID => {
            Ok(Some(DEV_ACCOUNTS[lattice_chain::DEV_EXECUTOR].private_key))
        }
        None => {
            tracing::warn!("no --executor-key: this node answers no inference requests");
            Ok(None)
        }
    }
}

/// What the start-up banner reports.
struct Banner {
    chain_id: u64,
    head: u64,
    rpc: SocketAddr,
    gateway: Option<SocketAddr>,
    executor: Option<alloy_primitives::Address>,
}

fn print_banner(
    ctx: &Ctx,
    node: &Node,
    banner: &Banner,
    production: &Production,
) -> anyhow::Result<()> {
    let Banner {
        chain_id,
        head,
        rpc: local,
        gateway,
        executor,
    } = *banner;
    let mut balances = Vec::new();
    for a in &DEV_ACCOUNTS {
        balances.push(node.account(a.address)?.balance);
    }
    let mode = production.describe();
    let consensus = match production {
        Production::Consensus(c) => Some(c),
        Production::Dev(_) => None,
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
            "executor": executor,
            "gateway": gateway.map(|g| format!("http://{g}")),
            "validator": consensus.map(|c| c.key.clone()),
            "p2p": consensus.map(|c| c.p2p.to_string()),
        });
        println!("{v}");
    } else {
        let mut out = String::new();
        let what = if consensus.is_some() {
            "validator"
        } else {
            "dev chain"
        };
        out.push_str(&format!(
            "Lattice {what} {} (chain id {chain_id})\n\n",
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
             Block production:  {mode}\n\
             Executor:          {}\n\
             Gateway:           {}\n",
            ctx.datadir.display(),
            executor.map_or_else(|| "off".to_string(), |a| a.to_string()),
            gateway.map_or_else(|| "off".to_string(), |g| format!("http://{g}")),
        ));
        if let Some(c) = consensus {
            out.push_str(&format!(
                "Validator key:     {}\nP2P:               {}\n",
                c.key, c.p2p
            ));
        }
        out.push_str(&format!("\nListening on {local}\n"));
        print!("{out}");
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    Ok(())
}
