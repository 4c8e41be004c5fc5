//! Downloads from a real HTTP server on loopback that answers like the Hugging Face hub
//! (`/api/models/{id}/revision/{rev}`, `/{id}/resolve/{rev}/{file}` with `X-Repo-Commit`,
//! `ETag` / `X-Linked-Etag`, `X-Linked-Size`, a redirect for LFS files, `Range`), serving
//! repositories from a folder; then imports into a real store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lattice_import::{HubConfig, ImportError, ImportRequest, Importer, Quantization, Quiet};
use lattice_store::Store;
use sha2::{Digest, Sha256};

// Dependencies of the library these tests do not name.
use candle_core as _;
use cid as _;
use futures as _;
use lattice_runtime as _;
use reqwest as _;
use serde as _;
use thiserror as _;
use tracing as _;

/// How the LFS endpoint misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    /// Sends the first half of each LFS file, then drops the connection.
    HalfThenFail,
    /// Sends every LFS file with one byte changed.
    Corrupt,
}

/// method, path, Range header, Authorization header.
type Request = (String, String, Option<String>, Option<String>);

#[derive(Clone)]
struct Hub {
    root: PathBuf,
    mode: Arc<Mutex<Mode>>,
    /// Every request: method, path, Range header, Authorization header.
    log: Arc<Mutex<Vec<Request>>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn commit_of(repo: &str) -> String {
    hex(&Sha256::digest(repo.as_bytes()))[..40].to_string()
}

fn is_lfs(file: &str) -> bool {
    [".safetensors", ".bin", ".gguf", ".onnx", ".h5", ".msgpack"]
        .iter()
        .any(|e| file.ends_with(e))
}

impl Hub {
    fn record(&self, method: &str, path: &str, h: &HeaderMap) {
        let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(String::from);
        self.log.lock().expect("log").push((
            method.to_string(),
            path.to_string(),
            get(header::RANGE),
            get(header::AUTHORIZATION),
        ));
    }
    fn mode(&self) -> Mode {
        *self.mode.lock().expect("mode")
    }
}

/// The bytes from `Range: bytes=N-` on, as a 206 (or 200 without a Range).
fn ranged(h: &HeaderMap, bytes: Vec<u8>, extra: &[(&str, String)], mode: Mode) -> Response {
    let start = h
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let total = bytes.len();
    let (status, from) = match start {
        Some(s) if s >= total => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response();
        }
        Some(s) => (StatusCode::PARTIAL_CONTENT, s),
        None => (StatusCode::OK, 0),
    };
    let mut body = bytes[from..].to_vec();
    if mode == Mode::Corrupt && !body.is_empty() {
        let i = body.len() / 2;
        body[i] ^= 0xff;
    }
    let len = body.len();
    let mut resp = if mode == Mode::HalfThenFail {
        let half = bytes::Bytes::from(body[..len / 2].to_vec());
        // The pause lets the first half reach the client before the connection drops.
        let stream = futures::StreamExt::then(
            futures::stream::iter(vec![
                Ok::<_, std::io::Error>(half),
                Err(std::io::Error::other("connection lost")),
            ]),
            |item| async move {
                if item.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                item
            },
        );
        Response::new(Body::from_stream(stream))
    } else {
        Response::new(Body::from(body))
    };
    *resp.status_mut() = status;
    let hm = resp.headers_mut();
    hm.insert(header::CONTENT_LENGTH, len.into());
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {from}-{}/{total}", total - 1).parse()
    {
        hm.insert(header::CONTENT_RANGE, v);
    }
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (k.parse::<header::HeaderName>(), v.parse()) {
            hm.insert(k, v);
        }
    }
    resp
}

async fn api(
    State(hub): State<Hub>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    let repo = format!("{org}/{name}");
    hub.record("GET", &format!("/api/models/{repo}/revision/{rev}"), &h);
    let dir = hub.root.join(&org).join(&name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    };
    let mut siblings: Vec<serde_json::Value> = entries
        .filter_map(|e| e.ok())
        .map(|e| serde_json::json!({"rfilename": e.file_name().to_string_lossy()}))
        .collect();
    siblings.push(serde_json::json!({"rfilename": "onnx/model.onnx"}));
    axum::Json(serde_json::json!({
        "id": repo,
        "sha": commit_of(&repo),
        "siblings": siblings,
    }))
    .into_response()
}

async fn resolve(
    State(hub): State<Hub>,
    method: axum::http::Method,
    UrlPath((org, name, _rev, file)): UrlPath<(String, String, String, String)>,
    h: HeaderMap,
) -> Response {
    let repo = format!("{org}/{name}");
    hub.record(method.as_str(), &format!("/{repo}/resolve/{file}"), &h);
    let Ok(bytes) = std::fs::read(hub.root.join(&org).join(&name).join(&file)) else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    let sha = hex(&Sha256::digest(&bytes));
    if is_lfs(&file) {
        let mut resp = StatusCode::FOUND.into_response();
        let hm = resp.headers_mut();
        for (k, v) in [
            ("x-repo-commit", commit_of(&repo)),
            ("x-linked-etag", format!("\"{sha}\"")),
            ("x-linked-size", bytes.len().to_string()),
            ("etag", "\"not-the-content-hash\"".to_string()),
            ("location", format!("/lfs/{org}/{name}/{file}")),
        ] {
            if let Ok(v) = v.parse() {
                hm.insert(k, v);
            }
        }
        return resp;
    }
    ranged(
        &h,
        bytes,
        &[
            ("x-repo-commit", commit_of(&repo)),
            // A git blob id stands here on the real hub: 40 hex digits, not a sha256.
            ("etag", format!("\"{}\"", &sha[..40])),
        ],
        Mode::Honest,
    )
}

async fn lfs(
    State(hub): State<Hub>,
    UrlPath((org, name, file)): UrlPath<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    hub.record("GET", &format!("/lfs/{org}/{name}/{file}"), &h);
    let Ok(bytes) = std::fs::read(hub.root.join(&org).join(&name).join(&file)) else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    ranged(&h, bytes, &[], hub.mode())
}

/// A hub serving `root/<org>/<name>/<files>` on 127.0.0.1 from its own thread.
fn serve(root: &Path) -> (String, Hub) {
    let hub = Hub {
        root: root.to_path_buf(),
        mode: Arc::new(Mutex::new(Mode::Honest)),
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/api/models/{org}/{name}/revision/{rev}", get(api))
        .route("/{org}/{name}/resolve/{rev}/{file}", get(resolve))
        .route("/lfs/{org}/{name}/{file}", get(lfs))
        .with_state(hub.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(l, app).await.expect("serve");
        });
    });
    (format!("http://{addr}"), hub)
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/data")
        .join(name)
}

/// A hub folder with `org/tiny-gpt2` (plus files the import must skip) and a store.
struct Setup {
    _tmp: tempfile::TempDir,
    hub: Hub,
    config: HubConfig,
    store: Store,
    work: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("hub/org/tiny-gpt2");
    std::fs::create_dir_all(&repo).expect("mkdir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(data("tiny-gpt2").join(f), repo.join(f)).expect("copy");
    }
    std::fs::write(
        repo.join("README.md"),
        "---\nlicense: apache-2.0\ntags: [tiny]\n---\n# tiny gpt2\n",
    )
    .expect("readme");
    std::fs::write(repo.join("flax_model.msgpack"), b"skip me").expect("flax");
    std::fs::write(repo.join("pytorch_model.bin"), b"skip me too").expect("bin");
    std::fs::write(repo.join(".gitattributes"), b"*.bin filter=lfs").expect("attrs");
    let (endpoint, hub) = serve(&tmp.path().join("hub"));
    let config = HubConfig {
        endpoint,
        token: Some("hf_secret".to_string()),
        cache: tmp.path().join("cache"),
    };
    let store = Store::open(tmp.path().join("store")).expect("store");
    let work = tmp.path().join("work");
    Setup {
        _tmp: tmp,
        hub,
        config,
        store,
        work,
    }
}

fn req(source: &str) -> ImportRequest {
    ImportRequest {
        source: source.to_string(),
        ..ImportRequest::default()
    }
}

#[test]
fn downloads_into_the_hf_cache_layout_and_imports() {
    let s = setup();
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    let m = importer
        .import(&req("org/tiny-gpt2"), &Quiet)
        .expect("import");
    let commit = commit_of("org/tiny-gpt2");
    assert_eq!(m.manifest.source.kind, "hf");
    assert_eq!(m.manifest.source.revision.as_deref(), Some(commit.as_str()));
    assert_eq!(m.manifest.license.as_deref(), Some("apache-2.0"));
    assert_eq!(m.manifest.task, "generate");
    let paths: Vec<&str> = m.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "config.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );

    // The cache is laid out as huggingface_hub lays it out.
    let repo = s.config.cache.join("models--org--tiny-gpt2");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).expect("ref"),
        commit
    );
    let weights = std::fs::read(data("tiny-gpt2").join("model.safetensors")).expect("read");
    let sha = hex(&Sha256::digest(&weights));
    let link = repo
        .join("snapshots")
        .join(&commit)
        .join("model.safetensors");
    assert_eq!(
        std::fs::read_link(&link).expect("symlink"),
        PathBuf::from("../../blobs").join(&sha)
    );
    assert_eq!(std::fs::read(&link).expect("read link"), weights);
    assert!(
        !repo
            .join("snapshots")
            .join(&commit)
            .join("flax_model.msgpack")
            .exists()
    );
    let log = s.hub.log.lock().expect("log").clone();
    assert!(
        log.iter()
            .all(|(_, p, _, _)| !p.contains("msgpack") && !p.contains(".bin"))
    );
    assert!(
        log.iter()
            .filter(|(_, p, _, _)| !p.starts_with("/lfs"))
            .all(|(_, _, _, auth)| auth.as_deref() == Some("Bearer hf_secret")),
        "{log:?}"
    );

    // The next run resolves from the cache, without the hub, and finds the same files.
    let offline = HubConfig {
        endpoint: "http://127.0.0.1:9".to_string(),
        ..s.config.clone()
    };
    let again = Importer::new(&s.store, &s.work, offline)
        .import(&req("org/tiny-gpt2"), &Quiet)
        .expect("from the cache");
    assert_eq!(again.manifest.source.kind, "hf");
    assert_eq!(again.manifest.files, m.manifest.files);
    assert_eq!(again.cid, m.cid, "cached or downloaded: one CID");

    // A rerun of the same download gives the same CID and fetches no file again.
    let n = s.hub.log.lock().expect("log").len();
    let rerun = importer
        .import(
            &ImportRequest {
                download: true,
                ..req("org/tiny-gpt2")
            },
            &Quiet,
        )
        .expect("rerun");
    assert_eq!(rerun.cid, m.cid);
    let log = s.hub.log.lock().expect("log");
    assert_eq!(log.len(), n + 1, "only the file list: {:?}", &log[n..]);
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let s = setup();
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    *s.hub.mode.lock().expect("mode") = Mode::HalfThenFail;
    let e = importer
        .import(&req("org/tiny-gpt2"), &Quiet)
        .expect_err("the connection drops");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    let weights = std::fs::read(data("tiny-gpt2").join("model.safetensors")).expect("read");
    let sha = hex(&Sha256::digest(&weights));
    let blobs = s.config.cache.join("models--org--tiny-gpt2/blobs");
    let partial = blobs.join(format!("{sha}.incomplete"));
    let have = std::fs::metadata(&partial)
        .unwrap_or_else(|_| panic!("partial kept after: {e}"))
        .len();
    assert!(have > 0 && have < weights.len() as u64, "{have}");
    assert!(
        !s.config
            .cache
            .join("models--org--tiny-gpt2/refs/main")
            .exists()
    );

    *s.hub.mode.lock().expect("mode") = Mode::Honest;
    let m = importer
        .import(&req("org/tiny-gpt2"), &Quiet)
        .expect("resumed");
    assert_eq!(m.manifest.source.kind, "hf");
    assert!(!partial.exists());
    assert_eq!(std::fs::read(blobs.join(&sha)).expect("blob"), weights);
    let log = s.hub.log.lock().expect("log");
    let want = format!("bytes={have}-");
    assert!(
        log.iter()
            .any(|(_, p, r, _)| p.starts_with("/lfs") && r.as_deref() == Some(want.as_str())),
        "{log:?}"
    );
}

#[test]
fn a_corrupted_lfs_file_is_refused_naming_it() {
    let s = setup();
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    *s.hub.mode.lock().expect("mode") = Mode::Corrupt;
    let e = importer
        .import(&req("org/tiny-gpt2"), &Quiet)
        .expect_err("corrupt");
    assert!(
        matches!(e, ImportError::Corrupt { ref file, .. } if file == "model.safetensors"),
        "{e}"
    );
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    let blobs = s.config.cache.join("models--org--tiny-gpt2/blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .expect("blobs")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64 || n.ends_with(".incomplete"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(s.store.pins().expect("pins").is_empty());
}

#[test]
fn a_missing_repository_is_a_clear_error() {
    let s = setup();
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    let e = importer
        .import(&req("org/no-such-model"), &Quiet)
        .expect_err("404");
    let msg = e.to_string();
    assert!(
        msg.contains("org/no-such-model") && msg.contains("not found") && msg.contains("404"),
        "{msg}"
    );
    let e = importer
        .import(&req("not a repo id"), &Quiet)
        .expect_err("bad id");
    assert!(
        e.to_string().contains("not a Hugging Face repository id"),
        "{e}"
    );
}

#[test]
fn an_unsupported_repository_is_refused_before_its_weights_are_downloaded() {
    let s = setup();
    let repo = s.hub.root.join("org/t5-small");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("config.json"), r#"{"model_type":"t5"}"#).expect("config");
    std::fs::write(repo.join("tokenizer.json"), b"{}").expect("tokenizer");
    std::fs::write(repo.join("model.safetensors"), vec![0u8; 4096]).expect("weights");
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    let e = importer
        .import(&req("org/t5-small"), &Quiet)
        .expect_err("t5");
    let msg = e.to_string();
    assert!(
        msg.contains("\"t5\"") && msg.contains("supported:"),
        "{msg}"
    );
    let log = s.hub.log.lock().expect("log");
    assert!(
        log.iter()
            .all(|(_, p, _, _)| !p.contains("model.safetensors")),
        "{log:?}"
    );
}

#[test]
fn quantize_downloads_a_llama_checkpoint_and_refuses_others_before_their_weights() {
    let s = setup();
    let llama = s.hub.root.join("org/tiny-llama");
    std::fs::create_dir_all(&llama).expect("mkdir");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(data("tiny-llama").join(f), llama.join(f)).expect("copy");
    }
    let importer = Importer::new(&s.store, &s.work, s.config.clone());
    let quantized = |repo: &str| ImportRequest {
        quantize: Some(Quantization::Q8_0),
        ..req(repo)
    };
    // Without --quantize the runtime cannot run a llama checkpoint: refused before its weights.
    let e = importer
        .import(&req("org/tiny-llama"), &Quiet)
        .expect_err("llama safetensors");
    assert!(e.to_string().contains("\"llama\""), "{e}");
    let m = importer
        .import(&quantized("org/tiny-llama"), &Quiet)
        .expect("quantized import");
    assert_eq!(m.manifest.format, "gguf");
    assert_eq!(m.manifest.quantization.as_deref(), Some("q8_0"));
    assert_eq!(m.manifest.source.kind, "hf");
    assert!(m.manifest.files.iter().any(|f| f.path == "model.gguf"));

    // GPT-2 is not converted, and its weights are never asked for.
    s.hub.log.lock().expect("log").clear();
    let e = importer
        .import(
            &ImportRequest {
                download: true,
                ..quantized("org/tiny-gpt2")
            },
            &Quiet,
        )
        .expect_err("gpt2");
    assert!(matches!(e, ImportError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("GPT2LMHeadModel"), "{e}");
    let log = s.hub.log.lock().expect("log");
    assert!(
        log.iter()
            .all(|(_, p, _, _)| !p.contains("model.safetensors")),
        "{log:?}"
    );
}
