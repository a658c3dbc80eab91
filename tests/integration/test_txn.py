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
    status, _, out = txn(agent, [{"Node": {"Verb": "get", "Node": {"Node": "nope"}}}])
    assert status == 409 and out["Errors"] == [{"OpIndex": 0, "What": 'node "nope" doesn\'t exist'}]


def node_op(verb, name, **kw):
    n = {"Node": name}
    n.update(kw)
    return {"Node": {"Verb": verb, "Node": n}}


def svc_op(verb, node, **kw):
    return {"Service": {"Verb": verb, "Node": node, "Service": kw}}


def check_op(verb, **kw):
    return {"Check": {"Verb": verb, "Check": kw}}


def test_catalog_writes_with_kv(agent):
    status, _, out = txn(agent, [
        node_op("set", "tx-n1", Address="10.1.0.1", Meta={"rack": "r1"}),
        svc_op("set", "tx-n1", ID="web-1", Service="web", Port=8080, Tags=["v1"]),
        check_op("set", Node="tx-n1", CheckID="web-alive", Name="web alive", Status="passing",
                 ServiceID="web-1", Definition={"HTTP": "http://10.1.0.1:8080/", "Interval": "10s"}),
        kv("set", "tx/cat", "1"),
    ])
    assert status == 200, out
    res = out["Results"]
    assert [list(r.keys())[0] for r in res] == ["Node", "Service", "Check", "KV"]
    node, svc, chk, kvr = (res[0]["Node"], res[1]["Service"], res[2]["Check"], res[3]["KV"])
    assert node["Node"] == "tx-n1" and node["Address"] == "10.1.0.1"
    assert node["Datacenter"] == "dc1" and node["Meta"] == {"rack": "r1"}
    assert svc["ID"] == "web-1" and svc["Service"] == "web" and svc["Port"] == 8080
    assert svc["Tags"] == ["v1"]
    assert chk["CheckID"] == "web-alive" and chk["ServiceName"] == "web"
    assert chk["Definition"]["HTTP"] == "http://10.1.0.1:8080/"
    # One Raft entry: every row carries the same index.
    assert node["ModifyIndex"] == svc["ModifyIndex"] == chk["ModifyIndex"] == kvr["ModifyIndex"]
    status, _, body = agent.request("GET", "/v1/catalog/service/web")
    rows = json.loads(body)
    assert [r["Node"] for r in rows] == ["tx-n1"] and rows[0]["ServicePort"] == 8080
    status, _, body = agent.request("GET", "/v1/health/service/web?passing")
    assert len(json.loads(body)) == 1

    # cas: the right index updates, a stale one is refused, 0 is set-if-absent.
    idx = svc["ModifyIndex"]
    status, _, out = txn(agent, [svc_op("cas", "tx-n1", ID="web-1", Service="web", Port=9090,
                                        ModifyIndex=idx)])
    assert status == 200, out
    assert out["Results"][0]["Service"]["Port"] == 9090
    status, _, out = txn(agent, [svc_op("cas", "tx-n1", ID="web-1", Service="web", Port=1,
                                        ModifyIndex=idx)])
    assert status == 409
    assert out["Errors"][0]["What"] == 'failed to set service "web-1" on node "tx-n1", index is stale'
    status, _, out = txn(agent, [node_op("cas", "tx-n1", Address="10.1.0.9", ModifyIndex=0)])
    assert out["Errors"][0]["What"] == 'failed to set node "tx-n1", index is stale'

    # Deletes: the check by delete-cas, then the service, then the node.
    cidx = chk["ModifyIndex"]
    status, _, out = txn(agent, [check_op("delete-cas", Node="tx-n1", CheckID="web-alive",
                                          ModifyIndex=cidx + 100)])
    assert out["Errors"][0]["What"] == 'failed to delete check "web-alive" on node "tx-n1", index is stale'
    status, _, out = txn(agent, [check_op("delete-cas", Node="tx-n1", CheckID="web-alive",
                                          ModifyIndex=cidx),
                                 svc_op("delete", "tx-n1", ID="web-1", Service="web"),
                                 node_op("delete", "tx-n1")])
    assert status == 200, out
    assert out["Results"] == []
    assert json.loads(agent.request("GET", "/v1/catalog/service/web")[2]) == []
    assert agent.request("GET", "/v1/catalog/node/tx-n1")[2] == b"null"


def test_failing_catalog_op_rolls_back_kv(agent):
    agent.request("PUT", "/v1/kv/rb/keep", "old")
    status, _, out = txn(agent, [node_op("set", "rb-n1", Address="10.2.0.1")])
    assert status == 200, out
    before = {p: agent.request("GET", p)[2] for p in
              ("/v1/kv/rb/?recurse", "/v1/catalog/nodes", "/v1/catalog/services",
               "/v1/health/state/any")}
    status, _, out = txn(agent, [
        kv("set", "rb/keep", "new"),
        kv("set", "rb/new", "x"),
        node_op("set", "rb-n2", Address="10.2.0.2"),
        svc_op("set", "rb-n1", ID="db", Service="db", Port=5432),
        node_op("delete", "rb-n1"),
        # fails: the service is gone with its node, deleted just above
        check_op("set", Node="rb-n1", CheckID="db-check", Name="db", ServiceID="db"),
        check_op("set", Node="rb-n2", CheckID="c", ServiceID="nosvc"),
    ])
    assert status == 409
    assert out["Results"] is None
    assert out["Errors"] == [{"OpIndex": 5, "What": "Missing node registration"},
                             {"OpIndex": 6, "What": "Missing service registration"}]
    after = {p: agent.request("GET", p)[2] for p in before}
    assert after == before
    assert get_value(agent, "rb/keep") == b"old" and get_value(agent, "rb/new") is None


@pytest.mark.parametrize("op,what", [
    (node_op("set", "", Address="1.2.3.4"), "Must provide node"),
    (node_op("set", "n", ID="nope", Address="1.2.3.4"), "Bad node ID: uuid string is wrong length"),
    (node_op("delete", "n", ID="zzzzzzzz-1111-2222-3333-444444444444"),
     "Bad node ID: encoding/hex: invalid byte: U+007A 'z'"),
    (svc_op("delete", "n", ID="x"),
     "Must provide service name (Service.Service) when service ID is provided"),
    (svc_op("set", "n", Service="x", Address="0.0.0.0"), "Invalid service address"),
    ({"Service": {"Verb": "frob", "Node": "n", "Service": {"Service": "x"}}}, 'unknown Service verb "frob"'),
])
def test_catalog_op_errors(agent, op, what):
    status, _, out = txn(agent, [kv("set", "pre/x", "1"), op])
    assert status == 409, out
    assert out["Errors"] == [{"OpIndex": 1, "What": what}]
    assert get_value(agent, "pre/x") is None


def test_catalog_op_decode_errors(agent):
    status, _, out = txn(agent, [{"Node": {"Verb": "set", "Node": {"Node": 5}}}])
    assert status == 400 and "cannot unmarshal number" in out.decode()
    status, _, out = txn(agent, [svc_op("set", "n", Service="x", Port="80")])
    assert status == 400 and "AgentService.Port" in out.decode()


def test_pretty(agent):
    status, _, out = agent.request("PUT", "/v1/txn?pretty", json.dumps([kv("set", "pp", "v")]))
    assert status == 200
    assert out.startswith(b'{\n    "Results": [\n        {\n            "KV": {') and out.endswith(b"}\n")
    json.loads(out)
