//! Which files of a repository a model needs.
//!
//! The rule (also in `docs/manifest.md`): only top-level files (subfolders such as `onnx/`,
//! `1_Pooling/` or `coreml/` are skipped), and of those:
//!
//! - metadata, always when present: `config.json`, `generation_config.json`,
//!   `preprocessor_config.json`, the tokenizer files (`tokenizer.json`,
//!   `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`, `vocab.txt`,
//!   `vocab.json`, `merges.txt`, `*.model` sentencepiece files, `chat_template.jinja`),
//!   `README.md` and `LICENSE*`;
//! - weights in one format, the first present of: `*.safetensors` (+
//!   `model.safetensors.index.json`), `*.gguf`, `pytorch_model.bin` (converted to
//!   safetensors on import), `*.onnx`. The other formats' duplicates (`tf_model.h5`,
//!   `flax_model.msgpack`, `rust_model.ot`, `.bin` beside safetensors, …) are skipped.

/// Metadata files kept whenever present.
const METADATA: &[&str] = &[
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "README.md",
];

/// The PyTorch checkpoint converted to safetensors when a repository has no safetensors.
pub const PYTORCH_BIN: &str = "pytorch_model.bin";

pub(crate) fn is_metadata(name: &str) -> bool {
    METADATA.contains(&name)
        || name.starts_with("LICENSE")
        || (name.ends_with(".model") && !name.contains('/'))
}

/// The files of `all` (repository-relative paths) a model needs, sorted, following the rule
/// in this module's documentation.
pub fn select(all: &[String]) -> Vec<String> {
    let top: Vec<&String> = all.iter().filter(|f| !f.contains('/')).collect();
    let with_ext = |ext: &str| -> Vec<String> {
        top.iter()
            .filter(|f| f.ends_with(ext))
            .map(|f| f.to_string())
            .collect()
    };
    let mut weights = with_ext(".safetensors");
    if !weights.is_empty() {
        if top.iter().any(|f| *f == "model.safetensors.index.json") {
            weights.push("model.safetensors.index.json".to_string());
        }
    } else {
        weights = with_ext(".gguf");
    }
    if weights.is_empty() && top.iter().any(|f| *f == PYTORCH_BIN) {
        weights = vec![PYTORCH_BIN.to_string()];
    }
    if weights.is_empty() {
        weights = with_ext(".onnx");
    }
    let mut out: Vec<String> = top
        .iter()
        .filter(|f| is_metadata(f))
        .map(|f| f.to_string())
        .chain(weights)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn safetensors_win_over_other_formats() {
        let all = names(&[
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tf_model.h5",
            "flax_model.msgpack",
            "onnx/model.onnx",
            "tokenizer.json",
            "vocab.txt",
            "README.md",
            "LICENSE.txt",
            ".gitattributes",
            "1_Pooling/config.json",
        ]);
        assert_eq!(
            select(&all),
            names(&[
                "LICENSE.txt",
                "README.md",
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "vocab.txt"
            ])
        );
    }

    #[test]
    fn falls_back_to_gguf_then_bin_then_onnx() {
        assert_eq!(
            select(&names(&["a.gguf", "model.onnx", "pytorch_model.bin"])),
            names(&["a.gguf"])
        );
        assert_eq!(
            select(&names(&["config.json", "model.onnx", "pytorch_model.bin"])),
            names(&["config.json", "pytorch_model.bin"])
        );
        assert_eq!(
            select(&names(&["model.onnx", "tokenizer.json"])),
            names(&["model.onnx", "tokenizer.json"])
        );
    }
}
