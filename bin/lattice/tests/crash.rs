//! kill -9 during `lattice ipfs add`: the store must come back consistent
//! (every visible root complete and intact, no stray data) and re-running
//! the import must finish it with the same CID.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn lattice(datadir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lattice"));
    c.arg("--datadir").arg(datadir);
    c
}

fn run_json(datadir: &Path, args: &[&str]) -> serde_json::Value {
    let out = lattice(datadir)
        .arg("--json")
        .args(args)
        .output()
        .expect("lattice runs");
    assert!(
        out.status.success(),
        "lattice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn write_pattern(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Bytes written so far into data files (partial or complete).
fn data_bytes(datadir: &Path) -> u64 {
    std::fs::read_dir(datadir.join("store/data"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn kill_when(mut child: Child, datadir: &Path, min_bytes: u64, extra: Duration) -> bool {
    let start = Instant::now();
    while data_bytes(datadir) < min_bytes {
        if child.try_wait().expect("wait").is_some() || start.elapsed() > Duration::from_secs(60) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(extra);
    let finished = child.try_wait().expect("wait").is_some();
    // SIGKILL: no destructors, no flushes.
    child.kill().expect("kill");
    child.wait().expect("reap");
    !finished
}

/// Every pinned root must verify completely; no partial file may survive a reopen.
fn assert_consistent(datadir: &Path) -> Vec<String> {
    let pins = run_json(datadir, &["ipfs", "pin", "ls"]);
    let roots: Vec<String> = pins
        .as_array()
        .expect("pins")
        .iter()
        .map(|p| p["cid"].as_str().expect("cid").to_string())
        .collect();
    for root in &roots {
        let report = run_json(datadir, &["ipfs", "verify", root]);
        assert!(
            report["corrupt"].as_array().expect("corrupt").is_empty(),
            "{root}: {report}"
        );
        assert!(
            report["missing"].as_array().expect("missing").is_empty(),
            "{root}: {report}"
        );
    }
    let partial = std::fs::read_dir(datadir.join("store/data"))
        .expect("data dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
    assert!(!partial, "a .partial file survived reopening the store");
    roots
}

/// Runs `lattice ipfs add -Q [-r] [extra] PATH` to completion and returns the root CID.
fn add_q(datadir: &Path, path: &Path, recursive: bool, extra: &[&str]) -> String {
    let mut cmd = lattice(datadir);
    cmd.args(["ipfs", "add", "-Q"]).args(extra);
    if recursive {
        cmd.arg("-r");
    }
    let out = cmd.arg(path).output().expect("add runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn only_hash(datadir: &Path, path: &Path, recursive: bool) -> String {
    add_q(datadir, path, recursive, &["--only-hash"])
}

#[test]
fn kill_9_during_file_import_then_resume() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("weights.safetensors");
    let size = 96 << 20;
    write_pattern(&file, size, 42);
    let datadir = tmp.path().join("node");
    let expected = only_hash(&datadir, &file, false);

    let mut killed = 0;
    // Kill at different depths of the import: early, mid-write, near the end.
    for (i, frac) in [0.05f64, 0.3, 0.6, 0.9, 0.99].iter().enumerate() {
        let child = lattice(&datadir)
            .args(["ipfs", "add", "-Q"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        if kill_when(
            child,
            &datadir,
            (size as f64 * frac) as u64,
            Duration::from_millis(i as u64),
        ) {
            killed += 1;
        }
        let roots = assert_consistent(&datadir);
        assert!(
            roots.is_empty() || roots == [expected.clone()],
            "only the finished root may be visible: {roots:?}"
        );
        if !roots.is_empty() {
            // It finished before the kill landed; start over for the next kill point.
            std::fs::remove_dir_all(&datadir).expect("reset");
        }
    }
    assert!(
        killed >= 3,
        "the import finished before most kills landed ({killed} kills)"
    );

    // Re-running the import finishes it.
    assert_eq!(add_q(&datadir, &file, false, &[]), expected);
    assert_eq!(assert_consistent(&datadir), vec![expected.clone()]);
    let out = lattice(&datadir)
        .args(["ipfs", "cat", &expected])
        .output()
        .expect("cat");
    assert!(
        out.stdout == std::fs::read(&file).expect("read"),
        "cat returns the original bytes"
    );
}

#[test]
fn kill_9_during_folder_import_shows_no_root() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    for i in 0..4 {
        write_pattern(
            &model.join(format!("part-{i}.safetensors")),
            24 << 20,
            i + 1,
        );
    }
    write_pattern(&model.join("config.json"), 300, 99);
    let datadir = tmp.path().join("node");
    let expected = only_hash(&datadir, &model, true);
    let child = lattice(&datadir)
        .args(["ipfs", "add", "-r", "-Q"])
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Two files in: the folder root cannot be visible yet.
    assert!(
        kill_when(child, &datadir, 50 << 20, Duration::ZERO),
        "import finished before the kill"
    );
    assert!(
        assert_consistent(&datadir).is_empty(),
        "no root may be visible after a kill mid-folder"
    );
    assert_eq!(add_q(&datadir, &model, true, &[]), expected);
    assert_eq!(assert_consistent(&datadir), vec![expected.clone()]);
    let back = tmp.path().join("back");
    let out = lattice(&datadir)
        .args(["ipfs", "get", &expected, "-o"])
        .arg(&back)
        .output()
        .expect("get");
    assert!(out.status.success());
    for entry in std::fs::read_dir(&model).expect("ls") {
        let entry = entry.expect("entry");
        assert!(
            std::fs::read(entry.path()).expect("read")
                == std::fs::read(back.join(entry.file_name())).expect("read back")
        );
    }
}
