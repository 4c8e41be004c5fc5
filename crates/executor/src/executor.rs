//! [`Executor`]: watches `InferenceRequested`, runs the request, posts the answer.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent};
use cid::Cid;
use lattice_chain::{LogFilter, NewBlock, Node};
use lattice_contracts::ModelRegistry;
use lattice_evm::{CallError, CallRequest, MODEL_REGISTRY_ADDRESS};
use lattice_fetch::Source;
use lattice_runtime::{LoadOptions, Output, Request, Runtime, RuntimeConfig, Task};
use lattice_store::Store;
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast};

use crate::content::{self, OutputLocation};
use crate::error::ExecutorError;
use crate::reader::Reader;
use crate::receipt::{InferenceReceipt, SignedReceipt};
use crate::registry::{self, ModelView, status};

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The executor account's secret key (it must hold `EXECUTOR_ROLE` to be paid).
    pub key: B256,
    /// Where missing model blocks and request documents are fetched from (gateways or Kubo
    /// RPC endpoints), each block checked on arrival.
    pub peers: Vec<Source>,
    /// Where model folders are laid out for the runtime (`<datadir>/models`).
    pub models_dir: PathBuf,
    /// Bytes of loaded weights kept in memory (least recently used models are dropped).
    pub cache_bytes: u64,
    /// Requests at most this many blocks old that are still pending are picked up at start.
    pub lookback: u64,
    /// Requests run at once.
    pub concurrency: usize,
    /// Tip per gas of the executor's transactions (wei).
    pub tip: u128,
    /// How often requests that failed on this node (a model no peer had, a key without
    /// the role, …) are tried again while they are pending.
    pub retry_every: Duration,
}

impl ExecutorConfig {
    /// Defaults: no peers, a 10 GB model cache, a 10,000-block look back, 4 requests at once,
    /// a 1 gwei tip, failed requests tried again every 30 s.
    pub fn new(key: B256, models_dir: PathBuf) -> Self {
        Self {
            key,
            peers: Vec::new(),
            models_dir,
            cache_bytes: lattice_runtime::cache::DEFAULT_CACHE_BYTES,
            lookback: 10_000,
            concurrency: 4,
            tip: 1_000_000_000,
            retry_every: Duration::from_secs(30),
        }
    }
}

/// One request's outcome as a caller sees it (`lattice_getReceipt`, `lattice_infer`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The registry's request id (0 for a free call answered off chain).
    #[serde(serialize_with = "decimal")]
    pub request_id: U256,
    /// `pending`, `fulfilled`, `refunded` (`rejected` when an executor turned it down), or
    /// `answered` (a free call).
    pub status: String,
    /// The model.
    pub model_id: B256,
    /// The requester (zero for a free call).
    pub requester: Address,
    /// Fee escrowed (wei).
    #[serde(serialize_with = "decimal")]
    pub fee: U256,
    /// The outputs, one per input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Output>>,
    /// sha256 of the canonical outputs document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_hash: Option<B256>,
    /// The signed receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SignedReceipt>,
    /// The fulfilment (or rejection) transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<B256>,
    /// Why it was rejected, or what went wrong on this node while it is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What running a request on a model produced.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The outputs, one per input.
    pub outputs: Vec<Output>,
    /// The canonical outputs document.
    pub document: Vec<u8>,
    /// Its sha256.
    pub output_hash: B256,
    /// The runtime that ran it (for the receipt).
    pub runtime: String,
}

/// An `InferenceRequested` event and the block that logged it.
#[derive(Debug, Clone)]
struct Requested {
    event: ModelRegistry::InferenceRequested,
    number: u64,
    block_hash: B256,
}

/// The inference side of a node (see the crate docs).
pub struct Executor {
    runtime: Arc<Runtime>,
    config: ExecutorConfig,
    address: Address,
    /// Model folders laid out (checked) by this process, by root CID.
    folders: Mutex<HashMap<Cid, PathBuf>>,
    /// One lay-out at a time: a second request for a model being laid out waits for it
    /// instead of replacing the folder under the first one's loader.
    laying_out: tokio::sync::Mutex<()>,
    /// One transaction at a time, so nonces follow each other.
    send: Mutex<()>,
    /// Requests being worked on.
    in_flight: Mutex<HashSet<U256>>,
    /// Chain and store reads shared with the `lattice_*` methods (and this executor's
    /// failure reasons).
    reader: Arc<Reader>,
    /// The requests behind `failures`, to try again every [`ExecutorConfig::retry_every`].
    retries: Mutex<HashMap<U256, Requested>>,
    permits: Semaphore,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("address", &self.address)
            .field("chain_id", &self.reader.chain_id)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor of `node` keeping models and outputs in `store`.
    pub fn new(
        node: Arc<Node>,
        store: Arc<Store>,
        config: ExecutorConfig,
    ) -> Result<Arc<Self>, ExecutorError> {
        let address = alloy_consensus::crypto::secp256k1::sign_message(config.key, B256::ZERO)
            .ok()
            .and_then(|sig| {
                alloy_consensus::crypto::secp256k1::recover_signer(&sig, B256::ZERO).ok()
            })
            .ok_or_else(|| ExecutorError::Key("not a valid secp256k1 secret key".into()))?;
        let runtime = Runtime::new(RuntimeConfig {
            cache_bytes: config.cache_bytes,
            load: LoadOptions {
                // Receipts promise that re-running gives the same bytes.
                deterministic: true,
                ..LoadOptions::default()
            },
            ..RuntimeConfig::default()
        });
        let reader = Reader::new(node, store, config.peers.clone())?;
        Ok(Arc::new(Self {
            runtime: Arc::new(runtime),
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            address,
            folders: Mutex::new(HashMap::new()),
            laying_out: tokio::sync::Mutex::new(()),
            send: Mutex::new(()),
            in_flight: Mutex::new(HashSet::new()),
            reader,
            retries: Mutex::new(HashMap::new()),
        }))
    }

    /// The executor's account.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain's id.
    pub fn chain_id(&self) -> u64 {
        self.reader.chain_id
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.reader.node
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.reader.store
    }

    /// The peers blocks are fetched from.
    pub fn peers(&self) -> &[Source] {
        &self.config.peers
    }

    /// Model cache counters.
    pub fn cache_stats(&self) -> lattice_runtime::cache::CacheStats {
        self.runtime.cache_stats()
    }

    /// Watches the chain for inference requests and answers them, until the node stops
    /// announcing blocks. Requests still pending from the last
    /// [`ExecutorConfig::lookback`] blocks are picked up first.
    pub async fn run(self: Arc<Self>) {
        let mut blocks = self.reader.node.subscribe();
        match self.is_executor() {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                executor = %self.address,
                "this account does not hold EXECUTOR_ROLE: its fulfilments will revert until the registry admin grants it"
            ),
            Err(e) => tracing::warn!(error = %e, "checking EXECUTOR_ROLE"),
        }
        let mut last = match self.reader.node.head() {
            Ok(h) => h.number,
            Err(e) => {
                tracing::error!(error = %e, "executor: reading the head");
                return;
            }
        };
        self.scan(last.saturating_sub(self.config.lookback), last);
        let mut retry =
            tokio::time::interval(self.config.retry_every.max(Duration::from_millis(100)));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry.tick().await;
        loop {
            tokio::select! {
                got = blocks.recv() => match got {
                    Ok(block) => {
                        last = block.header.number;
                        self.on_block(&block);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let head = self.reader.node.head().map(|h| h.number).unwrap_or(last);
                        self.scan(last + 1, head);
                        last = head;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = retry.tick() => self.retry_failed(),
            }
        }
    }

    /// Tries again every request that failed here and is not being worked on.
    fn retry_failed(self: &Arc<Self>) {
        let due: Vec<Requested> = lock(&self.retries).drain().map(|(_, r)| r).collect();
        for r in due {
            tracing::debug!(request = %r.event.requestId, "trying a failed request again");
            self.start(r);
        }
    }

    fn is_executor(&self) -> Result<bool, ExecutorError> {
        registry::is_executor(&self.reader.node, self.address)
    }

    /// Requests in blocks `from..=to` (through the log index).
    fn scan(self: &Arc<Self>, from: u64, to: u64) {
        if from > to {
            return;
        }
        let filter = LogFilter {
            from,
            to,
            addresses: vec![MODEL_REGISTRY_ADDRESS],
            topics: [
                Some(vec![ModelRegistry::InferenceRequested::SIGNATURE_HASH]),
                None,
                None,
                None,
            ],
        };
        match self.reader.node.logs(&filter, 100_000) {
            Ok(Ok(logs)) => {
                for l in logs {
                    self.on_log(&l.log, l.block_number, l.block_hash);
                }
            }
            Ok(Err(limit)) => tracing::warn!(limit, "too many pending-request logs to scan"),
            Err(e) => tracing::error!(error = %e, "executor: scanning for requests"),
        }
    }

    fn on_block(self: &Arc<Self>, block: &NewBlock) {
        for l in &block.logs {
            self.on_log(&l.log, block.header.number, block.hash);
        }
    }

    fn on_log(self: &Arc<Self>, log: &alloy_primitives::Log, number: u64, hash: B256) {
        if log.address != MODEL_REGISTRY_ADDRESS
            || log.topics().first() != Some(&ModelRegistry::InferenceRequested::SIGNATURE_HASH)
        {
            return;
        }
        let Ok(event) = ModelRegistry::InferenceRequested::decode_log_data(&log.data) else {
            return;
        };
        self.start(Requested {
            event,
            number,
            block_hash: hash,
        });
    }

    /// Works on one request in its own task, unless it is already being worked on; a
    /// failure is kept (with its reason) for [`Executor::retry_failed`].
    fn start(self: &Arc<Self>, r: Requested) {
        let id = r.event.requestId;
        if !lock(&self.in_flight).insert(id) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _permit = this.permits.acquire().await;
            let result = this.handle(&r.event, r.number, r.block_hash).await;
            match result {
                Ok(()) => {
                    lock(&this.reader.failures).remove(&id);
                }
                Err(e) => {
                    let reason = e.to_string();
                    let before = lock(&this.reader.failures).insert(id, reason.clone());
                    if before.as_deref() == Some(reason.as_str()) {
                        tracing::debug!(request = %id, error = %reason, "inference request still not answered");
                    } else {
                        tracing::warn!(request = %id, error = %reason, "inference request not answered");
                    }
                    lock(&this.retries).insert(id, r);
                }
            }
            lock(&this.in_flight).remove(&id);
        });
    }

    /// Runs one pending request and posts its fulfilment (or its rejection).
    async fn handle(
        self: &Arc<Self>,
        ev: &ModelRegistry::InferenceRequested,
        number: u64,
        block_hash: B256,
    ) -> Result<(), ExecutorError> {
        let id = ev.requestId;
        let req = registry::get_request(&self.reader.node, id)?;
        if req.status != status::PENDING {
            return Ok(());
        }
        // The version current when the request was made.
        let model = registry::get_model_at(&self.reader.node, ev.modelId, Some(number))?
            .ok_or_else(|| ExecutorError::UnknownModel(format!("model {} is gone", ev.modelId)))?;
        // A document this node cannot get is its own trouble, not the request's: it may be
        // on another executor's node (the one the requester sent it to), so the request is
        // left pending (tried again later; refundable after its deadline), never rejected.
        let document = self.request_document(ev.inputHash).await?;
        let root = root_cid(&model)?;
        let executed = match self.execute(&model, &root, &document).await {
            Ok(x) => x,
            Err(ExecutorError::BadRequest(reason)) => return self.reject(id, &reason).map(drop),
            Err(e) => return Err(e),
        };
        let receipt = self.receipt(
            &model,
            &root,
            id,
            ev.inputHash,
            &executed,
            number,
            block_hash,
        )?;
        let call = ModelRegistry::fulfillInferenceCall {
            requestId: id,
            outputHash: executed.output_hash,
            outputCid: receipt.receipt.outputCid.clone(),
            receipt: receipt.to_abi(),
        };
        let tx = self.send("fulfillInference", call.abi_encode())?;
        tracing::info!(request = %id, model = %model.name, %tx, "inference fulfilled");
        Ok(())
    }

    /// Turns request `id` down on chain (full refund) with `reason`.
    fn reject(&self, id: U256, reason: &str) -> Result<B256, ExecutorError> {
        // Keep the reason short: it is stored in a log.
        let reason: String = reason.chars().take(500).collect();
        let call = ModelRegistry::rejectInferenceCall {
            requestId: id,
            reason: reason.clone(),
        };
        let tx = self.send("rejectInference", call.abi_encode())?;
        tracing::info!(request = %id, %tx, reason, "inference request rejected");
        Ok(tx)
    }

    /// Runs `document` on `model` (version `root`): fetches what is missing, checks every
    /// block, loads through the cache. [`ExecutorError::BadRequest`] is the request's fault.
    pub async fn execute(
        self: &Arc<Self>,
        model: &ModelView,
        root: &Cid,
        document: &[u8],
    ) -> Result<Executed, ExecutorError> {
        let request =
            Request::from_bytes(document).map_err(|e| ExecutorError::BadRequest(e.to_string()))?;
        let dir = self.model_folder(root).await?;
        let this = Arc::clone(self);
        let name = model.name.clone();
        tokio::task::spawn_blocking(move || this.run_blocking(&name, dir, request))
            .await
            .map_err(|e| ExecutorError::Runtime(format!("the run panicked: {e}")))?
    }

    fn run_blocking(
        &self,
        name: &str,
        dir: PathBuf,
        request: Request,
    ) -> Result<Executed, ExecutorError> {
        let served = self
            .runtime
            .model(&dir, None)
            .map_err(|e| ExecutorError::Runtime(format!("loading {name}: {e}")))?;
        // The cache key: `None` for the model's own task, so it is loaded once.
        let key_task: Option<Task> = request.task.filter(|t| *t != served.model.task());
        let (task, served) = match key_task {
            Some(t) => (
                t,
                self.runtime
                    .model(&dir, Some(t))
                    .map_err(|e| ExecutorError::BadRequest(format!("task {t}: {e}")))?,
            ),
            None => (served.model.task(), served),
        };
        let inputs = request
            .inputs_for(task, served.model.spec().family)
            .map_err(|e| ExecutorError::BadRequest(e.to_string()))?;
        let mut outputs = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let out = self
                .runtime
                .run(&dir, key_task, input)
                .map_err(|e| ExecutorError::BadRequest(format!("input {i}: {e}")))?;
            outputs.push(out);
        }
        let document = lattice_runtime::outputs_document(&outputs);
        Ok(Executed {
            output_hash: content::sha256(&document),
            document,
            outputs,
            runtime: runtime_name(&served.model.describe()),
        })
    }

    /// The folder of model version `root`, laid out (every block checked) and loaded unless
    /// this process already did and the model is still loaded; missing or corrupt blocks are
    /// fetched from the peers first.
    async fn model_folder(&self, root: &Cid) -> Result<PathBuf, ExecutorError> {
        let loaded = || {
            lock(&self.folders)
                .get(root)
                .cloned()
                .filter(|dir| self.runtime.is_loaded(dir))
        };
        if let Some(dir) = loaded() {
            return Ok(dir);
        }
        let _one_at_a_time = self.laying_out.lock().await;
        // Laid out and loaded by the request this one waited for?
        if let Some(dir) = loaded() {
            return Ok(dir);
        }
        let first = {
            let (store, root, models) = (
                Arc::clone(&self.reader.store),
                *root,
                self.config.models_dir.clone(),
            );
            tokio::task::spawn_blocking(move || crate::folder::model_dir(&store, &root, &models))
                .await
                .map_err(|e| ExecutorError::Store(e.to_string()))?
        };
        let dir = match first {
            Ok(dir) => dir,
            Err(local) if !self.config.peers.is_empty() => {
                tracing::info!(%root, error = %local, "model not complete here: fetching from peers");
                self.fetch(root, true)
                    .await
                    .map_err(|e| ExecutorError::Fetch {
                        what: format!("model {root}"),
                        reason: format!("{e} (locally: {local})"),
                    })?;
                let (store, root, models) = (
                    Arc::clone(&self.reader.store),
                    *root,
                    self.config.models_dir.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    crate::folder::model_dir(&store, &root, &models)
                })
                .await
                .map_err(|e| ExecutorError::Store(e.to_string()))??
            }
            Err(local) => return Err(local),
        };
        // Load it while still holding the lay-out lock, so a request waiting on the lock finds
        // it loaded and never lays the folder out again under this loader.
        let (runtime, load_dir) = (Arc::clone(&self.runtime), dir.clone());
        tokio::task::spawn_blocking(move || runtime.model(&load_dir, None).map(drop))
            .await
            .map_err(|e| ExecutorError::Runtime(e.to_string()))?
            .map_err(|e| ExecutorError::Runtime(format!("loading {root}: {e}")))?;
        let first_time = lock(&self.folders).insert(*root, dir.clone()).is_none();
        if first_time {
            self.keep(root);
        }
        Ok(dir)
    }

    /// Pins a model this node now serves and announces the pin on chain (once per account
    /// and CID), so `pinCount` shows where the model can be fetched. Failures are logged:
    /// they do not stop the request.
    fn keep(&self, root: &Cid) {
        if let Err(e) = self
            .reader
            .store
            .pin_add(root, lattice_store::PinKind::Recursive)
        {
            tracing::warn!(%root, error = %e, "pinning a model");
        }
        let cid = root.to_bytes();
        let pinning = registry::is_pinning(&self.reader.node, &cid, self.address);
        if matches!(pinning, Ok(false)) {
            let call = lattice_contracts::IPFSIncentives::announcePinCall { cid: cid.into() };
            match self.send_to(
                lattice_evm::IPFS_INCENTIVES_ADDRESS,
                "announcePin",
                call.abi_encode(),
            ) {
                Ok(tx) => tracing::info!(%root, %tx, "announced the pin"),
                Err(e) => tracing::warn!(%root, error = %e, "announcing the pin"),
            }
        }
    }

    async fn fetch(&self, cid: &Cid, materialize: bool) -> Result<(), ExecutorError> {
        self.reader.fetch(cid, materialize).await
    }

    /// The request document committed to by `input_hash`: from the store, else the peers.
    pub async fn request_document(&self, input_hash: B256) -> Result<Vec<u8>, ExecutorError> {
        let cid = content::raw_cid(input_hash);
        if !self.reader.store.has(&cid)? {
            if self.config.peers.is_empty() {
                return Err(ExecutorError::Fetch {
                    what: format!("request document {cid}"),
                    reason: "not on this node and no peers to ask (send it with lattice_putRequest or lattice_infer)".into(),
                });
            }
            self.fetch(&cid, false)
                .await
                .map_err(|e| ExecutorError::Fetch {
                    what: format!("request document {cid}"),
                    reason: e.to_string(),
                })?;
        }
        Ok(self.reader.store.block(&cid)?.to_vec())
    }

    /// Stores a request document (one raw block, pinned) and returns its hash.
    pub fn put_request(&self, document: &[u8]) -> Result<B256, ExecutorError> {
        if document.len() > lattice_store::MAX_BLOCK {
            return Err(ExecutorError::BadRequest(format!(
                "the request document is {} bytes; at most {} fit in one block",
                document.len(),
                lattice_store::MAX_BLOCK
            )));
        }
        Request::from_bytes(document).map_err(|e| ExecutorError::BadRequest(e.to_string()))?;
        let hash = content::sha256(document);
        let cid = content::raw_cid(hash);
        self.reader
            .store
            .put_block(&cid, bytes::Bytes::copy_from_slice(document))?;
        self.reader
            .store
            .pin_add(&cid, lattice_store::PinKind::Direct)?;
        Ok(hash)
    }

    /// Signs the receipt of `executed` (and stores a large outputs document as a block).
    #[allow(clippy::too_many_arguments)]
    fn receipt(
        &self,
        model: &ModelView,
        root: &Cid,
        request_id: U256,
        input_hash: B256,
        executed: &Executed,
        number: u64,
        block_hash: B256,
    ) -> Result<SignedReceipt, ExecutorError> {
        let (cid_bytes, location) = content::output_cid(&executed.document);
        if let OutputLocation::Block(cid) = &location {
            if executed.document.len() > lattice_store::MAX_BLOCK {
                return Err(ExecutorError::BadRequest(format!(
                    "the outputs are {} bytes; at most {} fit in one block",
                    executed.document.len(),
                    lattice_store::MAX_BLOCK
                )));
            }
            self.reader
                .store
                .put_block(cid, bytes::Bytes::copy_from_slice(&executed.document))?;
            self.reader
                .store
                .pin_add(cid, lattice_store::PinKind::Direct)?;
        }
        let receipt = InferenceReceipt {
            executor: self.address,
            requestId: request_id,
            modelId: model.id,
            modelCid: Bytes::from(root.to_bytes()),
            inputHash: input_hash,
            outputHash: executed.output_hash,
            outputCid: Bytes::from(cid_bytes),
            blockNumber: number,
            blockHash: block_hash,
            runtime: executed.runtime.clone(),
        };
        SignedReceipt::sign(
            receipt,
            self.config.key,
            self.reader.chain_id,
            MODEL_REGISTRY_ADDRESS,
        )
    }

    /// Answers a free call (a public model priced 0) at once, off chain: the receipt has
    /// request id 0 and names the head block.
    pub async fn free_call(
        self: &Arc<Self>,
        model: &ModelView,
        document: &[u8],
    ) -> Result<Answer, ExecutorError> {
        if model.price != U256::ZERO {
            return Err(ExecutorError::BadRequest(format!(
                "model {:?} costs {} wei per inference: pay with a signed requestInference transaction (`tx`)",
                model.name, model.price
            )));
        }
        if model.isPrivate {
            return Err(ExecutorError::BadRequest(format!(
                "model {:?} is private: only a requestInference transaction from its owner or a granted account can run it",
                model.name
            )));
        }
        if !model.active {
            return Err(ExecutorError::BadRequest(format!(
                "model {:?} is inactive",
                model.name
            )));
        }
        let input_hash = self.put_request(document)?;
        let root = root_cid(model)?;
        let executed = self.execute(model, &root, document).await?;
        let head = self.reader.node.head()?;
        let receipt = self.receipt(
            model,
            &root,
            U256::ZERO,
            input_hash,
            &executed,
            head.number,
            head.hash,
        )?;
        Ok(Answer {
            request_id: U256::ZERO,
            status: "answered".into(),
            model_id: model.id,
            requester: Address::ZERO,
            fee: U256::ZERO,
            outputs: Some(executed.outputs),
            output_hash: Some(executed.output_hash),
            receipt: Some(receipt),
            tx: None,
            reason: None,
        })
    }

    /// Checks a signed `requestInference` transaction (to the registry, for `model`,
    /// committing to `input_hash`), simulates it (a revert comes back by name: `Underpayment`,
    /// `NoAccess`, …, and nothing is sent), submits it and returns its hash.
    pub fn submit_request_tx(
        &self,
        raw: &[u8],
        model: B256,
        input_hash: B256,
    ) -> Result<B256, ExecutorError> {
        use alloy_consensus::Transaction;
        use alloy_consensus::transaction::SignerRecoverable;
        use alloy_eips::eip2718::Decodable2718;
        let bad = |m: String| ExecutorError::BadRequest(m);
        let tx = TxEnvelope::decode_2718(&mut &raw[..])
            .map_err(|e| bad(format!("tx: not a signed transaction: {e}")))?;
        let from = tx
            .recover_signer()
            .map_err(|e| bad(format!("tx: bad signature: {e}")))?;
        if tx.to() != Some(MODEL_REGISTRY_ADDRESS) {
            return Err(bad(format!(
                "tx: sent to {:?}, not to the registry {MODEL_REGISTRY_ADDRESS}",
                tx.to()
            )));
        }
        let call = ModelRegistry::requestInferenceCall::abi_decode(tx.input())
            .map_err(|_| bad("tx: not a requestInference call".into()))?;
        if call.modelId != model {
            return Err(bad(format!(
                "tx: requests model {}, not {model}",
                call.modelId
            )));
        }
        if call.inputHash != input_hash {
            return Err(bad(format!(
                "tx: commits to input hash {}, but the request document hashes to {input_hash}",
                call.inputHash
            )));
        }
        let sim = CallRequest {
            from: Some(from),
            to: Some(MODEL_REGISTRY_ADDRESS),
            value: Some(tx.value()),
            input: tx.input().clone(),
            ..Default::default()
        };
        match self.reader.node.call_at(None, &sim, &Default::default()) {
            Ok(lattice_evm::CallOutcome::Success { .. }) => {}
            Ok(lattice_evm::CallOutcome::Revert { output, .. }) => {
                return Err(bad(format!(
                    "requestInference would revert: {}",
                    registry::revert_reason(&output)
                )));
            }
            Ok(other) => return Err(bad(format!("requestInference would fail: {other:?}"))),
            Err(e) => {
                return Err(bad(format!(
                    "requestInference would fail: {}",
                    call_error(&e)
                )));
            }
        }
        self.reader
            .node
            .submit_raw(raw)
            .map_err(|e| ExecutorError::Submit {
                what: "requestInference",
                reason: e.to_string(),
            })
    }

    /// Why request `id` is still pending on this node, if something went wrong here.
    pub fn failure(&self, id: U256) -> Option<String> {
        self.reader.failure(id)
    }

    /// Signs and submits a registry call from the executor account.
    fn send(&self, what: &'static str, data: Vec<u8>) -> Result<B256, ExecutorError> {
        self.send_to(MODEL_REGISTRY_ADDRESS, what, data)
    }

    /// Signs and submits a call of `to` from the executor account.
    fn send_to(
        &self,
        to: Address,
        what: &'static str,
        data: Vec<u8>,
    ) -> Result<B256, ExecutorError> {
        let _one_at_a_time = lock(&self.send);
        let req = CallRequest {
            from: Some(self.address),
            to: Some(to),
            input: data.clone().into(),
            ..Default::default()
        };
        let gas = self
            .reader
            .node
            .estimate_gas_at(None, &req, &Default::default())
            .map_err(|e| ExecutorError::Submit {
                what,
                reason: call_error(&e),
            })?;
        let nonce = self.reader.node.pending_nonce(self.address)?;
        let base = u128::from(self.reader.node.next_base_fee()?);
        let tx = TxEip1559 {
            chain_id: self.reader.chain_id,
            nonce,
            gas_limit: gas + gas / 4 + 10_000,
            max_fee_per_gas: base.saturating_mul(2).saturating_add(self.config.tip),
            max_priority_fee_per_gas: self.config.tip,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data.into(),
        };
        let sig =
            alloy_consensus::crypto::secp256k1::sign_message(self.config.key, tx.signature_hash())
                .map_err(|e| ExecutorError::Key(e.to_string()))?;
        let env: TxEnvelope = tx.into_signed(sig).into();
        self.reader
            .node
            .submit_raw(&env.encoded_2718())
            .map_err(|e| ExecutorError::Submit {
                what,
                reason: e.to_string(),
            })
    }

    /// Request `id` as a caller sees it (see [`Reader::answer`]).
    pub async fn answer(&self, id: U256) -> Result<Answer, ExecutorError> {
        self.reader.answer(id).await
    }

    /// An outputs document from its `outputCid` (see [`Reader::output_document`]).
    pub async fn output_document(&self, output_cid: &[u8]) -> Result<Vec<u8>, ExecutorError> {
        self.reader.output_document(output_cid).await
    }

    /// What any node can read about models and requests, this executor's failures included.
    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    /// Waits until request `id` is no longer pending (or `timeout` passes).
    pub async fn wait_settled(&self, id: U256, timeout: Duration) -> Result<Answer, ExecutorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut blocks = self.reader.node.subscribe();
        loop {
            let answer = self.answer(id).await?;
            if answer.status != "pending" {
                return Ok(answer);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(answer);
            }
            // A new block, or a periodic look (a lagged receiver just looks again).
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), blocks.recv()).await;
        }
    }

    /// Waits for transaction `hash` to be included; returns the request id its
    /// `InferenceRequested` log names, or why it failed.
    pub async fn wait_request_id(
        &self,
        hash: B256,
        timeout: Duration,
    ) -> Result<U256, ExecutorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut blocks = self.reader.node.subscribe();
        loop {
            if let Some(r) = self.reader.node.receipt(hash)? {
                let logs = r.receipt.logs();
                for log in logs {
                    if log.address == MODEL_REGISTRY_ADDRESS
                        && let Ok(ev) =
                            ModelRegistry::InferenceRequested::decode_log_data(&log.data)
                    {
                        return Ok(ev.requestId);
                    }
                }
                return Err(ExecutorError::BadRequest(format!(
                    "requestInference transaction {hash} failed in block {}",
                    r.tx.block_number
                )));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ExecutorError::Timeout(format!(
                    "requestInference transaction {hash} not included after {}s",
                    timeout.as_secs()
                )));
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), blocks.recv()).await;
        }
    }
}

fn decimal<S: serde::Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// A model view's latest root CID.
pub fn root_cid(model: &ModelView) -> Result<Cid, ExecutorError> {
    Cid::try_from(model.latestRootCid.as_ref()).map_err(|e| {
        ExecutorError::UnknownModel(format!(
            "model {}: its root CID does not parse: {e}",
            model.id
        ))
    })
}

/// The runtime string receipts carry.
pub fn runtime_name(describe: &str) -> String {
    format!(
        "lattice-runtime/{} {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        describe
    )
}

fn call_error(e: &CallError) -> String {
    match e {
        CallError::Reverted { data, .. } => registry::revert_reason(data),
        other => other.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
