"""The agent's own services and checks against a real agent: /v1/agent/service* and
/v1/agent/check* over raw HTTP and python-consul, Consul's status codes and messages, the
catalog and /v1/health following the agent's state (anti-entropy), maintenance mode, config
files and reload, API registrations surviving a restart, hash-blocking on /v1/agent/service/<id>,
and a thousand services with TTL checks on one agent while the API stays responsive.

Skipped while the agent has no local state wired (the endpoints answer 404)."""
import json
import os
import tempfile
import threading
import time

import consul
import pytest

from agentlib import Agent


def _wired(a):
    status, _, _ = a.request("GET", "/v1/agent/services")
    return status == 200


@pytest.fixture(autouse=True)
def _require_local(request):
    for name in ("agent", "server_agent", "fresh_agent"):
        if name in request.fixturenames:
            a = request.getfixturevalue(name)
            if not _wired(a):
                pytest.skip("the agent's local services are not wired into this build")
            return


def put(a, path, body=None):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    return a.request("PUT", path, data)


def wait_for(fn, timeout=10.0, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("condition not met in %.1fs (last: %r)" % (timeout, last))


def client(a):
    host, port = a.http_addr.split(":")
    return consul.Consul(host=host, port=int(port))


def deregister_all(a):
    services, _ = a.get_json("/v1/agent/services")
    for sid in services:
        put(a, "/v1/agent/service/deregister/" + sid)
    checks, _ = a.get_json("/v1/agent/checks")
    for cid in checks:
        put(a, "/v1/agent/check/deregister/" + cid)


# ---- registration and shapes ----

def test_register_service_shapes(agent):
    status, _, body = put(agent, "/v1/agent/service/register", {
        "Name": "web", "ID": "web-1", "Tags": ["v1", "primary"], "Address": "10.0.0.5",
        "Port": 8080, "Meta": {"version": "1"}, "Weights": {"Passing": 3, "Warning": 1},
        "EnableTagOverride": True, "Check": {"TTL": "30s"}})
    assert status == 200, body
    assert body == b""
    services, _ = agent.get_json("/v1/agent/services")
    svc = services["web-1"]
    assert svc["Service"] == "web"
    assert svc["Tags"] == ["v1", "primary"]
    assert svc["Meta"] == {"version": "1"}
    assert svc["Port"] == 8080 and svc["Address"] == "10.0.0.5"
    assert svc["Weights"] == {"Passing": 3, "Warning": 1}
    assert svc["EnableTagOverride"] is True
    assert svc["TaggedAddresses"]["lan_ipv4"] == {"Address": "10.0.0.5", "Port": 8080}
    assert svc["Datacenter"] == "dc1"
    assert list(svc.keys())[:4] == ["ID", "Service", "Tags", "Meta"]
    checks, _ = agent.get_json("/v1/agent/checks")
    chk = checks["service:web-1"]
    assert chk["Name"] == "Service 'web' check"
    assert chk["Status"] == "critical"
    assert chk["ServiceID"] == "web-1" and chk["ServiceName"] == "web"
    assert chk["ServiceTags"] == ["v1", "primary"]
    assert chk["Type"] == "ttl"
    one, headers = agent.get_json("/v1/agent/service/web-1")
    assert one["ID"] == "web-1" and one["ContentHash"]
    assert headers["x-consul-contenthash"] == one["ContentHash"]
    deregister_all(agent)


def test_register_errors(agent):
    cases = [
        ("/v1/agent/service/register", "", 400, "Request decode failed: EOF"),
        ("/v1/agent/service/register", "{", 400, None),
        ("/v1/agent/service/register", {"Port": 1}, 400, "Missing service name"),
        ("/v1/agent/service/register", {"Name": "x", "Address": "0.0.0.0"}, 400, "Invalid service address"),
        ("/v1/agent/service/register", {"Name": "x", "Port": "80"}, 400,
         "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int"),
        ("/v1/agent/service/register", {"Name": "x", "Check": {"HTTP": "http://127.0.0.1/"}}, 400,
         "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"),
        ("/v1/agent/service/register", {"Name": "x", "Meta": {"consul-x": "1"}}, 400,
         "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use"),
        ("/v1/agent/check/register", {"TTL": "10s"}, 400, "Missing check name"),
        ("/v1/agent/check/register", {"Name": "c", "TTL": "10s", "Status": "ok"}, 400, "Bad check status"),
        ("/v1/agent/check/register", {"Name": "c"}, 400, "Invalid check: TTL must be > 0 for TTL checks"),
        ("/v1/agent/check/register", {"Name": "c", "TTL": "10s", "ServiceID": "nope"}, 404,
         'ServiceID "nope" does not exist'),
        ("/v1/agent/service/deregister/nope", None, 404,
         'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'),
        ("/v1/agent/check/deregister/nope", None, 404,
         'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'),
        ("/v1/agent/check/pass/nope", None, 404,
         'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'),
        ("/v1/agent/check/update/nope", {"Status": "bogus"}, 400, "Invalid check status: 'bogus'"),
        ("/v1/agent/service/maintenance/nope?enable=true", None, 404,
         'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'),
        ("/v1/agent/maintenance", None, 400, "Missing value for enable"),
        ("/v1/agent/maintenance?enable=maybe", None, 400, 'Invalid value for enable: "maybe"'),
    ]
    for path, body, want_status, want_body in cases:
        status, _, got = put(agent, path, body)
        assert status == want_status, (path, body, status, got)
        if want_body is not None:
            assert got.decode() == want_body, (path, got)
    status, _, _ = agent.request("GET", "/v1/agent/service/nope")
    assert status == 404
    # A check that is not a TTL check cannot be set by hand.
    put(agent, "/v1/agent/check/register", {"Name": "tcp", "TCP": "127.0.0.1:1", "Interval": "1h"})
    status, _, got = put(agent, "/v1/agent/check/pass/tcp")
    assert status == 500 and got == b'CheckID "tcp" does not have associated TTL'
    deregister_all(agent)


def test_python_consul(agent):
    c = client(agent)
    assert c.agent.service.register("api", service_id="api-1", port=9000, tags=["a"],
                                    check=consul.Check.ttl("30s"))
    assert c.agent.check.register("disk", check=consul.Check.ttl("30s"), check_id="disk-1",
                                  notes="root fs")
    services = c.agent.services()
    assert services["api-1"]["Port"] == 9000
    checks = c.agent.checks()
    assert checks["disk-1"]["Notes"] == "root fs"
    assert checks["service:api-1"]["Status"] == "critical"
    assert c.agent.check.ttl_pass("service:api-1", notes="ok")
    assert c.agent.checks()["service:api-1"]["Status"] == "passing"
    assert c.agent.checks()["service:api-1"]["Output"] == "ok"
    assert c.agent.check.ttl_warn("disk-1")
    assert c.agent.checks()["disk-1"]["Status"] == "warning"
    # The catalog and health endpoints follow (anti-entropy).
    wait_for(lambda: [n for n in c.health.service("api")[1]
                      if n["Checks"] and any(ch["CheckID"] == "service:api-1" and ch["Status"] == "passing"
                                             for ch in n["Checks"])])
    assert c.agent.service.deregister("api-1")
    assert c.agent.check.deregister("disk-1")
    wait_for(lambda: c.catalog.service("api")[1] == [])


def test_update_endpoint_and_output_cap(agent):
    put(agent, "/v1/agent/check/register", {"Name": "upd", "TTL": "30s"})
    status, _, _ = put(agent, "/v1/agent/check/update/upd", {"Status": "warning", "Output": "x" * 5000})
    assert status == 200
    chk = agent.get_json("/v1/agent/checks")[0]["upd"]
    assert chk["Status"] == "warning"
    assert chk["Output"].endswith(" ... (captured 4096 of 5000 bytes)")
    assert len(chk["Output"]) == 4096 + len(" ... (captured 4096 of 5000 bytes)")
    deregister_all(agent)


def test_catalog_follows_agent(agent):
    node = agent.node
    put(agent, "/v1/agent/service/register",
        {"Name": "db", "Port": 5432, "Tags": ["primary"], "Check": {"TTL": "30s", "Status": "passing"}})

    def in_catalog():
        rows, _ = agent.get_json("/v1/catalog/service/db")
        return rows if rows and rows[0]["Node"] == node else None
    rows = wait_for(in_catalog)
    assert rows[0]["ServicePort"] == 5432 and rows[0]["ServiceTags"] == ["primary"]

    def health(status):
        rows, _ = agent.get_json("/v1/health/service/db")
        for r in rows:
            for ch in r["Checks"]:
                if ch["CheckID"] == "service:db" and ch["Status"] == status:
                    return r
        return None
    wait_for(lambda: health("passing"))
    put(agent, "/v1/agent/check/fail/service:db?note=broken")
    r = wait_for(lambda: health("critical"))
    assert [ch for ch in r["Checks"] if ch["CheckID"] == "service:db"][0]["Output"] == "broken"
    # ?passing drops it now.
    rows, _ = agent.get_json("/v1/health/service/db?passing")
    assert rows == []
    # The node's serfHealth is untouched by the agent's syncs.
    node_checks, _ = agent.get_json("/v1/health/node/" + node)
    assert "serfHealth" in [ch["CheckID"] for ch in node_checks]
    put(agent, "/v1/agent/service/deregister/db")
    wait_for(lambda: agent.get_json("/v1/catalog/service/db")[0] == [])
    wait_for(lambda: "service:db" not in [ch["CheckID"] for ch in
                                          agent.get_json("/v1/health/node/" + node)[0]])


def test_maintenance_mode(agent):
    c = client(agent)
    put(agent, "/v1/agent/service/register", {"Name": "cache", "Check": {"TTL": "30s", "Status": "passing"}})
    status, _, _ = put(agent, "/v1/agent/service/maintenance/cache?enable=true&reason=upgrading")
    assert status == 200
    checks = c.agent.checks()
    m = checks["_service_maintenance:cache"]
    assert m["Name"] == "Service Maintenance Mode"
    assert m["Notes"] == "upgrading"
    assert m["Status"] == "critical"
    assert m["ServiceID"] == "cache"
    wait_for(lambda: agent.get_json("/v1/health/service/cache?passing")[0] == [])
    put(agent, "/v1/agent/service/maintenance/cache?enable=false")
    assert "_service_maintenance:cache" not in c.agent.checks()
    wait_for(lambda: agent.get_json("/v1/health/service/cache?passing")[0])
    # Node maintenance: every service on the node is unhealthy while it lasts.
    put(agent, "/v1/agent/maintenance?enable=true")
    n = c.agent.checks()["_node_maintenance"]
    assert n["Name"] == "Node Maintenance Mode"
    assert n["Notes"] == ("Maintenance mode is enabled for this node, but no reason was provided. "
                          "This is a default message.")
    wait_for(lambda: agent.get_json("/v1/health/service/cache?passing")[0] == [])
    put(agent, "/v1/agent/maintenance?enable=false")
    assert "_node_maintenance" not in c.agent.checks()
    wait_for(lambda: agent.get_json("/v1/health/service/cache?passing")[0])
    deregister_all(agent)


def test_replace_existing_checks(agent):
    put(agent, "/v1/agent/service/register",
        {"Name": "r", "Checks": [{"TTL": "30s"}, {"TTL": "30s", "CheckID": "extra"}]})
    assert set(agent.get_json("/v1/agent/checks")[0]) >= {"service:r:1", "extra"}
    put(agent, "/v1/agent/service/register?replace-existing-checks", {"Name": "r", "Check": {"TTL": "30s"}})
    checks = agent.get_json("/v1/agent/checks")[0]
    assert "service:r" in checks and "extra" not in checks and "service:r:1" not in checks
    deregister_all(agent)


def test_hash_blocking(agent):
    put(agent, "/v1/agent/service/register", {"Name": "hb", "Port": 1})
    one, _ = agent.get_json("/v1/agent/service/hb")
    h = one["ContentHash"]
    # Unchanged: waits the whole ?wait.
    t0 = time.time()
    status, _, body = agent.request("GET", "/v1/agent/service/hb?hash=%s&wait=300ms" % h)
    assert status == 200 and json.loads(body)["ContentHash"] == h
    assert time.time() - t0 >= 0.25
    # A change wakes it.
    result = {}

    def waiter():
        result["r"] = agent.request("GET", "/v1/agent/service/hb?hash=%s&wait=20s" % h)
    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.3)
    put(agent, "/v1/agent/service/register", {"Name": "hb", "Port": 2})
    th.join(10)
    assert not th.is_alive()
    status, _, body = result["r"]
    assert status == 200 and json.loads(body)["Port"] == 2
    deregister_all(agent)


def test_filter(agent):
    put(agent, "/v1/agent/service/register", {"Name": "f1", "Tags": ["x"]})
    put(agent, "/v1/agent/service/register", {"Name": "f2"})
    got, _ = agent.get_json('/v1/agent/services?filter=' + '%22x%22%20in%20Tags')
    assert list(got) == ["f1"]
    status, _, body = agent.request("GET", "/v1/agent/services?filter=Nope%20%3D%3D%201")
    assert status == 400 and body.startswith(b"Failed to create boolean expression evaluator")
    deregister_all(agent)


# ---- config files, reload, restart ----

def _agent_with_config(request, config, dev=True):
    d = tempfile.mkdtemp(prefix="concord-svc-cfg-")
    path = os.path.join(d, "services.json")
    with open(path, "w") as f:
        json.dump(config, f)
    a = Agent(dev=dev, node="cfg-" + str(os.getpid()), extra_args=["-config-dir", d])
    a.start()

    def fin():
        try:
            a.stop()
        finally:
            a.kill()
    request.addfinalizer(fin)
    if not _wired(a):
        pytest.skip("the agent's local services are not wired into this build")
    return a, path


def test_config_file_services_and_reload(request):
    a, path = _agent_with_config(request, {
        "services": [{"name": "cfgsvc", "port": 7000, "tags": ["t"],
                      "check": {"id": "cfgttl", "ttl": "1h", "status": "passing"}}],
        "check": {"id": "nodettl", "name": "Node TTL", "ttl": "1h"}})
    services = a.get_json("/v1/agent/services")[0]
    assert services["cfgsvc"]["Port"] == 7000 and services["cfgsvc"]["Tags"] == ["t"]
    checks = a.get_json("/v1/agent/checks")[0]
    assert checks["cfgttl"]["Status"] == "passing"
    assert checks["nodettl"]["Name"] == "Node TTL"
    put(a, "/v1/agent/check/warn/nodettl")
    # Reload: the file changed; the API registration stays; check statuses carry over.
    put(a, "/v1/agent/service/register", {"Name": "fromapi"})
    with open(path, "w") as f:
        json.dump({"service": {"name": "cfgsvc2"}, "check": {"id": "nodettl", "name": "Node TTL", "ttl": "1h"}}, f)
    status, _, _ = put(a, "/v1/agent/reload")
    assert status == 200
    services = a.get_json("/v1/agent/services")[0]
    assert "cfgsvc" not in services and "cfgsvc2" in services and "fromapi" in services
    assert a.get_json("/v1/agent/checks")[0]["nodettl"]["Status"] == "warning"
    wait_for(lambda: a.get_json("/v1/catalog/service/cfgsvc")[0] == [])


def test_restart_keeps_api_registrations(server_agent):
    a = server_agent
    put(a, "/v1/agent/service/register", {"Name": "keep", "ID": "keep-1", "Port": 1234,
                                          "Check": {"TTL": "1h"}})
    put(a, "/v1/agent/check/register", {"Name": "nodecheck", "TTL": "1h"})
    put(a, "/v1/agent/check/pass/nodecheck?note=fine")
    put(a, "/v1/agent/maintenance?enable=true&reason=r")
    wait_for(lambda: a.get_json("/v1/catalog/service/keep")[0])
    a.restart()
    services = a.get_json("/v1/agent/services")[0]
    assert services["keep-1"]["Port"] == 1234
    checks = a.get_json("/v1/agent/checks")[0]
    assert checks["service:keep-1"]["ServiceName"] == "keep"
    # TTL check state persists across the restart (Consul's persistCheckState).
    assert checks["nodecheck"]["Status"] == "passing" and checks["nodecheck"]["Output"] == "fine"
    assert checks["_node_maintenance"]["Notes"] == "r"
    put(a, "/v1/agent/maintenance?enable=false")
    put(a, "/v1/agent/service/deregister/keep-1")
    a.restart()
    assert "keep-1" not in a.get_json("/v1/agent/services")[0]
    assert "_node_maintenance" not in a.get_json("/v1/agent/checks")[0]
    wait_for(lambda: a.get_json("/v1/catalog/service/keep")[0] == [])


# ---- scale ----

def test_thousand_services_with_ttl_checks(fresh_agent):
    a = fresh_agent
    c = client(a)
    worst = 0.0
    t0 = time.time()
    for i in range(1000):
        status, _, body = put(a, "/v1/agent/service/register", {
            "Name": "bulk", "ID": "bulk-%d" % i, "Port": 10000 + i,
            "Check": {"TTL": "30s", "Status": "passing"}})
        assert status == 200, body
        if i % 100 == 0:
            s = time.time()
            a.get_json("/v1/agent/self")
            worst = max(worst, time.time() - s)
    took = time.time() - t0
    assert len(c.agent.services()) >= 1000
    # The catalog catches up.
    wait_for(lambda: len(a.get_json("/v1/catalog/service/bulk")[0]) == 1000, timeout=60)
    # TTL updates for all of them, with reads in between staying fast.
    for i in range(0, 1000, 10):
        status, _, _ = put(a, "/v1/agent/check/pass/service:bulk-%d" % i)
        assert status == 200
    s = time.time()
    a.get_json("/v1/agent/checks")
    worst = max(worst, time.time() - s)
    assert worst < 1.0, "API answered in %.2fs while 1000 services were registered (%.1fs)" % (worst, took)
    deregister_all(a)
    wait_for(lambda: a.get_json("/v1/catalog/service/bulk")[0] == [], timeout=60)


def test_agent_health_endpoints(agent):
    put(agent, "/v1/agent/service/register", {"Name": "ah", "ID": "ah-1", "Check": {"TTL": "1h", "Status": "passing"}})
    put(agent, "/v1/agent/service/register", {"Name": "ah", "ID": "ah-2", "Check": {"TTL": "1h", "Status": "warning"}})
    status, _, body = agent.request("GET", "/v1/agent/health/service/id/ah-1")
    assert status == 200
    info = json.loads(body)
    assert info["AggregatedStatus"] == "passing"
    assert info["Service"]["ID"] == "ah-1"
    assert [c["CheckID"] for c in info["Checks"]] == ["service:ah-1"]
    status, _, body = agent.request("GET", "/v1/agent/health/service/id/ah-2?format=text")
    assert (status, body) == (429, b"warning")
    status, _, body = agent.request("GET", "/v1/agent/health/service/name/ah")
    assert status == 429 and len(json.loads(body)) == 2
    put(agent, "/v1/agent/service/maintenance/ah-1?enable=true")
    status, _, body = agent.request("GET", "/v1/agent/health/service/id/ah-1", headers={"Accept": "text/plain"})
    assert (status, body) == (503, b"maintenance")
    status, _, body = agent.request("GET", "/v1/agent/health/service/id/nope?format=text")
    assert (status, body) == (404, b"ServiceId nope not found")
    status, _, body = agent.request("GET", "/v1/agent/health/service/name/nope")
    assert status == 404 and json.loads(body) == []
    deregister_all(agent)
