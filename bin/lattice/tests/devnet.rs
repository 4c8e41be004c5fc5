//! `lattice devnet` as a real process: the real client libraries (web3.py,
//! ethers, viem, cast) against it, restarts that continue the chain, and
//! kill -9 at random moments losing no block that was reported included.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use lattice_evm::DEV_ACCOUNTS;
use serde_json::{Value, json};

mod support;
use support::{rpc, signed_transfer, start};

fn quantity(v: &Value) -> u64 {
    let s = v.as_str().expect("hex quantity");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

fn transfer(key: B256, nonce: u64, chain_id: u64) -> String {
    signed_transfer(
        key,
        nonce,
        chain_id,
        Address::repeat_byte(0x42),
        1_000 + nonce,
    )
}

#[test]
fn real_ethereum_clients_drive_the_devnet() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients");
    assert!(
        here.join("node_modules").is_dir() && here.join(".venv").is_dir(),
        "client libraries are not installed: run tests/clients/setup.sh (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path(), &[]);
    let out = Command::new("bash")
        .arg(here.join("run_all.sh"))
        .arg(&node.url)
        .arg(&node.ws)
        .env("CHAIN_ID", "31337")
        .output()
        .expect("run_all.sh runs");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client scripts failed:\n{log}");
    for client in ["web3", "ethers", "viem", "cast"] {
        assert!(
            log.contains(&format!("=== {client} passed")),
            "{client} did not pass:\n{log}"
        );
    }
}

#[test]
fn kill_9_loses_no_block_reported_included_and_restart_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain_id = 31337;
    let mut included: Vec<(String, String, u64)> = Vec::new(); // tx, block hash, number
    let mut nonces = [0u64; 4];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..3 {
        let node = start(dir.path(), &["--block-time", "0.05"]);
        assert_eq!(
            quantity(&rpc(&node.url, "eth_chainId", json!([]))),
            chain_id
        );
        // Everything reported before the previous kill is still there.
        for (tx, block_hash, number) in &included {
            let r = rpc(&node.url, "eth_getTransactionReceipt", json!([tx]));
            assert!(!r.is_null(), "round {round}: receipt of {tx} lost");
            assert_eq!(r["blockHash"].as_str(), Some(block_hash.as_str()));
            assert_eq!(quantity(&r["blockNumber"]), *number);
        }
        // Send, watch some receipts, then kill at a random moment.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let sends = 20 + (rng % 40) as usize;
        let mut sent = Vec::new();
        for i in 0..sends {
            let who = i % nonces.len();
            let n = quantity(&rpc(
                &node.url,
                "eth_getTransactionCount",
                json!([DEV_ACCOUNTS[who].address, "pending"]),
            ));
            assert!(n >= nonces[who], "pending nonce went backwards");
            nonces[who] = n + 1;
            let hash = rpc(
                &node.url,
                "eth_sendRawTransaction",
                json!([transfer(DEV_ACCOUNTS[who].private_key, n, chain_id)]),
            );
            sent.push(hash.as_str().expect("tx hash").to_string());
            if i % 3 == 0
                && let Some(tx) = sent.first().cloned()
            {
                let r = rpc(&node.url, "eth_getTransactionReceipt", json!([tx]));
                if !r.is_null() {
                    included.push((
                        tx,
                        r["blockHash"].as_str().expect("hash").to_string(),
                        quantity(&r["blockNumber"]),
                    ));
                    sent.remove(0);
                }
            }
        }
        // Make sure this round has receipts to lose: wait (a loaded CI
        // machine may not have sealed yet) until some sent tx is included.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen_this_round = false;
        while !seen_this_round {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing was ever included"
            );
            sent.retain(|tx| {
                let r = rpc(&node.url, "eth_getTransactionReceipt", json!([tx]));
                if r.is_null() {
                    return true;
                }
                included.push((
                    tx.clone(),
                    r["blockHash"].as_str().expect("hash").to_string(),
                    quantity(&r["blockNumber"]),
                ));
                seen_this_round = true;
                false
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        // More transactions in flight, then SIGKILL (Child::kill) a random
        // moment later, mid-production.
        for account in &DEV_ACCOUNTS[..nonces.len()] {
            let n = quantity(&rpc(
                &node.url,
                "eth_getTransactionCount",
                json!([account.address, "pending"]),
            ));
            rpc(
                &node.url,
                "eth_sendRawTransaction",
                json!([transfer(account.private_key, n, chain_id)]),
            );
        }
        std::thread::sleep(Duration::from_millis(rng % 150));
        drop(node);
        // Reopen the files directly: state root matches the recomputed one.
        let chain = lattice_chain::Node::open(
            &dir.path().join("chain/chain.redb"),
            &lattice_chain::dev_genesis(chain_id, 300_000_000),
            lattice_chain::NodeConfig::dev(),
        )
        .expect("reopen after kill -9");
        let head = chain.head().expect("head");
        assert_eq!(
            chain.state().recompute_state_root().expect("recompute"),
            head.state_root,
            "round {round}: state root inconsistent after kill -9"
        );
        let max_reported = included.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
        assert!(
            head.number >= max_reported,
            "head went behind a reported block"
        );
        // Nonces restart from what the chain kept (unincluded sends are gone).
        for (i, n) in nonces.iter_mut().enumerate() {
            *n = chain.account(DEV_ACCOUNTS[i].address).expect("acct").nonce;
        }
    }
    assert!(!included.is_empty(), "no receipt was ever observed");
}
