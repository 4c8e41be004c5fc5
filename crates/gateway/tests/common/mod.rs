//! A real server on 127.0.0.1 over a real store in a temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;
use lattice_gateway::Limits;
use lattice_store::{ImportOptions, Store};

pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub store: Arc<Store>,
    /// Scratch space for test files (outside the store).
    pub scratch: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Opens a fresh store, lets `setup` fill it, then serves it.
    pub async fn start_with<T>(
        limits: Limits,
        setup: impl FnOnce(&Store, &Path) -> T,
    ) -> (Self, T) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(Store::open_with(dir.path().join("store"), false).expect("open store"));
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let made = setup(&store, &scratch);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(lattice_gateway::serve(listener, store.clone(), limits));
        let server = Self {
            url: format!("http://{addr}"),
            addr,
            store,
            scratch,
            _dir: dir,
        };
        (server, made)
    }

    pub async fn start() -> Self {
        Self::start_with(Limits::default(), |_, _| {}).await.0
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends `request_line` verbatim over a raw TCP connection (so that no
    /// client library normalises the path) and returns the status code and
    /// body.
    pub fn raw_get(&self, target: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect");
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

/// xorshift bytes: incompressible and reproducible.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Adds `path` (file or folder) and returns every entry, root last.
pub fn add(store: &Store, path: &Path, opts: &ImportOptions) -> Vec<lattice_store::Added> {
    store
        .add_paths(&[path.to_path_buf()], opts, &|_| {})
        .expect("add")
}

pub fn root(store: &Store, path: &Path, opts: &ImportOptions) -> Cid {
    add(store, path, opts).last().expect("an entry").cid
}

pub fn cat_all(store: &Store, cid: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    store.cat(cid, 0, None, &mut out).expect("cat");
    out
}

/// Parses NDJSON.
pub fn ndjson(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A kubo-style multipart body part for a file at `path`.
pub fn file_part(bytes: Vec<u8>, path: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(encode_uri_component(path))
        .mime_str("application/octet-stream")
        .expect("mime")
}

/// A kubo-style multipart body part for a folder at `path`.
pub fn dir_part(path: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(Vec::new())
        .file_name(encode_uri_component(path))
        .mime_str("application/x-directory")
        .expect("mime")
}

/// JavaScript's `encodeURIComponent`, as kubo-rpc-client names parts.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A multipart form that sends file names exactly as given (already
/// escaped the way kubo clients escape them).
pub fn form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().percent_encode_noop()
}
