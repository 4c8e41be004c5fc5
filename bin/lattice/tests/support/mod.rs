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

/// A running `lattice ipfs serve`, killed on drop.
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `lattice ipfs serve` over `datadir`'s store on a free port; its base URL.
pub(crate) fn serve(datadir: &Path) -> (Server, String) {
    let mut child = lattice(datadir)
        .args(["ipfs", "serve", "--listen", "127.0.0.1:0"])
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
