//! Fetching DAGs over real HTTP (servers on 127.0.0.1:0) from honest, lying,
//! failing and absent peers, into real stores. Honest peers are the real
//! `lattice-gateway` (trustless gateway and Kubo RPC); the misbehaving ones
//! are small axum servers written here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use cid::Cid;
use lattice_fetch::{FetchError, FetchOptions, FetchReport, Source, fetch};
use lattice_store::unixfs::links_of;
use lattice_store::{ImportOptions, MAX_BLOCK, PinKind, Store};

// Dependencies of the library that these tests do not name.
use reqwest as _;
use thiserror as _;
use tracing as _;

/// How a test peer answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Serves every block as stored.
    Honest,
    /// Serves wrong bytes for about half of the file leaves (see [`lies_about`]).
    Lie,
    /// Serves this many blocks, then answers 503 to everything.
    FailAfter(usize),
    /// Streams more than a block may be, for every block.
    Oversize,
    /// Serves every block as stored, after a pause.
    Slow(Duration),
}

struct Peer {
    store: Arc<Store>,
    mode: Mode,
    requests: AtomicUsize,
}

/// Whether the lying peer lies about this block: about half of the big
/// blocks (file leaves); folders and internal nodes are served honestly so
/// the walk gets far.
fn lies_about(cid: &Cid, block: &[u8]) -> bool {
    block.len() >= 4096 && cid.hash().digest()[0] % 2 == 0
}

/// A lie: flip a byte, or (for some blocks) send too much.
fn lie(cid: &Cid, block: Bytes) -> Response {
    if cid.hash().digest()[1] % 2 == 0 {
        let mut bad = block.to_vec();
        bad[block.len() / 2] ^= 0x01;
        raw(Bytes::from(bad))
    } else {
        oversize(block)
    }
}

/// The block followed by more than a block may be, in chunks and without a
/// Content-Length, so the cap must be applied while reading.
fn oversize(block: Bytes) -> Response {
    let filler = (0..(MAX_BLOCK / 65536 + 4))
        .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 65536])));
    let chunks = std::iter::once(Ok(block)).chain(filler);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.ipld.raw")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn raw(block: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/vnd.ipld.raw")], block).into_response()
}

impl Peer {
    async fn answer(self: Arc<Self>, cid: &str) -> Response {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        if let Mode::FailAfter(limit) = self.mode
            && n >= limit
        {
            return (StatusCode::SERVICE_UNAVAILABLE, "going away").into_response();
        }
        let Ok(cid) = cid.parse::<Cid>() else {
            return (StatusCode::BAD_REQUEST, "bad CID").into_response();
        };
        if let Mode::Slow(pause) = self.mode {
            tokio::time::sleep(pause).await;
        }
        let store = self.store.clone();
        let block = tokio::task::spawn_blocking(move || store.block(&cid)).await;
        match block {
            Ok(Ok(block)) if matches!(self.mode, Mode::Lie) && lies_about(&cid, &block) => {
                lie(&cid, block)
            }
            Ok(Ok(block)) if matches!(self.mode, Mode::Oversize) => oversize(block),
            Ok(Ok(block)) => raw(block),
            _ => (StatusCode::NOT_FOUND, "block not found").into_response(),
        }
    }
}

/// Trustless gateway: only `?format=raw` with the raw-block Accept header.
async fn gateway(
    State(peer): State<Arc<Peer>>,
    UrlPath(cid): UrlPath<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if q.get("format").map(String::as_str) != Some("raw")
        || !accept.contains("application/vnd.ipld.raw")
    {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "this test gateway serves raw blocks only",
        )
            .into_response();
    }
    peer.answer(&cid).await
}

/// Kubo RPC `block/get` (POST only, as in Kubo).
async fn kubo_block_get(
    State(peer): State<Arc<Peer>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    match q.get("arg") {
        Some(cid) => peer.answer(cid).await,
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"Message":"argument \"cid\" is required","Code":1,"Type":"error"}"#,
        )
            .into_response(),
    }
}

/// Starts a peer serving `store`; returns its base URL and the peer.
async fn spawn_peer(store: Arc<Store>, mode: Mode) -> (String, Arc<Peer>) {
    let peer = Arc::new(Peer {
        store,
        mode,
        requests: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/ipfs/{cid}", get(gateway))
        .route("/api/v0/block/get", post(kubo_block_get))
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), peer)
}

/// Starts the real Lattice gateway over `store`; returns its base URL and a
/// count of the requests it has answered.
async fn spawn_gateway(store: Arc<Store>) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = lattice_gateway::router(store, lattice_gateway::Limits::default()).layer(
        axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), count)
}

/// Deterministic incompressible test bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    src: Arc<Store>,
    root: Cid,
    weights: Vec<u8>,
    /// Every distinct block under the root.
    cids: Vec<Cid>,
}

const WEIGHTS_LEN: usize = 3 * 1024 * 1024 + 12_345;

/// A folder `model/` with a ~3 MB `weights.bin`, a small `config.json` and
/// `sub/tokenizer.txt`, imported with 4 KiB chunks (hundreds of blocks,
/// three levels of file nodes).
fn fixture(opts: ImportOptions) -> Fixture {
    let fx = fixture_with(ImportOptions {
        chunk_size: 4096,
        max_links: 32,
        ..opts
    });
    assert!(fx.cids.len() > 700, "{} blocks", fx.cids.len());
    fx
}

/// The same folder imported with `opts` as given.
fn fixture_with(opts: ImportOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    std::fs::create_dir_all(model.join("sub")).expect("mkdir");
    let weights = pseudo_random(WEIGHTS_LEN, 42);
    std::fs::write(model.join("weights.bin"), &weights).expect("write");
    std::fs::write(model.join("config.json"), br#"{"layers": 2}"#).expect("write");
    std::fs::write(model.join("sub/tokenizer.txt"), pseudo_random(10_000, 7)).expect("write");
    let src = Arc::new(Store::open_with(dir.path().join("src-store"), false).expect("open"));
    let added = src.add_paths(&[model], &opts, &|_| {}).expect("add");
    let root = added.last().expect("root entry").cid;
    let cids = dag_cids(&src, &root);
    Fixture {
        _dir: dir,
        src,
        root,
        weights,
        cids,
    }
}

/// Every distinct block under `root` in `store`.
fn dag_cids(store: &Store, root: &Cid) -> Vec<Cid> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid.hash().to_bytes()) {
            continue;
        }
        let block = store.block(&cid).expect("block in the source store");
        stack.extend(links_of(&cid, &block).expect("links"));
        out.push(cid);
    }
    out
}

fn empty_store(dir: &Path) -> Arc<Store> {
    Arc::new(Store::open_with(dir, false).expect("open"))
}

fn quick() -> FetchOptions {
    FetchOptions {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        timeout: Duration::from_secs(20),
        ..FetchOptions::default()
    }
}

fn sources<S: AsRef<str>>(urls: &[S]) -> Vec<Source> {
    urls.iter()
        .map(|u| u.as_ref().parse().expect("source"))
        .collect()
}

/// The fetched DAG is whole, intact, readable, mappable and pinned.
fn assert_complete(dest: &Store, fx: &Fixture) {
    let report = dest.verify(&fx.root).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.blocks_checked, fx.cids.len() as u64);
    let file = dest.resolve(&fx.root, "weights.bin").expect("resolve");
    let mut out = Vec::new();
    dest.cat(&file, 0, None, &mut out).expect("cat");
    assert!(out == fx.weights, "cat differs from the original");
    let map = dest.mmap(&file).expect("mmap");
    assert!(
        &map[..] == fx.weights.as_slice(),
        "mmap differs from the original"
    );
    let mut cfg = Vec::new();
    let cfg_cid = dest.resolve(&fx.root, "config.json").expect("resolve");
    dest.cat(&cfg_cid, 0, None, &mut cfg).expect("cat");
    assert_eq!(cfg, br#"{"layers": 2}"#);
    assert_eq!(
        dest.is_pinned(&fx.root).expect("pins"),
        Some(PinKind::Recursive)
    );
}

/// Every block the store holds is one of the DAG's and hashes to its CID.
fn assert_store_clean(dest: &Store, fx: &Fixture) -> u64 {
    let mut held = 0u64;
    for cid in &fx.cids {
        if dest.has(cid).expect("has") {
            dest.block(cid).expect("a stored block must verify");
            held += 1;
        }
    }
    assert_eq!(
        dest.block_count().expect("count"),
        held,
        "the store holds blocks outside the DAG"
    );
    assert!(dest.verify(&fx.root).expect("verify").corrupt.is_empty());
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_a_multi_level_dag_from_an_honest_gateway() {
    let fx = fixture(ImportOptions::default());
    let (url, requests) = spawn_gateway(fx.src.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let progressed = AtomicU64::new(0);
    let report = fetch(dest.clone(), fx.root, &sources(&[&url]), &quick(), &|n| {
        progressed.fetch_add(n, Ordering::Relaxed);
    })
    .await
    .expect("fetch");
    let total_bytes: u64 = fx
        .cids
        .iter()
        .map(|c| fx.src.block(c).expect("block").len() as u64)
        .sum();
    assert_eq!(
        report,
        FetchReport {
            root: fx.root,
            blocks_fetched: fx.cids.len() as u64,
            blocks_present: 0,
            bytes_fetched: total_bytes,
            rejected: 0,
        }
    );
    assert_eq!(progressed.load(Ordering::Relaxed), total_bytes);
    assert_eq!(requests.load(Ordering::SeqCst), fx.cids.len());
    assert_complete(&dest, &fx);

    // A second run finds everything present and asks for nothing.
    let again = fetch(dest.clone(), fx.root, &sources(&[url]), &quick(), &|_| {})
        .await
        .expect("refetch");
    assert_eq!(
        (again.blocks_fetched, again.blocks_present),
        (0, fx.cids.len() as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_peer_is_refused_and_honest_peer_fills_in() {
    let fx = fixture(ImportOptions::default());
    let (liar, liar_peer) = spawn_peer(fx.src.clone(), Mode::Lie).await;
    let (honest, _requests) = spawn_gateway(fx.src.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let report = fetch(
        dest.clone(),
        fx.root,
        &sources(&[liar, honest]),
        &quick(),
        &|_| {},
    )
    .await
    .expect("fetch");
    assert!(report.rejected > 0, "{report:?}");
    assert_eq!(report.blocks_fetched, fx.cids.len() as u64);
    assert!(liar_peer.requests.load(Ordering::SeqCst) > 0);
    assert_store_clean(&dest, &fx);
    assert_complete(&dest, &fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_lying_peer_fails_naming_the_block_and_stores_nothing_bad() {
    let fx = fixture(ImportOptions::default());
    let (liar, _peer) = spawn_peer(fx.src.clone(), Mode::Lie).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let err = fetch(dest.clone(), fx.root, &sources(&[&liar]), &quick(), &|_| {})
        .await
        .expect_err("no honest source");
    let msg = err.to_string();
    let FetchError::Block { cid, failures } = &err else {
        panic!("unexpected error: {msg}");
    };
    assert!(fx.cids.contains(cid), "{msg}");
    assert!(lies_about(cid, &fx.src.block(cid).expect("block")), "{msg}");
    assert!(
        msg.contains(&cid.to_string()) && msg.contains(&liar),
        "{msg}"
    );
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].reason.contains("wrong hash") || failures[0].reason.contains("block limit"),
        "{msg}"
    );
    let held = assert_store_clean(&dest, &fx);
    assert!(held > 0, "the honest part of the DAG should have been kept");
    assert_eq!(dest.is_pinned(&fx.root).expect("pins"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_a_peer_goes_away() {
    let fx = fixture(ImportOptions::default());
    let (flaky, _peer) = spawn_peer(fx.src.clone(), Mode::FailAfter(150)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let err = fetch(dest.clone(), fx.root, &sources(&[flaky]), &quick(), &|_| {})
        .await
        .expect_err("the peer went away");
    assert!(matches!(err, FetchError::Block { .. }), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    let held = assert_store_clean(&dest, &fx);
    assert!(held > 0 && held <= 150, "{held} blocks kept");

    let (honest, requests) = spawn_gateway(fx.src.clone()).await;
    let report = fetch(
        dest.clone(),
        fx.root,
        &sources(&[honest]),
        &quick(),
        &|_| {},
    )
    .await
    .expect("resume");
    assert_eq!(report.blocks_present, held, "{report:?}");
    assert_eq!(
        report.blocks_fetched,
        fx.cids.len() as u64 - held,
        "{report:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst) as u64,
        report.blocks_fetched
    );
    assert_complete(&dest, &fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_rpc_source_with_failover_from_a_dead_gateway() {
    let fx = fixture(ImportOptions::cid_v1());
    let (url, requests) = spawn_gateway(fx.src.clone()).await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let kubo = format!("kubo+{url}");
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let report = fetch(
        dest.clone(),
        fx.root,
        &sources(&[dead, kubo]),
        &quick(),
        &|_| {},
    )
    .await
    .expect("fetch");
    assert_eq!(report.blocks_fetched, fx.cids.len() as u64);
    assert_eq!(report.rejected, 0);
    assert_eq!(requests.load(Ordering::SeqCst), fx.cids.len());
    assert_complete(&dest, &fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sources_fail_with_every_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let fx = fixture(ImportOptions::default());
    let (gw, _requests) = spawn_gateway(empty_store(&dir.path().join("empty-gateway"))).await;
    let (url, _peer) = spawn_peer(empty_store(&dir.path().join("empty-peer")), Mode::Honest).await;
    let srcs = sources(&[gw.clone(), format!("kubo+{url}")]);
    let opts = FetchOptions {
        attempts: 2,
        ..quick()
    };
    let err = fetch(dest.clone(), fx.root, &srcs, &opts, &|_| {})
        .await
        .expect_err("nobody has it");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("block {}: every source failed", fx.root)),
        "{msg}"
    );
    assert!(
        msg.contains("404") && msg.contains(&format!("kubo+{url}")),
        "{msg}"
    );
    assert_eq!(dest.block_count().expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_cut_off_and_refused() {
    let fx = fixture(ImportOptions::default());
    let (big, _peer) = spawn_peer(fx.src.clone(), Mode::Oversize).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let err = fetch(dest.clone(), fx.root, &sources(&[big]), &quick(), &|_| {})
        .await
        .expect_err("every answer is too big");
    let msg = err.to_string();
    assert!(
        msg.contains(&fx.root.to_string()) && msg.contains("block limit"),
        "{msg}"
    );
    assert_eq!(dest.block_count().expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_blocks_from_a_liar_and_an_honest_peer() {
    // 1 MiB dag-pb leaves: the largest blocks there are, just under the cap.
    let fx = fixture_with(ImportOptions {
        chunk_size: lattice_store::MAX_CHUNK,
        ..ImportOptions::default()
    });
    let biggest = fx
        .cids
        .iter()
        .map(|c| fx.src.block(c).expect("block").len())
        .max();
    assert!(biggest.is_some_and(|b| b > lattice_store::MAX_CHUNK && b <= MAX_BLOCK));
    let (liar, _liar_peer) = spawn_peer(fx.src.clone(), Mode::Lie).await;
    let (honest, _requests) = spawn_gateway(fx.src.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let report = fetch(
        dest.clone(),
        fx.root,
        &sources(&[&liar, &honest]),
        &quick(),
        &|_| {},
    )
    .await
    .expect("fetch");
    assert_eq!(report.blocks_fetched, fx.cids.len() as u64);
    assert_store_clean(&dest, &fx);
    assert_complete(&dest, &fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_a_fetch_waits_and_removes_nothing() {
    let fx = fixture(ImportOptions::default());
    let (slow, _peer) = spawn_peer(fx.src.clone(), Mode::Slow(Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = empty_store(dir.path());
    let collector = {
        let dest = dest.clone();
        std::thread::spawn(move || {
            while dest.block_count().expect("count") < 100 {
                std::thread::sleep(Duration::from_millis(1));
            }
            dest.gc().expect("gc")
        })
    };
    let report = fetch(dest.clone(), fx.root, &sources(&[&slow]), &quick(), &|_| {})
        .await
        .expect("fetch");
    assert_eq!(report.blocks_fetched, fx.cids.len() as u64);
    let gc = tokio::task::spawn_blocking(move || collector.join().expect("gc thread"))
        .await
        .expect("join");
    assert_eq!(gc.blocks_removed, 0, "{gc:?}");
    assert_complete(&dest, &fx);
}
