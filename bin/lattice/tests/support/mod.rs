//! Shared by the binary's end-to-end tests: a real `lattice devnet` process and the test-model
//! cache. Each test file uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `lattice --datadir DATADIR` with no log filter from the environment.
pub(crate) fn lattice(datadir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lattice"));
    c.arg("--datadir").arg(datadir).env_remove("LATTICE_LOG");
    c
}

/// A running child process (`lattice ipfs serve`, a validator, …), killed on drop.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `lattice ipfs serve` over `datadir`'s store on a free port; its base URL.
pub(crate) fn serve(datadir: &Path) -> (Server, String) {
    serve_at(datadir, "127.0.0.1:0")
}

/// Starts `lattice ipfs serve` over `datadir`'s store on `127.0.0.1:port` and waits until it
/// listens.
pub(crate) fn serve_on(datadir: &Path, port: u16) -> Server {
    serve_at(datadir, &format!("127.0.0.1:{port}")).0
}

fn serve_at(datadir: &Path, listen: &str) -> (Server, String) {
    let mut child = lattice(datadir)
        .args(["ipfs", "serve", "--listen", listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let server = Server(child);
    let line = lines.next().expect("a line").expect("utf8");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .and_then(|u| u.strip_suffix("/ipfs/<cid>"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (server, url)
}

/// A running `lattice devnet`, killed on drop.
pub(crate) struct Devnet {
    pub(crate) child: Child,
    /// `http://ADDR`.
    pub(crate) url: String,
    /// `ws://ADDR`.
    pub(crate) ws: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lattice --datadir DATADIR devnet --port 0 EXTRA…` and waits until it listens.
pub(crate) fn start(datadir: &Path, extra: &[&str]) -> Devnet {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lattice"))
        .arg("--datadir")
        .arg(datadir)
        .args(["devnet", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lattice devnet starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        assert!(
            Instant::now() < deadline,
            "devnet never said where it listens"
        );
        let line = lines
            .next()
            .expect("devnet exited before listening")
            .expect("stdout line");
        if let Some(addr) = line.strip_prefix("Listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Devnet {
        child,
        url: format!("http://{addr}"),
        ws: format!("ws://{addr}"),
    }
}

/// The test-model cache (`tests/models/fetch.sh` prints it, downloading what is missing).
pub(crate) fn models() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/models/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/models/fetch.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A fixture of the runtime's tests (`crates/runtime/tests/data/NAME`).
pub(crate) fn runtime_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/runtime/tests/data")
        .join(name)
}

/// A devnet that seals as soon as transactions arrive.
pub(crate) fn start_instant(datadir: &Path, extra: &[&str]) -> Devnet {
    let mut args = vec!["--instant"];
    args.extend_from_slice(extra);
    start(datadir, &args)
}

/// `lattice --datadir DIR --json model ARGS… --rpc URL` with no key or RPC from the environment.
pub(crate) fn model(datadir: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lattice"))
        .arg("--datadir")
        .arg(datadir)
        .args(["--json", "model"])
        .args(args)
        .args(["--rpc", url])
        .env_remove("LATTICE_KEY")
        .env_remove("LATTICE_RPC")
        .env_remove("LATTICE_LOG")
        .output()
        .expect("lattice runs")
}

/// The JSON a successful command printed.
pub(crate) fn ok_json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The error a failed command printed (it must have failed, without a panic).
pub(crate) fn failed(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "command should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    err
}

/// One JSON-RPC call; panics on a JSON-RPC error.
pub(crate) fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    match rpc_result(url, method, params) {
        Ok(v) => v,
        Err(err) => panic!("{method} failed: {err}"),
    }
}

/// One JSON-RPC call: its result, or its error object.
pub(crate) fn rpc_result(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = post_json(url, &body);
    match resp.get("error") {
        Some(err) => Err(err.clone()),
        None => Ok(resp["result"].clone()),
    }
}

/// A blocking JSON POST over a fresh loopback connection (std only; HTTP/1.0 so the body
/// comes unchunked and ends with the connection).
fn post_json(url: &str, body: &serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the node");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let payload = body.to_string();
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.contains(" 200 "), "HTTP error: {head}\n{body}");
    serde_json::from_str(body).expect("JSON-RPC response")
}

/// Flips one byte of `needle` where it lies in the store's data files under `datadir`.
pub(crate) fn flip_in_store(datadir: &Path, needle: &[u8]) -> usize {
    let mut flipped = 0;
    let mut stack = vec![datadir.join("store")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read store dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !path.to_string_lossy().contains("/data/") {
                continue;
            }
            let mut bytes = std::fs::read(&path).expect("read data file");
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                bytes[at + needle.len() / 2] ^= 0xff;
                std::fs::write(&path, &bytes).expect("write data file");
                flipped += 1;
            }
        }
    }
    flipped
}

/// A signed EIP-1559 transfer of `value` wei from `key` to `to` (20 gwei fee cap, 1 gwei tip),
/// as the `0x` hex `eth_sendRawTransaction` takes.
pub(crate) fn signed_transfer(
    key: alloy_primitives::B256,
    nonce: u64,
    chain_id: u64,
    to: alloy_primitives::Address,
    value: u64,
) -> String {
    use alloy_consensus::SignableTransaction as _;
    use alloy_eips::Encodable2718 as _;
    let tx = alloy_consensus::TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Call(to),
        value: alloy_primitives::U256::from(value),
        access_list: Default::default(),
        input: Default::default(),
    };
    let sig =
        alloy_consensus::crypto::secp256k1::sign_message(key, tx.signature_hash()).expect("sign");
    let env: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
    format!("0x{}", alloy_primitives::hex::encode(env.encoded_2718()))
}

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
