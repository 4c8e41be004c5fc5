//! Importing files and folders as UnixFS DAGs with kubo's layout.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cid::{Cid, Version};
use ipld_dagpb::PbLink;
use rayon::prelude::*;
use redb::{ReadableDatabase, ReadableTable};

use crate::unixfs::{DAG_PB, LeafFrame, NodeType, RAW, UnixFsData, encode_pb};
use crate::{
    BLOCKS, DATA, Extent, FILES, IMPORTS, Loc, PINS, Result, Store, StoreError, make_cid,
    sha256_multihash,
};

/// Chunks hashed per batch; a batch is written while it is hashed.
const BATCH_CHUNKS: usize = 32;
/// Largest chunk kubo accepts.
pub(crate) const MAX_CHUNK: usize = 1024 * 1024;
/// Directories whose node would be larger than this are HAMT-sharded by kubo,
/// which this store does not write.
const MAX_DIR_NODE: usize = 256 * 1024;

/// How to cut files into a DAG: the settings of `ipfs add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes.
    pub cid_version: Version,
    /// Raw (not dag-pb-wrapped) leaves; their CIDs are always v1.
    pub raw_leaves: bool,
    /// Fixed chunk size in bytes (1 ..= 1 MiB).
    pub chunk_size: usize,
    /// Most links per internal file node.
    pub max_links: usize,
    /// Wrap the added paths in a directory.
    pub wrap: bool,
    /// Include files whose names start with a dot (kubo `--hidden`).
    pub hidden: bool,
    /// Compute CIDs without storing anything.
    pub only_hash: bool,
    /// Pin the resulting roots recursively.
    pub pin: bool,
}

impl Default for ImportOptions {
    /// kubo `ipfs add` defaults: CIDv0, dag-pb leaves, 256 KiB chunks, 174 links.
    fn default() -> Self {
        Self {
            cid_version: Version::V0,
            raw_leaves: false,
            chunk_size: 256 * 1024,
            max_links: 174,
            wrap: false,
            hidden: false,
            only_hash: false,
            pin: true,
        }
    }
}

impl ImportOptions {
    /// kubo `ipfs add --cid-version=1`: CIDv1 with raw leaves.
    pub fn cid_v1() -> Self {
        Self {
            cid_version: Version::V1,
            raw_leaves: true,
            ..Self::default()
        }
    }

    /// kubo's `unixfs-v1-2025` profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links.
    pub fn unixfs_v1_2025() -> Self {
        Self {
            chunk_size: MAX_CHUNK,
            max_links: 1024,
            ..Self::cid_v1()
        }
    }

    /// Checks the settings are ones kubo would accept.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "chunk size {} is outside 1..={MAX_CHUNK} bytes",
                self.chunk_size
            )));
        }
        if self.max_links < 2 {
            return Err(StoreError::Invalid(format!(
                "max links per node {} must be at least 2",
                self.max_links
            )));
        }
        Ok(())
    }

    fn fingerprint(&self) -> String {
        format!(
            "v{}-{}-c{}-l{}",
            u64::from(self.cid_version),
            if self.raw_leaves { "raw" } else { "pb" },
            self.chunk_size,
            self.max_links
        )
    }

    fn leaf_cid_version(&self) -> Version {
        if self.raw_leaves {
            Version::V1
        } else {
            self.cid_version
        }
    }
}

/// Bytes-done callback for progress bars; must be cheap.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// One entry `ipfs add` reports: a file or folder and its CID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Added {
    /// Path as kubo prints it (relative to the added path's parent).
    pub name: String,
    /// Root CID of the entry.
    #[serde(serialize_with = "ser_cid")]
    pub cid: Cid,
    /// Cumulative DAG size (kubo's `Size`/`Tsize`).
    pub size: u64,
    /// File bytes (0 for folders).
    pub file_size: u64,
}

fn ser_cid<S: serde::Serializer>(cid: &Cid, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

/// A link to a finished subtree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) cid: Cid,
    pub(crate) tsize: u64,
    pub(crate) filesize: u64,
}

/// Builds kubo's balanced layout as leaves stream in.
struct Balanced {
    opts: ImportOptions,
    levels: Vec<Vec<Link>>,
    nodes: Vec<(Cid, Bytes)>,
}

impl Balanced {
    fn new(opts: ImportOptions) -> Self {
        Self {
            opts,
            levels: vec![Vec::new()],
            nodes: Vec::new(),
        }
    }

    fn push(&mut self, level: usize, link: Link) {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(link);
        if self.levels[level].len() == self.opts.max_links {
            let group = std::mem::take(&mut self.levels[level]);
            let parent = self.reduce(group);
            self.push(level + 1, parent);
        }
    }

    fn reduce(&mut self, group: Vec<Link>) -> Link {
        let unixfs = UnixFsData {
            kind: NodeType::File,
            data: None,
            filesize: Some(group.iter().map(|l| l.filesize).sum()),
            blocksizes: group.iter().map(|l| l.filesize).collect(),
        };
        let links = group
            .iter()
            .map(|l| PbLink {
                cid: l.cid,
                name: Some(String::new()),
                size: Some(l.tsize),
            })
            .collect();
        let block = encode_pb(links, unixfs.encode());
        let cid = make_cid(self.opts.cid_version, DAG_PB, sha256_multihash(&[&block]));
        let link = Link {
            cid,
            tsize: block.len() as u64 + group.iter().map(|l| l.tsize).sum::<u64>(),
            filesize: unixfs.filesize.unwrap_or(0),
        };
        self.nodes.push((cid, Bytes::from(block)));
        link
    }

    /// The root: a lone leaf is its own root; every other level is reduced
    /// until one node remains, as kubo's balanced builder does.
    fn finish(mut self) -> (Link, Vec<(Cid, Bytes)>) {
        let mut level = 0;
        loop {
            let higher = self.levels[level + 1..].iter().any(|l| !l.is_empty());
            let items = std::mem::take(&mut self.levels[level]);
            if !higher && items.len() == 1 {
                return (items[0], self.nodes);
            }
            if !items.is_empty() {
                let parent = self.reduce(items);
                self.push(level + 1, parent);
            }
            level += 1;
        }
    }
}

/// The state of one `add_paths` walk.
struct Walk<'a> {
    opts: &'a ImportOptions,
    progress: Progress<'a>,
    /// Entries in kubo's output order.
    added: Vec<Added>,
    /// Folder nodes to commit with the roots.
    dir_nodes: Vec<(Cid, Bytes)>,
    /// (device, inode) of the folders being walked, to stop symlink loops.
    open_dirs: Vec<(u64, u64)>,
}

/// A leaf as the importer produced it, with its place in the data file.
struct Leaf {
    cid: Cid,
    offset: u64,
    len: u32,
}

/// What importing one byte stream produced.
pub(crate) struct FileDag {
    pub(crate) root: Link,
}

impl Store {
    /// Imports the stream `src` as one UnixFS file and commits it (unpinned
    /// unless `opts.pin`). Its bytes land contiguously in one data file.
    pub fn add_reader(
        &self,
        src: &mut dyn Read,
        opts: &ImportOptions,
        progress: Progress<'_>,
    ) -> Result<Added> {
        opts.validate()?;
        let _hold = self.gc_hold();
        let dag = self.import_stream(src, opts, progress)?;
        if opts.pin && !opts.only_hash {
            self.pin_roots(&[dag.root.cid])?;
        }
        Ok(Added {
            name: dag.root.cid.to_string(),
            cid: dag.root.cid,
            size: dag.root.tsize,
            file_size: dag.root.filesize,
        })
    }

    /// Imports a file's bytes: chunks, hashes in parallel while writing the
    /// data file, builds the balanced DAG and commits it in one transaction.
    pub(crate) fn import_stream(
        &self,
        src: &mut dyn Read,
        opts: &ImportOptions,
        progress: Progress<'_>,
    ) -> Result<FileDag> {
        let id = self.alloc_id();
        let partial = self.partial_path(id);
        let mut out = if opts.only_hash {
            None
        } else {
            Some(File::create(&partial).map_err(StoreError::io("create", &partial))?)
        };
        let result = self.chunk_and_hash(src, opts, out.as_mut(), progress);
        let (leaves, root, nodes) = match result {
            Ok(r) => r,
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let Some(out) = out else {
            return Ok(FileDag { root });
        };
        let commit = || -> Result<()> {
            if self.sync {
                out.sync_data().map_err(StoreError::io("sync", &partial))?;
            }
            drop(out);
            let tx = self.db.begin_write()?;
            {
                let files = tx.open_table(FILES)?;
                if files.get(root.cid.hash().to_bytes().as_slice())?.is_some() {
                    // Already stored (same bytes, same settings): keep the old copy.
                    drop(files);
                    tx.abort()?;
                    std::fs::remove_file(&partial).map_err(StoreError::io("remove", &partial))?;
                    return Ok(());
                }
            }
            let path = self.data_path(id);
            std::fs::rename(&partial, &path).map_err(StoreError::io("rename", &partial))?;
            if self.sync {
                sync_dir(&self.dir.join("data"))?;
            }
            {
                let mut blocks = tx.open_table(BLOCKS)?;
                for leaf in &leaves {
                    let e = Extent {
                        id,
                        offset: leaf.offset,
                        len: leaf.len,
                    };
                    let loc = if leaf.cid.codec() == RAW {
                        Loc::Raw(e)
                    } else {
                        Loc::PbLeaf(e)
                    };
                    let key = leaf.cid.hash().to_bytes();
                    if blocks.get(key.as_slice())?.is_none() {
                        blocks.insert(key.as_slice(), loc.encode().as_slice())?;
                    }
                }
                for (cid, block) in &nodes {
                    let key = cid.hash().to_bytes();
                    blocks.insert(
                        key.as_slice(),
                        Loc::Inline(block.clone()).encode().as_slice(),
                    )?;
                }
                let mut files = tx.open_table(FILES)?;
                files.insert(root.cid.hash().to_bytes().as_slice(), id)?;
                let mut data = tx.open_table(DATA)?;
                let mut rec = root.cid.to_bytes();
                rec.extend_from_slice(&root.filesize.to_le_bytes());
                data.insert(id, rec.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        };
        match commit() {
            Ok(()) => Ok(FileDag { root }),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn chunk_and_hash(
        &self,
        src: &mut dyn Read,
        opts: &ImportOptions,
        mut out: Option<&mut File>,
        progress: Progress<'_>,
    ) -> Result<(Vec<Leaf>, Link, Vec<(Cid, Bytes)>)> {
        let chunk = opts.chunk_size;
        let leaf_version = opts.leaf_cid_version();
        let mut tree = Balanced::new(*opts);
        let mut leaves = Vec::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; chunk * BATCH_CHUNKS];
        let mut first = true;
        loop {
            let filled =
                read_full(src, &mut buf).map_err(StoreError::io("read", "import source"))?;
            if filled == 0 && !first {
                break;
            }
            first = false;
            let data = &buf[..filled];
            let hash_batch = || -> Vec<(Cid, usize)> {
                let chunks: Vec<&[u8]> = if data.is_empty() {
                    vec![data]
                } else {
                    data.chunks(chunk).collect()
                };
                chunks
                    .par_iter()
                    .map(|c| {
                        let cid = if opts.raw_leaves {
                            make_cid(Version::V1, RAW, sha256_multihash(&[c]))
                        } else {
                            let f = LeafFrame::new(c.len() as u64);
                            make_cid(
                                leaf_version,
                                DAG_PB,
                                sha256_multihash(&[&f.prefix, c, &f.suffix]),
                            )
                        };
                        (cid, c.len())
                    })
                    .collect()
            };
            let (written, hashed) = match out.as_deref_mut() {
                Some(f) => rayon::join(|| f.write_all(data), hash_batch),
                None => (Ok(()), hash_batch()),
            };
            written.map_err(StoreError::io("write", "data file"))?;
            if let Some(f) = out.as_deref().filter(|_| self.sync) {
                start_writeback(f, offset, filled as u64);
            }
            for (cid, len) in hashed {
                let tsize = if opts.raw_leaves {
                    len as u64
                } else {
                    LeafFrame::new(len as u64).block_len(len as u64)
                };
                tree.push(
                    0,
                    Link {
                        cid,
                        tsize,
                        filesize: len as u64,
                    },
                );
                leaves.push(Leaf {
                    cid,
                    offset,
                    len: len as u32,
                });
                offset += len as u64;
            }
            progress(filled as u64);
            if filled < buf.len() {
                break;
            }
        }
        let (root, nodes) = tree.finish();
        Ok((leaves, root, nodes))
    }

    /// Imports files and folders like `ipfs add [-r] [-w] PATH…`, returning
    /// every entry in kubo's order (children before their folder, roots last).
    /// The roots (or the wrapping folder) are pinned in the transaction that
    /// stores the last folder node, so no root is visible before its blocks.
    pub fn add_paths(
        &self,
        paths: &[PathBuf],
        opts: &ImportOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<Added>> {
        opts.validate()?;
        let _hold = self.gc_hold();
        let mut walk = Walk {
            opts,
            progress,
            added: Vec::new(),
            dir_nodes: Vec::new(),
            open_dirs: Vec::new(),
        };
        let mut tops = BTreeMap::new();
        for path in paths {
            // `.` or `dir/..` are named after the folder they stand for, as in kubo.
            let named = match path.file_name() {
                Some(_) => path.clone(),
                None => path
                    .canonicalize()
                    .map_err(StoreError::io("resolve", path))?,
            };
            let name = name_str(&named, &named.display().to_string())?;
            let link = self.add_entry(path, &name, &mut walk)?;
            if tops.insert(name.clone(), link).is_some() {
                return Err(StoreError::Invalid(format!(
                    "two added paths are both named {name:?}"
                )));
            }
        }
        self.finish_tops(&tops, walk.dir_nodes, walk.added, opts)
    }

    /// Wraps the top-level entries if asked, then stores the folder nodes
    /// and pins the roots in one transaction: the commit point of an add.
    fn finish_tops(
        &self,
        tops: &BTreeMap<String, Link>,
        mut nodes: Vec<(Cid, Bytes)>,
        mut added: Vec<Added>,
        opts: &ImportOptions,
    ) -> Result<Vec<Added>> {
        let mut roots: Vec<Cid> = tops.values().map(|l| l.cid).collect();
        if opts.wrap {
            let link = dir_node(opts, tops, &mut nodes)?;
            added.push(Added {
                name: String::new(),
                cid: link.cid,
                size: link.tsize,
                file_size: 0,
            });
            roots = vec![link.cid];
        }
        if opts.only_hash {
            return Ok(added);
        }
        let tx = self.db.begin_write()?;
        {
            let mut blocks = tx.open_table(BLOCKS)?;
            for (cid, block) in &nodes {
                blocks.insert(
                    cid.hash().to_bytes().as_slice(),
                    Loc::Inline(block.clone()).encode().as_slice(),
                )?;
            }
            if opts.pin {
                let mut pins = tx.open_table(PINS)?;
                for root in &roots {
                    pins.insert(root.to_bytes().as_slice(), crate::pin::RECURSIVE)?;
                }
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn add_entry(&self, path: &Path, name: &str, walk: &mut Walk<'_>) -> Result<Link> {
        use std::os::unix::fs::MetadataExt;
        let Walk { opts, progress, .. } = *walk;
        // Symlinks are followed (kubo `--dereference-symlinks`).
        let meta = std::fs::metadata(path).map_err(StoreError::io("stat", path))?;
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if walk.open_dirs.contains(&id) {
                return Err(StoreError::Invalid(format!(
                    "{}: a symlink loops back to a folder being added",
                    path.display()
                )));
            }
            walk.open_dirs.push(id);
            let mut children = BTreeMap::new();
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(path).map_err(StoreError::io("list", path))? {
                let entry = entry.map_err(StoreError::io("list", path))?;
                let child_name = name_str(&entry.path(), &entry.file_name().to_string_lossy())?;
                if !opts.hidden && child_name.starts_with('.') {
                    continue;
                }
                entries.push((child_name, entry.path()));
            }
            entries.sort();
            for (child_name, child_path) in entries {
                let full = format!("{name}/{child_name}");
                let link = self.add_entry(&child_path, &full, walk)?;
                children.insert(child_name, link);
            }
            walk.open_dirs.pop();
            let link = dir_node(opts, &children, &mut walk.dir_nodes)?;
            walk.added.push(Added {
                name: name.to_string(),
                cid: link.cid,
                size: link.tsize,
                file_size: 0,
            });
            Ok(link)
        } else if meta.is_file() {
            let root = match self.cached_import(path, &meta, opts)? {
                Some(link) => {
                    progress(meta.len());
                    link
                }
                None => {
                    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
                    let dag = self.import_stream(&mut file, opts, progress)?;
                    if !opts.only_hash {
                        self.remember_import(path, &meta, opts, &dag.root)?;
                    }
                    dag.root
                }
            };
            walk.added.push(Added {
                name: name.to_string(),
                cid: root.cid,
                size: root.tsize,
                file_size: root.filesize,
            });
            Ok(root)
        } else {
            Err(StoreError::Unsupported(format!(
                "{}: not a regular file or folder",
                path.display()
            )))
        }
    }

    fn import_key(path: &Path, meta: &std::fs::Metadata, opts: &ImportOptions) -> String {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{}:{}:{}:{}.{}:{}:{}",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            opts.fingerprint(),
            path.display()
        )
    }

    /// A previous import of the same unchanged file with the same settings,
    /// if its DAG is still complete in the store.
    fn cached_import(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        opts: &ImportOptions,
    ) -> Result<Option<Link>> {
        if opts.only_hash {
            return Ok(None);
        }
        let key = Self::import_key(path, meta, opts);
        let tx = self.db.begin_read()?;
        let imports = tx.open_table(IMPORTS)?;
        let Some(v) = imports.get(key.as_str())? else {
            return Ok(None);
        };
        let rec = v.value();
        if rec.len() < 16 {
            return Ok(None);
        }
        let (cid_bytes, sizes) = rec.split_at(rec.len() - 16);
        let Ok(cid) = Cid::try_from(cid_bytes) else {
            return Ok(None);
        };
        let files = tx.open_table(FILES)?;
        if files.get(cid.hash().to_bytes().as_slice())?.is_none() {
            return Ok(None);
        }
        let tsize = u64::from_le_bytes(sizes[..8].try_into().unwrap_or_default());
        let filesize = u64::from_le_bytes(sizes[8..].try_into().unwrap_or_default());
        Ok(Some(Link {
            cid,
            tsize,
            filesize,
        }))
    }

    fn remember_import(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        opts: &ImportOptions,
        root: &Link,
    ) -> Result<()> {
        let key = Self::import_key(path, meta, opts);
        let mut rec = root.cid.to_bytes();
        rec.extend_from_slice(&root.tsize.to_le_bytes());
        rec.extend_from_slice(&root.filesize.to_le_bytes());
        let tx = self.db.begin_write()?;
        tx.open_table(IMPORTS)?
            .insert(key.as_str(), rec.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Builds UnixFS folders from `(path, file root)` entries (paths use `/`),
    /// stores the folder nodes and returns the top-level entries. Used by the
    /// Kubo RPC `add` of multipart uploads.
    pub fn add_tree(
        &self,
        files: &[(String, Cid, u64, u64)],
        empty_dirs: &[String],
        opts: &ImportOptions,
    ) -> Result<Vec<Added>> {
        #[derive(Default)]
        struct Dir {
            files: BTreeMap<String, Link>,
            dirs: BTreeMap<String, Dir>,
        }
        fn insert_dir<'a>(root: &'a mut Dir, parts: &[&str]) -> &'a mut Dir {
            parts
                .iter()
                .fold(root, |d, p| d.dirs.entry((*p).to_string()).or_default())
        }
        fn build(
            opts: &ImportOptions,
            prefix: &str,
            dir: &Dir,
            nodes: &mut Vec<(Cid, Bytes)>,
            added: &mut Vec<Added>,
        ) -> Result<BTreeMap<String, Link>> {
            let mut links = dir.files.clone();
            for (name, sub) in &dir.dirs {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let children = build(opts, &path, sub, nodes, added)?;
                let link = dir_node(opts, &children, nodes)?;
                added.push(Added {
                    name: path,
                    cid: link.cid,
                    size: link.tsize,
                    file_size: 0,
                });
                links.insert(name.clone(), link);
            }
            Ok(links)
        }
        let mut root = Dir::default();
        let mut added = Vec::new();
        for (path, cid, tsize, filesize) in files {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let Some((file, dirs)) = parts.split_last() else {
                return Err(StoreError::Invalid(format!("empty file path {path:?}")));
            };
            for p in &parts {
                if *p == "." || *p == ".." {
                    return Err(StoreError::Invalid(format!(
                        "path {path:?} has a . or .. segment"
                    )));
                }
            }
            insert_dir(&mut root, dirs).files.insert(
                (*file).to_string(),
                Link {
                    cid: *cid,
                    tsize: *tsize,
                    filesize: *filesize,
                },
            );
            added.push(Added {
                name: parts.join("/"),
                cid: *cid,
                size: *tsize,
                file_size: *filesize,
            });
        }
        for d in empty_dirs {
            let parts: Vec<&str> = d.split('/').filter(|p| !p.is_empty()).collect();
            insert_dir(&mut root, &parts);
        }
        let mut nodes = Vec::new();
        let tops = build(opts, "", &root, &mut nodes, &mut added)?;
        self.finish_tops(&tops, nodes, added, opts)
    }
}

/// Encodes a UnixFS folder over `children` and queues its block.
fn dir_node(
    opts: &ImportOptions,
    children: &BTreeMap<String, Link>,
    nodes: &mut Vec<(Cid, Bytes)>,
) -> Result<Link> {
    let unixfs = UnixFsData {
        kind: NodeType::Directory,
        data: None,
        filesize: None,
        blocksizes: vec![],
    };
    let links = children
        .iter()
        .map(|(name, l)| PbLink {
            cid: l.cid,
            name: Some(name.clone()),
            size: Some(l.tsize),
        })
        .collect();
    let block = encode_pb(links, unixfs.encode());
    if block.len() > MAX_DIR_NODE {
        return Err(StoreError::Unsupported(format!(
            "a folder with {} entries needs a HAMT-sharded directory, which this store does not write",
            children.len()
        )));
    }
    let cid = make_cid(opts.cid_version, DAG_PB, sha256_multihash(&[&block]));
    let tsize = block.len() as u64 + children.values().map(|l| l.tsize).sum::<u64>();
    nodes.push((cid, Bytes::from(block)));
    Ok(Link {
        cid,
        tsize,
        filesize: 0,
    })
}

fn name_str(path: &Path, lossy: &str) -> Result<String> {
    let name = path.file_name().map(|n| n.to_str());
    match name {
        Some(Some(n)) => Ok(n.to_string()),
        Some(None) => Err(StoreError::Invalid(format!(
            "{}: file name is not valid UTF-8, which UnixFS links need",
            path.display()
        ))),
        None => Ok(lossy.to_string()),
    }
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk now, so
/// the final fsync overlaps with hashing instead of following it.
#[cfg(target_os = "linux")]
fn start_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: plain syscall on an open descriptor; failure only loses the hint.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync", dir))
}
