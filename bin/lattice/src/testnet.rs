//! Multi-validator networks: `lattice node --config FILE` (one validator) and
//! `lattice testnet --validators N` (N validator processes on loopback, one command).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use commonware_cryptography::Signer as _;
use commonware_runtime::{Runner as _, Supervisor as _};
use lattice_chain::DEV_CHAIN_ID;
use lattice_consensus::{
    ConsensusConfig, NetworkConfig, ValidatorSet, generate_key, genesis_key, parse_private_key,
    parse_public_key, private_key_hex, public_key_hex, start_validator,
};
use lattice_evm::Genesis;
use serde::{Deserialize, Serialize};

use crate::Ctx;
use crate::node::{ConsensusRole, NodeArgs, Production};

/// The file `lattice node --config` reads. Relative paths are relative to the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidatorConfig {
    /// Genesis JSON (geth's format plus `deployments`, `calls` and `validators`).
    pub(crate) genesis: PathBuf,
    /// A file holding this validator's ed25519 key: `0x` and 64 hex digits.
    pub(crate) key: PathBuf,
    /// Where this validator's p2p listens.
    pub(crate) p2p: SocketAddr,
    /// Every validator's p2p address, by public key (`0x` and 64 hex digits).
    pub(crate) peers: BTreeMap<String, SocketAddr>,
    /// Loopback/private-network p2p settings (private addresses allowed, quick redials).
    #[serde(default)]
    pub(crate) local: bool,
}

fn read_config(path: &Path) -> anyhow::Result<(ValidatorConfig, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the validator config {}", path.display()))?;
    let config: ValidatorConfig = serde_json::from_str(&text)
        .with_context(|| format!("parsing the validator config {}", path.display()))?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((config, base))
}

/// `lattice node --config FILE`: opens the chain from the config's genesis and runs this
/// validator (p2p, simplex, the application) beside the usual JSON-RPC, executor and
/// gateway, on commonware's tokio runtime.
pub(crate) fn run_validator(ctx: &Ctx, args: NodeArgs, path: &Path) -> anyhow::Result<()> {
    let (config, base) = read_config(path)?;
    let genesis_path = base.join(&config.genesis);
    let genesis = Genesis::from_json(
        &std::fs::read_to_string(&genesis_path)
            .with_context(|| format!("reading the genesis {}", genesis_path.display()))?,
    )
    .with_context(|| format!("parsing the genesis {}", genesis_path.display()))?;
    if genesis.validators.is_empty() {
        bail!(
            "{} names no validators: a network needs a `validators` list (a dev chain runs \
             with `lattice node --dev`)",
            genesis_path.display()
        );
    }
    let set = ValidatorSet::from_genesis(&genesis.validators)
        .with_context(|| format!("the validators of {}", genesis_path.display()))?;
    let key_path = base.join(&config.key);
    let key = parse_private_key(
        &std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading the validator key {}", key_path.display()))?,
    )
    .with_context(|| format!("the validator key in {}", key_path.display()))?;
    let public = key.public_key();
    if !set.keys().contains(&public) {
        bail!(
            "the key in {} ({}) is not one of the {} validators genesis names",
            key_path.display(),
            public_key_hex(&public),
            set.keys().len()
        );
    }
    let mut peers = Vec::new();
    for (k, addr) in &config.peers {
        let pk = parse_public_key(k).with_context(|| format!("peer {k} in {}", path.display()))?;
        peers.push((pk, *addr));
    }
    let net = NetworkConfig {
        listen: config.p2p,
        peers,
        local: config.local,
    };

    let node = crate::node::open_chain(ctx, &genesis)?;
    // simplex's vote journal lives beside the chain, under a fixed partition name, so a
    // restarted validator replays what it voted and never signs a conflicting vote.
    let storage = ctx.datadir.join("consensus");
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new()
            .with_worker_threads(2)
            .with_storage_directory(storage),
    );
    let consensus = ConsensusConfig::local("lattice-simplex");
    let ctx = ctx.clone();
    runner.start(|context| async move {
        let (validator, network) = start_validator(
            context.child("lattice"),
            Arc::clone(&node),
            key,
            &set,
            &consensus,
            &net,
        )
        .context("starting the validator")?;
        let role = ConsensusRole {
            validator,
            network,
            key: public_key_hex(&public),
            p2p: net.listen,
            validators: set.keys().len(),
        };
        crate::node::serve(&ctx, args, node, Production::Consensus(Box::new(role))).await
    })
}

/// Options of `lattice testnet`.
#[derive(Debug, Args)]
pub(crate) struct TestnetArgs {
    /// Validator processes to run (1 to 10).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=10))]
    validators: u16,
    /// JSON-RPC port of validator 0; validator i gets port + i. 0 picks free ports.
    #[arg(long, short, default_value_t = 8545)]
    port: u16,
    /// p2p port of validator 0; validator i gets p2p-port + i. 0 picks free ports.
    #[arg(long, default_value_t = 30400)]
    p2p_port: u16,
    /// Chain id of a new testnet (an existing one keeps its genesis).
    #[arg(long, default_value_t = DEV_CHAIN_ID)]
    chain_id: u64,
    /// Block gas limit of a new testnet.
    #[arg(long, default_value_t = 300_000_000)]
    gas_limit: u64,
    /// Write the genesis, keys and configs, print them, and start nothing.
    #[arg(long)]
    init_only: bool,
}

/// One validator of a testnet, as printed.
#[derive(Debug, Clone, Serialize)]
struct Member {
    index: usize,
    datadir: PathBuf,
    config: PathBuf,
    validator: String,
    rpc: String,
    p2p: SocketAddr,
    log: PathBuf,
    pid: Option<u32>,
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn ports(base: u16, n: usize) -> anyhow::Result<Vec<u16>> {
    (0..n)
        .map(|i| {
            if base == 0 {
                free_port()
            } else {
                base.checked_add(i as u16)
                    .with_context(|| format!("port {base} + {i} is out of range"))
            }
        })
        .collect()
}

/// Writes a new testnet in `dir`: one key, datadir and config per validator, and the
/// genesis (the dev chain's accounts and contracts, these validators).
fn init(dir: &Path, args: &TestnetArgs) -> anyhow::Result<()> {
    let n = usize::from(args.validators);
    let p2p = ports(args.p2p_port, n)?;
    let keys: Vec<_> = (0..n).map(|_| generate_key()).collect();
    let mut genesis = lattice_chain::dev_genesis(args.chain_id, args.gas_limit);
    genesis.validators = keys.iter().map(|k| genesis_key(&k.public_key())).collect();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let peers: BTreeMap<String, SocketAddr> = keys
        .iter()
        .zip(&p2p)
        .map(|(k, p)| {
            (
                public_key_hex(&k.public_key()),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *p),
            )
        })
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("creating {}", node_dir.display()))?;
        write_private(&node_dir.join("validator.key"), &private_key_hex(key))?;
        let config = ValidatorConfig {
            genesis: PathBuf::from("../genesis.json"),
            key: PathBuf::from("validator.key"),
            p2p: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p2p[i]),
            peers: peers.clone(),
            local: true,
        };
        write_atomic(
            &node_dir.join("config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
    }
    // The genesis last: its presence marks a complete testnet.
    write_atomic(
        &dir.join("genesis.json"),
        serde_json::to_string_pretty(&genesis)?.as_bytes(),
    )
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader (or a
/// crash) never sees half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_via_tmp(path, bytes, false)
}

/// [`write_atomic`] for a secret: readable by the owner only, from the first byte.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    write_via_tmp(path, text.as_bytes(), true)
}

fn write_via_tmp(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        open.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = open
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// `lattice testnet`: N validator processes of one network on loopback, restarted if
/// one dies, stopped together on Ctrl-C / SIGTERM.
pub(crate) fn run(ctx: &Ctx, args: TestnetArgs) -> anyhow::Result<()> {
    let dir = ctx.datadir.clone();
    if !dir.join("genesis.json").exists() {
        init(&dir, &args)?;
    }
    let genesis = Genesis::from_json(&std::fs::read_to_string(dir.join("genesis.json"))?)
        .context("reading the testnet's genesis")?;
    let n = genesis.validators.len();
    let rpc_ports = ports(args.port, n)?;
    let mut members = Vec::with_capacity(n);
    for (i, rpc_port) in rpc_ports.iter().enumerate() {
        let node_dir = dir.join(format!("node{i}"));
        let config_path = node_dir.join("config.json");
        let (config, _) = read_config(&config_path)?;
        let key = std::fs::read_to_string(node_dir.join("validator.key"))?;
        let key = parse_private_key(&key)?;
        members.push(Member {
            index: i,
            datadir: node_dir.clone(),
            config: config_path,
            validator: public_key_hex(&key.public_key()),
            rpc: format!("http://127.0.0.1:{rpc_port}"),
            p2p: config.p2p,
            log: node_dir.join("node.log"),
            pid: None,
        });
    }
    if args.init_only {
        return report(ctx, &dir, &members, genesis.config.chain_id);
    }
    let exe = std::env::current_exe().context("finding the lattice binary")?;
    let spawn = |m: &Member, port: u16| -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("opening {}", m.log.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--datadir")
            .arg(&m.datadir)
            .arg("--json")
            .arg("node")
            .arg("--config")
            .arg(&m.config)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // One executor per network: the dev executor key signs from one process only.
        if m.index != 0 {
            cmd.arg("--no-executor");
        }
        cmd.spawn()
            .with_context(|| format!("starting validator {}", m.index))
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        // Ctrl-C / SIGTERM set the flag (installed before any validator starts); the
        // supervising loop notices within its poll interval.
        let stop = Arc::clone(&stop);
        let signals = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the signal handler")?;
        std::thread::spawn(move || {
            signals.block_on(crate::node::shutdown_signal());
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let mut children = Vec::with_capacity(n);
    for (m, port) in members.iter_mut().zip(&rpc_ports) {
        let child = spawn(m, *port)?;
        m.pid = Some(child.id());
        children.push(child);
    }
    report(ctx, &dir, &members, genesis.config.chain_id)?;

    let mut restarts: Vec<Vec<Instant>> = vec![Vec::new(); n];
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        for (i, child) in children.iter_mut().enumerate() {
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            restarts[i].retain(|t| t.elapsed() < Duration::from_secs(60));
            if restarts[i].len() >= 5 {
                eprintln!(
                    "validator {i} exited ({status}) 5 times within a minute; see {}",
                    members[i].log.display()
                );
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                break;
            }
            restarts[i].push(Instant::now());
            std::thread::sleep(Duration::from_millis(300));
            let fresh = spawn(&members[i], rpc_ports[i])?;
            event(
                ctx,
                &serde_json::json!({
                    "event": "restarted",
                    "index": i,
                    "status": status.to_string(),
                    "pid": fresh.id(),
                }),
                &format!(
                    "validator {i} exited ({status}); restarted as pid {}",
                    fresh.id()
                ),
            );
            *child = fresh;
        }
    }
    for child in &mut children {
        terminate(child);
    }
    for child in &mut children {
        let _ = child.wait();
    }
    if !ctx.json {
        eprintln!("testnet stopped");
    }
    Ok(())
}

fn event(ctx: &Ctx, json: &serde_json::Value, text: &str) {
    use std::io::Write as _;
    if ctx.json {
        println!("{json}");
    } else {
        eprintln!("{text}");
    }
    let _ = std::io::stdout().flush();
}

fn report(ctx: &Ctx, dir: &Path, members: &[Member], chain_id: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "started",
                "chain_id": chain_id,
                "datadir": dir,
                "genesis": dir.join("genesis.json"),
                "validators": members,
            })
        );
    } else {
        println!(
            "Lattice testnet: {} validators, chain id {chain_id}, in {}\n",
            members.len(),
            dir.display()
        );
        for m in members {
            println!(
                "validator {}  rpc {}  p2p {}  key {}  log {}{}",
                m.index,
                m.rpc,
                m.p2p,
                m.validator,
                m.log.display(),
                m.pid.map(|p| format!("  pid {p}")).unwrap_or_default()
            );
        }
        println!(
            "\nOne validator by hand: lattice --datadir {} node --config {}",
            members
                .first()
                .map(|m| m.datadir.display().to_string())
                .unwrap_or_default(),
            members
                .first()
                .map(|m| m.config.display().to_string())
                .unwrap_or_default()
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Asks a process to stop (SIGTERM), then kills it if it has not after 10 s.
pub(crate) fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
}

/// `lattice validator-key FILE`: writes a new ed25519 validator key and prints its public
/// key (for a genesis `validators` list and the peers' configs).
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// Where to write the key (refused if it exists).
    out: PathBuf,
}

pub(crate) fn keygen(ctx: &Ctx, args: KeyArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!("{} exists; not overwriting a key", args.out.display());
    }
    let key = generate_key();
    write_private(&args.out, &private_key_hex(&key))?;
    let public = public_key_hex(&key.public_key());
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "file": args.out, "public_key": public })
        );
    } else {
        println!("{public}");
    }
    Ok(())
}
