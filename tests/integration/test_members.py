"""Gossip membership through a real agent: a client agent joins a server over serf; members,
the catalog's view of them (serfHealth), failure detection with SIGSTOP, refutation after
SIGCONT, graceful leave and force-leave. All on 127.0.0.x."""
import json
import os
import signal
import time

import pytest

from agentlib import Agent


def wait_until(fn, timeout=30.0, interval=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


def members(agent):
    return {m["Name"]: m for m in agent.get_json("/v1/agent/members")[0]}


def serf_health(server, node):
    status, _, body = server.request("GET", "/v1/health/node/%s" % node)
    if status != 200:
        return None
    for c in json.loads(body):
        if c["CheckID"] == "serfHealth":
            return c["Status"]
    return None


@pytest.fixture
def cluster(request):
    server = Agent(node="srv1", ip="127.0.0.1").start()
    client = Agent(dev=False, server=False, node="cli1", ip="127.0.0.2",
                   extra_args=["-join", "127.0.0.1:%d" % server.serf_port])
    agents = [server]

    def fin():
        for a in agents:
            try:
                if a.proc and a.proc.poll() is None:
                    os.kill(a.proc.pid, signal.SIGCONT)
                a.stop()
            finally:
                a.kill()
    request.addfinalizer(fin)
    client.start()
    agents.append(client)
    return server, client


def test_join_members_and_catalog(cluster):
    server, client = cluster
    m = wait_until(lambda: len(members(server)) == 2 and members(server))
    assert m, server.log()
    assert m["cli1"]["Status"] == 1 and m["cli1"]["Addr"] == "127.0.0.2"
    assert m["cli1"]["Tags"]["role"] == "node" and m["srv1"]["Tags"]["role"] == "consul"
    assert m["srv1"]["Tags"]["dc"] == "dc1" and m["cli1"]["Port"] == client.serf_port
    assert wait_until(lambda: len(members(client)) == 2)
    # The leader put both nodes in the catalog with a passing serfHealth.
    assert wait_until(lambda: serf_health(server, "cli1") == "passing"), server.log()
    assert serf_health(server, "srv1") == "passing"
    nodes = {n["Node"]: n for n in server.get_json("/v1/catalog/nodes")[0]}
    assert nodes["cli1"]["Address"] == "127.0.0.2"
    # CLI members on the client lists both.
    out = client.cli("members")
    assert out.returncode == 0 and "srv1" in out.stdout and "cli1" in out.stdout


def test_sigstop_is_failed_and_sigcont_refutes(cluster):
    server, client = cluster
    assert wait_until(lambda: serf_health(server, "cli1") == "passing")
    os.kill(client.proc.pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: members(server)["cli1"]["Status"] == 4, timeout=40), server.log()
        assert wait_until(lambda: serf_health(server, "cli1") == "critical", timeout=10)
    finally:
        os.kill(client.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: members(server)["cli1"]["Status"] == 1, timeout=40), server.log()
    assert wait_until(lambda: serf_health(server, "cli1") == "passing", timeout=10)


def test_graceful_leave_deregisters(cluster):
    server, client = cluster
    assert wait_until(lambda: serf_health(server, "cli1") == "passing")
    status, _, _ = client.request("PUT", "/v1/agent/leave")
    assert status == 200
    assert client.proc.wait(20) == 0
    assert wait_until(lambda: members(server)["cli1"]["Status"] == 3, timeout=20), server.log()
    assert wait_until(lambda: server.request("GET", "/v1/catalog/node/cli1")[0] != 200
                      or json.loads(server.request("GET", "/v1/catalog/node/cli1")[2]) is None,
                      timeout=10)


def test_join_endpoint_and_errors(cluster):
    server, client = cluster
    status, _, _ = server.request("PUT", "/v1/agent/join/%s:%d" % (client.ip, client.serf_port))
    assert status == 200
    status, _, body = server.request("PUT", "/v1/agent/join/127.0.0.1:1")
    assert status == 500 and b"Failed to join" in body
    status, _, body = server.request("PUT", "/v1/agent/force-leave/no-such-node")
    assert status == 500


def test_force_leave_failed_member(cluster):
    server, client = cluster
    assert wait_until(lambda: serf_health(server, "cli1") == "passing")
    client.kill()
    assert wait_until(lambda: members(server)["cli1"]["Status"] == 4, timeout=40), server.log()
    status, _, _ = server.request("PUT", "/v1/agent/force-leave/cli1?prune")
    assert status == 200
    assert wait_until(lambda: "cli1" not in members(server), timeout=10)


def test_retry_join_waits_for_the_server(request):
    """-retry-join keeps trying until the server exists: the client starts first."""
    from agentlib import free_port
    serf_port = free_port("127.0.0.1")
    client = Agent(dev=False, server=False, node="cli-retry", ip="127.0.0.3",
                   extra_args=["-retry-join", "127.0.0.1:%d" % serf_port, "-retry-interval", "1s"])
    server = Agent(node="srv-retry", ip="127.0.0.1")
    server.serf_port = serf_port

    def fin():
        for a in (client, server):
            try:
                a.stop()
            finally:
                a.kill()
    request.addfinalizer(fin)
    client.start()
    time.sleep(2.5)  # at least two failed attempts
    assert len(members(client)) == 1
    server.start()
    assert wait_until(lambda: len(members(server)) == 2, timeout=20), client.log()
    assert "retry-join: joined" in client.log()
    assert wait_until(lambda: serf_health(server, "cli-retry") == "passing", timeout=10)
