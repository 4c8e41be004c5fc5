//! The real npm `kubo-rpc-client` against a real server: runs
//! `tests/oracle/kubo_client.mjs`, which asserts every result (CIDs against
//! the official UnixFS importer) and exits non-zero on any failure.

// Integration tests link every dependency of the library; most are unused here.
#![allow(unused_crate_dependencies)]

mod common;

use std::path::Path;
use std::process::Command;

const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/oracle");
const DRIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/oracle/kubo_client.mjs"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_rpc_client_drives_the_server() {
    let oracle = Path::new(ORACLE);
    assert!(
        oracle.join("node_modules").is_dir(),
        "{}/node_modules is missing: run `npm ci --prefix tests/oracle` from the workspace root (CI installs it)",
        oracle.display()
    );
    assert!(Path::new(DRIVER).is_file(), "{DRIVER} is missing");
    let s = common::Server::start().await;
    let url = s.url.clone();
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(DRIVER).arg(&url).output())
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("could not run `node` (Node.js >= 20.19 is needed): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "kubo_client.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "unexpected driver output:\n{stdout}"
    );
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(
        !stdout.starts_with("0 passed"),
        "the driver ran no checks:\n{stdout}"
    );
}
