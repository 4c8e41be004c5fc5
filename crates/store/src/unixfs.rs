//! UnixFS v1 encoding on top of dag-pb, byte-for-byte as kubo writes it.
//!
//! dag-pb nodes themselves are encoded by `ipld-dagpb`; this module owns the
//! UnixFS `Data` message inside them (a five-field protobuf) and the leaf
//! framing that lets a dag-pb file leaf be hashed straight from the contiguous
//! file bytes without copying them.

use bytes::Bytes;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};

use crate::StoreError;

/// Multicodec of dag-pb blocks.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// The UnixFS node types this store reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// Raw data (legacy leaves).
    Raw,
    /// A directory whose children are named links.
    Directory,
    /// A file: data inline, in children, or both.
    File,
    /// A metadata node (unsupported content, kept as a block).
    Metadata,
    /// A symbolic link whose data is the target.
    Symlink,
    /// A HAMT-sharded directory.
    HamtShard,
}

impl NodeType {
    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Raw,
            1 => Self::Directory,
            2 => Self::File,
            3 => Self::Metadata,
            4 => Self::Symlink,
            5 => Self::HamtShard,
            _ => return None,
        })
    }

    fn code(self) -> u64 {
        match self {
            Self::Raw => 0,
            Self::Directory => 1,
            Self::File => 2,
            Self::Metadata => 3,
            Self::Symlink => 4,
            Self::HamtShard => 5,
        }
    }
}

/// The UnixFS `Data` protobuf message carried in a dag-pb node's Data field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: NodeType,
    /// Inline bytes (leaf file data, symlink target).
    pub data: Option<Bytes>,
    /// Total file size under this node (files only).
    pub filesize: Option<u64>,
    /// Sizes of the file data under each child link, in link order.
    pub blocksizes: Vec<u64>,
}

impl UnixFsData {
    /// Encodes the message with kubo's field order: Type, Data, filesize, blocksizes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.data.as_ref().map_or(0, |d| d.len()));
        out.push(0x08);
        put_varint(&mut out, self.kind.code());
        if let Some(data) = self.data.as_ref().filter(|d| !d.is_empty()) {
            out.push(0x12);
            put_varint(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        if let Some(size) = self.filesize {
            out.push(0x18);
            put_varint(&mut out, size);
        }
        for size in &self.blocksizes {
            out.push(0x20);
            put_varint(&mut out, *size);
        }
        out
    }

    /// Decodes the message, rejecting malformed protobuf.
    pub fn decode(bytes: &Bytes) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Malformed(format!("UnixFS data: {why}"));
        let mut pos = 0usize;
        let mut kind = None;
        let mut data = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        while pos < bytes.len() {
            let key = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated key"))?;
            let (field, wire) = (key >> 3, key & 7);
            match (field, wire) {
                (1, 0) => {
                    let code = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated type"))?;
                    kind = Some(NodeType::from_code(code).ok_or_else(|| bad("unknown type"))?);
                }
                (2, 2) => {
                    let len = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated data"))?;
                    let end = pos
                        .checked_add(usize::try_from(len).map_err(|_| bad("data too long"))?)
                        .filter(|e| *e <= bytes.len())
                        .ok_or_else(|| bad("data runs past the end"))?;
                    data = Some(bytes.slice(pos..end));
                    pos = end;
                }
                (3, 0) => {
                    filesize =
                        Some(get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated filesize"))?)
                }
                (4, 0) => blocksizes
                    .push(get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated blocksize"))?),
                (4, 2) => {
                    // Packed encoding, accepted on read.
                    let len = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated"))?;
                    let end = pos
                        .checked_add(usize::try_from(len).map_err(|_| bad("too long"))?)
                        .filter(|e| *e <= bytes.len())
                        .ok_or_else(|| bad("blocksizes run past the end"))?;
                    while pos < end {
                        blocksizes.push(get_varint(bytes, &mut pos).ok_or_else(|| bad("varint"))?);
                    }
                }
                (_, 0) => {
                    get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated field"))?;
                }
                (_, 2) => {
                    let len = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated field"))?;
                    pos = pos
                        .checked_add(usize::try_from(len).map_err(|_| bad("too long"))?)
                        .filter(|e| *e <= bytes.len())
                        .ok_or_else(|| bad("field runs past the end"))?;
                }
                _ => return Err(bad("unsupported wire type")),
            }
        }
        Ok(Self {
            kind: kind.ok_or_else(|| bad("missing Type"))?,
            data,
            filesize,
            blocksizes,
        })
    }

    /// Size of the file bytes this node stands for.
    pub fn file_len(&self) -> u64 {
        self.filesize.unwrap_or_else(|| {
            self.data.as_ref().map_or(0, |d| d.len() as u64) + self.blocksizes.iter().sum::<u64>()
        })
    }
}

/// Appends `v` as a protobuf varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The bytes around a chunk that make it a kubo dag-pb file leaf:
/// `prefix ‖ chunk ‖ suffix` is the block, so the leaf can be hashed and
/// served from the contiguous file bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFrame {
    /// Bytes before the chunk.
    pub prefix: Vec<u8>,
    /// Bytes after the chunk.
    pub suffix: Vec<u8>,
}

impl LeafFrame {
    /// Frame of a leaf holding `len` bytes: `PBNode{Data: UnixFS{File, Data, filesize}}`.
    pub fn new(len: u64) -> Self {
        let data_field = if len > 0 {
            1 + varint_len(len) + len as usize
        } else {
            0
        };
        let unixfs_len = 2 + data_field + 1 + varint_len(len);
        let mut prefix = Vec::with_capacity(16);
        prefix.push(0x0a);
        put_varint(&mut prefix, unixfs_len as u64);
        prefix.extend_from_slice(&[0x08, 0x02]);
        if len > 0 {
            prefix.push(0x12);
            put_varint(&mut prefix, len);
        }
        let mut suffix = vec![0x18];
        put_varint(&mut suffix, len);
        Self { prefix, suffix }
    }

    /// Total block length.
    pub fn block_len(&self, len: u64) -> u64 {
        self.prefix.len() as u64 + len + self.suffix.len() as u64
    }
}

/// Decodes a dag-pb block.
pub fn decode_pb(block: Bytes) -> Result<PbNode, StoreError> {
    PbNode::from_bytes(block).map_err(|e| StoreError::Malformed(format!("dag-pb: {e}")))
}

/// Encodes a dag-pb node with the given links and data.
pub fn encode_pb(links: Vec<PbLink>, data: Vec<u8>) -> Vec<u8> {
    PbNode {
        links,
        data: Some(Bytes::from(data)),
    }
    .into_bytes()
}

/// The UnixFS meaning of a block, as far as reading files and folders needs.
#[derive(Debug, Clone)]
pub enum Node {
    /// A raw block: all of it is file data.
    Raw(Bytes),
    /// A dag-pb node with UnixFS data.
    Pb {
        /// Decoded UnixFS message.
        unixfs: UnixFsData,
        /// Links in encoded order.
        links: Vec<PbLink>,
    },
}

impl Node {
    /// Interprets `block` according to the codec in `cid`.
    pub fn decode(cid: &Cid, block: Bytes) -> Result<Self, StoreError> {
        match cid.codec() {
            RAW => Ok(Node::Raw(block)),
            DAG_PB => {
                let pb = decode_pb(block)?;
                let data = pb.data.ok_or_else(|| {
                    StoreError::Malformed(format!("{cid}: dag-pb node without UnixFS data"))
                })?;
                Ok(Node::Pb {
                    unixfs: UnixFsData::decode(&data)?,
                    links: pb.links,
                })
            }
            other => Err(StoreError::Unsupported(format!(
                "{cid}: codec 0x{other:x} is not dag-pb or raw"
            ))),
        }
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Pb { unixfs, .. } if unixfs.kind == NodeType::Directory)
    }

    /// File length in bytes (0 for directories).
    pub fn file_len(&self) -> u64 {
        match self {
            Node::Raw(b) => b.len() as u64,
            Node::Pb { unixfs, .. } if matches!(unixfs.kind, NodeType::File | NodeType::Raw) => {
                unixfs.file_len()
            }
            Node::Pb { .. } => 0,
        }
    }
}

/// The CIDs a dag-pb block links to; raw blocks have none.
pub fn links_of(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>, StoreError> {
    match cid.codec() {
        DAG_PB => Ok(decode_pb(Bytes::copy_from_slice(block))?
            .links
            .into_iter()
            .map(|l| l.cid)
            .collect()),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_frame_matches_generic_encoding() {
        for len in [0u64, 1, 127, 128, 16383, 16384, 262_144, 1_048_576] {
            let chunk = vec![7u8; len as usize];
            let unixfs = UnixFsData {
                kind: NodeType::File,
                data: Some(Bytes::from(chunk.clone())),
                filesize: Some(len),
                blocksizes: vec![],
            };
            let generic = encode_pb(vec![], unixfs.encode());
            let frame = LeafFrame::new(len);
            let mut framed = frame.prefix.clone();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(&frame.suffix);
            assert_eq!(generic, framed, "len {len}");
            assert_eq!(frame.block_len(len), generic.len() as u64);
        }
    }

    #[test]
    fn unixfs_round_trip() {
        let msg = UnixFsData {
            kind: NodeType::File,
            data: None,
            filesize: Some(300_000),
            blocksizes: vec![262_144, 37_856],
        };
        let enc = Bytes::from(msg.encode());
        assert_eq!(UnixFsData::decode(&enc).expect("decodes"), msg);
        assert!(UnixFsData::decode(&Bytes::from_static(&[0x08])).is_err());
        assert!(UnixFsData::decode(&Bytes::from_static(&[0x12, 0x05, 1])).is_err());
    }
}
