//! Tokenization for text models: `tokenizer.json` through the `tokenizers` crate, batches
//! padded to their longest item (never to a fixed length), truncated to what the model
//! accepts.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Result, RuntimeError};

/// A tokenizer set up for batches.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

/// Token ids of a batch, row-major `[batch, len]`, padded to the longest item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Items in the batch.
    pub batch: usize,
    /// Tokens per item after padding.
    pub len: usize,
    /// Token ids.
    pub ids: Vec<u32>,
    /// Segment (token type) ids.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
}

impl TokenBatch {
    /// Whether no item is padded (the mask is all ones).
    pub fn unpadded(&self) -> bool {
        self.mask.iter().all(|&m| m == 1)
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`. Its own truncation length is kept when set, capped at
    /// `model_max_len` (the model's position limit); its padding is replaced by
    /// pad-to-longest with its pad token.
    pub fn from_file(path: &Path, model_max_len: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| RuntimeError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(inner, model_max_len)
    }

    /// Sets up an already loaded tokenizer (see [`TextTokenizer::from_file`]).
    pub fn new(mut inner: Tokenizer, model_max_len: usize) -> Result<Self> {
        let max_len = inner
            .get_truncation()
            .map_or(model_max_len, |t| t.max_length.min(model_max_len));
        let pad = inner.get_padding().cloned().unwrap_or_else(|| {
            let (pad_token, pad_id) = ["[PAD]", "<pad>", "<|endoftext|>"]
                .iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)))
                .unwrap_or_else(|| ("[PAD]".to_string(), 0));
            PaddingParams {
                pad_token,
                pad_id,
                ..Default::default()
            }
        });
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_to_multiple_of: None,
            ..pad
        }));
        let truncation = TruncationParams {
            max_length: max_len,
            ..inner.get_truncation().cloned().unwrap_or_default()
        };
        inner
            .with_truncation(Some(truncation))
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        Ok(Self { inner, max_len })
    }

    /// Most tokens per item (longer texts are truncated).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Tokenizes a batch (with the special tokens the model expects), padded to its longest.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TokenBatch> {
        if texts.is_empty() {
            return Err(RuntimeError::InvalidInput("empty batch".into()));
        }
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut out = TokenBatch {
            batch: texts.len(),
            len,
            ids: Vec::with_capacity(texts.len() * len),
            type_ids: Vec::with_capacity(texts.len() * len),
            mask: Vec::with_capacity(texts.len() * len),
        };
        for e in &encodings {
            if e.len() != len {
                return Err(RuntimeError::Tokenizer(format!(
                    "padding produced {} tokens, expected {len}",
                    e.len()
                )));
            }
            out.ids.extend_from_slice(e.get_ids());
            out.type_ids.extend_from_slice(e.get_type_ids());
            out.mask.extend_from_slice(e.get_attention_mask());
        }
        Ok(out)
    }
}
