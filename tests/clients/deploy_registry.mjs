#!/usr/bin/env node
// Deploys contracts/artifacts/ModelRegistry.json on a running chain (for chains without the
// Lattice genesis registry, e.g. anvil) and prints its address on stdout (only that line).
// Env: RPC_URL. Constructor: (admin = treasury = dev account 0, pinningPool = 0x4c61…0002).
import { readFileSync } from 'node:fs';
import { ethers } from 'ethers';

const RPC_URL = process.env.RPC_URL || 'http://127.0.0.1:8545';
const KEY0 = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80';
const POOL = '0x4c61747469636500000000000000000000000002';

const art = JSON.parse(readFileSync(new URL('../../contracts/artifacts/ModelRegistry.json', import.meta.url)));
const provider = new ethers.JsonRpcProvider(RPC_URL, undefined, { pollingInterval: 250, cacheTimeout: -1 });
const wallet = new ethers.Wallet(KEY0, provider);
try {
  const c = await new ethers.ContractFactory(art.abi, art.bytecode, wallet).deploy(wallet.address, POOL, wallet.address);
  const rcpt = await c.deploymentTransaction().wait(1, 30_000);
  if (rcpt.status !== 1) throw new Error(`deploy status ${rcpt.status}`);
  const addr = await c.getAddress();
  if ((await provider.getCode(addr)) !== art.deployedBytecode) throw new Error('deployed code differs from the artifact');
  console.log(addr);
} catch (e) {
  console.error(`deploy_registry: ${e.shortMessage || e.message}`);
  process.exit(1);
} finally {
  provider.destroy();
}
