//! Where blocks come from, and getting one block from one place.

use std::fmt;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use cid::Cid;
use lattice_store::MAX_BLOCK;
use reqwest::Url;

use crate::FetchError;

/// Prefix that marks a Kubo RPC endpoint in [`Source`]'s string form.
const KUBO_PREFIX: &str = "kubo+";

/// Media type of a single raw block on a trustless gateway.
const RAW_BLOCK: &str = "application/vnd.ipld.raw";

/// At most this many characters of an error response body are quoted.
const ERROR_BODY_CHARS: usize = 200;

/// A place blocks can be fetched from.
///
/// The string form ([`FromStr`], [`fmt::Display`]) is:
/// - `http://host:port` or `https://host[/prefix]`: an IPFS trustless
///   gateway (another Lattice node, or any public gateway such as
///   `https://ipfs.io`); one block per `GET {base}/ipfs/{cid}?format=raw`.
/// - `kubo+http://host:port` (or `kubo+https://…`): a Kubo RPC endpoint
///   (port 5001 by default in Kubo); one block per
///   `POST {base}/api/v0/block/get?arg={cid}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Base URL of an IPFS trustless gateway.
    Gateway(Url),
    /// Base URL of a Kubo RPC API (without `/api/v0`).
    KuboRpc(Url),
}

impl FromStr for Source {
    type Err = FetchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| FetchError::InvalidSource {
            input: s.to_string(),
            reason,
        };
        let (kubo, rest) = match s.strip_prefix(KUBO_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let url = Url::parse(rest).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme {:?} is not http or https (a Kubo RPC endpoint is written kubo+http://host:port)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
            return Err(bad("the URL has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL takes no query or fragment".into()));
        }
        Ok(if kubo {
            Source::KuboRpc(url)
        } else {
            Source::Gateway(url)
        })
    }
}

/// The string form; a password in the URL is shown as `***`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, url) = match self {
            Source::Gateway(url) => ("", url),
            Source::KuboRpc(url) => (KUBO_PREFIX, url),
        };
        if url.password().is_some() {
            let mut shown = url.clone();
            // Cannot fail: the URL already has a password, hence a host.
            let _ = shown.set_password(Some("***"));
            write!(f, "{prefix}{shown}")
        } else {
            write!(f, "{prefix}{url}")
        }
    }
}

/// Why one request for one block did not yield it.
#[derive(Debug)]
pub(crate) enum Miss {
    /// The source could not be reached, answered with an error status or
    /// broke off: worth asking again later.
    Unavailable(String),
    /// The source sent a block that is not the one asked for (wrong hash,
    /// over the size limit): it is refused and the source is not asked for
    /// this block again.
    Bad(String),
}

impl Source {
    /// The request URL for block `cid`.
    fn url(&self, cid: &Cid) -> Result<Url, String> {
        let (base, segments, query): (&Url, &[&str], (&str, String)) = match self {
            Source::Gateway(base) => (base, &["ipfs"], ("format", "raw".into())),
            Source::KuboRpc(base) => (
                base,
                &["api", "v0", "block", "get"],
                ("arg", cid.to_string()),
            ),
        };
        let mut url = base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| format!("{base} cannot be used as a base URL"))?;
            path.pop_if_empty().extend(segments);
            if let Source::Gateway(_) = self {
                path.push(&cid.to_string());
            }
        }
        url.set_fragment(None);
        url.query_pairs_mut().clear().append_pair(query.0, &query.1);
        Ok(url)
    }

    /// Asks this source for block `cid` once and returns the body, at most
    /// [`MAX_BLOCK`] bytes. The body is **not** checked against the CID here.
    pub(crate) async fn get(&self, client: &reqwest::Client, cid: &Cid) -> Result<Bytes, Miss> {
        let url = self.url(cid).map_err(Miss::Unavailable)?;
        let request = match self {
            Source::Gateway(_) => client.get(url).header(reqwest::header::ACCEPT, RAW_BLOCK),
            Source::KuboRpc(_) => client.post(url),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| Miss::Unavailable(error_chain(&e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(Miss::Unavailable(status_message(status, response).await));
        }
        let too_big = |len: u64| {
            Miss::Bad(format!(
                "sent over {len} bytes, more than the {MAX_BLOCK}-byte block limit"
            ))
        };
        if let Some(len) = response.content_length()
            && len > MAX_BLOCK as u64
        {
            return Err(too_big(len));
        }
        let hint = response.content_length().map_or(64 * 1024, |l| l as usize);
        let mut body = BytesMut::with_capacity(hint.min(MAX_BLOCK));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Miss::Unavailable(format!("reading the body: {}", error_chain(&e))))?
        {
            if body.len() + chunk.len() > MAX_BLOCK {
                return Err(too_big((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// `HTTP 404 Not Found: <start of the body>`, reading at most a little of it.
async fn status_message(status: reqwest::StatusCode, mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_BODY_CHARS)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

/// An error and its causes, `outer: inner: innermost`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let s = inner.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = inner.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> Cid {
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .expect("valid CID")
    }

    #[test]
    fn parses_both_kinds() {
        let g: Source = "http://127.0.0.1:8080".parse().expect("gateway");
        assert!(matches!(g, Source::Gateway(_)));
        assert_eq!(g.to_string(), "http://127.0.0.1:8080/");
        let k: Source = "kubo+http://127.0.0.1:5001".parse().expect("kubo");
        assert!(matches!(k, Source::KuboRpc(_)));
        assert_eq!(k.to_string(), "kubo+http://127.0.0.1:5001/");
        assert_eq!(k.to_string().parse::<Source>().expect("round trip"), k);
        let s: Source = "https://ipfs.io".parse().expect("https gateway");
        assert!(matches!(s, Source::Gateway(_)));
        let p: Source = "kubo+https://user:secret@node:5001"
            .parse()
            .expect("kubo with auth");
        assert_eq!(p.to_string(), "kubo+https://user:***@node:5001/");
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://host",
            "kubo:http://host:5001",
            "kubo+ftp://host",
            "http://host/?x=1",
            "mailto:someone@example.com",
        ] {
            let err = bad.parse::<Source>().expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn request_urls() {
        let cid = cid();
        let g: Source = "http://h:1".parse().expect("gateway");
        assert_eq!(
            g.url(&cid).expect("url").as_str(),
            format!("http://h:1/ipfs/{cid}?format=raw")
        );
        let g: Source = "https://h/prefix/".parse().expect("gateway");
        assert_eq!(
            g.url(&cid).expect("url").as_str(),
            format!("https://h/prefix/ipfs/{cid}?format=raw")
        );
        let k: Source = "kubo+http://h:5001".parse().expect("kubo");
        assert_eq!(
            k.url(&cid).expect("url").as_str(),
            format!("http://h:5001/api/v0/block/get?arg={cid}")
        );
    }
}
