//! Kill -9 consistency: a child process commits blocks in a loop and is
//! killed with SIGKILL at random moments; every time, the reopened database
//! must be at a committed block whose stored state root equals the root
//! recomputed from the stored accounts and storage.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use alloy_primitives::{Address, Bytes, U256, address};
use common::*;
use lattice_evm::{DEV_ACCOUNTS, Genesis, GenesisAlloc, StateDb};

const DB_ENV: &str = "LATTICE_EVM_CRASH_DB";
const COUNTER_AT: Address = address!("0x00000000000000000000000000000000000c0de0");

fn genesis() -> Genesis {
    let mut g = Genesis::dev(CHAIN_ID);
    g.alloc.insert(
        COUNTER_AT,
        GenesisAlloc {
            code: Bytes::from_static(&COUNTER),
            nonce: 1,
            ..Default::default()
        },
    );
    g
}

/// The child: commits blocks of 300 transactions forever, printing each
/// committed block number. Does nothing unless started by the parent test.
#[test]
#[ignore = "child process of kill9_reopens_at_the_last_committed_block"]
fn crash_child_commit_loop() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let db = StateDb::open(&path).expect("open");
    if db.latest().expect("read").is_none() {
        db.init_genesis(&genesis()).expect("genesis");
    }
    loop {
        let number = db.latest().expect("read").expect("head").number + 1;
        let mut txs = Vec::new();
        for (i, dev) in DEV_ACCOUNTS.iter().enumerate() {
            let mut nonce = db
                .account(dev.address)
                .expect("read")
                .map_or(0, |a| a.nonce);
            for j in 0..29u64 {
                let mut to = [0u8; 20];
                to[..8].copy_from_slice(&number.to_be_bytes());
                to[8] = i as u8;
                to[9..17].copy_from_slice(&j.to_be_bytes());
                let to = Address::from(to);
                txs.push(eip1559(
                    dev.private_key,
                    nonce,
                    to,
                    U256::from(j + 1),
                    Bytes::new(),
                    21_000,
                ));
                nonce += 1;
            }
            txs.push(eip1559(
                dev.private_key,
                nonce,
                COUNTER_AT,
                U256::ZERO,
                Bytes::new(),
                60_000,
            ));
        }
        let block = build(&db, txs);
        assert!(block.rejected.is_empty(), "{:?}", block.rejected);
        println!("committed {}", block.header.number);
    }
}

#[test]
fn kill9_reopens_at_the_last_committed_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let exe = std::env::current_exe().expect("test binary");
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut last_head = 0;
    for round in 0..8 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_commit_loop",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("committed ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let _ = tx.send(n);
                }
            }
        });
        // Wait for one committed block, then kill at a random point of a later one.
        let first = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("child commits a block");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 400));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        let printed = rx.try_iter().fold(first, u64::max);

        let db = StateDb::open(&path).expect("reopen after kill");
        let head = db.latest().expect("read").expect("head");
        assert!(
            head.number >= printed,
            "round {round}: head {} < printed {printed}",
            head.number
        );
        assert!(
            head.number <= printed + 1,
            "round {round}: head {} > printed {printed} + 1",
            head.number
        );
        assert!(head.number >= last_head);
        last_head = head.number;
        assert_eq!(
            db.recompute_state_root().expect("recompute"),
            head.state_root,
            "round {round}: stored root differs from the stored state"
        );
        let header = db.header(head.number).expect("read").expect("head header");
        assert_eq!(header.hash_slow(), head.hash);
        assert_eq!(header.state_root, head.state_root);
        assert_eq!(db.block_hash(head.number).expect("read"), Some(head.hash));
        let parent = db
            .header(head.number - 1)
            .expect("read")
            .expect("parent header");
        assert_eq!(header.parent_hash, parent.hash_slow());
        // Every committed block ran its counter call exactly 10 times.
        assert_eq!(
            db.storage(COUNTER_AT, U256::ZERO).expect("slot"),
            U256::from(10 * head.number)
        );
    }
}
