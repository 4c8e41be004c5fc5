//! `GET`/`HEAD /ipfs/{cid}[/{path}]`: the trustless gateway (raw blocks and
//! CAR streams) and the path gateway's deserialized files and folders.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, response::Builder};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cid::Cid;
use lattice_store::unixfs::{DAG_PB, Node, NodeType, RAW};
use lattice_store::{DirEntry, Store, StoreError};

use crate::car::{self, CarRequest, EntityBytes, IDENTITY, Scope};
use crate::error::{Error, blocking};
use crate::range::{self, Ranges};
use crate::stream::blocking_body;
use crate::util::{Params, check_segments, encode_segment, html_escape, parse_cid, percent_decode};
use crate::{SharedState, mime};

/// `Cache-Control` of everything under `/ipfs/`: the content behind a CID
/// never changes.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";
const RAW_TYPE: &str = "application/vnd.ipld.raw";
const CAR_TYPE: &str = "application/vnd.ipld.car";
/// What our CARs are: v1, depth-first, each block once.
const CAR_RESPONSE_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// IPLD response types of the path gateway that this gateway does not
/// produce.
const UNSUPPORTED_FORMATS: &[&str] =
    &["dag-json", "dag-cbor", "json", "cbor", "tar", "ipns-record"];
const UNSUPPORTED_TYPES: &[&str] = &[
    "application/vnd.ipld.dag-json",
    "application/vnd.ipld.dag-cbor",
    "application/vnd.ipfs.ipns-record",
    "application/x-tar",
];

/// One `Accept` entry: its q, type and other parameters.
type MediaRange<'a> = (f32, &'a str, Vec<(&'a str, &'a str)>);

/// The response type a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car {
        scope: Scope,
        bytes: Option<EntityBytes>,
    },
    Deserialized,
}

/// A parsed `/ipfs/` request path.
struct ContentPath {
    /// The path as it came, still percent-encoded (for headers and links).
    raw: String,
    root: Cid,
    /// Decoded segments after the CID.
    segments: Vec<String>,
    trailing_slash: bool,
}

/// Where the path led.
struct Resolved {
    /// Blocks walked through, from the root, excluding the terminal.
    path_blocks: Vec<Cid>,
    terminal: Cid,
}

impl Resolved {
    fn roots_header(&self) -> String {
        let mut all: Vec<String> = self.path_blocks.iter().map(Cid::to_string).collect();
        all.push(self.terminal.to_string());
        all.join(",")
    }
}

/// What a deserialized response shows.
enum Entity {
    File {
        cid: Cid,
        len: u64,
        inline: Option<Bytes>,
    },
    Dir {
        entries: Vec<DirEntry>,
    },
}

/// The handler of `/ipfs/{*rest}`.
pub(crate) async fn handle(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(q)) => Params(q),
        Err(e) => {
            return Error::bad_request(format!("malformed query string: {e}")).into_response();
        }
    };
    match serve(&state, &method, &uri, &headers, &params).await {
        Ok(res) => res,
        Err(e) => {
            tracing::debug!(path = uri.path(), status = %e.status, "{}", e.message);
            let mut res = e.into_response();
            res.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            res
        }
    }
}

fn parse_path(uri: &Uri, max_path: usize, max_cid: usize) -> Result<ContentPath, Error> {
    let raw = uri.path();
    if raw.len() > max_path {
        return Err(Error::bad_request(format!(
            "request path is {} bytes, longer than the {max_path}-byte limit",
            raw.len()
        )));
    }
    let rest = raw
        .strip_prefix("/ipfs/")
        .ok_or_else(|| Error::bad_request("content paths start with /ipfs/"))?;
    let mut parts = rest.split('/');
    let cid_part = parts.next().unwrap_or_default();
    let cid_str = percent_decode(cid_part, false).map_err(Error::bad_request)?;
    let root = parse_cid(&cid_str, max_cid)?;
    let mut segments = Vec::new();
    for part in parts.filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(Error::bad_request(format!(
                "path segment {part:?} is not allowed: content paths cannot walk up or stay in place"
            )));
        }
        segments.push(percent_decode(part, false).map_err(Error::bad_request)?);
    }
    check_segments(&segments)?;
    Ok(ContentPath {
        raw: raw.to_string(),
        root,
        trailing_slash: rest.contains('/') && rest.ends_with('/'),
        segments,
    })
}

/// `format` and `Accept` negotiation; also says whether `Accept` decided.
fn negotiate(params: &Params, headers: &HeaderMap) -> Result<(Format, bool), Error> {
    let car =
        |version: Option<&str>, order: Option<&str>, dups: Option<&str>| -> Result<Format, Error> {
            if let Some(v) = version.filter(|v| *v != "1") {
                return Err(Error::bad_request(format!(
                    "CAR version {v} is not supported; this gateway writes CAR version 1"
                )));
            }
            if let Some(o) = order.filter(|o| !matches!(*o, "dfs" | "unk")) {
                return Err(Error::bad_request(format!(
                    "CAR order {o:?} is not supported; this gateway writes order=dfs"
                )));
            }
            if let Some(d) = dups.filter(|d| !matches!(*d, "y" | "n")) {
                return Err(Error::bad_request(format!("CAR dups {d:?} is not y or n")));
            }
            let scope = match params.get("dag-scope") {
                None => Scope::All,
                Some(s) => Scope::parse(s).ok_or_else(|| {
                    Error::bad_request(format!("dag-scope {s:?} is not one of block, entity, all"))
                })?,
            };
            let bytes = params
                .get("entity-bytes")
                .map(|s| {
                    EntityBytes::parse(s).ok_or_else(|| {
                        Error::bad_request(format!(
                            "entity-bytes {s:?} is not FROM:TO (integers, TO may be *)"
                        ))
                    })
                })
                .transpose()?;
            Ok(Format::Car { scope, bytes })
        };
    if let Some(f) = params.get("format") {
        return match f {
            "raw" => Ok((Format::Raw, false)),
            "car" => Ok((
                car(
                    params.get("car-version"),
                    params.get("car-order"),
                    params.get("car-dups"),
                )?,
                false,
            )),
            f if UNSUPPORTED_FORMATS.contains(&f) => Err(Error::bad_request(format!(
                "format={f} is not supported by this gateway; it serves format=raw, format=car and UnixFS files and folders"
            ))),
            f => Err(Error::bad_request(format!(
                "unknown format {f:?}; this gateway serves format=raw and format=car"
            ))),
        };
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok((Format::Deserialized, false));
    };
    // Media ranges by descending q, ties in the order sent.
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|item| {
            let mut bits = item.split(';').map(str::trim);
            let ty = bits.next().filter(|t| !t.is_empty())?;
            let mut q = 1.0f32;
            let mut ps = Vec::new();
            for p in bits {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") {
                    q = v.parse().unwrap_or(0.0);
                } else {
                    ps.push((k, v));
                }
            }
            Some((q, ty, ps))
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut only_unsupported = !ranges.is_empty();
    for (_, ty, ps) in &ranges {
        let get = |name: &str| {
            ps.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        if ty.eq_ignore_ascii_case(RAW_TYPE) {
            return Ok((Format::Raw, true));
        }
        if ty.eq_ignore_ascii_case(CAR_TYPE) {
            return Ok((car(get("version"), get("order"), get("dups"))?, true));
        }
        if !UNSUPPORTED_TYPES.iter().any(|u| ty.eq_ignore_ascii_case(u)) {
            only_unsupported = false;
        }
    }
    if only_unsupported {
        return Err(Error::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "none of the types in Accept: {accept} is served here; this gateway serves {RAW_TYPE}, {CAR_TYPE} and UnixFS files and folders"
            ),
        ));
    }
    Ok((Format::Deserialized, false))
}

fn resolve(store: &Store, root: &Cid, segments: &[String]) -> Result<Resolved, StoreError> {
    if root.hash().code() != IDENTITY && !store.has(root)? {
        return Err(StoreError::NotFound(*root));
    }
    let mut path_blocks = Vec::with_capacity(segments.len());
    let mut cur = *root;
    for seg in segments {
        let next = store.resolve(&cur, seg)?;
        path_blocks.push(cur);
        cur = next;
    }
    Ok(Resolved {
        path_blocks,
        terminal: cur,
    })
}

/// The bytes of an identity CID: its digest is its content.
fn identity_bytes(cid: &Cid) -> Option<Bytes> {
    (cid.hash().code() == IDENTITY).then(|| Bytes::copy_from_slice(cid.hash().digest()))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// Headers every successful `/ipfs/` response carries.
fn base(status: StatusCode, path: &ContentPath, resolved: &Resolved, etag: &str) -> Builder {
    Response::builder()
        .status(status)
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, IMMUTABLE)
        .header(header::VARY, "Accept")
        .header("X-Ipfs-Path", &path.raw)
        .header("X-Ipfs-Roots", resolved.roots_header())
}

fn finish(builder: Builder, body: Body) -> Result<Response, Error> {
    builder
        .body(body)
        .map_err(|e| Error::internal(format!("building the response: {e}")))
}

fn not_modified(path: &ContentPath, resolved: &Resolved, etag: &str) -> Result<Response, Error> {
    finish(
        base(StatusCode::NOT_MODIFIED, path, resolved, etag),
        Body::empty(),
    )
}

/// A short, stable digest of `s` for ETags.
fn short_hash(s: &str) -> String {
    lattice_store::sha256_multihash(&[s.as_bytes()])
        .digest()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn serve(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, Error> {
    let limits = state.limits;
    let path = parse_path(uri, limits.max_path_len, limits.max_cid_len)?;
    let (format, from_accept) = negotiate(params, headers)?;
    let store = state.store.clone();
    let (root, segments) = (path.root, path.segments.clone());
    let resolved = match blocking(move || resolve(&store, &root, &segments)).await? {
        Ok(r) => r,
        Err(StoreError::NotFound(c)) if c == path.root && only_if_cached(headers) => {
            return Err(Error::new(
                StatusCode::PRECONDITION_FAILED,
                format!("{c} is not in this node's store (only-if-cached)"),
            ));
        }
        Err(e) => return Err(Error::from_store(e)),
    };
    let head = method == Method::HEAD;
    let content_location = |f: &str| -> String {
        match uri.query() {
            Some(q) => format!("{}?format={f}&{q}", path.raw),
            None => format!("{}?format={f}", path.raw),
        }
    };
    match format {
        Format::Raw => {
            let cid = resolved.terminal;
            let etag = format!("\"{cid}.raw\"");
            if etag_matches(headers, &etag) {
                return not_modified(&path, &resolved, &etag);
            }
            let mut b = base(StatusCode::OK, &path, &resolved, &etag)
                .header(header::CONTENT_TYPE, RAW_TYPE)
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .header(
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{cid}.bin\""),
                );
            if from_accept {
                b = b.header(header::CONTENT_LOCATION, content_location("raw"));
            }
            let store = state.store.clone();
            let block = if let Some(bytes) = identity_bytes(&cid) {
                bytes
            } else if head {
                let len = blocking(move || store.block_size(&cid))
                    .await?
                    .map_err(Error::from_store)?;
                return finish(b.header(header::CONTENT_LENGTH, len), Body::empty());
            } else {
                blocking(move || store.block(&cid))
                    .await?
                    .map_err(Error::from_store)?
            };
            b = b.header(header::CONTENT_LENGTH, block.len());
            finish(
                b,
                if head {
                    Body::empty()
                } else {
                    Body::from(block)
                },
            )
        }
        Format::Car { scope, bytes } => {
            let default_shape = path.segments.is_empty() && scope == Scope::All && bytes.is_none();
            let etag = if default_shape {
                format!("\"{}.car\"", path.root)
            } else {
                let shape = format!("{}|{}|{:?}", path.raw, scope.name(), bytes);
                format!("\"{}.car.{}\"", path.root, short_hash(&shape))
            };
            if etag_matches(headers, &etag) {
                return not_modified(&path, &resolved, &etag);
            }
            let mut b = base(StatusCode::OK, &path, &resolved, &etag)
                .header(header::CONTENT_TYPE, CAR_RESPONSE_TYPE)
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .header(
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.car\"", path.root),
                );
            if from_accept {
                b = b.header(header::CONTENT_LOCATION, content_location("car"));
            }
            if head {
                return finish(b, Body::empty());
            }
            let req = CarRequest {
                root: path.root,
                path_blocks: resolved.path_blocks.clone(),
                terminal: resolved.terminal,
                scope,
                bytes,
            };
            let store = state.store.clone();
            let body = blocking_body("CAR", move |w| car::write(&store, &req, w))
                .await
                .map_err(Error::from_store)?;
            finish(b, body)
        }
        Format::Deserialized => {
            deserialized(state, head, headers, params, &path, &resolved, uri).await
        }
    }
}

fn only_if_cached(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
        })
}

fn inspect(store: &Store, cid: &Cid) -> Result<Entity, Error> {
    let unsupported = |what: String| {
        Error::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what}; request it with ?format=raw or ?format=car instead"),
        )
    };
    if let Some(bytes) = identity_bytes(cid) {
        if cid.codec() == RAW {
            return Ok(Entity::File {
                cid: *cid,
                len: bytes.len() as u64,
                inline: Some(bytes),
            });
        }
        return Err(unsupported(format!(
            "{cid} is an identity CID of a codec other than raw"
        )));
    }
    match cid.codec() {
        RAW => Ok(Entity::File {
            cid: *cid,
            len: store.file_len(cid).map_err(Error::from_store)?,
            inline: None,
        }),
        DAG_PB => {
            let node = store.node(cid).map_err(Error::from_store)?;
            let Node::Pb { unixfs, .. } = &node else {
                return Err(Error::internal(format!(
                    "{cid}: dag-pb block decoded as raw"
                )));
            };
            match unixfs.kind {
                NodeType::File | NodeType::Raw => Ok(Entity::File {
                    cid: *cid,
                    len: node.file_len(),
                    inline: None,
                }),
                NodeType::Directory => Ok(Entity::Dir {
                    entries: store.ls(cid).map_err(Error::from_store)?,
                }),
                NodeType::HamtShard => Err(unsupported(format!(
                    "{cid} is a HAMT-sharded folder, which this gateway does not list"
                ))),
                NodeType::Symlink => Err(unsupported(format!("{cid} is a UnixFS symlink"))),
                NodeType::Metadata => Err(unsupported(format!("{cid} is a UnixFS metadata node"))),
            }
        }
        other => Err(unsupported(format!(
            "{cid} has codec 0x{other:x}, which this gateway does not render"
        ))),
    }
}

/// `filename` for `Content-Disposition`: a plain ASCII fallback and the
/// RFC 8187 encoded form.
fn disposition(kind: &str, name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

async fn deserialized(
    state: &SharedState,
    head: bool,
    headers: &HeaderMap,
    params: &Params,
    path: &ContentPath,
    resolved: &Resolved,
    uri: &Uri,
) -> Result<Response, Error> {
    let store = state.store.clone();
    let terminal = resolved.terminal;
    let entity = tokio::task::spawn_blocking(move || inspect(&store, &terminal))
        .await
        .map_err(Error::join)??;
    let download = params.flag("download", false)?;
    let filename = params.get("filename").filter(|f| !f.is_empty());
    let disposition_header = |name: Option<&str>| -> Option<String> {
        match (filename.or(name), download) {
            (Some(n), true) => Some(disposition("attachment", n)),
            (None, true) => Some("attachment".to_string()),
            (Some(n), false) if filename.is_some() => Some(disposition("inline", n)),
            _ => None,
        }
    };
    match entity {
        Entity::File { cid, len, inline } => {
            let name = filename
                .or(path.segments.last().map(String::as_str))
                .unwrap_or_default();
            let file = FileResponse {
                cid,
                len,
                inline,
                content_type: mime::guess(name),
                etag: format!("\"{cid}\""),
                disposition: disposition_header(path.segments.last().map(String::as_str)),
            };
            file.respond(state, head, headers, path, resolved).await
        }
        Entity::Dir { entries } => {
            if !path.trailing_slash {
                // Relative links in a listing or index.html need the slash.
                let location = match uri.query() {
                    Some(q) => format!("{}/?{q}", path.raw),
                    None => format!("{}/", path.raw),
                };
                return finish(
                    Response::builder()
                        .status(StatusCode::MOVED_PERMANENTLY)
                        .header(header::LOCATION, location)
                        .header("X-Ipfs-Path", &path.raw),
                    Body::empty(),
                );
            }
            if let Some(index) = entries.iter().find(|e| e.name == "index.html" && !e.is_dir) {
                let store = state.store.clone();
                let cid = index.cid;
                let len = blocking(move || store.file_len(&cid))
                    .await?
                    .map_err(Error::from_store)?;
                let file = FileResponse {
                    cid,
                    len,
                    inline: None,
                    content_type: "text/html; charset=utf-8",
                    etag: format!("\"{cid}\""),
                    disposition: disposition_header(None),
                };
                return file.respond(state, head, headers, path, resolved).await;
            }
            let etag = format!("\"DirIndex-lattice_CID-{}\"", resolved.terminal);
            if etag_matches(headers, &etag) {
                return not_modified(path, resolved, &etag);
            }
            let html = listing(path, resolved, &entries);
            let b = base(StatusCode::OK, path, resolved, &etag)
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .header(header::CONTENT_LENGTH, html.len());
            finish(
                b,
                if head {
                    Body::empty()
                } else {
                    Body::from(html)
                },
            )
        }
    }
}

/// A simple HTML index of a folder.
fn listing(path: &ContentPath, resolved: &Resolved, entries: &[DirEntry]) -> String {
    let mut base_href = format!("/ipfs/{}/", path.root);
    for s in &path.segments {
        base_href.push_str(&encode_segment(s));
        base_href.push('/');
    }
    let mut title = format!("/ipfs/{}", path.root);
    for s in &path.segments {
        title.push('/');
        title.push_str(s);
    }
    title.push('/');
    let mut html = String::with_capacity(512 + entries.len() * 256);
    html.push_str("<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>");
    html.push_str(&html_escape(&title));
    html.push_str("</title></head>\n<body>\n<h1>Index of ");
    html.push_str(&html_escape(&title));
    html.push_str("</h1>\n<p>CID <code>");
    html.push_str(&resolved.terminal.to_string());
    html.push_str("</code></p>\n<table>\n<tr><th>Name</th><th>CID</th><th>Size</th></tr>\n");
    if !path.segments.is_empty() {
        html.push_str("<tr><td><a href=\"../\">..</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let mut href = format!("{base_href}{}", encode_segment(&e.name));
        let mut label = html_escape(&e.name);
        if e.is_dir {
            href.push('/');
            label.push('/');
        }
        let size = if e.is_dir {
            String::new()
        } else {
            e.file_size.to_string()
        };
        html.push_str(&format!(
            "<tr><td><a href=\"{}\">{label}</a></td><td><a href=\"/ipfs/{cid}\"><code>{cid}</code></a></td><td>{size}</td></tr>\n",
            html_escape(&href),
            cid = e.cid,
        ));
    }
    html.push_str("</table>\n</body>\n</html>\n");
    html
}

/// A deserialized file, whole or in ranges.
struct FileResponse {
    cid: Cid,
    len: u64,
    inline: Option<Bytes>,
    content_type: &'static str,
    etag: String,
    disposition: Option<String>,
}

impl FileResponse {
    async fn respond(
        self,
        state: &SharedState,
        head: bool,
        headers: &HeaderMap,
        path: &ContentPath,
        resolved: &Resolved,
    ) -> Result<Response, Error> {
        if etag_matches(headers, &self.etag) {
            return not_modified(path, resolved, &self.etag);
        }
        // A range applies only if `If-Range` (when sent) names this version.
        let if_range_ok = headers
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == self.etag);
        let ranges = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(r) if if_range_ok => range::parse(r, self.len, state.limits.max_range_count),
            _ => Ranges::Full,
        };
        let mut b =
            base(StatusCode::OK, path, resolved, &self.etag).header(header::ACCEPT_RANGES, "bytes");
        if let Some(d) = &self.disposition {
            b = b.header(header::CONTENT_DISPOSITION, d);
        }
        let store = state.store.clone();
        let parts = match ranges {
            Ranges::Full => {
                b = b
                    .header(header::CONTENT_TYPE, self.content_type)
                    .header(header::CONTENT_LENGTH, self.len);
                let len = self.len;
                return finish(
                    b,
                    if head {
                        Body::empty()
                    } else {
                        self.body(store, vec![(0, len)], None).await?
                    },
                );
            }
            Ranges::Parts(p) => p,
            Ranges::Unsatisfiable(why) => {
                let mut e = Error::new(StatusCode::RANGE_NOT_SATISFIABLE, why).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", self.len)) {
                    e.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(e);
            }
        };
        b = b.status(StatusCode::PARTIAL_CONTENT);
        if let [(start, end)] = parts.as_slice() {
            b = b
                .header(header::CONTENT_TYPE, self.content_type)
                .header(header::CONTENT_LENGTH, end - start)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{}", end - 1, self.len),
                );
            return finish(
                b,
                if head {
                    Body::empty()
                } else {
                    self.body(store, parts, None).await?
                },
            );
        }
        let boundary = boundary();
        let heads: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, (s, e))| {
                format!(
                    "{}--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {s}-{}/{}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    self.content_type,
                    e - 1,
                    self.len
                )
            })
            .collect();
        let tail = format!("\r\n--{boundary}--\r\n");
        let total: u64 = heads.iter().map(|h| h.len() as u64).sum::<u64>()
            + parts.iter().map(|(s, e)| e - s).sum::<u64>()
            + tail.len() as u64;
        b = b
            .header(
                header::CONTENT_TYPE,
                format!("multipart/byteranges; boundary={boundary}"),
            )
            .header(header::CONTENT_LENGTH, total);
        finish(
            b,
            if head {
                Body::empty()
            } else {
                self.body(store, parts, Some((heads, tail))).await?
            },
        )
    }

    /// The bytes of `parts`, each preceded by its multipart head and the
    /// whole followed by the tail when `multipart` is given.
    async fn body(
        self,
        store: Arc<Store>,
        parts: Vec<(u64, u64)>,
        multipart: Option<(Vec<String>, String)>,
    ) -> Result<Body, Error> {
        if let Some(bytes) = self.inline {
            let mut out = Vec::new();
            for (i, (s, e)) in parts.iter().enumerate() {
                if let Some((heads, _)) = &multipart {
                    out.extend_from_slice(heads[i].as_bytes());
                }
                let (s, e) = (*s as usize, (*e as usize).min(bytes.len()));
                out.extend_from_slice(&bytes[s.min(e)..e]);
            }
            if let Some((_, tail)) = &multipart {
                out.extend_from_slice(tail.as_bytes());
            }
            return Ok(Body::from(out));
        }
        let cid = self.cid;
        blocking_body("file", move |w| {
            let write = |w: &mut crate::stream::ChannelWriter, s: &str| {
                w.write_all(s.as_bytes()).map_err(|source| StoreError::Io {
                    op: "write",
                    path: "HTTP response".into(),
                    source,
                })
            };
            for (i, (s, e)) in parts.iter().enumerate() {
                if let Some((heads, _)) = &multipart {
                    write(w, &heads[i])?;
                }
                store.cat(&cid, *s, Some(e - s), w)?;
            }
            if let Some((_, tail)) = &multipart {
                write(w, tail)?;
            }
            Ok(())
        })
        .await
        .map_err(Error::from_store)
    }
}

/// A multipart boundary unlikely to occur in any file.
fn boundary() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "lattice-{}",
        short_hash(&format!("{nanos}:{n}:{}", std::process::id()))
    )
}
