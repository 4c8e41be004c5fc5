#!/usr/bin/env node
// Logging JSON-RPC reverse proxy (HTTP and WebSocket on one port), to see exactly which methods
// and param shapes a client sends.
//
//   node rpc_log.mjs --listen 8600 --target http://127.0.0.1:8599 [--out calls.jsonl]
//       forwards http://127.0.0.1:8600 -> target and ws://127.0.0.1:8600 -> ws://target; logs one
//       JSON line per JSON-RPC request: {via:"http"|"ws", batch:n?, method, params, error?}
//   --reject m1,m2: answer these methods itself with -32601 "method not found" (HTTP, WS, batches),
//       to see how clients cope with a node lacking them (e.g. anvil_nodeInfo, eth_fillTransaction).
//   node rpc_log.mjs --summarize calls.jsonl
//       prints each method once per distinct params *shape* (hex values abstracted), with counts.
import { createServer } from 'node:http';
import { appendFileSync, readFileSync } from 'node:fs';
import { WebSocket, WebSocketServer } from 'ws';

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

// ------------------------------------------------------------------ shapes
function shape(v, key) {
  if (Array.isArray(v)) return v.map((x) => shape(x, key));
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = shape(v[k], k);
    return o;
  }
  if (typeof v === 'string' && /^0x[0-9a-fA-F]*$/.test(v)) {
    if (key === 'data' || key === 'input') return '<bytes>';
    if (v.length === 42) return '<address>';
    if (v.length === 66) return '<bytes32>';
    if (v.length <= 18) return '<quantity>';
    return `<bytes>`;
  }
  return v;
}

if (opt('summarize')) {
  const lines = readFileSync(opt('summarize'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const seen = new Map();
  for (const l of lines) {
    const key = `${l.via}${l.batch ? ' (batch)' : ''} ${l.method} ${JSON.stringify(shape(l.params ?? []))}${l.error ? ` -> error ${l.error.code}` : ''}`;
    seen.set(key, (seen.get(key) || 0) + 1);
  }
  for (const [k, n] of [...seen].sort()) console.log(`${k}  x${n}`);
  process.exit(0);
}

const listen = Number(opt('listen') || 8600);
const target = opt('target') || 'http://127.0.0.1:8545';
const out = opt('out');
const reject = new Set((opt('reject') || '').split(',').filter(Boolean));
const notFound = (m) => ({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `the method ${m.method} does not exist/is not available` } });
/** Splits a request body into (rejected responses, body to forward or null). */
function filterRejected(body) {
  let msgs;
  try {
    msgs = JSON.parse(body);
  } catch {
    return { rejected: [], forward: body, single: true };
  }
  const single = !Array.isArray(msgs);
  const list = [].concat(msgs);
  const rejected = list.filter((m) => m && reject.has(m.method)).map(notFound);
  const keep = list.filter((m) => !(m && reject.has(m.method)));
  return { rejected, forward: keep.length ? JSON.stringify(single ? keep[0] : keep) : null, single };
}
const log = (rec) => {
  const line = JSON.stringify(rec);
  if (out) appendFileSync(out, line + '\n');
  else console.log(line);
};
const logRequests = (via, body, responses) => {
  let msgs;
  try {
    msgs = JSON.parse(body);
  } catch {
    return log({ via, invalid: String(body).slice(0, 200) });
  }
  const batch = Array.isArray(msgs) ? msgs.length : undefined;
  for (const m of [].concat(msgs)) {
    if (!m || typeof m !== 'object' || !m.method) continue;
    const resp = responses?.find((r) => r && r.id === m.id);
    log({ via, ...(batch ? { batch } : {}), method: m.method, params: m.params, ...(resp?.error ? { error: resp.error } : {}) });
  }
};

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks).toString();
  try {
    const { rejected, forward, single } = filterRejected(body);
    let status = 200;
    let text;
    if (forward !== null) {
      const r = await fetch(target, { method: req.method, headers: { 'content-type': 'application/json' }, body: req.method === 'POST' ? forward : undefined });
      status = r.status;
      text = await r.text();
    }
    let parsed;
    try {
      parsed = text === undefined ? [] : [].concat(JSON.parse(text));
    } catch {}
    if (rejected.length) {
      parsed = [...(parsed || []), ...rejected];
      text = JSON.stringify(single ? parsed[0] : parsed);
    }
    logRequests('http', body, parsed);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(text);
  } catch (e) {
    logRequests('http', body);
    res.writeHead(502).end(String(e));
  }
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (client) => wss.emit('connection', client)));
wss.on('connection', (client) => {
  const up = new WebSocket(target.replace(/^http/, 'ws'));
  const queue = [];
  const pending = new Map();
  up.on('open', () => queue.splice(0).forEach((m) => up.send(m)));
  up.on('message', (data) => {
    const text = data.toString();
    try {
      const m = JSON.parse(text);
      for (const r of [].concat(m)) {
        if (r && r.id !== undefined && pending.has(r.id)) {
          const req = pending.get(r.id);
          pending.delete(r.id);
          log({ via: 'ws', method: req.method, params: req.params, ...(r.error ? { error: r.error } : {}) });
        }
      }
    } catch {}
    if (client.readyState === WebSocket.OPEN) client.send(text);
  });
  up.on('close', () => client.close());
  up.on('error', () => client.close());
  client.on('message', (data) => {
    const text = data.toString();
    try {
      for (const m of [].concat(JSON.parse(text))) if (m && m.method) pending.set(m.id, m);
    } catch {}
    const { rejected, forward, single } = filterRejected(text);
    for (const r of rejected) {
      const m = pending.get(r.id);
      pending.delete(r.id);
      log({ via: 'ws', method: m?.method, params: m?.params, error: r.error });
    }
    if (rejected.length && forward === null) return client.send(JSON.stringify(single ? rejected[0] : rejected));
    if (rejected.length) throw new Error('rpc_log: --reject inside a WS batch is not supported');
    if (up.readyState === WebSocket.OPEN) up.send(forward);
    else queue.push(forward);
  });
  const done = () => {
    for (const req of pending.values()) log({ via: 'ws', method: req.method, params: req.params, noResponse: true });
    pending.clear();
    up.close();
  };
  client.on('close', done);
  client.on('error', done);
});
server.listen(listen, '127.0.0.1', () => console.error(`rpc_log: 127.0.0.1:${listen} -> ${target}${out ? ` (log ${out})` : ''}`));
