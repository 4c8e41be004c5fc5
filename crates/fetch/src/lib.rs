//! Fetching whole DAGs into the local store from untrusted HTTP sources.
//!
//! **Owns** pulling every block under a root CID into a [`Store`] from one or
//! more [`Source`]s: IPFS trustless gateways (another Lattice node, or any
//! IPFS gateway; `GET {base}/ipfs/{cid}?format=raw`) and Kubo RPC endpoints
//! (`POST {base}/api/v0/block/get?arg={cid}`). It walks dag-pb links, fetches
//! missing blocks in parallel with retries, backoff and failover between
//! sources, resumes where an earlier run stopped (blocks already in the store
//! are not fetched again, but their links are still followed), and finally
//! pins the root and lays files out contiguously so they can be
//! memory-mapped.
//!
//! **Never** stores a block that was not checked against its CID: every body
//! a source sends is read up to [`lattice_store::MAX_BLOCK`] bytes, hashed,
//! and refused (counted in [`FetchReport::rejected`], the block then asked of
//! another source) unless it matches. Sources are never trusted for anything
//! else either: a source that lies, stalls or errors only costs time.
//!
//! Main items: [`fetch`], [`Source`], [`FetchOptions`], [`FetchReport`],
//! [`FetchError`].
//!
//! # Limits
//! - Only sha2-256 CIDs of dag-pb or raw blocks are fetched (what the store
//!   holds); other hashes and codecs fail with [`FetchError::Unsupported`].
//! - Garbage collection is held off for the whole fetch, so blocks fetched
//!   before the root is pinned survive; with [`FetchOptions::pin`] off they
//!   are unpinned once `fetch` returns and the next `gc` removes them.
//! - On a resume, every block already present is re-hashed before it is
//!   trusted (`Store::checked_links`), file data included, so a resume costs
//!   one local read of what is there (≈ 3 GB/s here). A present block that no
//!   longer matches its CID is fetched again, and storing the good copy
//!   repairs the local one (`Store::put_blocks`).
//!
//! Sources are written `http(s)://host[:port][/prefix]` for a gateway and
//! `kubo+http(s)://host:port` for a Kubo RPC API (see [`Source`]).

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use lattice_store::unixfs::{DAG_PB, RAW, SHA2_256, links_of};
use lattice_store::{PinKind, Store, StoreError, check_block};
use tokio::sync::Semaphore;

mod error;
mod source;

pub use error::{FetchError, SourceFailure};
pub use source::Source;

use source::{Miss, error_chain};

/// Blocks per store transaction (each commit syncs to disk)…
const PUT_BATCH_BLOCKS: usize = 64;
/// …or bytes per transaction, whichever comes first.
const PUT_BATCH_BYTES: usize = 16 << 20;
/// Verified blocks waiting for the store beyond this pause new requests.
const MAX_PENDING_BYTES: usize = 2 * PUT_BATCH_BYTES;
/// Blocks at least this big are hashed on the blocking pool.
const HASH_INLINE_MAX: usize = 64 * 1024;
/// CIDs looked up in the store per blocking task.
const CHECK_BATCH: usize = 256;
/// Longest wait between two rounds of asking the sources for a block.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A source that failed is asked after the others for this long, doubled
/// for each further failure in a row…
const COOLDOWN: Duration = Duration::from_secs(1);
/// …up to this.
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// How [`fetch`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Most block requests in flight at once, over all sources (at least 1).
    pub concurrency: usize,
    /// Rounds of asking the sources for one block before giving up (at least
    /// 1). A round asks each source in turn until one answers with the
    /// block: round-robin (each block starts at the next source), except
    /// that sources that failed recently are asked last; a source that sent
    /// a bad block is not asked for that block again.
    pub attempts: u32,
    /// Wait before the second round; doubled for every further round (up
    /// to 30 s).
    pub base_delay: Duration,
    /// Pin the root recursively once the DAG is complete.
    pub pin: bool,
    /// Lay every file under the root out contiguously once the DAG is
    /// complete, so [`Store::mmap`] needs no copy.
    pub materialize: bool,
    /// Limit on one HTTP request, connecting through reading the body.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    /// 16 requests in flight, 4 rounds from 100 ms backoff, pin and lay
    /// out, 60 s per request.
    fn default() -> Self {
        Self {
            concurrency: 16,
            attempts: 4,
            base_delay: Duration::from_millis(100),
            pin: true,
            materialize: true,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a successful [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The root fetched.
    pub root: Cid,
    /// Blocks fetched, verified and stored.
    pub blocks_fetched: u64,
    /// Blocks under the root that were already in the store.
    pub blocks_present: u64,
    /// Bytes of the blocks fetched.
    pub bytes_fetched: u64,
    /// Bad answers refused: bodies that did not hash to their CID or were
    /// over the block size limit.
    pub rejected: u64,
}

/// Fetches every block under `root` that `store` lacks from `sources`,
/// verifying each against its CID before it is stored, then (per `opts`)
/// pins `root` recursively and lays its files out contiguously.
///
/// `progress` is called with the size of each block as it is verified (an
/// increment, like the store's import progress). Blocks fetched before an
/// error are kept, so calling `fetch` again resumes. Must run inside a tokio
/// runtime; the returned future is `Send`.
pub async fn fetch(
    store: Arc<Store>,
    root: Cid,
    sources: &[Source],
    opts: &FetchOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FetchReport, FetchError> {
    supported(&root)?;
    let client = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("lattice-fetch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(error_chain(&e)))?;
    let store_for_hold = store.clone();
    let _gc_hold = blocking(move || Ok(store_for_hold.gc_hold())).await?;
    let mut report = FetchReport {
        root,
        blocks_fetched: 0,
        blocks_present: 0,
        bytes_fetched: 0,
        rejected: 0,
    };
    Walk {
        store: store.clone(),
        sources,
        opts,
        client: &client,
        progress,
        health: Mutex::new(vec![Health::default(); sources.len()]),
    }
    .run(&mut report)
    .await
    .inspect_err(|e| {
        tracing::warn!(
            %root,
            fetched = report.blocks_fetched,
            present = report.blocks_present,
            rejected = report.rejected,
            "fetch stopped; the blocks verified so far are kept: {e}"
        );
    })?;
    tracing::info!(
        %root,
        fetched = report.blocks_fetched,
        present = report.blocks_present,
        bytes = report.bytes_fetched,
        rejected = report.rejected,
        "DAG complete"
    );
    let (pin, materialize) = (opts.pin, opts.materialize);
    blocking(move || {
        if pin {
            store
                .pin_add(&root, PinKind::Recursive)
                .map_err(|source| FetchError::Finish {
                    root,
                    what: "pinning",
                    source: Box::new(source),
                })?;
        }
        if materialize {
            store
                .materialize_all(&root)
                .map_err(|source| FetchError::Finish {
                    root,
                    what: "laying files out contiguously",
                    source: Box::new(source),
                })?;
        }
        Ok(())
    })
    .await?;
    Ok(report)
}

/// Errors unless `cid` is something this fetcher can verify and walk.
fn supported(cid: &Cid) -> Result<(), FetchError> {
    let unsupported = |reason: String| FetchError::Unsupported { cid: *cid, reason };
    if cid.hash().code() != SHA2_256 {
        return Err(unsupported(format!(
            "multihash 0x{:x} is not supported (only sha2-256)",
            cid.hash().code()
        )));
    }
    if !matches!(cid.codec(), DAG_PB | RAW) {
        return Err(unsupported(format!(
            "codec 0x{:x} is not supported (only dag-pb and raw)",
            cid.codec()
        )));
    }
    Ok(())
}

/// One finished piece of work of the walk.
enum Event {
    /// A block request finished (`rejected`: bad answers refused on the way).
    Fetched {
        cid: Cid,
        result: Result<Bytes, FetchError>,
        rejected: u64,
    },
    /// A batch of CIDs was looked up in the store.
    Checked(Result<Checked, FetchError>),
    /// A batch of verified blocks was committed.
    Stored(Result<(), FetchError>),
}

/// The outcome of looking a batch of CIDs up in the store.
#[derive(Default)]
struct Checked {
    /// Not in the store: to fetch.
    missing: Vec<Cid>,
    /// How many were in the store.
    present: u64,
    /// Links of the present dag-pb nodes: to look up in turn.
    children: Vec<Cid>,
}

/// The traversal of one DAG.
struct Walk<'a> {
    store: Arc<Store>,
    sources: &'a [Source],
    opts: &'a FetchOptions,
    client: &'a reqwest::Client,
    progress: &'a (dyn Fn(u64) + Sync),
    /// Recent failures of each source, for ordering.
    health: Mutex<Vec<Health>>,
}

/// How a source has been doing lately.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Failures since its last good answer.
    failures: u32,
    /// Until when it is asked after the others.
    cool_until: Option<Instant>,
}

impl Walk<'_> {
    /// Fetches and stores every missing block under `report.root`. On error,
    /// the blocks verified so far are stored before it is returned.
    async fn run(&self, report: &mut FetchReport) -> Result<(), FetchError> {
        let concurrency = self.opts.concurrency.max(1);
        // Blocks seen, keyed by codec and multihash (CIDv0 and v1 of a node
        // are the same block).
        let mut seen: HashSet<Cid> = HashSet::new();
        let mut to_check: Vec<Cid> = Vec::new();
        let mut to_fetch: VecDeque<Cid> = VecDeque::new();
        let mut pending: Vec<(Cid, Bytes)> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut inflight: FuturesUnordered<BoxFuture<'_, Event>> = FuturesUnordered::new();
        let mut fetching = 0usize;
        let mut checking = false;
        // Held by the one store write in flight, so an error can wait for it.
        let put_slot = Arc::new(Semaphore::new(1));
        let mut next_source = 0usize;

        seen.insert(key(&report.root));
        to_check.push(report.root);

        let failure = loop {
            if !checking && !to_check.is_empty() && to_fetch.len() < 2 * concurrency {
                let batch = to_check.split_off(to_check.len().saturating_sub(CHECK_BATCH));
                let store = self.store.clone();
                checking = true;
                inflight.push(Box::pin(async move {
                    Event::Checked(blocking(move || check(&store, batch)).await)
                }));
            }
            while fetching < concurrency && pending_bytes < MAX_PENDING_BYTES {
                let Some(cid) = to_fetch.pop_front() else {
                    break;
                };
                fetching += 1;
                let start = next_source;
                next_source = next_source.wrapping_add(1);
                inflight.push(Box::pin(async move {
                    let (result, rejected) = self.fetch_block(cid, start).await;
                    Event::Fetched {
                        cid,
                        result,
                        rejected,
                    }
                }));
            }
            let idle = fetching == 0 && !checking && to_check.is_empty() && to_fetch.is_empty();
            if !pending.is_empty()
                && (idle || pending.len() >= PUT_BATCH_BLOCKS || pending_bytes >= PUT_BATCH_BYTES)
                && let Ok(permit) = put_slot.clone().try_acquire_owned()
            {
                let batch = std::mem::take(&mut pending);
                pending_bytes = 0;
                let store = self.store.clone();
                inflight.push(Box::pin(async move {
                    Event::Stored(
                        blocking(move || {
                            let _permit = permit;
                            Ok(store.put_blocks(&batch)?)
                        })
                        .await,
                    )
                }));
            }

            let Some(event) = inflight.next().await else {
                break None;
            };
            match event {
                Event::Checked(Ok(checked)) => {
                    checking = false;
                    report.blocks_present += checked.present;
                    to_fetch.extend(checked.missing);
                    if let Err(e) = enqueue(checked.children, &mut seen, &mut to_check) {
                        break Some(e);
                    }
                }
                Event::Fetched {
                    cid,
                    result,
                    rejected,
                } => {
                    fetching -= 1;
                    report.rejected += rejected;
                    let block = match result {
                        Ok(block) => block,
                        Err(e) => break Some(e),
                    };
                    report.blocks_fetched += 1;
                    report.bytes_fetched += block.len() as u64;
                    (self.progress)(block.len() as u64);
                    let links = links_of(&cid, &block);
                    pending_bytes += block.len();
                    pending.push((cid, block));
                    let links = match links {
                        Ok(links) => links,
                        Err(e) => {
                            break Some(FetchError::Malformed {
                                cid,
                                reason: e.to_string(),
                            });
                        }
                    };
                    if let Err(e) = enqueue(links, &mut seen, &mut to_check) {
                        break Some(e);
                    }
                }
                Event::Stored(Ok(())) => {}
                Event::Checked(Err(e)) | Event::Stored(Err(e)) => break Some(e),
            }
        };

        let Some(failure) = failure else {
            debug_assert!(pending.is_empty() && to_fetch.is_empty() && to_check.is_empty());
            return Ok(());
        };
        // Keep what was verified so a rerun resumes: cancel the requests in
        // flight, let a running write finish, then write the rest.
        drop(inflight);
        let _writes_done = put_slot.acquire().await;
        if !pending.is_empty() {
            let store = self.store.clone();
            let n = pending.len();
            if let Err(e) = blocking(move || Ok(store.put_blocks(&pending)?)).await {
                tracing::warn!(blocks = n, error = %e, "could not store the blocks fetched before the failure");
            }
        }
        Err(failure)
    }

    /// Asks the sources for `cid` until one sends bytes that hash to it,
    /// starting with source number `start`. Returns the block (or why every
    /// source failed) and the number of bad answers refused.
    async fn fetch_block(&self, cid: Cid, start: usize) -> (Result<Bytes, FetchError>, u64) {
        let n = self.sources.len();
        if n == 0 {
            return (Err(FetchError::NoSources { cid }), 0);
        }
        let mut last: Vec<Option<String>> = vec![None; n];
        let mut refused = vec![false; n];
        let mut rejected = 0u64;
        for round in 0..self.opts.attempts.max(1) {
            if refused.iter().all(|r| *r) {
                break;
            }
            if round > 0 {
                tokio::time::sleep(backoff(self.opts.base_delay, round)).await;
            }
            for i in self.order(start) {
                if refused[i] {
                    continue;
                }
                let source = &self.sources[i];
                let verified = match source.get(self.client, &cid).await {
                    Ok(bytes) => Ok(verify(cid, bytes).await),
                    Err(miss) => Err(miss),
                };
                self.record(i, matches!(verified, Ok((_, Ok(())))));
                match verified {
                    Ok((bytes, check)) => match check {
                        Ok(()) => return (Ok(bytes), rejected),
                        Err(e) => {
                            rejected += 1;
                            refused[i] = true;
                            let why = match e {
                                StoreError::Corrupt(_) => {
                                    format!(
                                        "wrong hash (sent {} bytes that do not hash to the CID)",
                                        bytes.len()
                                    )
                                }
                                other => other.to_string(),
                            };
                            tracing::warn!(%cid, %source, "refused a bad block: {why}");
                            last[i] = Some(why);
                        }
                    },
                    Err(Miss::Bad(why)) => {
                        rejected += 1;
                        refused[i] = true;
                        tracing::warn!(%cid, %source, "refused a bad block: {why}");
                        last[i] = Some(why);
                    }
                    Err(Miss::Unavailable(why)) => {
                        tracing::debug!(%cid, %source, round, "block request failed: {why}");
                        last[i] = Some(why);
                    }
                }
            }
        }
        let failures = self
            .sources
            .iter()
            .zip(last)
            .map(|(s, reason)| SourceFailure {
                source: s.to_string(),
                reason: reason.unwrap_or_else(|| "not asked".into()),
            })
            .collect();
        (Err(FetchError::Block { cid, failures }), rejected)
    }

    /// The order to ask the sources in for a block: round-robin from
    /// `start`, the ones that failed recently last.
    fn order(&self, start: usize) -> Vec<usize> {
        let n = self.sources.len();
        let now = Instant::now();
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        order.sort_by_key(|&i| {
            health
                .get(i)
                .and_then(|h| h.cool_until)
                .is_some_and(|t| t > now)
        });
        order
    }

    /// Notes a good or failed answer from source `i`.
    fn record(&self, i: usize, good: bool) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = health.get_mut(i) else { return };
        if good {
            *h = Health::default();
        } else {
            h.failures = h.failures.saturating_add(1);
            h.cool_until = Some(Instant::now() + backoff(COOLDOWN, h.failures).min(MAX_COOLDOWN));
        }
    }
}

/// The identity of a block for de-duplication: codec and multihash.
fn key(cid: &Cid) -> Cid {
    Cid::new_v1(cid.codec(), *cid.hash())
}

/// Queues the CIDs not seen before for a store lookup.
fn enqueue(
    cids: Vec<Cid>,
    seen: &mut HashSet<Cid>,
    to_check: &mut Vec<Cid>,
) -> Result<(), FetchError> {
    for cid in cids {
        if seen.insert(key(&cid)) {
            supported(&cid)?;
            to_check.push(cid);
        }
    }
    Ok(())
}

/// Wait before round `round` (1-based after the first): `base · 2^(round-1)`.
fn backoff(base: Duration, round: u32) -> Duration {
    base.checked_mul(1u32 << round.saturating_sub(1).min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Hashes `bytes` against `cid`; big blocks on the blocking pool, so the
/// runtime's threads are not held up for a millisecond per MiB.
async fn verify(cid: Cid, bytes: Bytes) -> (Bytes, Result<(), StoreError>) {
    if bytes.len() < HASH_INLINE_MAX {
        let check = check_block(&cid, &bytes);
        return (bytes, check);
    }
    let shared = bytes.clone();
    match tokio::task::spawn_blocking(move || check_block(&cid, &shared)).await {
        Ok(check) => (bytes, check),
        // The hash cannot panic; should the task die anyway, refuse the block.
        Err(_) => (bytes, Err(StoreError::Corrupt(cid))),
    }
}

/// Looks `batch` up in the store; follows the links of present dag-pb nodes.
fn check(store: &Store, batch: Vec<Cid>) -> Result<Checked, FetchError> {
    let mut out = Checked::default();
    for cid in batch {
        // Every present block is rehashed before it is trusted; a corrupt
        // one is fetched again, and storing it repairs the local copy.
        match store.checked_links(&cid) {
            Ok(None) | Err(StoreError::Corrupt(_)) => out.missing.push(cid),
            Ok(Some(links)) => {
                out.present += 1;
                out.children.extend(links);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FetchError::Internal(format!("store task: {e}")))?
}

#[cfg(test)]
mod tests {
    // Used by the integration tests only.
    use axum as _;
    use lattice_gateway as _;

    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, 4), Duration::from_millis(800));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn fetch_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_with(dir.path(), false).expect("store"));
        let root = store
            .put_new_block(cid::Version::V1, RAW, Bytes::from_static(b"x"))
            .expect("put");
        let opts = FetchOptions::default();
        let fut = fetch(store, root, &[], &opts, &|_| {});
        is_send(&fut);
    }

    #[tokio::test]
    async fn complete_dag_needs_no_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_with(dir.path(), false).expect("store"));
        let root = store
            .put_new_block(cid::Version::V1, RAW, Bytes::from_static(b"hello"))
            .expect("put");
        let report = fetch(store.clone(), root, &[], &FetchOptions::default(), &|_| {})
            .await
            .expect("fetch");
        assert_eq!((report.blocks_fetched, report.blocks_present), (0, 1));
        assert_eq!(
            store.is_pinned(&root).expect("pins"),
            Some(PinKind::Recursive)
        );
        assert_eq!(&store.mmap(&root).expect("mmap")[..], b"hello");
    }

    #[tokio::test]
    async fn missing_block_without_sources_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_with(dir.path(), false).expect("store"));
        let root = lattice_store::make_cid(
            cid::Version::V1,
            RAW,
            lattice_store::sha256_multihash(&[b"absent"]),
        );
        let err = fetch(store, root, &[], &FetchOptions::default(), &|_| {})
            .await
            .expect_err("nothing to fetch from");
        assert!(
            matches!(err, FetchError::NoSources { cid } if cid == root),
            "{err}"
        );
        assert!(err.to_string().contains(&root.to_string()), "{err}");
    }
}
