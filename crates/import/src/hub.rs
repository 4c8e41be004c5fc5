//! The Hugging Face side: the local hub cache (`huggingface_hub`'s layout) and downloads
//! from a hub endpoint into that cache.
//!
//! Cache layout, as `huggingface_hub` writes it:
//!
//! ```text
//! <cache>/models--<org>--<name>/
//!     blobs/<etag>                 file contents, named by ETag (sha256 for LFS files)
//!     blobs/<etag>.incomplete      a download in progress (resumed with a Range request)
//!     snapshots/<commit>/<file>    symlink to ../../blobs/<etag>
//!     refs/<branch or tag>         the commit it points at
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap};
use sha2::{Digest, Sha256};

use crate::error::{ImportError, Result, io};
use crate::select::select;
use crate::{Observer, Quantization};

/// Where the hub and its cache are.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The hub's base URL (`$HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// `$HF_TOKEN`, sent as `Authorization: Bearer …` to the endpoint's host.
    pub token: Option<String>,
    /// The hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub cache: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl HubConfig {
    /// The configuration `huggingface_hub` would use, from the environment.
    pub fn from_env() -> Self {
        let cache = if let Some(c) = env("HF_HUB_CACHE") {
            PathBuf::from(c)
        } else if let Some(h) = env("HF_HOME") {
            PathBuf::from(h).join("hub")
        } else {
            let home = env("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache/huggingface/hub")
        };
        HubConfig {
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".to_string())
                .trim_end_matches('/')
                .to_string(),
            token: env("HF_TOKEN"),
            cache,
        }
    }

    /// `<cache>/models--org--name`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The snapshot folder and commit of `repo` at `revision` (a branch, tag or commit
    /// hash) in the cache, or `None` when the cache does not have it.
    pub fn resolve_cached(&self, repo: &str, revision: &str) -> Result<Option<(PathBuf, String)>> {
        check_revision(revision)?;
        let dir = self.repo_dir(repo);
        let refs = dir.join("refs").join(revision);
        let commit = if refs.is_file() {
            std::fs::read_to_string(&refs)
                .map_err(io(&refs))?
                .trim()
                .to_string()
        } else if is_commit(revision) {
            revision.to_string()
        } else {
            return Ok(None);
        };
        if !is_commit(&commit) {
            return Err(ImportError::Source(format!(
                "{}: not a commit hash: {commit:?}",
                refs.display()
            )));
        }
        let snapshot = dir.join("snapshots").join(&commit);
        Ok(snapshot.is_dir().then_some((snapshot, commit)))
    }

    /// Downloads the files `repo` needs at `revision` (see [`crate::select`]) into the
    /// cache, resuming partial downloads and checking LFS files against their sha256, and
    /// returns the snapshot folder and commit. The ref is written last, so an interrupted
    /// download is not taken for a cached one.
    pub fn download(
        &self,
        repo: &str,
        revision: &str,
        observer: &dyn Observer,
    ) -> Result<(PathBuf, String)> {
        self.download_for(repo, revision, None, observer)
    }

    /// [`HubConfig::download`] for an import quantized as `quantize` says: the model is
    /// judged (before any weights are downloaded) by what `--quantize` converts rather than
    /// by what the runtime runs as it is.
    pub(crate) fn download_for(
        &self,
        repo: &str,
        revision: &str,
        quantize: Option<Quantization>,
        observer: &dyn Observer,
    ) -> Result<(PathBuf, String)> {
        check_revision(revision)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ImportError::Hub(format!("starting the HTTP client: {e}")))?;
        rt.block_on(self.download_async(repo, revision, quantize, observer))
    }

    /// An HTTP client; `follow`: whether it follows redirects (the content may sit behind
    /// several; reqwest drops `Authorization` when one leaves the host).
    fn client(&self, follow: bool) -> Result<reqwest::Client> {
        let policy = if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("lattice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImportError::Hub(format!("HTTP client: {e}")))
    }

    /// A request with the token when it goes to the endpoint's host.
    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let req = client.request(method, url);
        match &self.token {
            Some(t) if same_host(&self.endpoint, url) => req.bearer_auth(t),
            _ => req,
        }
    }

    async fn download_async(
        &self,
        repo: &str,
        revision: &str,
        quantize: Option<Quantization>,
        observer: &dyn Observer,
    ) -> Result<(PathBuf, String)> {
        let client = self.client(false)?;
        let downloads = self.client(true)?;
        let api = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            revision.replace('/', "%2F")
        );
        let resp = self
            .request(&client, reqwest::Method::GET, &api)
            .send()
            .await
            .map_err(|e| ImportError::Hub(format!("{api}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ImportError::Hub(match status.as_u16() {
                401 | 403 | 404 => format!(
                    "{repo} at revision {revision}: not found on {} (HTTP {status}); \
                     private and gated repositories need HF_TOKEN",
                    self.endpoint
                ),
                _ => format!("{api}: HTTP {status}"),
            }));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| ImportError::Hub(format!("{api}: {e}")))?;
        let info: RepoInfo = serde_json::from_slice(&body)
            .map_err(|e| ImportError::Hub(format!("{api}: not the repository JSON: {e}")))?;
        if !is_commit(&info.sha) {
            return Err(ImportError::Hub(format!(
                "{api}: sha {:?} is not a commit hash",
                info.sha
            )));
        }
        let all: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let files = select(&all);
        if files.is_empty() {
            return Err(ImportError::Unsupported(format!(
                "{repo}: no model files among {} files in the repository",
                all.len()
            )));
        }
        let dir = self.repo_dir(repo);
        let snapshot = dir.join("snapshots").join(&info.sha);
        let blobs = dir.join("blobs");
        for d in [&snapshot, &blobs] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        // Metadata first: the runtime judges the model from config.json and the file names
        // before any weights are downloaded.
        let (weights, meta): (Vec<&String>, Vec<&String>) =
            files.iter().partition(|f| is_weights(f));
        let mut checked = false;
        for file in meta.into_iter().chain(weights) {
            if !checked && is_weights(file) {
                crate::precheck(&snapshot, &files, quantize)?;
                checked = true;
            }
            safe_name(file)?;
            let link = snapshot.join(file);
            if link.is_file() {
                continue;
            }
            // Resolve by the commit, so every file comes from the same one.
            let url = format!("{}/{repo}/resolve/{}/{file}", self.endpoint, info.sha);
            let meta = self.file_meta(&client, &url, file).await?;
            let blob = blobs.join(&meta.etag);
            if !blob.is_file() {
                self.fetch_blob(&downloads, file, &meta, &blob, observer)
                    .await?;
            }
            let target = PathBuf::from("../../blobs").join(&meta.etag);
            let tmp = snapshot.join(format!(".{file}.lattice-tmp"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &link).map_err(io(&link))?;
        }
        if !checked {
            crate::precheck(&snapshot, &files, quantize)?;
        }
        if revision != info.sha {
            // Revisions like `refs/pr/1` are nested.
            let path = dir.join("refs").join(revision);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_atomic(&path, info.sha.as_bytes())?;
        }
        Ok((snapshot, info.sha))
    }

    /// The ETag, size and download URL of one file (HEAD without following redirects, as
    /// `huggingface_hub` does: the LFS headers are on the redirect).
    async fn file_meta(&self, client: &reqwest::Client, url: &str, file: &str) -> Result<FileMeta> {
        let mut url = url.to_string();
        let mut hops = 0;
        let resp = loop {
            let resp = self
                .request(client, reqwest::Method::HEAD, &url)
                .send()
                .await
                .map_err(|e| ImportError::Hub(format!("{url}: {e}")))?;
            let status = resp.status();
            if !(status.is_success() || status.is_redirection()) {
                return Err(ImportError::Hub(format!("{file}: {url}: HTTP {status}")));
            }
            // A relative redirect without LFS headers (a renamed repository) is followed, as
            // huggingface_hub does; an LFS redirect carries the metadata and is not.
            let relative = header_str(resp.headers(), header::LOCATION.as_str())
                .filter(|l| l.starts_with('/'));
            match relative {
                Some(loc)
                    if status.is_redirection()
                        && resp.headers().get("x-linked-etag").is_none()
                        && hops < 5 =>
                {
                    hops += 1;
                    url = resp
                        .url()
                        .join(&loc)
                        .map_err(|e| {
                            ImportError::Hub(format!("{file}: bad Location {loc:?}: {e}"))
                        })?
                        .to_string();
                }
                _ => break resp,
            }
        };
        let url = url.as_str();
        let status = resp.status();
        let h = resp.headers();
        let etag = header_str(h, "x-linked-etag")
            .or_else(|| header_str(h, header::ETAG.as_str()))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .ok_or_else(|| ImportError::Hub(format!("{file}: {url}: no usable ETag header")))?;
        let size = header_str(h, "x-linked-size")
            .or_else(|| header_str(h, header::CONTENT_LENGTH.as_str()))
            .and_then(|s| s.parse::<u64>().ok());
        let download = if status.is_redirection() {
            let loc = header_str(h, header::LOCATION.as_str())
                .ok_or_else(|| ImportError::Hub(format!("{file}: redirect without Location")))?;
            resp.url()
                .join(&loc)
                .map_err(|e| ImportError::Hub(format!("{file}: bad Location {loc:?}: {e}")))?
                .to_string()
        } else {
            url.to_string()
        };
        Ok(FileMeta {
            etag,
            size,
            url: download,
        })
    }

    /// Downloads one blob into `<blob>.incomplete` (resuming what is there), checks it and
    /// renames it into place.
    async fn fetch_blob(
        &self,
        downloads: &reqwest::Client,
        file: &str,
        meta: &FileMeta,
        blob: &Path,
        observer: &dyn Observer,
    ) -> Result<()> {
        let partial = blob.with_extension("incomplete");
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if meta.size.is_some_and(|s| have > s) {
            have = 0;
        }
        let mut req = self.request(downloads, reqwest::Method::GET, &meta.url);
        if have > 0 {
            req = req.header(header::RANGE, format!("bytes={have}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ImportError::Hub(format!("{file}: {}: {e}", meta.url)))?;
        let status = resp.status();
        if status.as_u16() == 416 && meta.size == Some(have) {
            // Everything is already here.
        } else if !status.is_success() {
            return Err(ImportError::Hub(format!(
                "{file}: {}: HTTP {status}",
                meta.url
            )));
        }
        let resumed = status.as_u16() == 206 || (status.as_u16() == 416);
        if !resumed {
            have = 0;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(&partial)
            .map_err(io(&partial))?;
        let mut hasher = Sha256::new();
        if resumed {
            let mut f = std::fs::File::open(&partial).map_err(io(&partial))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(io(&partial))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        observer.begin(&format!("downloading {file}"), meta.size);
        observer.advance(have);
        let mut done = have;
        if status.as_u16() != 416 {
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    ImportError::Hub(format!(
                        "{file}: download interrupted after {done} bytes ({e}); run again to resume"
                    ))
                })?;
                out.write_all(&chunk).map_err(io(&partial))?;
                hasher.update(&chunk);
                done += chunk.len() as u64;
                observer.advance(chunk.len() as u64);
            }
        }
        out.sync_all().map_err(io(&partial))?;
        drop(out);
        observer.end();
        if let Some(size) = meta.size
            && size != done
        {
            return Err(ImportError::Hub(format!(
                "{file}: got {done} of {size} bytes; run again to resume"
            )));
        }
        if is_sha256(&meta.etag) {
            let got = hex(&hasher.finalize());
            if got != meta.etag {
                let _ = std::fs::remove_file(&partial);
                return Err(ImportError::Corrupt {
                    file: file.to_string(),
                    want: meta.etag.clone(),
                    got,
                });
            }
        }
        std::fs::rename(&partial, blob).map_err(io(blob))?;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

struct FileMeta {
    etag: String,
    size: Option<u64>,
    url: String,
}

/// A weights file (downloaded after the metadata).
fn is_weights(file: &str) -> bool {
    [".safetensors", ".gguf", ".onnx", ".bin"]
        .iter()
        .any(|e| file.ends_with(e))
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

fn same_host(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// A 40-hex-digit git commit hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses revisions that would escape `refs/`.
fn check_revision(rev: &str) -> Result<()> {
    if rev.is_empty()
        || rev
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(ImportError::Source(format!("bad revision {rev:?}")));
    }
    Ok(())
}

/// Refuses file names that would escape the snapshot folder.
fn safe_name(file: &str) -> Result<()> {
    if file.is_empty() || file.contains('/') || file == "." || file == ".." || file.contains('\0') {
        return Err(ImportError::Hub(format!(
            "unsafe file name {file:?} in the repository"
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}
