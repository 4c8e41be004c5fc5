#!/usr/bin/env node
// Black-box JSON-RPC checks of a dev chain with ethers 6 (JsonRpcProvider + Wallet over HTTP,
// WebSocketProvider for newHeads and log subscriptions). Env: RPC_URL, WS_URL, REGISTRY, CHAIN_ID.
import { ethers } from 'ethers';
import {
  ADDR0, ADDR1, KEY0, KEY1, REGISTRY, RPC_URL, TIMEOUT_MS, WS_URL, artifact, makeChecks, randomCid, waitFor,
} from './lib.mjs';

const { check, eq, fail, run } = makeChecks('ethers');

run(async () => {
  const provider = new ethers.JsonRpcProvider(RPC_URL, undefined, { pollingInterval: 250, cacheTimeout: -1 });
  // cacheTimeout -1: ethers otherwise reuses an identical request's result for 250 ms, e.g. a
  // 'pending' nonce fetched just before the previous tx was mined ("nonce too low" on fast chains).
  const w0 = new ethers.Wallet(KEY0, provider);
  const w1 = new ethers.Wallet(KEY1, provider);
  eq('wallet 0 address', w0.address, ADDR0);
  eq('wallet 1 address', w1.address, ADDR1);

  // ------------------------------------------------------------------ basics
  const net = await provider.getNetwork();
  check('chainId > 0', net.chainId > 0n, net.chainId);
  if (process.env.CHAIN_ID) eq('chainId == CHAIN_ID', net.chainId, BigInt(process.env.CHAIN_ID));
  const bn = await provider.getBlockNumber();
  const latest = await provider.getBlock('latest');
  check('latest.number >= blockNumber', latest.number >= bn, latest.number);
  check('latest.baseFeePerGas is set', typeof latest.baseFeePerGas === 'bigint', latest.baseFeePerGas);
  const fd = await provider.getFeeData();
  check('getFeeData maxFeePerGas >= maxPriorityFeePerGas >= 0', fd.maxFeePerGas >= fd.maxPriorityFeePerGas && fd.maxPriorityFeePerGas >= 0n, fd);

  // ------------------------------------------------------------------ WS newHeads
  const ws = new ethers.WebSocketProvider(WS_URL);
  const heads = [];
  await ws.on('block', (n) => heads.push(n));
  eq('WS eth_chainId == HTTP chainId', (await ws.getNetwork()).chainId, net.chainId);
  check('WS eth_blockNumber >= HTTP blockNumber', (await ws.getBlockNumber()) >= bn);

  // ------------------------------------------------------------------ Counter
  const C = artifact('Counter');
  const counter = await new ethers.ContractFactory(C.abi, C.bytecode, w0).deploy();
  const deployTx = counter.deploymentTransaction();
  const dr = await deployTx.wait(1, TIMEOUT_MS);
  eq('deploy status', dr.status, 1);
  const caddr = await counter.getAddress();
  eq('deploy contractAddress == getCreateAddress(from, nonce)', dr.contractAddress, ethers.getCreateAddress({ from: w0.address, nonce: deployTx.nonce }));
  eq('getCode == deployedBytecode', await provider.getCode(caddr), C.deployedBytecode);
  eq('number() == 0', await counter.number(), 0n);

  const est = await counter.increment.estimateGas();
  check('estimateGas(increment) > 21000', est > 21000n, est);
  const incTx = await counter.increment();
  const ir = await incTx.wait(1, TIMEOUT_MS);
  eq('increment status', ir.status, 1);
  check('gasUsed <= estimate', ir.gasUsed <= est, { gasUsed: ir.gasUsed, est });
  eq('increment receipt.to', ir.to, caddr);
  eq('increment receipt.from', ir.from, w0.address);
  eq('increment logs', ir.logs.length, 1);
  const parsed = counter.interface.parseLog(ir.logs[0]);
  eq('Incremented(by, value) from receipt', [parsed.name, parsed.args.by, parsed.args.value], ['Incremented', w0.address, 1n]);
  eq('number() == 1', await counter.number(), 1n);
  eq('number() blockTag=receipt block', await counter.number({ blockTag: ir.blockNumber }), 1n);

  const setR = await (await counter.set(99n)).wait(1, TIMEOUT_MS);
  eq('set(99) status', setR.status, 1);
  const ir2 = await (await counter.connect(w1).increment()).wait(1, TIMEOUT_MS);
  eq('increment by wallet 1 status', ir2.status, 1);
  eq('number() == 100', await counter.number(), 100n);

  // queryFilter -> eth_getLogs
  const evs = await counter.queryFilter(counter.filters.Incremented(), dr.blockNumber, ir2.blockNumber);
  eq('queryFilter(Incremented, range)', evs.map((e) => [e.args.by, e.args.value, e.blockNumber, e.transactionHash]),
    [[w0.address, 1n, ir.blockNumber, ir.hash], [w1.address, 100n, ir2.blockNumber, ir2.hash]]);
  const evs1 = await counter.queryFilter(counter.filters.Incremented(w1.address), dr.blockNumber, 'latest');
  eq('queryFilter(Incremented(by=wallet1))', evs1.map((e) => e.transactionHash), [ir2.hash]);

  // revert reason
  try {
    await counter.fail.staticCall();
    fail('fail() staticCall did not revert');
  } catch (e) {
    eq('fail() staticCall: CALL_EXCEPTION reason', [e.code, e.reason], ['CALL_EXCEPTION', 'counter: nope']);
  }
  try {
    await counter.fail.estimateGas();
    fail('fail() estimateGas did not revert');
  } catch (e) {
    eq('fail() estimateGas: CALL_EXCEPTION reason', [e.code, e.reason], ['CALL_EXCEPTION', 'counter: nope']);
  }

  // ------------------------------------------------------------------ feeHistory
  const head = await provider.getBlockNumber();
  const fh = await provider.send('eth_feeHistory', ['0x4', 'latest', [25, 75]]);
  const newest = Number(fh.oldestBlock) + fh.gasUsedRatio.length - 1; // a block may land meanwhile
  const nBlocks = Math.min(4, newest + 1);
  check('feeHistory newest block >= head seen before', newest >= head, { oldestBlock: fh.oldestBlock, head });
  eq('feeHistory gasUsedRatio length', fh.gasUsedRatio.length, nBlocks);
  eq('feeHistory baseFeePerGas length (blocks + next)', fh.baseFeePerGas.length, nBlocks + 1);
  eq('feeHistory reward shape', [fh.reward.length, fh.reward.every((r) => r.length === 2)], [nBlocks, true]);
  const hb = await provider.getBlock(newest);
  eq('feeHistory baseFee of newest block == block.baseFeePerGas', BigInt(fh.baseFeePerGas[nBlocks - 1]), hb.baseFeePerGas);
  const ratio = Number(hb.gasUsed) / Number(hb.gasLimit);
  check('feeHistory gasUsedRatio of newest block == gasUsed/gasLimit', Math.abs(fh.gasUsedRatio[nBlocks - 1] - ratio) < 1e-9, { got: fh.gasUsedRatio[nBlocks - 1], ratio });
  check('feeHistory gasUsedRatio in [0,1]', fh.gasUsedRatio.every((x) => x >= 0 && x <= 1), fh.gasUsedRatio);

  // ------------------------------------------------------------------ transfer
  const to = ethers.Wallet.createRandom().address;
  const value = 987_654_321_000_000_003n;
  const before = await provider.getBalance(w0.address);
  eq('fresh recipient balance', await provider.getBalance(to), 0n);
  const ttx = await w0.sendTransaction({ to, value });
  const tr = await ttx.wait(1, TIMEOUT_MS);
  eq('transfer status / gasUsed', [tr.status, tr.gasUsed], [1, 21000n]);
  eq('recipient balance == value', await provider.getBalance(to), value);
  eq('sender delta == value + gasUsed*gasPrice', before - (await provider.getBalance(w0.address)), value + tr.gasUsed * tr.gasPrice);
  const got = await provider.getTransaction(ttx.hash);
  eq('getTransaction (from,to,value,nonce,type,blockNumber)', [got.from, got.to, got.value, got.nonce, got.type, got.blockNumber],
    [w0.address, to, value, ttx.nonce, 2, tr.blockNumber]);
  const blk = await provider.getBlock(tr.blockNumber, true);
  check('getBlock(n, prefetch) contains the transfer', blk.prefetchedTransactions.some((t) => t.hash === ttx.hash && t.value === value));
  eq('pending nonce == last + 1', await provider.getTransactionCount(w0.address, 'pending'), ttx.nonce + 1);

  // ------------------------------------------------------------------ ModelRegistry
  const R = artifact('ModelRegistry');
  const reg = new ethers.Contract(REGISTRY, R.abi, w0);
  check('registry has code', (await provider.getCode(REGISTRY)) !== '0x', REGISTRY);
  const rootCid = randomCid();
  const manifestCid = randomCid();
  const modelId = ethers.keccak256(rootCid);
  const args = [rootCid, manifestCid, 'ethers-model', 'onnx', 'bert', 777n, true];
  const count0 = await reg.modelCount();
  eq('registerModel staticCall returns keccak(rootCid)', await reg.registerModel.staticCall(...args), modelId);
  const rr = await (await reg.registerModel(...args)).wait(1, TIMEOUT_MS);
  eq('registerModel status', rr.status, 1);
  const regLogs = rr.logs.map((l) => reg.interface.parseLog(l)).filter(Boolean);
  eq('registerModel events', regLogs.map((l) => l.name), ['ModelRegistered', 'VersionAdded']);
  const a = regLogs[0].args;
  eq('ModelRegistered args', [a.modelId, a.owner, a.name, a.format, a.architecture, a.price, a.isPrivate],
    [modelId, w0.address, 'ethers-model', 'onnx', 'bert', 777n, true]);
  eq('modelCount += 1', await reg.modelCount(), count0 + 1n);
  const m = await reg.getModel(modelId);
  const ts = (await provider.getBlock(rr.blockNumber)).timestamp;
  eq('getModel', [m.id, m.owner, m.name, m.format, m.architecture, m.rootCid, m.latestRootCid, m.latestManifestCid, m.latest, m.price, m.revenue, m.createdAt, m.active, m.isPrivate],
    [modelId, w0.address, 'ethers-model', 'onnx', 'bert', rootCid, rootCid, manifestCid, 0n, 777n, 0n, BigInt(ts), true, true]);
  const regEvs = await reg.queryFilter(reg.filters.ModelRegistered(modelId), rr.blockNumber, rr.blockNumber);
  eq('queryFilter(ModelRegistered(modelId))', regEvs.map((e) => e.transactionHash), [rr.hash]);
  try {
    await reg.registerModel.staticCall(...args);
    fail('re-registering the same rootCid did not revert');
  } catch (e) {
    eq('re-register reverts CidAlreadyUsed(id)', [e.revert?.name, e.revert?.args?.[0]], ['CidAlreadyUsed', modelId]);
  }

  // ------------------------------------------------------------------ WS: newHeads + contract.on
  const wsCounter = new ethers.Contract(caddr, C.abi, ws);
  const seen = [];
  await wsCounter.on('Incremented', (by, v, ev) => seen.push({ by, v, block: ev.log.blockNumber, tx: ev.log.transactionHash }));
  const poke = async () => {
    await (await w1.sendTransaction({ to: ADDR1, value: 1n })).wait(1, TIMEOUT_MS);
  };
  await waitFor('first newHeads event', () => heads.length >= 1, { poke });
  const i3 = await (await counter.increment()).wait(1, TIMEOUT_MS);
  eq('increment status', i3.status, 1);
  await waitFor('>= 2 newHeads incl. the increment block', () => heads.length >= 2 && heads.includes(i3.blockNumber), { poke });
  check('newHeads block numbers strictly increase', heads.every((n, i) => i === 0 || n > heads[i - 1]), heads);
  check('received >= 2 newHeads, last >= increment block', heads.length >= 2 && heads.at(-1) >= i3.blockNumber, heads);
  // The log subscription may become active a moment after `on` returns: increment until one of
  // our increments is delivered.
  const mine = new Map();
  await waitFor('Incremented log via WS subscription', () => [...mine.keys()].some((h) => seen.some((s) => s.tx === h)), {
    poke: async () => {
      const r = await (await counter.increment()).wait(1, TIMEOUT_MS);
      mine.set(r.hash, r);
    },
  });
  const hit = seen.find((s) => mine.has(s.tx));
  const hr = mine.get(hit.tx);
  const want = counter.interface.parseLog(hr.logs[0]).args;
  eq('WS Incremented event == receipt log', hit, { by: w0.address, v: want.value, block: hr.blockNumber, tx: hr.hash });
  check('WS Incremented value > 101', want.value > 101n, want.value);
  await ws.removeAllListeners();
  await ws.destroy();
  provider.destroy();
});
