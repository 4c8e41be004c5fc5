//! Reading files and folders back: resolve, ls, cat, get, mmap.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use memmap2::Mmap;
use rayon::prelude::*;
use redb::ReadableDatabase;

use crate::import::sync_dir;
use crate::unixfs::{DAG_PB, LeafFrame, Node, NodeType, RAW};
use crate::{BLOCKS, DATA, Extent, FILES, Loc, Result, Store, StoreError};

/// Segments verified together before they are written out.
const VERIFY_BATCH: usize = 64;

/// One entry of a UnixFS folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirEntry {
    /// Link name.
    pub name: String,
    /// Child CID.
    #[serde(serialize_with = "ser_cid")]
    pub cid: Cid,
    /// Cumulative DAG size from the link.
    pub size: u64,
    /// File size in bytes (0 for folders).
    pub file_size: u64,
    /// Whether the child is a folder.
    pub is_dir: bool,
}

fn ser_cid<S: serde::Serializer>(cid: &Cid, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

/// A whole file mapped into memory, every block checked against its CID
/// when it was mapped. Derefs to the file bytes.
#[derive(Debug, Clone)]
pub struct FileMap {
    map: Arc<Mmap>,
    len: usize,
}

impl std::ops::Deref for FileMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

/// A piece of file content in file order.
struct Seg {
    cid: Cid,
    file_off: u64,
    src: SegSrc,
    skip: usize,
    take: usize,
}

enum SegSrc {
    /// Still in a data file; checked in batches before use.
    Extent(Loc),
    /// Already read and checked; `leaf` says whether it is a whole leaf block
    /// that could move into a data file (and as which kind).
    Inline { data: Bytes, leaf: Option<LeafKind> },
}

#[derive(Clone, Copy)]
enum LeafKind {
    Raw,
    Pb,
}

impl Seg {
    fn bytes<'a>(&'a self, store: &Store, keep: &'a mut Option<Arc<Mmap>>) -> Result<&'a [u8]> {
        match &self.src {
            SegSrc::Inline { data, .. } => Ok(&data[self.skip..self.skip + self.take]),
            SegSrc::Extent(loc) => {
                let e = loc
                    .extent()
                    .ok_or_else(|| StoreError::Malformed("extent".into()))?;
                let (map, r) = store.extent_bytes(e)?;
                let start = r.start + self.skip;
                *keep = Some(map);
                let map = keep
                    .as_ref()
                    .ok_or_else(|| StoreError::Malformed("map".into()))?;
                Ok(&map[start..start + self.take])
            }
        }
    }
}

impl Store {
    /// Decodes the block `cid` as a UnixFS node.
    pub fn node(&self, cid: &Cid) -> Result<Node> {
        Node::decode(cid, self.block(cid)?)
    }

    /// Follows `path` (`a/b/c`, no `.` or `..`) through folders from `root`.
    pub fn resolve(&self, root: &Cid, path: &str) -> Result<Cid> {
        let mut cur = *root;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            if name == "." || name == ".." {
                return Err(StoreError::Invalid(format!(
                    "path segment {name:?} is not allowed"
                )));
            }
            let node = self.node(&cur)?;
            let Node::Pb { unixfs, links } = node else {
                return Err(StoreError::Invalid(format!(
                    "{cur} is a file, not a folder"
                )));
            };
            if unixfs.kind != NodeType::Directory {
                return Err(StoreError::Invalid(format!("{cur} is not a folder")));
            }
            cur = links
                .iter()
                .find(|l| l.name.as_deref() == Some(name))
                .map(|l| l.cid)
                .ok_or_else(|| StoreError::NoSuchPath {
                    parent: cur,
                    name: name.to_string(),
                })?;
        }
        Ok(cur)
    }

    /// The entries of the folder `cid`.
    pub fn ls(&self, cid: &Cid) -> Result<Vec<DirEntry>> {
        let node = self.node(cid)?;
        let Node::Pb { unixfs, links } = node else {
            return Err(StoreError::Invalid(format!(
                "{cid} is a file, not a folder"
            )));
        };
        if unixfs.kind != NodeType::Directory {
            return Err(StoreError::Invalid(format!("{cid} is not a folder")));
        }
        links
            .into_iter()
            .map(|l| {
                let child = self.node(&l.cid)?;
                Ok(DirEntry {
                    name: l.name.unwrap_or_default(),
                    cid: l.cid,
                    size: l.size.unwrap_or(0),
                    file_size: child.file_len(),
                    is_dir: child.is_dir(),
                })
            })
            .collect()
    }

    /// Length in bytes of the file `cid`.
    pub fn file_len(&self, cid: &Cid) -> Result<u64> {
        if cid.codec() == RAW {
            return self.block_size(cid);
        }
        match self.loc(cid.hash())?.ok_or(StoreError::NotFound(*cid))? {
            Loc::PbLeaf(e) => Ok(u64::from(e.len)),
            Loc::Raw(e) => Ok(u64::from(e.len)),
            loc @ Loc::Inline(_) => {
                let node = Node::decode(cid, self.read_loc(cid, &loc)?)?;
                if node.is_dir() {
                    return Err(StoreError::Invalid(format!(
                        "{cid} is a folder, not a file"
                    )));
                }
                Ok(node.file_len())
            }
        }
    }

    /// Lists the content pieces of file `cid` overlapping `[start, end)`.
    fn segments(&self, cid: &Cid, start: u64, end: u64) -> Result<Vec<Seg>> {
        let mut segs = Vec::new();
        self.collect_segs(cid, 0, start, end, &mut segs)?;
        Ok(segs)
    }

    fn collect_segs(
        &self,
        cid: &Cid,
        base: u64,
        start: u64,
        end: u64,
        segs: &mut Vec<Seg>,
    ) -> Result<()> {
        let loc = self.loc(cid.hash())?.ok_or(StoreError::NotFound(*cid))?;
        let clip = |len: u64| -> Option<(usize, usize)> {
            let lo = start.max(base);
            let hi = end.min(base + len);
            (lo < hi).then(|| ((lo - base) as usize, (hi - lo) as usize))
        };
        if let Some(e) = loc.extent() {
            let pb = matches!(loc, Loc::PbLeaf(_));
            if pb != (cid.codec() == DAG_PB) {
                return Err(StoreError::Malformed(format!(
                    "{cid}: codec does not match its stored form"
                )));
            }
            if let Some((skip, take)) = clip(u64::from(e.len)) {
                segs.push(Seg {
                    cid: *cid,
                    file_off: base,
                    src: SegSrc::Extent(loc),
                    skip,
                    take,
                });
            }
            return Ok(());
        }
        let block = self.read_loc(cid, &loc)?;
        match Node::decode(cid, block.clone())? {
            Node::Raw(data) => {
                if let Some((skip, take)) = clip(data.len() as u64) {
                    segs.push(Seg {
                        cid: *cid,
                        file_off: base,
                        src: SegSrc::Inline {
                            data,
                            leaf: Some(LeafKind::Raw),
                        },
                        skip,
                        take,
                    });
                }
            }
            Node::Pb { unixfs, links } => {
                if !matches!(unixfs.kind, NodeType::File | NodeType::Raw) {
                    return Err(StoreError::Invalid(format!("{cid} is not a file")));
                }
                let data = unixfs.data.clone().unwrap_or_default();
                let mut pos = base;
                if !data.is_empty() {
                    let framed = links.is_empty() && {
                        let f = LeafFrame::new(data.len() as u64);
                        block.len() == f.prefix.len() + data.len() + f.suffix.len()
                            && block.starts_with(&f.prefix)
                            && block.ends_with(&f.suffix)
                    };
                    if let Some((skip, take)) = clip(data.len() as u64) {
                        segs.push(Seg {
                            cid: *cid,
                            file_off: pos,
                            src: SegSrc::Inline {
                                data: data.clone(),
                                leaf: framed.then_some(LeafKind::Pb),
                            },
                            skip,
                            take,
                        });
                    }
                    pos += data.len() as u64;
                }
                if links.len() != unixfs.blocksizes.len() {
                    return Err(StoreError::Malformed(format!(
                        "{cid}: {} links but {} block sizes",
                        links.len(),
                        unixfs.blocksizes.len()
                    )));
                }
                for (link, size) in links.iter().zip(&unixfs.blocksizes) {
                    if pos < end && pos + size > start {
                        self.collect_segs(&link.cid, pos, start, end, segs)?;
                    }
                    pos += size;
                }
            }
        }
        Ok(())
    }

    /// Writes `len` bytes (all if `None`) of file `cid` from `offset` to
    /// `out`, checking every block first. Returns the bytes written.
    pub fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        len: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let total = self.file_len(cid)?;
        let start = offset.min(total);
        let end = len.map_or(total, |l| start.saturating_add(l).min(total));
        let segs = self.segments(cid, start, end)?;
        self.write_segs(&segs, out)
    }

    fn write_segs(&self, segs: &[Seg], out: &mut dyn Write) -> Result<u64> {
        let mut written = 0u64;
        for batch in segs.chunks(VERIFY_BATCH) {
            batch.par_iter().try_for_each(|s| match &s.src {
                SegSrc::Extent(loc) => self.check_loc(&s.cid, loc),
                SegSrc::Inline { .. } => Ok(()),
            })?;
            for s in batch {
                let mut keep = None;
                let bytes = s.bytes(self, &mut keep)?;
                out.write_all(bytes)
                    .map_err(StoreError::io("write", "output"))?;
                written += bytes.len() as u64;
            }
        }
        Ok(written)
    }

    /// Writes the file or folder `cid` to `dest`, byte-identical to what was
    /// added. `dest` must not exist yet.
    pub fn get(&self, cid: &Cid, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(StoreError::Invalid(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let is_dir = cid.codec() == DAG_PB
            && matches!(self.loc(cid.hash())?, Some(Loc::Inline(_)))
            && self.node(cid)?.is_dir();
        if is_dir {
            std::fs::create_dir(dest).map_err(StoreError::io("create", dest))?;
            for entry in self.ls(cid)? {
                if entry.name.is_empty()
                    || entry.name.contains('/')
                    || entry.name == "."
                    || entry.name == ".."
                {
                    return Err(StoreError::Malformed(format!(
                        "{cid}: unsafe entry name {:?}",
                        entry.name
                    )));
                }
                self.get(&entry.cid, &dest.join(&entry.name))?;
            }
        } else {
            let mut f = File::create(dest).map_err(StoreError::io("create", dest))?;
            self.cat(
                cid,
                0,
                None,
                &mut std::io::BufWriter::with_capacity(1 << 20, &mut f),
            )?;
        }
        Ok(())
    }

    /// Maps the file `cid` as one contiguous slice after checking every block
    /// under it. A file whose blocks arrived one by one (CAR import, fetch) is
    /// first laid out contiguously in a data file.
    pub fn mmap(&self, cid: &Cid) -> Result<FileMap> {
        let id = match self.file_id(cid)? {
            Some(id) => id,
            None => self.materialize(cid)?,
        };
        let len = usize::try_from(self.file_len(cid)?)
            .map_err(|_| StoreError::Unsupported("file larger than the address space".into()))?;
        let segs = self.segments(cid, 0, len as u64)?;
        let map = self.map(id)?;
        if map.len() < len {
            return Err(StoreError::Malformed(format!(
                "{cid}: data file is shorter than the file"
            )));
        }
        // Check the mapped bytes themselves, piece by piece, against the DAG.
        segs.par_iter().try_for_each(|s| {
            let off = usize::try_from(s.file_off)
                .map_err(|_| StoreError::Malformed("offset".into()))?
                + s.skip;
            let bytes = &map[off..off + s.take];
            let ok = match &s.src {
                SegSrc::Inline { data, .. } => bytes == &data[s.skip..s.skip + s.take],
                SegSrc::Extent(_) if s.cid.codec() == RAW => {
                    crate::sha256_multihash(&[bytes]) == *s.cid.hash()
                }
                SegSrc::Extent(_) => {
                    let f = LeafFrame::new(bytes.len() as u64);
                    crate::sha256_multihash(&[&f.prefix, bytes, &f.suffix]) == *s.cid.hash()
                }
            };
            if ok {
                Ok(())
            } else {
                Err(StoreError::Corrupt(s.cid))
            }
        })?;
        Ok(FileMap { map, len })
    }

    /// The data file that holds exactly the bytes of file `cid`, after checking every block
    /// under it as [`Store::mmap`] does (a file whose blocks arrived one by one is laid out
    /// first). For programs that map weights by path without a copy; the file is the store's
    /// own and must only be read.
    pub fn file_path(&self, cid: &Cid) -> Result<PathBuf> {
        let map = self.mmap(cid)?;
        let id = self
            .file_id(cid)?
            .ok_or_else(|| StoreError::Malformed(format!("{cid}: no data file after mapping")))?;
        let path = self.data_path(id);
        let on_disk = std::fs::metadata(&path)
            .map_err(StoreError::io("stat", &path))?
            .len();
        if on_disk != map.len() as u64 {
            return Err(StoreError::Malformed(format!(
                "{cid}: data file {} holds {on_disk} bytes, the file {}",
                path.display(),
                map.len()
            )));
        }
        Ok(path)
    }

    pub(crate) fn file_id(&self, cid: &Cid) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let files = tx.open_table(FILES)?;
        Ok(files
            .get(cid.hash().to_bytes().as_slice())?
            .map(|v| v.value()))
    }

    /// Lays the file `cid` out contiguously in a new data file and points its
    /// leaves there. Returns the data id.
    pub fn materialize(&self, cid: &Cid) -> Result<u64> {
        if let Some(id) = self.file_id(cid)? {
            return Ok(id);
        }
        let len = self.file_len(cid)?;
        let segs = self.segments(cid, 0, len)?;
        let id = self.alloc_id();
        let partial = self.partial_path(id);
        let result = (|| -> Result<()> {
            let mut f = File::create(&partial).map_err(StoreError::io("create", &partial))?;
            {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
                self.write_segs(&segs, &mut w)?;
                w.flush().map_err(StoreError::io("write", &partial))?;
            }
            if self.sync {
                f.sync_data().map_err(StoreError::io("sync", &partial))?;
            }
            let path = self.data_path(id);
            std::fs::rename(&partial, &path).map_err(StoreError::io("rename", &partial))?;
            if self.sync {
                sync_dir(&self.dir.join("data"))?;
            }
            let tx = self.db.begin_write()?;
            {
                let mut blocks = tx.open_table(BLOCKS)?;
                for s in &segs {
                    let SegSrc::Inline {
                        data,
                        leaf: Some(kind),
                    } = &s.src
                    else {
                        continue;
                    };
                    let Ok(len) = u32::try_from(data.len()) else {
                        continue;
                    };
                    let e = Extent {
                        id,
                        offset: s.file_off,
                        len,
                    };
                    let loc = match kind {
                        LeafKind::Raw => Loc::Raw(e),
                        LeafKind::Pb => Loc::PbLeaf(e),
                    };
                    blocks.insert(s.cid.hash().to_bytes().as_slice(), loc.encode().as_slice())?;
                }
                tx.open_table(FILES)?
                    .insert(cid.hash().to_bytes().as_slice(), id)?;
                let mut rec = cid.to_bytes();
                rec.extend_from_slice(&len.to_le_bytes());
                tx.open_table(DATA)?.insert(id, rec.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    /// Lays out every file under `root` contiguously (see [`Store::materialize`]).
    /// Nodes that are neither files nor folders (symlinks, metadata) are skipped.
    pub fn materialize_all(&self, root: &Cid) -> Result<()> {
        if root.codec() == RAW {
            return self.materialize(root).map(|_| ());
        }
        let block = match self.loc(root.hash())?.ok_or(StoreError::NotFound(*root))? {
            // Already a leaf in a data file: a one-block file.
            Loc::PbLeaf(_) | Loc::Raw(_) => return self.materialize(root).map(|_| ()),
            loc @ Loc::Inline(_) => self.read_loc(root, &loc)?,
        };
        match Node::decode(root, block)? {
            Node::Pb { unixfs, links } if unixfs.kind == NodeType::Directory => {
                for link in links {
                    self.materialize_all(&link.cid)?;
                }
                Ok(())
            }
            Node::Pb { unixfs, .. } if matches!(unixfs.kind, NodeType::File | NodeType::Raw) => {
                self.materialize(root).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// The links of block `cid` without rehashing leaves: `Some(vec![])` for
    /// leaves kept in data files, `None` when the block is absent. Inline
    /// nodes are checked against their CID before their links are trusted.
    pub fn links(&self, cid: &Cid) -> Result<Option<Vec<Cid>>> {
        match self.loc(cid.hash())? {
            None => Ok(None),
            Some(Loc::Inline(b)) => {
                crate::check_block(cid, &b)?;
                crate::unixfs::links_of(cid, &b).map(Some)
            }
            Some(_) => Ok(Some(Vec::new())),
        }
    }
}
