//! The wire form of one inference: a [`Request`] document (texts, an optional file, generation
//! settings) that becomes the model's [`Input`]s once its task is known, and the canonical
//! bytes of what came out ([`outputs_document`]).
//!
//! Requests travel between processes and are hashed (the hash is what a paid request commits
//! to on chain), so they are plain JSON with the file in base64; outputs are hashed into signed
//! receipts, so timings (which differ between runs) are zeroed in their canonical form and the
//! rest is exactly what [`Output`]'s serde gives, floats written shortest-round-trip.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, RuntimeError};
use crate::generate::GenerateParams;
use crate::model::{Input, Output};
use crate::spec::{Family, Task};

/// One inference request, independent of the model it is for.
///
/// - `inputs`: texts to embed or classify, prompts to continue (several = one batch), or the
///   candidate labels of a zero-shot image model;
/// - `file`: an image (image classifiers, CLIP), a WAV file (speech), or UTF-8 text;
/// - `params`/`chat`: generation settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Texts (see the type's docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// A file's bytes (base64 in JSON).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_b64",
        deserialize_with = "de_b64"
    )]
    pub file: Option<Vec<u8>>,
    /// The task to run; `None` = what the model is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Generation settings (generation only).
    #[serde(default)]
    pub params: GenerateParams,
    /// Wrap each prompt in the model's chat template (generation only).
    #[serde(default)]
    pub chat: bool,
}

fn ser_b64<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => s.serialize_str(&BASE64.encode(bytes)),
        None => s.serialize_none(),
    }
}

fn de_b64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<u8>>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| BASE64.decode(t.as_bytes()))
        .transpose()
        .map_err(|e| serde::de::Error::custom(format!("file is not valid base64: {e}")))
}

impl Request {
    /// The document's bytes (compact JSON; what is hashed and stored).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a request document.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| RuntimeError::InvalidInput(format!("not a request document: {e}")))
    }

    /// The model inputs this request means for a model of `family` doing `task` (as
    /// `lattice model run` builds them from `--input`/`--file`).
    pub fn inputs_for(&self, task: Task, family: Family) -> Result<Vec<Input>> {
        let bad = |m: &str| Err(RuntimeError::InvalidInput(m.to_string()));
        // Images: what image classifiers and zero-shot models take, and CLIP embeds.
        let image_file =
            matches!(task, Task::ClassifyImage | Task::ZeroShot) || family == Family::Clip;
        if self.file.is_some() && !self.inputs.is_empty() && task != Task::ZeroShot {
            return bad(
                "pass texts or a file, not both (only zero-shot models take an image and texts)",
            );
        }
        let texts: Vec<String> =
            match &self.file {
                Some(f) if !image_file && task != Task::Transcribe => {
                    vec![String::from_utf8(f.clone()).map_err(|_| {
                        RuntimeError::InvalidInput("the file is not UTF-8 text".into())
                    })?]
                }
                _ => self.inputs.clone(),
            };
        let inputs = match task {
            Task::ClassifyImage => {
                let Some(f) = &self.file else {
                    return bad("this model classifies images: pass an image file");
                };
                vec![Input::Image { bytes: f.clone() }]
            }
            Task::ZeroShot => {
                let Some(f) = &self.file else {
                    return bad(
                        "this model scores an image against texts: pass an image file and the texts",
                    );
                };
                if texts.is_empty() {
                    return bad("pass the candidate labels as texts (one per label)");
                }
                vec![Input::ImageTexts {
                    bytes: f.clone(),
                    texts,
                }]
            }
            Task::Transcribe => {
                let Some(f) = &self.file else {
                    return bad("this model transcribes speech: pass a WAV file");
                };
                vec![Input::Audio { bytes: f.clone() }]
            }
            Task::Generate => texts
                .into_iter()
                .map(|text| Input::Prompt {
                    text,
                    params: self.params.clone(),
                    chat: self.chat,
                })
                .collect(),
            Task::Embed | Task::Classify => match self.file.as_ref().filter(|_| image_file) {
                // CLIP embeds an image given as the file.
                Some(f) => vec![Input::Image { bytes: f.clone() }],
                None => texts.into_iter().map(|text| Input::Text { text }).collect(),
            },
        };
        if inputs.is_empty() {
            return bad("the request has no input: pass at least one text or a file");
        }
        Ok(inputs)
    }
}

/// The canonical bytes of a request's outputs: a JSON array of [`Output`]s with the timings
/// of generations (`prompt_ms`, `tokens_per_s`) set to zero, so that two runs that computed
/// the same thing give the same bytes.
pub fn outputs_document(outputs: &[Output]) -> Vec<u8> {
    let canonical: Vec<Output> = outputs
        .iter()
        .cloned()
        .map(|mut o| {
            if let Output::Generated { generation } = &mut o {
                generation.prompt_ms = 0.0;
                generation.tokens_per_s = 0.0;
            }
            o
        })
        .collect();
    serde_json::to_vec(&canonical).unwrap_or_default()
}

/// Parses [`outputs_document`]'s bytes.
pub fn parse_outputs(bytes: &[u8]) -> Result<Vec<Output>> {
    serde_json::from_slice(bytes)
        .map_err(|e| RuntimeError::InvalidInput(format!("not an outputs document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_documents_round_trip_and_refuse_junk() {
        let r = Request {
            inputs: vec!["a cat".into(), "a dog".into()],
            file: Some(vec![0, 159, 146, 150, 255]),
            task: Some(Task::ZeroShot),
            ..Default::default()
        };
        let bytes = r.to_bytes();
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.contains("\"file\":\"AJ+Slv8=\""), "{text}");
        assert_eq!(Request::from_bytes(&bytes).expect("parse"), r);
        let err = Request::from_bytes(b"{\"inputs\":[\"x\"],\"file\":\"***\"}").expect_err("b64");
        assert!(err.to_string().contains("base64"), "{err}");
        let err = Request::from_bytes(b"{\"input\":[\"x\"]}").expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(Request::from_bytes(b"\xff").is_err());
    }

    #[test]
    fn inputs_follow_the_task() {
        let texts = Request {
            inputs: vec!["hi".into()],
            ..Default::default()
        };
        assert_eq!(
            texts.inputs_for(Task::Embed, Family::Bert).expect("embed"),
            vec![Input::Text { text: "hi".into() }]
        );
        assert!(matches!(
            &texts.inputs_for(Task::Generate, Family::Gpt2).expect("gen")[..],
            [Input::Prompt { text, chat: false, .. }] if text == "hi"
        ));
        let err = texts
            .inputs_for(Task::Transcribe, Family::Whisper)
            .expect_err("no wav");
        assert!(err.to_string().contains("WAV"), "{err}");
        let err = Request::default()
            .inputs_for(Task::Embed, Family::Bert)
            .expect_err("empty");
        assert!(err.to_string().contains("no input"), "{err}");
        let both = Request {
            inputs: vec!["x".into()],
            file: Some(b"y".to_vec()),
            ..Default::default()
        };
        assert!(both.inputs_for(Task::Classify, Family::Bert).is_err());
        let text_file = Request {
            file: Some(b"from a file".to_vec()),
            ..Default::default()
        };
        assert_eq!(
            text_file
                .inputs_for(Task::Classify, Family::Bert)
                .expect("text file"),
            vec![Input::Text {
                text: "from a file".into()
            }]
        );
    }

    #[test]
    fn output_documents_drop_timings_only() {
        use crate::generate::{Generation, StopReason};
        let run = |ms: f64| Output::Generated {
            generation: Generation {
                text: "ok".into(),
                tokens: vec![1, 2],
                prompt_tokens: 3,
                stop_reason: StopReason::Length,
                prompt_ms: ms,
                tokens_per_s: ms * 2.0,
            },
        };
        assert_eq!(outputs_document(&[run(1.5)]), outputs_document(&[run(7.0)]));
        let other = Output::Embedding {
            vector: vec![0.1, -2.5e-8],
        };
        let doc = outputs_document(std::slice::from_ref(&other));
        assert_eq!(parse_outputs(&doc).expect("parse"), vec![other]);
        assert_ne!(
            outputs_document(&[Output::Embedding { vector: vec![0.1] }]),
            outputs_document(&[Output::Embedding {
                vector: vec![f32::from_bits(0.1f32.to_bits() + 1)]
            }])
        );
    }
}
