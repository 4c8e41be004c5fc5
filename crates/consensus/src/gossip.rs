//! Transaction gossip: every transaction a validator's own clients submit is
//! relayed to all the other validators, so whoever leads the next view has it.
//!
//! One hop is enough: validators are fully connected, and a relayed
//! transaction is pooled with [`Node::submit_relayed`], which does not announce
//! it again. Transactions travel in batches (one message per burst).

use std::sync::Arc;

use alloy_primitives::Bytes;
use commonware_cryptography::ed25519::PublicKey;
use commonware_p2p::{Receiver, Recipients, Sender};
use lattice_chain::Node;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

/// Most bytes of transactions in one gossip message.
pub(crate) const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most transactions in one gossip message.
pub(crate) const MAX_BATCH_TXS: usize = 4096;

/// Why a gossip message was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Shorter than its length prefixes say.
    #[error("truncated transaction batch")]
    Truncated,
    /// More transactions than [`MAX_BATCH_TXS`].
    #[error("more than {MAX_BATCH_TXS} transactions in one batch")]
    TooMany,
}

/// A batch: each transaction as a 4-byte big-endian length and its raw bytes.
pub fn encode_batch(txs: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txs.iter().map(|t| t.len() + 4).sum());
    for tx in txs {
        out.extend_from_slice(&(tx.len() as u32).to_be_bytes());
        out.extend_from_slice(tx);
    }
    out
}

/// The raw transactions of a batch (not checked: [`Node::submit_relayed`] does that).
pub fn decode_batch(mut bytes: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut txs = Vec::new();
    while !bytes.is_empty() {
        if txs.len() == MAX_BATCH_TXS {
            return Err(BatchError::TooMany);
        }
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or(BatchError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(BatchError::Truncated);
        }
        let (tx, rest) = rest.split_at(len);
        txs.push(tx);
        bytes = rest;
    }
    Ok(txs)
}

/// Relays `node`'s own transactions to every peer and pools the peers' ones, until
/// the channel closes.
pub(crate) async fn run<S, R>(node: Arc<Node>, (mut sender, mut receiver): (S, R))
where
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let mut announced = node.subscribe_transactions();
    loop {
        tokio::select! {
            tx = announced.recv() => {
                let first = match tx {
                    Ok(tx) => tx,
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "transaction gossip fell behind; the missed ones stay in this node's pool");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let mut size = first.len() + 4;
                let mut batch = vec![first];
                while size < MAX_BATCH_BYTES && batch.len() < MAX_BATCH_TXS {
                    match announced.try_recv() {
                        Ok(tx) => {
                            size += tx.len() + 4;
                            batch.push(tx);
                        }
                        Err(_) => break,
                    }
                }
                debug!(txs = batch.len(), bytes = size, "relaying transactions");
                sender.send(Recipients::All, encode_batch(&batch), false);
            }
            msg = receiver.recv() => {
                let Ok((peer, bytes)) = msg else {
                    debug!("transaction channel closed");
                    return;
                };
                match decode_batch(bytes.as_ref()) {
                    Ok(txs) => {
                        let mut pooled = 0usize;
                        for raw in txs {
                            // Known, already included or invalid: each node checks for itself.
                            if node.submit_relayed(raw).is_ok() {
                                pooled += 1;
                            }
                        }
                        debug!(%peer, pooled, "relayed transactions in");
                    }
                    Err(e) => warn!(%peer, error = %e, "undecodable transaction batch"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_bad_ones_are_refused() {
        let txs = vec![
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let bytes = encode_batch(&txs);
        let back = decode_batch(&bytes).expect("decodes");
        assert_eq!(back, vec![&b"one"[..], &[][..], &[7u8; 300][..]]);
        assert_eq!(
            decode_batch(&bytes[..bytes.len() - 1]),
            Err(BatchError::Truncated)
        );
        assert_eq!(decode_batch(&[0, 0, 1]), Err(BatchError::Truncated));
        let many = encode_batch(&vec![Bytes::new(); MAX_BATCH_TXS + 1]);
        assert_eq!(decode_batch(&many), Err(BatchError::TooMany));
        assert_eq!(decode_batch(&[]), Ok(vec![]));
    }
}
