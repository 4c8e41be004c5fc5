//! `lattice ipfs …`: the store from the command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cid::Cid;
use clap::{Args, Subcommand};
use lattice_store::{ImportOptions, PinKind, Store};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub(crate) enum IpfsCommand {
    /// Add files or folders; prints the CID of each entry (like `ipfs add`).
    Add(AddArgs),
    /// Print a file's bytes.
    Cat {
        /// CID, optionally followed by /path inside it.
        path: String,
        /// First byte to print.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Most bytes to print.
        #[arg(long)]
        length: Option<u64>,
    },
    /// Write a file or folder to disk, byte-identical to what was added.
    Get {
        /// CID, optionally followed by /path inside it.
        path: String,
        /// Where to write (default: the CID in the current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List a folder.
    Ls {
        /// CID, optionally followed by /path inside it.
        path: String,
    },
    /// Pins keep DAGs from garbage collection.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Recompute every block hash under a root and list corrupt or missing blocks.
    Verify {
        /// Root CID.
        cid: String,
    },
    /// Delete every block that no pin reaches.
    Gc,
    /// CAR v1 import and export.
    #[command(subcommand)]
    Dag(DagCommand),
    /// Pull a DAG from trustless gateways or Kubo RPC endpoints, verifying every block.
    Fetch {
        /// Sources: gateway URLs (http://host:port) or Kubo RPC endpoints (kubo+http://host:port).
        #[arg(long = "from", required = true)]
        from: Vec<String>,
        /// Root CID.
        cid: String,
        /// Parallel requests.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Do not pin the root after fetching.
        #[arg(long)]
        no_pin: bool,
    },
    /// Serve the store over the IPFS trustless gateway and the Kubo RPC API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// Files or folders to add.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Add folders recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Wrap the added paths in a folder.
    #[arg(short, long)]
    wrap_with_directory: bool,
    /// CID version (0 = kubo default; 1 implies raw leaves).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    cid_version: Option<u8>,
    /// Raw leaves (default: on for CIDv1, off for CIDv0).
    #[arg(long)]
    raw_leaves: Option<bool>,
    /// Chunk size in bytes (at most 1 MiB).
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Chunker in kubo syntax: size-N.
    #[arg(long, conflicts_with = "chunk_size")]
    chunker: Option<String>,
    /// Most links per internal node (kubo: 174).
    #[arg(long)]
    max_links: Option<usize>,
    /// Import profile: `unixfs-v1-2025` (CIDv1, raw leaves, 1 MiB chunks, 1024 links).
    #[arg(long)]
    profile: Option<String>,
    /// Only compute CIDs; store nothing.
    #[arg(short = 'n', long)]
    only_hash: bool,
    /// Include files whose names start with a dot.
    #[arg(long)]
    hidden: bool,
    /// Pin what is added.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// Print only the final root CID.
    #[arg(short = 'Q', long)]
    quieter: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PinCommand {
    /// Pin CIDs (recursively unless --direct); every block must be present.
    Add {
        /// CIDs to pin.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Pin only the block itself.
        #[arg(long)]
        direct: bool,
    },
    /// List pins.
    Ls,
    /// Remove pins.
    Rm {
        /// CIDs to unpin.
        #[arg(required = true)]
        cids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DagCommand {
    /// Write the DAG under a root as a CAR v1 file.
    Export {
        /// Root CID.
        cid: String,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Import CAR v1 files, checking every block, and pin their roots.
    Import {
        /// CAR files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pin the roots named in the CAR headers.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        pin_roots: bool,
    },
}

/// Parses `CID`, `CID/path` or `/ipfs/CID/path`.
pub(crate) fn parse_ipfs_path(s: &str) -> anyhow::Result<(Cid, String)> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    let (cid, rest) = s.split_once('/').unwrap_or((s, ""));
    let cid = Cid::try_from(cid).with_context(|| format!("{cid:?} is not a valid CID"))?;
    Ok((cid, rest.to_string()))
}

fn resolve(store: &Store, path: &str) -> anyhow::Result<Cid> {
    let (root, rest) = parse_ipfs_path(path)?;
    Ok(store.resolve(&root, &rest)?)
}

fn import_options(a: &AddArgs) -> anyhow::Result<ImportOptions> {
    let mut o = match a.profile.as_deref() {
        None => ImportOptions::default(),
        Some("unixfs-v1-2025") => ImportOptions::unixfs_v1_2025(),
        Some("unixfs-v0-2015" | "legacy-cid-v0") => ImportOptions::default(),
        Some(p) => bail!("unknown profile {p:?} (known: unixfs-v1-2025, unixfs-v0-2015)"),
    };
    if let Some(v) = a.cid_version {
        o.cid_version = if v == 0 {
            cid::Version::V0
        } else {
            cid::Version::V1
        };
        o.raw_leaves = v == 1;
    }
    if let Some(r) = a.raw_leaves {
        o.raw_leaves = r;
    }
    if let Some(c) = &a.chunker {
        let n = c
            .strip_prefix("size-")
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!("chunker {c:?} is not size-N (only fixed-size chunking is supported)")
            })?;
        o.chunk_size = n;
    }
    if let Some(n) = a.chunk_size {
        o.chunk_size = n;
    }
    if let Some(n) = a.max_links {
        o.max_links = n;
    }
    o.wrap = a.wrap_with_directory;
    o.hidden = a.hidden;
    o.only_hash = a.only_hash;
    o.pin = a.pin;
    o.validate()?;
    Ok(o)
}

fn total_size(paths: &[PathBuf]) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    paths.iter().map(|p| walk(p)).sum()
}

pub(crate) fn run(ctx: &Ctx, cmd: IpfsCommand) -> anyhow::Result<()> {
    match cmd {
        IpfsCommand::Add(a) => add(ctx, &a),
        IpfsCommand::Cat {
            path,
            offset,
            length,
        } => {
            let store = ctx.open_store()?;
            let cid = resolve(&store, &path)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            store.cat(&cid, offset, length, &mut out)?;
            out.flush()?;
            Ok(())
        }
        IpfsCommand::Get { path, output } => {
            let store = ctx.open_store()?;
            let cid = resolve(&store, &path)?;
            let dest = output.unwrap_or_else(|| PathBuf::from(cid.to_string()));
            let bar = ctx.spinner("writing");
            let result = store.get(&cid, &dest);
            bar.finish_and_clear();
            result?;
            if ctx.json {
                ctx.print_json(&serde_json::json!({"cid": cid.to_string(), "path": dest}))
            } else {
                println!("saved {cid} to {}", dest.display());
                Ok(())
            }
        }
        IpfsCommand::Ls { path } => {
            let store = ctx.open_store()?;
            let cid = resolve(&store, &path)?;
            let entries = store.ls(&cid)?;
            if ctx.json {
                return ctx.print_json(&entries);
            }
            for e in entries {
                let name = if e.is_dir {
                    format!("{}/", e.name)
                } else {
                    e.name
                };
                println!("{} {:>12} {}", e.cid, e.file_size, name);
            }
            Ok(())
        }
        IpfsCommand::Pin(p) => pin(ctx, p),
        IpfsCommand::Verify { cid } => {
            let store = ctx.open_store()?;
            let cid = resolve(&store, &cid)?;
            let bar = ctx.spinner("verifying");
            let report = store.verify(&cid);
            bar.finish_and_clear();
            let report = report?;
            if ctx.json {
                ctx.print_json(&report)?;
            } else {
                for c in &report.corrupt {
                    println!("corrupt {c}");
                }
                for c in &report.missing {
                    println!("missing {c}");
                }
                println!(
                    "{} blocks, {} bytes checked: {}",
                    report.blocks_checked,
                    report.bytes_checked,
                    if report.ok() { "ok" } else { "FAILED" }
                );
            }
            if !report.ok() {
                bail!(
                    "{cid}: {} corrupt and {} missing blocks",
                    report.corrupt.len(),
                    report.missing.len()
                );
            }
            Ok(())
        }
        IpfsCommand::Gc => {
            let store = ctx.open_store()?;
            let bar = ctx.spinner("collecting garbage");
            let report = store.gc();
            bar.finish_and_clear();
            let report = report?;
            if ctx.json {
                return ctx.print_json(&report);
            }
            println!(
                "removed {} blocks and {} data files ({} bytes)",
                report.blocks_removed, report.data_files_removed, report.bytes_freed
            );
            Ok(())
        }
        IpfsCommand::Dag(d) => dag(ctx, d),
        IpfsCommand::Fetch {
            from,
            cid,
            concurrency,
            no_pin,
        } => fetch(ctx, &from, &cid, concurrency, !no_pin),
        IpfsCommand::Serve { listen } => serve(ctx, listen),
    }
}

fn add(ctx: &Ctx, a: &AddArgs) -> anyhow::Result<()> {
    let opts = import_options(a)?;
    for p in &a.paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot add {}", p.display()))?;
        if meta.is_dir() && !a.recursive {
            bail!("{} is a folder; use -r to add it recursively", p.display());
        }
    }
    let store = if opts.only_hash {
        // Nothing is written; a throwaway store keeps the code path the same.
        let tmp = std::env::temp_dir().join(format!("lattice-only-hash-{}", std::process::id()));
        let s = Store::open_with(&tmp, false)?;
        (s, Some(tmp))
    } else {
        (ctx.open_store()?, None)
    };
    let bar = ctx.progress(Some(total_size(&a.paths)), "adding");
    let inc = |n: u64| bar.inc(n);
    let result = store.0.add_paths(&a.paths, &opts, &inc);
    bar.finish_and_clear();
    if let Some(tmp) = store.1 {
        drop(store.0);
        let _ = std::fs::remove_dir_all(tmp);
    }
    let added = result?;
    if ctx.json {
        return ctx.print_json(&added);
    }
    if a.quieter {
        if let Some(last) = added.last() {
            println!("{}", last.cid);
        }
        return Ok(());
    }
    for e in &added {
        if e.name.is_empty() {
            println!("added {}", e.cid);
        } else {
            println!("added {} {}", e.cid, e.name);
        }
    }
    Ok(())
}

fn pin(ctx: &Ctx, p: PinCommand) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    match p {
        PinCommand::Add { cids, direct } => {
            let kind = if direct {
                PinKind::Direct
            } else {
                PinKind::Recursive
            };
            let mut done = Vec::new();
            for c in cids {
                let cid = resolve(&store, &c)?;
                store.pin_add(&cid, kind)?;
                if !ctx.json {
                    println!(
                        "pinned {cid} {}",
                        if direct { "directly" } else { "recursively" }
                    );
                }
                done.push(cid.to_string());
            }
            if ctx.json {
                return ctx.print_json(&serde_json::json!({"pinned": done, "type": kind}));
            }
        }
        PinCommand::Ls => {
            let pins = store.pins()?;
            if ctx.json {
                let v: Vec<_> = pins
                    .iter()
                    .map(|(c, k)| serde_json::json!({"cid": c.to_string(), "type": k}))
                    .collect();
                return ctx.print_json(&v);
            }
            for (cid, kind) in pins {
                println!(
                    "{cid} {}",
                    if kind == PinKind::Recursive {
                        "recursive"
                    } else {
                        "direct"
                    }
                );
            }
        }
        PinCommand::Rm { cids } => {
            let mut done = Vec::new();
            for c in cids {
                let (cid, _) = parse_ipfs_path(&c)?;
                store.pin_rm(&cid)?;
                if !ctx.json {
                    println!("unpinned {cid}");
                }
                done.push(cid.to_string());
            }
            if ctx.json {
                return ctx.print_json(&serde_json::json!({"unpinned": done}));
            }
        }
    }
    Ok(())
}

fn dag(ctx: &Ctx, d: DagCommand) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    match d {
        DagCommand::Export { cid, output } => {
            let cid = resolve(&store, &cid)?;
            match output {
                Some(path) => {
                    let tmp = path.with_extension("car.partial");
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(&tmp)
                            .with_context(|| format!("create {}", tmp.display()))?,
                    );
                    store.export_car(&cid, &mut f)?;
                    f.flush()?;
                    std::fs::rename(&tmp, &path)?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                    store.export_car(&cid, &mut out)?;
                    out.flush()?;
                }
            }
            Ok(())
        }
        DagCommand::Import { files, pin_roots } => {
            let mut reports = Vec::new();
            let bar = ctx.spinner("importing");
            for f in files {
                let file =
                    std::fs::File::open(&f).with_context(|| format!("open {}", f.display()))?;
                let report = store
                    .import_car(
                        &mut std::io::BufReader::with_capacity(1 << 20, file),
                        pin_roots,
                    )
                    .with_context(|| format!("import {}", f.display()))?;
                reports.push(report);
            }
            bar.finish_and_clear();
            if ctx.json {
                return ctx.print_json(&reports);
            }
            for r in &reports {
                for root in &r.pinned {
                    println!("pinned root {root} success");
                }
                for (root, err) in &r.pin_errors {
                    println!("root {root} not pinned: {err}");
                }
                println!("imported {} blocks", r.blocks);
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn fetch(
    ctx: &Ctx,
    from: &[String],
    cid: &str,
    concurrency: usize,
    pin: bool,
) -> anyhow::Result<()> {
    let (root, rest) = parse_ipfs_path(cid)?;
    if !rest.is_empty() {
        bail!("fetch takes a root CID, not a path");
    }
    let sources = from
        .iter()
        .map(|s| {
            s.parse::<lattice_fetch::Source>()
                .with_context(|| format!("bad source {s:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Arc::new(ctx.open_store()?);
    let opts = lattice_fetch::FetchOptions {
        concurrency,
        pin,
        ..Default::default()
    };
    let bar = ctx.progress(None, "fetching");
    let inc = |n: u64| bar.inc(n);
    let report = runtime()?.block_on(lattice_fetch::fetch(store, root, &sources, &opts, &inc));
    bar.finish_and_clear();
    let report = report?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "root": report.root.to_string(),
            "blocks_fetched": report.blocks_fetched,
            "blocks_present": report.blocks_present,
            "bytes_fetched": report.bytes_fetched,
            "rejected": report.rejected,
        }));
    }
    println!(
        "fetched {root}: {} blocks ({} bytes) fetched, {} already present, {} bad blocks refused",
        report.blocks_fetched, report.bytes_fetched, report.blocks_present, report.rejected
    );
    Ok(())
}

fn serve(ctx: &Ctx, listen: SocketAddr) -> anyhow::Result<()> {
    let store = Arc::new(ctx.open_store()?);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!("gateway:  http://{addr}/ipfs/<cid>");
        eprintln!("kubo rpc: http://{addr}/api/v0/");
        eprintln!("store:    {}", store.dir().display());
        tokio::select! {
            r = lattice_gateway::serve(listener, store.clone(), lattice_gateway::Limits::default()) => r?,
            _ = tokio::signal::ctrl_c() => eprintln!("shutting down"),
        }
        anyhow::Ok(())
    })
}
