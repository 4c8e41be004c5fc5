//! BFT consensus for multi-validator Lattice networks: the application side
//! of commonware's `simplex` over a [`lattice_chain::Node`].
//!
//! **Owns** the consensus application ([`Mailbox`], the actor behind it):
//! proposing a block on the parent simplex names (built from the pool and
//! executed on that parent's state, finalized or not), verifying a proposal
//! (its body fetched, re-executed, every root compared), relaying bodies,
//! fetching bodies it lacks from peers (by hash, so every fetched block is
//! authenticated by the finalized hash it descends from), and committing
//! finalized blocks to the node in height order; the simplex engine's
//! configuration ([`ConsensusConfig`]) and wiring ([`start`]); ed25519
//! validator identities ([`ValidatorSet`]).
//!
//! **Never** commits a block that simplex has not finalized (itself or
//! through a finalized descendant), never commits out of height order, never
//! writes consensus by hand (votes, certificates, view changes and their
//! journal are simplex's), and never opens sockets itself: it gets p2p
//! channels (commonware's authenticated network in a node, the simulated
//! one in tests).
//!
//! # Flow
//! ```text
//! simplex ─propose(ctx)─► actor: state after ctx.parent (pending overlay) ─► Node::propose_on ─► digest
//! simplex ─broadcast────► actor ─► block channel ─► peers keep the body
//! simplex ─verify(ctx,d)► actor: body (fetched if missing) ─► Node::verify_on ─► true/false
//! simplex ─Finalization─► actor: walk target → head via bodies (fetch missing) ─► Node::finalize each
//! ```
//!
//! Main types: [`Block`], [`Digest`], [`WireMessage`], [`Mailbox`],
//! [`ConsensusConfig`], [`ValidatorSet`], [`Channels`], [`Validator`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod app;
mod block;
mod gossip;
mod net;

use std::sync::Arc;
use std::time::Duration;

use commonware_consensus::{
    simplex::{
        self,
        config::{Floor, ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{
    Signer as _,
    ed25519::{PrivateKey, PublicKey},
};
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_utils::{NZDuration, NZU16, NZUsize, ordered::Set};
use lattice_chain::Node;
use rand_core::CryptoRng;

pub use app::Mailbox;
pub use block::{Block, DecodeError, Digest, MAX_BLOCK_TXS, WireMessage, digest, hash};
pub use gossip::{BatchError, decode_batch, encode_batch};
pub use net::{
    MAX_MESSAGE_SIZE, NetworkConfig, P2P_NAMESPACE, generate_key, parse_private_key,
    parse_public_key, private_key_hex, public_key_hex, start_validator,
};

/// Simplex's signing scheme here: one ed25519 key per validator, attributable
/// votes, certificates that list their signers.
pub type Scheme = simplex::scheme::ed25519::Scheme;
/// The context simplex hands `propose` / `verify`.
pub type Context = simplex::types::Context<Digest, PublicKey>;

/// p2p channel ids (one namespace of channels per network).
pub mod channel {
    /// Votes.
    pub const VOTES: u64 = 0;
    /// Certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Simplex's certificate fetching.
    pub const RESOLVER: u64 = 2;
    /// Block bodies: proposals, requests, responses.
    pub const BLOCKS: u64 = 3;
    /// Transaction gossip.
    pub const TXS: u64 = 4;
}

/// Signature namespace of Lattice consensus votes.
pub const NAMESPACE: &[u8] = b"lattice-consensus-v1";

/// The validators, as named by genesis: their ed25519 public keys.
#[derive(Debug, Clone)]
pub struct ValidatorSet {
    keys: Set<PublicKey>,
}

/// Why a validator set is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No validator, or one listed twice.
    #[error("the validator set must be non-empty and without duplicates")]
    BadSet,
    /// This node's key is not in the set.
    #[error("this node's key is not a validator")]
    NotAValidator,
    /// A validator without a p2p address.
    #[error("no p2p address for validator {0}")]
    NoAddress(String),
    /// Not a key.
    #[error("not {0}: expected 0x and 64 hex digits")]
    BadKey(&'static str),
}

impl ValidatorSet {
    /// The set of `keys` (order does not matter; duplicates are refused).
    pub fn new(keys: Vec<PublicKey>) -> Result<Self, ConfigError> {
        let n = keys.len();
        let keys = Set::from_iter_dedup(keys);
        if n == 0 || keys.len() != n {
            return Err(ConfigError::BadSet);
        }
        Ok(Self { keys })
    }

    /// The set genesis names ([`lattice_evm::Genesis::validators`]).
    pub fn from_genesis(keys: &[alloy_primitives::B256]) -> Result<Self, ConfigError> {
        let keys = keys
            .iter()
            .map(|k| net::public_key_from(k.as_slice()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> &[PublicKey] {
        self.keys.as_ref()
    }
}

/// A validator's public key as genesis lists it.
pub fn genesis_key(key: &PublicKey) -> alloy_primitives::B256 {
    alloy_primitives::B256::from_slice(key.as_ref())
}

/// Dev validator `i`'s key (deterministic; for tests and `lattice testnet`
/// only, like the dev accounts).
pub fn dev_validator_key(i: u64) -> PrivateKey {
    PrivateKey::from_seed(i)
}

/// Simplex timing and storage settings.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// How long to wait for a leader's proposal before voting to skip.
    pub leader_timeout: Duration,
    /// How long to wait for a notarization before voting to skip.
    pub certification_timeout: Duration,
    /// How often to rebroadcast a skip vote while stuck.
    pub timeout_retry: Duration,
    /// Certificate fetch timeout.
    pub fetch_timeout: Duration,
    /// Views of votes kept behind the finalized view.
    pub view_retention: u64,
    /// Storage partition (prefix) of simplex's vote journal.
    pub partition: String,
    /// Unsolicited block bodies (proposals, relays) more than this many blocks above
    /// the finalized head are dropped. Bodies this validator asked for by hash, and
    /// their ancestors, are kept at any height: that is how a validator that was down
    /// for long catches up.
    pub max_ahead: u64,
}

impl ConsensusConfig {
    /// Settings for a LAN / loopback testnet.
    pub fn local(partition: impl Into<String>) -> Self {
        Self {
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(1),
            view_retention: 10,
            partition: partition.into(),
            max_ahead: 4096,
        }
    }
}

/// The five p2p channels a validator needs, each a `(sender, receiver)`
/// registered under the ids in [`channel`].
pub struct Channels<S, R> {
    /// [`channel::VOTES`].
    pub votes: (S, R),
    /// [`channel::CERTIFICATES`].
    pub certificates: (S, R),
    /// [`channel::RESOLVER`].
    pub resolver: (S, R),
    /// [`channel::BLOCKS`].
    pub blocks: (S, R),
    /// [`channel::TXS`].
    pub txs: (S, R),
}

/// A running validator: simplex's engine and the application actor.
pub struct Validator {
    /// Simplex (voter, batcher, resolver).
    pub engine: Handle<()>,
    /// The application actor.
    pub application: Handle<()>,
    /// Transaction gossip.
    pub gossip: Handle<()>,
}

impl Validator {
    /// Stops both tasks at once, as a crash would (simplex's journal keeps
    /// what it had synced; the node keeps what it had committed).
    pub fn abort(&self) {
        self.engine.abort();
        self.application.abort();
        self.gossip.abort();
    }
}

/// Starts simplex and the application for the validator holding `key`,
/// building on and committing to `node`.
pub fn start<E, B, S, R>(
    context: E,
    node: Arc<Node>,
    key: PrivateKey,
    validators: &ValidatorSet,
    blocker: B,
    config: &ConsensusConfig,
    channels: Channels<S, R>,
) -> Result<Validator, ConfigError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    B: Blocker<PublicKey = PublicKey>,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let scheme = Scheme::signer(NAMESPACE, validators.keys.clone(), key)
        .ok_or(ConfigError::NotAValidator)?;
    let genesis = node
        .header(0)
        .ok()
        .flatten()
        .map(|h| digest(h.hash_slow()))
        .ok_or(ConfigError::BadSet)?;
    let (mailbox, inbox) = app::mailbox();
    let gossip = context.child("gossip").spawn({
        let node = Arc::clone(&node);
        move |_| gossip::run(node, channels.txs)
    });
    let actor = app::Actor::new(
        context.child("application"),
        node,
        inbox,
        channels.blocks,
        config.max_ahead,
    );
    let application = context
        .child("application_task")
        .spawn(move |_| actor.run());
    let cfg = simplex::config::Config {
        scheme,
        elector: RoundRobin::<commonware_cryptography::Sha256>::default(),
        blocker,
        automaton: mailbox.clone(),
        relay: mailbox.clone(),
        reporter: mailbox,
        track_historical_votes: false,
        strategy: Sequential,
        partition: config.partition.clone(),
        mailbox_size: NZUsize!(1024),
        epoch: Epoch::zero(),
        floor: Floor::Genesis(genesis),
        replay_buffer: NZUsize!(1024 * 1024),
        write_buffer: NZUsize!(1024 * 1024),
        page_cache: CacheRef::new(NZU16!(1024), NZUsize!(10)),
        leader_timeout: config.leader_timeout,
        certification_timeout: config.certification_timeout,
        timeout_retry: config.timeout_retry,
        view_retention: ViewDelta::new(config.view_retention.max(1)),
        skip: SkipPolicy::Enabled {
            timeout: config.certification_timeout * 4,
            budget: SkipBudget::Participants,
        },
        fetch_timeout: NZDuration!(config.fetch_timeout),
        fetch_retry_delay: Duration::from_millis(100),
        forward: ForwardPolicy::SilentVoters,
    };
    let engine = simplex::Engine::new(context.child("engine"), cfg);
    let engine = engine.start(channels.votes, channels.certificates, channels.resolver);
    Ok(Validator {
        engine,
        application,
        gossip,
    })
}
