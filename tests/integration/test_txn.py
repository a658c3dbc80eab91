"""PUT /v1/txn against a real agent: atomic KV transactions through Raft, 409 answers that
apply nothing, read-only transactions with ?stale/?consistent, locks and lock-delay inside
transactions, and Consul's limits and error answers."""
import base64
import json

import pytest


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def txn(agent, ops, query=""):
    body = ops if isinstance(ops, (str, bytes)) else json.dumps(ops)
    status, headers, out = agent.request("PUT", "/v1/txn" + query, body)
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = out
    return status, headers, parsed


def kv(verb, key, value=None, **kw):
    op = {"Verb": verb, "Key": key}
    if value is not None:
        op["Value"] = b64(value)
    op.update(kw)
    return {"KV": op}


def get_value(agent, key):
    status, _, out = agent.request("GET", "/v1/kv/%s?raw" % key)
    return out if status == 200 else None


def test_write_txn_results(agent):
    status, _, out = txn(agent, [kv("set", "t/a", "1", Flags=7), kv("set", "t/b", "2"),
                                 kv("get", "t/a"), kv("get-tree", "t/")])
    assert status == 200, out
    assert list(out.keys()) == ["Results", "Errors"] and out["Errors"] is None
    res = out["Results"]
    assert len(res) == 5  # set, set, get, and two from get-tree
    a = res[0]["KV"]
    assert list(a.keys()) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    assert a["Key"] == "t/a" and a["Flags"] == 7 and a["Value"] is None
    assert res[2]["KV"]["Value"] == b64("1")
    assert [r["KV"]["Key"] for r in res[3:]] == ["t/a", "t/b"]
    # One Raft entry: every write carries the same index.
    assert res[0]["KV"]["ModifyIndex"] == res[1]["KV"]["ModifyIndex"]
    assert get_value(agent, "t/b") == b"2"


def test_failed_check_applies_nothing(agent):
    agent.request("PUT", "/v1/kv/acct/alice", "100")
    idx = json.loads(agent.request("GET", "/v1/kv/acct/alice")[2])[0]["ModifyIndex"]
    status, _, out = txn(agent, [
        kv("set", "acct/alice", "50"),
        kv("set", "acct/bob", "50"),
        kv("check-index", "acct/alice", Index=idx + 1000),
        kv("delete", "acct/alice"),
    ])
    assert status == 409
    assert out["Results"] is None
    assert len(out["Errors"]) == 1 and out["Errors"][0]["OpIndex"] == 2
    # The set before it already moved the key's index inside the transaction.
    assert out["Errors"][0]["What"].startswith('failed index check for key "acct/alice", current modify index ')
    assert out["Errors"][0]["What"].endswith(" != %d" % (idx + 1000))
    assert get_value(agent, "acct/alice") == b"100"
    assert get_value(agent, "acct/bob") is None
    # The same with the right index applies everything.
    status, _, out = txn(agent, [kv("set", "acct/alice", "50"), kv("set", "acct/bob", "50"),
                                 kv("check-index", "acct/alice", Index=0)])
    assert status == 409  # check-index sees the set's new index, not 0
    status, _, out = txn(agent, [kv("check-index", "acct/alice", Index=idx),
                                 kv("set", "acct/alice", "50"), kv("set", "acct/bob", "50")])
    assert status == 200, out
    assert get_value(agent, "acct/alice") == b"50" and get_value(agent, "acct/bob") == b"50"


def test_cas_and_not_exists(agent):
    status, _, out = txn(agent, [kv("check-not-exists", "cas/k"), kv("cas", "cas/k", "v", Index=0)])
    assert status == 200, out
    status, _, out = txn(agent, [kv("cas", "cas/k", "w", Index=0)])
    assert status == 409
    assert out["Errors"] == [{"OpIndex": 0, "What": 'failed to set key "cas/k", index is stale'}]
    status, _, out = txn(agent, [kv("check-not-exists", "cas/k")])
    assert status == 409 and out["Errors"][0]["What"] == 'key "cas/k" exists'


def test_read_only_txn_consistency(agent):
    agent.request("PUT", "/v1/kv/ro/x", "hello")
    for q in ("", "?stale", "?consistent"):
        status, headers, out = txn(agent, [kv("get", "ro/x"), kv("get-or-empty", "ro/none")], q)
        assert status == 200, out
        assert out["Results"][0]["KV"]["Value"] == b64("hello")
        assert out["Results"][1]["KV"]["Value"] is None
        assert out["Errors"] is None
        assert headers["x-consul-knownleader"] == "true"
        assert "x-consul-lastcontact" in headers
        assert out["KnownLeader"] is True
    status, _, out = txn(agent, [kv("get", "ro/missing")], "?stale")
    assert status == 409 and out["Errors"][0]["What"] == 'key "ro/missing" doesn\'t exist'
    status, _, out = txn(agent, [kv("get", "ro/x")], "?stale&consistent")
    assert status == 400


def test_lock_and_lock_delay(agent):
    s1 = json.loads(agent.request("PUT", "/v1/session/create", json.dumps({"LockDelay": "15s"}))[2])["ID"]
    s2 = json.loads(agent.request("PUT", "/v1/session/create", json.dumps({"LockDelay": 0}))[2])["ID"]
    status, _, out = txn(agent, [kv("lock", "tl/k", "v", Session=s1), kv("check-session", "tl/k", Session=s1)])
    assert status == 200, out
    assert out["Results"][0]["KV"]["Session"] == s1 and out["Results"][0]["KV"]["LockIndex"] == 1
    status, _, out = txn(agent, [kv("lock", "tl/k", "v", Session=s2)])
    assert status == 409
    assert out["Errors"][0]["What"] == 'failed to lock key "tl/k", lock is already held'
    agent.request("PUT", "/v1/session/destroy/" + s1)
    # Released with a 15 s lock-delay: nobody may lock it for now.
    status, _, out = txn(agent, [kv("lock", "tl/k", "v", Session=s2)])
    assert status == 409
    assert out["Errors"] == [{"OpIndex": 0, "What": 'failed to lock key "tl/k" due to lock delay'}]
    status, _, out = txn(agent, [kv("lock", "tl/other", "v", Session="00000000-0000-0000-0000-000000000000")])
    assert status == 409
    assert out["Errors"][0]["What"] == 'invalid session "00000000-0000-0000-0000-000000000000"'


@pytest.mark.parametrize("body,status,text", [
    ("{nope", 400, "Failed to parse body"),
    ('{"KV": {}}', 400, "Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps"),
    (json.dumps([kv("get", "k")] * 129), 413, "Transaction contains too many operations (129 > 128)"),
    (json.dumps([kv("set", "", "v")]), 409, None),
    (json.dumps([{"KV": {"Verb": "set", "Key": "k", "Value": "!!!"}}]), 400, "Failed to parse body"),
])
def test_errors(agent, body, status, text):
    got, _, out = agent.request("PUT", "/v1/txn", body)
    assert got == status, out
    if text:
        assert out.decode().startswith(text), out


def test_empty_key_precheck(agent):
    status, _, out = txn(agent, [kv("set", "ok/k", "v"), kv("set", "", "v")])
    assert status == 409
    assert out["Errors"] == [{"OpIndex": 1, "What": "Must provide key"}]
    assert get_value(agent, "ok/k") is None


def test_value_too_large(agent):
    big = "x" * (512 * 1024 + 1)
    status, _, out = agent.request("PUT", "/v1/txn", json.dumps([kv("set", "big", big)]))
    assert status == 413


def test_method_and_unknown_verb(agent):
    assert agent.request("GET", "/v1/txn")[0] == 405
    status, _, out = txn(agent, [kv("frobnicate", "k")])
    assert status == 409 and out["Errors"][0]["What"] == 'unknown KV verb "frobnicate"'


def test_catalog_get_ops(agent):
    status, _, out = txn(agent, [{"Node": {"Verb": "get", "Node": {"Node": agent.node}}},
                                 {"Service": {"Verb": "get", "Node": agent.node, "Service": {"ID": "consul"}}},
                                 {"Check": {"Verb": "get", "Check": {"Node": agent.node, "CheckID": "serfHealth"}}}])
    assert status == 200, out
    assert out["Results"][0]["Node"]["Node"] == agent.node
    assert out["Results"][1]["Service"]["ID"] == "consul"
    assert out["Results"][2]["Check"]["CheckID"] == "serfHealth"
    status, _, out = txn(agent, [{"Node": {"Verb": "set", "Node": {"Node": "x", "Address": "1.2.3.4"}}}])
    assert status == 409


def test_pretty(agent):
    status, _, out = agent.request("PUT", "/v1/txn?pretty", json.dumps([kv("set", "pp", "v")]))
    assert status == 200
    assert out.startswith(b'{\n    "Results": [\n        {\n            "KV": {') and out.endswith(b"}\n")
    json.loads(out)
