//! `lattice.json`, the manifest written into every imported model folder (schema in
//! `docs/manifest.md`).

use lattice_runtime::{ModelSpec, Task};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The schema identifier of this manifest version.
pub const SCHEMA: &str = "lattice.model/1";

/// The manifest's file name inside a model folder.
pub const MANIFEST_FILE: &str = "lattice.json";

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `folder`, or `hf` (a Hugging Face repository, read from the local cache or downloaded
    /// into it).
    pub kind: String,
    /// The repository id (`org/name`), or the folder's name for `folder` (its name only,
    /// so the CID does not depend on where the folder is).
    pub repo: String,
    /// The commit hash, when known.
    pub revision: Option<String>,
}

/// One file of the model folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path inside the folder.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its CID, with the settings the folder was imported with (CIDv1, raw leaves).
    pub cid: String,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: String,
    /// The model's name.
    pub name: String,
    /// Where it came from.
    pub source: SourceInfo,
    /// `architectures[0]` of `config.json`.
    pub architecture: Option<String>,
    /// `model_type` of `config.json`.
    pub model_type: Option<String>,
    /// The task it runs (`embed`, `classify`, `generate`, `classify-image`, `zero-shot`).
    pub task: String,
    /// The weights format (`safetensors`, `gguf`, `onnx`).
    pub format: String,
    /// The model files (the manifest excluded), sorted by path.
    pub files: Vec<FileEntry>,
    /// What the model takes.
    pub inputs: Value,
    /// What the model gives.
    pub outputs: Value,
    /// The model card's `license:` (README.md front matter), if any.
    pub license: Option<String>,
    /// The quantization the weights were converted to on import (`q4_0`, `q8_0`; the
    /// checkpoint became `model.gguf`); absent when the weights are as published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

impl Manifest {
    /// The manifest of the model `spec` describes.
    pub fn new(
        name: String,
        source: SourceInfo,
        spec: &ModelSpec,
        files: Vec<FileEntry>,
        license: Option<String>,
    ) -> Self {
        let config = &spec.config;
        let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
        let architecture = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .map(str::to_string);
        let (inputs, outputs) = io_of(spec);
        Manifest {
            schema: SCHEMA.to_string(),
            name,
            source,
            architecture,
            model_type: s("model_type"),
            task: spec.task.to_string(),
            format: serde_json::to_value(spec.format)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            files,
            inputs,
            outputs,
            license,
            quantization: None,
        }
    }
}

/// The width of the model's embedding, from `config.json`.
fn hidden_size(config: &Value) -> Option<u64> {
    ["projection_dim", "hidden_size", "n_embd", "d_model", "dim"]
        .iter()
        .find_map(|k| config.get(k).and_then(Value::as_u64))
}

/// A small JSON description of the inputs and outputs of the model's task.
fn io_of(spec: &ModelSpec) -> (Value, Value) {
    let labels = || {
        json!([{
            "name": "labels",
            "type": "labels",
            "labels": spec.labels,
        }])
    };
    match spec.task {
        Task::Embed => (
            json!([{"name": "text", "type": "text"}]),
            json!([{
                "name": "embedding",
                "type": "vector",
                "dtype": "f32",
                "dim": hidden_size(&spec.config),
            }]),
        ),
        Task::Classify => (json!([{"name": "text", "type": "text"}]), labels()),
        Task::Generate => (
            json!([{"name": "prompt", "type": "text"}]),
            json!([{"name": "text", "type": "text"}]),
        ),
        Task::ClassifyImage => (json!([{"name": "image", "type": "image"}]), labels()),
        Task::ZeroShot => (
            json!([
                {"name": "image", "type": "image"},
                {"name": "texts", "type": "text[]"}
            ]),
            json!([{"name": "labels", "type": "labels", "labels": "the texts"}]),
        ),
        Task::Transcribe => (
            json!([{"name": "audio", "type": "audio", "format": "wav"}]),
            json!([{"name": "text", "type": "text"}]),
        ),
    }
}

/// `license:` from a model card's YAML front matter (`---` … `---` at the top).
pub fn license_of(readme: &str) -> Option<String> {
    let mut lines = readme.lines();
    if lines.next()?.trim() != "---" {
        return None;
    }
    for line in lines {
        if line.trim() == "---" {
            return None;
        }
        if let Some(v) = line.strip_prefix("license:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_comes_from_the_front_matter_only() {
        assert_eq!(
            license_of("---\nlanguage: en\nlicense: apache-2.0\n---\n# x"),
            Some("apache-2.0".to_string())
        );
        assert_eq!(
            license_of("---\nlicense: \"mit\"\n---\n"),
            Some("mit".to_string())
        );
        assert_eq!(license_of("# card\nlicense: mit\n"), None);
        assert_eq!(license_of("---\ntags: []\n---\nlicense: mit\n"), None);
        assert_eq!(license_of(""), None);
    }
}
