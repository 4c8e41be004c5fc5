//! The single-validator dev chain: propose on the head, finalize at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{error::ChainError, node::Node};

/// When the dev chain seals a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Every interval, with or without transactions.
    Interval(Duration),
    /// As soon as transactions are pending (what arrives while a block is
    /// being sealed goes into the next one).
    Instant,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Proposes and finalizes one block now; returns its number and how many
/// transactions it holds.
pub fn seal_block(node: &Node) -> Result<(u64, usize), ChainError> {
    let block = node.propose(now())?;
    let n = block.transactions.len();
    let number = block.header.number;
    node.finalize(block)?;
    Ok((number, n))
}

/// Runs the dev sealer until the task is dropped or sealing fails.
pub async fn run(node: Arc<Node>, sealing: Sealing) -> Result<(), ChainError> {
    match sealing {
        Sealing::Interval(every) => {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                seal(&node).await?;
            }
        }
        Sealing::Instant => loop {
            if !node.has_pending() {
                node.transaction_arrived().await;
            }
            seal(&node).await?;
        },
    }
}

async fn seal(node: &Arc<Node>) -> Result<(), ChainError> {
    let node = Arc::clone(node);
    let (number, txs) = tokio::task::spawn_blocking(move || seal_block(&node))
        .await
        .map_err(|e| ChainError::Corrupt(format!("sealer task failed: {e}")))??;
    tracing::info!(number, txs, "sealed block");
    Ok(())
}
