//! Recomputing every block hash under a root.

use std::collections::HashSet;

use cid::Cid;
use rayon::prelude::*;

use crate::unixfs::links_of;
use crate::{Loc, Result, Store, StoreError};

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Blocks whose hash was recomputed.
    pub blocks_checked: u64,
    /// Bytes hashed.
    pub bytes_checked: u64,
    /// Blocks whose bytes do not hash to their CID.
    #[serde(serialize_with = "ser_cids")]
    pub corrupt: Vec<Cid>,
    /// Blocks under the root that are not in the store.
    #[serde(serialize_with = "ser_cids")]
    pub missing: Vec<Cid>,
}

fn ser_cids<S: serde::Serializer>(cids: &[Cid], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(cids.iter().map(|c| c.to_string()))
}

impl VerifyReport {
    /// True when every block is present and intact.
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

impl Store {
    /// Recomputes the hash of every block under `root` (leaves in parallel)
    /// and lists the corrupt and missing ones. Links of a corrupt node are
    /// not followed.
    pub fn verify(&self, root: &Cid) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        let mut leaves = Vec::new();
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid.hash().to_bytes()) {
                continue;
            }
            match self.loc(cid.hash())? {
                None => report.missing.push(cid),
                Some(Loc::Inline(b)) => {
                    report.blocks_checked += 1;
                    report.bytes_checked += b.len() as u64;
                    match crate::check_block(&cid, &b) {
                        Ok(()) => stack.extend(links_of(&cid, &b)?),
                        Err(StoreError::Corrupt(c)) => report.corrupt.push(c),
                        Err(e) => return Err(e),
                    }
                }
                Some(loc) => leaves.push((cid, loc)),
            }
        }
        let results: Vec<(Cid, u64, Result<()>)> = leaves
            .par_iter()
            .map(|(cid, loc)| {
                let len = loc.extent().map_or(0, |e| u64::from(e.len));
                (*cid, len, self.check_loc(cid, loc))
            })
            .collect();
        for (cid, len, r) in results {
            report.blocks_checked += 1;
            report.bytes_checked += len;
            match r {
                Ok(()) => {}
                Err(StoreError::Corrupt(_)) => report.corrupt.push(cid),
                // A data file that vanished or shrank: its blocks are gone.
                Err(StoreError::Io { .. }) | Err(StoreError::Malformed(_)) => {
                    report.missing.push(cid)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
