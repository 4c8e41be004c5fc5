//! Deterministic simulations of a Lattice validator network: commonware's
//! deterministic runtime and simulated p2p, each validator with its own
//! [`Node`] on its own redb file, real signed transfers in the blocks.
//!
//! Every scenario runs under several seeds; a seed fixes message latencies,
//! jitter and task interleavings, so a failure replays exactly.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, Signature, TxKind, U256};
use commonware_cryptography::{Signer as _, ed25519::PublicKey};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, probability};
use lattice_chain::{DEV_CHAIN_ID, Node, NodeConfig, dev_genesis};
use lattice_consensus::{
    Channels, ConsensusConfig, Validator, ValidatorSet, channel, dev_validator_key, start,
};
use lattice_evm::{DEV_ACCOUNTS, Genesis};

const N: usize = 4;
const GWEI: u128 = 1_000_000_000;
const SINK: Address = Address::repeat_byte(0x77);
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));
/// A validator's channels in the order of [`Channels`]' fields.
const CHANNELS: [u64; 5] = [
    channel::VOTES,
    channel::CERTIFICATES,
    channel::RESOLVER,
    channel::BLOCKS,
    channel::TXS,
];

fn seeds() -> std::ops::Range<u64> {
    let n = std::env::var("LATTICE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    0..n
}

fn genesis() -> Genesis {
    dev_genesis(DEV_CHAIN_ID, 30_000_000)
}

fn transfer(sender: usize, nonce: u64) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: DEV_CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to: TxKind::Call(SINK),
        value: U256::from(1_000u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let sig: Signature = alloy_consensus::crypto::secp256k1::sign_message(
        DEV_ACCOUNTS[sender].private_key,
        tx.signature_hash(),
    )
    .expect("valid key");
    TxEnvelope::from(tx.into_signed(sig)).encoded_2718()
}

fn runner(seed: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_start_time(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .with_timeout(Some(Duration::from_secs(3_600))),
    )
}

fn link() -> Link {
    Link {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        success_rate: probability!(1.0),
    }
}

struct Sim {
    context: deterministic::Context,
    oracle: Oracle<PublicKey, deterministic::Context>,
    set: ValidatorSet,
    keys: Vec<PublicKey>,
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Arc<Node>>>,
    running: Vec<Option<Validator>>,
    /// Next nonce per sender (dev accounts 0..N).
    nonces: Vec<u64>,
    /// [`ConsensusConfig::max_ahead`] of validators started from now on.
    max_ahead: u64,
}

fn open(dir: &Path) -> Arc<Node> {
    Arc::new(Node::open(&dir.join("chain.redb"), &genesis(), NodeConfig::dev()).expect("open node"))
}

impl Sim {
    async fn new(context: deterministic::Context) -> Self {
        let keys: Vec<PublicKey> = (0..N as u64)
            .map(|i| dev_validator_key(i).public_key())
            .collect();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 4 * 1024 * 1024,
                max_peers_per_set: NZUsize!(N),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            keys.clone(),
        )
        .await;
        network.start();
        let sim = Self {
            context,
            oracle,
            set: ValidatorSet::new(keys.clone()).expect("set"),
            dirs: (0..N)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect(),
            nodes: (0..N).map(|_| None).collect(),
            running: (0..N).map(|_| None).collect(),
            nonces: vec![0; N],
            max_ahead: ConsensusConfig::local("").max_ahead,
            keys,
        };
        sim.link_all().await;
        sim
    }

    /// A network with validators `0..n` started.
    async fn running(context: deterministic::Context, n: usize) -> Self {
        let mut sim = Self::new(context).await;
        for i in 0..n {
            sim.start(i).await;
        }
        sim
    }

    async fn link_all(&self) {
        for a in 0..N {
            for b in 0..N {
                if a != b {
                    self.link(a, b).await;
                }
            }
        }
    }

    async fn link(&self, a: usize, b: usize) {
        let _ = self
            .oracle
            .add_link(self.keys[a].clone(), self.keys[b].clone(), link())
            .await;
    }

    async fn unlink(&self, a: usize, b: usize) {
        let _ = self
            .oracle
            .remove_link(self.keys[a].clone(), self.keys[b].clone())
            .await;
    }

    async fn start(&mut self, i: usize) {
        let node = match &self.nodes[i] {
            Some(n) => Arc::clone(n),
            None => {
                let n = open(self.dirs[i].path());
                self.nodes[i] = Some(Arc::clone(&n));
                n
            }
        };
        let control = self.oracle.control(self.keys[i].clone());
        let mut reg = Vec::new();
        for ch in CHANNELS {
            reg.push(control.register(ch, QUOTA).await.expect("register"));
        }
        let mut reg = reg.into_iter();
        let mut next = || reg.next().expect("five channels");
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            blocks: next(),
            txs: next(),
        };
        let validator = start(
            self.context.child("validator").with_attribute("index", i),
            node,
            dev_validator_key(i as u64),
            &self.set,
            control,
            &ConsensusConfig {
                max_ahead: self.max_ahead,
                ..ConsensusConfig::local(format!("validator-{i}"))
            },
            channels,
        )
        .expect("start validator");
        self.running[i] = Some(validator);
    }

    /// Stops validator `i` as a crash would and closes its database.
    async fn crash(&mut self, i: usize) {
        if let Some(v) = self.running[i].take() {
            v.abort();
        }
        let node = self.nodes[i].take().expect("node open");
        // The aborted tasks drop their handles on the next polls.
        let mut node = Some(node);
        for _ in 0..100 {
            if node.as_ref().is_some_and(|n| Arc::strong_count(n) == 1) {
                node = None;
                break;
            }
            self.context.sleep(Duration::from_millis(10)).await;
        }
        assert!(node.is_none(), "validator {i}'s tasks still hold its node");
    }

    /// Submits `per_sender` transfers from each of the dev accounts 0..N, each to one
    /// running node in turn: gossip must carry it to whoever proposes.
    fn submit(&mut self, per_sender: u64) {
        let open: Vec<Arc<Node>> = self.nodes.iter().flatten().cloned().collect();
        for s in 0..N {
            for _ in 0..per_sender {
                let raw = transfer(s, self.nonces[s]);
                let node = &open[(s + self.nonces[s] as usize) % open.len()];
                self.nonces[s] += 1;
                node.submit_raw(&raw).expect("a valid transfer is pooled");
            }
        }
    }

    fn height(&self, i: usize) -> u64 {
        self.nodes[i]
            .as_ref()
            .map(|n| n.head().expect("head").number)
            .unwrap_or(0)
    }

    /// Runs until every validator in `who` has finalized `height`, feeding
    /// transfers; panics after `limit` of simulated time.
    async fn wait_for(&mut self, who: &[usize], height: u64, limit: Duration) {
        let start = self.context.current();
        loop {
            if who.iter().all(|&i| self.height(i) >= height) {
                return;
            }
            let elapsed = self
                .context
                .current()
                .duration_since(start)
                .unwrap_or_default();
            assert!(
                elapsed < limit,
                "validators {who:?} did not reach height {height} in {limit:?}: heights {:?}",
                (0..N).map(|i| self.height(i)).collect::<Vec<_>>()
            );
            self.submit(1);
            self.context.sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every pair of open nodes agrees on every block both have: hash,
    /// state root, transactions. Returns the total transactions seen on the
    /// longest chain.
    fn assert_agree(&self) -> usize {
        let open: Vec<&Arc<Node>> = self.nodes.iter().flatten().collect();
        let top = open
            .iter()
            .map(|n| n.head().expect("head").number)
            .max()
            .unwrap_or(0);
        let mut txs = 0;
        for h in 1..=top {
            let mut seen: Option<(B256, B256)> = None;
            let mut counted = false;
            for n in &open {
                let Some(b) = n.block_by_number(h).expect("read") else {
                    continue;
                };
                let got = (b.hash, b.header.state_root);
                match seen {
                    None => seen = Some(got),
                    Some(s) => assert_eq!(s, got, "nodes disagree at height {h}"),
                }
                if !counted {
                    txs += b.transactions.len();
                    counted = true;
                }
            }
        }
        eprintln!(
            "heights {:?}, {txs} transactions up to {top}",
            self.nodes
                .iter()
                .map(|n| n.as_ref().map(|n| n.head().expect("head").number))
                .collect::<Vec<_>>()
        );
        // Equal heads hold equal state: the stored root matches a
        // recomputation from the tables.
        for n in &open {
            let head = n.head().expect("head");
            assert_eq!(
                n.state().recompute_state_root().expect("recompute"),
                head.state_root
            );
        }
        txs
    }
}

#[test]
fn four_validators_finalize_transfers_and_agree() {
    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, N).await;
            sim.wait_for(&[0, 1, 2, 3], 12, Duration::from_secs(120))
                .await;
            let txs = sim.assert_agree();
            assert!(txs >= 8, "seed {seed}: only {txs} transactions finalized");
            // Every finalized transfer moved 1000 wei to the sink, on every node (each
            // counted up to its own head).
            for n in sim.nodes.iter().flatten() {
                let h = n.head().expect("head").number;
                let mine: usize = (1..=h)
                    .map(|k| {
                        let b = n.block_by_number(k).expect("read").expect("block");
                        b.transactions.len()
                    })
                    .sum();
                let expected = U256::from(1_000u64) * U256::from(mine);
                assert_eq!(n.account(SINK).expect("account").balance, expected);
            }
        });
    }
}

#[test]
fn three_keep_finalizing_with_one_crashed() {
    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, N).await;
            sim.wait_for(&[0, 1, 2, 3], 3, Duration::from_secs(60))
                .await;
            sim.crash(3).await;
            let at_crash = sim.height(0);
            sim.wait_for(&[0, 1, 2], at_crash + 10, Duration::from_secs(180))
                .await;
            let txs = sim.assert_agree();
            assert!(txs > 0, "seed {seed}: no transaction finalized");
        });
    }
}

#[test]
fn a_healed_partition_converges() {
    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, N).await;
            sim.wait_for(&[0, 1, 2, 3], 3, Duration::from_secs(60))
                .await;
            // Two halves: neither has a quorum (3 of 4).
            for a in [0, 1] {
                for b in [2, 3] {
                    sim.unlink(a, b).await;
                    sim.unlink(b, a).await;
                }
            }
            sim.submit(2);
            sim.context.sleep(Duration::from_secs(10)).await;
            let during: Vec<u64> = (0..N).map(|i| sim.height(i)).collect();
            sim.context.sleep(Duration::from_secs(10)).await;
            let later: Vec<u64> = (0..N).map(|i| sim.height(i)).collect();
            assert_eq!(during, later, "seed {seed}: a minority finalized a block");
            sim.assert_agree();
            for a in [0, 1] {
                for b in [2, 3] {
                    sim.link(a, b).await;
                    sim.link(b, a).await;
                }
            }
            let top = *later.iter().max().expect("four");
            sim.wait_for(&[0, 1, 2, 3], top + 6, Duration::from_secs(240))
                .await;
            let txs = sim.assert_agree();
            assert!(txs > 0);
        });
    }
}

#[test]
fn a_restarted_validator_catches_up_from_its_datadir() {
    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, N).await;
            sim.wait_for(&[0, 1, 2, 3], 3, Duration::from_secs(60))
                .await;
            sim.crash(2).await;
            let dir = sim.dirs[2].path().to_path_buf();
            let before = open(&dir).head().expect("head").number;
            assert!(before >= 3, "seed {seed}: crashed at {before}");
            // The others go on well past it.
            sim.wait_for(&[0, 1, 3], before + 40, Duration::from_secs(300))
                .await;
            // Restart from the same datadir (and simplex journal).
            sim.start(2).await;
            assert_eq!(sim.height(2), before, "reopened at its committed head");
            let target = (0..N).map(|i| sim.height(i)).max().expect("four") + 3;
            sim.wait_for(&[0, 1, 2, 3], target, Duration::from_secs(300))
                .await;
            sim.assert_agree();
        });
    }
}

/// Validator 3 joins with an empty datadir after the others finalized far more
/// blocks than it keeps unsolicited (`max_ahead` = 4): it fetches the missing
/// bodies by hash from the latest finalization down, commits them in order, and
/// then follows the chain.
#[test]
fn a_validator_joining_far_behind_catches_up() {
    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::new(context).await;
            sim.max_ahead = 4;
            for i in 0..3 {
                sim.start(i).await;
            }
            sim.wait_for(&[0, 1, 2], 40, Duration::from_secs(600)).await;
            sim.start(3).await;
            // While it walks back from the latest finalization it says it is catching up
            // (`eth_syncing`), and stops saying so once it is there.
            let late = Arc::clone(sim.nodes[3].as_ref().expect("node 3"));
            let mut reported = None;
            for _ in 0..20_000 {
                reported = late.syncing();
                if reported.is_some() {
                    break;
                }
                sim.context.sleep(Duration::from_millis(5)).await;
            }
            let reported = reported.expect("validator 3 never reported catching up");
            assert_eq!(reported.starting, 0, "{reported:?}");
            assert!(reported.highest >= 40, "{reported:?}");
            let target = (0..N).map(|i| sim.height(i)).max().expect("four") + 3;
            sim.wait_for(&[0, 1, 2, 3], target, Duration::from_secs(600))
                .await;
            assert_eq!(late.syncing(), None, "seed {seed}: caught up");
            drop(late);
            let txs = sim.assert_agree();
            assert!(txs > 0, "seed {seed}: no transaction finalized");
        });
    }
}

/// Validator 3 is Byzantine: whenever it leads a view it signs two
/// different proposals for it and sends each half of the others a different
/// notarize vote (commonware's `equivocator`). The honest three still
/// finalize, and never two different blocks at one height.
#[test]
fn an_equivocating_proposer_never_splits_finality() {
    use commonware_consensus::{simplex::elector::RoundRobin, simplex::mocks, types::Epoch};
    use commonware_cryptography::Keccak256;
    use lattice_consensus::{NAMESPACE, Scheme};

    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, 3).await;
            let byzantine = 3;
            let control = sim.oracle.control(sim.keys[byzantine].clone());
            let votes = control
                .register(channel::VOTES, QUOTA)
                .await
                .expect("register");
            let certificates = control
                .register(channel::CERTIFICATES, QUOTA)
                .await
                .expect("register");
            let scheme = Scheme::signer(
                NAMESPACE,
                commonware_utils::ordered::Set::from_iter_dedup(sim.keys.clone()),
                dev_validator_key(byzantine as u64),
            )
            .expect("a validator");
            let equivocator = mocks::equivocator::Equivocator::<_, _, _, Keccak256>::new(
                sim.context.child("equivocator"),
                mocks::equivocator::Config {
                    scheme,
                    elector: RoundRobin::<commonware_cryptography::Sha256>::default(),
                    epoch: Epoch::zero(),
                    relay: Arc::new(mocks::relay::Relay::new()),
                },
            );
            let _handle = equivocator.start(votes, certificates);
            sim.wait_for(&[0, 1, 2], 15, Duration::from_secs(300)).await;
            let txs = sim.assert_agree();
            assert!(txs > 0, "seed {seed}: no transaction finalized");
        });
    }
}

/// Which twin sent what on the blocks channel: `(primary?, number, hash)` of every
/// body a twin broadcast.
type Sent = Arc<std::sync::Mutex<Vec<(bool, u64, B256)>>>;

/// Routes a twin's outgoing messages to its side of the network only, keeping
/// the recipients it asked for; on the blocks channel (`log` set) records the
/// bodies each twin sent.
fn twin_forwarder(
    primary: Vec<PublicKey>,
    secondary: Vec<PublicKey>,
    log: Option<Sent>,
) -> impl Fn(
    simulated::SplitOrigin,
    &commonware_p2p::Recipients<PublicKey>,
    &commonware_runtime::IoBuf,
) -> Option<commonware_p2p::Recipients<PublicKey>>
+ Clone
+ Send
+ Sync
+ 'static {
    use commonware_p2p::Recipients;
    move |origin, asked, message| {
        let is_primary = origin == simulated::SplitOrigin::Primary;
        let side = if is_primary { &primary } else { &secondary };
        let to: Vec<PublicKey> = side
            .iter()
            .filter(|k| match asked {
                Recipients::All => true,
                Recipients::One(p) => p == *k,
                Recipients::Some(ps) => ps.contains(k),
            })
            .cloned()
            .collect();
        if let Some(log) = &log
            && let Ok(lattice_consensus::WireMessage::Block(b)) =
                lattice_consensus::WireMessage::decode(message.as_ref(), 32)
        {
            log.lock()
                .expect("log")
                .push((is_primary, b.header.number, b.hash()));
        }
        (!to.is_empty()).then_some(Recipients::Some(to))
    }
}

/// Validator 3 is Byzantine as *twins*: two complete, honest Lattice validators
/// with the same key, each with its own node (the second pays fees to another
/// coinbase, so its proposals differ), both hearing everything, one talking only to
/// validators 0 and 1, the other only to validator 2. Whenever key 3 leads, each
/// twin proposes its own *valid* block for the same view and signs a notarize vote
/// for it, so the honest validators see two valid, conflicting, signed proposals.
/// The honest three keep finalizing, agree at every height, and at least one
/// such equivocation happened.
#[test]
fn twins_signing_two_valid_blocks_never_split_finality() {
    use commonware_p2p::simulated::SplitTarget;

    for seed in seeds() {
        runner(seed).start(|context| async move {
            let mut sim = Sim::running(context, 3).await;
            let byzantine = 3;
            let key = sim.keys[byzantine].clone();
            let primary = vec![sim.keys[0].clone(), sim.keys[1].clone()];
            let secondary = vec![sim.keys[2].clone()];
            let sent: Sent = Arc::default();
            let control = sim.oracle.control(key.clone());
            let mut sides: [Vec<_>; 2] = [Vec::new(), Vec::new()];
            for ch in CHANNELS {
                let (sender, receiver) = control.register(ch, QUOTA).await.expect("register");
                let log = (ch == channel::BLOCKS).then(|| Arc::clone(&sent));
                let (s1, s2) =
                    sender.split_with(twin_forwarder(primary.clone(), secondary.clone(), log));
                let (r1, r2) = receiver.split_with(
                    sim.context.child("split").with_attribute("channel", ch),
                    |_: &(PublicKey, commonware_runtime::IoBuf)| SplitTarget::Both,
                );
                sides[0].push((s1, r1));
                sides[1].push((s2, r2));
            }
            let dirs = [
                tempfile::tempdir().expect("tempdir"),
                tempfile::tempdir().expect("tempdir"),
            ];
            let mut twins = Vec::new();
            for (t, channels) in sides.into_iter().enumerate() {
                let config = NodeConfig {
                    coinbase: Address::repeat_byte(0xa0 + t as u8),
                    ..NodeConfig::dev()
                };
                let node = Arc::new(
                    Node::open(&dirs[t].path().join("chain.redb"), &genesis(), config)
                        .expect("open twin"),
                );
                let mut channels = channels.into_iter();
                let mut next = || channels.next().expect("five channels");
                let validator = start(
                    sim.context.child("twin").with_attribute("side", t),
                    Arc::clone(&node),
                    dev_validator_key(byzantine as u64),
                    &sim.set,
                    control.clone(),
                    &ConsensusConfig::local(format!("twin-{t}")),
                    Channels {
                        votes: next(),
                        certificates: next(),
                        resolver: next(),
                        blocks: next(),
                        txs: next(),
                    },
                )
                .expect("start twin");
                twins.push((node, validator));
            }

            sim.wait_for(&[0, 1, 2], 20, Duration::from_secs(600)).await;
            let txs = sim.assert_agree();
            assert!(txs > 0, "seed {seed}: no transaction finalized");

            // Heights at which the twins sent different bodies: real equivocations.
            let sent = sent.lock().expect("log").clone();
            let mut conflicts = std::collections::BTreeMap::<u64, [Vec<B256>; 2]>::new();
            for (is_primary, number, hash) in sent {
                let slot = &mut conflicts.entry(number).or_default()[usize::from(!is_primary)];
                if !slot.contains(&hash) {
                    slot.push(hash);
                }
            }
            let equivocations: Vec<u64> = conflicts
                .iter()
                .filter(|(_, [a, b])| a.iter().any(|h| !b.is_empty() && !b.contains(h)))
                .map(|(n, _)| *n)
                .collect();
            assert!(
                !equivocations.is_empty(),
                "seed {seed}: the twins never proposed two different blocks at one height"
            );
            // Whatever the honest validators finalized at those heights is one block,
            // and the twins' own nodes never finalized anything else.
            let honest = sim.nodes[0].as_ref().expect("node 0");
            for n in &equivocations {
                let Some(b) = honest.block_by_number(*n).expect("read") else {
                    continue;
                };
                for (twin, _) in &twins {
                    if let Some(t) = twin.block_by_number(*n).expect("read") {
                        assert_eq!(
                            t.hash, b.hash,
                            "seed {seed}: a twin finalized another block at {n}"
                        );
                    }
                }
            }
            eprintln!(
                "seed {seed}: equivocations at heights {equivocations:?}, twin heights {:?}",
                twins
                    .iter()
                    .map(|(n, _)| n.head().expect("head").number)
                    .collect::<Vec<_>>()
            );
        });
    }
}
