//! `lattice testnet` as real processes: four validators (simplex over authenticated p2p
//! on loopback), transactions sent to different nodes, one validator killed with
//! SIGKILL and restarted by the testnet, and every node ending on the same chain.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use lattice_evm::DEV_ACCOUNTS;
use serde_json::{Value, json};

mod support;
use support::{free_port, lattice, rpc, signed_transfer};

const SINK: Address = Address::repeat_byte(0x51);

fn quantity(v: &Value) -> u64 {
    let s = v.as_str().expect("hex quantity");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

fn transfer(key: B256, nonce: u64) -> String {
    signed_transfer(key, nonce, 31337, SINK, 1_000)
}

/// A JSON-RPC call that may fail (a node that is down or starting).
fn try_rpc(url: &str, method: &str, params: Value) -> Option<Value> {
    std::panic::catch_unwind(|| rpc(url, method, params)).ok()
}

fn head(url: &str) -> Option<u64> {
    try_rpc(url, "eth_blockNumber", json!([])).map(|v| quantity(&v))
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Testnet {
    child: std::process::Child,
    events: mpsc::Receiver<Value>,
    rpcs: Vec<String>,
    pids: Vec<u32>,
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Testnet {
    let mut child = lattice(dir)
        .args([
            "--json",
            "testnet",
            "--validators",
            "4",
            "--port",
            "0",
            "--p2p-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("testnet starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let started = events
        .recv_timeout(Duration::from_secs(60))
        .expect("the testnet reports its validators");
    assert_eq!(started["event"], "started", "{started}");
    let validators = started["validators"].as_array().expect("validators");
    assert_eq!(validators.len(), 4, "{started}");
    Testnet {
        child,
        events,
        rpcs: validators
            .iter()
            .map(|v| v["rpc"].as_str().expect("rpc").to_string())
            .collect(),
        pids: validators
            .iter()
            .map(|v| v["pid"].as_u64().expect("pid") as u32)
            .collect(),
    }
}

/// Sends `per_sender` transfers from dev accounts 1..=4, each to the node `to(i)` picks;
/// returns the hashes.
fn send(
    net: &Testnet,
    nonces: &mut [u64; 4],
    per_sender: usize,
    to: impl Fn(usize) -> usize,
) -> Vec<String> {
    let mut hashes = Vec::new();
    for round in 0..per_sender {
        for s in 0..4 {
            let node = &net.rpcs[to(round * 4 + s)];
            let raw = transfer(DEV_ACCOUNTS[s + 1].private_key, nonces[s]);
            nonces[s] += 1;
            let h = rpc(node, "eth_sendRawTransaction", json!([raw]));
            hashes.push(h.as_str().expect("hash").to_string());
        }
    }
    hashes
}

fn wait_included(url: &str, hashes: &[String], limit: Duration) -> u64 {
    let mut top = 0;
    for h in hashes {
        wait_until(&format!("{h} included on {url}"), limit, || {
            match try_rpc(url, "eth_getTransactionReceipt", json!([h])) {
                Some(r) if !r.is_null() => {
                    assert_eq!(r["status"], "0x1", "{r}");
                    top = top.max(quantity(&r["blockNumber"]));
                    true
                }
                _ => false,
            }
        });
    }
    top
}

/// Resident memory of a process, from `/proc` (Linux).
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[test]
fn four_validator_processes_survive_a_kill_9_and_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start(dir.path());
    let limit = Duration::from_secs(60);
    for url in &net.rpcs {
        wait_until(&format!("{url} finalizes blocks"), limit, || {
            head(url).is_some_and(|h| h >= 2)
        });
    }
    // Transactions sent to every node reach the proposers (gossip).
    let mut nonces = [0u64; 4];
    let first = send(&net, &mut nonces, 5, |i| i % 4);
    wait_included(&net.rpcs[0], &first, limit);
    // A running validator stays small (p2p queues are sized by peers × burst and
    // allocated up front; a burst of 100,000 once made each process 4 GB resident).
    for pid in &net.pids {
        let rss = resident_kib(*pid);
        assert!(
            rss < 512 * 1024,
            "validator pid {pid} is {rss} KiB resident"
        );
    }

    // Validator 2 dies without warning; the testnet restarts it.
    let victim = 2;
    let status = Command::new("kill")
        .args(["-9", &net.pids[victim].to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    // The other three keep finalizing meanwhile (3 of 4 is a quorum).
    let during = send(&net, &mut nonces, 5, |i| [0, 1, 3][i % 3]);
    wait_included(&net.rpcs[0], &during, limit);
    let restarted = net
        .events
        .recv_timeout(limit)
        .expect("the testnet restarts the killed validator");
    assert_eq!(restarted["event"], "restarted", "{restarted}");
    assert_eq!(restarted["index"], victim, "{restarted}");

    // Back up, it catches up by backfill and takes transactions again.
    wait_until("the restarted validator serves RPC", limit, || {
        head(&net.rpcs[victim]).is_some()
    });
    let after = send(
        &net,
        &mut nonces,
        5,
        |i| if i % 2 == 0 { victim } else { 3 },
    );
    let top = after
        .iter()
        .map(|h| {
            net.rpcs
                .iter()
                .map(|url| wait_included(url, std::slice::from_ref(h), limit))
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);

    // Every node has every block up to `top`, and they are the same blocks.
    let mut seen: Option<(Value, Value)> = None;
    for url in &net.rpcs {
        wait_until(&format!("{url} reaches {top}"), limit, || {
            head(url).is_some_and(|h| h >= top)
        });
        let b = rpc(
            url,
            "eth_getBlockByNumber",
            json!([format!("{top:#x}"), false]),
        );
        let got = (b["hash"].clone(), b["stateRoot"].clone());
        match &seen {
            None => seen = Some(got),
            Some(s) => assert_eq!(s, &got, "{url} disagrees at {top}"),
        }
        let sink = rpc(url, "eth_getBalance", json!([SINK, format!("{top:#x}")]));
        assert_eq!(
            sink,
            json!(format!("{:#x}", 1_000u64 * 60)),
            "{url}: every transfer counted once"
        );
        // Only finalized blocks are applied, so `finalized` and `safe` are the head.
        let latest = quantity(&rpc(url, "eth_blockNumber", json!([])));
        for tag in ["safe", "finalized"] {
            let b = rpc(url, "eth_getBlockByNumber", json!([tag, false]));
            assert!(
                quantity(&b["number"]) >= latest,
                "{url}: {tag} behind latest"
            );
        }
    }
}

/// `registry.hasRole(role, who)` through `eth_call`.
fn has_role(url: &str, role: B256, who: Address) -> bool {
    use alloy_sol_types::SolCall as _;
    let data = lattice_contracts::ModelRegistry::hasRoleCall { role, account: who }.abi_encode();
    let v = rpc(
        url,
        "eth_call",
        json!([{"to": lattice_evm::MODEL_REGISTRY_ADDRESS, "data": alloy_primitives::hex::encode_prefixed(data)}, "latest"]),
    );
    v.as_str().expect("hex").ends_with('1')
}

/// A real deployment from nothing, with the documented commands only: a validator key,
/// `lattice genesis` (no dev accounts; the given admin, executor and funded account),
/// a hand-written `config.json`, `lattice node --config`. The chain finalizes, serves the
/// genesis it was given (hash, chain id, balances, roles), and takes a transfer. Bad
/// genesis arguments are refused with the reason and write nothing.
#[test]
fn a_network_starts_from_lattice_genesis_and_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let key_out = lattice(d)
        .args(["--json", "validator-key"])
        .arg(d.join("v.key"))
        .output()
        .expect("validator-key");
    assert!(key_out.status.success(), "{key_out:?}");
    let key: Value = serde_json::from_slice(&key_out.stdout).expect("json");
    let public = key["public_key"].as_str().expect("public key").to_string();

    let admin = Address::repeat_byte(0xad);
    let executor = Address::repeat_byte(0xe1);
    let funded = DEV_ACCOUNTS[3];
    let genesis_args = |extra: &[&str]| {
        let mut c = lattice(d);
        c.args(["--json", "genesis", "--validator", &public])
            .args([
                "--admin",
                &admin.to_string(),
                "--executor",
                &executor.to_string(),
            ])
            .args(extra);
        c
    };
    let fund = format!("{}=100", funded.address);
    // Refused, naming the problem; nothing written.
    let base = ["--chain-id", "4242", "--fund", fund.as_str()];
    let with = |more: &[&'static str]| -> Vec<String> {
        base.iter()
            .copied()
            .chain(more.iter().copied())
            .map(String::from)
            .collect()
    };
    let twice = public.clone();
    for (extra, why) in [
        (
            vec![
                "--chain-id".into(),
                "31337".into(),
                "--fund".into(),
                fund.clone(),
            ],
            "dev chain",
        ),
        (
            vec!["--chain-id".into(), "4242".into()],
            "fund at least one account",
        ),
        (
            vec![
                "--chain-id".into(),
                "4242".into(),
                "--fund".into(),
                "0x12=1".into(),
            ],
            "not an address",
        ),
        (
            [with(&["--validator"]), vec![twice]].concat(),
            "listed twice",
        ),
        (with(&["--validator", "0x1234"]), "public key"),
    ] {
        let out_path = d.join("bad.json");
        let mut extra: Vec<String> = extra;
        extra.extend(["--out".to_string(), out_path.to_string_lossy().to_string()]);
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = genesis_args(&refs).output().expect("genesis");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{extra:?}: {err}"
        );
        assert!(!out_path.exists(), "{extra:?} wrote a genesis");
    }
    let genesis_path = d.join("genesis.json");
    let out = genesis_args(&["--chain-id", "4242", "--fund", &fund, "--out"])
        .arg(&genesis_path)
        .output()
        .expect("genesis");
    assert!(out.status.success(), "{out:?}");
    let made: Value = serde_json::from_slice(&out.stdout).expect("json");
    let again = genesis_args(&["--chain-id", "4242", "--fund", &fund, "--out"])
        .arg(&genesis_path)
        .output()
        .expect("genesis");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "an existing genesis is not overwritten"
    );

    let node_dir = d.join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let config = json!({
        "genesis": "../genesis.json",
        "key": "../v.key",
        "p2p": format!("127.0.0.1:{}", free_port()),
        "peers": {},
        "local": true,
    });
    std::fs::write(node_dir.join("config.json"), config.to_string()).expect("config");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = lattice(&node_dir)
        .args(["node", "--config"])
        .arg(node_dir.join("config.json"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let _node = support::Server(child);
    let limit = Duration::from_secs(60);
    wait_until("the validator finalizes blocks", limit, || {
        head(&url).is_some_and(|h| h >= 2)
    });
    assert_eq!(quantity(&rpc(&url, "eth_chainId", json!([]))), 4242);
    let block0 = rpc(&url, "eth_getBlockByNumber", json!(["0x0", false]));
    assert_eq!(block0["hash"], made["hash"], "{block0}");
    let balance = |who: Address| rpc(&url, "eth_getBalance", json!([who, "latest"]));
    assert_eq!(balance(funded.address), json!("0x56bc75e2d63100000")); // 100 ETH
    assert_eq!(
        balance(DEV_ACCOUNTS[0].address),
        json!("0x0"),
        "no dev allocations"
    );
    assert!(
        has_role(&url, B256::ZERO, admin),
        "admin holds DEFAULT_ADMIN_ROLE"
    );
    assert!(has_role(&url, lattice_contracts::EXECUTOR_ROLE, executor));
    assert!(!has_role(
        &url,
        lattice_contracts::EXECUTOR_ROLE,
        DEV_ACCOUNTS[9].address
    ));

    let raw = signed_transfer(funded.private_key, 0, 4242, SINK, 1_000);
    let hash = rpc(&url, "eth_sendRawTransaction", json!([raw]));
    wait_until("the transfer is finalized", limit, || {
        try_rpc(&url, "eth_getTransactionReceipt", json!([hash]))
            .is_some_and(|r| r["status"] == json!("0x1"))
    });
    assert_eq!(balance(SINK), json!("0x3e8"));
}
