//! Positional parameters, parsed one at a time so that errors name the
//! argument (geth's messages: "missing value for required argument 0",
//! "invalid argument 1: …", "too many arguments, want at most 2").

use jsonrpsee::types::Params;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{RpcResult, invalid_params};

/// The positional arguments of one call.
#[derive(Debug)]
pub(crate) struct Args(Vec<Value>);

impl Args {
    /// Parses `params` (absent, `null` or an array) and checks there are at
    /// most `max` of them.
    pub(crate) fn parse(params: &Params<'_>, max: usize) -> RpcResult<Self> {
        let args = match params.as_str() {
            None => Vec::new(),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(v)) => v,
                Ok(Value::Null) => Vec::new(),
                Ok(_) => return Err(invalid_params("non-array args")),
                Err(e) => return Err(invalid_params(e)),
            },
        };
        if args.len() > max {
            return Err(invalid_params(format!(
                "too many arguments, want at most {max}"
            )));
        }
        Ok(Self(args))
    }

    /// Argument `i`, which must be present and not `null`.
    pub(crate) fn req<T: DeserializeOwned>(&self, i: usize) -> RpcResult<T> {
        self.opt(i)?
            .ok_or_else(|| invalid_params(format!("missing value for required argument {i}")))
    }

    /// Argument `i`; absent and `null` are `None`.
    pub(crate) fn opt<T: DeserializeOwned>(&self, i: usize) -> RpcResult<Option<T>> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| invalid_params(format!("invalid argument {i}: {e}"))),
        }
    }

    /// Argument `i` as a `u64` given as a hex quantity, a decimal string or a
    /// JSON number (geth's `HexOrDecimal64`).
    pub(crate) fn req_u64_flexible(&self, i: usize) -> RpcResult<u64> {
        let bad =
            |what: &dyn std::fmt::Display| invalid_params(format!("invalid argument {i}: {what}"));
        match self.0.get(i) {
            None | Some(Value::Null) => Err(invalid_params(format!(
                "missing value for required argument {i}"
            ))),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad(&"not a u64 number")),
            Some(Value::String(s)) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).map_err(|e| bad(&e)),
                None => s.parse::<u64>().map_err(|e| bad(&e)),
            },
            Some(_) => Err(bad(&"expected a number or a hex string")),
        }
    }
}
