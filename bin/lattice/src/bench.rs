//! `lattice bench store`: import and verified read of a large file, side by
//! side with `sha256sum` (the single-core hashing limit) and the official JS
//! UnixFS importer on the same file, reported as ratios.
//!
//! `lattice bench rpc` and `lattice bench registry` (in `bench_rpc.rs`): transfer
//! throughput and ModelRegistry `eth_call` latency through JSON-RPC against any
//! dev chain, so `lattice devnet` and `anvil` are measured the same way.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use lattice_store::{ImportOptions, Store};

use crate::Ctx;

#[path = "bench_rpc.rs"]
pub(crate) mod bench_rpc;
#[path = "bench_runtime.rs"]
mod bench_runtime;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// MiniLM embeddings (batch 1 and 32) on the candle and ONNX paths, SmolLM2 tokens/s;
    /// JSON lines for bench/runtime/run.sh, which runs the Python peers beside it.
    Runtime(bench_runtime::RuntimeArgs),
    /// Import a large file and read it back verified, next to sha256sum and the JS importer.
    Store {
        /// File size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Work folder (needs room for the file and one stored copy).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Runs of each measurement; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The JS importer oracle script (tests/oracle/unixfs.mjs).
        #[arg(long, default_value = "tests/oracle/unixfs.mjs")]
        oracle: PathBuf,
    },
    /// Transfers/s end to end through JSON-RPC: pre-signed transfers sent in batches, timed
    /// until the last is included. Works against any dev chain (lattice devnet, anvil).
    Rpc(bench_rpc::RpcArgs),
    /// A local N-validator testnet (real processes): finality latency p50/p99 and
    /// finalized transfers/s with submissions spread over every validator.
    Testnet(crate::bench_testnet::TestnetBenchArgs),
    /// ModelRegistry at scale: fill it to N models, then p50/p99 of `getModel` and
    /// `listModels` over HTTP `eth_call`.
    Registry(bench_rpc::RegistryArgs),
    /// Paid inference latency through a node (request → executor → fulfilment → answer)
    /// beside the same model run directly here, as a ratio.
    Inference(crate::bench_inference::InferenceBenchArgs),
}

#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    seconds: f64,
    mb_per_s: f64,
    note: String,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    Ok(median(times))
}

fn make_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    if std::fs::metadata(path)
        .map(|m| m.len() == bytes)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn warm(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

fn js_import_ms(oracle: &Path, file: &Path) -> anyhow::Result<(f64, String)> {
    let job = serde_json::json!({
        "options": {"cidVersion": 0, "rawLeaves": false, "chunkSize": 262144, "maxChildrenPerNode": 174},
        "entries": [{"path": "f", "file": file}],
    });
    let run = |time_only: bool| -> anyhow::Result<serde_json::Value> {
        let mut cmd = Command::new("node");
        cmd.arg(oracle);
        if time_only {
            cmd.arg("--time");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run node")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(job.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "JS importer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let timed = run(true)?;
    let ms = timed["elapsedMs"].as_f64().context("elapsedMs missing")?;
    let cid = run(false)?["entries"][0]["cid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((ms, cid))
}

pub(crate) fn run(ctx: &Ctx, cmd: BenchCommand) -> anyhow::Result<()> {
    let (size_mib, dir, runs, oracle) = match cmd {
        BenchCommand::Store {
            size_mib,
            dir,
            runs,
            oracle,
        } => (size_mib, dir, runs, oracle),
        BenchCommand::Rpc(args) => return bench_rpc::rpc(ctx, args),
        BenchCommand::Testnet(args) => return crate::bench_testnet::testnet(ctx, args),
        BenchCommand::Registry(args) => return bench_rpc::registry(ctx, args),
        BenchCommand::Runtime(args) => return bench_runtime::runtime(ctx, args),
        BenchCommand::Inference(args) => return crate::bench_inference::inference(ctx, args),
    };
    let runs = runs.max(1);
    let dir = dir.unwrap_or_else(|| ctx.datadir.join("bench"));
    std::fs::create_dir_all(&dir)?;
    let bytes = size_mib << 20;
    let file = dir.join(format!("bench-{size_mib}MiB.bin"));
    make_file(&file, bytes)?;
    warm(&file)?;
    let mb = bytes as f64 / 1e6;
    let mut rows = Vec::new();
    let mut push = |name: &str, d: Duration, note: String| {
        rows.push(Row {
            name: name.to_string(),
            seconds: d.as_secs_f64(),
            mb_per_s: mb / d.as_secs_f64(),
            note,
        });
    };

    // (a) sha256sum: one core hashing the file, the floor to beat.
    let sha = time_runs(runs, || {
        let out = Command::new("sha256sum")
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .context("run sha256sum")?;
        if !out.success() {
            bail!("sha256sum failed");
        }
        Ok(())
    })?;
    push("sha256sum", sha, "coreutils, one core".into());

    // Lattice import: chunk + hash (both cores) + write the data file + index, fsync on.
    let store_dir = dir.join("store");
    let mut cid = None;
    let import = time_runs(runs, || {
        let _ = std::fs::remove_dir_all(&store_dir);
        let store = Store::open(&store_dir)?;
        let added = store.add_paths(
            std::slice::from_ref(&file),
            &ImportOptions::default(),
            &|_| {},
        )?;
        cid = added.last().map(|a| a.cid);
        Ok(())
    })?;
    let cid = cid.context("no CID")?;
    push(
        "lattice import (kubo defaults, stored, fsync)",
        import,
        format!("{cid}"),
    );

    let no_sync = time_runs(runs, || {
        let _ = std::fs::remove_dir_all(&store_dir);
        let store = Store::open_with(&store_dir, false)?;
        store.add_paths(
            std::slice::from_ref(&file),
            &ImportOptions::default(),
            &|_| {},
        )?;
        Ok(())
    })?;
    push(
        "lattice import (stored, no fsync)",
        no_sync,
        "page cache; kill -9 safe, not power-loss safe".into(),
    );

    let only_hash = time_runs(runs, || {
        let store = Store::open(&store_dir)?;
        let opts = ImportOptions {
            only_hash: true,
            ..ImportOptions::default()
        };
        store.add_paths(std::slice::from_ref(&file), &opts, &|_| {})?;
        Ok(())
    })?;
    push(
        "lattice import --only-hash",
        only_hash,
        "chunk + hash only".into(),
    );

    let store = Store::open(&store_dir)?;
    let read = time_runs(runs, || {
        let n = store.cat(&cid, 0, None, &mut std::io::sink())?;
        if n != bytes {
            bail!("read {n} bytes, expected {bytes}");
        }
        Ok(())
    })?;
    push(
        "lattice cat (every block verified)",
        read,
        "page-cached".into(),
    );
    let mapped = time_runs(runs, || {
        let map = store.mmap(&cid)?;
        if map.len() as u64 != bytes {
            bail!("mapped {} bytes", map.len());
        }
        Ok(())
    })?;
    push(
        "lattice mmap (every block verified)",
        mapped,
        "zero-copy".into(),
    );
    drop(store);

    // (b) the official JS importer, same file, same settings, blocks discarded.
    let js = match js_import_ms(&oracle, &file) {
        Ok((ms, js_cid)) => {
            let same = if js_cid == cid.to_string() {
                "same CID"
            } else {
                "CID DIFFERS"
            };
            let d = Duration::from_secs_f64(ms / 1000.0);
            push(
                "ipfs-unixfs-importer (node, blocks discarded)",
                d,
                format!("{js_cid} ({same})"),
            );
            Some(d)
        }
        Err(e) => {
            eprintln!("JS importer skipped: {e:#} (run `npm ci --prefix tests/oracle`)");
            None
        }
    };

    let ratios = serde_json::json!({
        "import_vs_sha256sum": sha.as_secs_f64() / import.as_secs_f64(),
        "import_vs_js_importer": js.map(|j| j.as_secs_f64() / import.as_secs_f64()),
        "only_hash_vs_js_importer": js.map(|j| j.as_secs_f64() / only_hash.as_secs_f64()),
        "verified_read_gb_per_s": bytes as f64 / 1e9 / read.as_secs_f64(),
    });
    let _ = std::fs::remove_dir_all(&store_dir);
    if ctx.json {
        return ctx.print_json(
            &serde_json::json!({"file_bytes": bytes, "runs": runs, "rows": rows, "ratios": ratios}),
        );
    }
    println!(
        "file: {} ({bytes} bytes), median of {runs} runs, {} cores",
        file.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<48} {:>9} {:>10}  note",
        "measurement", "seconds", "MB/s"
    );
    for r in &rows {
        println!(
            "{:<48} {:>9.3} {:>10.0}  {}",
            r.name, r.seconds, r.mb_per_s, r.note
        );
    }
    println!(
        "import speed / sha256sum speed: {:.2}x",
        sha.as_secs_f64() / import.as_secs_f64()
    );
    if let Some(j) = js {
        println!(
            "import (stored, fsync) / JS importer (blocks discarded): {:.2}x",
            j.as_secs_f64() / import.as_secs_f64()
        );
        println!(
            "--only-hash / JS importer (both discard blocks): {:.2}x",
            j.as_secs_f64() / only_hash.as_secs_f64()
        );
    }
    println!(
        "verified read: {:.2} GB/s",
        bytes as f64 / 1e9 / read.as_secs_f64()
    );
    Ok(())
}
