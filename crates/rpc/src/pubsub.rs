//! WebSocket subscriptions: `eth_subscribe` / `eth_unsubscribe` with
//! `newHeads`, `logs` and `newPendingTransactions`, notified as
//! `eth_subscription`.
//!
//! Heads and logs come from [`lattice_chain::Node::subscribe`]; a
//! subscriber that falls behind the broadcast (or sees a gap in block
//! numbers) has the missing blocks read from the store, so every block is
//! delivered once, in order. Pending transactions are those accepted by this
//! server's `eth_sendRawTransaction`.

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_rpc_types_eth::{
    Filter,
    pubsub::{Params as SubParams, SubscriptionKind},
};
use jsonrpsee::{
    PendingSubscriptionSink, SubscriptionMessage, SubscriptionSink,
    server::{RegisterMethodError, RpcModule},
    types::ErrorObjectOwned,
};
use lattice_chain::{LogFilter, NewBlock};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{
    convert,
    error::{RpcResult, internal, invalid_params},
    params::Args,
    server::Ctx,
};

/// What one `eth_subscribe` asked for.
enum Sub {
    NewHeads,
    Logs(Box<Filter>),
    PendingTxs { full: bool },
}

fn parse(args: &Args) -> RpcResult<Sub> {
    let kind: SubscriptionKind = args.req(0)?;
    let params: Option<SubParams> = args.opt(1)?;
    match (kind, params.unwrap_or_default()) {
        (SubscriptionKind::NewHeads, SubParams::None) => Ok(Sub::NewHeads),
        (SubscriptionKind::Logs, SubParams::None) => Ok(Sub::Logs(Box::default())),
        (SubscriptionKind::Logs, SubParams::Logs(f)) => Ok(Sub::Logs(f)),
        (SubscriptionKind::NewPendingTransactions, SubParams::None) => {
            Ok(Sub::PendingTxs { full: false })
        }
        (SubscriptionKind::NewPendingTransactions, SubParams::Bool(full)) => {
            Ok(Sub::PendingTxs { full })
        }
        (SubscriptionKind::NewHeads | SubscriptionKind::NewPendingTransactions, _) => {
            Err(invalid_params("invalid argument 1: unexpected parameters"))
        }
        (SubscriptionKind::Logs, _) => Err(invalid_params("invalid argument 1: not a filter")),
        (other, _) => Err(invalid_params(format!(
            "unsupported subscription: {}",
            serde_json::to_string(&other).unwrap_or_default()
        ))),
    }
}

pub(crate) fn register(m: &mut RpcModule<Ctx>) -> Result<(), RegisterMethodError> {
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, ctx, _| async move {
            let sub = match Args::parse(&params, 2).and_then(|a| parse(&a)) {
                Ok(s) => s,
                Err(e) => return pending.reject(e).await,
            };
            match sub {
                Sub::NewHeads => new_heads(ctx, pending).await,
                Sub::Logs(filter) => logs(ctx, pending, filter).await,
                Sub::PendingTxs { full } => pending_txs(ctx, pending, full).await,
            }
        },
    )?;
    Ok(())
}

/// Sends one notification; `false` once the client is gone.
async fn send(sink: &SubscriptionSink, item: &impl Serialize) -> bool {
    match serde_json::value::to_raw_value(item) {
        Ok(raw) => sink.send(SubscriptionMessage::from(raw)).await.is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "rpc: cannot serialize a notification");
            true
        }
    }
}

/// Delivers finalized blocks in order, each once, reading from the store any
/// that the broadcast skipped.
struct Blocks {
    rx: broadcast::Receiver<Arc<NewBlock>>,
    next: u64,
}

/// One block to deliver: from the broadcast, or only its number when it has
/// to be read from the store.
enum Next {
    Announced(Arc<NewBlock>),
    Missed(u64),
}

impl Blocks {
    fn new(ctx: &Ctx) -> Result<Self, ErrorObjectOwned> {
        // Subscribe before reading the head: nothing falls in between.
        let rx = ctx.node.subscribe();
        let head = ctx.node.head().map_err(internal)?;
        Ok(Self {
            rx,
            next: head.number + 1,
        })
    }

    /// The next blocks to deliver, in order; empty when the node is gone.
    async fn recv(&mut self) -> Vec<Next> {
        loop {
            match self.rx.recv().await {
                Ok(b) if b.header.number < self.next => continue,
                Ok(b) => {
                    let mut out: Vec<Next> =
                        (self.next..b.header.number).map(Next::Missed).collect();
                    self.next = b.header.number + 1;
                    out.push(Next::Announced(b));
                    return out;
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Vec::new(),
            }
        }
    }
}

async fn accept(ctx: &Ctx, pending: PendingSubscriptionSink) -> Option<(SubscriptionSink, Blocks)> {
    let blocks = match Blocks::new(ctx) {
        Ok(b) => b,
        Err(e) => {
            pending.reject(e).await;
            return None;
        }
    };
    let sink = pending.accept().await.ok()?;
    Some((sink, blocks))
}

async fn new_heads(ctx: Arc<Ctx>, pending: PendingSubscriptionSink) {
    let Some((sink, mut blocks)) = accept(&ctx, pending).await else {
        return;
    };
    loop {
        let batch = tokio::select! {
            _ = sink.closed() => return,
            b = blocks.recv() => b,
        };
        if batch.is_empty() {
            return;
        }
        for next in batch {
            let header = match next {
                Next::Announced(b) => convert::header(b.header.clone(), b.hash, None),
                Next::Missed(n) => match ctx.node.header(n) {
                    Ok(Some(h)) => {
                        let hash = h.hash_slow();
                        convert::header(h, hash, None)
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, number = n, "rpc: newHeads cannot read a block");
                        continue;
                    }
                },
            };
            if !send(&sink, &header).await {
                return;
            }
        }
    }
}

async fn logs(ctx: Arc<Ctx>, pending: PendingSubscriptionSink, filter: Box<Filter>) {
    let Some((sink, mut blocks)) = accept(&ctx, pending).await else {
        return;
    };
    let criteria: LogFilter = convert::log_filter(&filter, 0, 0);
    loop {
        let batch = tokio::select! {
            _ = sink.closed() => return,
            b = blocks.recv() => b,
        };
        if batch.is_empty() {
            return;
        }
        for next in batch {
            let logs = match next {
                Next::Announced(b) => b
                    .logs
                    .iter()
                    .filter(|l| criteria.matches(&l.log))
                    .map(convert::log)
                    .collect(),
                Next::Missed(n) => {
                    let lf = LogFilter {
                        from: n,
                        to: n,
                        ..criteria.clone()
                    };
                    match ctx.node.logs(&lf, usize::MAX) {
                        Ok(Ok(logs)) => logs.iter().map(convert::log).collect(),
                        Ok(Err(_)) => Vec::new(),
                        Err(e) => {
                            tracing::warn!(error = %e, number = n, "rpc: logs subscription cannot read a block");
                            Vec::new()
                        }
                    }
                }
            };
            for log in logs {
                if !send(&sink, &log).await {
                    return;
                }
            }
        }
    }
}

async fn pending_txs(ctx: Arc<Ctx>, pending: PendingSubscriptionSink, full: bool) {
    let mut rx = ctx.pending_txs.subscribe();
    let Ok(sink) = pending.accept().await else {
        return;
    };
    loop {
        let hash: B256 = tokio::select! {
            _ = sink.closed() => return,
            r = rx.recv() => match r {
                Ok(h) => h,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let sent = if full {
            match ctx.node.pending_transaction(hash) {
                Some(tx) => send(&sink, &convert::pending_tx(tx)).await,
                // Already included (or dropped): nothing pending to show.
                None => true,
            }
        } else {
            send(&sink, &hash).await
        };
        if !sent {
            return;
        }
    }
}
