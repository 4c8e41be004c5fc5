#!/usr/bin/env node
// Black-box JSON-RPC checks of a dev chain with viem 2 (http transport for public/wallet
// clients, webSocket transport for watchBlocks / watchContractEvent). Env: RPC_URL, WS_URL,
// REGISTRY, CHAIN_ID.
import {
  createPublicClient, createWalletClient, decodeErrorResult, defineChain, encodeFunctionData, getAddress,
  getContractAddress, http, keccak256, parseAbiItem, parseEventLogs, webSocket, BaseError, ContractFunctionRevertedError,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import {
  ADDR0, ADDR1, KEY0, KEY1, REGISTRY, RPC_URL, TIMEOUT_MS, WS_URL, artifact, makeChecks, randomCid, waitFor,
} from './lib.mjs';

const { check, eq, fail, run } = makeChecks('viem');

run(async () => {
  const probe = createPublicClient({ transport: http(RPC_URL) });
  const chainId = await probe.getChainId();
  check('chainId > 0', chainId > 0, chainId);
  if (process.env.CHAIN_ID) eq('chainId == CHAIN_ID', chainId, Number(process.env.CHAIN_ID));
  const chain = defineChain({
    id: chainId,
    name: 'devnet',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [RPC_URL], webSocket: [WS_URL] } },
  });
  const pub = createPublicClient({ chain, transport: http(RPC_URL), pollingInterval: 250 });
  const acc0 = privateKeyToAccount(KEY0);
  const acc1 = privateKeyToAccount(KEY1);
  eq('account addresses', [acc0.address, acc1.address], [ADDR0, ADDR1]);
  const w0 = createWalletClient({ account: acc0, chain, transport: http(RPC_URL), pollingInterval: 250 });
  const w1 = createWalletClient({ account: acc1, chain, transport: http(RPC_URL), pollingInterval: 250 });
  const wait = (hash) => pub.waitForTransactionReceipt({ hash, timeout: TIMEOUT_MS, pollingInterval: 250 });

  // ------------------------------------------------------------------ basics
  const bn = await pub.getBlockNumber({ cacheTime: 0 });
  const latest = await pub.getBlock({ blockTag: 'latest' });
  check('latest.number >= blockNumber', latest.number >= bn, latest.number);
  check('latest.baseFeePerGas set', typeof latest.baseFeePerGas === 'bigint', latest.baseFeePerGas);
  const fees = await pub.estimateFeesPerGas();
  check('estimateFeesPerGas maxFeePerGas >= maxPriorityFeePerGas', fees.maxFeePerGas >= fees.maxPriorityFeePerGas, fees);
  const gp = await pub.getGasPrice();
  check('eth_gasPrice is a quantity', typeof gp === 'bigint' && gp >= 0n, gp);

  // ------------------------------------------------------------------ WS newHeads
  const ws = createPublicClient({ chain, transport: webSocket(WS_URL), pollingInterval: 250 });
  const heads = [];
  let headErr;
  const unwatchBlocks = ws.watchBlocks({ onBlock: (b) => heads.push(b), onError: (e) => {
    headErr = e;
    fail(`watchBlocks (WS ${WS_URL}) error: ${e?.shortMessage || e?.message}`);
  } });

  // ------------------------------------------------------------------ Counter
  const C = artifact('Counter');
  const nonce0 = await pub.getTransactionCount({ address: acc0.address, blockTag: 'pending' });
  const dh = await w0.deployContract({ abi: C.abi, bytecode: C.bytecode });
  const dr = await wait(dh);
  eq('deploy status', dr.status, 'success');
  const caddr = dr.contractAddress;
  eq('contractAddress == getContractAddress(from, nonce)', caddr?.toLowerCase(), getContractAddress({ from: acc0.address, nonce: BigInt(nonce0) }).toLowerCase());
  eq('getCode == deployedBytecode', await pub.getCode({ address: caddr }), C.deployedBytecode);
  const counter = { address: caddr, abi: C.abi };
  eq('number() == 0', await pub.readContract({ ...counter, functionName: 'number' }), 0n);

  const est = await pub.estimateContractGas({ ...counter, functionName: 'increment', account: acc0 });
  const est2 = await pub.estimateGas({ account: acc0, to: caddr, data: encodeFunctionData({ abi: C.abi, functionName: 'increment' }) });
  eq('estimateContractGas == estimateGas(raw data)', est, est2);
  check('estimateGas(increment) > 21000', est > 21000n, est);
  const ih = await w0.writeContract({ ...counter, functionName: 'increment' });
  const ir = await wait(ih);
  eq('increment status', ir.status, 'success');
  check('gasUsed <= estimate', ir.gasUsed <= est, { used: ir.gasUsed, est });
  const ilogs = parseEventLogs({ abi: C.abi, logs: ir.logs });
  eq('receipt Incremented', ilogs.map((l) => [l.eventName, l.args.by, l.args.value, l.address]), [['Incremented', acc0.address, 1n, caddr.toLowerCase()]]);
  eq('number() == 1', await pub.readContract({ ...counter, functionName: 'number' }), 1n);
  eq('number() at receipt block', await pub.readContract({ ...counter, functionName: 'number', blockNumber: ir.blockNumber }), 1n);

  const { request: setReq } = await pub.simulateContract({ ...counter, functionName: 'set', args: [7n], account: acc0 });
  eq('set(7) status', (await wait(await w0.writeContract(setReq))).status, 'success');
  const ir2 = await wait(await w1.writeContract({ ...counter, functionName: 'increment' }));
  eq('increment by account 1 status', ir2.status, 'success');
  eq('number() == 8', await pub.readContract({ ...counter, functionName: 'number' }), 8n);

  // getLogs / getContractEvents
  const event = parseAbiItem('event Incremented(address indexed by, uint256 value)');
  const logs = await pub.getLogs({ address: caddr, event, fromBlock: dr.blockNumber, toBlock: ir2.blockNumber });
  eq('getLogs(event, range)', logs.map((l) => [l.args.by, l.args.value, l.blockNumber, l.transactionHash]),
    [[acc0.address, 1n, ir.blockNumber, ih], [acc1.address, 8n, ir2.blockNumber, ir2.transactionHash]]);
  const logs1 = await pub.getLogs({ address: caddr, event, args: { by: acc1.address }, fromBlock: dr.blockNumber, toBlock: 'latest' });
  eq('getLogs(args.by = account 1)', logs1.map((l) => l.transactionHash), [ir2.transactionHash]);
  const cev = await pub.getContractEvents({ ...counter, eventName: 'Incremented', fromBlock: dr.blockNumber, toBlock: 'latest' });
  eq('getContractEvents(Incremented)', cev.map((l) => l.args.value), [1n, 8n]);
  const none = await pub.getLogs({ address: caddr, event: parseAbiItem('event Other(uint256 x)'), fromBlock: dr.blockNumber });
  eq('getLogs(non-matching event)', none.length, 0);

  // revert reasons
  try {
    await pub.call({ account: acc0, to: caddr, data: encodeFunctionData({ abi: C.abi, functionName: 'fail' }) });
    fail('call fail() did not revert');
  } catch (e) {
    const data = e instanceof BaseError ? e.walk((x) => typeof x?.data === 'string')?.data : undefined;
    check('call fail() error carries revert data', typeof data === 'string' && data.startsWith('0x08c379a0'), data);
    const dec = decodeErrorResult({ abi: C.abi, data });
    eq('call fail() decoded revert', [dec.errorName, dec.args], ['Error', ['counter: nope']]);
  }
  try {
    await pub.readContract({ ...counter, functionName: 'fail' });
    fail('readContract fail() did not revert');
  } catch (e) {
    const r = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : undefined;
    eq('readContract fail() ContractFunctionRevertedError.reason', r?.reason, 'counter: nope');
  }
  try {
    await pub.estimateContractGas({ ...counter, functionName: 'fail', account: acc0 });
    fail('estimateContractGas fail() did not revert');
  } catch (e) {
    const r = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : undefined;
    eq('estimateContractGas fail() reason', r?.reason, 'counter: nope');
  }

  // ------------------------------------------------------------------ feeHistory
  const fh = await pub.getFeeHistory({ blockCount: 3, rewardPercentiles: [10, 90] });
  const fhHead = Number(fh.oldestBlock) + fh.gasUsedRatio.length - 1;
  check('feeHistory covers <= 3 blocks ending at or after the head seen earlier', fh.gasUsedRatio.length >= 1 && fh.gasUsedRatio.length <= 3 && fhHead >= Number(ir2.blockNumber), fh.oldestBlock);
  eq('feeHistory baseFeePerGas length', fh.baseFeePerGas.length, fh.gasUsedRatio.length + 1);
  eq('feeHistory reward shape', fh.reward.map((r) => r.length), fh.gasUsedRatio.map(() => 2));
  eq('feeHistory base fee of its newest block', fh.baseFeePerGas.at(-2), (await pub.getBlock({ blockNumber: BigInt(fhHead) })).baseFeePerGas);

  // ------------------------------------------------------------------ transfer
  const to = privateKeyToAccount(generatePrivateKey()).address;
  const value = 555_000_000_000_000_001n;
  const before = await pub.getBalance({ address: acc1.address });
  eq('fresh recipient balance', await pub.getBalance({ address: to }), 0n);
  const th = await w1.sendTransaction({ to, value });
  const tr = await wait(th);
  eq('transfer status/gasUsed', [tr.status, tr.gasUsed], ['success', 21000n]);
  eq('recipient balance == value', await pub.getBalance({ address: to }), value);
  eq('sender delta == value + gasUsed*effectiveGasPrice', before - (await pub.getBalance({ address: acc1.address })), value + tr.gasUsed * tr.effectiveGasPrice);
  const tx = await pub.getTransaction({ hash: th });
  eq('getTransaction (from,to,value,type,blockNumber)', [tx.from, getAddress(tx.to), tx.value, tx.type, tx.blockNumber],
    [acc1.address.toLowerCase(), to, value, 'eip1559', tr.blockNumber]);
  const blk = await pub.getBlock({ blockNumber: tr.blockNumber, includeTransactions: true });
  check('getBlock(includeTransactions) contains transfer', blk.transactions.some((t) => t.hash === th && t.value === value));
  eq('pending nonce == tx.nonce + 1', await pub.getTransactionCount({ address: acc1.address, blockTag: 'pending' }), tx.nonce + 1);

  // ------------------------------------------------------------------ ModelRegistry
  const R = artifact('ModelRegistry');
  const reg = { address: REGISTRY, abi: R.abi };
  check('registry has code', ((await pub.getCode({ address: REGISTRY })) ?? '0x') !== '0x', REGISTRY);
  const rootCid = randomCid();
  const manifestCid = randomCid();
  const modelId = keccak256(rootCid);
  const args = [rootCid, manifestCid, 'viem-model', 'safetensors', 'mistral', 0n, false];
  const count0 = await pub.readContract({ ...reg, functionName: 'modelCount' });
  const sim = await pub.simulateContract({ ...reg, functionName: 'registerModel', args, account: acc1 });
  eq('simulateContract(registerModel).result == keccak(rootCid)', sim.result, modelId);
  const rr = await wait(await w1.writeContract(sim.request));
  eq('registerModel status', rr.status, 'success');
  const rl = parseEventLogs({ abi: R.abi, logs: rr.logs });
  eq('registerModel events', rl.map((l) => l.eventName), ['ModelRegistered', 'VersionAdded']);
  const a = rl[0].args;
  eq('ModelRegistered args', [a.modelId, a.owner, a.name, a.format, a.architecture, a.price, a.isPrivate],
    [modelId, acc1.address, 'viem-model', 'safetensors', 'mistral', 0n, false]);
  eq('VersionAdded args', [rl[1].args.modelId, rl[1].args.version, rl[1].args.rootCid, rl[1].args.manifestCid], [modelId, 0n, rootCid, manifestCid]);
  eq('modelCount += 1', await pub.readContract({ ...reg, functionName: 'modelCount' }), count0 + 1n);
  const m = await pub.readContract({ ...reg, functionName: 'getModel', args: [modelId] });
  const ts = (await pub.getBlock({ blockNumber: rr.blockNumber })).timestamp;
  eq('getModel', m, {
    id: modelId, owner: acc1.address, name: 'viem-model', format: 'safetensors', architecture: 'mistral', rootCid,
    latestRootCid: rootCid, latestManifestCid: manifestCid, latest: 0n, price: 0n, revenue: 0n, createdAt: ts, active: true, isPrivate: false,
  });
  const rev = await pub.getContractEvents({ ...reg, eventName: 'ModelRegistered', args: { modelId }, fromBlock: rr.blockNumber, toBlock: rr.blockNumber });
  eq('getContractEvents(ModelRegistered, args.modelId)', rev.map((l) => l.transactionHash), [rr.transactionHash]);
  try {
    await pub.simulateContract({ ...reg, functionName: 'registerModel', args, account: acc0 });
    fail('re-registering the same rootCid did not revert');
  } catch (e) {
    const r = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : undefined;
    eq('re-register reverts CidAlreadyUsed(id)', [r?.data?.errorName, r?.data?.args?.[0]], ['CidAlreadyUsed', modelId]);
  }

  // ------------------------------------------------------------------ WS: newHeads + contract events
  const seen = [];
  const unwatchEv = ws.watchContractEvent({ ...counter, eventName: 'Incremented', onLogs: (ls) => seen.push(...ls) });
  const poke = async () => {
    await wait(await w0.sendTransaction({ to: ADDR0, value: 1n }));
  };
  const heads0 = heads.length;
  await waitFor('>= 2 newHeads', () => heads.length >= heads0 + 2 && heads.length >= 2, { poke });
  check('watchBlocks: no error', headErr === undefined, headErr?.message);
  check('newHeads numbers strictly increase', heads.every((b, i) => i === 0 || b.number > heads[i - 1].number), heads.map((b) => b.number));
  check('newHeads parentHash links consecutive heads', heads.every((b, i) => i === 0 || b.number !== heads[i - 1].number + 1n || b.parentHash === heads[i - 1].hash));
  const hb = heads.at(-1);
  const fetched = await pub.getBlock({ blockNumber: hb.number });
  eq('newHead == getBlock(number) (hash, parentHash, timestamp, baseFeePerGas)',
    [hb.hash, hb.parentHash, hb.timestamp, hb.baseFeePerGas], [fetched.hash, fetched.parentHash, fetched.timestamp, fetched.baseFeePerGas]);
  const mine = new Set();
  await waitFor('Incremented via WS watchContractEvent', () => seen.some((l) => mine.has(l.transactionHash)), {
    poke: async () => mine.add((await wait(await w0.writeContract({ ...counter, functionName: 'increment' }))).transactionHash),
  });
  const hit = seen.find((l) => mine.has(l.transactionHash));
  const hitR = await pub.getTransactionReceipt({ hash: hit.transactionHash });
  eq('WS Incremented == receipt log', [hit.args.by, hit.args.value, hit.blockNumber, hit.logIndex],
    [acc0.address, parseEventLogs({ abi: C.abi, logs: hitR.logs })[0].args.value, hitR.blockNumber, hitR.logs[0].logIndex]);
  check('WS Incremented value > 8', hit.args.value > 8n, hit.args.value);
  unwatchEv();
  unwatchBlocks();
  await (await ws.transport.getRpcClient()).close();
});
