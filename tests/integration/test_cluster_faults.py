"""Faults in a real cluster on loopback: kill -9 of the leader under a steady write load (a new
leader, and every acknowledged write still there), SIGSTOP of a client agent (failed through
gossip, serfHealth critical, out of DNS; SIGCONT brings it back), and a stop and restart of the
whole cluster (data intact, same servers)."""
import json
import os
import signal
import threading
import time

from agentlib import Agent
from test_cluster import dig, leader_of, server_at, start_cluster, wait_until


def test_kill_leader_under_write_load(request):
    servers, clients = start_cluster(request, nclients=1, prefix="k")
    client = clients[0]
    acked = []
    failed = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                status, _, body = client.request("PUT", "/v1/kv/load/%06d" % i, body=str(i),
                                                 timeout=15)
                if status == 200 and body.strip() == b"true":
                    acked.append((i, time.time()))
                else:
                    failed.append((i, status, body[:80]))
            except OSError as e:
                failed.append((i, None, str(e)))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert wait_until(lambda: len(acked) >= 100, timeout=30), (len(acked), failed[-5:])
        old = leader_of(servers)
        leader = server_at(servers, old)
        killed_at = time.time()
        leader.kill()
        survivors = [s for s in servers if s is not leader]
        new = wait_until(lambda: (lambda l: l if l and l != old else None)(leader_of(survivors)),
                         timeout=15, interval=0.02)
        elected_at = time.time()
        assert new, "no new leader:\n" + "\n".join(s.log()[-3000:] for s in survivors)
        # writes flow again through the client
        assert wait_until(lambda: any(ts > elected_at for _, ts in acked), timeout=15)
        resumed_at = min(ts for _, ts in acked if ts > killed_at)
        n_before = len(acked)
        assert wait_until(lambda: len(acked) >= n_before + 50, timeout=30)
    finally:
        stop.set()
        t.join(30)
    print("leader killed: new leader after %.2f s, writes acknowledged again after %.2f s, "
          "%d acked, %d failed" % (elected_at - killed_at, resumed_at - killed_at, len(acked),
                                   len(failed)))
    # Issue #4's target: a new leader within 2 s of kill -9 (election timeout 500 ms).
    assert elected_at - killed_at < 2.0, elected_at - killed_at
    # every acknowledged write is in the store (a consistent read through the client)
    status, _, body = client.request("GET", "/v1/kv/load/?keys&consistent", timeout=20)
    assert status == 200
    have = set(json.loads(body))
    missing = [i for i, _ in acked if "load/%06d" % i not in have]
    assert not missing, "acknowledged writes lost: %s" % missing[:20]
    # the old leader comes back, rejoins as a follower and catches up
    leader.start(wait=False)
    last = acked[-1][0]
    assert wait_until(lambda: leader.request("GET", "/v1/kv/load/%06d?stale&raw" % last,
                                             timeout=5)[2] == str(last).encode(), timeout=40), \
        leader.log()[-4000:]
    assert leader_of(servers) == new


def serf_health(server, node):
    status, _, body = server.request("GET", "/v1/health/node/%s?stale" % node)
    if status != 200:
        return None
    for c in json.loads(body):
        if c["CheckID"] == "serfHealth":
            return c["Status"]
    return None


def test_sigstop_client_leaves_dns_and_comes_back(request):
    servers, clients = start_cluster(request, nclients=1, prefix="s")
    client = clients[0]
    svc = {"Name": "api", "Port": 9000, "Check": {"TTL": "300s", "Status": "passing"}}
    status, _, body = client.request("PUT", "/v1/agent/service/register", body=json.dumps(svc))
    assert status == 200, body
    assert wait_until(lambda: client.ip in dig(servers[1], "api.service.consul"), timeout=30), \
        client.log()[-3000:]
    os.kill(client.proc.pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: serf_health(servers[0], client.node) == "critical", timeout=40)
        assert wait_until(lambda: client.ip not in dig(servers[2], "api.service.consul"),
                          timeout=20)
        members = {m["Name"]: m["Status"] for m in servers[1].get_json("/v1/agent/members")[0]}
        assert members[client.node] == 4  # failed
    finally:
        os.kill(client.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: serf_health(servers[0], client.node) == "passing", timeout=40)
    assert wait_until(lambda: client.ip in dig(servers[2], "api.service.consul"), timeout=30)


def test_whole_cluster_restart(request):
    servers, _ = start_cluster(request, nclients=0, prefix="r")
    for i in range(50):
        status, _, _ = servers[i % 3].request("PUT", "/v1/kv/keep/%03d" % i, body="v%d" % i)
        assert status == 200
    peers_before, _ = servers[0].get_json("/v1/status/peers")
    for s in servers:
        assert s.stop() == 0
    for s in servers:
        s.start(wait=False)
    assert wait_until(lambda: leader_of(servers), timeout=40), \
        "\n".join(s.log()[-3000:] for s in servers)
    peers_after, _ = servers[1].get_json("/v1/status/peers")
    assert sorted(peers_after) == sorted(peers_before)
    for s in servers:
        status, _, body = s.request("GET", "/v1/kv/keep/?recurse")
        assert status == 200
        got = {e["Key"] for e in json.loads(body)}
        assert got == {"keep/%03d" % i for i in range(50)}
    status, _, body = servers[2].request("PUT", "/v1/kv/keep/after", body="x")
    assert status == 200 and body.strip() == b"true"


def test_no_quorum_no_leader(request):
    """Two of three servers gone: the last one has no leader. A write (and a default read)
    waits for one up to Consul's rpc_hold_timeout (7 s), then fails as Consul's does; a stale
    read is still served; a client agent says the same."""
    servers, clients = start_cluster(request, nclients=1, prefix="q")
    status, _, _ = clients[0].request("PUT", "/v1/kv/quorum", body="1")
    assert status == 200
    last = servers[2]
    assert wait_until(lambda: last.request("GET", "/v1/kv/quorum?stale&raw")[2] == b"1")
    for s in servers[:2]:
        s.kill()
    assert wait_until(lambda: last.request("GET", "/v1/status/leader")[2] == b'""', timeout=20)
    t0 = time.time()
    status, headers, body = last.request("PUT", "/v1/kv/quorum", body="2", timeout=30)
    waited = time.time() - t0
    assert (status, body) == (500, b"No cluster leader"), (status, body)
    assert headers.get("x-consul-knownleader") == "false"
    assert 5 <= waited <= 20, waited
    status, _, body = last.request("GET", "/v1/kv/quorum?stale&raw")
    assert (status, body) == (200, b"1")
    status, _, body = clients[0].request("GET", "/v1/kv/quorum", timeout=40)
    assert status == 500, (status, body)


def peers_of(agent):
    status, _, body = agent.request("GET", "/v1/status/peers", timeout=10)
    return sorted(json.loads(body)) if status == 200 else None


def test_raft_membership_follows_gossip(request):
    """A server that leaves gracefully is removed from Raft; a new server (-bootstrap-expect=3,
    empty data dir) finds the existing cluster and is added as a voter; a server killed for
    good is removed after autopilot's dead-server delay (30 s), the others keeping quorum."""
    servers, _ = start_cluster(request, nclients=0, prefix="m")
    addr = lambda s: "%s:%d" % (s.ip, s.server_port)  # noqa: E731
    leader = server_at(servers, leader_of(servers))
    leaving = next(s for s in servers if s is not leader)
    r = leaving.cli("leave")
    assert r.returncode == 0, r.stderr
    leaving.proc.wait(30)
    rest = [s for s in servers if s is not leaving]
    assert wait_until(lambda: peers_of(rest[0]) == sorted(addr(s) for s in rest), timeout=30), \
        peers_of(rest[0])
    # a fourth server joins the existing cluster
    newcomer = Agent(dev=False, ip="127.0.0.4", node="m-srv4", expect=3,
                     extra_args=["-retry-join", rest[0].serf_addr, "-retry-interval", "1s"])

    def fin():
        try:
            newcomer.stop()
        finally:
            newcomer.kill()
    request.addfinalizer(fin)
    newcomer.start(wait=False)
    members = rest + [newcomer]
    want = sorted(addr(s) for s in members)
    assert wait_until(lambda: peers_of(rest[0]) == want, timeout=40), peers_of(rest[0])
    assert wait_until(lambda: newcomer.request("GET", "/v1/kv/x?stale")[0] in (200, 404),
                      timeout=20)
    status, _, body = newcomer.request("PUT", "/v1/kv/after-join", body="1")
    assert status == 200 and body.strip() == b"true", body
    # kill -9 a follower for good: removed once failed for the cleanup delay
    leader = server_at(members, leader_of(members))
    victim = next(s for s in members if s is not leader)
    victim.kill()
    alive = [s for s in members if s is not victim]
    assert wait_until(lambda: peers_of(leader) == sorted(addr(s) for s in alive), timeout=90), \
        peers_of(leader)
    status, _, _ = alive[-1].request("PUT", "/v1/kv/after-cleanup", body="1")
    assert status == 200
