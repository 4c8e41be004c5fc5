#!/usr/bin/env node
// Self-test of the UnixFS oracle against CIDs from kubo's own test suite
// (t0040-add-and-cat.sh), so the oracle the Rust tests trust is itself checked.
// Usage: node selftest.mjs   -> prints "N passed, M failed", exit 1 on failure.

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
let passed = 0
let failed = 0
const report = (ok, name, extra = '') => {
  if (ok) passed++; else failed++
  console.log(`${ok ? 'ok' : 'not ok'} ${name}${extra}`)
}

function run (args, input) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { cwd: here, stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', d => { out += d })
    p.on('close', code => resolve({ code, out }))
    p.stdin.end(input ?? '')
  })
}

const dir = mkdtempSync(join(tmpdir(), 'lattice-oracle-'))
try {
  writeFileSync(join(dir, 'empty'), '')
  writeFileSync(join(dir, 'hello'), 'hello world\n')
  writeFileSync(join(dir, 'hello-nonl'), 'hello world')
  const opts = (o) => ({ cidVersion: 0, rawLeaves: false, chunkSize: 262144, maxChildrenPerNode: 174, wrapWithDirectory: false, ...o })
  const vectors = [
    ['empty file, CIDv0', opts({}), 'empty', 'QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH'],
    ['"hello world\\n", CIDv0', opts({}), 'hello', 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o'],
    ['"hello world", CIDv0', opts({}), 'hello-nonl', 'Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD'],
    ['"hello world\\n", CIDv1 raw leaves', opts({ cidVersion: 1, rawLeaves: true }), 'hello', 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4'],
    ['"hello world", CIDv1 raw leaves', opts({ cidVersion: 1, rawLeaves: true }), 'hello-nonl', 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e'],
    ['empty file, CIDv1 raw leaves', opts({ cidVersion: 1, rawLeaves: true }), 'empty', 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku']
  ]
  for (const [name, options, file, cid] of vectors) {
    const { code, out } = await run(['unixfs.mjs'], JSON.stringify({ options, entries: [{ path: file, file: join(dir, file) }] }))
    let got
    try { got = JSON.parse(out).entries.at(-1).cid } catch { got = `(exit ${code}) ${out}` }
    report(code === 0 && got === cid, `unixfs ${name}`, got === cid ? '' : `: got ${got}, want ${cid}`)
  }
  // Directory / file vectors from kubo's own sharness tests (t0040-add-and-cat.sh)
  const tree = (name, files) => files.map(([rel, text]) => {
    const abs = join(dir, `${name}__${rel.replaceAll('/', '__')}`)
    writeFileSync(abs, text)
    return { path: `${name}/${rel}`, file: abs }
  })
  const planets = tree('planets', [['mars.txt', 'Hello Mars!\n'], ['venus.txt', 'Hello Venus!\n']])
  const moons = tree('moons', [['jupiter/europa.txt', 'Hello Europa!\n'], ['mercury.txt', 'hey youre no moon!\n'], ['saturn/titan.txt', 'Hello Titan!\n']])
  const dirVectors = [
    ['planets (defaults)', opts({}), planets, { planets: 'QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY', 'planets/mars.txt': 'QmPrrHqJzto9m7SyiRzarwkqPcCSsKR2EB1AyqJfe8L8tN', 'planets/venus.txt': 'QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4' }],
    ['planets --raw-leaves', opts({ rawLeaves: true }), planets, { planets: 'QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT', 'planets/mars.txt': 'bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4' }],
    ['planets --cid-version=1', opts({ cidVersion: 1, rawLeaves: true }), planets, { planets: 'bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi', 'planets/venus.txt': 'bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca' }],
    ['planets --cid-version=1 --raw-leaves=false', opts({ cidVersion: 1, rawLeaves: false }), planets, { planets: 'bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y', 'planets/mars.txt': 'bafybeiawta2ntdmsy24aro35w3homzl4ak7svr3si7l7gesvq4erglyye4', 'planets/venus.txt': 'bafybeicvkvhs2fr75ynebtdjqpgm4g2fc63abqbmysupwpmcjl4gx7mzrm' }],
    ['moons (nested)', opts({}), moons, { moons: 'QmVKvomp91nMih5j6hYBA8KjbiaYvEetU2Q7KvtZkLe9nQ', 'moons/jupiter': 'QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J', 'moons/saturn': 'QmaMagZT4rTE7Nonw8KGSK4oe1bh533yhZrCo1HihSG8FK', 'moons/jupiter/europa.txt': 'Qmbjg7zWdqdMaK2BucPncJQDxiALExph5k3NkQv5RHpccu', 'moons/saturn/titan.txt': 'QmZzppb9WHn552rmRqpPfgU5FEiHH6gDwi3MrB9cTdPwdb', 'moons/mercury.txt': 'QmUJjVtnN8YEeYcS8VmUeWffTWhnMQAkk5DzZdKnPhqUdK' }],
    ['add -r . (hey, hello/world)', opts({}), tree('cur', [['hey', 'Hey\n'], ['hello/world', 'World\n']]), { cur: 'QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1' }],
    ['"World\\n" in a dir', opts({}), tree('hd', [['world', 'World\n']]), { 'hd/world': 'Qma9CyFdG5ffrZCcYSin2uAETygB25cswVwEYYzwfQuhTe' }],
    ['"Hello Worlds!\\n" size-64', opts({ chunkSize: 64 }), tree('w', [['hello.txt', 'Hello Worlds!\n']]), { 'w/hello.txt': 'QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH' }],
    ['"Hello Neptune!\\nHello Pluton!"', opts({}), tree('n', [['x', 'Hello Neptune!\nHello Pluton!']]), { 'n/x': 'QmZDhWpi8NvKrekaYYhxKCdNVGWsFFe1CREnAjP1QbPaB3' }]
  ]
  for (const [name, options, entries, want] of dirVectors) {
    const { code, out } = await run(['unixfs.mjs'], JSON.stringify({ options, entries }))
    let got = {}
    try { got = Object.fromEntries(JSON.parse(out).entries.map(e => [e.path, e.cid])) } catch {}
    const bad = Object.entries(want).filter(([p, c]) => got[p] !== c).map(([p, c]) => `${p}: got ${got[p]}, want ${c}`)
    report(code === 0 && bad.length === 0, `unixfs kubo vector ${name}`, bad.length ? `: ${bad.join('; ')}` : '')
  }

  {
    const { code, out } = await run(['unixfs.mjs', '--time'], JSON.stringify({ options: opts({}), entries: [{ path: 'hello', file: join(dir, 'hello') }] }))
    const ok = code === 0 && typeof JSON.parse(out).elapsedMs === 'number'
    report(ok, 'unixfs --time', ok ? '' : `: ${out}`)
  }

} finally {
  rmSync(dir, { recursive: true, force: true })
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
