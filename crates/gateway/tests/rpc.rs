//! The Kubo RPC API subset over a real store and a real HTTP server.

// Integration tests link every dependency of the library; most are unused here.
#![allow(unused_crate_dependencies)]

mod common;

use cid::Cid;
use common::{Server, add, dir_part, file_part, form, ndjson, pattern, write};
use lattice_gateway::Limits;
use lattice_store::unixfs::{DAG_PB, RAW};
use lattice_store::{ImportOptions, PinKind, make_cid, sha256_multihash};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(s: &Server, cmd: &str, query: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(s.at(&format!("/api/v0/{cmd}")))
        .query(query)
        .send()
        .await
        .expect("request")
}

async fn post_form(
    s: &Server,
    cmd: &str,
    query: &[(&str, &str)],
    form: reqwest::multipart::Form,
) -> reqwest::Response {
    client()
        .post(s.at(&format!("/api/v0/{cmd}")))
        .query(query)
        .multipart(form)
        .send()
        .await
        .expect("request")
}

async fn json_ok(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("one JSON value")
}

async fn lines_ok(res: reqwest::Response) -> Vec<Value> {
    let status = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{text}");
    ndjson(&text)
}

/// Asserts a kubo error object with `status` and returns its message.
async fn kubo_error(res: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = serde_json::from_str(&res.text().await.expect("body")).expect("JSON error");
    assert_eq!(v["Type"], "error");
    assert_eq!(v["Code"], if status.is_client_error() { 1 } else { 0 });
    let msg = v["Message"].as_str().expect("Message").to_string();
    assert!(!msg.is_empty());
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_add_multipart_then_cat() {
    let s = Server::start().await;
    let a = b"lattice a.txt\n".to_vec();
    let b = pattern(300_000, 7);
    let body = form()
        .part("file", file_part(a.clone(), "d/a.txt"))
        .part("dir-1", dir_part("d/e"))
        .part("file-2", file_part(b.clone(), "d/sub/b é.bin"));
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("stream-channels", "true"), ("progress", "false")],
            body,
        )
        .await,
    )
    .await;
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["Name"].as_str().expect("Name"))
        .collect();
    assert_eq!(
        names,
        ["d/a.txt", "d/sub/b é.bin", "d/e", "d/sub", "d"],
        "kubo order: files, then folders children-first, root last"
    );

    // The same tree added from disk gives the same CIDs and sizes.
    let tree = s.scratch.join("d");
    write(&tree.join("a.txt"), &a);
    write(&tree.join("sub/b é.bin"), &b);
    std::fs::create_dir_all(tree.join("e")).expect("mkdir");
    let expected = add(
        &s.store,
        &tree,
        &ImportOptions {
            only_hash: true,
            ..ImportOptions::default()
        },
    );
    for line in &lines {
        let name = line["Name"].as_str().expect("Name");
        let want = expected
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} not added from disk"));
        assert_eq!(line["Hash"], want.cid.to_string(), "{name}");
        assert_eq!(
            line["Size"],
            want.size.to_string(),
            "{name}: Size is the cumulative DAG size, as a string"
        );
    }
    let root: Cid = lines[4]["Hash"]
        .as_str()
        .expect("Hash")
        .parse()
        .expect("cid");
    assert_eq!(
        s.store.is_pinned(&root).expect("pins"),
        Some(PinKind::Recursive)
    );
    let a_cid: Cid = lines[0]["Hash"]
        .as_str()
        .expect("Hash")
        .parse()
        .expect("cid");
    assert_eq!(
        s.store.is_pinned(&a_cid).expect("pins"),
        None,
        "only the root is pinned"
    );

    let path = format!("/ipfs/{root}/sub/b é.bin");
    let res = post(&s, "cat", &[("arg", path.as_str())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body")[..], b[..]);
    let res = post(
        &s,
        "cat",
        &[
            ("offset", "262000"),
            ("length", "1000"),
            ("arg", path.as_str()),
        ],
    )
    .await;
    assert_eq!(res.bytes().await.expect("body")[..], b[262_000..263_000]);
    let rel = format!("{root}/a.txt");
    let res = post(&s, "cat", &[("arg", rel.as_str())]).await;
    assert_eq!(res.bytes().await.expect("body")[..], a[..]);
    let res = post(&s, "cat", &[("offset", "999999"), ("arg", rel.as_str())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.expect("body").is_empty());

    let msg = kubo_error(
        post(&s, "cat", &[("arg", &root.to_string())]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(msg.contains("directory"), "{msg}");
    let msg = kubo_error(
        post(&s, "cat", &[("arg", "not-a-cid")]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("not-a-cid"), "{msg}");
    let msg = kubo_error(post(&s, "cat", &[]).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("required"), "{msg}");
    let traversal = format!("{root}/../x");
    kubo_error(
        post(&s, "cat", &[("arg", traversal.as_str())]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    kubo_error(
        post(&s, "cat", &[("length", "-1"), ("arg", rel.as_str())]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_add_options() {
    let s = Server::start().await;
    // Unnamed content is named by its CID.
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[],
            form().part("file", file_part(b"hello world\n".to_vec(), "")),
        )
        .await,
    )
    .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["Hash"],
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    );
    assert_eq!(lines[0]["Name"], lines[0]["Hash"]);
    assert_eq!(lines[0]["Size"], "20");

    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("cid-version", "1")],
            form().part("file", file_part(b"hello world\n".to_vec(), "")),
        )
        .await,
    )
    .await;
    assert_eq!(
        lines[0]["Hash"], "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        "CIDv1 implies raw leaves"
    );

    // chunker and wrap-with-directory, checked against the importer.
    let data = pattern(5000, 42);
    let file = s.scratch.join("x.bin");
    write(&file, &data);
    let opts = ImportOptions {
        chunk_size: 1024,
        wrap: true,
        only_hash: true,
        ..ImportOptions::default()
    };
    let expected = s.store.add_paths(&[file], &opts, &|_| {}).expect("add");
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("chunker", "size-1024"), ("wrap-with-directory", "true")],
            form().part("file", file_part(data.clone(), "x.bin")),
        )
        .await,
    )
    .await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["Hash"], expected[0].cid.to_string());
    assert_eq!(lines[1]["Name"], "", "the wrapper is last, unnamed");
    assert_eq!(lines[1]["Hash"], expected[1].cid.to_string());
    let wrapper: Cid = lines[1]["Hash"]
        .as_str()
        .expect("Hash")
        .parse()
        .expect("cid");
    assert_eq!(
        s.store.is_pinned(&wrapper).expect("pins"),
        Some(PinKind::Recursive)
    );

    // only-hash stores nothing; pin=false pins nothing.
    let data = pattern(10_000, 3);
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("only-hash", "true")],
            form().part("file", file_part(data.clone(), "o")),
        )
        .await,
    )
    .await;
    let cid: Cid = lines[0]["Hash"]
        .as_str()
        .expect("Hash")
        .parse()
        .expect("cid");
    assert!(!s.store.has(&cid).expect("has"), "only-hash stored blocks");
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("pin", "false")],
            form().part("file", file_part(data, "o")),
        )
        .await,
    )
    .await;
    let cid2: Cid = lines[0]["Hash"]
        .as_str()
        .expect("Hash")
        .parse()
        .expect("cid");
    assert_eq!(cid, cid2);
    assert!(s.store.has(&cid).expect("has"));
    assert_eq!(s.store.is_pinned(&cid).expect("pins"), None);

    // progress=true adds byte counts before each file's entry.
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[("progress", "true")],
            form().part("file", file_part(vec![1; 300], "p")),
        )
        .await,
    )
    .await;
    assert_eq!(lines[0], json!({ "Name": "p", "Bytes": 300 }));
    assert!(lines[1].get("Hash").is_some());

    for (k, v) in [
        ("chunker", "rabin-1-2-3"),
        ("cid-version", "2"),
        ("trickle", "true"),
        ("hash", "blake3"),
        ("chunker", "size-0"),
    ] {
        let msg = kubo_error(
            post_form(
                &s,
                "add",
                &[(k, v)],
                form().part("file", file_part(vec![1], "x")),
            )
            .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(msg.contains(k), "{k}={v}: {msg}");
    }
    let bad = form().part("file", file_part(vec![1], "a/../b"));
    kubo_error(
        post_form(&s, "add", &[], bad).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_put_get_stat() {
    let s = Server::start().await;
    let data = pattern(1234, 99);
    let v = json_ok(
        post_form(
            &s,
            "block/put",
            &[],
            form().part("file", file_part(data.clone(), "")),
        )
        .await,
    )
    .await;
    let expected = make_cid(cid::Version::V1, RAW, sha256_multihash(&[&data]));
    assert_eq!(v, json!({ "Key": expected.to_string(), "Size": 1234 }));
    assert!(s.store.has(&expected).expect("has"));
    assert_eq!(
        s.store.is_pinned(&expected).expect("pins"),
        None,
        "block put does not pin by default"
    );

    let res = post(&s, "block/get", &[("arg", &expected.to_string())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body")[..], data[..]);
    let v = json_ok(post(&s, "block/stat", &[("arg", &expected.to_string())]).await).await;
    assert_eq!(v, json!({ "Key": expected.to_string(), "Size": 1234 }));

    let empty_dir = vec![0x0a, 0x02, 0x08, 0x01];
    let v = json_ok(
        post_form(
            &s,
            "block/put",
            &[("cid-codec", "dag-pb")],
            form().part("file", file_part(empty_dir.clone(), "")),
        )
        .await,
    )
    .await;
    assert_eq!(
        v["Key"],
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    );
    let v = json_ok(
        post_form(
            &s,
            "block/put",
            &[("format", "v0"), ("pin", "true")],
            form().part("file", file_part(empty_dir, "")),
        )
        .await,
    )
    .await;
    assert_eq!(v["Key"], "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
    let v0: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        .parse()
        .expect("cid");
    assert_eq!(v0.codec(), DAG_PB);
    assert_eq!(
        s.store.is_pinned(&v0).expect("pins"),
        Some(PinKind::Recursive)
    );

    let msg = kubo_error(
        post_form(
            &s,
            "block/put",
            &[("cid-codec", "dag-pb")],
            form().part("file", file_part(vec![0xff, 0xff], "")),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("dag-pb"), "{msg}");
    kubo_error(
        post_form(
            &s,
            "block/put",
            &[("mhtype", "sha3-256")],
            form().part("file", file_part(vec![1], "")),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let msg = kubo_error(
        post_form(
            &s,
            "block/put",
            &[],
            form().part("file", file_part(vec![0; 2 << 20], "")),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("over"), "{msg}");

    let absent = make_cid(cid::Version::V1, RAW, sha256_multihash(&[b"absent"]));
    let msg = kubo_error(
        post(&s, "block/get", &[("arg", &absent.to_string())]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(msg.contains(&absent.to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins() {
    let s = Server::start().await;
    let data = pattern(1000, 5);
    let v = json_ok(
        post_form(
            &s,
            "block/put",
            &[],
            form().part("file", file_part(data, "")),
        )
        .await,
    )
    .await;
    let block = v["Key"].as_str().expect("Key").to_string();

    let v = json_ok(
        post(
            &s,
            "pin/add",
            &[("recursive", "true"), ("stream", "true"), ("arg", &block)],
        )
        .await,
    )
    .await;
    assert_eq!(v, json!({ "Pins": [block] }));
    let lines = lines_ok(
        post(
            &s,
            "pin/ls",
            &[("names", "false"), ("stream", "true"), ("arg", &block)],
        )
        .await,
    )
    .await;
    assert_eq!(lines, vec![json!({ "Cid": block, "Type": "recursive" })]);

    // A folder added through the API is pinned; its children are indirect.
    let body = form()
        .part("file", file_part(b"one".to_vec(), "f/1.txt"))
        .part("file-1", file_part(b"two".to_vec(), "f/2.txt"));
    let added = lines_ok(post_form(&s, "add", &[], body).await).await;
    let folder = added[2]["Hash"].as_str().expect("Hash").to_string();
    let child = added[0]["Hash"].as_str().expect("Hash").to_string();
    let v = json_ok(post(&s, "pin/ls", &[]).await).await;
    assert_eq!(v["Keys"][&block]["Type"], "recursive");
    assert_eq!(v["Keys"][&folder]["Type"], "recursive");
    assert_eq!(v["Keys"][&child]["Type"], "indirect");
    let lines =
        lines_ok(post(&s, "pin/ls", &[("type", "recursive"), ("stream", "true")]).await).await;
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["Type"] == "recursive"));
    let v = json_ok(post(&s, "pin/ls", &[("arg", &child)]).await).await;
    assert_eq!(
        v["Keys"][&child]["Type"],
        format!("indirect through {folder}")
    );
    let v = json_ok(post(&s, "pin/ls", &[("type", "direct")]).await).await;
    assert_eq!(v, json!({ "Keys": {} }));
    kubo_error(
        post(&s, "pin/ls", &[("type", "sideways")]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let v = json_ok(post(&s, "pin/rm", &[("recursive", "true"), ("arg", &block)]).await).await;
    assert_eq!(v, json!({ "Pins": [block] }));
    let msg = kubo_error(
        post(&s, "pin/ls", &[("arg", &block)]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(msg.contains("is not pinned"), "{msg}");
    let msg = kubo_error(
        post(&s, "pin/rm", &[("arg", &block)]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(msg.contains("not pinned"), "{msg}");

    // Direct pins, and refusing to unpin a recursive pin non-recursively.
    json_ok(post(&s, "pin/add", &[("recursive", "false"), ("arg", &block)]).await).await;
    let block_cid: Cid = block.parse().expect("cid");
    assert_eq!(
        s.store.is_pinned(&block_cid).expect("pins"),
        Some(PinKind::Direct)
    );
    let msg = kubo_error(
        post(&s, "pin/rm", &[("recursive", "false"), ("arg", &folder)]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(msg.contains("recursively"), "{msg}");
    let sub = format!("/ipfs/{folder}/2.txt");
    let v = json_ok(post(&s, "pin/add", &[("arg", sub.as_str())]).await).await;
    assert_eq!(v["Pins"][0], added[1]["Hash"], "pin/add resolves paths");

    let absent = make_cid(cid::Version::V1, RAW, sha256_multihash(&[b"absent"]));
    kubo_error(
        post(&s, "pin/add", &[("arg", &absent.to_string())]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    kubo_error(post(&s, "pin/add", &[]).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_export_import_round_trip() {
    let (a, root) = Server::start_with(Limits::default(), |store, scratch| {
        let dir = scratch.join("model");
        write(&dir.join("config.json"), br#"{"layers":2}"#);
        write(&dir.join("weights.safetensors"), &pattern(700_000, 11));
        common::root(store, &dir, &ImportOptions::cid_v1())
    })
    .await;
    let res = post(&a, "dag/export", &[("arg", &root.to_string())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.ipld.car")
    );
    let car = res.bytes().await.expect("car").to_vec();

    let b = Server::start().await;
    let part = |bytes: Vec<u8>| file_part(bytes, "");
    let lines = lines_ok(
        post_form(
            &b,
            "dag/import",
            &[],
            form().part("file", part(car.clone())),
        )
        .await,
    )
    .await;
    assert_eq!(
        lines,
        vec![json!({ "Root": { "Cid": { "/": root.to_string() }, "PinErrorMsg": "" } })]
    );
    assert_eq!(
        b.store.is_pinned(&root).expect("pins"),
        Some(PinKind::Recursive)
    );
    assert!(b.store.verify(&root).expect("verify").ok());
    let path = format!("{root}/weights.safetensors");
    let res = post(&b, "cat", &[("arg", path.as_str())]).await;
    assert_eq!(
        res.bytes().await.expect("body")[..],
        pattern(700_000, 11)[..]
    );

    // pin-roots=false: nothing pinned, no Root lines; stats=true counts.
    let c = Server::start().await;
    let lines = lines_ok(
        post_form(
            &c,
            "dag/import",
            &[("pin-roots", "false"), ("stats", "true")],
            form().part("file", part(car.clone())),
        )
        .await,
    )
    .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["Stats"]["BlockCount"],
        a.store.verify(&root).expect("verify").blocks_checked
    );
    // With raw leaves, the bytes verify hashes are exactly the block bytes.
    let block_bytes = a.store.verify(&root).expect("verify").bytes_checked;
    assert_eq!(
        lines[0]["Stats"]["BlockBytesCount"], block_bytes,
        "block bytes, not CAR bytes"
    );
    assert_eq!(c.store.is_pinned(&root).expect("pins"), None);
    assert!(c.store.has(&root).expect("has"));

    // Two CARs: the folder's own block first, its files' DAGs second. The
    // folder can only be pinned once both are in.
    let folder_only = reqwest::get(a.at(&format!("/ipfs/{root}?format=car&dag-scope=block")))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("car")
        .to_vec();
    let mut files = form().part("file", part(folder_only));
    let mut file_roots = Vec::new();
    for (i, entry) in a.store.ls(&root).expect("ls").into_iter().enumerate() {
        let car = reqwest::get(a.at(&format!("/ipfs/{}?format=car", entry.cid)))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("car")
            .to_vec();
        files = files.part(format!("file-{}", i + 1), part(car));
        file_roots.push(entry.cid);
    }
    let d = Server::start().await;
    let lines = lines_ok(post_form(&d, "dag/import", &[], files).await).await;
    assert_eq!(lines.len(), 1 + file_roots.len());
    for line in &lines {
        assert_eq!(line["Root"]["PinErrorMsg"], "", "{line}");
    }
    assert_eq!(lines[0]["Root"]["Cid"]["/"], root.to_string());
    assert_eq!(
        d.store.is_pinned(&root).expect("pins"),
        Some(PinKind::Recursive)
    );

    let msg = kubo_error(
        post_form(
            &d,
            "dag/import",
            &[],
            form().part("file", part(b"not a car".to_vec())),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("CAR"), "{msg}");
    let absent = make_cid(cid::Version::V1, RAW, sha256_multihash(&[b"absent"]));
    kubo_error(
        post(&d, "dag/export", &[("arg", &absent.to_string())]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_commands_version_and_id() {
    let s = Server::start().await;
    let res = client()
        .get(s.at("/api/v0/version"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert!(res.text().await.expect("text").contains("POST"));
    let res = client().get(s.at("/api/v0/add")).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A web page on another site may not drive the API; the same origin may.
    let res = client()
        .post(s.at("/api/v0/version"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.expect("text").contains("evil.example"));
    let same = s.at("/").trim_end_matches('/').to_string();
    let res = client()
        .post(s.at("/api/v0/version"))
        .header("origin", same)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::OK);

    let res = post(&s, "swarm/peers", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(
        res.text()
            .await
            .expect("text")
            .starts_with("404 page not found")
    );

    let v = json_ok(post(&s, "version", &[]).await).await;
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert!(v["System"].as_str().expect("System").contains('/'));

    let v = json_ok(post(&s, "id", &[]).await).await;
    let id = v["ID"].as_str().expect("ID").to_string();
    assert!(id.starts_with("12D3KooW"), "{id}");
    assert!(
        v["PublicKey"]
            .as_str()
            .expect("PublicKey")
            .starts_with("CAESI")
    );
    assert_eq!(v["Addresses"], json!([]));
    let again = json_ok(post(&s, "id", &[]).await).await;
    assert_eq!(again["ID"], id);
    let kept = std::fs::read(s.store.dir().join("identity")).expect("identity file");
    assert_eq!(kept.len(), 32);
    kubo_error(
        post(&s, "id", &[("arg", &id)]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let limits = Limits {
        max_body: 64 * 1024,
        ..Limits::default()
    };
    let (s, ()) = Server::start_with(limits, |_, _| {}).await;

    // Declared length over the limit.
    let big = form().part("file", file_part(pattern(1 << 20, 1), "big"));
    let msg = kubo_error(
        post_form(&s, "add", &[], big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(msg.contains("65536"), "{msg}");
    let big = form().part("file", file_part(pattern(1 << 20, 1), ""));
    kubo_error(
        post_form(&s, "dag/import", &[], big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Chunked, no declared length: cut off while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|i| Ok(pattern(32 * 1024, i))).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let part = reqwest::multipart::Part::stream(stream)
        .file_name("streamed")
        .mime_str("application/octet-stream")
        .expect("mime");
    let msg = kubo_error(
        post_form(&s, "add", &[], form().part("file", part)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(msg.contains("limit"), "{msg}");
    assert_eq!(
        s.store.pins().expect("pins"),
        vec![],
        "nothing of the cut-off upload was pinned"
    );

    // Under the limit still works.
    let lines = lines_ok(
        post_form(
            &s,
            "add",
            &[],
            form().part("file", file_part(pattern(10_000, 2), "ok")),
        )
        .await,
    )
    .await;
    assert_eq!(lines.len(), 1);
}
