// Shared helpers of the JS client scripts: one line per check, exit 1 at the first failure.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export const KEY0 = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80';
export const KEY1 = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d';
export const ADDR0 = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
export const ADDR1 = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
export const RPC_URL = process.env.RPC_URL || 'http://127.0.0.1:8545';
export const WS_URL = process.env.WS_URL || RPC_URL.replace(/^http/, 'ws');
export const REGISTRY = process.env.REGISTRY || '0x4c61747469636500000000000000000000000001';
/** Seconds to wait for receipts, new heads and subscribed events. */
export const TIMEOUT_MS = 20_000;

export function artifact(name) {
  return JSON.parse(readFileSync(new URL(`../../contracts/artifacts/${name}.json`, import.meta.url)));
}

/** A random CIDv0-shaped (0x1220 + 32 bytes) root CID, so every run registers a new model. */
export function randomCid() {
  return '0x1220' + randomBytes(32).toString('hex');
}

const show = (v) =>
  JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x))?.replace(/^"(.{60}).{10,}(.{8})"$/, '"$1…$2"');

export function makeChecks(name) {
  const fail = (msg) => {
    console.log(`FAIL ${name}: ${msg}`);
    process.exit(1);
  };
  const check = (what, cond, detail) => {
    if (!cond) fail(`${what}${detail !== undefined ? `: ${show(detail)}` : ''}`);
    console.log(`ok   ${name}: ${what}${detail !== undefined ? ` (${show(detail)})` : ''}`);
  };
  const eq = (what, got, want) => {
    if (show(got) !== show(want)) fail(`${what}: got ${show(got)}, want ${show(want)}`);
    console.log(`ok   ${name}: ${what} = ${show(got)}`);
  };
  for (const ev of ['uncaughtException', 'unhandledRejection']) {
    process.on(ev, (e) => {
      console.error(e);
      fail(`${ev}: ${e?.shortMessage || e?.message || e}`);
    });
  }
  /** Runs `main`, turning any exception into a failed check; exits 0 on success. */
  const run = (main) =>
    main().then(
      () => {
        console.log(`PASS ${name}`);
        process.exit(0);
      },
      (e) => {
        console.error(e);
        fail(`unexpected error: ${e?.shortMessage || e?.message || e}`);
      },
    );
  return { check, eq, fail, run };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until true; `poke` (e.g. send a tx) runs about once a second meanwhile. */
export async function waitFor(what, cond, { timeoutMs = TIMEOUT_MS, poke } = {}) {
  const end = Date.now() + timeoutMs;
  let lastPoke = 0;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (poke && Date.now() - lastPoke >= 1000) {
      lastPoke = Date.now();
      await poke();
    }
    await sleep(100);
  }
}
