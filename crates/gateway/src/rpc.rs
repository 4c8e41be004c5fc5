//! A subset of the Kubo RPC API (`/api/v0/…`), answering as kubo does.
//!
//! Only `POST` is accepted (kubo refuses `GET` with `405` to stop cross-site
//! requests). Arguments come in the query string (`arg=…`, repeated for
//! several), uploads as `multipart/form-data` in kubo's layout: one part per
//! file or folder, the path URL-escaped in the part's `filename`, folders
//! marked `Content-Type: application/x-directory`. Output is kubo's JSON,
//! newline-delimited where kubo streams. Failures are kubo's error object
//! `{"Message", "Code", "Type": "error"}`: `400` (`Code` 1) for arguments
//! that cannot be parsed, `413` for bodies over the limit, `500` (`Code` 0)
//! for everything the store refuses, as kubo answers.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use cid::{Cid, Version};
use futures::StreamExt;
use lattice_store::unixfs::{DAG_PB, RAW, decode_pb};
use lattice_store::{ImportOptions, MAX_BLOCK, MAX_CHUNK, PinKind, Store, StoreError};
use serde_json::{Value, json};

use crate::error::{Error, blocking};
use crate::identity::Identity;
use crate::stream::{ChannelReader, blocking_body, upload_channel};
use crate::util::{Params, check_segments, parse_cid, percent_decode};
use crate::{AppState, SharedState};

/// kubo's block size limit without `--allow-big-block`.
const BLOCK_LIMIT: usize = 1024 * 1024;
/// At most this much of an over-long body is read and thrown away before
/// the `413` goes out, so that the client is still listening for it.
const DRAIN_LIMIT: u64 = 8 << 20;

/// The `Origin` of a browser request from another site, if any: one whose
/// host differs from the `Host` the request was sent to.
fn foreign_origin(headers: &axum::http::HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("<invalid>");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    (origin_host != host || host.is_empty()).then(|| origin.to_string())
}

/// The handler of `/api/v0/{*cmd}`.
pub(crate) async fn handle(
    State(state): State<SharedState>,
    method: Method,
    Path(cmd): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    if method != Method::POST {
        let mut res = (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("405 - Method Not Allowed: the Kubo RPC API only accepts POST, not {method}\n"),
        )
            .into_response();
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    if let Some(origin) = foreign_origin(req.headers()) {
        // As kubo does: a web page must not drive a node's API from a
        // browser (adds, unpins) behind its user's back.
        return (
            StatusCode::FORBIDDEN,
            format!(
                "403 - Forbidden: cross-origin request from {origin} refused by the Kubo RPC API\n"
            ),
        )
            .into_response();
    }
    let params = match query {
        Ok(Query(q)) => Params(q),
        Err(e) => return Error::bad_request(format!("malformed query string: {e}")).into_kubo(),
    };
    let limit = state.limits.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        drain(req.into_body(), len.min(DRAIN_LIMIT)).await;
        return too_large(limit).into_kubo();
    }
    let result = match cmd.as_str() {
        "add" => add(&state, &params, req).await,
        "cat" => cat(&state, &params).await,
        "block/get" => block_get(&state, &params).await,
        "block/put" => block_put(&state, &params, req).await,
        "block/stat" => block_stat(&state, &params).await,
        "pin/add" => pin_add(&state, &params).await,
        "pin/ls" => pin_ls(&state, &params).await,
        "pin/rm" => pin_rm(&state, &params).await,
        "dag/export" => dag_export(&state, &params).await,
        "dag/import" => dag_import(&state, &params, req).await,
        "version" => Ok(version()),
        "id" => id(&state, &params).await,
        other => {
            // kubo answers unknown commands in plain text.
            return Error::new(
                StatusCode::NOT_FOUND,
                format!(
                    "404 page not found: command {other:?} is not part of this node's Kubo RPC API"
                ),
            )
            .into_response();
        }
    };
    result.unwrap_or_else(|e| {
        tracing::debug!(cmd, status = %e.status, "{}", e.message);
        e.into_kubo()
    })
}

/// Reads and discards up to `cap` bytes of `body`, for at most a few seconds.
async fn drain(body: Body, cap: u64) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen >= cap {
                break;
            }
        }
    })
    .await;
}

fn too_large(limit: usize) -> Error {
    Error::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than this node's {limit}-byte limit"),
    )
}

fn multipart_err(e: MultipartError, limit: usize) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        Error::new(
            e.status(),
            format!("reading the multipart body: {}", e.body_text()),
        )
    }
}

async fn multipart(req: Request, cmd: &str) -> Result<Multipart, Error> {
    Multipart::from_request(req, &()).await.map_err(|e| {
        Error::bad_request(format!(
            "{cmd} expects a multipart/form-data body: {}",
            e.body_text()
        ))
    })
}

fn json_response(value: &Value) -> Response {
    let mut res = (StatusCode::OK, format!("{value}\n")).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Newline-delimited JSON, as kubo streams command output.
fn ndjson_response(values: &[Value]) -> Response {
    let mut body = String::new();
    for v in values {
        body.push_str(&v.to_string());
        body.push('\n');
    }
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("X-Chunked-Output", HeaderValue::from_static("1"));
    res
}

/// A content path argument: `CID[/a/b]` or `/ipfs/CID[/a/b]`.
fn parse_path_arg(arg: &str, state: &AppState) -> Result<(Cid, String), Error> {
    let limits = &state.limits;
    if arg.len() > limits.max_path_len {
        return Err(Error::bad_request(format!(
            "path is {} bytes, longer than the {}-byte limit",
            arg.len(),
            limits.max_path_len
        )));
    }
    if arg.starts_with("/ipns/") {
        return Err(Error::bad_request(format!(
            "{arg:?}: IPNS names are not supported by this node"
        )));
    }
    let rest = arg.strip_prefix("/ipfs/").unwrap_or(arg);
    let mut parts = rest.split('/');
    let cid = parse_cid(parts.next().unwrap_or_default(), limits.max_cid_len)
        .map_err(|e| Error::bad_request(format!("invalid path {arg:?}: {}", e.message)))?;
    let segments: Vec<String> = parts
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    check_segments(&segments)?;
    Ok((cid, segments.join("/")))
}

/// The required `arg`s, at least one.
fn args<'a>(params: &'a Params, name: &str) -> Result<Vec<&'a str>, Error> {
    let all = params.all("arg");
    if all.is_empty() {
        return Err(Error::bad_request(format!("argument {name:?} is required")));
    }
    Ok(all)
}

fn one_arg<'a>(params: &'a Params, name: &str) -> Result<&'a str, Error> {
    args(params, name).map(|a| a[0])
}

/// Resolves a parsed path argument in the store.
async fn resolve(state: &AppState, (cid, path): (Cid, String)) -> Result<Cid, Error> {
    if path.is_empty() {
        return Ok(cid);
    }
    let store = state.store.clone();
    blocking(move || store.resolve(&cid, &path))
        .await?
        .map_err(Error::from_store_rpc)
}

/// Streams one multipart field into `consume`, which runs on a blocking
/// thread and reads the field through a bounded channel.
async fn feed_field<T, F>(field: &mut Field<'_>, limit: usize, consume: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&mut ChannelReader) -> Result<T, StoreError> + Send + 'static,
{
    let (tx, mut reader) = upload_channel();
    let task = tokio::task::spawn_blocking(move || consume(&mut reader));
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    // The consumer stopped early; its result says why.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let err = multipart_err(e, limit);
                let _ = tx
                    .send(Err(std::io::Error::other(err.message.clone())))
                    .await;
                drop(tx);
                let _ = task.await;
                return Err(err);
            }
        }
    }
    drop(tx);
    task.await
        .map_err(Error::join)?
        .map_err(Error::from_store_rpc)
}

/// Reads a whole (small) field, refusing more than `max` bytes.
async fn read_field(field: &mut Field<'_>, max: usize, limit: usize) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_err(e, limit))? {
        if buf.len() + chunk.len() > max {
            // Read the rest of the part (bounded) before answering, so the
            // client is not cut off mid-upload and can read the error.
            let mut seen = (buf.len() + chunk.len()) as u64;
            while seen < DRAIN_LIMIT {
                match field.chunk().await {
                    Ok(Some(c)) => seen += c.len() as u64,
                    _ => break,
                }
            }
            return Err(Error::bad_request(format!(
                "produced block is over {max} bytes: big blocks can't be exchanged with other peers; use `add` to chunk bigger data, or pass allow-big-block=true (up to {MAX_BLOCK} bytes)"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

// ---------------------------------------------------------------- add

fn add_options(params: &Params) -> Result<(ImportOptions, bool), Error> {
    let mut opts = ImportOptions::default();
    match params.get("cid-version") {
        None | Some("0") => {}
        Some("1") => {
            opts.cid_version = Version::V1;
            opts.raw_leaves = true;
        }
        Some(v) => {
            return Err(Error::bad_request(format!(
                "cid-version {v:?} is not 0 or 1"
            )));
        }
    }
    opts.raw_leaves = params.flag("raw-leaves", opts.raw_leaves)?;
    if let Some(chunker) = params
        .get("chunker")
        .filter(|c| !c.is_empty() && *c != "default")
    {
        let size = chunker
            .strip_prefix("size-")
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "chunker {chunker:?} is not supported: only fixed-size chunkers (size-N) are"
                ))
            })?
            .parse::<usize>()
            .map_err(|_| {
                Error::bad_request(format!("chunker {chunker:?}: the size is not a number"))
            })?;
        if size == 0 || size > MAX_CHUNK {
            return Err(Error::bad_request(format!(
                "chunker {chunker:?}: chunk size must be between 1 and {MAX_CHUNK} bytes"
            )));
        }
        opts.chunk_size = size;
    }
    if let Some(links) = params.uint("max-file-links")? {
        opts.max_links = usize::try_from(links).unwrap_or(usize::MAX);
    }
    opts.pin = params.flag("pin", true)?;
    opts.only_hash = params.flag("only-hash", false)? || params.flag("n", false)?;
    opts.wrap = params.flag("wrap-with-directory", false)? || params.flag("w", false)?;
    // Hidden files are chosen by the client that walks a local folder (as
    // with kubo, whose server adds every part it is sent).
    opts.hidden = params.flag("hidden", false)? || params.flag("H", false)?;
    for (flag, why) in [
        ("trickle", "the trickle DAG layout is not supported"),
        (
            "inline",
            "inlining small blocks into identity CIDs is not supported",
        ),
        ("nocopy", "the filestore (nocopy) is not supported"),
        ("preserve-mode", "UnixFS mode metadata is not supported"),
        ("preserve-mtime", "UnixFS mtime metadata is not supported"),
    ] {
        if params.flag(flag, false)? {
            return Err(Error::bad_request(format!("{flag}: {why}")));
        }
    }
    for (opt, why) in [
        ("mode", "UnixFS mode metadata is not supported"),
        ("mtime", "UnixFS mtime metadata is not supported"),
        ("to-files", "the MFS (to-files) is not supported"),
    ] {
        if params.get(opt).is_some_and(|v| !v.is_empty()) {
            return Err(Error::bad_request(format!("{opt}: {why}")));
        }
    }
    if let Some(h) = params.get("hash").filter(|h| *h != "sha2-256") {
        return Err(Error::bad_request(format!(
            "hash {h:?} is not supported: only sha2-256 is"
        )));
    }
    opts.validate()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let progress = params.flag("progress", false)?;
    Ok((opts, progress))
}

/// A multipart file name as kubo reads it: URL-unescaped, slash-separated,
/// no `.` or `..`.
fn entry_path(filename: &str) -> Result<String, Error> {
    let decoded = percent_decode(filename, true)
        .map_err(|e| Error::bad_request(format!("file name {filename:?}: {e}")))?;
    let segments: Vec<String> = decoded
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    check_segments(&segments)?;
    Ok(segments.join("/"))
}

async fn add(state: &SharedState, params: &Params, req: Request) -> Result<Response, Error> {
    let (opts, progress) = add_options(params)?;
    let limit = state.limits.max_body;
    let mut mp = multipart(req, "add").await?;
    // Keeps GC from collecting the unpinned files until `add_tree` pins them.
    let store = state.store.clone();
    let _gc_hold = blocking(move || Ok(store.gc_hold()))
        .await?
        .map_err(Error::from_store_rpc)?;
    // Each file is imported unpinned and unwrapped; `add_tree` then builds
    // the folders, the optional wrapper, and pins the top-level roots.
    let file_opts = ImportOptions {
        pin: false,
        wrap: false,
        ..opts
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_err(e, limit))? {
        let path = entry_path(field.file_name().unwrap_or_default())?;
        match field.content_type().unwrap_or_default() {
            "application/x-directory" => {
                if !path.is_empty() {
                    dirs.push(path);
                }
                continue;
            }
            "application/symlink" => {
                return Err(Error::bad_request(format!(
                    "{path:?}: symlinks are not supported"
                )));
            }
            _ => {}
        }
        let store = state.store.clone();
        let added = feed_field(&mut field, limit, move |r| {
            store.add_reader(r, &file_opts, &|_| {})
        })
        .await?;
        let name = if path.is_empty() {
            added.cid.to_string()
        } else {
            path
        };
        files.push((name, added.cid, added.size, added.file_size));
    }
    if files.is_empty() && dirs.is_empty() {
        return Err(Error::bad_request(
            "argument \"path\" is required: the request holds no files",
        ));
    }
    let store = state.store.clone();
    let entries = blocking(move || store.add_tree(&files, &dirs, &opts))
        .await?
        .map_err(Error::from_store_rpc)?;
    let mut lines = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        if progress && e.file_size > 0 {
            lines.push(json!({ "Name": e.name, "Bytes": e.file_size }));
        }
        lines
            .push(json!({ "Name": e.name, "Hash": e.cid.to_string(), "Size": e.size.to_string() }));
    }
    Ok(ndjson_response(&lines))
}

// ---------------------------------------------------------------- cat

async fn cat(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let target = resolve(state, parse_path_arg(one_arg(params, "ipfs-path")?, state)?).await?;
    let offset = params.uint("offset")?.unwrap_or(0);
    let length = params.uint("length")?;
    let store = state.store.clone();
    let total = blocking(move || store.file_len(&target))
        .await?
        .map_err(|e| match e {
            StoreError::Invalid(_) => {
                Error::internal(format!("{target}: this dag node is a directory"))
            }
            e => Error::from_store_rpc(e),
        })?;
    let start = offset.min(total);
    let len = length.map_or(total - start, |l| l.min(total - start));
    let store = state.store.clone();
    let body = blocking_body("cat", move |w| {
        store.cat(&target, start, Some(len), w).map(|_| ())
    })
    .await
    .map_err(Error::from_store_rpc)?;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header("X-Stream-Output", "1")
        .header("X-Content-Length", len)
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(|e| Error::internal(e.to_string()))
}

// ---------------------------------------------------------------- block

async fn block_get(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let cid = resolve(state, parse_path_arg(one_arg(params, "cid")?, state)?).await?;
    let store = state.store.clone();
    let block = blocking(move || store.block(&cid))
        .await?
        .map_err(Error::from_store_rpc)?;
    let mut res = (StatusCode::OK, block).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(res)
}

async fn block_stat(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let cid = resolve(state, parse_path_arg(one_arg(params, "cid")?, state)?).await?;
    let store = state.store.clone();
    let size = blocking(move || store.block_size(&cid))
        .await?
        .map_err(Error::from_store_rpc)?;
    Ok(json_response(
        &json!({ "Key": cid.to_string(), "Size": size }),
    ))
}

/// Multicodec of a codec name `block put` accepts.
fn codec(name: &str) -> Option<u64> {
    Some(match name {
        "raw" => RAW,
        "dag-pb" | "protobuf" => DAG_PB,
        "dag-cbor" | "cbor" => 0x71,
        "dag-json" => 0x0129,
        "json" => 0x0200,
        "libp2p-key" => 0x72,
        "dag-jose" => 0x85,
        _ => return None,
    })
}

async fn block_put(state: &SharedState, params: &Params, req: Request) -> Result<Response, Error> {
    let (version, codec) = match params.get("format").filter(|f| !f.is_empty()) {
        // Legacy `format`: v0 and protobuf meant CIDv0 dag-pb.
        Some("v0" | "protobuf") => (Version::V0, DAG_PB),
        Some(f) => (
            Version::V1,
            codec(f).ok_or_else(|| Error::bad_request(format!("unknown format {f:?}")))?,
        ),
        None => {
            let name = params
                .get("cid-codec")
                .filter(|c| !c.is_empty())
                .unwrap_or("raw");
            (
                Version::V1,
                codec(name).ok_or_else(|| {
                    Error::bad_request(format!("cid-codec {name:?} is not supported"))
                })?,
            )
        }
    };
    if let Some(mh) = params.get("mhtype").filter(|m| *m != "sha2-256") {
        return Err(Error::bad_request(format!(
            "mhtype {mh:?} is not supported: only sha2-256 is"
        )));
    }
    if let Some(len) = params.get("mhlen").filter(|l| !matches!(*l, "-1" | "32")) {
        return Err(Error::bad_request(format!(
            "mhlen {len} is not supported: sha2-256 digests are 32 bytes"
        )));
    }
    let pin = params.flag("pin", false)?;
    let max = if params.flag("allow-big-block", false)? {
        MAX_BLOCK
    } else {
        BLOCK_LIMIT
    };
    let limit = state.limits.max_body;
    let mut mp = multipart(req, "block/put").await?;
    let mut out = Vec::new();
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_err(e, limit))? {
        let bytes = read_field(&mut field, max, limit).await?;
        if codec == DAG_PB {
            decode_pb(bytes.clone())
                .map_err(|e| Error::bad_request(format!("block is not valid dag-pb: {e}")))?;
        }
        let len = bytes.len();
        let store = state.store.clone();
        let cid = blocking(move || {
            let cid = store.put_new_block(version, codec, bytes)?;
            if pin {
                store.pin_add(&cid, PinKind::Recursive)?;
            }
            Ok(cid)
        })
        .await?
        .map_err(Error::from_store_rpc)?;
        out.push(json!({ "Key": cid.to_string(), "Size": len }));
    }
    if out.is_empty() {
        return Err(Error::bad_request(
            "argument \"data\" is required: the request holds no block",
        ));
    }
    Ok(ndjson_response(&out))
}

// ---------------------------------------------------------------- pin

async fn pin_add(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let recursive = params.flag("recursive", true)?;
    let kind = if recursive {
        PinKind::Recursive
    } else {
        PinKind::Direct
    };
    let mut pins = Vec::new();
    for arg in args(params, "ipfs-path")? {
        let cid = resolve(state, parse_path_arg(arg, state)?).await?;
        let store = state.store.clone();
        blocking(move || store.pin_add(&cid, kind))
            .await?
            .map_err(|e| Error::internal(format!("pin: {e}")))?;
        pins.push(cid.to_string());
    }
    Ok(json_response(&json!({ "Pins": pins })))
}

async fn pin_rm(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let recursive = params.flag("recursive", true)?;
    let mut removed = Vec::new();
    for arg in args(params, "ipfs-path")? {
        let cid = resolve(state, parse_path_arg(arg, state)?).await?;
        let store = state.store.clone();
        blocking(move || match store.is_pinned(&cid)? {
            None => Err(StoreError::Invalid(format!(
                "{cid} is not pinned or pinned indirectly"
            ))),
            Some(PinKind::Recursive) if !recursive => {
                Err(StoreError::Invalid(format!("{cid} is pinned recursively")))
            }
            Some(_) => store.pin_rm(&cid),
        })
        .await?
        .map_err(Error::from_store_rpc)?;
        removed.push(cid.to_string());
    }
    Ok(json_response(&json!({ "Pins": removed })))
}

/// Blocks reachable from recursive pins, excluding the pinned roots
/// themselves, each with the first root found to reach it. Raw blocks have
/// no links and are not read; dag-pb blocks are read (and so verified).
fn indirect_pins(store: &Store, pins: &[(Cid, PinKind)]) -> Result<HashMap<Cid, Cid>, StoreError> {
    let pinned: HashSet<Cid> = pins.iter().map(|(c, _)| *c).collect();
    let mut out = HashMap::new();
    let mut seen = HashSet::new();
    for (root, kind) in pins {
        if *kind != PinKind::Recursive {
            continue;
        }
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid) {
                continue;
            }
            if cid != *root && !pinned.contains(&cid) {
                out.entry(cid).or_insert(*root);
            }
            if cid.codec() != DAG_PB || cid.hash().code() == crate::car::IDENTITY {
                continue;
            }
            // Leaves in data files are not reread; a hole is skipped so a
            // pinned DAG with one still lists what is there.
            if let Some(links) = store.links(&cid)? {
                stack.extend(links);
            }
        }
    }
    Ok(out)
}

async fn pin_ls(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let ty = params
        .get("type")
        .filter(|t| !t.is_empty())
        .unwrap_or("all");
    if !matches!(ty, "all" | "direct" | "recursive" | "indirect") {
        return Err(Error::bad_request(format!(
            "invalid type {ty:?}, must be one of {{direct, indirect, recursive, all}}"
        )));
    }
    let stream = params.flag("stream", false)?;
    let names = params.flag("names", false)?;
    let mut targets = Vec::new();
    for arg in params.all("arg") {
        targets.push((
            arg.to_string(),
            resolve(state, parse_path_arg(arg, state)?).await?,
        ));
    }
    let ty = ty.to_string();
    let store = state.store.clone();
    let rows: Vec<(Cid, String)> = blocking(move || {
        let pins = store.pins()?;
        let want_indirect = matches!(ty.as_str(), "all" | "indirect");
        let indirect = if want_indirect {
            indirect_pins(&store, &pins)?
        } else {
            HashMap::new()
        };
        let kind_name = |k: PinKind| match k {
            PinKind::Direct => "direct",
            PinKind::Recursive => "recursive",
        };
        if targets.is_empty() {
            let mut rows: Vec<(Cid, String)> = pins
                .iter()
                .filter(|(_, k)| ty == "all" || ty == kind_name(*k))
                .map(|(c, k)| (*c, kind_name(*k).to_string()))
                .collect();
            let mut ind: Vec<Cid> = indirect.into_keys().collect();
            ind.sort_by_key(|c| c.to_bytes());
            rows.extend(ind.into_iter().map(|c| (c, "indirect".to_string())));
            return Ok(rows);
        }
        let mut rows = Vec::new();
        for (arg, cid) in targets {
            let direct = pins.iter().find(|(c, _)| *c == cid).map(|(_, k)| *k);
            let row = match direct {
                Some(k) if ty == "all" || ty == kind_name(k) => Some(kind_name(k).to_string()),
                _ => indirect
                    .get(&cid)
                    .filter(|_| want_indirect)
                    .map(|root| format!("indirect through {root}")),
            };
            match row {
                Some(t) => rows.push((cid, t)),
                None => return Err(StoreError::Invalid(format!("path '{arg}' is not pinned"))),
            }
        }
        Ok(rows)
    })
    .await?
    .map_err(Error::from_store_rpc)?;
    let entry = |t: &str| {
        let mut v = json!({ "Type": t });
        if names {
            v["Name"] = json!("");
        }
        v
    };
    if stream {
        let lines: Vec<Value> = rows
            .iter()
            .map(|(c, t)| {
                let mut v = entry(t);
                v["Cid"] = json!(c.to_string());
                v
            })
            .collect();
        return Ok(ndjson_response(&lines));
    }
    let keys: serde_json::Map<String, Value> = rows
        .iter()
        .map(|(c, t)| (c.to_string(), entry(t)))
        .collect();
    Ok(json_response(&json!({ "Keys": keys })))
}

// ---------------------------------------------------------------- dag

async fn dag_export(state: &SharedState, params: &Params) -> Result<Response, Error> {
    let root = resolve(state, parse_path_arg(one_arg(params, "root")?, state)?).await?;
    let store = state.store.clone();
    // A missing root fails here, before the status line.
    let body = blocking_body("dag export", move |w| {
        store.export_car(&root, w).map(|_| ())
    })
    .await
    .map_err(Error::from_store_rpc)?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.ipld.car")
        .header("X-Stream-Output", "1")
        .body(body)
        .map_err(|e| Error::internal(e.to_string()))
}

async fn dag_import(state: &SharedState, params: &Params, req: Request) -> Result<Response, Error> {
    let pin_roots = params.flag("pin-roots", true)?;
    let stats = params.flag("stats", false)?;
    let limit = state.limits.max_body;
    let mut mp = multipart(req, "dag/import").await?;
    let mut roots: Vec<Cid> = Vec::new();
    let mut pin_errors: HashMap<Cid, String> = HashMap::new();
    let (mut blocks, mut bytes) = (0u64, 0u64);
    let mut parts = 0;
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_err(e, limit))? {
        parts += 1;
        let store = state.store.clone();
        let report = feed_field(&mut field, limit, move |r| {
            let mut counted = CarStats {
                inner: r,
                pending: Vec::new(),
                header_seen: false,
                lost: false,
                block_bytes: 0,
            };
            let report = store.import_car(&mut counted, pin_roots)?;
            Ok((report, counted.block_bytes))
        })
        .await?;
        let (report, read) = report;
        blocks += report.blocks;
        bytes += read;
        for root in &report.roots {
            if !roots.contains(root) {
                roots.push(*root);
            }
        }
        for root in &report.pinned {
            pin_errors.remove(root);
        }
        for (root, why) in &report.pin_errors {
            if let Ok(c) = Cid::try_from(root.as_str()) {
                pin_errors.entry(c).or_insert_with(|| why.clone());
            }
        }
    }
    if parts == 0 {
        return Err(Error::bad_request(
            "argument \"path\" is required: the request holds no CAR file",
        ));
    }
    let mut lines = Vec::new();
    if pin_roots {
        // A root whose blocks came in a later CAR of the same request can
        // only be pinned now.
        let retry: Vec<Cid> = pin_errors.keys().copied().collect();
        let store = state.store.clone();
        let retried = blocking(move || {
            Ok(retry
                .into_iter()
                .map(|c| {
                    (
                        c,
                        store
                            .pin_add(&c, PinKind::Recursive)
                            .map_err(|e| e.to_string()),
                    )
                })
                .collect::<Vec<_>>())
        })
        .await?
        .map_err(Error::from_store_rpc)?;
        for (c, r) in retried {
            match r {
                Ok(()) => {
                    pin_errors.remove(&c);
                }
                Err(why) => {
                    pin_errors.insert(c, why);
                }
            }
        }
        for root in &roots {
            lines.push(json!({ "Root": {
                "Cid": { "/": root.to_string() },
                "PinErrorMsg": pin_errors.get(root).cloned().unwrap_or_default(),
            }}));
        }
    }
    if stats {
        lines.push(json!({ "Stats": { "BlockCount": blocks, "BlockBytesCount": bytes } }));
    }
    Ok(ndjson_response(&lines))
}

/// Passes a CAR stream through while summing the bytes of its blocks
/// (kubo's `BlockBytesCount`), holding at most one section in memory.
struct CarStats<'a> {
    inner: &'a mut ChannelReader,
    pending: Vec<u8>,
    header_seen: bool,
    /// Set when the framing cannot be followed; the importer reports why.
    lost: bool,
    block_bytes: u64,
}

impl CarStats<'_> {
    fn track(&mut self) {
        while !self.lost {
            let mut len = 0u64;
            let mut used = None;
            for (i, b) in self.pending.iter().take(10).enumerate() {
                len |= u64::from(b & 0x7f) << (7 * i);
                if *b < 0x80 {
                    used = Some(i + 1);
                    break;
                }
            }
            let Some(used) = used else {
                self.lost = self.pending.len() >= 10;
                return;
            };
            if len > (MAX_BLOCK as u64) * 2 {
                self.lost = true;
                return;
            }
            let end = used + len as usize;
            if self.pending.len() < end {
                return;
            }
            if self.header_seen {
                let mut cursor = std::io::Cursor::new(&self.pending[used..end]);
                match Cid::read_bytes(&mut cursor) {
                    Ok(_) => self.block_bytes += len - cursor.position(),
                    Err(_) => self.lost = true,
                }
            }
            self.header_seen = true;
            self.pending.drain(..end);
        }
    }
}

impl std::io::Read for CarStats<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.lost {
            self.pending.extend_from_slice(&buf[..n]);
            self.track();
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------- node

fn version() -> Response {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json_response(&json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Commit": "",
        "Repo": "lattice-store",
        "System": format!("{arch}/{}", std::env::consts::OS),
        "Golang": "",
    }))
}

async fn id(state: &SharedState, params: &Params) -> Result<Response, Error> {
    if !params.all("arg").is_empty() {
        return Err(Error::internal(
            "this node does not speak libp2p: it can only describe itself (call id without an argument)",
        ));
    }
    let dir = state.store.dir().to_path_buf();
    let ident = state
        .identity
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || Identity::load_or_create(&dir))
                .await
                .map_err(Error::join)?
                .map_err(|e| Error::internal(format!("reading the node identity: {e}")))
        })
        .await?;
    Ok(json_response(&json!({
        "ID": ident.peer_id,
        "PublicKey": ident.public_key,
        "Addresses": [],
        "AgentVersion": concat!("lattice/", env!("CARGO_PKG_VERSION")),
        "Protocols": [],
    })))
}
