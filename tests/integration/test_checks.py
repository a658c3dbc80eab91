"""Health checks run by a real agent, each changing state: an HTTP check against a local
http.server that starts failing (and answers 429), a TCP check on a closed and on an open port,
a UDP check, TTL expiry, thresholds (FailuresBeforeCritical), script checks refused when
disabled and run when enable_script_checks is set, alias checks, and a blocking
/v1/health/service/<name> query waking on a check change.

Skipped while the agent has no local state wired (the endpoints answer 404)."""
import http.server
import json
import os
import socket
import tempfile
import threading
import time

import consul
import pytest

from agentlib import Agent, free_port


def put(a, path, body=None):
    data = None if body is None else json.dumps(body)
    return a.request("PUT", path, data)


def wait_for(fn, timeout=15.0, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("condition not met in %.1fs (last: %r)" % (timeout, last))


def check(a, cid):
    return a.get_json("/v1/agent/checks")[0].get(cid)


def wait_status(a, cid, status, timeout=15.0):
    return wait_for(lambda: (check(a, cid) or {}).get("Status") == status and check(a, cid),
                    timeout=timeout)


@pytest.fixture(autouse=True)
def _require_local(request):
    if "agent" in request.fixturenames:
        a = request.getfixturevalue("agent")
        status, _, _ = a.request("GET", "/v1/agent/checks")
        if status != 200:
            pytest.skip("the agent's local checks are not wired into this build")


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        body = b"fine" if self.server.status == 200 else b"trouble"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.status = 200
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_http_check_changes_state(agent, web):
    c = consul.Consul(host=agent.ip, port=agent.http_port)
    url = "http://127.0.0.1:%d/health" % web.server_address[1]
    assert c.agent.service.register("webapp", service_id="webapp-1", port=web.server_address[1],
                                    check=consul.Check.http(url, interval="1s", timeout="1s"))
    ch = wait_status(agent, "service:webapp-1", "passing")
    assert ch["Output"] == "HTTP GET %s: 200 OK Output: fine" % url
    assert ch["Type"] == "http"
    assert ch["Definition"]["HTTP"] == url
    web.status = 429
    ch = wait_status(agent, "service:webapp-1", "warning")
    assert ch["Output"] == "HTTP GET %s: 429 Too Many Requests Output: trouble" % url
    web.status = 500
    wait_status(agent, "service:webapp-1", "critical")
    # The catalog follows: the instance drops out of ?passing.
    wait_for(lambda: agent.get_json("/v1/health/service/webapp?passing")[0] == [])
    web.status = 200
    wait_status(agent, "service:webapp-1", "passing")
    wait_for(lambda: agent.get_json("/v1/health/service/webapp?passing")[0])
    assert c.agent.service.deregister("webapp-1")


def test_http_check_thresholds(agent, web):
    url = "http://127.0.0.1:%d/" % web.server_address[1]
    put(agent, "/v1/agent/check/register", {"Name": "thr", "HTTP": url, "Interval": "1s",
                                            "FailuresBeforeCritical": 3, "Status": "passing"})
    wait_for(lambda: check(agent, "thr")["Output"].startswith("HTTP GET"))
    web.status = 503
    # Two failures are not enough; the third turns it critical.
    time.sleep(1.5)
    assert check(agent, "thr")["Status"] == "passing"
    wait_status(agent, "thr", "critical", timeout=10)
    put(agent, "/v1/agent/check/deregister/thr")


def test_tcp_check(agent):
    closed = free_port()
    put(agent, "/v1/agent/check/register", {"Name": "tcp-closed", "TCP": "127.0.0.1:%d" % closed,
                                            "Interval": "1s", "Status": "passing"})
    ch = wait_status(agent, "tcp-closed", "critical")
    assert ch["Output"] == "dial tcp 127.0.0.1:%d: connect: connection refused" % closed
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    try:
        put(agent, "/v1/agent/check/register", {"Name": "tcp-open", "TCP": "127.0.0.1:%d" % port,
                                                "Interval": "1s"})
        ch = wait_status(agent, "tcp-open", "passing")
        assert ch["Output"] == "TCP connect 127.0.0.1:%d: Success" % port
    finally:
        lsock.close()
    wait_status(agent, "tcp-open", "critical")
    put(agent, "/v1/agent/check/deregister/tcp-open")
    put(agent, "/v1/agent/check/deregister/tcp-closed")


def test_udp_check(agent):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    put(agent, "/v1/agent/check/register", {"Name": "udp", "UDP": "127.0.0.1:%d" % port,
                                            "Interval": "1s", "Timeout": "200ms"})
    ch = wait_status(agent, "udp", "passing")
    assert ch["Output"] == "UDP connect 127.0.0.1:%d: Success" % port
    u.close()  # now the port answers with ICMP port unreachable
    wait_status(agent, "udp", "critical")
    put(agent, "/v1/agent/check/deregister/udp")


def test_ttl_expiry(agent):
    c = consul.Consul(host=agent.ip, port=agent.http_port)
    assert c.agent.check.register("beat", check=consul.Check.ttl("1s"), check_id="beat")
    assert c.agent.check.ttl_pass("beat", notes="alive")
    assert check(agent, "beat")["Status"] == "passing"
    ch = wait_status(agent, "beat", "critical", timeout=5)
    assert ch["Output"] == "TTL expired (last output before timeout follows): alive"
    assert c.agent.check.ttl_pass("beat")
    assert check(agent, "beat")["Status"] == "passing"
    c.agent.check.deregister("beat")


def test_script_checks_refused_when_disabled(agent):
    status, _, body = put(agent, "/v1/agent/check/register",
                          {"Name": "scr", "Args": ["/bin/true"], "Interval": "1s"})
    assert status == 500
    assert body == (b"Scripts are disabled on this agent from remote calls; to enable, "
                    b"configure 'enable_script_checks' to true")
    status, _, body = put(agent, "/v1/agent/service/register",
                          {"Name": "scrsvc", "Check": {"Args": ["/bin/true"], "Interval": "1s"}})
    assert status == 500
    assert "scr" not in agent.get_json("/v1/agent/checks")[0]
    assert "scrsvc" not in agent.get_json("/v1/agent/services")[0]


def test_alias_check(agent):
    put(agent, "/v1/agent/service/register", {"Name": "backend", "Check": {"TTL": "1h", "Status": "passing"}})
    put(agent, "/v1/agent/service/register", {"Name": "frontend", "Check": {"AliasService": "backend"}})
    wait_status(agent, "service:frontend", "passing")
    put(agent, "/v1/agent/check/fail/service:backend?note=db%20down")
    ch = wait_status(agent, "service:frontend", "critical")
    assert ch["Output"] == 'Aliased check "Service \'backend\' check" failing: db down'
    put(agent, "/v1/agent/service/deregister/frontend")
    put(agent, "/v1/agent/service/deregister/backend")


def test_blocking_health_query_wakes(agent):
    put(agent, "/v1/agent/service/register", {"Name": "blk", "Check": {"TTL": "1h", "Status": "passing"}})
    wait_for(lambda: agent.get_json("/v1/health/service/blk?passing")[0])
    _, headers = agent.get_json("/v1/health/service/blk")
    index = headers["x-consul-index"]
    result = {}

    def waiter():
        result["r"] = agent.request("GET", "/v1/health/service/blk?index=%s&wait=30s" % index)
    th = threading.Thread(target=waiter)
    t0 = time.time()
    th.start()
    time.sleep(0.5)
    put(agent, "/v1/agent/check/fail/service:blk")
    th.join(20)
    assert not th.is_alive()
    status, _, body = result["r"]
    assert status == 200
    assert time.time() - t0 < 10
    rows = json.loads(body)
    assert [ch["Status"] for ch in rows[0]["Checks"] if ch["CheckID"] == "service:blk"] == ["critical"]
    put(agent, "/v1/agent/service/deregister/blk")


def test_script_checks_enabled_by_config(request):
    d = tempfile.mkdtemp(prefix="concord-scripts-")
    with open(os.path.join(d, "scripts.json"), "w") as f:
        json.dump({"enable_script_checks": True,
                   "check": {"id": "cfgscript", "name": "from config",
                             "args": ["/bin/sh", "-c", "echo warn-ish; exit 1"], "interval": "1s"}}, f)
    a = Agent(node="scripts-" + str(os.getpid()), extra_args=["-config-dir", d])
    a.start()

    def fin():
        try:
            a.stop()
        finally:
            a.kill()
    request.addfinalizer(fin)
    status, _, _ = a.request("GET", "/v1/agent/checks")
    if status != 200:
        pytest.skip("the agent's local checks are not wired into this build")
    ch = wait_status(a, "cfgscript", "warning")
    assert ch["Output"] == "warn-ish\n"
    assert ch["Type"] == "script"
    status, _, body = put(a, "/v1/agent/check/register",
                          {"Name": "apiscript", "Args": ["/bin/sh", "-c", "exit 0"], "Interval": "1s"})
    assert status == 200, body
    wait_status(a, "apiscript", "passing")
    status, _, body = put(a, "/v1/agent/check/register",
                          {"Name": "slow", "Args": ["/bin/sh", "-c", "sleep 60"], "Interval": "1s",
                           "Timeout": "300ms", "Status": "passing"})
    ch = wait_status(a, "slow", "critical")
    assert ch["Output"].startswith("Timed out (300ms) running check")
