//! The `/ipfs/` gateway over a real store and a real HTTP server.

// Integration tests link every dependency of the library; most are unused here.
#![allow(unused_crate_dependencies)]

mod common;

use cid::Cid;
use common::{Server, add, cat_all, pattern, write};
use lattice_gateway::Limits;
use lattice_store::unixfs::{Node, RAW};
use lattice_store::{ImportOptions, Store, StoreError, make_cid, sha256_multihash};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

const BIG_LEN: usize = 1_000_123;

/// What the fixture folder holds.
struct Site {
    root: Cid,
    big: Cid,
    big_bytes: Vec<u8>,
    hello: Cid,
    config: Cid,
    /// A folder with an index.html.
    web: Cid,
    /// A CIDv1 raw-leaves file.
    rawleaf_file: Cid,
}

/// `site/{hello.txt, big.bin, a b.txt, data/config.json}` with kubo
/// defaults, `web/{index.html, style.css}`, and a raw-leaves file.
fn site(store: &Store, scratch: &std::path::Path) -> Site {
    let dir = scratch.join("site");
    let big_bytes = pattern(BIG_LEN, 1);
    write(&dir.join("hello.txt"), b"hello world\n");
    write(&dir.join("big.bin"), &big_bytes);
    write(&dir.join("a b.txt"), b"spaced\n");
    write(&dir.join("data/config.json"), br#"{"a":1}"#);
    let entries = add(store, &dir, &ImportOptions::default());
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.cid)
            .expect(name)
    };
    let web = scratch.join("web");
    write(&web.join("index.html"), b"<h1>hi from index.html</h1>\n");
    write(&web.join("style.css"), b"h1 { color: red }\n");
    let raw_path = scratch.join("raw.bin");
    write(&raw_path, &pattern(600_000, 2));
    Site {
        root: find("site"),
        big: find("site/big.bin"),
        big_bytes,
        hello: find("site/hello.txt"),
        config: find("site/data/config.json"),
        web: common::root(store, &web, &ImportOptions::default()),
        rawleaf_file: common::root(store, &raw_path, &ImportOptions::cid_v1()),
    }
}

async fn start() -> (Server, Site) {
    Server::start_with(Limits::default(), site).await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .expect("ASCII header")
}

async fn get(url: &str, headers: &[(&'static str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, HeaderValue::from_str(v).expect("header value"));
    }
    req.send().await.expect("request")
}

/// A CID whose block no store here holds.
fn absent_cid() -> Cid {
    make_cid(
        cid::Version::V1,
        RAW,
        sha256_multihash(&[b"not in any store"]),
    )
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path().join("s"), false).expect("open");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_bytes_and_headers() {
    let (s, site) = start().await;
    let res = get(&s.at(&format!("/ipfs/{}/big.bin", site.root)), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(header(&h, "content-type"), "application/octet-stream");
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert_eq!(header(&h, "etag"), format!("\"{}\"", site.big));
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=29030400, immutable"
    );
    assert_eq!(
        header(&h, "x-ipfs-path"),
        format!("/ipfs/{}/big.bin", site.root)
    );
    assert_eq!(
        header(&h, "x-ipfs-roots"),
        format!("{},{}", site.root, site.big)
    );
    assert_eq!(header(&h, "content-length"), BIG_LEN.to_string());
    let body = res.bytes().await.expect("body");
    assert!(body[..] == site.big_bytes[..], "file bytes differ");

    let direct = get(&s.at(&format!("/ipfs/{}", site.big)), &[]).await;
    assert_eq!(direct.status(), StatusCode::OK);
    assert!(direct.bytes().await.expect("body")[..] == site.big_bytes[..]);

    let hello = get(&s.at(&format!("/ipfs/{}/hello.txt", site.root)), &[]).await;
    assert_eq!(
        header(hello.headers(), "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(hello.text().await.expect("text"), "hello world\n");

    let json = get(&s.at(&format!("/ipfs/{}/data/config.json", site.root)), &[]).await;
    assert_eq!(header(json.headers(), "content-type"), "application/json");
    assert_eq!(
        header(json.headers(), "etag"),
        format!("\"{}\"", site.config)
    );
    assert_eq!(json.text().await.expect("text"), r#"{"a":1}"#);

    let spaced = get(&s.at(&format!("/ipfs/{}/a%20b.txt", site.root)), &[]).await;
    assert_eq!(spaced.status(), StatusCode::OK);
    assert_eq!(spaced.text().await.expect("text"), "spaced\n");

    // A raw-leaves CIDv1 file, and ?filename= naming the download.
    let raw = get(
        &s.at(&format!(
            "/ipfs/{}?filename=w.safetensors&download=true",
            site.rawleaf_file
        )),
        &[],
    )
    .await;
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(
        header(raw.headers(), "content-type"),
        "application/octet-stream"
    );
    assert!(
        header(raw.headers(), "content-disposition")
            .starts_with("attachment; filename=\"w.safetensors\"")
    );
    assert!(raw.bytes().await.expect("body")[..] == pattern(600_000, 2)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges() {
    let (s, site) = start().await;
    let url = s.at(&format!("/ipfs/{}/big.bin", site.root));
    let n = BIG_LEN;
    let cases: [(&str, usize, usize); 5] = [
        ("bytes=10-19", 10, 20),
        // Across the first chunk boundary (256 KiB).
        ("bytes=262140-262150", 262_140, 262_151),
        ("bytes=-100", n - 100, n),
        ("bytes=999000-", 999_000, n),
        ("bytes=5-99999999", 5, n),
    ];
    for (range, start, end) in cases {
        let res = get(&url, &[("range", range)]).await;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(res.headers(), "content-range"),
            format!("bytes {start}-{}/{n}", end - 1),
            "{range}"
        );
        assert_eq!(
            header(res.headers(), "content-length"),
            (end - start).to_string(),
            "{range}"
        );
        let body = res.bytes().await.expect("body");
        assert!(
            body[..] == site.big_bytes[start..end],
            "{range}: bytes differ"
        );
    }

    for bad in [
        format!("bytes={n}-"),
        "bytes=5-2".to_string(),
        "bytes=-0".to_string(),
    ] {
        let res = get(&url, &[("range", &bad)]).await;
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            header(res.headers(), "content-range"),
            format!("bytes */{n}")
        );
        assert!(
            !res.text().await.expect("text").is_empty(),
            "416 without a message"
        );
    }

    // Two ranges: multipart/byteranges.
    let res = get(&url, &[("range", "bytes=500000-500009, 0-9")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let ct = header(res.headers(), "content-type").to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type");
    let declared: usize = header(res.headers(), "content-length")
        .parse()
        .expect("length");
    let body = res.bytes().await.expect("body").to_vec();
    assert_eq!(body.len(), declared);
    let parts = multipart_parts(&body, boundary);
    assert_eq!(parts.len(), 2);
    assert!(
        parts[0]
            .0
            .contains(&format!("Content-Range: bytes 0-9/{n}"))
    );
    assert_eq!(parts[0].1, site.big_bytes[0..10]);
    assert!(
        parts[1]
            .0
            .contains(&format!("Content-Range: bytes 500000-500009/{n}"))
    );
    assert_eq!(parts[1].1, site.big_bytes[500_000..500_010]);

    // Too many ranges.
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let res = get(&url, &[("range", &format!("bytes={}", many.join(",")))]).await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // If-Range naming another version: the whole file.
    let res = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"other\"")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body").len(), n);
    let res = get(
        &url,
        &[
            ("range", "bytes=0-9"),
            ("if-range", &format!("\"{}\"", site.big)),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
}

/// `(headers, data)` of each part of a multipart/byteranges body.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let text_positions: Vec<usize> = body
        .windows(delim.len())
        .enumerate()
        .filter(|(_, w)| *w == delim.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let mut parts = Vec::new();
    for pair in text_positions.windows(2) {
        let part = &body[pair[0] + delim.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").expect("CRLF after delimiter");
        let part = part.strip_suffix(b"\r\n").expect("CRLF before delimiter");
        let split = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers");
        parts.push((
            String::from_utf8(part[..split].to_vec()).expect("ASCII headers"),
            part[split + 4..].to_vec(),
        ));
    }
    assert!(
        body.ends_with(format!("--{boundary}--\r\n").as_bytes()),
        "closing delimiter"
    );
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests() {
    let (s, site) = start().await;
    let client = reqwest::Client::new();
    let res = client
        .head(s.at(&format!("/ipfs/{}/big.bin", site.root)))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "content-length"), BIG_LEN.to_string());
    assert_eq!(header(res.headers(), "etag"), format!("\"{}\"", site.big));
    assert!(res.bytes().await.expect("body").is_empty());

    let block_len = s.store.block_size(&site.root).expect("size");
    let res = client
        .head(s.at(&format!("/ipfs/{}?format=raw", site.root)))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-length"),
        block_len.to_string()
    );
    assert_eq!(
        header(res.headers(), "content-type"),
        "application/vnd.ipld.raw"
    );

    let res = client
        .head(s.at(&format!("/ipfs/{}?format=car", site.root)))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(res.headers(), "content-type").starts_with("application/vnd.ipld.car"));

    let res = client
        .head(s.at(&format!("/ipfs/{}", absent_cid())))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_not_modified() {
    let (s, site) = start().await;
    let url = s.at(&format!("/ipfs/{}/hello.txt", site.root));
    let etag = format!("\"{}\"", site.hello);
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".to_string(),
    ] {
        let res = get(&url, &[("if-none-match", &inm)]).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(header(res.headers(), "etag"), etag);
        assert!(res.bytes().await.expect("body").is_empty());
    }
    let res = get(&url, &[("if-none-match", "\"something-else\"")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("text"), "hello world\n");

    let raw_url = s.at(&format!("/ipfs/{}?format=raw", site.hello));
    let raw_etag = format!("\"{}.raw\"", site.hello);
    assert_eq!(header(get(&raw_url, &[]).await.headers(), "etag"), raw_etag);
    assert_eq!(
        get(&raw_url, &[("if-none-match", &raw_etag)])
            .await
            .status(),
        StatusCode::NOT_MODIFIED
    );
    // The file's ETag does not validate its raw block.
    assert_eq!(
        get(&raw_url, &[("if-none-match", &etag)]).await.status(),
        StatusCode::OK
    );

    let car_url = s.at(&format!("/ipfs/{}?format=car", site.root));
    let car_etag = format!("\"{}.car\"", site.root);
    assert_eq!(header(get(&car_url, &[]).await.headers(), "etag"), car_etag);
    assert_eq!(
        get(&car_url, &[("if-none-match", &car_etag)])
            .await
            .status(),
        StatusCode::NOT_MODIFIED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_blocks_hash_to_their_cid() {
    let (s, site) = start().await;
    let leaf = match s.store.node(&site.big).expect("node") {
        Node::Pb { links, .. } => links[0].cid,
        Node::Raw(_) => panic!("big.bin should have a dag-pb root"),
    };
    let raw_leaf = match s.store.node(&site.rawleaf_file).expect("node") {
        Node::Pb { links, .. } => links[1].cid,
        Node::Raw(_) => panic!("raw.bin should have a dag-pb root"),
    };
    assert_eq!(raw_leaf.codec(), RAW);
    for cid in [site.root, site.big, leaf, raw_leaf, site.hello] {
        let res = get(&s.at(&format!("/ipfs/{cid}?format=raw")), &[]).await;
        assert_eq!(res.status(), StatusCode::OK, "{cid}");
        let h = res.headers().clone();
        assert_eq!(header(&h, "content-type"), "application/vnd.ipld.raw");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(header(&h, "etag"), format!("\"{cid}.raw\""));
        assert_eq!(
            header(&h, "cache-control"),
            "public, max-age=29030400, immutable"
        );
        assert_eq!(
            header(&h, "content-disposition"),
            format!("attachment; filename=\"{cid}.bin\"")
        );
        let body = res.bytes().await.expect("body");
        lattice_store::check_block(&cid, &body).unwrap_or_else(|e| panic!("{cid}: {e}"));
    }
    // Negotiated with Accept instead of ?format.
    let res = get(
        &s.at(&format!("/ipfs/{}", site.big)),
        &[("accept", "application/vnd.ipld.raw")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-location"),
        format!("/ipfs/{}?format=raw", site.big)
    );
    let body = res.bytes().await.expect("body");
    lattice_store::check_block(&site.big, &body).expect("hash");
    assert_ne!(
        body.len(),
        BIG_LEN,
        "Accept: raw must give the block, not the file"
    );
    // Raw blocks ignore Range: always the whole block.
    let res = get(
        &s.at(&format!("/ipfs/{leaf}?format=raw")),
        &[("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    lattice_store::check_block(&leaf, &res.bytes().await.expect("body")).expect("hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_responses_import_into_another_store() {
    let (s, site) = start().await;
    let res = get(&s.at(&format!("/ipfs/{}?format=car", site.root)), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = header(res.headers(), "content-type").to_string();
    assert!(
        ct.starts_with("application/vnd.ipld.car; version=1"),
        "{ct}"
    );
    assert_eq!(
        header(res.headers(), "etag"),
        format!("\"{}.car\"", site.root)
    );
    assert_eq!(header(res.headers(), "x-content-type-options"), "nosniff");
    let car = res.bytes().await.expect("body");

    let (_d2, other) = temp_store();
    let report = other.import_car(&mut &car[..], true).expect("import");
    assert_eq!(report.roots, vec![site.root]);
    assert_eq!(report.pinned, vec![site.root]);
    assert!(other.verify(&site.root).expect("verify").ok());
    assert_eq!(cat_all(&other, &site.big), site.big_bytes);
    let config = other
        .resolve(&site.root, "data/config.json")
        .expect("resolve");
    assert_eq!(cat_all(&other, &config), br#"{"a":1}"#);

    // Accept-negotiated CAR is the same stream.
    let res = get(
        &s.at(&format!("/ipfs/{}", site.root)),
        &[("accept", "application/vnd.ipld.car; version=1")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-location"),
        format!("/ipfs/{}?format=car", site.root)
    );
    assert_eq!(res.bytes().await.expect("body"), car);

    // A path: the blocks proving it, then the entity at its end.
    let res = get(
        &s.at(&format!(
            "/ipfs/{}/data/config.json?format=car&dag-scope=entity",
            site.root
        )),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let car = res.bytes().await.expect("body");
    let (_d3, third) = temp_store();
    let report = third.import_car(&mut &car[..], false).expect("import");
    assert_eq!(
        report.roots,
        vec![site.root],
        "the header root is the requested CID"
    );
    assert_eq!(
        third
            .resolve(&site.root, "data/config.json")
            .expect("path verifies"),
        site.config
    );
    assert_eq!(cat_all(&third, &site.config), br#"{"a":1}"#);
    assert!(
        !third.has(&site.big).expect("has"),
        "entity scope sent unrelated blocks"
    );

    // dag-scope=block: only the terminal block (after the path).
    let blocks_of = |car: &[u8]| {
        let (_d, st) = temp_store();
        st.import_car(&mut &car[..], false).expect("import").blocks
    };
    let car = get(
        &s.at(&format!("/ipfs/{}?format=car&dag-scope=block", site.big)),
        &[],
    )
    .await;
    assert_eq!(blocks_of(&car.bytes().await.expect("body")), 1);
    let car = get(
        &s.at(&format!(
            "/ipfs/{}/big.bin?format=car&dag-scope=block",
            site.root
        )),
        &[],
    )
    .await;
    assert_eq!(blocks_of(&car.bytes().await.expect("body")), 2);

    // entity-bytes: only the blocks for that range of the file.
    let car = get(
        &s.at(&format!(
            "/ipfs/{}?format=car&entity-bytes=300000:300999",
            site.big
        )),
        &[],
    )
    .await;
    assert_eq!(car.status(), StatusCode::OK);
    let car = car.bytes().await.expect("body");
    let (_d4, fourth) = temp_store();
    let report = fourth.import_car(&mut &car[..], false).expect("import");
    assert_eq!(
        report.blocks, 2,
        "the root and the one leaf holding bytes 300000..=300999"
    );
    let mut slice = Vec::new();
    fourth
        .cat(&site.big, 300_000, Some(1000), &mut slice)
        .expect("cat the range");
    assert_eq!(slice, site.big_bytes[300_000..301_000]);
    assert!(matches!(
        fourth.cat(&site.big, 0, None, &mut Vec::new()),
        Err(StoreError::NotFound(_))
    ));

    // Variants this gateway does not write.
    for (q, accept) in [
        ("?format=car&car-version=2", None),
        ("", Some("application/vnd.ipld.car; version=2")),
        ("?format=car&dag-scope=everything", None),
        ("?format=car&entity-bytes=a:b", None),
    ] {
        let headers: Vec<(&'static str, &str)> =
            accept.map(|a| ("accept", a)).into_iter().collect();
        let res = get(&s.at(&format!("/ipfs/{}{q}", site.root)), &headers).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q} {accept:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_probe() {
    let s = Server::start().await;
    let res = get(&s.at("/ipfs/bafkqaaa?format=raw"), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.expect("body").is_empty());
    let res = get(&s.at("/ipfs/bafkqaaa?format=car"), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let car = res.bytes().await.expect("body");
    let (_d, st) = temp_store();
    let report = st.import_car(&mut &car[..], false).expect("import");
    assert_eq!(report.roots, vec![Cid::try_from("bafkqaaa").expect("cid")]);
    assert_eq!(report.blocks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_listings_and_index_html() {
    let (s, site) = start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = client
        .get(s.at(&format!("/ipfs/{}", site.root)))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(res.headers(), "location"),
        format!("/ipfs/{}/", site.root)
    );

    let res = get(&s.at(&format!("/ipfs/{}/", site.root)), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-type"),
        "text/html; charset=utf-8"
    );
    let html = res.text().await.expect("html");
    for name in ["hello.txt", "big.bin", "a b.txt", "data/"] {
        assert!(html.contains(name), "listing lacks {name}: {html}");
    }
    assert!(
        html.contains(&format!("href=\"/ipfs/{}/a%20b.txt\"", site.root)),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/ipfs/{}/data/\"", site.root)),
        "{html}"
    );
    assert!(html.contains(&site.big.to_string()));
    assert!(html.contains(&BIG_LEN.to_string()), "file sizes are listed");

    let res = get(&s.at(&format!("/ipfs/{}/data/", site.root)), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.expect("html");
    assert!(
        html.contains("config.json") && html.contains("href=\"../\""),
        "{html}"
    );

    // A folder with an index.html serves it.
    let res = get(&s.at(&format!("/ipfs/{}/", site.web)), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-type"),
        "text/html; charset=utf-8"
    );
    assert_eq!(
        res.text().await.expect("html"),
        "<h1>hi from index.html</h1>\n"
    );
    let res = get(&s.at(&format!("/ipfs/{}/style.css", site.web)), &[]).await;
    assert_eq!(
        header(res.headers(), "content-type"),
        "text/css; charset=utf-8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400() {
    let (s, site) = start().await;
    let res = get(&s.at("/ipfs/not-a-cid"), &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("text").contains("invalid CID"));

    let long = "b".repeat(300);
    let res = get(&s.at(&format!("/ipfs/{long}")), &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("text").contains("limit"));

    // Sent raw, so that no client library resolves the dots first.
    let root = site.root;
    for target in [
        format!("/ipfs/{root}/../{root}"),
        format!("/ipfs/{root}/data/../hello.txt"),
        format!("/ipfs/{root}/./hello.txt"),
        format!("/ipfs/{root}/%2e%2e/x"),
        format!("/ipfs/{root}/data/%2E"),
        format!("/ipfs/{root}/data%2Fconfig.json"),
        format!("/ipfs/{root}/%zz"),
    ] {
        let (status, body) = s.raw_get(&target);
        assert_eq!(status, 400, "{target}: {body}");
        assert!(!body.is_empty(), "{target}: empty error body");
    }
    let (status, body) = s.raw_get(&format!("/ipfs/{root}/../x"));
    assert!(body.contains("not allowed"), "{status} {body}");

    let deep = format!("/ipfs/{root}/{}", "a/".repeat(2100));
    let res = get(&s.at(&deep), &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("text").contains("4096"));

    for q in ["format=dag-json", "format=bogus", "format=tar"] {
        let res = get(&s.at(&format!("/ipfs/{root}?{q}")), &[]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(res.text().await.expect("text").contains("format"), "{q}");
    }
    let res = get(
        &s.at(&format!("/ipfs/{root}/")),
        &[("accept", "application/vnd.ipld.dag-json")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_content_is_404() {
    let (s, site) = start().await;
    let absent = absent_cid();
    for q in ["", "?format=raw", "?format=car"] {
        let res = get(&s.at(&format!("/ipfs/{absent}{q}")), &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{q}");
        assert!(
            res.text()
                .await
                .expect("text")
                .contains(&absent.to_string()),
            "{q}"
        );
    }
    let res = get(&s.at(&format!("/ipfs/{}/nope.txt", site.root)), &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.expect("text").contains("nope.txt"));
    let res = get(
        &s.at(&format!("/ipfs/{absent}")),
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let res = get(&s.at("/elsewhere"), &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Flips the byte at `offset` of the data file holding `len` file bytes.
fn corrupt_data_file(store: &Store, len: u64, offset: usize) {
    let data_file = std::fs::read_dir(store.dir().join("data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == len))
        .expect("the data file");
    let mut on_disk = std::fs::read(&data_file).expect("read");
    on_disk[offset] ^= 0xff;
    std::fs::write(&data_file, &on_disk).expect("corrupt");
}

/// `Ok(status)` when a complete response came back, `Err(status)` when
/// the status line came but the body was cut short, `Err(None)` when the
/// request failed before any status.
async fn outcome(url: &str, range: Option<&str>) -> Result<StatusCode, Option<StatusCode>> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let res = req.send().await.map_err(|_| None)?;
    let status = res.status();
    res.bytes().await.map(|_| status).map_err(|_| Some(status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bytes_are_never_served() {
    let small_chunks = ImportOptions {
        chunk_size: 1024,
        ..ImportOptions::default()
    };
    let (s, (early, early_bytes, late)) =
        Server::start_with(Limits::default(), |store, scratch| {
            let early_bytes = pattern(BIG_LEN, 9);
            write(&scratch.join("early.bin"), &early_bytes);
            write(&scratch.join("late.bin"), &pattern(300_000, 10));
            (
                common::root(store, &scratch.join("early.bin"), &ImportOptions::default()),
                early_bytes,
                common::root(store, &scratch.join("late.bin"), &small_chunks),
            )
        })
        .await;
    // One flipped byte in the second 256 KiB leaf of `early`, and one near
    // the end of `late` (1 KiB leaves).
    corrupt_data_file(&s.store, BIG_LEN as u64, 300_000);
    corrupt_data_file(&s.store, 300_000, 280_000);
    let second_leaf = match s.store.node(&early).expect("node") {
        Node::Pb { links, .. } => links[1].cid,
        Node::Raw(_) => panic!("expected a dag-pb root"),
    };

    // Intact ranges are still served.
    let res = get(&s.at(&format!("/ipfs/{early}")), &[("range", "bytes=0-99")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.expect("body")[..], early_bytes[..100]);

    // Caught before the status line: an error status naming the problem.
    for range in [None, Some("bytes=299990-300010")] {
        let headers: Vec<(&'static str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let res = get(&s.at(&format!("/ipfs/{early}")), &headers).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{range:?}");
        let msg = res.text().await.expect("text");
        assert!(
            msg.contains("corrupt") && msg.contains(&second_leaf.to_string()),
            "{msg}"
        );
    }
    let res = get(&s.at(&format!("/ipfs/{second_leaf}?format=raw")), &[]).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.text().await.expect("text").contains("corrupt"));
    let res = client_post(&s.at(&format!("/api/v0/cat?arg={early}"))).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let res = client_post(&s.at(&format!("/api/v0/block/get?arg={second_leaf}"))).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // Caught after streaming began (past the first 256 KiB): the response
    // is cut short, never completed.
    for (url, want) in [
        (format!("/ipfs/{late}"), StatusCode::OK),
        (format!("/ipfs/{early}?format=car"), StatusCode::OK),
    ] {
        match outcome(&s.at(&url), None).await {
            Ok(status) => panic!("{url}: a complete {status} response was served"),
            Err(Some(status)) => assert_eq!(status, want, "{url}"),
            Err(None) => {}
        }
    }
}

async fn client_post(url: &str) -> reqwest::Response {
    reqwest::Client::new().post(url).send().await.expect("post")
}
