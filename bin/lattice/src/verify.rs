//! `lattice model verify`: checks a registered model end to end. Resolves it on chain (as
//! `model info` does), makes sure its DAG is in the local store (fetching missing blocks from
//! `--peer`s, each verified on arrival), recomputes every block's CID, checks the folder
//! against its `lattice.json` manifest and the on-chain manifest CID, and (unless `--no-run`)
//! loads the model and runs one smoke input through it. Exits non-zero on any failure.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use cid::Cid;
use clap::Args;
use lattice_runtime::model::LoadOptions;
use lattice_runtime::{GenerateParams, Input, Model, ModelSpec, Output, Task};
use lattice_store::Store;
use serde_json::{Value, json};

use crate::Ctx;
use crate::registry::{RpcOpts, cid_text, resolve_version};

/// Arguments of `lattice model verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The model: its id (0x + 64 hex digits), a root CID of it, or its name.
    model: String,
    /// Check this version instead of the latest.
    #[arg(long)]
    version: Option<u64>,
    /// Where to fetch blocks missing from the local store: a trustless gateway
    /// (`http://host:port`) or a Kubo RPC endpoint (`kubo+http://host:port`); repeatable.
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<String>,
    /// Check the blocks and the manifest only; do not load and run the model.
    #[arg(long)]
    no_run: bool,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// One check of the report.
#[derive(Debug, serde::Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Everything `verify` found.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    checks: Vec<Check>,
    blocks_checked: u64,
    bytes_checked: u64,
    blocks_fetched: u64,
    load_ms: Option<f64>,
    run_ms: Option<f64>,
}

impl Report {
    fn push(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail: detail.into(),
        });
    }

    fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// What `verify` reads of `lattice.json`: its file list (other fields may be absent in a
/// hand-written manifest).
#[derive(Debug, serde::Deserialize)]
struct ManifestFiles {
    #[serde(default)]
    files: Vec<lattice_import::FileEntry>,
}

/// `lattice model verify`.
pub(crate) fn verify(ctx: &Ctx, args: VerifyArgs) -> anyhow::Result<()> {
    let on_chain = resolve_version(&args.rpc.rpc, &args.model, args.version)?;
    let root = Cid::try_from(on_chain.root_cid.as_slice()).with_context(|| {
        format!(
            "model {} version {}: the root CID on chain ({}) is not a CID",
            on_chain.id,
            on_chain.version,
            cid_text(&on_chain.root_cid)
        )
    })?;
    let manifest_on_chain = (!on_chain.manifest_cid.is_empty())
        .then(|| Cid::try_from(on_chain.manifest_cid.as_slice()))
        .transpose()
        .context("the manifest CID on chain is not a CID")?;
    let mut report = Report::default();
    let store = Arc::new(ctx.open_store()?);

    // 1. The DAG: fetch what is missing, then recompute every block's CID.
    let mut blocks = store.verify(&root)?;
    if !blocks.missing.is_empty() && !args.peers.is_empty() {
        match fetch(ctx, &store, root, &args.peers) {
            Ok(n) => {
                report.blocks_fetched = n;
                report.push(
                    "fetch",
                    true,
                    format!("{n} missing blocks fetched and verified"),
                );
            }
            // What was fetched is kept; the blocks check below names what is still missing.
            Err(e) => report.push("fetch", false, format!("{e:#}")),
        }
        blocks = store.verify(&root)?;
    }
    report.blocks_checked = blocks.blocks_checked;
    report.bytes_checked = blocks.bytes_checked;
    let dag_ok = blocks.ok();
    if dag_ok {
        report.push(
            "blocks",
            true,
            format!(
                "{} blocks, {} bytes hash to their CIDs",
                blocks.blocks_checked, blocks.bytes_checked
            ),
        );
    } else {
        let files = block_files(&store, &root);
        let name = |c: &Cid| {
            files
                .get(&c.hash().to_bytes())
                .map_or_else(|| "(unknown file)".to_string(), |p| p.join(", "))
        };
        let mut problems = Vec::new();
        for c in &blocks.corrupt {
            problems.push(format!("{}: block {c} is corrupt", name(c)));
        }
        for c in &blocks.missing {
            problems.push(format!("{}: block {c} is missing", name(c)));
        }
        if !blocks.missing.is_empty() && args.peers.is_empty() {
            problems.push(
                "blocks missing from the local store; pass --peer URL to fetch them".to_string(),
            );
        }
        report.push("blocks", false, problems.join("; "));
    }

    // 2. The manifest.
    if dag_ok {
        manifest_checks(&store, &root, manifest_on_chain, &mut report)?;
    }

    // 3. Load and run.
    if dag_ok && !args.no_run {
        drop(store);
        smoke(ctx, &root, &mut report);
    }

    print(ctx, &on_chain, &root, &report)?;
    if !report.ok() {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect();
        bail!(
            "model {:?} version {} ({root}) failed verification: {}",
            on_chain.name,
            on_chain.version,
            failed.join(", ")
        );
    }
    Ok(())
}

/// Fetches the blocks under `root` the store lacks from `peers`; the number fetched.
fn fetch(ctx: &Ctx, store: &Arc<Store>, root: Cid, peers: &[String]) -> anyhow::Result<u64> {
    let sources = peers
        .iter()
        .map(|s| {
            s.parse::<lattice_fetch::Source>()
                .with_context(|| format!("--peer {s}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = lattice_fetch::FetchOptions {
        materialize: false,
        ..Default::default()
    };
    let bar = ctx.progress(None, "fetching");
    let inc = |n: u64| bar.inc(n);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let fetched = rt.block_on(lattice_fetch::fetch(
        store.clone(),
        root,
        &sources,
        &opts,
        &inc,
    ));
    bar.finish_and_clear();
    let fetched = fetched.with_context(|| format!("fetching {root} from {}", peers.join(", ")))?;
    Ok(fetched.blocks_fetched)
}

/// The files (paths inside the folder) each block under `root` belongs to, keyed by the
/// block's multihash. Walks what is readable; unreadable parts are skipped.
fn block_files(store: &Store, root: &Cid) -> HashMap<Vec<u8>, Vec<String>> {
    let mut map: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    match store.node(root) {
        Ok(n) if n.is_dir() => {
            map.insert(root.hash().to_bytes(), vec!["(root folder)".to_string()]);
            walk_dir(store, root, "", &mut map);
        }
        Ok(_) => walk_file(store, root, "(root file)", &mut map),
        Err(_) => {
            map.insert(root.hash().to_bytes(), vec!["(root)".to_string()]);
        }
    }
    map
}

fn walk_dir(store: &Store, dir: &Cid, prefix: &str, map: &mut HashMap<Vec<u8>, Vec<String>>) {
    let Ok(entries) = store.ls(dir) else {
        return;
    };
    for e in entries {
        let path = format!("{prefix}{}", e.name);
        if e.is_dir {
            map.entry(e.cid.hash().to_bytes())
                .or_default()
                .push(format!("{path}/"));
            walk_dir(store, &e.cid, &format!("{path}/"), map);
        } else {
            walk_file(store, &e.cid, &path, map);
        }
    }
}

fn walk_file(store: &Store, file: &Cid, path: &str, map: &mut HashMap<Vec<u8>, Vec<String>>) {
    let mut stack = vec![*file];
    while let Some(c) = stack.pop() {
        let paths = map.entry(c.hash().to_bytes()).or_default();
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_string());
        }
        if let Ok(Some(links)) = store.links(&c) {
            stack.extend(links);
        }
    }
}

/// The `lattice.json` checks: its CID against the chain's, and every file it lists.
fn manifest_checks(
    store: &Store,
    root: &Cid,
    on_chain: Option<Cid>,
    report: &mut Report,
) -> anyhow::Result<()> {
    if !store.node(root)?.is_dir() {
        report.push("manifest", on_chain.is_none(), "the root is a single file");
        return Ok(());
    }
    let entries = store.ls(root)?;
    let Some(mentry) = entries
        .iter()
        .find(|e| e.name == "lattice.json" && !e.is_dir)
    else {
        match on_chain {
            Some(m) => report.push(
                "manifest",
                false,
                format!("the chain records manifest {m}, but the folder has no lattice.json"),
            ),
            None => report.push("manifest", true, "no lattice.json (none recorded on chain)"),
        }
        return Ok(());
    };
    match on_chain {
        Some(m) if m != mentry.cid => report.push(
            "manifest cid",
            false,
            format!("lattice.json is {}, the chain records {m}", mentry.cid),
        ),
        Some(m) => report.push(
            "manifest cid",
            true,
            format!("lattice.json is {m}, as on chain"),
        ),
        None => report.push(
            "manifest cid",
            true,
            format!("lattice.json is {} (no manifest CID on chain)", mentry.cid),
        ),
    }
    let mut buf = Vec::new();
    store
        .cat(&mentry.cid, 0, Some(16 << 20), &mut buf)
        .with_context(|| format!("reading lattice.json ({})", mentry.cid))?;
    let manifest: ManifestFiles = match serde_json::from_slice(&buf) {
        Ok(m) => m,
        Err(e) => {
            report.push("manifest files", false, format!("lattice.json: {e}"));
            return Ok(());
        }
    };
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for f in &manifest.files {
        let cid = match store.resolve(root, &f.path) {
            Ok(c) => c,
            Err(_) => {
                problems.push(format!("{}: listed but not in the folder", f.path));
                continue;
            }
        };
        if cid.to_string() != f.cid {
            problems.push(format!("{}: CID {cid}, manifest says {}", f.path, f.cid));
        }
        match store.file_len(&cid) {
            Ok(len) if len == f.size => {}
            Ok(len) => problems.push(format!("{}: {len} bytes, manifest says {}", f.path, f.size)),
            Err(e) => problems.push(format!("{}: {e}", f.path)),
        }
    }
    for e in &entries {
        if e.name != "lattice.json" && !listed.contains(e.name.as_str()) {
            problems.push(format!("{}: in the folder but not in lattice.json", e.name));
        }
    }
    if problems.is_empty() {
        report.push(
            "manifest files",
            true,
            format!(
                "{} files match lattice.json (path, size, CID)",
                manifest.files.len()
            ),
        );
    } else {
        report.push("manifest files", false, problems.join("; "));
    }
    Ok(())
}

/// Lays the folder out, loads it and runs one small input for its task.
fn smoke(ctx: &Ctx, root: &Cid, report: &mut Report) {
    let loaded = (|| -> anyhow::Result<Model> {
        let path = crate::model::model_path(ctx, &root.to_string())?;
        let spec = ModelSpec::detect(&path)?;
        let options = LoadOptions {
            top_k: usize::MAX,
            ..Default::default()
        };
        let t = Instant::now();
        let model = Model::load(spec, &options)?;
        report.load_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        Ok(model)
    })();
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            report.push("load", false, format!("{e:#}"));
            return;
        }
    };
    report.push(
        "load",
        true,
        format!("{} on {}", model.task(), model.describe()),
    );
    let input = match smoke_input(model.task()) {
        Ok(i) => i,
        Err(e) => {
            report.push("run", false, format!("{e:#}"));
            return;
        }
    };
    let t = Instant::now();
    let out = model.run_batch(std::slice::from_ref(&input));
    report.run_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    let checked = match out.into_iter().next() {
        Some(Ok(o)) => check_output(&o),
        Some(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
        None => Err(anyhow::anyhow!("the model returned no output")),
    };
    match checked {
        Ok(detail) => report.push("run", true, detail),
        Err(e) => report.push("run", false, format!("{e:#}")),
    }
}

/// A small input for `task`.
fn smoke_input(task: Task) -> anyhow::Result<Input> {
    let text = "Lattice verifies this model.".to_string();
    Ok(match task {
        Task::Embed | Task::Classify => Input::Text { text },
        Task::Generate => Input::Prompt {
            text,
            params: GenerateParams {
                max_tokens: 4,
                ..Default::default()
            },
            chat: false,
        },
        Task::ClassifyImage => Input::Image { bytes: png(32, 32) },
        Task::ZeroShot => Input::ImageTexts {
            bytes: png(32, 32),
            texts: vec!["a photo of a cat".into(), "a photo of a dog".into()],
        },
        Task::Transcribe => Input::Audio { bytes: wav(16_000) },
    })
}

/// Whether `out` is well-formed; what it was.
fn check_output(out: &Output) -> anyhow::Result<String> {
    match out {
        Output::Embedding { vector } => {
            if vector.is_empty() || !vector.iter().all(|x| x.is_finite()) {
                bail!("embedding is empty or not finite");
            }
            let norm = vector
                .iter()
                .map(|x| f64::from(*x).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm <= 0.0 {
                bail!("embedding is all zeros");
            }
            Ok(format!("embedding[{}], norm {norm:.4}", vector.len()))
        }
        Output::Labels { labels, .. } => {
            if labels.is_empty() || !labels.iter().all(|l| l.score.is_finite()) {
                bail!("no labels, or scores not finite");
            }
            let sum: f64 = labels.iter().map(|l| f64::from(l.score)).sum();
            if (sum - 1.0).abs() > 1e-3 {
                bail!("label scores sum to {sum}, not 1");
            }
            let best = labels
                .iter()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .map_or_else(String::new, |l| l.label.clone());
            Ok(format!(
                "{} labels summing to 1 (best {best:?})",
                labels.len()
            ))
        }
        Output::Generated { generation } => {
            if generation.tokens.is_empty() || generation.tokens.len() > 4 {
                bail!(
                    "{} tokens generated, wanted 1 to 4",
                    generation.tokens.len()
                );
            }
            Ok(format!("generated {:?}", generation.text))
        }
        Output::Transcript { text, .. } => Ok(format!("transcript {text:?}")),
    }
}

/// A `w`×`h` RGB PNG (a gradient), zlib-stored without compression.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0u8);
        for x in 0..w {
            raw.extend_from_slice(&[(x * 8) as u8, (y * 8) as u8, 128]);
        }
    }
    // zlib: header, stored blocks of at most 65535 bytes, Adler-32.
    let mut z = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        z.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &z), (b"IEND", &Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `samples` of 16 kHz mono 16-bit PCM (a quiet 440 Hz tone) as a WAV file.
fn wav(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i) / 16_000.0;
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 3000.0;
        out.extend_from_slice(&(s as i16).to_le_bytes());
    }
    out
}

/// Prints the report (text or `--json`).
fn print(
    ctx: &Ctx,
    on_chain: &crate::registry::OnChainVersion,
    root: &Cid,
    report: &Report,
) -> anyhow::Result<()> {
    if ctx.json {
        let mut v: Value = serde_json::to_value(report)?;
        v["ok"] = json!(report.ok());
        v["model_id"] = json!(on_chain.id);
        v["name"] = json!(on_chain.name);
        v["version"] = json!(on_chain.version);
        v["root_cid"] = json!(root.to_string());
        v["manifest_cid"] = json!(cid_text(&on_chain.manifest_cid));
        return ctx.print_json(&v);
    }
    println!(
        "model {:?} ({}) version {} root {root}",
        on_chain.name, on_chain.id, on_chain.version
    );
    for c in &report.checks {
        println!(
            "  {:<6} {:<15} {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        );
    }
    let ms = |m: Option<f64>| m.map_or_else(|| "-".to_string(), |m| format!("{m:.0} ms"));
    println!(
        "{} blocks ({} bytes) checked, {} fetched; load {}, run {}",
        report.blocks_checked,
        report.bytes_checked,
        report.blocks_fetched,
        ms(report.load_ms),
        ms(report.run_ms)
    );
    println!("{}", if report.ok() { "verified" } else { "FAILED" });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_inputs_are_well_formed() {
        let p = png(4, 3);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let w = wav(16_000);
        assert_eq!(w.len(), 44 + 32_000);
        assert_eq!(&w[..4], b"RIFF");
    }
}
