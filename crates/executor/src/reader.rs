//! What any node can answer about models and requests from its chain and store, with or
//! without an executor: the read-only half of the `lattice_*` namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{B256, U256};
use alloy_sol_types::SolEvent;
use cid::Cid;
use lattice_chain::{LogFilter, Node};
use lattice_contracts::ModelRegistry;
use lattice_evm::MODEL_REGISTRY_ADDRESS;
use lattice_fetch::{FetchOptions, Source};
use lattice_store::Store;

use crate::content::{self, OutputLocation};
use crate::error::ExecutorError;
use crate::executor::Answer;
use crate::receipt::SignedReceipt;
use crate::registry::{self, status};

/// A node's chain and store, read for `lattice_*` callers; peers are asked for outputs the
/// store lacks. An executor shares its own, with the reasons its requests are pending.
#[derive(Debug)]
pub struct Reader {
    pub(crate) node: Arc<Node>,
    pub(crate) store: Arc<Store>,
    pub(crate) peers: Vec<Source>,
    pub(crate) chain_id: u64,
    /// Why a request this node's executor saw is still pending (empty without one).
    pub(crate) failures: Mutex<HashMap<U256, String>>,
}

impl Reader {
    /// A reader of `node` and `store`, fetching missing outputs from `peers`.
    pub fn new(
        node: Arc<Node>,
        store: Arc<Store>,
        peers: Vec<Source>,
    ) -> Result<Arc<Self>, ExecutorError> {
        let chain_id = node.chain_id()?;
        Ok(Arc::new(Self {
            node,
            store,
            peers,
            chain_id,
            failures: Mutex::new(HashMap::new()),
        }))
    }

    /// The chain.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Why request `id` is still pending on this node, if its executor had trouble with it.
    pub fn failure(&self, id: U256) -> Option<String> {
        lock(&self.failures).get(&id).cloned()
    }

    /// Fetches `cid` (and, with `materialize`, its whole DAG) from the peers into the
    /// store, every block checked.
    pub(crate) async fn fetch(&self, cid: &Cid, materialize: bool) -> Result<(), ExecutorError> {
        let opts = FetchOptions {
            materialize,
            attempts: 3,
            timeout: Duration::from_secs(60),
            ..FetchOptions::default()
        };
        lattice_fetch::fetch(Arc::clone(&self.store), *cid, &self.peers, &opts, &|_| {})
            .await
            .map(drop)
            .map_err(|e| ExecutorError::Fetch {
                what: cid.to_string(),
                reason: e.to_string(),
            })
    }

    /// Request `id` as a caller sees it: status, outputs and receipt once fulfilled, the
    /// reason once rejected, this node's trouble with it while pending.
    pub async fn answer(&self, id: U256) -> Result<Answer, ExecutorError> {
        let req = registry::get_request(&self.node, id)?;
        if req.status == status::NONE {
            return Err(ExecutorError::UnknownRequest(id));
        }
        let mut answer = Answer {
            request_id: id,
            status: status::name(req.status).to_string(),
            model_id: req.modelId,
            requester: req.requester,
            fee: req.fee,
            outputs: None,
            output_hash: None,
            receipt: None,
            tx: None,
            reason: None,
        };
        match req.status {
            status::FULFILLED => {
                let Some(log) =
                    self.request_log(id, ModelRegistry::InferenceFulfilled::SIGNATURE_HASH)?
                else {
                    return Ok(answer);
                };
                let ev = ModelRegistry::InferenceFulfilled::decode_log_data(&log.log.data)
                    .map_err(|e| ExecutorError::BadReceipt(e.to_string()))?;
                answer.tx = Some(log.tx_hash);
                answer.output_hash = Some(ev.outputHash);
                answer.receipt =
                    SignedReceipt::from_abi(&ev.receipt, self.chain_id, MODEL_REGISTRY_ADDRESS)
                        .ok();
                match self.output_document(&ev.outputCid).await {
                    Ok(doc) => answer.outputs = lattice_runtime::parse_outputs(&doc).ok(),
                    Err(e) => answer.reason = Some(format!("outputs not available here: {e}")),
                }
            }
            status::REFUNDED => {
                if let Some(log) =
                    self.request_log(id, ModelRegistry::InferenceRejected::SIGNATURE_HASH)?
                {
                    let ev = ModelRegistry::InferenceRejected::decode_log_data(&log.log.data)
                        .map_err(|e| ExecutorError::BadReceipt(e.to_string()))?;
                    answer.status = "rejected".into();
                    answer.tx = Some(log.tx_hash);
                    answer.reason = Some(ev.reason);
                } else {
                    answer.reason = Some("refunded to the requester after the deadline".into());
                }
            }
            _ => answer.reason = self.failure(id),
        }
        Ok(answer)
    }

    /// An outputs document from its `outputCid` (inline, the store, or the peers), checked.
    pub async fn output_document(&self, output_cid: &[u8]) -> Result<Vec<u8>, ExecutorError> {
        match content::parse_output_cid(output_cid)? {
            OutputLocation::Inline(doc) => Ok(doc),
            OutputLocation::Block(cid) => {
                if !self.store.has(&cid)? && !self.peers.is_empty() {
                    self.fetch(&cid, false).await?;
                }
                Ok(self.store.block(&cid)?.to_vec())
            }
        }
    }

    /// The registry log `topic0` about request `id` (its first topic after the signature).
    fn request_log(
        &self,
        id: U256,
        topic0: B256,
    ) -> Result<Option<lattice_chain::LogRecord>, ExecutorError> {
        let head = self.node.head()?.number;
        let filter = LogFilter {
            from: 0,
            to: head,
            addresses: vec![MODEL_REGISTRY_ADDRESS],
            topics: [Some(vec![topic0]), Some(vec![B256::from(id)]), None, None],
        };
        Ok(self.node.logs(&filter, 16)?.ok().and_then(|mut v| v.pop()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
