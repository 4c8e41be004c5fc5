//! Content types of deserialized files, from their names.

/// The default when nothing better is known.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// The media type for a file named `name`, from its extension; unknown or
/// missing extensions are `application/octet-stream`.
pub(crate) fn guess(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return OCTET_STREAM;
    };
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" | "log" => "text/plain; charset=utf-8",
        "md" | "markdown" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "xml" => "application/xml",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "py" => "text/x-python; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "zst" => "application/zstd",
        "car" => "application/vnd.ipld.car",
        // Model weights and other binary formats: no registered type.
        "safetensors" | "gguf" | "bin" | "pt" | "pth" | "onnx" | "npy" | "npz" | "msgpack"
        | "h5" | "ckpt" | "model" | "parquet" | "arrow" => OCTET_STREAM,
        _ => OCTET_STREAM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_by_extension() {
        assert_eq!(guess("config.json"), "application/json");
        assert_eq!(guess("README.TXT"), "text/plain; charset=utf-8");
        assert_eq!(guess("index.html"), "text/html; charset=utf-8");
        assert_eq!(guess("model.safetensors"), OCTET_STREAM);
        assert_eq!(guess("LICENSE"), OCTET_STREAM);
        assert_eq!(guess(""), OCTET_STREAM);
    }
}
