"""The membership and Raft operator commands against real agents: `concord join` of a client
agent to a server, `members` on both, `operator raft list-peers` and `remove-peer` on the
server (and the two /v1/operator/raft endpoints behind them), `force-leave` of a killed
client, and `leave` of a client. All on 127.0.0.1 and 127.0.0.2."""
import json
import re
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


def members_cli(agent):
    """`concord members` as {name: row fields}, after checking its header."""
    out = agent.cli("members")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                                "Partition", "Segment"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def status_of(agent, node):
    row = members_cli(agent).get(node)
    return row[2] if row else None


@pytest.fixture
def cluster(request):
    """A -dev server srv1 on 127.0.0.1 and a client agent cli1 on 127.0.0.2, not joined."""
    server = Agent(node="srv1", ip="127.0.0.1")
    client = Agent(dev=False, server=False, node="cli1", ip="127.0.0.2")
    started = []

    def fin():
        codes = []
        for a in started:
            try:
                if a.proc and a.proc.poll() is None:
                    codes.append((a.node, a.stop()))
            finally:
                a.kill()
        # A clean shutdown exits 0; under ASan a leak report makes it non-zero.
        for node, code in codes:
            assert code == 0, "%s exited with %s on SIGTERM" % (node, code)
    request.addfinalizer(fin)
    server.start()
    started.append(server)
    client.start()
    started.append(client)
    return server, client


def join(server, client):
    out = client.cli("join", "127.0.0.1:%d" % server.serf_port)
    assert (out.returncode, out.stdout, out.stderr) == (
        0, "Successfully joined cluster by contacting 1 nodes.\n", ""), client.log()
    assert wait_until(lambda: status_of(server, "cli1") == "alive"), server.log()
    assert wait_until(lambda: status_of(client, "srv1") == "alive"), client.log()


def test_join_members_and_list_peers(cluster):
    server, client = cluster
    # Not joined yet: each agent knows only itself.
    assert set(members_cli(client)) == {"cli1"}
    join(server, client)

    for agent in (server, client):
        rows = members_cli(agent)
        assert set(rows) == {"srv1", "cli1"}
        assert rows["srv1"][1] == "127.0.0.1:%d" % server.serf_port
        assert rows["srv1"][2:4] == ["alive", "server"]
        assert rows["cli1"][1] == "127.0.0.2:%d" % client.serf_port
        assert rows["cli1"][2:4] == ["alive", "client"]
        # Servers sort first, as in Consul.
        assert list(rows) == ["srv1", "cli1"]

    # One voter, the leader, named by its node name and node ID.
    node_id = server.get_json("/v1/agent/self")[0]["Config"]["NodeID"]
    out = server.cli("operator", "raft", "list-peers")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Commit Index",
        "Trails Leader By"]
    row = lines[1].split()
    assert row[:6] == ["srv1", node_id, "127.0.0.1:%d" % server.server_port, "leader", "true",
                       "3"]
    assert int(row[6]) > 0 and row[7] == "-"

    # The same through -stale, which any server may answer.
    out = server.cli("operator", "raft", "list-peers", "-stale")
    assert out.returncode == 0 and out.stdout.splitlines()[1].split()[:4] == row[:4]


def test_operator_raft_endpoints(cluster):
    server, client = cluster
    join(server, client)
    node_id = server.get_json("/v1/agent/self")[0]["Config"]["NodeID"]
    conf, _ = server.get_json("/v1/operator/raft/configuration")
    assert set(conf) == {"Servers", "Index"} and conf["Index"] > 0
    assert len(conf["Servers"]) == 1
    s = conf["Servers"][0]
    assert s["ID"] == node_id and s["Node"] == "srv1"
    assert s["Address"] == "127.0.0.1:%d" % server.server_port
    assert s["Leader"] is True and s["Voter"] is True and s["ProtocolVersion"] == "3"
    assert s["LastIndex"] > 0
    stale, _ = server.get_json("/v1/operator/raft/configuration?stale")
    assert stale["Servers"][0]["ID"] == node_id

    # A client agent has no Raft of its own: it asks a server.
    status, headers, body = client.request("GET", "/v1/operator/raft/configuration")
    assert status == 200, body
    assert json.loads(body)["Servers"][0]["ID"] == node_id

    # DELETE /v1/operator/raft/peer: Consul's 400s and not-found messages.
    status, _, body = server.request("DELETE", "/v1/operator/raft/peer")
    assert status == 400 and body == (b"Must specify either ?id with the server's ID or "
                                      b"?address with IP:port of peer to remove")
    status, _, body = server.request("DELETE", "/v1/operator/raft/peer?id=a&address=b")
    assert (status, body) == (400, b"Must specify only one of ?id or ?address")
    status, _, body = server.request("DELETE", "/v1/operator/raft/peer?address=10.1.1.1:8300")
    assert (status, body) == (
        500, b'address "10.1.1.1:8300" was not found in the Raft configuration')
    status, _, body = server.request("DELETE", "/v1/operator/raft/peer?id=nope")
    assert (status, body) == (500, b'id "nope" was not found in the Raft configuration')
    status, _, _ = server.request("GET", "/v1/operator/raft/peer")
    assert status == 405
    status, _, body = server.request("GET", "/v1/operator/raft/configuration?dc=elsewhere")
    assert (status, body) == (500, b"No path to datacenter")

    # The CLI shows the agent's answer; the only peer is still there.
    out = server.cli("operator", "raft", "remove-peer", "-address=10.1.1.1:8300")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == ('Error removing peer: Unexpected response code: 500 (address '
                          '"10.1.1.1:8300" was not found in the Raft configuration)\n')
    out = server.cli("operator", "raft", "remove-peer")
    assert (out.returncode, out.stderr) == (
        1, "Error removing peer: an address or id is required for the peer to remove\n")
    out = client.cli("operator", "raft", "list-peers")  # forwarded to the server
    assert out.returncode == 0, out.stderr
    assert "srv1" in out.stdout and "leader" in out.stdout
    assert len(server.get_json("/v1/operator/raft/configuration")[0]["Servers"]) == 1


def test_join_errors(cluster):
    server, client = cluster
    out = client.cli("join")
    assert out.returncode == 1
    assert out.stderr.startswith("At least one address to join must be specified.\n\nUsage: ")
    # One bad address among good ones still joins; all bad fails.
    out = client.cli("join", "127.0.0.1:1", "127.0.0.1:%d" % server.serf_port)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
    assert out.stderr.startswith("Error joining address '127.0.0.1:1': Unexpected response "
                                 "code: 500 (")
    out = client.cli("join", "127.0.0.1:1")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.endswith("\nFailed to join any nodes.\n")


def test_force_leave_killed_client(cluster):
    server, client = cluster
    join(server, client)
    out = server.cli("force-leave", "ghost")
    assert (out.returncode, out.stdout, out.stderr) == (
        1, "", "Error force leaving: Unexpected response code: 500 (agent: No node found "
               "with name 'ghost')\n")
    client.kill()
    assert wait_until(lambda: status_of(server, "cli1") == "failed", timeout=40), server.log()
    out = server.cli("force-leave", "cli1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert wait_until(lambda: status_of(server, "cli1") == "left", timeout=10), server.log()
    # -prune forgets it at once.
    out = server.cli("force-leave", "-prune", "cli1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert wait_until(lambda: "cli1" not in members_cli(server), timeout=10), server.log()


def test_leave_client(cluster):
    server, client = cluster
    join(server, client)
    out = client.cli("leave")
    assert (out.returncode, out.stdout, out.stderr) == (0, "Graceful leave complete\n", "")
    # The agent leaves the pool and its process exits cleanly.
    assert client.proc.wait(20) == 0, client.log()
    assert wait_until(lambda: status_of(server, "cli1") == "left", timeout=20), server.log()
    # Extra arguments are refused before anything is sent.
    out = server.cli("leave", "now")
    assert out.returncode == 1 and out.stderr == "Error found unexpected args: [now]\n"
    assert out.stdout.startswith("Usage: concord leave [options]")
    assert server.proc.poll() is None
