//! The application side of simplex over a [`Node`]: one actor that
//! proposes, verifies, relays bodies, fetches missing ones, and commits
//! finalized blocks in order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_consensus::Header;
use alloy_primitives::B256;
use commonware_actor::Feedback;
use commonware_consensus::{
    Automaton, CertifiableAutomaton, Relay, Reporter, Viewable,
    simplex::{Plan, types::Activity},
    types::View,
};
use commonware_cryptography::ed25519::PublicKey;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Spawner};
use commonware_utils::channel::{mpsc, oneshot};
use lattice_chain::Node;
use lattice_evm::{ExecutedBlock, PendingState};
use tracing::{debug, error, info, warn};

use crate::{
    Context, Scheme,
    block::{Block, Digest, WireMessage, digest, hash},
};

/// Most blocks in one backfill response.
pub(crate) const MAX_RESPONSE_BLOCKS: usize = 32;
/// How often the actor wakes on its own (missing bodies asked for again, a proposal
/// waiting for transactions reconsidered).
const TICK: Duration = Duration::from_millis(20);
/// How long before the same missing body is asked for again.
const FETCH_RETRY: Duration = Duration::from_millis(200);
/// How long a leader with an empty pool waits for transactions before proposing an
/// empty block (below simplex's leader timeout).
const EMPTY_BLOCK_DELAY: Duration = Duration::from_millis(250);
/// Seconds a proposal's timestamp may be ahead of this validator's clock.
const MAX_CLOCK_DRIFT: u64 = 15;
/// Most finalized blocks committed in one pass of the actor.
const MAX_COMMITS_PER_PASS: usize = 256;
/// Most missing bodies asked for at once.
const MAX_FETCH: usize = 8;

pub(crate) enum Message {
    Propose {
        context: Context,
        response: oneshot::Sender<Digest>,
    },
    Verify {
        context: Context,
        payload: Digest,
        response: oneshot::Sender<bool>,
    },
    Broadcast {
        payload: Digest,
        plan: Plan<PublicKey>,
    },
    Finalized {
        view: View,
        payload: Digest,
    },
}

/// The handle simplex drives: [`Automaton`], [`CertifiableAutomaton`]
/// (default: certify what a quorum notarized), [`Relay`] and [`Reporter`].
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::UnboundedSender<Message>,
}

impl Mailbox {
    fn send(&self, msg: Message) -> Feedback {
        if self.sender.send(msg).is_ok() {
            Feedback::Ok
        } else {
            Feedback::Closed
        }
    }
}

impl Automaton for Mailbox {
    type Context = Context;
    type Digest = Digest;

    async fn propose(&mut self, context: Context) -> oneshot::Receiver<Digest> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Propose { context, response });
        receiver
    }

    async fn verify(&mut self, context: Context, payload: Digest) -> oneshot::Receiver<bool> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Verify {
            context,
            payload,
            response,
        });
        receiver
    }
}

impl CertifiableAutomaton for Mailbox {}

impl Relay for Mailbox {
    type Digest = Digest;
    type PublicKey = PublicKey;
    type Plan = Plan<PublicKey>;

    fn broadcast(&mut self, payload: Digest, plan: Plan<PublicKey>) -> Feedback {
        self.send(Message::Broadcast { payload, plan })
    }
}

impl Reporter for Mailbox {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Activity::Finalization(f) => self.send(Message::Finalized {
                view: f.view(),
                payload: f.proposal.payload,
            }),
            _ => Feedback::Ok,
        }
    }
}

/// Why a parent's state is unavailable for good.
enum Unusable {
    /// Below the finalized head, or on a branch that failed verification.
    Invalid,
}

pub(crate) struct Actor<E, S, R> {
    context: E,
    node: Arc<Node>,
    mailbox: mpsc::UnboundedReceiver<Message>,
    sender: S,
    receiver: R,
    /// Bodies of uncommitted blocks (proposed, relayed or fetched).
    bodies: HashMap<B256, Arc<Block>>,
    /// Blocks executed on their parent's state, not committed.
    executed: HashMap<B256, ExecutedBlock>,
    /// Blocks that failed verification, by number (dropped once finality passes them).
    invalid: HashMap<B256, u64>,
    /// Proposals asked for, with when they were asked.
    proposes: Vec<(Context, oneshot::Sender<Digest>, SystemTime)>,
    verifies: Vec<(Context, Digest, oneshot::Sender<bool>)>,
    /// The latest finalization not yet committed.
    target: Option<(View, B256)>,
    /// Bodies needed and not held.
    wanted: BTreeSet<B256>,
    /// When each wanted body was last asked for.
    asked: HashMap<B256, SystemTime>,
    /// A finalized block failed to execute: this node's state is wrong.
    halted: bool,
    /// Unsolicited bodies further than this above the finalized head are not kept.
    max_ahead: u64,
    /// Parent hashes of the bodies held beyond `max_ahead` (each fetched by the hash a
    /// finalization or a held child named): a body with one of these hashes is
    /// authenticated by its child, so it is kept at any height.
    linked: HashSet<B256>,
}

pub(crate) fn mailbox() -> (Mailbox, mpsc::UnboundedReceiver<Message>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Mailbox { sender }, receiver)
}

impl<E, S, R> Actor<E, S, R>
where
    E: Clock + Spawner,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    pub(crate) fn new(
        context: E,
        node: Arc<Node>,
        mailbox: mpsc::UnboundedReceiver<Message>,
        (sender, receiver): (S, R),
        max_ahead: u64,
    ) -> Self {
        Self {
            context,
            node,
            mailbox,
            sender,
            receiver,
            bodies: HashMap::new(),
            executed: HashMap::new(),
            invalid: HashMap::new(),
            proposes: Vec::new(),
            verifies: Vec::new(),
            target: None,
            wanted: BTreeSet::new(),
            asked: HashMap::new(),
            halted: false,
            max_ahead,
            linked: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let tick = self.context.sleep(TICK);
            tokio::select! {
                biased;
                msg = self.mailbox.recv() => {
                    let Some(msg) = msg else {
                        debug!("consensus closed the application mailbox");
                        return;
                    };
                    self.handle(msg);
                }
                msg = self.receiver.recv() => {
                    let Ok((peer, bytes)) = msg else {
                        debug!("block channel closed");
                        return;
                    };
                    self.on_wire(peer, bytes.as_ref());
                }
                _ = tick => {}
            }
            self.progress();
        }
    }

    fn now(&self) -> u64 {
        self.context
            .current()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    fn handle(&mut self, msg: Message) {
        match msg {
            Message::Propose { context, response } => {
                let asked = self.context.current();
                self.proposes.push((context, response, asked));
            }
            Message::Verify {
                context,
                payload,
                response,
            } => self.verifies.push((context, payload, response)),
            Message::Broadcast { payload, plan } => {
                let recipients = match plan {
                    Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
                    Plan::Forward { recipients, .. } => recipients,
                };
                match self.body(hash(&payload)) {
                    Some(block) => {
                        let bytes = WireMessage::Block(Box::new((*block).clone())).encode();
                        self.sender.send(recipients, bytes, false);
                    }
                    None => debug!(payload = %hash(&payload), "no body to broadcast"),
                }
            }
            Message::Finalized { view, payload } => {
                if self.target.is_none_or(|(v, _)| view > v) {
                    self.target = Some((view, hash(&payload)));
                }
            }
        }
    }

    /// An uncommitted body, or a committed block.
    fn body(&self, h: B256) -> Option<Arc<Block>> {
        if let Some(b) = self.bodies.get(&h) {
            return Some(Arc::clone(b));
        }
        let record = self.node.block_by_hash(h).ok()??;
        Some(Arc::new(Block {
            header: record.header,
            transactions: record.transactions,
        }))
    }

    fn on_wire(&mut self, peer: PublicKey, bytes: &[u8]) {
        let msg = match WireMessage::decode(bytes, MAX_RESPONSE_BLOCKS) {
            Ok(m) => m,
            Err(e) => {
                warn!(%peer, error = %e, "undecodable block message");
                return;
            }
        };
        match msg {
            WireMessage::Block(block) => self.keep(*block),
            WireMessage::Blocks(blocks) => blocks.into_iter().for_each(|b| self.keep(b)),
            WireMessage::Request(h) => {
                let mut blocks = Vec::new();
                let mut next = Some(h);
                while let Some(h) = next
                    && blocks.len() < MAX_RESPONSE_BLOCKS
                {
                    let Some(b) = self.body(h) else { break };
                    next = (b.header.number > 0).then_some(b.header.parent_hash);
                    blocks.push((*b).clone());
                }
                if !blocks.is_empty() {
                    let bytes = WireMessage::Blocks(blocks).encode();
                    self.sender.send(Recipients::One(peer), bytes, false);
                }
            }
        }
    }

    fn keep(&mut self, block: Block) {
        let Ok(head) = self.node.head() else { return };
        let n = block.header.number;
        if n <= head.number {
            return;
        }
        let h = block.hash();
        if n > head.number + self.max_ahead {
            // Far ahead: only what a hash this node trusts names (a body it asked for, or
            // the parent of one it holds), never what a peer pushes unasked.
            if !self.asked.contains_key(&h) && !self.wanted.contains(&h) && !self.linked.remove(&h)
            {
                return;
            }
            self.linked.insert(block.header.parent_hash);
        }
        self.wanted.remove(&h);
        self.bodies.entry(h).or_insert_with(|| Arc::new(block));
    }

    /// Asks every peer for the missing bodies not asked for in the last [`FETCH_RETRY`].
    fn fetch(&mut self) {
        let now = self.context.current();
        let recent = |at: &SystemTime| now.duration_since(*at).unwrap_or_default() < FETCH_RETRY;
        self.asked
            .retain(|h, at| self.wanted.contains(h) && recent(at));
        let due: Vec<B256> = self
            .wanted
            .iter()
            .filter(|h| !self.asked.contains_key(*h))
            .take(MAX_FETCH)
            .copied()
            .collect();
        for h in due {
            let bytes = WireMessage::Request(h).encode();
            self.sender.send(Recipients::All, bytes, false);
            self.asked.insert(h, now);
        }
    }

    /// Commits what is finalized, then answers what can be answered.
    fn progress(&mut self) {
        if self.halted {
            return;
        }
        self.wanted.clear();
        self.commit_finalized();
        let proposes = std::mem::take(&mut self.proposes);
        for (context, response, asked) in proposes {
            if response.is_closed() {
                continue;
            }
            // With nothing to include, wait a little for transactions before proposing
            // an empty block: simplex on a LAN finishes a view in milliseconds, and a
            // chain of empty blocks at that rate helps nobody.
            let waited = self
                .context
                .current()
                .duration_since(asked)
                .unwrap_or_default();
            if waited < EMPTY_BLOCK_DELAY && !self.node.has_pending() {
                self.proposes.push((context, response, asked));
                continue;
            }
            match self.try_propose(&context) {
                Ok(Some(d)) => {
                    let _ = response.send(d);
                }
                Ok(None) => self.proposes.push((context, response, asked)),
                Err(Unusable::Invalid) => {}
            }
        }
        let verifies = std::mem::take(&mut self.verifies);
        for (context, payload, response) in verifies {
            if response.is_closed() {
                continue;
            }
            match self.try_verify(&context, &payload) {
                Some(valid) => {
                    let _ = response.send(valid);
                }
                None => self.verifies.push((context, payload, response)),
            }
        }
        if !self.wanted.is_empty() {
            self.fetch();
        }
    }

    fn commit_finalized(&mut self) {
        while let Some((_, target)) = self.target {
            let head = match self.node.head() {
                Ok(h) => h,
                Err(e) => {
                    error!(error = %e, "reading the head");
                    return;
                }
            };
            if matches!(self.node.block_number_of(target), Ok(Some(_))) {
                self.target = None;
                return;
            }
            if let Some(b) = self.bodies.get(&target) {
                self.node.saw_finalized(b.header.number);
            }
            // Walk back from the target to the head through known bodies.
            let mut path = Vec::new();
            let mut cur = target;
            while cur != head.hash {
                let Some(b) = self.bodies.get(&cur) else {
                    self.wanted.insert(cur);
                    return;
                };
                if b.header.number <= head.number {
                    error!(%target, "finalized block does not descend from the finalized head");
                    self.halted = true;
                    return;
                }
                path.push(cur);
                cur = b.header.parent_hash;
            }
            // A validator catching up commits in slices, so it keeps answering its
            // mailbox and the wire between them.
            let slice = path.len().saturating_sub(MAX_COMMITS_PER_PASS);
            let done = slice == 0;
            for h in path.into_iter().skip(slice).rev() {
                let executed = match self.executed.remove(&h) {
                    Some(e) => e,
                    None => {
                        let Some(b) = self.bodies.get(&h) else { return };
                        match self.node.verify(&b.header, b.transactions.clone()) {
                            Ok(e) => e,
                            Err(e) => {
                                error!(%h, error = %e, "a finalized block failed verification");
                                self.halted = true;
                                return;
                            }
                        }
                    }
                };
                let number = executed.header.number;
                let txs = executed.transactions.len();
                if let Err(e) = self.node.finalize(executed) {
                    error!(%h, error = %e, "committing a finalized block");
                    self.halted = true;
                    return;
                }
                info!(number, %h, txs, "finalized");
            }
            self.prune();
            if !done {
                return;
            }
        }
    }

    fn prune(&mut self) {
        let Ok(head) = self.node.head() else { return };
        self.bodies.retain(|_, b| b.header.number > head.number);
        self.executed.retain(|_, e| e.header.number > head.number);
        self.invalid.retain(|_, n| *n > head.number);
        if self.bodies.is_empty() {
            self.linked.clear();
        }
    }

    /// The state after `parent` (executing known, uncommitted ancestors as
    /// needed): `Ok(None)` while a body is missing.
    fn state_after(&mut self, parent: B256) -> Result<Option<(PendingState, Header)>, Unusable> {
        let head = self.node.head().map_err(|_| Unusable::Invalid)?;
        if parent == head.hash {
            let header = self.node.head_header().map_err(|_| Unusable::Invalid)?;
            return Ok(Some((PendingState::new(), header)));
        }
        let mut chain = Vec::new();
        let mut cur = parent;
        while cur != head.hash {
            if self.invalid.contains_key(&cur) {
                return Err(Unusable::Invalid);
            }
            let (number, up) = match (self.executed.get(&cur), self.bodies.get(&cur)) {
                (Some(e), _) => (e.header.number, e.header.parent_hash),
                (None, Some(b)) => (b.header.number, b.header.parent_hash),
                (None, None) => {
                    if matches!(self.node.block_number_of(cur), Ok(Some(_))) {
                        // Finalized, but not the head: a stale branch.
                        return Err(Unusable::Invalid);
                    }
                    self.wanted.insert(cur);
                    return Ok(None);
                }
            };
            if number <= head.number {
                return Err(Unusable::Invalid);
            }
            chain.push(cur);
            cur = up;
        }
        let mut pending = PendingState::new();
        let mut parent_header = self.node.head_header().map_err(|_| Unusable::Invalid)?;
        for h in chain.into_iter().rev() {
            if !self.executed.contains_key(&h) {
                let Some(b) = self.bodies.get(&h).cloned() else {
                    return Ok(None);
                };
                match self.node.verify_on(
                    &pending,
                    &parent_header,
                    &b.header,
                    b.transactions.clone(),
                ) {
                    Ok(e) => {
                        self.executed.insert(h, e);
                    }
                    Err(e) => {
                        warn!(%h, error = %e, "ancestor failed verification");
                        self.invalid.insert(h, b.header.number);
                        return Err(Unusable::Invalid);
                    }
                }
            }
            let Some(e) = self.executed.get(&h) else {
                return Ok(None);
            };
            pending.push(e).map_err(|_| Unusable::Invalid)?;
            parent_header = e.header.clone();
        }
        Ok(Some((pending, parent_header)))
    }

    fn try_propose(&mut self, context: &Context) -> Result<Option<Digest>, Unusable> {
        let parent = hash(&context.parent.1);
        let Some((pending, parent_header)) = self.state_after(parent)? else {
            return Ok(None);
        };
        let executed = match self.node.propose_on(&pending, &parent_header, self.now()) {
            Ok(e) => e,
            Err(e) => {
                error!(error = %e, "building a block");
                return Err(Unusable::Invalid);
            }
        };
        let h = executed.hash;
        let block = Block {
            header: executed.header.clone(),
            transactions: executed.transactions.clone(),
        };
        debug!(number = block.header.number, %h, txs = block.transactions.len(), "proposed");
        self.bodies.insert(h, Arc::new(block));
        self.executed.insert(h, executed);
        Ok(Some(digest(h)))
    }

    fn try_verify(&mut self, context: &Context, payload: &Digest) -> Option<bool> {
        let h = hash(payload);
        if self.invalid.contains_key(&h) {
            return Some(false);
        }
        if matches!(self.node.block_number_of(h), Ok(Some(_))) {
            return Some(true);
        }
        let Some(block) = self.bodies.get(&h).cloned() else {
            self.wanted.insert(h);
            return None;
        };
        let parent = hash(&context.parent.1);
        if block.header.parent_hash != parent {
            return Some(false);
        }
        let (pending, parent_header) = match self.state_after(parent) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(Unusable::Invalid) => return Some(false),
        };
        if self.executed.contains_key(&h) {
            return Some(true);
        }
        if block.header.timestamp < parent_header.timestamp {
            self.invalid.insert(h, block.header.number);
            return Some(false);
        }
        // A proposer's clock running ahead: not invalid for good (time catches up), but
        // no vote for it now, so a leader cannot push timestamps into the future.
        if block.header.timestamp > self.now() + MAX_CLOCK_DRIFT {
            warn!(%h, timestamp = block.header.timestamp, now = self.now(), "proposal from the future");
            return Some(false);
        }
        match self.node.verify_on(
            &pending,
            &parent_header,
            &block.header,
            block.transactions.clone(),
        ) {
            Ok(e) => {
                self.executed.insert(h, e);
                Some(true)
            }
            Err(e) => {
                warn!(%h, error = %e, "proposal failed verification");
                self.invalid.insert(h, block.header.number);
                Some(false)
            }
        }
    }
}
