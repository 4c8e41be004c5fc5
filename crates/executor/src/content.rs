//! How requests and outputs are addressed: a request document is one raw block whose CID
//! follows from the `inputHash` committed on chain (CIDv1, raw, sha2-256 of the document), and
//! an outputs document travels inline as an identity CID when small, else as the raw CID of a
//! block in the executor's store.

use alloy_primitives::B256;
use cid::Cid;
use sha2::{Digest, Sha256};

use crate::error::ExecutorError;

/// Multicodec `raw`.
pub const RAW: u64 = 0x55;
/// Multihash `sha2-256`.
pub const SHA2_256: u64 = 0x12;
/// Multihash `identity` (the digest is the data).
pub const IDENTITY: u64 = 0x00;

/// Outputs documents up to this many bytes are posted inline (as an identity CID).
pub const INLINE_MAX: usize = 1024;

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> B256 {
    B256::from_slice(&Sha256::digest(bytes))
}

/// The CID of a raw block whose sha256 is `hash`: where a request document with that
/// `inputHash` (or an outputs document with that `outputHash`) lives.
pub fn raw_cid(hash: B256) -> Cid {
    // A 32-byte digest always fits a 64-byte multihash.
    let mh = multihash::Multihash::<64>::wrap(SHA2_256, hash.as_slice()).unwrap_or_default();
    Cid::new_v1(RAW, mh)
}

/// Where an outputs document is, as posted in `outputCid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLocation {
    /// The document itself (an identity CID).
    Inline(Vec<u8>),
    /// A raw block to fetch (from the executor's store, over its gateway).
    Block(Cid),
}

/// The `outputCid` bytes for an outputs document: an identity CID holding it when it is at
/// most [`INLINE_MAX`] bytes, else the raw CID of its block (which the caller stores).
pub fn output_cid(doc: &[u8]) -> (Vec<u8>, OutputLocation) {
    if doc.len() <= INLINE_MAX {
        let mut out = Vec::with_capacity(doc.len() + 6);
        for v in [1, RAW, IDENTITY, doc.len() as u64] {
            put_varint(&mut out, v);
        }
        out.extend_from_slice(doc);
        (out, OutputLocation::Inline(doc.to_vec()))
    } else {
        let cid = raw_cid(sha256(doc));
        (cid.to_bytes(), OutputLocation::Block(cid))
    }
}

/// Reads `outputCid` bytes (see [`output_cid`]).
pub fn parse_output_cid(bytes: &[u8]) -> Result<OutputLocation, ExecutorError> {
    let bad = |m: &str| ExecutorError::BadReceipt(format!("outputCid: {m}"));
    let mut rest = bytes;
    let version = take_varint(&mut rest).ok_or_else(|| bad("truncated"))?;
    let codec = take_varint(&mut rest).ok_or_else(|| bad("truncated"))?;
    if version != 1 || codec != RAW {
        return Err(bad("not a CIDv1 of a raw block"));
    }
    let mut peek = rest;
    let hash_code = take_varint(&mut peek).ok_or_else(|| bad("truncated"))?;
    if hash_code == IDENTITY {
        let len = take_varint(&mut peek).ok_or_else(|| bad("truncated"))?;
        if usize::try_from(len).ok() != Some(peek.len()) {
            return Err(bad("identity length does not match"));
        }
        return Ok(OutputLocation::Inline(peek.to_vec()));
    }
    let cid = Cid::try_from(bytes).map_err(|e| bad(&e.to_string()))?;
    if cid.hash().code() != SHA2_256 {
        return Err(bad("not sha2-256"));
    }
    Ok(OutputLocation::Block(cid))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_cids_follow_from_the_hash() {
        let doc = br#"{"inputs":["hello"]}"#;
        let cid = raw_cid(sha256(doc));
        assert_eq!(cid.codec(), RAW);
        assert_eq!(cid.hash().digest(), Sha256::digest(doc).as_slice());
        // The store computes the same CID for the same block.
        lattice_store::check_block(&cid, doc).expect("matches");
    }

    #[test]
    fn small_outputs_are_inline_large_ones_are_blocks() {
        let small = vec![b'x'; INLINE_MAX];
        let (bytes, loc) = output_cid(&small);
        assert_eq!(loc, OutputLocation::Inline(small.clone()));
        assert_eq!(parse_output_cid(&bytes).expect("parse"), loc);
        // The multiformats identity prefix: version 1, raw, identity, length 1024 (varint).
        assert_eq!(&bytes[..5], &[0x01, 0x55, 0x00, 0x80, 0x08]);

        let big = vec![b'y'; INLINE_MAX + 1];
        let (bytes, loc) = output_cid(&big);
        let OutputLocation::Block(cid) = &loc else {
            panic!("expected a block")
        };
        assert_eq!(*cid, raw_cid(sha256(&big)));
        assert_eq!(parse_output_cid(&bytes).expect("parse"), loc);

        assert!(parse_output_cid(b"").is_err());
        assert!(parse_output_cid(&[0x01, 0x55, 0x00, 0x05, b'a']).is_err());
        assert!(parse_output_cid(&[0x01, 0x70, 0x00, 0x01, b'a']).is_err());
    }
}
