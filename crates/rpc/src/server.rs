//! [`start`]: the method table and the jsonrpsee server (HTTP and WebSocket
//! on one port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use jsonrpsee::Methods;
use jsonrpsee::server::{
    BatchRequestConfig, IdProvider, RegisterMethodError, RpcModule, Server, ServerConfig,
    ServerHandle,
};
use jsonrpsee::types::SubscriptionId;
use lattice_chain::Node;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::{
    error::{RpcError, RpcResult},
    eth,
    filters::{self, Filters},
    params::Args,
    pubsub,
};

/// Limits of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Largest request body (bytes), batch included.
    pub max_request_bytes: u32,
    /// Largest response body (bytes), batch included.
    pub max_response_bytes: u32,
    /// Most calls in one batch.
    pub max_batch_len: u32,
    /// Most simultaneous connections (HTTP and WebSocket).
    pub max_connections: u32,
    /// Widest block range of `eth_getLogs` / `eth_getFilterLogs`.
    pub max_log_blocks: u64,
    /// Most logs one query returns.
    pub max_logs: usize,
    /// A poll filter not polled for this long is removed.
    pub filter_timeout: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_response_bytes: 128 * 1024 * 1024,
            max_batch_len: 2000,
            max_connections: 1000,
            max_log_blocks: 10_000,
            max_logs: 10_000,
            filter_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// What every method sees.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) node: Arc<Node>,
    pub(crate) config: RpcConfig,
    pub(crate) filters: Filters,
    /// Hashes of transactions accepted through `eth_sendRawTransaction`
    /// (feeds pending-transaction filters and subscriptions).
    pub(crate) pending_txs: broadcast::Sender<B256>,
}

/// A running server. Dropping it stops the server.
#[derive(Debug)]
pub struct RpcServer {
    handle: ServerHandle,
    local_addr: SocketAddr,
}

impl RpcServer {
    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Asks the server to stop; [`RpcServer::stopped`] resolves once it has.
    pub fn stop(&self) {
        // Already stopped is fine.
        let _ = self.handle.stop();
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(self) {
        self.handle.stopped().await;
    }
}

/// Subscription ids as geth makes them: `0x` and 32 hex digits.
#[derive(Debug)]
struct HexIds;

impl IdProvider for HexIds {
    fn next_id(&self) -> SubscriptionId<'static> {
        SubscriptionId::Str(filters::random_id().into())
    }
}

/// Binds `addr` and serves JSON-RPC over HTTP and WebSocket there.
pub async fn start(
    addr: SocketAddr,
    node: Arc<Node>,
    config: RpcConfig,
) -> Result<RpcServer, RpcError> {
    start_with(addr, node, config, Methods::new()).await
}

/// [`start`], with `extra` methods (another namespace, such as `lattice_*`) served beside
/// the Ethereum ones. A name in both is an error.
pub async fn start_with(
    addr: SocketAddr,
    node: Arc<Node>,
    config: RpcConfig,
    extra: Methods,
) -> Result<RpcServer, RpcError> {
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(config.max_response_bytes)
        .max_connections(config.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch_len))
        .set_id_provider(HexIds)
        .build();
    let ctx = Ctx {
        node,
        filters: Filters::new(config.filter_timeout),
        config,
        pending_txs: broadcast::channel(8192).0,
    };
    let mut module = methods(ctx)?;
    module.merge(extra)?;
    let server = Server::builder()
        .set_config(server_config)
        .build(addr)
        .await?;
    let local_addr = server.local_addr()?;
    let handle = server.start(module);
    tracing::info!(%local_addr, "JSON-RPC server listening (HTTP and WebSocket)");
    Ok(RpcServer { handle, local_addr })
}

type Method<R> = fn(&Ctx, Args) -> RpcResult<R>;

/// A cheap method, answered on the connection's task.
fn sync<R: Serialize + Clone + 'static>(
    m: &mut RpcModule<Ctx>,
    name: &'static str,
    max_args: usize,
    f: Method<R>,
) -> Result<(), RegisterMethodError> {
    m.register_method(name, move |params, ctx, _| {
        f(ctx, Args::parse(&params, max_args)?)
    })?;
    Ok(())
}

/// A method that executes the EVM or scans many blocks, run on the blocking
/// pool so that it does not hold up other connections.
fn blocking<R: Serialize + Clone + 'static>(
    m: &mut RpcModule<Ctx>,
    name: &'static str,
    max_args: usize,
    f: Method<R>,
) -> Result<(), RegisterMethodError> {
    m.register_blocking_method(name, move |params, ctx, _| {
        f(&ctx, Args::parse(&params, max_args)?)
    })?;
    Ok(())
}

fn methods(ctx: Ctx) -> Result<RpcModule<Ctx>, RegisterMethodError> {
    let mut module = RpcModule::new(ctx);
    let m = &mut module;
    sync(m, "web3_clientVersion", 0, eth::client_version)?;
    sync(m, "web3_sha3", 1, eth::sha3)?;
    sync(m, "net_version", 0, eth::net_version)?;
    sync(m, "net_listening", 0, eth::net_listening)?;
    sync(m, "net_peerCount", 0, eth::net_peer_count)?;

    sync(m, "eth_chainId", 0, eth::chain_id)?;
    sync(m, "eth_blockNumber", 0, eth::block_number)?;
    sync(m, "eth_syncing", 0, eth::syncing)?;
    sync(m, "eth_accounts", 0, eth::accounts)?;
    sync(m, "eth_coinbase", 0, eth::coinbase)?;
    sync(m, "eth_gasPrice", 0, eth::gas_price)?;
    sync(m, "eth_maxPriorityFeePerGas", 0, eth::max_priority_fee)?;
    blocking(m, "eth_feeHistory", 3, eth::fee_history)?;

    sync(m, "eth_getBlockByNumber", 2, eth::block_by_number)?;
    sync(m, "eth_getBlockByHash", 2, eth::block_by_hash)?;
    sync(
        m,
        "eth_getBlockTransactionCountByNumber",
        1,
        eth::tx_count_by_number,
    )?;
    sync(
        m,
        "eth_getBlockTransactionCountByHash",
        1,
        eth::tx_count_by_hash,
    )?;
    sync(
        m,
        "eth_getTransactionByBlockNumberAndIndex",
        2,
        eth::tx_by_number_and_index,
    )?;
    sync(
        m,
        "eth_getTransactionByBlockHashAndIndex",
        2,
        eth::tx_by_hash_and_index,
    )?;
    blocking(m, "eth_getBlockReceipts", 1, eth::block_receipts)?;
    sync(
        m,
        "eth_getUncleCountByBlockNumber",
        1,
        eth::uncle_count_by_number,
    )?;
    sync(
        m,
        "eth_getUncleCountByBlockHash",
        1,
        eth::uncle_count_by_hash,
    )?;
    sync(m, "eth_getUncleByBlockNumberAndIndex", 2, eth::uncle)?;
    sync(m, "eth_getUncleByBlockHashAndIndex", 2, eth::uncle)?;

    sync(m, "eth_getBalance", 2, eth::balance)?;
    sync(m, "eth_getTransactionCount", 2, eth::transaction_count)?;
    sync(m, "eth_getCode", 2, eth::code)?;
    sync(m, "eth_getStorageAt", 3, eth::storage_at)?;
    blocking(m, "eth_call", 3, eth::call)?;
    blocking(m, "eth_estimateGas", 3, eth::estimate_gas)?;

    sync(m, "eth_sendRawTransaction", 1, eth::send_raw_transaction)?;
    sync(m, "eth_getTransactionByHash", 1, eth::transaction_by_hash)?;
    sync(m, "eth_getTransactionReceipt", 1, eth::transaction_receipt)?;

    blocking(m, "eth_getLogs", 1, eth::logs)?;
    sync(m, "eth_newFilter", 1, filters::new_filter)?;
    sync(m, "eth_newBlockFilter", 0, filters::new_block_filter)?;
    sync(
        m,
        "eth_newPendingTransactionFilter",
        1,
        filters::new_pending_filter,
    )?;
    blocking(m, "eth_getFilterChanges", 1, filters::filter_changes)?;
    blocking(m, "eth_getFilterLogs", 1, filters::filter_logs)?;
    sync(m, "eth_uninstallFilter", 1, filters::uninstall)?;

    pubsub::register(m)?;
    Ok(module)
}
