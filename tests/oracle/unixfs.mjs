#!/usr/bin/env node
// UnixFS importer oracle for Lattice.
//
// Reads a JSON job on stdin, runs the official JS UnixFS importer
// (ipfs-unixfs-importer) with kubo `ipfs add` semantics and prints JSON on
// stdout.
//
// Job:
//   {"options": {"cidVersion":0|1, "rawLeaves":bool, "chunkSize":N,
//                "maxChildrenPerNode":N, "wrapWithDirectory":bool},
//    "entries": [{"path":"rel/path", "file":"/abs/path"} | {"path":"dir", "dir":true}
//                | {"path":"p", "contentHex":"68690a"}, ...],
//    "timeOnly": false,      // optional; same as the --time flag
//    "emitBlocks": false}    // optional; also print every block (hex), small inputs only
//
// Output (normal):   {"entries":[{"path":..., "cid":..., "size":N}, ...]}
//                    in importer order; size = cumulative DAG size (kubo's
//                    "Size"); cid v0 as Qm..., v1 as base32. A nested empty
//                    directory listed with "dir": true is linked into its
//                    parent but, unlike kubo, gets no entry of its own.
//                    (+ "blocks":[{"cid":..., "hex":...}] with emitBlocks)
// Output (--time):   {"elapsedMs": <float ms spent in the import>}
//
// Missing options default to kubo's `ipfs add` defaults: cidVersion 0,
// rawLeaves = (cidVersion === 1) (kubo turns raw leaves on with CIDv1 unless
// told otherwise), chunkSize 262144 (size-262144), maxChildrenPerNode 174,
// wrapWithDirectory false.
//
// Blocks are never retained (the importer only ever calls blockstore.put and
// never reads back), so a 1 GiB file imports in constant memory. File contents
// are streamed from disk.
//
// Usage:
//   node unixfs.mjs [--time] < job.json
//
// The module can also be imported: see kuboAddOptions(), importEntries(),
// importBytesKubo().

import { createReadStream, realpathSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

export const KUBO_DEFAULTS = Object.freeze({
  cidVersion: 0,
  chunkSize: 262144,
  maxChildrenPerNode: 174,
  wrapWithDirectory: false
})

// Read buffer for file streams; the fixed-size chunker re-slices it.
const READ_HIGH_WATER_MARK = 1024 * 1024

/**
 * Full, explicit importer options reproducing kubo `ipfs add`
 * (balanced layout, fixed-size chunker, UnixFS 'file' leaves, no mtime/mode,
 * single-chunk files reduced to the leaf itself, HAMT sharding of
 * directories whose estimated link bytes exceed 256 KiB with fanout 256).
 */
export function kuboAddOptions (opts = {}) {
  const cidVersion = opts.cidVersion ?? KUBO_DEFAULTS.cidVersion
  if (cidVersion !== 0 && cidVersion !== 1) {
    throw new Error(`cidVersion must be 0 or 1, got ${cidVersion}`)
  }
  const rawLeaves = opts.rawLeaves ?? (cidVersion === 1)
  const chunkSize = opts.chunkSize ?? KUBO_DEFAULTS.chunkSize
  const maxChildrenPerNode = opts.maxChildrenPerNode ?? KUBO_DEFAULTS.maxChildrenPerNode
  const wrapWithDirectory = opts.wrapWithDirectory ?? KUBO_DEFAULTS.wrapWithDirectory
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new Error(`bad chunkSize ${chunkSize}`)
  if (!Number.isInteger(maxChildrenPerNode) || maxChildrenPerNode < 2) {
    throw new Error(`bad maxChildrenPerNode ${maxChildrenPerNode}`)
  }
  return {
    // no `profile`: everything is spelled out below
    cidVersion,
    rawLeaves: Boolean(rawLeaves),
    leafType: 'file',
    chunker: fixedSize({ chunkSize }),
    layout: balanced({ maxChildrenPerNode }),
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: Boolean(wrapWithDirectory),
    // dag-pb canonical form (Links before Data), as go-merkledag writes it
    fieldOrder: 'links-first',
    // kubo/boxo defaults for directory sharding
    shardSplitThresholdBytes: 262144,
    shardSplitStrategy: 'links-bytes',
    shardFanoutBits: 8,
    // concurrency does not change results or output order
    fileImportConcurrency: 50,
    blockWriteConcurrency: 10
  }
}

/**
 * Blockstore for the importer. It only ever calls put(cid, bytes); blocks are
 * discarded unless `record` is set, in which case they are kept in `blocks`
 * (Map cid string -> {cid, bytes}, in first-put order).
 */
export class DiscardBlockstore extends BlackHoleBlockstore {
  constructor (record = false) {
    super()
    this.record = record
    this.blocks = new Map()
  }

  put (key, value, options) {
    if (this.record) {
      const k = key.toString()
      if (!this.blocks.has(k)) this.blocks.set(k, { cid: key, bytes: Uint8Array.from(value) })
    }
    return super.put(key, value, options)
  }
}

function toCandidates (entries) {
  if (!Array.isArray(entries)) throw new Error('job.entries must be an array')
  return entries.map((e, i) => {
    if (typeof e.path !== 'string') throw new Error(`entries[${i}].path must be a string`)
    if (e.dir === true) return { path: e.path } // no content => directory
    if (typeof e.file === 'string') {
      return { path: e.path, content: createReadStream(e.file, { highWaterMark: READ_HIGH_WATER_MARK }) }
    }
    if (typeof e.contentHex === 'string') {
      return { path: e.path, content: Buffer.from(e.contentHex, 'hex') }
    }
    throw new Error(`entries[${i}] needs "file", "dir": true or "contentHex"`)
  })
}

/**
 * Import candidates ({path, content?}) with kubo semantics.
 * Returns [{path, cid (string), size (number)}] in importer order.
 */
export async function importEntries (candidates, opts = {}, blockstore = new DiscardBlockstore()) {
  const out = []
  for await (const entry of importer(candidates, blockstore, kuboAddOptions(opts))) {
    out.push({ path: entry.path, cid: entry.cid.toString(), size: Number(entry.size) })
  }
  return out
}

/** CID string kubo's `ipfs add` gives for one unnamed buffer. */
export async function importBytesKubo (bytes, opts = {}) {
  const res = await importEntries([{ path: '', content: bytes }], { ...opts, wrapWithDirectory: false })
  return res[res.length - 1]
}

export async function runJob (job, { timeOnly = false } = {}) {
  const emitBlocks = job.emitBlocks === true && !timeOnly
  const blockstore = new DiscardBlockstore(emitBlocks)
  const candidates = toCandidates(job.entries ?? [])
  const opts = kuboAddOptions(job.options ?? {})
  if (timeOnly) {
    const t0 = performance.now()
    for await (const _ of importer(candidates, blockstore, opts)) { /* drain */ }
    return { elapsedMs: performance.now() - t0 }
  }
  const entries = []
  for await (const entry of importer(candidates, blockstore, opts)) {
    entries.push({ path: entry.path, cid: entry.cid.toString(), size: Number(entry.size) })
  }
  const result = { entries }
  if (emitBlocks) {
    result.blocks = [...blockstore.blocks.values()].map(({ cid, bytes }) => ({ cid: cid.toString(), hex: Buffer.from(bytes).toString('hex') }))
  }
  return result
}

async function readStdin () {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}

async function main () {
  const args = process.argv.slice(2)
  for (const a of args) {
    if (a !== '--time') throw new Error(`unknown argument ${a} (usage: node unixfs.mjs [--time] < job.json)`)
  }
  const job = JSON.parse(await readStdin())
  const timeOnly = args.includes('--time') || job.timeOnly === true
  const result = await runJob(job, { timeOnly })
  process.stdout.write(JSON.stringify(result) + '\n')
}

function isMain () {
  try {
    return process.argv[1] != null && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isMain()) {
  main().catch(err => {
    process.stderr.write(`unixfs oracle error: ${err?.stack ?? err}\n`)
    process.exit(1)
  })
}
