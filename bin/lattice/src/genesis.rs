//! `lattice genesis`: the genesis of a real network — its validators, the accounts it
//! funds, and who administers the system contracts — for `lattice node --config`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use alloy_primitives::{Address, B256, U256};
use anyhow::{Context as _, bail};
use clap::Args;
use lattice_chain::{DEV_CHAIN_ID, Roles, with_system_contracts};
use lattice_consensus::{genesis_key, parse_public_key};
use lattice_evm::{Genesis, GenesisAlloc, StateDb};

use crate::Ctx;

/// Arguments of `lattice genesis`.
#[derive(Debug, Args)]
pub(crate) struct GenesisArgs {
    /// A validator's ed25519 public key (`lattice validator-key` prints it); repeat for
    /// each, in the order the network lists them.
    #[arg(long = "validator", required = true)]
    validators: Vec<String>,
    /// Administrator of the system contracts (`DEFAULT_ADMIN_ROLE` of ModelRegistry and
    /// IPFSIncentives: grants executor and other roles later).
    #[arg(long)]
    admin: Address,
    /// Receives the registry's protocol share of inference fees [default: --admin].
    #[arg(long)]
    treasury: Option<Address>,
    /// Publishes the pinning rewards' Merkle roots [default: --admin].
    #[arg(long)]
    publisher: Option<Address>,
    /// An account given `EXECUTOR_ROLE` at genesis (runs paid inference); repeatable.
    #[arg(long = "executor")]
    executors: Vec<Address>,
    /// `ADDRESS=ETH`: an account funded at genesis, e.g. `0xabc…=1000`; repeatable.
    #[arg(long = "fund")]
    funds: Vec<String>,
    /// EIP-155 chain id (31337 is the dev chain's and is refused).
    #[arg(long)]
    chain_id: u64,
    /// Block gas limit.
    #[arg(long, default_value_t = 300_000_000)]
    gas_limit: u64,
    /// Genesis timestamp (seconds since the epoch) [default: now].
    #[arg(long)]
    timestamp: Option<u64>,
    /// Where to write the genesis JSON (refused if it exists); stdout when left out.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The genesis `args` describe, checked.
fn build(args: &GenesisArgs) -> anyhow::Result<Genesis> {
    if args.chain_id == DEV_CHAIN_ID {
        bail!(
            "chain id {DEV_CHAIN_ID} is the dev chain's (tools sign with the public dev keys there); pick another"
        );
    }
    if args.chain_id == 0 {
        bail!("chain id 0 is not a valid EIP-155 chain id");
    }
    let mut validators = Vec::with_capacity(args.validators.len());
    let mut seen = BTreeSet::new();
    for v in &args.validators {
        let key = parse_public_key(v).with_context(|| format!("--validator {v}"))?;
        let key: B256 = genesis_key(&key);
        if !seen.insert(key) {
            bail!("--validator {v} is listed twice");
        }
        validators.push(key);
    }
    let mut alloc = std::collections::BTreeMap::new();
    for f in &args.funds {
        let (who, eth) = f
            .split_once('=')
            .with_context(|| format!("--fund {f}: expected ADDRESS=ETH"))?;
        let who: Address = who
            .trim()
            .parse()
            .with_context(|| format!("--fund {f}: {who:?} is not an address"))?;
        let balance = crate::registry::parse_eth(eth).with_context(|| format!("--fund {f}"))?;
        let entry: &mut GenesisAlloc = alloc.entry(who).or_default();
        entry.balance = entry
            .balance
            .checked_add(balance)
            .with_context(|| format!("--fund {f}: balance overflows"))?;
    }
    if alloc
        .values()
        .all(|a: &GenesisAlloc| a.balance == U256::ZERO)
    {
        bail!("fund at least one account (--fund ADDRESS=ETH): nobody could pay for gas");
    }
    let timestamp = match args.timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs(),
    };
    let genesis = Genesis {
        validators,
        timestamp,
        gas_limit: args.gas_limit,
        alloc,
        ..Genesis::new(args.chain_id)
    };
    Ok(with_system_contracts(
        genesis,
        &Roles {
            admin: args.admin,
            treasury: args.treasury.unwrap_or(args.admin),
            publisher: args.publisher.unwrap_or(args.admin),
            executors: args.executors.clone(),
        },
    ))
}

/// `lattice genesis`: writes (or prints) the genesis and reports its block hash, after
/// building block 0 once in a scratch database so that a genesis that cannot start a
/// chain (a failing deployment or call) is refused here, not on the validators.
pub(crate) fn run(ctx: &Ctx, args: GenesisArgs) -> anyhow::Result<()> {
    let genesis = build(&args)?;
    let scratch = crate::scratch_dir("genesis")?;
    let head = StateDb::open(scratch.join("genesis.redb"))
        .context("opening a scratch database")
        .and_then(|db| {
            db.init_genesis(&genesis)
                .context("building block 0 from this genesis")
        });
    let _ = std::fs::remove_dir_all(&scratch);
    let head = head?;
    let json = serde_json::to_string_pretty(&genesis)?;
    match &args.out {
        None => {
            println!("{json}");
            eprintln!("block 0 {}", head.hash);
        }
        Some(out) => {
            if out.exists() {
                bail!("{} exists; not overwriting a genesis", out.display());
            }
            crate::testnet::write_atomic(out, json.as_bytes())?;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "genesis": out,
                        "hash": head.hash,
                        "chainId": args.chain_id,
                        "validators": genesis.validators.len(),
                    })
                );
            } else {
                println!(
                    "genesis {} (chain id {}, {} validators, block 0 {})",
                    out.display(),
                    args.chain_id,
                    genesis.validators.len(),
                    head.hash
                );
            }
        }
    }
    Ok(())
}
