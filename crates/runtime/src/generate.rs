//! Text generation shared by the decoder families (GGUF llama, GPT-2): parameters, the
//! sampling step and the result.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// How to generate. `temperature == 0` is greedy decoding (the deterministic default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    /// Most new tokens to produce.
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling threshold (used only when `temperature > 0`).
    pub top_p: Option<f64>,
    /// Top-k sampling (used only when `temperature > 0`).
    pub top_k: Option<usize>,
    /// Seed of the sampler, so sampled generation is reproducible.
    pub seed: u64,
    /// Generation stops after any of these strings appears in the output (it is cut off).
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GenerateParams {
    /// Checks the values, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(RuntimeError::InvalidInput(
                "max_tokens must be at least 1".into(),
            ));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(RuntimeError::InvalidInput(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(RuntimeError::InvalidInput(format!(
                "top_p must be in (0, 1], got {p}"
            )));
        }
        if self.top_k == Some(0) {
            return Err(RuntimeError::InvalidInput(
                "top_k must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The sampler these parameters describe.
    pub fn sampler(&self) -> LogitsProcessor {
        let sampling = if self.temperature == 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = self.temperature;
            match (self.top_k, self.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_tokens` new tokens were produced.
    Length,
    /// The model produced an end-of-sequence token.
    EndOfSequence,
    /// One of the stop strings appeared.
    StopString,
    /// The context window is full.
    ContextFull,
}

/// The result of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The new text (without the prompt; cut before a stop string).
    pub text: String,
    /// The new token ids.
    pub tokens: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Prompt processing time, milliseconds.
    pub prompt_ms: f64,
    /// New tokens per second after the prompt (decode speed).
    pub tokens_per_s: f64,
}

/// Picks the next token from the last position's logits (shape `[vocab]`, any float dtype).
pub fn sample(sampler: &mut LogitsProcessor, logits: &Tensor) -> Result<u32> {
    let logits = logits.to_dtype(candle_core::DType::F32)?;
    Ok(sampler.sample(&logits)?)
}

/// Decode speed: tokens produced after the prompt's forward pass (`steps`) per second;
/// 0 when there were none.
pub fn tokens_per_s(steps: usize, seconds: f64) -> f64 {
    if steps > 0 && seconds > 0.0 {
        steps as f64 / seconds
    } else {
        0.0
    }
}

/// If `text` contains a stop string, the byte offset where the earliest one starts.
pub fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let p = GenerateParams {
            temperature: -1.0,
            ..Default::default()
        };
        assert!(
            p.validate()
                .expect_err("must fail")
                .to_string()
                .contains("temperature")
        );
        let p = GenerateParams {
            top_p: Some(1.5),
            ..Default::default()
        };
        assert!(
            p.validate()
                .expect_err("must fail")
                .to_string()
                .contains("top_p")
        );
        let p = GenerateParams {
            max_tokens: 0,
            ..Default::default()
        };
        assert!(
            p.validate()
                .expect_err("must fail")
                .to_string()
                .contains("max_tokens")
        );
    }

    #[test]
    fn earliest_stop_string_wins() {
        let stop = vec!["</s>".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop("ab\n\ncd</s>", &stop), Some(2));
        assert_eq!(find_stop("abcd", &stop), None);
    }
}
