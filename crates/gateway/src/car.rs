//! CAR v1 responses of the trustless gateway: the blocks that prove a
//! content path, then the requested part of the DAG at its end.
//!
//! Every block is read with [`Store::block`], which checks it against its
//! CID; identity CIDs are never written (their bytes are in the CID).
//! Blocks go out depth-first, each once (`order=dfs; dups=n`).

use std::collections::HashSet;
use std::io::Write;

use bytes::Bytes;
use cid::Cid;
use lattice_store::unixfs::{DAG_PB, Node, NodeType, RAW, links_of, put_varint};
use lattice_store::{Store, StoreError};

/// Multihash code of the identity "hash".
pub(crate) const IDENTITY: u64 = 0x00;

/// Which part of the DAG at the end of the path to send (`dag-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only the terminal block.
    Block,
    /// What is needed to read the terminal entity: a whole file, or a
    /// folder's own node.
    Entity,
    /// The whole DAG under the terminal block.
    All,
}

impl Scope {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "entity" => Some(Self::Entity),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Entity => "entity",
            Self::All => "all",
        }
    }
}

/// `entity-bytes=from:to`: inclusive offsets, negative ones counted from
/// the end, `to` of `None` meaning the end (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntityBytes {
    pub(crate) from: i64,
    pub(crate) to: Option<i64>,
}

impl EntityBytes {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (from, to) = s.split_once(':')?;
        let from = from.parse().ok()?;
        let to = if to == "*" {
            None
        } else {
            Some(to.parse().ok()?)
        };
        Some(Self { from, to })
    }

    /// The half-open range within a file of `total` bytes; `None` when it
    /// is empty or outside the file.
    fn resolve(self, total: u64) -> Option<(u64, u64)> {
        let total_i = i128::from(total);
        let abs = |v: i64| {
            if v < 0 {
                total_i + i128::from(v)
            } else {
                i128::from(v)
            }
        };
        let from = abs(self.from).max(0);
        let to = self.to.map_or(total_i - 1, abs).min(total_i - 1);
        if from > to || from >= total_i {
            return None;
        }
        Some((u64::try_from(from).ok()?, u64::try_from(to + 1).ok()?))
    }
}

/// One CAR response to produce.
#[derive(Debug, Clone)]
pub(crate) struct CarRequest {
    /// The CID the request named; the CAR header's only root.
    pub(crate) root: Cid,
    /// Blocks walked to resolve the path, from `root`, excluding `terminal`.
    pub(crate) path_blocks: Vec<Cid>,
    /// The block the path ends at.
    pub(crate) terminal: Cid,
    pub(crate) scope: Scope,
    pub(crate) bytes: Option<EntityBytes>,
}

/// The CARv1 header `{roots: [root], version: 1}` in DAG-CBOR, with its
/// length prefix.
pub(crate) fn header(root: &Cid) -> Vec<u8> {
    let mut cid_bytes = vec![0u8]; // the multibase identity prefix of DAG-CBOR links
    cid_bytes.extend_from_slice(&root.to_bytes());
    let mut h = Vec::with_capacity(cid_bytes.len() + 24);
    h.push(0xa2); // map(2)
    h.push(0x65); // text(5)
    h.extend_from_slice(b"roots");
    h.push(0x81); // array(1)
    h.extend_from_slice(&[0xd8, 0x2a]); // tag(42): CID
    let n = cid_bytes.len();
    if n < 24 {
        h.push(0x40 | n as u8);
    } else if n < 256 {
        h.extend_from_slice(&[0x58, n as u8]);
    } else {
        h.push(0x59);
        h.extend_from_slice(&(n as u16).to_be_bytes());
    }
    h.extend_from_slice(&cid_bytes);
    h.push(0x67); // text(7)
    h.extend_from_slice(b"version");
    h.push(0x01);
    let mut out = Vec::with_capacity(h.len() + 2);
    put_varint(&mut out, h.len() as u64);
    out.extend_from_slice(&h);
    out
}

struct CarWriter<'a> {
    store: &'a Store,
    out: &'a mut dyn Write,
    seen: HashSet<Vec<u8>>,
}

fn write_err(source: std::io::Error) -> StoreError {
    StoreError::Io {
        op: "write",
        path: "CAR response".into(),
        source,
    }
}

impl CarWriter<'_> {
    /// The verified block `cid`, or `None` for identity CIDs.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        if cid.hash().code() == IDENTITY {
            return Ok(None);
        }
        self.store.block(cid).map(Some)
    }

    /// Writes a block unless it was already written.
    fn emit(&mut self, cid: &Cid, block: &[u8]) -> Result<(), StoreError> {
        if !self.seen.insert(cid.hash().to_bytes()) {
            return Ok(());
        }
        let cid_bytes = cid.to_bytes();
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, (cid_bytes.len() + block.len()) as u64);
        self.out.write_all(&prefix).map_err(write_err)?;
        self.out.write_all(&cid_bytes).map_err(write_err)?;
        self.out.write_all(block).map_err(write_err)
    }

    /// Every block under `root`, depth-first in link order.
    fn all(&mut self, root: &Cid) -> Result<(), StoreError> {
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if self.seen.contains(&cid.hash().to_bytes()) {
                continue;
            }
            let Some(block) = self.get(&cid)? else {
                continue;
            };
            self.emit(&cid, &block)?;
            let mut links = links_of(&cid, &block)?;
            links.reverse();
            stack.extend(links);
        }
        Ok(())
    }

    /// The blocks of the file `cid` (whose block is `block`, starting at
    /// file offset `base`) that hold bytes of `[from, to)`.
    fn file_range(
        &mut self,
        cid: &Cid,
        block: Bytes,
        base: u64,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        self.emit(cid, &block)?;
        let Node::Pb { unixfs, links } = Node::decode(cid, block)? else {
            return Ok(());
        };
        let mut pos = base + unixfs.data.as_ref().map_or(0, |d| d.len() as u64);
        for (link, size) in links.iter().zip(&unixfs.blocksizes) {
            if pos < to
                && pos + size > from
                && let Some(child) = self.get(&link.cid)?
            {
                self.file_range(&link.cid, child, pos, from, to)?;
            }
            pos += size;
        }
        Ok(())
    }
}

/// Writes the CAR for `req` to `out`.
pub(crate) fn write(
    store: &Store,
    req: &CarRequest,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    out.write_all(&header(&req.root)).map_err(write_err)?;
    let mut w = CarWriter {
        store,
        out,
        seen: HashSet::new(),
    };
    for cid in &req.path_blocks {
        if let Some(block) = w.get(cid)? {
            w.emit(cid, &block)?;
        }
    }
    let terminal = req.terminal;
    let scope = if req.bytes.is_some() {
        Scope::Entity
    } else {
        req.scope
    };
    match scope {
        Scope::All => w.all(&terminal),
        Scope::Block => match w.get(&terminal)? {
            Some(block) => w.emit(&terminal, &block),
            None => Ok(()),
        },
        Scope::Entity => {
            let Some(block) = w.get(&terminal)? else {
                return Ok(());
            };
            let node = match terminal.codec() {
                RAW | DAG_PB => Node::decode(&terminal, block.clone())?,
                // Not UnixFS: the entity is the block itself.
                _ => return w.emit(&terminal, &block),
            };
            let is_file = match &node {
                Node::Raw(_) => true,
                Node::Pb { unixfs, .. } => matches!(unixfs.kind, NodeType::File | NodeType::Raw),
            };
            if !is_file {
                // A folder's entity is its own node (this store never
                // writes HAMT shards, and lists only plain folders).
                return w.emit(&terminal, &block);
            }
            match req.bytes {
                None => w.all(&terminal),
                Some(eb) => match eb.resolve(node.file_len()) {
                    Some((from, to)) => w.file_range(&terminal, block, 0, from, to),
                    None => w.emit(&terminal, &block),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_bytes() {
        let eb = |s| EntityBytes::parse(s).and_then(|e| e.resolve(100));
        assert_eq!(eb("0:*"), Some((0, 100)));
        assert_eq!(eb("10:19"), Some((10, 20)));
        assert_eq!(eb("-10:*"), Some((90, 100)));
        assert_eq!(eb("5:-10"), Some((5, 91)));
        assert_eq!(eb("0:1000"), Some((0, 100)));
        assert_eq!(eb("200:*"), None);
        assert_eq!(eb("20:10"), None);
        assert!(EntityBytes::parse("a:b").is_none());
        assert!(EntityBytes::parse("10").is_none());
    }
}
