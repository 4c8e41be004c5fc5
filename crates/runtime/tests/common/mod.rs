//! Shared by the runtime's integration tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The test-model cache, from `tests/models/fetch.sh` (which downloads it when missing).
pub(crate) fn models() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/models/fetch.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run tests/models/fetch.sh");
        assert!(
            out.status.success(),
            "tests/models/fetch.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
        PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
    })
    .clone()
}
