//! The block consensus orders: a header and its transactions, named by its
//! hash, and the wire messages the application exchanges.

use alloy_consensus::{Header, TxEnvelope};
use alloy_eips::{Decodable2718, Encodable2718};
use alloy_primitives::B256;
use alloy_rlp::{Decodable, Encodable};
use commonware_cryptography::keccak256;

/// What consensus agrees on: the block hash (`keccak(rlp(header))`), which
/// commits to the parent, the state root and the transactions root.
pub type Digest = keccak256::Digest;

/// The digest of a block hash.
pub fn digest(hash: B256) -> Digest {
    keccak256::Digest(hash.0)
}

/// The block hash of a digest.
pub fn hash(digest: &Digest) -> B256 {
    B256::from(digest.0)
}

/// Most transactions a decoded block may carry.
pub const MAX_BLOCK_TXS: usize = 100_000;

/// A block as proposed and relayed: the sealed header and its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header, every root filled in.
    pub header: Header,
    /// The transactions, in order.
    pub transactions: Vec<TxEnvelope>,
}

/// Why bytes from the network are not a block or message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a length prefix announced.
    #[error("truncated")]
    Truncated,
    /// A header or transaction did not decode.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// More transactions than [`MAX_BLOCK_TXS`].
    #[error("{0} transactions")]
    TooManyTxs(usize),
    /// Unknown message tag.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = take_u32(buf)? as usize;
    if buf.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, DecodeError> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Err(DecodeError::Truncated);
    };
    *buf = rest;
    Ok(u32::from_be_bytes(*len))
}

impl Block {
    /// Its hash (the consensus digest).
    pub fn hash(&self) -> B256 {
        self.header.hash_slow()
    }

    /// `len ‖ rlp(header) ‖ count ‖ (len ‖ 2718 tx)*`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let mut header = Vec::with_capacity(self.header.length());
        self.header.encode(&mut header);
        put(out, &header);
        out.extend_from_slice(&(self.transactions.len() as u32).to_be_bytes());
        for tx in &self.transactions {
            put(out, &tx.encoded_2718());
        }
    }

    /// Decodes [`Block::encode`]'s output; nothing may follow.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        let block = Self::decode_from(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        Ok(block)
    }

    fn decode_from(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut header_bytes = take(buf)?;
        let header =
            Header::decode(&mut header_bytes).map_err(|_| DecodeError::Malformed("header"))?;
        if !header_bytes.is_empty() {
            return Err(DecodeError::Malformed("header"));
        }
        let count = take_u32(buf)? as usize;
        if count > MAX_BLOCK_TXS {
            return Err(DecodeError::TooManyTxs(count));
        }
        let mut transactions = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let mut raw = take(buf)?;
            let tx = TxEnvelope::decode_2718(&mut raw)
                .map_err(|_| DecodeError::Malformed("transaction"))?;
            if !raw.is_empty() {
                return Err(DecodeError::Malformed("transaction"));
            }
            transactions.push(tx);
        }
        Ok(Self {
            header,
            transactions,
        })
    }
}

/// What validators' applications send each other on the block channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    /// A proposed block, pushed by its proposer (or forwarded).
    Block(Box<Block>),
    /// Asks for the block with this hash and some of its ancestors.
    Request(B256),
    /// Blocks answering a request, newest first.
    Blocks(Vec<Block>),
}

const TAG_BLOCK: u8 = 0;
const TAG_REQUEST: u8 = 1;
const TAG_BLOCKS: u8 = 2;

impl WireMessage {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Block(b) => {
                out.push(TAG_BLOCK);
                b.encode_into(&mut out);
            }
            Self::Request(h) => {
                out.push(TAG_REQUEST);
                out.extend_from_slice(h.as_slice());
            }
            Self::Blocks(blocks) => {
                out.push(TAG_BLOCKS);
                out.extend_from_slice(&(blocks.len() as u32).to_be_bytes());
                for b in blocks {
                    b.encode_into(&mut out);
                }
            }
        }
        out
    }

    /// Decodes a message; at most `max_blocks` blocks in a response.
    pub fn decode(bytes: &[u8], max_blocks: usize) -> Result<Self, DecodeError> {
        let Some((&tag, mut rest)) = bytes.split_first() else {
            return Err(DecodeError::Truncated);
        };
        let msg = match tag {
            TAG_BLOCK => Self::Block(Box::new(Block::decode_from(&mut rest)?)),
            TAG_REQUEST => {
                let Some((h, tail)) = rest.split_first_chunk::<32>() else {
                    return Err(DecodeError::Truncated);
                };
                rest = tail;
                Self::Request(B256::from(*h))
            }
            TAG_BLOCKS => {
                let n = take_u32(&mut rest)? as usize;
                if n > max_blocks {
                    return Err(DecodeError::Malformed("too many blocks"));
                }
                let mut blocks = Vec::with_capacity(n);
                for _ in 0..n {
                    blocks.push(Block::decode_from(&mut rest)?);
                }
                Self::Blocks(blocks)
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if !rest.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let block = Block {
            header: Header {
                number: 7,
                ..Default::default()
            },
            transactions: vec![],
        };
        for msg in [
            WireMessage::Block(Box::new(block.clone())),
            WireMessage::Request(B256::repeat_byte(3)),
            WireMessage::Blocks(vec![block.clone(), block.clone()]),
        ] {
            let bytes = msg.encode();
            assert_eq!(WireMessage::decode(&bytes, 8).expect("decodes"), msg);
            assert!(WireMessage::decode(&bytes[..bytes.len() - 1], 8).is_err());
        }
        assert!(WireMessage::decode(&[9], 8).is_err());
        assert!(WireMessage::decode(&WireMessage::Blocks(vec![block; 3]).encode(), 2).is_err());
        assert_eq!(hash(&digest(B256::repeat_byte(5))), B256::repeat_byte(5));
    }
}
