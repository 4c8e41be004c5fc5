//! Store behaviour on real files in temporary directories.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use cid::Cid;
use lattice_store::{ImportOptions, PinKind, Store, StoreError};

fn no_progress(_: u64) {}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    // xorshift bytes: incompressible, reproducible.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn add_file(store: &Store, path: &Path, opts: &ImportOptions) -> Cid {
    let added = store
        .add_paths(&[path.to_path_buf()], opts, &no_progress)
        .expect("add");
    added.last().expect("one entry").cid
}

fn cat_all(store: &Store, cid: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    store.cat(cid, 0, None, &mut out).expect("cat");
    out
}

#[test]
fn known_kubo_cids() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("s")).expect("open");
    let empty = dir.path().join("empty");
    write(&empty, b"");
    let hello = dir.path().join("hello");
    write(&hello, b"hello world\n");
    let v1 = ImportOptions {
        only_hash: true,
        ..ImportOptions::cid_v1()
    };
    // Well-known CIDs (the raw one is sha256 a948904f… of "hello world\n").
    assert_eq!(
        add_file(&store, &empty, &ImportOptions::default()).to_string(),
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    );
    assert_eq!(
        add_file(&store, &hello, &ImportOptions::default()).to_string(),
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    );
    assert_eq!(
        add_file(&store, &hello, &v1).to_string(),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
}

#[test]
fn cat_ranges_get_and_mmap_round_trip() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("s")).expect("open");
    let opts = ImportOptions {
        chunk_size: 1000,
        max_links: 3,
        ..ImportOptions::default()
    };
    let data = pattern(25_123, 7);
    let file = dir.path().join("f.bin");
    write(&file, &data);
    let cid = add_file(&store, &file, &opts);
    assert_eq!(cat_all(&store, &cid), data);
    for (off, len) in [
        (0u64, 1u64),
        (999, 2),
        (1000, 1000),
        (12_345, 7_000),
        (25_000, 500),
        (30_000, 5),
    ] {
        let mut out = Vec::new();
        store
            .cat(&cid, off, Some(len), &mut out)
            .expect("cat range");
        let lo = (off as usize).min(data.len());
        let hi = (off as usize + len as usize).min(data.len());
        assert_eq!(out, &data[lo..hi], "range {off}+{len}");
    }
    let map = store.mmap(&cid).expect("mmap");
    assert_eq!(&map[..], &data[..]);
    assert_eq!(store.file_len(&cid).expect("len"), data.len() as u64);

    // A folder with nested content comes back byte-identical.
    let tree = dir.path().join("model");
    write(&tree.join("config.json"), br#"{"hidden_size": 8}"#);
    write(
        &tree.join("weights/part-0.safetensors"),
        &pattern(70_000, 3),
    );
    write(&tree.join("weights/part-1.safetensors"), &pattern(3, 4));
    write(&tree.join("empty.txt"), b"");
    let root = store
        .add_paths(
            std::slice::from_ref(&tree),
            &ImportOptions::default(),
            &no_progress,
        )
        .expect("add -r");
    let root = root.last().expect("root");
    assert_eq!(root.name, "model");
    let out = dir.path().join("out");
    store.get(&root.cid, &out).expect("get");
    for rel in [
        "config.json",
        "weights/part-0.safetensors",
        "weights/part-1.safetensors",
        "empty.txt",
    ] {
        assert_eq!(
            std::fs::read(out.join(rel)).expect("read"),
            std::fs::read(tree.join(rel)).expect("read"),
            "{rel}"
        );
    }
    let names: Vec<String> = store
        .ls(&root.cid)
        .expect("ls")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["config.json", "empty.txt", "weights"]);
    let inner = store
        .resolve(&root.cid, "weights/part-0.safetensors")
        .expect("resolve");
    assert_eq!(cat_all(&store, &inner), pattern(70_000, 3));
    assert!(matches!(
        store.resolve(&root.cid, "weights/nope"),
        Err(StoreError::NoSuchPath { .. })
    ));
    assert!(store.resolve(&root.cid, "../etc").is_err());
}

#[test]
fn verify_names_the_flipped_block() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("s")).expect("open");
    let opts = ImportOptions {
        chunk_size: 4096,
        ..ImportOptions::cid_v1()
    };
    let data = pattern(40_000, 11);
    let file = dir.path().join("w.bin");
    write(&file, &data);
    let cid = add_file(&store, &file, &opts);
    let report = store.verify(&cid).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.blocks_checked, 11);
    // Every leaf byte plus the one inline root node was hashed.
    assert_eq!(
        report.bytes_checked,
        data.len() as u64 + store.block_size(&cid).expect("root size")
    );

    // Flip one byte in the stored data (the 3rd chunk).
    let data_dir = dir.path().join("s/data");
    let stored = std::fs::read_dir(&data_dir)
        .expect("ls")
        .next()
        .expect("one file")
        .expect("entry")
        .path();
    // Before the damage, the file's own data file is handed out for mapping by path.
    let path = store.file_path(&cid).expect("file path");
    assert_eq!(path, stored);
    assert_eq!(std::fs::read(&path).expect("read"), data);
    let mut bytes = std::fs::read(&stored).expect("read");
    bytes[2 * 4096 + 17] ^= 0x01;
    std::fs::write(&stored, &bytes).expect("write");
    let expected_bad = Cid::new_v1(
        0x55,
        lattice_store::sha256_multihash(&[&data[2 * 4096..3 * 4096]]),
    );
    let report = store.verify(&cid).expect("verify");
    assert_eq!(report.corrupt, vec![expected_bad]);
    assert!(report.missing.is_empty());
    // Reads refuse the corrupt block instead of returning bad bytes.
    assert!(
        matches!(store.cat(&cid, 0, None, &mut Vec::new()), Err(StoreError::Corrupt(c)) if c == expected_bad)
    );
    assert!(matches!(store.mmap(&cid), Err(StoreError::Corrupt(c)) if c == expected_bad));
    assert!(matches!(store.file_path(&cid), Err(StoreError::Corrupt(c)) if c == expected_bad));
    // Reads that avoid the bad block still work.
    let mut first = Vec::new();
    store
        .cat(&cid, 0, Some(4096), &mut first)
        .expect("first chunk");
    assert_eq!(first, &data[..4096]);

    // Putting the right bytes again repairs the data file in place.
    store
        .put_block(
            &expected_bad,
            Bytes::copy_from_slice(&data[2 * 4096..3 * 4096]),
        )
        .expect("repair");
    assert!(store.verify(&cid).expect("verify").ok());
    assert_eq!(&store.mmap(&cid).expect("mmap")[..], &data[..]);
}

#[test]
fn pins_and_gc() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("s")).expect("open");
    let opts = ImportOptions {
        chunk_size: 1024,
        ..ImportOptions::default()
    };
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write(&a, &pattern(10_000, 1));
    write(&b, &pattern(10_000, 2));
    let ca = add_file(&store, &a, &opts);
    let cb = add_file(&store, &b, &opts);
    let before = store.block_count().expect("count");
    assert_eq!(
        store.gc().expect("gc").blocks_removed,
        0,
        "everything is pinned"
    );
    store.pin_rm(&cb).expect("unpin");
    assert!(store.pin_rm(&cb).is_err(), "second unpin is an error");
    // A direct pin keeps only the root block.
    store.pin_add(&cb, PinKind::Direct).expect("direct pin");
    let report = store.gc().expect("gc");
    assert_eq!(report.blocks_removed, before / 2 - 1);
    assert!(store.has(&cb).expect("has"));
    assert_eq!(report.data_files_removed, 1);
    assert!(store.verify(&ca).expect("verify").ok(), "pinned DAG intact");
    assert_eq!(cat_all(&store, &ca), pattern(10_000, 1));
    store.pin_rm(&cb).expect("unpin");
    assert_eq!(store.gc().expect("gc").blocks_removed, 1);
    assert!(!store.has(&cb).expect("has"));
    assert!(
        store.pin_add(&cb, PinKind::Recursive).is_err(),
        "cannot pin what is gone"
    );
    let pins = store.pins().expect("pins");
    assert_eq!(pins, vec![(ca, PinKind::Recursive)]);
    // Re-adding after GC stores it again.
    let cb2 = add_file(&store, &b, &opts);
    assert_eq!(cb2, cb);
    assert_eq!(cat_all(&store, &cb), pattern(10_000, 2));
}

#[test]
fn car_round_trip_and_rejects_bad_blocks() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = Store::open(dir.path().join("a")).expect("open");
    let tree = dir.path().join("m");
    write(&tree.join("x.bin"), &pattern(300_000, 5));
    write(&tree.join("y.txt"), b"y");
    let root = a
        .add_paths(&[tree], &ImportOptions::default(), &no_progress)
        .expect("add")
        .last()
        .expect("root")
        .cid;
    let mut car = Vec::new();
    a.export_car(&root, &mut car).expect("export");

    let b = Store::open(dir.path().join("b")).expect("open");
    let report = b.import_car(&mut &car[..], true).expect("import");
    assert_eq!(report.roots, vec![root]);
    assert_eq!(report.pinned, vec![root]);
    assert_eq!(report.blocks, a.block_count().expect("count"));
    assert!(b.verify(&root).expect("verify").ok());
    let x = b.resolve(&root, "x.bin").expect("resolve");
    assert_eq!(&b.mmap(&x).expect("mmap")[..], &pattern(300_000, 5)[..]);
    let mut again = Vec::new();
    b.export_car(&root, &mut again).expect("export");
    assert_eq!(again, car, "export is deterministic");

    // One flipped byte in a block's data: the import fails and stores nothing.
    let c = Store::open(dir.path().join("c")).expect("open");
    let mut bad = car.clone();
    let n = bad.len();
    bad[n - 3] ^= 0xff;
    assert!(matches!(
        c.import_car(&mut &bad[..], true),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(c.block_count().expect("count"), 0);
    assert!(c.import_car(&mut &b"\x05garbage"[..], true).is_err());
}

#[test]
fn put_block_checks_hash_and_reopen_sweeps_partials() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s");
    let cid;
    {
        let store = Store::open(&path).expect("open");
        let bytes = Bytes::from_static(b"some block");
        cid = store
            .put_new_block(cid::Version::V1, 0x55, bytes.clone())
            .expect("put");
        assert_eq!(store.block(&cid).expect("get"), bytes);
        let other = Cid::new_v1(0x55, lattice_store::sha256_multihash(&[b"other"]));
        assert!(matches!(
            store.put_block(&other, bytes),
            Err(StoreError::Corrupt(_))
        ));
        assert!(
            matches!(Store::open(&path), Err(StoreError::Locked(_))),
            "second open is refused"
        );
    }
    // A stray partial file from a killed import is removed on open.
    let stray = path.join("data/00000000000000ff.partial");
    std::fs::File::create(&stray)
        .expect("create")
        .write_all(b"junk")
        .expect("write");
    let store = Store::open(&path).expect("reopen");
    assert!(!stray.exists());
    assert!(store.has(&cid).expect("has"));
}

#[test]
fn symlinks_are_followed_and_loops_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("s")).expect("open");
    // The Hugging Face cache layout: snapshot files are symlinks to blobs.
    let blob = dir.path().join("blobs/abc123");
    write(&blob, &pattern(5000, 3));
    let snap = dir.path().join("snapshots/main");
    std::fs::create_dir_all(&snap).expect("mkdir");
    std::os::unix::fs::symlink(&blob, snap.join("model.safetensors")).expect("symlink");
    let real = dir.path().join("real/main");
    write(&real.join("model.safetensors"), &pattern(5000, 3));
    let via_link = store
        .add_paths(
            std::slice::from_ref(&snap),
            &ImportOptions::default(),
            &no_progress,
        )
        .expect("add through a symlink");
    let direct = store
        .add_paths(
            std::slice::from_ref(&real),
            &ImportOptions::default(),
            &no_progress,
        )
        .expect("add");
    assert_eq!(via_link.last().map(|a| a.cid), direct.last().map(|a| a.cid));

    std::os::unix::fs::symlink(dir.path().join("snapshots"), snap.join("loop")).expect("symlink");
    let err = store
        .add_paths(
            std::slice::from_ref(&snap),
            &ImportOptions::default(),
            &no_progress,
        )
        .expect_err("a loop is refused");
    assert!(err.to_string().contains("loops back"), "{err}");
    // Both adds gave one root (same name, same bytes); the failed add pinned nothing.
    assert_eq!(store.pins().expect("pins").len(), 1);
}
