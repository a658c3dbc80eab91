"""The KV API against a real agent: every parameter over raw HTTP, the same through
python-consul, blocking queries, indexes, limits and bad input."""
import base64
import json
import socket
import threading
import time

import consul
import pytest


def put(agent, key, value, query=""):
    status, _, body = agent.request("PUT", "/v1/kv/%s%s" % (key, query), value)
    return status, body


def test_put_get_json_shape(agent):
    status, body = put(agent, "shape/a", "hello")
    assert (status, body) == (200, b"true")
    status, headers, body = agent.request("GET", "/v1/kv/shape/a")
    assert status == 200
    assert headers["content-type"] == "application/json"
    entries = json.loads(body)
    assert len(entries) == 1
    e = entries[0]
    assert list(e.keys()) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    assert e["Key"] == "shape/a"
    assert base64.b64decode(e["Value"]) == b"hello"
    assert e["Flags"] == 0 and e["LockIndex"] == 0
    assert e["CreateIndex"] == e["ModifyIndex"] > 0
    assert int(headers["x-consul-index"]) == e["ModifyIndex"]
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"] == "0"


def test_update_keeps_create_index(agent):
    put(agent, "upd/k", "1")
    first = agent.get_json("/v1/kv/upd/k")[0][0]
    put(agent, "upd/k", "2")
    second = agent.get_json("/v1/kv/upd/k")[0][0]
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]


def test_empty_value_is_null(agent):
    put(agent, "empty/v", "")
    e = agent.get_json("/v1/kv/empty/v")[0][0]
    assert e["Value"] is None


def test_missing_key_404_with_index(agent):
    put(agent, "present/x", "1")
    status, headers, body = agent.request("GET", "/v1/kv/absent/key")
    assert status == 404 and body == b""
    assert int(headers["x-consul-index"]) >= 1


def test_raw(agent):
    put(agent, "raw/bin", b"\x00\x01binary\xff")
    status, headers, body = agent.request("GET", "/v1/kv/raw/bin?raw")
    assert status == 200 and body == b"\x00\x01binary\xff"
    assert headers["content-type"] == "text/plain"
    assert headers["x-content-type-options"] == "nosniff"


def test_flags(agent):
    put(agent, "flags/k", "v", "?flags=18446744073709551615")
    e = agent.get_json("/v1/kv/flags/k")[0][0]
    assert e["Flags"] == 18446744073709551615
    status, body = put(agent, "flags/k", "v", "?flags=-1")
    assert status == 400


def test_recurse_and_keys_with_separator(agent):
    for k in ["tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g", "treeish"]:
        put(agent, k, k)
    entries, headers = agent.get_json("/v1/kv/tree/?recurse")
    assert [e["Key"] for e in entries] == ["tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g"]
    assert int(headers["x-consul-index"]) == max(e["ModifyIndex"] for e in entries)
    keys, _ = agent.get_json("/v1/kv/tree/?keys")
    assert keys == ["tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g"]
    keys, _ = agent.get_json("/v1/kv/tree/?keys&separator=/")
    assert keys == ["tree/a", "tree/b/", "tree/e/"]
    keys, _ = agent.get_json("/v1/kv/tree?keys&separator=/")
    assert keys == ["tree/", "treeish"]
    status, _, _ = agent.request("GET", "/v1/kv/nothing-here/?keys")
    assert status == 404
    status, _, _ = agent.request("GET", "/v1/kv/nothing-here/?recurse")
    assert status == 404


def test_keys_at_root_is_list(fresh_agent):
    keys, _ = fresh_agent.get_json("/v1/kv/?keys")
    assert keys == []


def test_cas(agent):
    status, body = put(agent, "cas/k", "first", "?cas=0")
    assert body == b"true"
    status, body = put(agent, "cas/k", "again", "?cas=0")
    assert body == b"false"  # cas=0 only creates
    e = agent.get_json("/v1/kv/cas/k")[0][0]
    assert base64.b64decode(e["Value"]) == b"first"
    status, body = put(agent, "cas/k", "stale", "?cas=%d" % (e["ModifyIndex"] - 1))
    assert body == b"false"
    status, body = put(agent, "cas/k", "second", "?cas=%d" % e["ModifyIndex"])
    assert body == b"true"
    e2 = agent.get_json("/v1/kv/cas/k")[0][0]
    assert base64.b64decode(e2["Value"]) == b"second"


def test_delete_variants(agent):
    put(agent, "del/a", "1")
    put(agent, "del/b/c", "2")
    put(agent, "del/b/d", "3")
    status, _, body = agent.request("DELETE", "/v1/kv/del/a")
    assert (status, body) == (200, b"true")
    assert agent.request("GET", "/v1/kv/del/a")[0] == 404
    # Deleting a missing key is still true.
    assert agent.request("DELETE", "/v1/kv/del/zzz")[2] == b"true"
    e = agent.get_json("/v1/kv/del/b/c")[0][0]
    assert agent.request("DELETE", "/v1/kv/del/b/c?cas=%d" % (e["ModifyIndex"] + 100))[2] == b"false"
    assert agent.request("DELETE", "/v1/kv/del/b/c?cas=%d" % e["ModifyIndex"])[2] == b"true"
    assert agent.request("DELETE", "/v1/kv/del/?recurse")[2] == b"true"
    assert agent.request("GET", "/v1/kv/del/?recurse")[0] == 404


def test_tombstone_keeps_prefix_index_monotonic(agent):
    put(agent, "tomb/a", "1")
    put(agent, "tomb/b", "2")
    _, h1 = agent.get_json("/v1/kv/tomb/?recurse")
    idx1 = int(h1["x-consul-index"])
    agent.request("DELETE", "/v1/kv/tomb/b")
    _, h2 = agent.get_json("/v1/kv/tomb/?recurse")
    idx2 = int(h2["x-consul-index"])
    # Deleting the newest key must not send the prefix index back to tomb/a's index.
    assert idx2 > idx1


def test_value_size_limit(agent):
    status, body = put(agent, "big/ok", b"x" * (512 * 1024))
    assert status == 200
    status, body = put(agent, "big/no", b"x" * (512 * 1024 + 1))
    assert status == 413
    assert agent.request("GET", "/v1/kv/big/no")[0] == 404


def test_bad_query_values(agent):
    put(agent, "bad/k", "v")
    assert agent.request("GET", "/v1/kv/bad/k?index=abc")[0] == 400
    status, _, body = agent.request("GET", "/v1/kv/bad/k?index=1&wait=forever")
    assert status == 400 and b"Invalid wait time" in body
    status, _, body = agent.request("GET", "/v1/kv/bad/k?stale&consistent")
    assert status == 400
    status, _, body = agent.request("PUT", "/v1/kv/bad/k?cas=1&acquire=x", "v")
    assert status == 400 and b"Conflicting flags" in body
    status, _, body = agent.request("PUT", "/v1/kv/?", "v")
    assert status == 400 and b"Missing key name" in body
    status, _, body = agent.request("GET", "/v1/kv/")
    assert status == 400
    status, _, body = agent.request("GET", "/v1/kv/bad/k?dc=nowhere")
    assert status == 500 and b"No path to datacenter" in body
    status, _, _ = agent.request("POST", "/v1/kv/bad/k", "v")
    assert status == 405
    status, _, _ = agent.request("GET", "/v1/no/such/endpoint")
    assert status == 404


def test_consistency_modes(agent):
    put(agent, "mode/k", "v")
    for q, mode in (("", "leader"), ("?stale", "stale"), ("?consistent", "consistent")):
        status, headers, body = agent.request("GET", "/v1/kv/mode/k" + q)
        assert status == 200, q
        assert headers["x-consul-effective-consistency"] == mode


def test_blocking_query_wakes_on_write(agent):
    put(agent, "block/k", "1")
    _, headers, _ = agent.request("GET", "/v1/kv/block/k")
    index = int(headers["x-consul-index"])
    result = {}

    def waiter():
        t0 = time.time()
        result["resp"] = agent.request("GET", "/v1/kv/block/k?index=%d&wait=30s" % index)
        result["elapsed"] = time.time() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the query returned without a change"
    put(agent, "block/k", "2")
    t.join(10)
    status, headers, body = result["resp"]
    assert status == 200
    assert int(headers["x-consul-index"]) > index
    assert base64.b64decode(json.loads(body)[0]["Value"]) == b"2"
    assert result["elapsed"] < 5


def test_blocking_query_times_out_with_same_index(agent):
    put(agent, "block/t", "1")
    _, headers, _ = agent.request("GET", "/v1/kv/block/t")
    index = int(headers["x-consul-index"])
    t0 = time.time()
    status, headers, _ = agent.request("GET", "/v1/kv/block/t?index=%d&wait=1s" % index)
    elapsed = time.time() - t0
    assert status == 200
    assert int(headers["x-consul-index"]) == index
    assert 0.9 <= elapsed < 1.0 + 1.0 / 16 + 1.0


def test_blocking_prefix_wakes_on_delete(agent):
    put(agent, "bp/a", "1")
    _, headers = agent.get_json("/v1/kv/bp/?recurse")
    index = int(headers["x-consul-index"])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", agent.request("GET", "/v1/kv/bp/?recurse&index=%d&wait=30s" % index)))
    t.start()
    time.sleep(0.3)
    agent.request("DELETE", "/v1/kv/bp/a")
    t.join(10)
    status, headers, _ = result["r"]
    assert status == 404 and int(headers["x-consul-index"]) > index


def test_many_parked_share_one_wake(agent):
    put(agent, "herd/k", "0")
    _, headers, _ = agent.request("GET", "/v1/kv/herd/k")
    index = int(headers["x-consul-index"])
    n = 200
    results = []
    lock = threading.Lock()

    def waiter():
        r = agent.request("GET", "/v1/kv/herd/k?index=%d&wait=60s" % index)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=waiter) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    put(agent, "herd/k", "1")
    for t in threads:
        t.join(20)
    assert len(results) == n
    assert all(r[0] == 200 and int(r[1]["x-consul-index"]) > index for r in results)


def test_client_hangs_up_while_parked(agent):
    put(agent, "hang/k", "1")
    _, headers, _ = agent.request("GET", "/v1/kv/hang/k")
    index = int(headers["x-consul-index"])
    host, port = agent.http_addr.split(":")
    for _ in range(20):
        s = socket.create_connection((host, int(port)))
        s.sendall(("GET /v1/kv/hang/k?index=%d&wait=60s HTTP/1.1\r\nHost: x\r\n\r\n" % index).encode())
        s.close()
    time.sleep(0.3)
    put(agent, "hang/k", "2")
    # The agent is still healthy and answers.
    assert agent.request("GET", "/v1/kv/hang/k")[0] == 200


def test_python_consul(agent):
    c = consul.Consul(host=agent.ip, port=agent.http_port)
    assert c.kv.put("py/a", "1") is True
    assert c.kv.put("py/b/c", "2", flags=42) is True
    index, data = c.kv.get("py/a")
    assert data["Value"] == b"1" and int(index) == data["ModifyIndex"]
    index, data = c.kv.get("py/b/c")
    assert data["Flags"] == 42
    index, data = c.kv.get("py/", recurse=True)
    assert [d["Key"] for d in data] == ["py/a", "py/b/c"]
    index, keys = c.kv.get("py/", keys=True, separator="/")
    assert keys == ["py/a", "py/b/"]
    index, data = c.kv.get("py/missing")
    assert data is None
    _, a = c.kv.get("py/a")
    assert c.kv.put("py/a", "x", cas=a["ModifyIndex"] + 1) is False
    assert c.kv.put("py/a", "x", cas=a["ModifyIndex"]) is True
    assert c.kv.delete("py/", recurse=True) is True
    _, data = c.kv.get("py/", recurse=True)
    assert data is None
    # A blocking get through the library.
    c.kv.put("py/w", "1")
    index, _ = c.kv.get("py/w")
    t = threading.Timer(0.5, lambda: c.kv.put("py/w", "2"))
    t.start()
    index2, data = c.kv.get("py/w", index=index, wait="10s")
    assert int(index2) > int(index) and data["Value"] == b"2"
    c2 = consul.Consul(host=agent.ip, port=agent.http_port, consistency="consistent")
    assert c2.kv.get("py/w")[1]["Value"] == b"2"


def test_status_and_self(agent):
    leader, _ = agent.get_json("/v1/status/leader")
    assert leader == "%s:%d" % (agent.ip, agent.server_port)
    peers, _ = agent.get_json("/v1/status/peers")
    assert peers == [leader]
    self_, _ = agent.get_json("/v1/agent/self")
    assert self_["Config"]["NodeName"] == agent.node
    assert self_["Config"]["Datacenter"] == "dc1"
    assert self_["Config"]["Server"] is True
    assert self_["Member"]["Name"] == agent.node
    assert self_["Member"]["Tags"]["role"] == "consul"
    assert self_["Stats"]["raft"]["state"] == "Leader"
    members, _ = agent.get_json("/v1/agent/members")
    assert [m["Name"] for m in members] == [agent.node]
    assert members[0]["Status"] == 1


def test_pretty(agent):
    put(agent, "pretty/k", "v")
    _, _, body = agent.request("GET", "/v1/kv/pretty/k?pretty")
    assert body.startswith(b"[\n    {\n        \"LockIndex\": 0,")


def test_kill_9_keeps_acknowledged_writes(server_agent):
    a = server_agent
    acked = {}
    for i in range(300):
        status, body = put(a, "durable/%04d" % i, "v%d" % i)
        if status == 200 and body == b"true":
            acked["durable/%04d" % i] = "v%d" % i
    assert len(acked) == 300
    a.kill()
    a.start()
    entries, _ = a.get_json("/v1/kv/durable/?recurse")
    got = {e["Key"]: base64.b64decode(e["Value"]).decode() for e in entries}
    assert got == acked


def test_restart_after_clean_stop(server_agent):
    a = server_agent
    put(a, "clean/k", "v")
    idx = a.get_json("/v1/kv/clean/k")[0][0]["ModifyIndex"]
    assert a.stop() == 0
    a.start()
    e = a.get_json("/v1/kv/clean/k")[0][0]
    assert e["ModifyIndex"] == idx
    # New writes get higher indexes than anything before the restart.
    put(a, "clean/k2", "v")
    assert a.get_json("/v1/kv/clean/k2")[0][0]["ModifyIndex"] > idx
