"""DNS on a real agent, checked with dig: the agent's own node and the servers' "consul"
service (registered by the leader, as Consul's is), NXDOMAIN with an SOA, PTR, TCP, and
services registered through the catalog API."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")


def dig(agent, *args):
    out = subprocess.run(["dig", "@" + agent.ip, "-p", str(agent.dns_port), "+time=2", "+tries=1"]
                         + list(args), capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout


def answers(agent, *args):
    return [l.split() for l in dig(agent, "+noall", "+answer", *args).splitlines() if l.strip()]


def wait_for(fn, timeout=5.0):
    import time
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(0.1)


def test_node_lookup(agent):
    rr = wait_for(lambda: answers(agent, "%s.node.consul" % agent.node, "A"))
    assert rr and rr[0][3] == "A" and rr[0][4] == agent.ip
    # Case-insensitive, with an explicit datacenter.
    rr = answers(agent, "%s.node.DC1.consul" % agent.node.upper(), "A")
    assert rr and rr[0][4] == agent.ip


def test_consul_service_srv_with_additional(agent):
    wait_for(lambda: answers(agent, "consul.service.consul", "SRV"))
    out = dig(agent, "+noall", "+answer", "+additional", "consul.service.consul", "SRV")
    lines = [l.split() for l in out.splitlines() if l.strip()]
    srv = [l for l in lines if l[3] == "SRV"]
    a = [l for l in lines if l[3] == "A"]
    assert len(srv) == 1
    assert srv[0][6] == str(agent.server_port)
    assert srv[0][7] == "%s.node.dc1.consul." % agent.node
    assert a and a[0][0] == srv[0][7] and a[0][4] == agent.ip


def test_nxdomain_has_soa(agent):
    out = dig(agent, "no-such-service.service.consul", "A")
    assert "status: NXDOMAIN" in out
    assert "SOA\tns.consul. hostmaster.consul." in out


def test_ptr(agent):
    wait_for(lambda: answers(agent, "%s.node.consul" % agent.node, "A"))
    rr = answers(agent, "-x", agent.ip)
    assert rr and rr[0][3] == "PTR" and rr[0][4] == "%s.node.dc1.consul." % agent.node


def test_tcp(agent):
    rr = wait_for(lambda: answers(agent, "+tcp", "consul.service.consul", "A"))
    assert rr and rr[0][4] == agent.ip


def test_outside_domain_refused_without_recursors(agent):
    out = dig(agent, "example.com", "A")
    assert "status: REFUSED" in out


def test_registered_service(agent):
    import json
    status, _, body = agent.request("PUT", "/v1/catalog/register", json.dumps({
        "Node": "web-node", "Address": "127.0.0.42",
        "Service": {"Service": "web", "Tags": ["v1"], "Port": 8080},
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": "passing", "ServiceID": "web"},
    }))
    if status == 404:
        pytest.skip("catalog API not built in this binary")
    assert status == 200, body
    rr = answers(agent, "web.service.consul", "SRV")
    assert rr and rr[0][6] == "8080" and rr[0][7] == "web-node.node.dc1.consul."
    assert answers(agent, "v1.web.service.consul", "A")[0][4] == "127.0.0.42"
    assert answers(agent, "_web._v1.service.consul", "SRV")
    assert not answers(agent, "v2.web.service.consul", "A")
    # A critical check takes the instance out of DNS.
    agent.request("PUT", "/v1/catalog/register", json.dumps({
        "Node": "web-node", "Address": "127.0.0.42",
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": "critical", "ServiceID": "web"},
    }))
    assert not answers(agent, "web.service.consul", "A")
