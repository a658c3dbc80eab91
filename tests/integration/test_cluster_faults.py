"""Faults in a real cluster on loopback: kill -9 of the leader under a steady write load (a new
leader, and every acknowledged write still there), SIGSTOP of a client agent (failed through
gossip, serfHealth critical, out of DNS; SIGCONT brings it back), and a stop and restart of the
whole cluster (data intact, same servers)."""
import json
import os
import signal
import threading
import time

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
