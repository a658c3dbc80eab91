"""/v1/snapshot and `concord snapshot save|restore|inspect` against real agents: a -dev agent
(save over HTTP and the CLI, change everything, restore, compare the API's answers, a parked
blocking query wakes, damaged and foreign archives refused with nothing changed, a store of
several MB, a restore whose indexes run past the target's Raft index) and a three-server
cluster (restore through a follower and a client, every server has it, and still after all
servers restart)."""
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time

import pytest

from agentlib import Agent
from test_cluster import start_cluster, wait_until


def put(agent, key, value, query=""):
    status, _, body = agent.request("PUT", "/v1/kv/%s%s" % (key, query), value)
    assert status == 200, body
    return json.loads(body)


def snapshot_of(agent):
    """What a restore must bring back exactly, as the API answers it."""
    kv = agent.request("GET", "/v1/kv/?recurse")
    web = agent.get_json("/v1/catalog/service/web")[0]
    sessions = agent.get_json("/v1/session/list")[0]
    queries = agent.get_json("/v1/query")[0]
    return {"kv_status": kv[0], "kv": json.loads(kv[2]) if kv[0] == 200 else None, "web": web,
            "sessions": sorted(sessions, key=lambda s: s["ID"]), "queries": queries}


def members_of(data):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def make_archive(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


def sums_of(meta, state):
    return ("%s  meta.json\n%s  state.bin\n" % (hashlib.sha256(meta).hexdigest(),
                                                hashlib.sha256(state).hexdigest())).encode()


@pytest.fixture
def tmpdir_path():
    d = tempfile.mkdtemp(prefix="concord-snap-")
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def test_save_change_restore(fresh_agent, tmpdir_path):
    a = fresh_agent
    node = a.get_json("/v1/agent/self")[0]["Config"]["NodeName"]
    put(a, "app/one", "1")
    put(a, "app/two", "2", "?flags=42")
    put(a, "app/gone-later", "x")
    a.request("DELETE", "/v1/kv/app/gone-later")  # a tombstone in the snapshot
    assert a.request("PUT", "/v1/catalog/register", json.dumps({
        "Node": "ext1", "Address": "10.0.0.1",
        "Service": {"Service": "web", "Port": 80, "Tags": ["v1"]}}))[0] == 200
    status, _, body = a.request("PUT", "/v1/session/create",
                                json.dumps({"Node": node, "Name": "s1", "LockDelay": "0s"}))
    assert status == 200, body
    sid = json.loads(body)["ID"]
    assert put(a, "app/lock", "held", "?acquire=" + sid) is True
    status, _, body = a.request("POST", "/v1/query", json.dumps(
        {"Name": "web-q", "Service": {"Service": "web"}}))
    assert status == 200, body
    before = snapshot_of(a)
    assert {e["Key"]: e.get("Session") for e in before["kv"]}["app/lock"] == sid

    # save over HTTP: Consul's archive shape and headers
    status, headers, data = a.request("GET", "/v1/snapshot")
    assert status == 200
    assert headers["content-type"] == "application/x-gzip"
    index = int(headers["x-consul-index"])
    assert index >= max(e["ModifyIndex"] for e in before["kv"])
    files = members_of(data)
    assert sorted(files) == ["SHA256SUMS", "meta.json", "state.bin"]
    meta = json.loads(files["meta.json"])
    assert meta["Version"] == 1 and meta["Index"] == index and meta["Size"] == len(files["state.bin"])
    assert meta["ID"].startswith("%d-%d-" % (meta["Term"], index))
    assert files["SHA256SUMS"] == sums_of(files["meta.json"], files["state.bin"]) or \
        sorted(files["SHA256SUMS"].splitlines()) == sorted(
            sums_of(files["meta.json"], files["state.bin"]).splitlines())

    # save with the CLI: atomic, verified, Consul's line
    path = os.path.join(tmpdir_path, "backup.snap")
    r = a.cli("snapshot", "save", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Saved and verified snapshot to index %d" % index
    assert sorted(os.listdir(tmpdir_path)) == ["backup.snap"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    r = a.cli("snapshot", "inspect", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["ID", "Size", "Index", "Term", "Version"]
    assert lines[1] == " Size         %d" % meta["Size"]
    assert lines[2] == " Index        %d" % index
    assert lines[4] == " Version      1"

    # change everything
    put(a, "app/one", "changed")
    a.request("DELETE", "/v1/kv/app/two")
    put(a, "app/new", "n")
    a.request("PUT", "/v1/session/destroy/" + sid)
    a.request("PUT", "/v1/catalog/deregister", json.dumps({"Node": "ext1"}))
    qid = before["queries"][0]["ID"]
    a.request("DELETE", "/v1/query/" + qid)
    assert snapshot_of(a) != before

    # a blocking query parked on a key the restore removes wakes when it lands
    _, h, _ = a.request("GET", "/v1/kv/app/new")
    woke = {}

    def waiter():
        t0 = time.time()
        st, hh, _ = a.request("GET", "/v1/kv/app/new?index=%s&wait=60s" % h["x-consul-index"],
                              timeout=90)
        woke.update(status=st, index=int(hh["x-consul-index"]), after=time.time() - t0)
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.0)
    assert "status" not in woke

    r = a.cli("snapshot", "restore", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Restored snapshot"
    t.join(30)
    assert woke.get("status") == 404, woke
    assert woke["after"] < 20

    after = snapshot_of(a)
    assert after == before

    # writes after the restore land above everything restored
    put(a, "app/after", "y")
    e = a.get_json("/v1/kv/app/after")[0][0]
    assert e["CreateIndex"] > index


def test_restore_over_http_and_rejects(fresh_agent, tmpdir_path):
    a = fresh_agent
    put(a, "k/a", "1")
    _, _, data = a.request("GET", "/v1/snapshot")
    put(a, "k/b", "2")
    kv_before = a.request("GET", "/v1/kv/?recurse")[2]

    def rejected(body, status=400, text=None):
        st, _, msg = a.request("PUT", "/v1/snapshot", body)
        assert st == status, (st, msg)
        if text:
            assert text in msg.decode(), msg
        assert a.request("GET", "/v1/kv/?recurse")[2] == kv_before

    rejected(data[: len(data) // 2], text="gzip")
    rejected(b"not a snapshot at all")
    rejected(b"")
    files = members_of(data)
    bad_state = bytearray(files["state.bin"])
    bad_state[len(bad_state) // 2] ^= 0xFF
    rejected(make_archive([("meta.json", files["meta.json"]), ("state.bin", bytes(bad_state)),
                           ("SHA256SUMS", files["SHA256SUMS"])]),
             text='hash check failed for "state.bin"')
    rejected(make_archive([("meta.json", files["meta.json"]), ("state.bin", files["state.bin"])]),
             text="SHA256SUMS")
    rejected(make_archive([("meta.json", files["meta.json"]), ("state.bin", files["state.bin"]),
                           ("SHA256SUMS", files["SHA256SUMS"]), ("extra", b"x")]),
             text="unexpected file")
    # a well-formed archive whose state is not ours (as a Consul snapshot would be)
    foreign = b"\x00\x01consul raft fsm bytes"
    meta = json.dumps({"Version": 1, "ID": "2-9-1", "Index": 9, "Term": 2,
                       "Size": len(foreign)}).encode()
    rejected(make_archive([("meta.json", meta), ("state.bin", foreign),
                           ("SHA256SUMS", sums_of(meta, foreign))]),
             text="not a Concord state store")
    # over the cap: 413 from the HTTP layer before any of it is read
    rejected(os.urandom(8 * 1024 * 1024), status=413)

    # the CLI reports a damaged file with Consul's prefix and exit 1
    path = os.path.join(tmpdir_path, "bad.snap")
    with open(path, "wb") as f:
        f.write(data[:-10])
    r = a.cli("snapshot", "restore", path)
    assert r.returncode == 1
    assert r.stderr.startswith("Error restoring snapshot: Unexpected response code: 400"), r.stderr
    r = a.cli("snapshot", "inspect", path)
    assert r.returncode == 1 and "Error extracting snapshot data" in r.stderr
    r = a.cli("snapshot", "inspect", os.path.join(tmpdir_path, "missing.snap"))
    assert r.returncode == 1 and "Error opening snapshot file" in r.stderr
    assert a.request("GET", "/v1/kv/?recurse")[2] == kv_before
    # argument errors as Consul's
    r = a.cli("snapshot", "save")
    assert r.returncode == 1 and "Missing FILE argument" in r.stderr
    r = a.cli("snapshot", "restore", "a", "b")
    assert r.returncode == 1 and "Too many arguments (expected 1, got 2)" in r.stderr
    r = a.cli("snapshot")
    assert r.returncode == 1 and "snapshot save" in r.stderr

    # the good archive restores over HTTP
    st, _, msg = a.request("PUT", "/v1/snapshot", data)
    assert st == 200, msg
    assert a.request("GET", "/v1/kv/k/b")[0] == 404
    assert a.get_json("/v1/kv/k/a")[0][0]["Value"] is not None


def test_big_store_and_indexes_past_the_log(fresh_agent, request):
    """A store of several MB restores (one Raft entry), onto an agent whose Raft index is far
    below the snapshot's: rows keep their indexes and later writes land above them."""
    a = fresh_agent
    for i in range(17):  # incompressible: about 6.6 MiB of state, near the 7 MiB cap
        put(a, "big/%d" % i, os.urandom(400 * 1024))
    for i in range(40):
        put(a, "small/%d" % i, str(i))
    status, headers, data = a.request("GET", "/v1/snapshot")
    assert status == 200
    assert len(data) > 6 * 1024 * 1024
    index = int(headers["x-consul-index"])
    want = a.request("GET", "/v1/kv/?recurse")[2]

    b = Agent(node="other")
    b.start()

    def fin():
        try:
            code = b.stop()
        finally:
            b.kill()
        assert code == 0, b.log()
    request.addfinalizer(fin)
    _, h, _ = b.request("GET", "/v1/kv/?recurse")
    assert int(h["x-consul-index"]) < index
    st, _, msg = b.request("PUT", "/v1/snapshot", data)
    assert st == 200, msg
    assert b.request("GET", "/v1/kv/?recurse")[2] == want
    put(b, "later", "z")
    assert b.get_json("/v1/kv/later")[0][0]["ModifyIndex"] > index


@pytest.fixture(scope="module")
def cluster(request):
    return start_cluster(request, nservers=3, nclients=1, prefix="snap")


def test_cluster_restore_everywhere_and_after_restart(cluster, tmpdir_path):
    servers, clients = cluster
    client = clients[0]
    put(client, "cl/a", "1")
    put(client, "cl/b", "2")
    path = os.path.join(tmpdir_path, "cluster.snap")
    r = client.cli("snapshot", "save", path)
    assert r.returncode == 0, r.stderr
    r = client.cli("snapshot", "save", "-stale", path + ".stale")
    assert r.returncode == 0, r.stderr
    os.unlink(path + ".stale")
    want = client.request("GET", "/v1/kv/cl/?recurse")[2]
    client.request("DELETE", "/v1/kv/cl/?recurse")
    put(client, "cl/c", "3")

    # through a follower (forwarded to the leader)
    leader = json.loads(servers[0].request("GET", "/v1/status/leader")[2])
    follower = next(s for s in servers if "%s:%d" % (s.ip, s.server_port) != leader)
    r = follower.cli("snapshot", "restore", path)
    assert r.returncode == 0, r.stderr

    def everywhere():
        return all(s.request("GET", "/v1/kv/cl/?recurse&stale")[2] == want for s in servers)
    assert wait_until(everywhere, timeout=15), [s.request("GET", "/v1/kv/cl/?recurse&stale")
                                                for s in servers]

    # through the client agent too
    put(client, "cl/d", "4")
    r = client.cli("snapshot", "restore", path)
    assert r.returncode == 0, r.stderr
    assert wait_until(everywhere, timeout=15)

    # every server restarts from its own disk: the restore is in the log / Raft snapshots
    for s in servers:
        s.stop()
    for s in servers:
        s.start(wait=False)
    from test_cluster import leader_of
    assert wait_until(lambda: leader_of(servers), timeout=40)
    assert wait_until(everywhere, timeout=20)
