#!/usr/bin/env node
// Drives a Kubo-RPC-compatible server with the real kubo-rpc-client and
// asserts the results. CIDs of added data are checked against the UnixFS
// importer oracle (unixfs.mjs) with kubo `ipfs add` defaults.
//
// Usage: node kubo_client.mjs http://127.0.0.1:5001
//   (the client appends /api/v0 itself)
// Prints "ok <name>" or "not ok <name>: <reason>" per check, then
// "N passed, M failed"; exits 1 if anything failed, 2 on bad usage.
//
// Each check has a 30 s timeout (KUBO_CLIENT_TIMEOUT_MS overrides).

import assert from 'node:assert/strict'
import { CarReader, CarWriter } from '@ipld/car'
import { create } from 'kubo-rpc-client'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { importer } from 'ipfs-unixfs-importer'
import { DiscardBlockstore, importBytesKubo, importEntries, kuboAddOptions } from './unixfs.mjs'

const base = process.argv[2]
if (base == null || !/^https?:\/\//.test(base)) {
  process.stderr.write('usage: node kubo_client.mjs http://HOST:PORT\n')
  process.exit(2)
}
const TIMEOUT_MS = Number(process.env.KUBO_CLIENT_TIMEOUT_MS ?? 30000)

const ipfs = create({ url: base })

// ---------------------------------------------------------------- helpers
/** deterministic pseudo-random bytes (xorshift32) */
function pseudoRandom (n, seed) {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

async function concat (iterable) {
  const chunks = []
  for await (const c of iterable) chunks.push(c)
  return Buffer.concat(chunks.map(c => Buffer.from(c.buffer, c.byteOffset, c.byteLength)))
}

async function collect (iterable) {
  const out = []
  for await (const x of iterable) out.push(x)
  return out
}

const eqBytes = (actual, expected, what) => {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != expected ${expected.length}`)
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), `${what}: bytes differ`)
}

const cidStr = (c) => c.toString()

/** Import with kubo defaults into a real blockstore: returns {entries, blocks(Map cid->bytes)} */
async function oracleWithBlocks (candidates, opts = {}) {
  const bs = new DiscardBlockstore(true)
  const entries = []
  for await (const e of importer(candidates, bs, kuboAddOptions(opts))) entries.push(e)
  return { entries, blocks: bs.blocks }
}

/** fail fast with a clear reason when an earlier check did not produce its result */
function need (...keys) {
  const producers = { smallCid: 'add bytes (defaults, CIDv0)', chunkedCid: 'add 5000 bytes', dirCid: 'addAll directory', bCid: 'addAll directory', blockCid: 'block.put', car: 'dag.export' }
  for (const k of keys) {
    if (state[k] == null) throw new Error(`skipped: needs the result of the failed check "${producers[k]}"`)
  }
}

let passed = 0
let failed = 0
async function check (name, fn) {
  let timer
  try {
    await Promise.race([
      fn(),
      new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS)
      })
    ])
    passed++
    console.log(`ok ${name}`)
  } catch (err) {
    failed++
    let msg = err?.message ?? String(err)
    if (err?.cause != null) msg += ` (cause: ${err.cause.code ?? ''} ${err.cause.message ?? err.cause})`
    if (err?.name === 'HTTPError' && err.response != null) {
      msg = `HTTP ${err.response.status} ${err.response.url}: ${msg}`
    }
    console.log(`not ok ${name}: ${msg.split('\n').join('\n    ')}`)
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------- data
const small = new TextEncoder().encode('hello world\n')
const buf5000 = pseudoRandom(5000, 42)
const fileA = new TextEncoder().encode('lattice a.txt\n')
const fileB = pseudoRandom(300000, 7) // > 256 KiB: two chunks with default chunker
const state = {}

// ---------------------------------------------------------------- checks
await check('version', async () => {
  const v = await ipfs.version()
  assert.equal(typeof v.version, 'string', 'version(): "Version" must be a string')
  assert.ok(v.version.length > 0, 'version(): "Version" is empty')
})

await check('id', async () => {
  const id = await ipfs.id()
  assert.ok(id.id != null, 'id(): no "ID"')
  assert.ok(['Ed25519', 'secp256k1', 'RSA'].includes(id.id.type), `id(): unexpected peer id type ${id.id.type}`)
  assert.ok(id.id.toString().length > 0)
  if (id.addresses != null) {
    assert.ok(Array.isArray(id.addresses), 'id(): "Addresses" must be an array')
  }
})

await check('add bytes (defaults, CIDv0)', async () => {
  const expected = await importBytesKubo(small, {})
  assert.equal(expected.cid, 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o', 'oracle self-check')
  const r = await ipfs.add(small)
  assert.equal(cidStr(r.cid), expected.cid, 'add(): cid differs from importer oracle')
  assert.equal(r.cid.version, 0)
  assert.equal(r.size, expected.size, 'add(): "Size" differs from importer oracle cumulative size')
  assert.equal(r.path, expected.cid, 'add(): "Name" of an unnamed file must be its CID string')
  state.smallCid = r.cid
})

await check('add bytes {cidVersion:1, rawLeaves:true}', async () => {
  const expected = await importBytesKubo(small, { cidVersion: 1, rawLeaves: true })
  const r = await ipfs.add(small, { cidVersion: 1, rawLeaves: true })
  assert.equal(cidStr(r.cid), expected.cid, 'add(): cid differs from importer oracle')
  assert.equal(cidStr(r.cid), 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4')
  assert.equal(r.size, expected.size)
})

await check('add 5000 bytes {chunker:"size-1024"}', async () => {
  const expected = await importBytesKubo(buf5000, { chunkSize: 1024 })
  const r = await ipfs.add(buf5000, { chunker: 'size-1024' })
  assert.equal(cidStr(r.cid), expected.cid, 'add(): cid differs from importer oracle')
  assert.equal(r.size, expected.size, 'add(): size differs from importer oracle')
  state.chunkedCid = r.cid
})

await check('addAll directory {wrapWithDirectory:false}', async () => {
  const input = () => [
    { path: 'd/a.txt', content: fileA },
    { path: 'd/sub/b.bin', content: fileB }
  ]
  const expected = await importEntries(input(), { wrapWithDirectory: false })
  const got = await collect(ipfs.addAll(input(), { wrapWithDirectory: false }))
  const byPath = new Map(got.map(e => [e.path, e]))
  for (const e of expected) {
    const g = byPath.get(e.path)
    assert.ok(g != null, `addAll(): no entry for "${e.path}" (got ${[...byPath.keys()].join(', ')})`)
    assert.equal(cidStr(g.cid), e.cid, `addAll(): cid of "${e.path}"`)
    assert.equal(g.size, e.size, `addAll(): size of "${e.path}"`)
  }
  assert.equal(got.length, expected.length, `addAll(): expected ${expected.length} entries, got ${got.length}`)
  assert.equal(got[got.length - 1].path, 'd', 'addAll(): the root directory "d" must be the last entry')
  state.dirCid = got[got.length - 1].cid
  state.bCid = byPath.get('d/sub/b.bin').cid
})

await check('cat', async () => {
  need('smallCid', 'chunkedCid', 'bCid')
  eqBytes(await concat(ipfs.cat(state.smallCid)), small, 'cat(small)')
  eqBytes(await concat(ipfs.cat(state.chunkedCid)), buf5000, 'cat(5000 bytes, 1 KiB chunks)')
  eqBytes(await concat(ipfs.cat(state.bCid)), fileB, 'cat(d/sub/b.bin)')
})

await check('cat /ipfs/<dir-cid>/sub/b.bin', async () => {
  need('dirCid')
  eqBytes(await concat(ipfs.cat(`/ipfs/${state.dirCid}/sub/b.bin`)), fileB, 'cat(/ipfs/<dir>/sub/b.bin)')
  eqBytes(await concat(ipfs.cat(`${state.dirCid}/a.txt`)), fileA, 'cat(<dir>/a.txt)')
})

await check('cat offset/length', async () => {
  need('chunkedCid', 'bCid')
  eqBytes(await concat(ipfs.cat(state.chunkedCid, { offset: 1000, length: 2500 })), buf5000.subarray(1000, 3500), 'cat offset=1000 length=2500')
  eqBytes(await concat(ipfs.cat(state.chunkedCid, { offset: 4000 })), buf5000.subarray(4000), 'cat offset=4000')
  eqBytes(await concat(ipfs.cat(state.chunkedCid, { length: 10 })), buf5000.subarray(0, 10), 'cat length=10')
  eqBytes(await concat(ipfs.cat(state.bCid, { offset: 262000, length: 1000 })), fileB.subarray(262000, 263000), 'cat across a chunk boundary')
})

await check('cat error is reported', async () => {
  await assert.rejects(concat(ipfs.cat('not-a-cid')), (err) => {
    assert.equal(err.name, 'HTTPError', `expected HTTPError, got ${err.name}: ${err.message}`)
    assert.ok(err.response.status >= 400, `status ${err.response.status}`)
    assert.ok(err.message.length > 0 && err.message !== err.response.statusText,
      `error message should come from the JSON "Message" field, got "${err.message}"`)
    return true
  })
})

const blockData = pseudoRandom(1234, 99)
await check('block.put', async () => {
  const expected = CID.createV1(raw.code, await sha256.digest(blockData))
  const cid = await ipfs.block.put(blockData)
  assert.equal(cidStr(cid), cidStr(expected), 'block.put(): default must be CIDv1 raw sha2-256')
  state.blockCid = cid
  // dag-pb codec: empty UnixFS directory node
  const emptyDir = Uint8Array.from([0x0a, 0x02, 0x08, 0x01])
  const pbCid = await ipfs.block.put(emptyDir, { cidCodec: 'dag-pb' })
  assert.equal(cidStr(pbCid), 'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354', 'block.put({cidCodec:"dag-pb"})')
})

await check('block.get', async () => {
  need('blockCid', 'smallCid')
  eqBytes(await ipfs.block.get(state.blockCid), blockData, 'block.get()')
  eqBytes(await ipfs.block.get(state.smallCid), Buffer.from('0a120802120c68656c6c6f20776f726c640a180c', 'hex'), 'block.get(small file node)')
})

await check('block.stat', async () => {
  need('blockCid')
  const s = await ipfs.block.stat(state.blockCid)
  assert.equal(cidStr(s.cid), cidStr(state.blockCid))
  assert.equal(s.size, blockData.length, 'block.stat(): "Size" must be a JSON number equal to the block length')
})

await check('pin.add', async () => {
  need('blockCid')
  const r = await ipfs.pin.add(state.blockCid)
  assert.equal(cidStr(r), cidStr(state.blockCid))
})

await check('pin.ls', async () => {
  need('blockCid', 'dirCid')
  const filtered = await collect(ipfs.pin.ls({ paths: [state.blockCid] }))
  assert.equal(filtered.length, 1, `pin.ls({paths}): expected 1 pin, got ${filtered.length}`)
  assert.equal(cidStr(filtered[0].cid), cidStr(state.blockCid))
  assert.equal(filtered[0].type, 'recursive')
  const all = await collect(ipfs.pin.ls())
  const find = (c) => all.find(p => p.cid.equals(c) || p.cid.toV1().equals(c.toV1()))
  assert.equal(find(state.blockCid)?.type, 'recursive', 'pin.ls(): pinned block not listed as recursive')
  // `ipfs add` pins by default
  assert.equal(find(state.dirCid)?.type, 'recursive', 'pin.ls(): added directory root not pinned recursively')
  const rec = await collect(ipfs.pin.ls({ type: 'recursive' }))
  assert.ok(rec.every(p => p.type === 'recursive'), 'pin.ls({type:"recursive"}) returned other types')
})

await check('pin.rm', async () => {
  need('blockCid')
  const r = await ipfs.pin.rm(state.blockCid)
  assert.equal(cidStr(r), cidStr(state.blockCid))
  const all = await collect(ipfs.pin.ls({ type: 'recursive' }))
  assert.ok(!all.some(p => p.cid.toV1().equals(state.blockCid.toV1())), 'pin.rm(): still listed')
  await assert.rejects(collect(ipfs.pin.ls({ paths: [state.blockCid] })), /not pinned/, 'pin.ls({paths}) of an unpinned cid must fail with "... is not pinned"')
})

await check('dag.export', async () => {
  need('dirCid')
  const car = await concat(ipfs.dag.export(state.dirCid))
  const reader = await CarReader.fromBytes(car)
  assert.equal(reader.version, 1, 'dag.export(): CAR version must be 1')
  const roots = await reader.getRoots()
  assert.equal(roots.length, 1)
  assert.equal(cidStr(roots[0]), cidStr(state.dirCid), 'dag.export(): header root')
  const { blocks: expected } = await oracleWithBlocks([
    { path: 'd/a.txt', content: fileA },
    { path: 'd/sub/b.bin', content: fileB }
  ])
  const got = []
  for await (const b of reader.blocks()) {
    const digest = await sha256.digest(b.bytes)
    assert.ok(Buffer.from(digest.bytes).equals(Buffer.from(b.cid.multihash.bytes)), `dag.export(): block ${b.cid} hash mismatch`)
    got.push(b)
  }
  assert.equal(cidStr(got[0].cid), cidStr(state.dirCid), 'dag.export(): first block must be the root')
  const gotSet = new Set(got.map(b => cidStr(b.cid)))
  assert.equal(gotSet.size, got.length, 'dag.export(): duplicate blocks')
  assert.deepEqual([...gotSet].sort(), [...expected.keys()].sort(), 'dag.export(): block set differs from the importer oracle DAG')
  state.car = car
})

await check('dag.import (exported CAR)', async () => {
  need('car', 'dirCid')
  const res = await collect(ipfs.dag.import([state.car]))
  assert.equal(res.length, 1, `dag.import(): expected 1 root line, got ${res.length}`)
  assert.equal(cidStr(res[0].root.cid), cidStr(state.dirCid))
  assert.ok(!res[0].root.pinErrorMsg, `dag.import(): PinErrorMsg "${res[0].root.pinErrorMsg}"`)
})

await check('dag.import (new CAR) then cat', async () => {
  const content = pseudoRandom(70000, 1234)
  const { entries, blocks } = await oracleWithBlocks([{ path: '', content }], { cidVersion: 1, rawLeaves: true, chunkSize: 16384 })
  const root = entries[entries.length - 1].cid
  const { writer, out } = CarWriter.create([root])
  const carPromise = concat(out)
  for (const b of blocks.values()) await writer.put(b)
  await writer.close()
  const car = await carPromise
  const res = await collect(ipfs.dag.import([car]))
  assert.equal(res.length, 1, `dag.import(): expected 1 root line, got ${res.length}`)
  assert.equal(cidStr(res[0].root.cid), cidStr(root))
  eqBytes(await concat(ipfs.cat(root)), content, 'cat(imported root)')
  const pinned = await collect(ipfs.pin.ls({ paths: [root] }))
  assert.equal(pinned[0]?.type, 'recursive', 'dag.import(): roots must be pinned by default (pin-roots=true)')
})

console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
