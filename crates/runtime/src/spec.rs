//! What a model folder holds: its weights format, architecture family and task, read from
//! the files alone (`config.json`, the weights' extension, GGUF metadata) before anything
//! is loaded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// How the weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `model.safetensors` (+ `config.json`).
    Safetensors,
    /// One `.gguf` file (quantized; metadata and tokenizer inside).
    Gguf,
    /// One `.onnx` graph.
    Onnx,
}

/// The architecture family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT-style encoders (BERT, MiniLM, DistilBERT, RoBERTa, XLM-RoBERTa, ...), candle.
    Bert,
    /// Llama-family decoders from GGUF (SmolLM2, Llama, ...), candle.
    Llama,
    /// GPT-2 decoders (`GPT2LMHeadModel` safetensors), candle.
    Gpt2,
    /// Vision transformers (`ViTForImageClassification` safetensors), candle.
    Vit,
    /// ResNets (`ResNetForImageClassification` safetensors), candle.
    Resnet,
    /// CLIP (`CLIPModel` safetensors + `tokenizer.json`): text and image embeddings,
    /// zero-shot image classification, candle.
    Clip,
    /// An ONNX graph taking token ids (text encoder).
    OnnxText,
    /// An ONNX graph taking one image tensor (image classifier).
    OnnxImage,
    /// Whisper speech-to-text (`WhisperForConditionalGeneration` safetensors), candle.
    Whisper,
}

/// What running the model produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A sentence embedding (mean pooling + L2 normalisation, as sentence-transformers).
    Embed,
    /// Sequence classification: logits and labels.
    Classify,
    /// Text generation.
    Generate,
    /// Image classification: top-k labels.
    ClassifyImage,
    /// Zero-shot image classification: an image scored against candidate texts.
    ZeroShot,
    /// Speech to text: a transcript of an audio file.
    Transcribe,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Embed => "embed",
            Task::Classify => "classify",
            Task::Generate => "generate",
            Task::ClassifyImage => "classify-image",
            Task::ZeroShot => "zero-shot",
            Task::Transcribe => "transcribe",
        })
    }
}

impl FromStr for Task {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "embed" | "embedding" | "feature-extraction" => Ok(Task::Embed),
            "classify" | "text-classification" => Ok(Task::Classify),
            "generate" | "text-generation" => Ok(Task::Generate),
            "classify-image" | "image-classification" => Ok(Task::ClassifyImage),
            "zero-shot" | "zero-shot-image-classification" => Ok(Task::ZeroShot),
            "transcribe" | "automatic-speech-recognition" | "speech-recognition" => {
                Ok(Task::Transcribe)
            }
            _ => Err(RuntimeError::InvalidInput(format!(
                "unknown task {s:?} (expected embed, classify, generate, classify-image, zero-shot or transcribe)"
            ))),
        }
    }
}

/// What this runtime can run, for error messages.
pub const SUPPORTED: &str = "BERT-family encoders (model_type bert: MiniLM, BERT; distilbert; roberta, \
     xlm-roberta, camembert) as safetensors \
     (embed, classify); GPT-2 as safetensors (generate); ViT as safetensors (classify-image); \
     ResNet as safetensors (classify-image); CLIP as safetensors (zero-shot, embed); \
     Whisper as safetensors (transcribe); llama-family decoders as GGUF \
     (generate); ONNX text encoders taking \
     input_ids (embed) and ONNX image classifiers (classify-image)";

/// A model folder, understood.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSpec {
    /// The folder.
    pub dir: PathBuf,
    /// The weights format.
    pub format: Format,
    /// The architecture family.
    pub family: Family,
    /// The task it will run.
    pub task: Task,
    /// The weights file.
    pub weights: PathBuf,
    /// `tokenizer.json`, where there is one.
    pub tokenizer: Option<PathBuf>,
    /// `config.json` (Null when absent).
    pub config: serde_json::Value,
    /// Class labels in index order (`id2label` of `config.json`), empty when unknown.
    pub labels: Vec<String>,
}

impl ModelSpec {
    /// Reads what `path` (a model folder, or a single `.gguf`/`.onnx` file) holds, with the
    /// task the model is made for.
    pub fn detect(path: &Path) -> Result<Self> {
        Self::detect_with(path, None)
    }

    /// Like [`ModelSpec::detect`], with the task chosen by the caller (refused when the
    /// model cannot do it).
    pub fn detect_with(path: &Path, task: Option<Task>) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| RuntimeError::io(path, e))?;
        let (dir, files) = if meta.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| RuntimeError::io(path, e))? {
                let entry = entry.map_err(|e| RuntimeError::io(path, e))?;
                files.push(entry.path());
            }
            files.sort();
            (path.to_path_buf(), files)
        } else {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, vec![path.to_path_buf()])
        };
        let with_ext = |ext: &str| -> Vec<PathBuf> {
            files
                .iter()
                .filter(|f| f.extension().and_then(|e| e.to_str()) == Some(ext))
                .cloned()
                .collect()
        };
        let config_path = dir.join("config.json");
        let config = if config_path.is_file() {
            let bytes =
                std::fs::read(&config_path).map_err(|e| RuntimeError::io(&config_path, e))?;
            serde_json::from_slice(&bytes).map_err(|e| {
                RuntimeError::InvalidModel(format!("{}: {e}", config_path.display()))
            })?
        } else {
            serde_json::Value::Null
        };
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let labels = labels_of(&config);

        let (format, family, default_task, weights) = if let Some(w) =
            single(&with_ext("gguf"), "gguf")?
        {
            (Format::Gguf, Family::Llama, Task::Generate, w)
        } else if let Some(w) = single(&with_ext("onnx"), "onnx")? {
            if tokenizer.is_some() {
                (Format::Onnx, Family::OnnxText, Task::Embed, w)
            } else {
                (Format::Onnx, Family::OnnxImage, Task::ClassifyImage, w)
            }
        } else if let Some(w) = single(&with_ext("safetensors"), "safetensors")? {
            let model_type = config.get("model_type").and_then(|v| v.as_str());
            match model_type {
                Some("bert" | "distilbert" | "roberta" | "xlm-roberta" | "camembert") => {
                    let classifier = config
                        .get("architectures")
                        .and_then(|a| a.as_array())
                        .is_some_and(|a| {
                            a.iter().any(|s| {
                                s.as_str()
                                    .is_some_and(|s| s.ends_with("ForSequenceClassification"))
                            })
                        });
                    let task = if classifier {
                        Task::Classify
                    } else {
                        Task::Embed
                    };
                    (Format::Safetensors, Family::Bert, task, w)
                }
                Some("gpt2") => (Format::Safetensors, Family::Gpt2, Task::Generate, w),
                Some("vit") => (Format::Safetensors, Family::Vit, Task::ClassifyImage, w),
                Some("resnet") => (Format::Safetensors, Family::Resnet, Task::ClassifyImage, w),
                Some("clip") => (Format::Safetensors, Family::Clip, Task::ZeroShot, w),
                Some("whisper") => (Format::Safetensors, Family::Whisper, Task::Transcribe, w),
                Some(other) => {
                    return Err(RuntimeError::Unsupported(format!(
                        "{}: model_type {other:?}; supported: {SUPPORTED}",
                        config_path.display()
                    )));
                }
                None => {
                    return Err(RuntimeError::Unsupported(format!(
                        "{}: no config.json with a model_type next to {}; supported: {SUPPORTED}",
                        dir.display(),
                        w.display()
                    )));
                }
            }
        } else {
            return Err(RuntimeError::Unsupported(format!(
                "{}: no .safetensors, .gguf or .onnx weights; supported: {SUPPORTED}",
                path.display()
            )));
        };

        let task = match task {
            None => default_task,
            Some(t) if t == default_task => t,
            Some(Task::Classify) if family == Family::Bert => Task::Classify,
            Some(Task::Embed) if family == Family::Bert => Task::Embed,
            Some(Task::Embed) if family == Family::Clip => Task::Embed,
            Some(t) => {
                return Err(RuntimeError::Unsupported(format!(
                    "{}: a {family:?} model cannot do task {t} (it does {default_task})",
                    path.display()
                )));
            }
        };
        if matches!(
            family,
            Family::Bert | Family::Gpt2 | Family::OnnxText | Family::Clip | Family::Whisper
        ) && tokenizer.is_none()
        {
            return Err(RuntimeError::InvalidModel(format!(
                "{}: a text model needs tokenizer.json",
                dir.display()
            )));
        }
        Ok(ModelSpec {
            dir,
            format,
            family,
            task,
            weights,
            tokenizer,
            config,
            labels,
        })
    }
}

/// A positive integer field of `config.json`, or an error naming it.
pub(crate) fn config_usize(config: &serde_json::Value, key: &str) -> Result<usize> {
    config
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| {
            RuntimeError::InvalidModel(format!(
                "config.json: {key} missing or not a positive integer"
            ))
        })
}

/// The one file of a kind, none, or an error when there are several (which one to run would
/// be a guess).
fn single(files: &[PathBuf], what: &str) -> Result<Option<PathBuf>> {
    match files {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(RuntimeError::Unsupported(format!(
            "{} .{what} files ({}); point at one file",
            many.len(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `id2label` as a dense list (missing indices get `LABEL_i`).
fn labels_of(config: &serde_json::Value) -> Vec<String> {
    let Some(map) = config.get("id2label").and_then(|m| m.as_object()) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    pairs.sort();
    let n = pairs.last().map_or(0, |(i, _)| i + 1);
    if n > 100_000 {
        return Vec::new();
    }
    let mut labels: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
    for (i, l) in pairs {
        labels[i] = l;
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).expect("write");
    }

    #[test]
    fn detects_bert_embed_and_classify() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| RuntimeError::io("tmp", e))?;
        write(d.path(), "model.safetensors", "");
        write(d.path(), "tokenizer.json", "{}");
        write(
            d.path(),
            "config.json",
            r#"{"model_type":"bert","architectures":["BertModel"]}"#,
        );
        let s = ModelSpec::detect(d.path())?;
        assert_eq!(
            (s.family, s.task, s.format),
            (Family::Bert, Task::Embed, Format::Safetensors)
        );
        write(
            d.path(),
            "config.json",
            r#"{"model_type":"bert","architectures":["BertForSequenceClassification"],"id2label":{"1":"POSITIVE","0":"NEGATIVE"}}"#,
        );
        let s = ModelSpec::detect(d.path())?;
        assert_eq!(s.task, Task::Classify);
        assert_eq!(s.labels, vec!["NEGATIVE", "POSITIVE"]);
        let e = ModelSpec::detect_with(d.path(), Some(Task::Generate))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("cannot do task generate"), "{e}");
        Ok(())
    }

    #[test]
    fn detects_resnet_and_clip() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| RuntimeError::io("tmp", e))?;
        write(d.path(), "model.safetensors", "");
        write(
            d.path(),
            "config.json",
            r#"{"model_type":"resnet","id2label":{"0":"cat","1":"dog"}}"#,
        );
        let s = ModelSpec::detect(d.path())?;
        assert_eq!((s.family, s.task), (Family::Resnet, Task::ClassifyImage));
        assert_eq!(s.labels, vec!["cat", "dog"]);
        let e = ModelSpec::detect_with(d.path(), Some(Task::Embed))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("cannot do task embed"), "{e}");

        write(d.path(), "config.json", r#"{"model_type":"clip"}"#);
        let e = ModelSpec::detect(d.path())
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("needs tokenizer.json"), "{e}");
        write(d.path(), "tokenizer.json", "{}");
        let s = ModelSpec::detect(d.path())?;
        assert_eq!((s.family, s.task), (Family::Clip, Task::ZeroShot));
        let s = ModelSpec::detect_with(d.path(), Some(Task::Embed))?;
        assert_eq!(s.task, Task::Embed);
        let e = ModelSpec::detect_with(d.path(), Some(Task::ClassifyImage))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("cannot do task classify-image"), "{e}");
        Ok(())
    }

    #[test]
    fn zero_shot_task_names() -> Result<()> {
        assert_eq!("zero-shot".parse::<Task>()?, Task::ZeroShot);
        assert_eq!(
            "zero-shot-image-classification".parse::<Task>()?,
            Task::ZeroShot
        );
        assert_eq!(Task::ZeroShot.to_string(), "zero-shot");
        let e = "zeroshot"
            .parse::<Task>()
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("zero-shot"), "{e}");
        Ok(())
    }

    #[test]
    fn unsupported_models_are_refused_with_the_list() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| RuntimeError::io("tmp", e))?;
        write(d.path(), "model.safetensors", "");
        write(d.path(), "config.json", r#"{"model_type":"t5"}"#);
        let e = ModelSpec::detect(d.path())
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("\"t5\"") && e.contains("supported:"), "{e}");
        let empty = tempfile::tempdir().map_err(|e| RuntimeError::io("tmp", e))?;
        let e = ModelSpec::detect(empty.path())
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("no .safetensors, .gguf or .onnx"), "{e}");
        let e = ModelSpec::detect(&empty.path().join("missing"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("missing"), "{e}");
        Ok(())
    }

    #[test]
    fn onnx_task_follows_the_tokenizer_and_two_graphs_are_ambiguous() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| RuntimeError::io("tmp", e))?;
        write(d.path(), "model.onnx", "");
        assert_eq!(ModelSpec::detect(d.path())?.task, Task::ClassifyImage);
        write(d.path(), "tokenizer.json", "{}");
        assert_eq!(ModelSpec::detect(d.path())?.task, Task::Embed);
        write(d.path(), "other.onnx", "");
        let e = ModelSpec::detect(d.path())
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("2 .onnx files"), "{e}");
        assert_eq!(
            ModelSpec::detect(&d.path().join("other.onnx"))?.format,
            Format::Onnx
        );
        Ok(())
    }
}
