"""A real cluster on loopback: three servers (-bootstrap-expect=3) on 127.0.0.1-3 and two
client agents on 127.0.0.4-5, joined by gossip. Bootstrap, one leader, forwarding from clients
and followers (writes, default/stale/consistent reads, blocking queries), anti-entropy of a
client's services into the catalog and DNS answers for them on another agent."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from agentlib import Agent


def wait_until(fn, timeout=30.0, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except (OSError, ValueError, AssertionError):
            last = None
        if last:
            return last
        time.sleep(interval)
    return last


def start_cluster(request, nservers=3, nclients=2, prefix="c"):
    servers = [Agent(dev=False, ip="127.0.0.%d" % (i + 1), node="%s-srv%d" % (prefix, i + 1),
                     expect=nservers) for i in range(nservers)]
    join = ["-retry-join", servers[0].serf_addr, "-retry-interval", "1s"]
    for s in servers[1:]:
        s.extra_args += join
    clients = [Agent(dev=False, server=False, ip="127.0.0.%d" % (nservers + i + 1),
                     node="%s-cli%d" % (prefix, i + 1), extra_args=list(join))
               for i in range(nclients)]
    everyone = servers + clients

    def fin():
        for a in everyone:
            try:
                if a.proc and a.proc.poll() is None:
                    os.kill(a.proc.pid, signal.SIGCONT)
                code = a.stop()
            finally:
                a.kill()
    request.addfinalizer(fin)
    for a in everyone:
        a.start(wait=False)
    for a in clients:
        a.wait_http()
    leader = wait_until(lambda: leader_of(servers), timeout=40)
    assert leader, "no leader:\n" + "\n".join(s.log()[-3000:] for s in servers)
    return servers, clients


def leader_of(servers):
    """The leader's address if every running server agrees on one, else None."""
    seen = set()
    for s in servers:
        if not s.proc or s.proc.poll() is not None:
            continue
        status, _, body = s.request("GET", "/v1/status/leader", timeout=5)
        if status != 200:
            return None
        seen.add(json.loads(body))
    if len(seen) == 1 and "" not in seen:
        return seen.pop()
    return None


def server_at(servers, addr):
    for s in servers:
        if addr == "%s:%d" % (s.ip, s.server_port):
            return s
    return None


def kv_get(agent, key, query=""):
    status, headers, body = agent.request("GET", "/v1/kv/%s%s" % (key, query), timeout=10)
    return status, headers, body


@pytest.fixture(scope="module")
def cluster(request):
    return start_cluster(request)


def test_members_leader_and_peers(cluster):
    servers, clients = cluster
    names = {a.node for a in servers + clients}
    for a in servers + clients:
        ok = wait_until(lambda: {m["Name"] for m in a.get_json("/v1/agent/members")[0]
                                 if m["Status"] == 1} == names, timeout=30)
        assert ok, a.get_json("/v1/agent/members")[0]
    leader = leader_of(servers)
    expected_peers = sorted("%s:%d" % (s.ip, s.server_port) for s in servers)
    assert leader in expected_peers
    for a in servers + clients:
        got, _ = a.get_json("/v1/status/leader")
        assert got == leader
        peers, _ = a.get_json("/v1/status/peers")
        assert sorted(peers) == expected_peers
    conf, _ = servers[0].get_json("/v1/operator/raft/configuration")
    assert len(conf["Servers"]) == 3
    assert sum(1 for s in conf["Servers"] if s["Leader"]) == 1
    assert all(s["Voter"] for s in conf["Servers"])


def test_kv_write_through_client_read_everywhere(cluster):
    servers, clients = cluster
    status, headers, body = clients[0].request("PUT", "/v1/kv/cluster/hello", body="world")
    assert status == 200 and body.strip() == b"true", (status, body)
    for a in servers + clients:
        # default and consistent reads go to the leader: the write is there at once
        for q in ("?raw", "?raw&consistent"):
            status, headers, body = kv_get(a, "cluster/hello", q)
            assert (status, body) == (200, b"world"), (a.node, q, status, body)
            assert headers["x-consul-knownleader"] == "true"
        # a stale read is served by whichever server answers; it catches up quickly
        assert wait_until(lambda: kv_get(a, "cluster/hello", "?raw&stale")[2] == b"world",
                          timeout=10)
    status, headers, _ = kv_get(servers[1], "cluster/hello", "?stale")
    assert headers["x-consul-effective-consistency"] == "stale"
    assert "x-consul-lastcontact" in headers


def test_write_through_follower(cluster):
    servers, _ = cluster
    leader = server_at(servers, leader_of(servers))
    follower = next(s for s in servers if s is not leader)
    status, _, body = follower.request("PUT", "/v1/kv/cluster/from-follower", body="f")
    assert status == 200 and body.strip() == b"true", (status, body)
    assert kv_get(leader, "cluster/from-follower", "?raw")[2] == b"f"
    # a transaction and a session through a follower
    txn = json.dumps([{"KV": {"Verb": "set", "Key": "cluster/txn", "Value": "dHhu"}}])
    status, _, body = follower.request("PUT", "/v1/txn", body=txn)
    assert status == 200, body
    status, _, body = follower.request("PUT", "/v1/session/create", body="{}")
    assert status == 200, body
    sid = json.loads(body)["ID"]
    status, _, body = follower.request("PUT", "/v1/kv/cluster/lock?acquire=" + sid, body="x")
    assert body.strip() == b"true", body


def test_blocking_query_through_client(cluster):
    servers, clients = cluster
    clients[1].request("PUT", "/v1/kv/cluster/block", body="1")
    _, headers, _ = kv_get(clients[1], "cluster/block")
    index = int(headers["x-consul-index"])
    result = {}

    def waiter():
        result["r"] = kv_get(clients[1], "cluster/block", "?index=%d&wait=30s" % index)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the blocking query returned before any change"
    status, _, _ = servers[2].request("PUT", "/v1/kv/cluster/block", body="2")
    assert status == 200
    t.join(20)
    assert not t.is_alive()
    status, headers, body = result["r"]
    assert status == 200
    assert int(headers["x-consul-index"]) > index
    assert json.loads(body)[0]["Value"] == "Mg=="


def dig(server, name, qtype="A"):
    out = subprocess.run(["dig", "@%s" % server.ip, "-p", str(server.dns_port), "+short",
                          "+time=2", "+tries=1", name, qtype],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.split()


def test_client_service_in_catalog_and_dns(cluster):
    servers, clients = cluster
    svc = {"Name": "web", "Port": 8080, "Check": {"TTL": "60s", "Status": "passing"}}
    status, _, body = clients[0].request("PUT", "/v1/agent/service/register",
                                         body=json.dumps(svc))
    assert status == 200, body

    def in_catalog():
        got, _ = servers[1].get_json("/v1/health/service/web?passing")
        return [e for e in got if e["Node"]["Node"] == clients[0].node]
    entries = wait_until(in_catalog, timeout=30)
    assert entries, "the client's service never reached the catalog:\n" + clients[0].log()[-4000:]
    assert entries[0]["Service"]["Port"] == 8080
    # found by DNS on another agent (a server that never saw the registration itself)
    assert wait_until(lambda: clients[0].ip in dig(servers[2], "web.service.consul"), timeout=15)
    srv = dig(servers[2], "web.service.consul", "SRV")
    assert "8080" in srv
    # and by DNS on the other client agent, which asks a server over RPC
    assert clients[0].ip in dig(clients[1], "web.service.consul")
    assert "8080" in dig(clients[1], "web.service.consul", "SRV")
    assert dig(clients[1], "%s.node.consul" % clients[0].node) == [clients[0].ip]
    out = subprocess.run(["dig", "@%s" % clients[1].ip, "-p", str(clients[1].dns_port),
                          "+time=2", "+tries=1", "nope.service.consul"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "status: NXDOMAIN" in out, out
    # the catalog through the other client agent
    nodes, _ = clients[1].get_json("/v1/catalog/service/web")
    assert [n["Node"] for n in nodes] == [clients[0].node]
    # deregistration on the client leaves the catalog too
    status, _, _ = clients[0].request("PUT", "/v1/agent/service/deregister/web")
    assert status == 200
    assert wait_until(lambda: servers[0].get_json("/v1/catalog/service/web")[0] == [], timeout=30)


def test_cli_against_a_client(cluster):
    servers, clients = cluster
    r = clients[1].cli("kv", "put", "cluster/cli", "via-cli")
    assert r.returncode == 0, r.stderr
    r = clients[0].cli("kv", "get", "cluster/cli")
    assert r.returncode == 0 and r.stdout.strip() == "via-cli", (r.stdout, r.stderr)
    r = clients[0].cli("operator", "raft", "list-peers")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("voter") >= 3 or r.stdout.count("true") >= 3, r.stdout
    r = clients[0].cli("members")
    assert r.returncode == 0 and r.stdout.count("alive") == 5, r.stdout
