//! `lattice`: the Lattice node and command-line tool.
//!
//! Owns argument parsing, output formatting (human or `--json`), progress
//! bars, and wiring the library crates together. Holds no logic of its own
//! that a library crate could own: the store, gateway, fetcher, chain and
//! JSON-RPC crates do the work.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_inference;
mod bench_testnet;
mod genesis;
mod import;
mod inference;
mod ipfs;
mod model;
mod node;
mod registry;
mod rpc_client;
mod testnet;
mod verify;

/// Lattice: an EVM chain node where AI models are first-class.
#[derive(Debug, Parser)]
#[command(name = "lattice", version, about)]
struct Cli {
    /// Data directory (store, chain, keys).
    #[arg(long, global = true, env = "LATTICE_DATADIR")]
    datadir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Content-addressed storage: add, read, pin, serve and fetch IPFS DAGs.
    #[command(subcommand)]
    Ipfs(ipfs::IpfsCommand),
    /// Run a node: `--dev` a single-validator dev chain, `--config FILE` one validator of
    /// a network.
    Node(node::NodeArgs),
    /// A local network of N validator processes (simplex BFT over authenticated p2p on
    /// loopback), one command.
    Testnet(testnet::TestnetArgs),
    /// Write a new ed25519 validator key and print its public key.
    ValidatorKey(testnet::KeyArgs),
    /// Write the genesis of a real network: its validators, funded accounts and the
    /// system contracts' administrator (for `lattice node --config`).
    Genesis(genesis::GenesisArgs),
    /// A local dev chain with prefunded accounts and the system contracts
    /// (`lattice node --dev`).
    Devnet(node::NodeArgs),
    /// Models: import one into the store, run one locally.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Benchmarks run side by side with their peers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Execution receipts: check one (`receipt verify`).
    #[command(subcommand)]
    Receipt(inference::ReceiptCommand),
}

/// A new, empty directory under the system's temporary directory, named for `what`, this
/// process and the time; the caller removes it.
pub(crate) fn scratch_dir(what: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "lattice-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    anyhow::Context::with_context(std::fs::create_dir_all(&dir), || {
        format!("creating {}", dir.display())
    })?;
    Ok(dir)
}

/// What every command gets: where state lives and how to print.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) datadir: PathBuf,
    pub(crate) json: bool,
}

impl Ctx {
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.datadir.join("store")
    }

    pub(crate) fn open_store(&self) -> anyhow::Result<lattice_store::Store> {
        Ok(lattice_store::Store::open(self.store_dir())?)
    }

    /// A byte progress bar on stderr, hidden when stderr is not a terminal or
    /// when printing JSON.
    pub(crate) fn progress(&self, total: Option<u64>, what: &str) -> indicatif::ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::no_length(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }

    /// A spinner with elapsed time for work whose size is not known up
    /// front; hidden like [`Ctx::progress`].
    pub(crate) fn spinner(&self, what: &str) -> indicatif::ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    pub(crate) fn print_json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }
}

fn default_datadir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lattice");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/lattice"),
        None => PathBuf::from(".lattice"),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATTICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let ctx = Ctx {
        datadir: cli.datadir.unwrap_or_else(default_datadir),
        json: cli.json,
    };
    let result = match cli.command {
        Command::Ipfs(cmd) => ipfs::run(&ctx, cmd),
        Command::Node(args) => node::run(&ctx, args),
        Command::Devnet(args) => node::run(&ctx, args.devnet()),
        Command::Testnet(args) => testnet::run(&ctx, args),
        Command::ValidatorKey(args) => testnet::keygen(&ctx, args),
        Command::Genesis(args) => genesis::run(&ctx, args),
        Command::Model(cmd) => model::run(&ctx, cmd),
        Command::Bench(cmd) => bench::run(&ctx, cmd),
        Command::Receipt(cmd) => inference::receipt(&ctx, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
