//! CAR v1 import and export (`ipfs dag export` / `ipfs dag import`).

use std::collections::HashSet;
use std::io::{Read, Write};

use bytes::Bytes;
use cid::Cid;
use iroh_car::CarHeader;

use crate::unixfs::{links_of, put_varint};
use crate::{MAX_BLOCK, Result, Store, StoreError};

/// Blocks stored per transaction during an import.
const IMPORT_BATCH_BYTES: usize = 64 << 20;
/// Largest CAR header accepted.
const MAX_HEADER: usize = 64 << 10;

/// What a CAR import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CarImport {
    /// Roots named in the CAR header.
    #[serde(serialize_with = "ser_cids")]
    pub roots: Vec<Cid>,
    /// Blocks read (all checked against their CIDs).
    pub blocks: u64,
    /// Roots that were pinned (complete DAGs only).
    #[serde(serialize_with = "ser_cids")]
    pub pinned: Vec<Cid>,
    /// Roots not pinned, with the reason.
    pub pin_errors: Vec<(String, String)>,
}

fn ser_cids<S: serde::Serializer>(cids: &[Cid], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(cids.iter().map(|c| c.to_string()))
}

fn car_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Car(e.to_string())
}

fn read_varint(r: &mut dyn Read) -> Result<Option<u64>> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(car_err("truncated varint")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(car_err(e)),
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] < 0x80 {
            return Ok(Some(v));
        }
    }
    Err(car_err("varint too long"))
}

impl Store {
    /// Writes the DAG under `root` as a CAR v1 stream, blocks depth-first in
    /// link order, each once, each checked before it is written.
    pub fn export_car(&self, root: &Cid, out: &mut dyn Write) -> Result<u64> {
        let header = CarHeader::new_v1(vec![*root]).encode().map_err(car_err)?;
        let mut buf = Vec::with_capacity(16);
        put_varint(&mut buf, header.len() as u64);
        let w = |out: &mut dyn Write, b: &[u8]| {
            out.write_all(b)
                .map_err(StoreError::io("write", "CAR output"))
        };
        w(out, &buf)?;
        w(out, &header)?;
        let mut written = (buf.len() + header.len()) as u64;
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid.hash().to_bytes()) {
                continue;
            }
            let block = self.block(&cid)?;
            let cid_bytes = cid.to_bytes();
            buf.clear();
            put_varint(&mut buf, (cid_bytes.len() + block.len()) as u64);
            w(out, &buf)?;
            w(out, &cid_bytes)?;
            w(out, &block)?;
            written += (buf.len() + cid_bytes.len() + block.len()) as u64;
            let mut links = links_of(&cid, &block)?;
            links.reverse();
            stack.extend(links);
        }
        Ok(written)
    }

    /// Reads a CAR v1 stream, checks every block against its CID, stores the
    /// blocks, and pins each root whose DAG is complete (if `pin_roots`).
    /// A bad block aborts the import before the batch holding it is stored.
    pub fn import_car(&self, r: &mut dyn Read, pin_roots: bool) -> Result<CarImport> {
        let _hold = self.gc_hold();
        let header_len = read_varint(r)?.ok_or_else(|| car_err("empty input"))? as usize;
        if header_len == 0 || header_len > MAX_HEADER {
            return Err(car_err(format!("header length {header_len} out of range")));
        }
        let mut header = vec![0u8; header_len];
        r.read_exact(&mut header).map_err(car_err)?;
        let header = CarHeader::decode(&header).map_err(car_err)?;
        if header.version() != 1 {
            return Err(car_err(format!(
                "version {} (only CAR v1 is supported)",
                header.version()
            )));
        }
        let mut report = CarImport {
            roots: header.roots().to_vec(),
            ..CarImport::default()
        };
        let mut batch: Vec<(Cid, Bytes)> = Vec::new();
        let mut batch_bytes = 0usize;
        while let Some(len) = read_varint(r)? {
            let len = usize::try_from(len).map_err(car_err)?;
            if len > MAX_BLOCK + 128 {
                return Err(car_err(format!(
                    "section of {len} bytes is over the block limit"
                )));
            }
            let mut section = vec![0u8; len];
            r.read_exact(&mut section).map_err(car_err)?;
            let mut cursor = std::io::Cursor::new(&section[..]);
            let cid =
                Cid::read_bytes(&mut cursor).map_err(|e| car_err(format!("section CID: {e}")))?;
            let start = cursor.position() as usize;
            let block = Bytes::from(section).slice(start..);
            crate::check_block(&cid, &block)?;
            batch_bytes += block.len();
            batch.push((cid, block));
            report.blocks += 1;
            if batch_bytes >= IMPORT_BATCH_BYTES {
                self.put_blocks(&batch)?;
                batch.clear();
                batch_bytes = 0;
            }
        }
        self.put_blocks(&batch)?;
        if pin_roots {
            for root in report.roots.clone() {
                match self.pin_add(&root, crate::PinKind::Recursive) {
                    Ok(()) => report.pinned.push(root),
                    Err(e) => report.pin_errors.push((root.to_string(), e.to_string())),
                }
            }
        }
        Ok(report)
    }
}
