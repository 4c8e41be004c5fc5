//! Small parsing and escaping helpers shared by the gateway and the RPC API.

use axum::http::{StatusCode, Uri};
use cid::Cid;

use crate::error::Error;

/// The router's answer to paths it does not serve.
pub(crate) async fn not_found(uri: Uri) -> Error {
    Error::new(
        StatusCode::NOT_FOUND,
        format!(
            "404 page not found: {} (this node serves /ipfs/{{cid}} and /api/v0/)",
            uri.path()
        ),
    )
}

/// Decodes `%XX` escapes; with `plus_is_space`, also `+` as a space (Go's
/// `url.QueryUnescape`, which kubo applies to multipart file names). Fails
/// on a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("malformed percent-escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Percent-encodes one path segment for use in a URL.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Parses a CID string, refusing absurdly long input before parsing it.
pub(crate) fn parse_cid(s: &str, max_len: usize) -> Result<Cid, Error> {
    if s.is_empty() {
        return Err(Error::bad_request("missing CID"));
    }
    if s.len() > max_len {
        return Err(Error::bad_request(format!(
            "invalid CID: {} characters is longer than the {max_len}-character limit",
            s.len()
        )));
    }
    Cid::try_from(s).map_err(|e| Error::bad_request(format!("invalid CID {s:?}: {e}")))
}

/// Checks the segments of a content path: no `.` or `..`, no empty or
/// slash-bearing names after decoding. `segments` are already decoded.
pub(crate) fn check_segments(segments: &[String]) -> Result<(), Error> {
    for s in segments {
        if s == "." || s == ".." {
            return Err(Error::bad_request(format!(
                "path segment {s:?} is not allowed: content paths cannot walk up or stay in place"
            )));
        }
        if s.contains('/') || s.contains('\0') {
            return Err(Error::bad_request(format!(
                "path segment {s:?} contains an encoded '/' or NUL, which no UnixFS name can hold"
            )));
        }
    }
    Ok(())
}

/// A query parameter read as kubo reads booleans (Go's `strconv.ParseBool`;
/// a bare `?flag` counts as true).
pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::bad_request(format!(
            "option {name:?}: {v:?} is not a boolean"
        ))),
    }
}

/// Query parameters in request order, repeated keys kept.
#[derive(Debug, Default)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    /// The last value of `name`, as kubo takes repeated options.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean option with its default.
    pub(crate) fn flag(&self, name: &str, default: bool) -> Result<bool, Error> {
        self.get(name).map_or(Ok(default), |v| parse_bool(name, v))
    }

    /// An unsigned integer option.
    pub(crate) fn uint(&self, name: &str) -> Result<Option<u64>, Error> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::bad_request(format!(
                        "option {name:?}: {v:?} is not a non-negative integer"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc", false).as_deref(), Ok("a b/c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Ok("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Ok("a b"));
        assert!(percent_decode("%zz", false).is_err());
        assert!(percent_decode("%2", false).is_err());
        assert!(percent_decode("%ff", false).is_err());
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("a b/c?.txt"), "a%20b%2Fc%3F.txt");
        assert_eq!(
            percent_decode(&encode_segment("ü ß#%"), false).as_deref(),
            Ok("ü ß#%")
        );
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
