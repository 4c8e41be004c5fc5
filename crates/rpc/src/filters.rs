//! Poll filters: `eth_newFilter`, `eth_newBlockFilter`,
//! `eth_newPendingTransactionFilter`, `eth_getFilterChanges`,
//! `eth_getFilterLogs`, `eth_uninstallFilter`.
//!
//! A block or log filter is a cursor into the chain (the next block it has
//! not reported); each poll reads the blocks from the cursor to the head from
//! the store, so no block is ever missed however fast blocks come, and no
//! task runs in the background. A pending-transaction filter holds a receiver
//! of the server's pending-transaction feed. Filters not polled for
//! `filter_timeout` are dropped on the next filter call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{B256, hex, keccak256};
use alloy_rpc_types_eth::{Filter, FilterChanges, Log as RpcLog};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::{
    error::{OrInternal, RpcResult, internal, server_error},
    eth,
    params::Args,
    server::Ctx,
};

/// A fresh id: `0x` and 32 hex digits, unpredictable enough that one client
/// does not stumble on another's filter.
pub(crate) fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_be_bytes());
    seed[8..24].copy_from_slice(&now.to_be_bytes());
    seed[24..].copy_from_slice(&(&COUNTER as *const _ as usize as u64).to_be_bytes());
    format!("0x{}", hex::encode(&keccak256(seed)[..16]))
}

#[derive(Debug)]
enum Kind {
    Blocks { next: u64 },
    Logs { filter: Box<Filter>, next: u64 },
    PendingTxs { rx: broadcast::Receiver<B256> },
}

#[derive(Debug)]
struct Installed {
    kind: Kind,
    last_poll: Instant,
}

/// The installed poll filters.
#[derive(Debug)]
pub(crate) struct Filters {
    timeout: Duration,
    installed: Mutex<HashMap<String, Installed>>,
}

impl Filters {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            installed: Mutex::new(HashMap::new()),
        }
    }

    /// The table, with expired filters removed.
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Installed>> {
        let mut t = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.timeout;
        t.retain(|_, f| f.last_poll.elapsed() < timeout);
        t
    }

    fn install(&self, kind: Kind) -> String {
        let id = random_id();
        self.table().insert(
            id.clone(),
            Installed {
                kind,
                last_poll: Instant::now(),
            },
        );
        id
    }
}

fn not_found() -> jsonrpsee::types::ErrorObjectOwned {
    server_error("filter not found")
}

pub(crate) fn new_filter(ctx: &Ctx, args: Args) -> RpcResult<String> {
    let filter: Filter = args.req(0)?;
    let next = ctx.node.head().or_internal()?.number + 1;
    Ok(ctx.filters.install(Kind::Logs {
        filter: Box::new(filter),
        next,
    }))
}

pub(crate) fn new_block_filter(ctx: &Ctx, _: Args) -> RpcResult<String> {
    let next = ctx.node.head().or_internal()?.number + 1;
    Ok(ctx.filters.install(Kind::Blocks { next }))
}

pub(crate) fn new_pending_filter(ctx: &Ctx, args: Args) -> RpcResult<String> {
    // geth's optional `fullTx` flag: hashes are all this filter reports.
    args.opt::<bool>(0)?;
    Ok(ctx.filters.install(Kind::PendingTxs {
        rx: ctx.pending_txs.subscribe(),
    }))
}

pub(crate) fn uninstall(ctx: &Ctx, args: Args) -> RpcResult<bool> {
    let id: String = args.req(0)?;
    Ok(ctx.filters.table().remove(&id).is_some())
}

/// What one poll has to read, taken under the lock; the reading happens
/// after it is released.
enum Poll {
    Blocks {
        from: u64,
        to: u64,
    },
    Logs {
        filter: Box<Filter>,
        from: u64,
        to: u64,
    },
    Hashes(Vec<B256>),
}

pub(crate) fn filter_changes(ctx: &Ctx, args: Args) -> RpcResult<FilterChanges> {
    let id: String = args.req(0)?;
    let head = ctx.node.head().or_internal()?.number;
    let poll = {
        let mut table = ctx.filters.table();
        let f = table.get_mut(&id).ok_or_else(not_found)?;
        f.last_poll = Instant::now();
        match &mut f.kind {
            Kind::Blocks { next } => {
                let from = *next;
                *next = (*next).max(head + 1);
                Poll::Blocks { from, to: head }
            }
            Kind::Logs { filter, next } => {
                let from = *next;
                *next = (*next).max(head + 1);
                Poll::Logs {
                    filter: filter.clone(),
                    from,
                    to: head,
                }
            }
            Kind::PendingTxs { rx } => {
                let mut hashes = Vec::new();
                loop {
                    match rx.try_recv() {
                        Ok(h) => hashes.push(h),
                        Err(TryRecvError::Lagged(_)) => continue,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                Poll::Hashes(hashes)
            }
        }
    };
    match poll {
        Poll::Hashes(h) => Ok(FilterChanges::Hashes(h)),
        Poll::Blocks { from, to } => {
            let mut hashes = Vec::new();
            for n in from..=to {
                let hash = ctx
                    .node
                    .state()
                    .block_hash(n)
                    .map_err(internal)?
                    .ok_or_else(|| internal(format!("block {n} has no hash")))?;
                hashes.push(hash);
            }
            Ok(FilterChanges::Hashes(hashes))
        }
        Poll::Logs { filter, from, to } => {
            // A filter's own range still bounds what it reports.
            let lo = match filter.block_option.get_from_block() {
                Some(BlockNumberOrTag::Number(n)) => from.max(*n),
                _ => from,
            };
            let hi = match filter.block_option.get_to_block() {
                Some(BlockNumberOrTag::Number(n)) => to.min(*n),
                _ => to,
            };
            if lo > hi {
                return Ok(FilterChanges::Logs(Vec::new()));
            }
            Ok(FilterChanges::Logs(eth::logs_in(ctx, &filter, lo, hi)?))
        }
    }
}

pub(crate) fn filter_logs(ctx: &Ctx, args: Args) -> RpcResult<Vec<RpcLog>> {
    let id: String = args.req(0)?;
    let filter = {
        let mut table = ctx.filters.table();
        let f = table.get_mut(&id).ok_or_else(not_found)?;
        f.last_poll = Instant::now();
        match &f.kind {
            Kind::Logs { filter, .. } => filter.clone(),
            _ => return Err(not_found()),
        }
    };
    eth::logs_for(ctx, &filter)
}
