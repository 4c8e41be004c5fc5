#!/usr/bin/env python3
"""Black-box JSON-RPC checks of a dev chain with web3.py + eth-account (raw signed txs only).

Env: RPC_URL (default http://127.0.0.1:8545), WS_URL (default RPC_URL as ws://), REGISTRY (ModelRegistry address, default the
Lattice genesis address), CHAIN_ID (optional: expected chain id). Prints one line per check;
exits 1 at the first failed check.
"""
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

NAME = "web3.py"
RPC_URL = os.environ.get("RPC_URL", "http://127.0.0.1:8545")
WS_URL = os.environ.get("WS_URL") or RPC_URL.replace("http", "ws", 1)
REGISTRY = Web3.to_checksum_address(
    os.environ.get("REGISTRY") or "0x4c61747469636500000000000000000000000001"
)
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ROOT = Path(__file__).resolve().parents[2]
RECEIPT_TIMEOUT = 30


def fail(msg):
    print(f"FAIL {NAME}: {msg}", flush=True)
    sys.exit(1)


def check(name, cond, detail=""):
    if not cond:
        fail(f"{name}{': ' + str(detail) if detail else ''}")
    print(f"ok   {NAME}: {name}{' (' + str(detail) + ')' if detail else ''}", flush=True)


def _show(v):
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, str) and len(v) > 80:
        return v[:40] + "…" + v[-8:]
    if isinstance(v, (tuple, list)):
        return type(v)(_show(x) for x in v)
    return v


def eq(name, got, want):
    if isinstance(got, bytes):
        got = bytes(got)
    if got != want:
        fail(f"{name}: got {got!r}, want {want!r}")
    print(f"ok   {NAME}: {name} = {_show(got)!r}", flush=True)


def artifact(name):
    d = json.loads((ROOT / "contracts" / "artifacts" / f"{name}.json").read_text())
    return d["abi"], d["bytecode"]


def main():
    w3 = Web3(Web3.HTTPProvider(RPC_URL, request_kwargs={"timeout": 30}))
    acct0 = Account.from_key(KEY0)
    acct1 = Account.from_key(KEY1)
    eq("account 0 address", acct0.address, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")

    # ---------------------------------------------------------------- basic reads
    chain_id = w3.eth.chain_id
    check("eth_chainId > 0", chain_id > 0, chain_id)
    if os.environ.get("CHAIN_ID"):
        eq("chain id matches CHAIN_ID", chain_id, int(os.environ["CHAIN_ID"]))
    n0 = w3.eth.block_number
    check("eth_blockNumber >= 0", isinstance(n0, int) and n0 >= 0, n0)
    latest = w3.eth.get_block("latest")
    check("latest block number >= eth_blockNumber", latest["number"] >= n0, latest["number"])
    check("latest block has baseFeePerGas", isinstance(latest.get("baseFeePerGas"), int), latest.get("baseFeePerGas"))
    check("latest block hash is 32 bytes", len(latest["hash"]) == 32)
    if latest["number"] > 0:
        parent = w3.eth.get_block(latest["number"] - 1)
        eq("parent block hash == latest.parentHash", parent["hash"], latest["parentHash"])
    by_hash = w3.eth.get_block(latest["hash"])
    eq("get_block(hash).number", by_hash["number"], latest["number"])
    bal0 = w3.eth.get_balance(acct0.address)
    check("account 0 funded", bal0 > 10**18, bal0)
    tip = w3.eth.max_priority_fee
    check("eth_maxPriorityFeePerGas >= 0", tip >= 0, tip)

    def fees():
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        return {"maxFeePerGas": 2 * base + tip + 1, "maxPriorityFeePerGas": tip}

    def send(acct, tx, gas=None):
        """Signs locally with eth-account, sends raw, waits for the receipt."""
        tx = dict(tx)
        tx.setdefault("value", 0)
        tx["chainId"] = chain_id
        tx["type"] = 2
        tx["nonce"] = w3.eth.get_transaction_count(acct.address, "pending")
        tx.update(fees())
        if gas is None:
            est = dict(tx)
            est["from"] = acct.address
            for k in ("nonce", "chainId", "type"):
                est.pop(k)
            gas = w3.eth.estimate_gas(est)
        tx["gas"] = gas
        signed = acct.sign_transaction(tx)
        h = w3.eth.send_raw_transaction(signed.raw_transaction)
        eq("send_raw_transaction returns the signed tx hash", bytes(h), bytes(signed.hash))
        rcpt = w3.eth.wait_for_transaction_receipt(h, timeout=RECEIPT_TIMEOUT, poll_latency=0.2)
        return tx, h, rcpt

    # ---------------------------------------------------------------- deploy Counter
    abi, bytecode = artifact("Counter")
    tx, h, rcpt = send(acct0, {"data": bytecode})
    eq("deploy receipt status", rcpt["status"], 1)
    check("deploy receipt has contractAddress", rcpt["contractAddress"] is not None, rcpt["contractAddress"])
    eq("deploy receipt.to", rcpt["to"], None)
    eq("deploy contractAddress == keccak(rlp(sender, nonce))",
       rcpt["contractAddress"],
       Web3.to_checksum_address(keccak(_rlp_list([bytes.fromhex(acct0.address[2:]), _rlp_int(tx["nonce"])]))[12:]))
    deployed = json.loads((ROOT / "contracts/artifacts/Counter.json").read_text())["deployedBytecode"]
    code = w3.eth.get_code(rcpt["contractAddress"])
    eq("eth_getCode == deployedBytecode", "0x" + code.hex().removeprefix("0x"), deployed)
    counter = w3.eth.contract(address=rcpt["contractAddress"], abi=abi)
    deploy_block = rcpt["blockNumber"]
    eq("number() after deploy", counter.functions.number().call(), 0)

    # ---------------------------------------------------------------- increment
    inc_data = counter.encode_abi("increment")
    est = w3.eth.estimate_gas({"from": acct0.address, "to": counter.address, "data": inc_data})
    check("estimate_gas(increment) > 21000", est > 21000, est)
    tx, h, rcpt = send(acct0, {"to": counter.address, "data": inc_data}, gas=est)
    eq("increment receipt status", rcpt["status"], 1)
    check("gasUsed <= estimate <= 1.5*gasUsed", rcpt["gasUsed"] <= est <= rcpt["gasUsed"] * 3 // 2, f"used {rcpt['gasUsed']} est {est}")
    eq("increment receipt transactionHash", bytes(rcpt["transactionHash"]), bytes(h))
    eq("increment receipt from", rcpt["from"], acct0.address)
    eq("increment receipt to", rcpt["to"], counter.address)
    eq("increment receipt has 1 log", len(rcpt["logs"]), 1)
    blk = w3.eth.get_block(rcpt["blockNumber"])
    eq("receipt.blockHash == block(receipt.blockNumber).hash", bytes(rcpt["blockHash"]), bytes(blk["hash"]))
    check("tx hash in block.transactions", bytes(h) in [bytes(t) for t in blk["transactions"]])
    check("effectiveGasPrice <= maxFeePerGas and >= baseFee", blk["baseFeePerGas"] <= rcpt["effectiveGasPrice"] <= tx["maxFeePerGas"], rcpt["effectiveGasPrice"])
    ev = counter.events.Incremented().process_receipt(rcpt, errors=DISCARD)
    eq("Incremented events decoded", len(ev), 1)
    eq("Incremented.by", ev[0]["args"]["by"], acct0.address)
    eq("Incremented.value", ev[0]["args"]["value"], 1)
    eq("Incremented log address", ev[0]["address"], counter.address)
    eq("number() after increment", counter.functions.number().call(), 1)
    eq("number() at block_identifier=receipt block", counter.functions.number().call(block_identifier=rcpt["blockNumber"]), 1)

    # set(41) + increment -> 42, second Incremented event
    set_data = counter.encode_abi("set", args=[41])
    _, _, r = send(acct0, {"to": counter.address, "data": set_data})
    eq("set(41) status", r["status"], 1)
    eq("set(41) emits no logs", len(r["logs"]), 0)
    _, _, r2 = send(acct1, {"to": counter.address, "data": inc_data})
    eq("increment from account 1 status", r2["status"], 1)
    eq("number() == 42", counter.functions.number().call(), 42)

    # ---------------------------------------------------------------- revert reason
    try:
        counter.functions.fail().call({"from": acct0.address})
        fail("eth_call fail() did not raise")
    except ContractLogicError as e:
        check("eth_call fail() raises ContractLogicError with reason", e.message == "execution reverted: counter: nope", e.message)
        data = e.data if isinstance(e.data, str) else str(e.data)
        check("revert data is Error(string) selector 0x08c379a0", data.startswith("0x08c379a0"), data[:10])
    try:
        w3.eth.estimate_gas({"from": acct0.address, "to": counter.address, "data": counter.encode_abi("fail")})
        fail("estimate_gas fail() did not raise")
    except ContractLogicError as e:
        check("estimate_gas fail() raises with reason", e.message == "execution reverted: counter: nope", e.message)

    # ---------------------------------------------------------------- logs
    topic0 = Web3.keccak(text="Incremented(address,uint256)")
    logs = w3.eth.get_logs({
        "fromBlock": deploy_block,
        "toBlock": r2["blockNumber"],
        "address": counter.address,
        "topics": [topic0],
    })
    eq("get_logs(address, topic0, range) count", len(logs), 2)
    dec = [counter.events.Incremented().process_log(l)["args"] for l in logs]
    eq("get_logs decoded (by, value)", [(d["by"], d["value"]) for d in dec], [(acct0.address, 1), (acct1.address, 42)])
    eq("get_logs blockNumbers ascending", [l["blockNumber"] for l in logs], [rcpt["blockNumber"], r2["blockNumber"]])
    logs = w3.eth.get_logs({
        "fromBlock": deploy_block,
        "toBlock": "latest",
        "address": counter.address,
        "topics": [topic0, "0x" + "00" * 12 + acct1.address[2:].lower()],
    })
    eq("get_logs filtered by indexed `by` == account 1", [l["transactionHash"] for l in logs], [r2["transactionHash"]])
    logs = w3.eth.get_logs({"fromBlock": deploy_block, "toBlock": "latest", "address": counter.address,
                            "topics": [Web3.keccak(text="Other(uint256)")]})
    eq("get_logs with non-matching topic", len(logs), 0)
    if deploy_block > 0:
        logs = w3.eth.get_logs({"fromBlock": 0, "toBlock": deploy_block - 1, "address": counter.address})
        eq("get_logs over range before deploy", len(logs), 0)

    # ---------------------------------------------------------------- ETH transfer + exact delta
    to = Account.create().address
    value = 123_456_789_000_000_007
    before_from = w3.eth.get_balance(acct0.address)
    eq("fresh recipient balance", w3.eth.get_balance(to), 0)
    tx, h, r = send(acct0, {"to": to, "value": value}, gas=21000)
    eq("transfer status", r["status"], 1)
    eq("transfer gasUsed", r["gasUsed"], 21000)
    eq("recipient balance == value", w3.eth.get_balance(to), value)
    after_from = w3.eth.get_balance(acct0.address)
    eq("sender delta == value + gasUsed*effectiveGasPrice", before_from - after_from, value + r["gasUsed"] * r["effectiveGasPrice"])
    got = w3.eth.get_transaction(h)
    eq("get_transaction.hash", bytes(got["hash"]), bytes(h))
    eq("get_transaction.from", got["from"], acct0.address)
    eq("get_transaction.to", got["to"], to)
    eq("get_transaction.value", got["value"], value)
    eq("get_transaction.nonce", got["nonce"], tx["nonce"])
    eq("get_transaction.gas", got["gas"], 21000)
    eq("get_transaction.type", got["type"], 2)
    eq("get_transaction.maxFeePerGas", got["maxFeePerGas"], tx["maxFeePerGas"])
    eq("get_transaction.blockNumber", got["blockNumber"], r["blockNumber"])
    eq("get_transaction.chainId", got["chainId"], chain_id)
    rc = w3.eth.get_transaction_receipt(h)
    eq("get_transaction_receipt.gasUsed", rc["gasUsed"], 21000)
    eq("nonce 'pending' == last nonce + 1", w3.eth.get_transaction_count(acct0.address, "pending"), tx["nonce"] + 1)
    eq("nonce 'latest' == last nonce + 1", w3.eth.get_transaction_count(acct0.address, "latest"), tx["nonce"] + 1)

    # ---------------------------------------------------------------- ModelRegistry
    rabi, _ = artifact("ModelRegistry")
    reg = w3.eth.contract(address=REGISTRY, abi=rabi)
    check("registry has code", len(w3.eth.get_code(REGISTRY)) > 0, REGISTRY)
    root_cid = bytes.fromhex("1220") + secrets.token_bytes(32)
    manifest_cid = bytes.fromhex("1220") + secrets.token_bytes(32)
    model_id = keccak(root_cid)
    args = (root_cid, manifest_cid, "web3-model", "gguf", "llama", 12345, False)
    count_before = reg.functions.modelCount().call()
    sim = reg.functions.registerModel(*args).call({"from": acct1.address})
    eq("registerModel eth_call returns keccak(rootCid)", bytes(sim), model_id)
    data = reg.encode_abi("registerModel", args=list(args))
    _, h, r = send(acct1, {"to": REGISTRY, "data": data})
    eq("registerModel status", r["status"], 1)
    evs = reg.events.ModelRegistered().process_receipt(r, errors=DISCARD)
    eq("ModelRegistered events", len(evs), 1)
    a = evs[0]["args"]
    eq("ModelRegistered.modelId", bytes(a["modelId"]), model_id)
    eq("ModelRegistered.owner", a["owner"], acct1.address)
    eq("ModelRegistered (name, format, architecture, price, isPrivate)",
       (a["name"], a["format"], a["architecture"], a["price"], a["isPrivate"]), ("web3-model", "gguf", "llama", 12345, False))
    va = reg.events.VersionAdded().process_receipt(r, errors=DISCARD)
    eq("VersionAdded (version, rootCid, manifestCid)",
       (va[0]["args"]["version"], bytes(va[0]["args"]["rootCid"]), bytes(va[0]["args"]["manifestCid"])), (0, root_cid, manifest_cid))
    eq("modelCount += 1", reg.functions.modelCount().call(), count_before + 1)
    m = reg.functions.getModel(model_id).call()
    ts = w3.eth.get_block(r["blockNumber"])["timestamp"]
    # ModelView: id, owner, name, format, architecture, rootCid, latestRootCid, latestManifestCid,
    #            latest, price, revenue, createdAt, active, isPrivate
    eq("getModel", (bytes(m[0]), m[1], m[2], m[3], m[4], bytes(m[5]), bytes(m[6]), bytes(m[7]), m[8], m[9], m[10], m[11], m[12], m[13]),
       (model_id, acct1.address, "web3-model", "gguf", "llama", root_cid, root_cid, manifest_cid, 0, 12345, 0, ts, True, False))
    try:
        reg.functions.registerModel(*args).call({"from": acct0.address})
        fail("re-registering the same rootCid did not revert")
    except ContractLogicError as e:
        # CidAlreadyUsed(bytes32) selector + the cid hash
        check("re-register reverts CidAlreadyUsed(keccak(rootCid))", model_id.hex() in str(e.data), str(e.data)[:20])

    # ---------------------------------------------------------------- WS subscriptions
    def poke():
        _, _, r = send(acct0, {"to": counter.address, "data": inc_data})
        return r

    asyncio.run(ws_checks(w3, chain_id, counter, topic0, poke))
    print(f"PASS {NAME}", flush=True)


async def ws_checks(w3, chain_id, counter, topic0, poke):
    """newHeads and logs subscriptions over WS_URL (AsyncWeb3 + WebSocketProvider) while txs are sent."""
    from web3 import AsyncWeb3, WebSocketProvider

    async with AsyncWeb3(WebSocketProvider(WS_URL)) as aw3:
        eq("WS eth_chainId", await aw3.eth.chain_id, chain_id)
        heads_id = await aw3.eth.subscribe("newHeads")
        logs_id = await aw3.eth.subscribe("logs", {"address": counter.address, "topics": [topic0]})
        check("eth_subscribe returned two distinct ids", heads_id != logs_id, (heads_id, logs_id))
        heads, logs, mine = [], [], {}

        async def reader():
            async for msg in aw3.socket.process_subscriptions():
                if msg["subscription"] == heads_id:
                    heads.append(msg["result"])
                elif msg["subscription"] == logs_id:
                    logs.append(msg["result"])

        task = asyncio.create_task(reader())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        try:
            while not (len(heads) >= 2 and any(bytes(l["transactionHash"]) in mine for l in logs)):
                if loop.time() > deadline:
                    fail(f"WS: timed out after 20 s: {len(heads)} newHeads, {len(logs)} logs")
                r = await asyncio.to_thread(poke)
                mine[bytes(r["transactionHash"])] = r
                await asyncio.sleep(0.5)
        finally:
            task.cancel()
        nums = [h["number"] for h in heads]
        check("WS newHeads >= 2, numbers strictly increase", len(nums) >= 2 and all(b > a for a, b in zip(nums, nums[1:])), nums)
        h = heads[-1]
        blk = w3.eth.get_block(h["number"])
        eq("WS newHead (hash, parentHash, timestamp) == get_block(number)",
           (bytes(h["hash"]), bytes(h["parentHash"]), h["timestamp"]), (bytes(blk["hash"]), bytes(blk["parentHash"]), blk["timestamp"]))
        log = next(l for l in logs if bytes(l["transactionHash"]) in mine)
        r = mine[bytes(log["transactionHash"])]
        ev = counter.events.Incremented().process_log(log)["args"]
        want = counter.events.Incremented().process_receipt(r, errors=DISCARD)[0]["args"]
        eq("WS logs subscription Incremented (by, value, blockNumber)", (ev["by"], ev["value"], log["blockNumber"]),
           (want["by"], want["value"], r["blockNumber"]))
        eq("eth_unsubscribe(newHeads)", await aw3.eth.unsubscribe(heads_id), True)
        eq("eth_unsubscribe(logs)", await aw3.eth.unsubscribe(logs_id), True)


def _rlp_int(n):
    return b"" if n == 0 else n.to_bytes((n.bit_length() + 7) // 8, "big")


def _rlp_list(items):
    def enc(b):
        if len(b) == 1 and b[0] < 0x80:
            return b
        assert len(b) < 56
        return bytes([0x80 + len(b)]) + b

    body = b"".join(enc(i) for i in items)
    assert len(body) < 56
    return bytes([0xC0 + len(body)]) + body


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # any unexpected client error is a failed check too
        import traceback

        traceback.print_exc()
        fail(f"unexpected {type(e).__name__}: {e}")
