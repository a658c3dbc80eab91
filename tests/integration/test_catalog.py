"""The catalog and health APIs against a real agent: register/deregister over raw HTTP and
through python-consul, every endpoint and parameter, Consul's JSON shapes and index rules,
blocking queries woken only by the service they watch, ?filter, and bad input."""
import json
import threading
import time
import urllib.parse

import consul
import pytest


def put(agent, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    status, _, out = agent.request("PUT", path, data)
    return status, out


def register(agent, body):
    status, out = put(agent, "/v1/catalog/register", body)
    assert (status, out) == (200, b"true"), out
    return out


def deregister(agent, body):
    status, out = put(agent, "/v1/catalog/deregister", body)
    assert (status, out) == (200, b"true"), out


def get(agent, path):
    status, headers, body = agent.request("GET", path)
    assert status == 200, (path, status, body)
    return json.loads(body), headers


def index_of(headers):
    return int(headers["x-consul-index"])


def q(expr):
    return urllib.parse.quote(expr, safe="")


SERVICE_NODE_KEYS = [
    "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceKind",
    "ServiceID", "ServiceName", "ServiceTags", "ServiceAddress", "ServiceWeights", "ServiceMeta",
    "ServicePort", "ServiceSocketPath", "ServiceEnableTagOverride", "ServiceProxy",
    "ServiceConnect", "ServiceLocality", "CreateIndex", "ModifyIndex"]
NODE_KEYS = ["ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex",
             "ModifyIndex"]
NODE_SERVICE_KEYS = ["ID", "Service", "Tags", "Address", "Meta", "Port", "Weights",
                     "EnableTagOverride", "Proxy", "Connect", "PeerName", "CreateIndex",
                     "ModifyIndex"]
CHECK_KEYS = ["Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition",
              "CreateIndex", "ModifyIndex"]


def web_registration(node="shape-n1", addr="10.1.0.1", status="passing"):
    return {
        "Node": node, "Address": addr,
        "TaggedAddresses": {"lan": addr, "wan": "198.51.100.1"},
        "NodeMeta": {"rack": "r1", "env": "prod"},
        "Service": {"ID": "shape-web-1", "Service": "shape-web", "Tags": ["v1", "primary"],
                    "Port": 8080, "Meta": {"version": "1.2"},
                    "Weights": {"Passing": 5, "Warning": 1}},
        "Checks": [
            {"CheckID": "shape-http", "Name": "HTTP", "Status": status,
             "ServiceID": "shape-web-1",
             "Definition": {"HTTP": "http://127.0.0.1:1/health", "Interval": "10s",
                            "Timeout": "1s"}},
            {"CheckID": "shape-node", "Name": "node ok", "Status": "passing"},
        ],
    }


def test_register_and_json_shapes(agent):
    register(agent, web_registration())
    svcs, headers = get(agent, "/v1/catalog/service/shape-web")
    assert len(svcs) == 1
    s = svcs[0]
    assert list(s.keys()) == SERVICE_NODE_KEYS
    assert s["Node"] == "shape-n1" and s["Address"] == "10.1.0.1"
    assert s["Datacenter"] == "dc1"
    assert s["TaggedAddresses"] == {"lan": "10.1.0.1", "wan": "198.51.100.1"}
    assert s["NodeMeta"] == {"env": "prod", "rack": "r1"}
    assert list(s["NodeMeta"].keys()) == ["env", "rack"]  # Go sorts map keys
    assert s["ServiceTags"] == ["v1", "primary"]
    assert s["ServiceWeights"] == {"Passing": 5, "Warning": 1}
    assert s["ServiceProxy"] == {"Mode": "", "MeshGateway": {}, "Expose": {}}
    assert s["ServiceConnect"] == {} and s["ServiceLocality"] is None
    assert s["CreateIndex"] == s["ModifyIndex"] == index_of(headers)
    assert headers["x-consul-knownleader"] == "true"

    nodes, _ = get(agent, "/v1/health/service/shape-web")
    assert len(nodes) == 1
    n = nodes[0]
    assert list(n.keys()) == ["Node", "Service", "Checks"]
    assert list(n["Node"].keys()) == NODE_KEYS
    assert list(n["Service"].keys()) == NODE_SERVICE_KEYS
    assert [c["CheckID"] for c in n["Checks"]] == ["shape-node", "shape-http"]  # node's first
    http = n["Checks"][1]
    assert list(http.keys()) == CHECK_KEYS
    assert http["ServiceName"] == "shape-web" and http["ServiceTags"] == ["v1", "primary"]
    assert http["Type"] == "http"
    assert http["Definition"] == {"Interval": "10s", "Timeout": "1s",
                                  "HTTP": "http://127.0.0.1:1/health"}
    assert n["Checks"][0]["ServiceTags"] == []

    # A check registered without a Status is critical.
    register(agent, {"Node": "shape-n1", "Address": "10.1.0.1", "SkipNodeUpdate": True,
                     "Check": {"Name": "nostatus"}})
    checks, _ = get(agent, "/v1/health/node/shape-n1")
    byid = {c["CheckID"]: c for c in checks}
    assert byid["nostatus"]["Status"] == "critical"  # CheckID defaults to the name


def test_unchanged_registration_keeps_indexes(agent):
    reg = web_registration(node="idx-n1")
    reg["Service"]["ID"] = "idx-web"
    reg["Service"]["Service"] = "idx-web"
    reg["Checks"][0]["ServiceID"] = "idx-web"
    reg["Checks"][0]["CheckID"] = "idx-http"
    reg["Checks"][1]["CheckID"] = "idx-node"
    register(agent, reg)
    before, h1 = get(agent, "/v1/health/service/idx-web")
    register(agent, reg)
    after, h2 = get(agent, "/v1/health/service/idx-web")
    assert after == before and index_of(h1) == index_of(h2)
    # SkipNodeUpdate does not touch the node.
    register(agent, {"Node": "idx-n1", "Address": "203.0.113.9", "SkipNodeUpdate": True})
    node, _ = get(agent, "/v1/catalog/node/idx-n1")
    assert node["Node"]["Address"] == "10.1.0.1"
    # A changed check moves the service's index and the check's ModifyIndex only.
    reg["Checks"][0]["Status"] = "warning"
    register(agent, reg)
    changed, h3 = get(agent, "/v1/health/service/idx-web")
    assert index_of(h3) > index_of(h2)
    chk = changed[0]["Checks"][1]
    assert chk["Status"] == "warning" and chk["ModifyIndex"] == index_of(h3)
    assert chk["CreateIndex"] == before[0]["Checks"][1]["CreateIndex"]
    assert changed[0]["Service"]["ModifyIndex"] == before[0]["Service"]["ModifyIndex"]


def test_python_consul(agent):
    c = consul.Consul(host=agent.ip, port=agent.http_port)
    assert c.catalog.register("py-n1", "10.2.0.1",
                              service={"Service": "py-api", "ID": "py-api-1", "Port": 9000,
                                       "Tags": ["blue"]},
                              check={"CheckID": "py-c", "Name": "py", "Status": "passing",
                                     "ServiceID": "py-api-1"})
    assert c.catalog.register("py-n2", "10.2.0.2",
                              service={"Service": "py-api", "ID": "py-api-2", "Port": 9001},
                              check={"CheckID": "py-c", "Name": "py", "Status": "critical",
                                     "ServiceID": "py-api-2"})
    index, nodes = c.catalog.nodes()
    names = [n["Node"] for n in nodes]
    assert "py-n1" in names and "py-n2" in names and names == sorted(names, key=str.lower)
    index, services = c.catalog.services()
    assert services["py-api"] == ["blue"]
    index, svc = c.catalog.service("py-api")
    assert [s["ServiceID"] for s in svc] == ["py-api-1", "py-api-2"]
    index, svc = c.catalog.service("py-api", tag="blue")
    assert [s["ServiceID"] for s in svc] == ["py-api-1"]
    index, node = c.catalog.node("py-n1")
    assert list(node["Services"].keys()) == ["py-api-1"]
    index, healthy = c.health.service("py-api", passing=True)
    assert [n["Service"]["ID"] for n in healthy] == ["py-api-1"]
    index, everything = c.health.service("py-api")
    assert len(everything) == 2
    index, checks = c.health.checks("py-api")
    assert [(ch["Node"], ch["CheckID"]) for ch in checks] == [("py-n1", "py-c"), ("py-n2", "py-c")]
    index, critical = c.health.state("critical")
    assert ("py-n2", "py-c") in [(ch["Node"], ch["CheckID"]) for ch in critical]
    index, checks = c.health.node("py-n1")
    assert [ch["CheckID"] for ch in checks] == ["py-c"]
    # Blocking through the client: returns at once when the index is already past.
    index2, _ = c.health.service("py-api", index=int(index) - 1, wait="1s")
    assert int(index2) >= int(index)
    assert c.catalog.deregister("py-n2", service_id="py-api-2")
    index, svc = c.catalog.service("py-api")
    assert [s["ServiceID"] for s in svc] == ["py-api-1"]
    assert c.catalog.deregister("py-n1")
    assert c.catalog.deregister("py-n2")
    index, svc = c.catalog.service("py-api")
    assert svc == []


def test_datacenters_and_nodes(agent):
    dcs, _ = get(agent, "/v1/catalog/datacenters")
    assert dcs == ["dc1"]
    register(agent, {"Node": "nm-a", "Address": "10.3.0.1", "NodeMeta": {"role": "db", "az": "1"}})
    register(agent, {"Node": "nm-b", "Address": "10.3.0.2", "NodeMeta": {"role": "web", "az": "1"}})
    nodes, headers = get(agent, "/v1/catalog/nodes?node-meta=role:db")
    assert [n["Node"] for n in nodes] == ["nm-a"]
    nodes, _ = get(agent, "/v1/catalog/nodes?node-meta=az:1&node-meta=role:web")
    assert [n["Node"] for n in nodes] == ["nm-b"]
    nodes, _ = get(agent, "/v1/catalog/nodes?filter=" + q('Meta.role == "web" or Node == "nm-a"'))
    assert [n["Node"] for n in nodes] == ["nm-a", "nm-b"]
    nodes, _ = get(agent, "/v1/catalog/nodes?near=_agent&node-meta=role:nothing")
    assert nodes == []
    # The agent registers itself.
    nodes, _ = get(agent, "/v1/catalog/nodes")
    assert agent.node in [n["Node"] for n in nodes]


def test_services_map(agent):
    for i, tags in enumerate([["a", "b"], ["b", "c"], []]):
        register(agent, {"Node": "sm-%d" % i, "Address": "10.4.0.%d" % (i + 1),
                         "NodeMeta": {"tier": "t%d" % i},
                         "Service": {"Service": "sm-svc", "ID": "sm-%d" % i, "Tags": tags}})
    register(agent, {"Node": "sm-0", "Address": "10.4.0.1", "NodeMeta": {"tier": "t0"},
                     "Service": {"Service": "sm-other"}})
    services, headers = get(agent, "/v1/catalog/services")
    assert services["sm-svc"] == ["a", "b", "c"]
    assert services["sm-other"] == []
    assert list(services.keys()) == sorted(services.keys())
    services, _ = get(agent, "/v1/catalog/services?node-meta=tier:t1")
    assert services == {"sm-svc": ["b", "c"]}
    services, _ = get(agent, "/v1/catalog/services?filter=" + q('ServiceName == "sm-other"'))
    assert services == {"sm-other": []}


def test_service_tags_meta_filter(agent):
    specs = [("tg-1", ["v1", "Primary"], "prod", "1.0"), ("tg-2", ["v1"], "dev", "2.0"),
             ("tg-3", ["v2", "primary"], "prod", "2.0")]
    for node, tags, env, ver in specs:
        register(agent, {"Node": node, "Address": "10.5.0.1", "NodeMeta": {"env": env},
                         "Service": {"Service": "tg", "ID": "tg", "Tags": tags,
                                     "Meta": {"version": ver}}})
    def ids(path):
        return [s["Node"] for s in get(agent, path)[0]]
    assert ids("/v1/catalog/service/tg") == ["tg-1", "tg-2", "tg-3"]
    assert ids("/v1/catalog/service/tg?tag=v1") == ["tg-1", "tg-2"]
    assert ids("/v1/catalog/service/tg?tag=v1&tag=primary") == ["tg-1"]  # case-insensitive
    assert ids("/v1/catalog/service/TG?tag=PRIMARY") == ["tg-1", "tg-3"]
    assert ids("/v1/catalog/service/tg?node-meta=env:prod") == ["tg-1", "tg-3"]
    assert ids("/v1/catalog/service/tg?filter=" + q('ServiceMeta.version == "2.0"')) == ["tg-2", "tg-3"]
    assert ids("/v1/catalog/service/tg?filter=" + q('"v2" in ServiceTags and NodeMeta.env == prod')) == ["tg-3"]
    assert ids("/v1/catalog/service/tg?filter=" + q("ServiceMeta.nothere == x")) == []
    assert ids("/v1/catalog/service/no-such-service") == []

    def hids(path):
        return [n["Node"]["Node"] for n in get(agent, path)[0]]
    assert hids("/v1/health/service/tg?tag=v1&tag=primary") == ["tg-1"]
    assert hids("/v1/health/service/tg?node-meta=env:dev") == ["tg-2"]
    assert hids("/v1/health/service/tg?filter=" + q('Service.Meta.version == "1.0"')) == ["tg-1"]
    assert hids("/v1/health/service/tg?filter=" + q("Node.Meta.env != prod")) == ["tg-2"]


def test_node_endpoints(agent):
    register(agent, {"Node": "ne-1", "Address": "10.6.0.1",
                     "Service": {"Service": "ne-b", "Tags": ["x"]}})
    register(agent, {"Node": "ne-1", "Address": "10.6.0.1", "Service": {"Service": "ne-a"}})
    register(agent, {"Node": "ne-empty", "Address": "10.6.0.2"})
    node, headers = get(agent, "/v1/catalog/node/ne-1")
    assert list(node.keys()) == ["Node", "Services"]
    assert list(node["Services"].keys()) == ["ne-a", "ne-b"]
    assert node["Services"]["ne-a"]["Tags"] == []
    node, _ = get(agent, "/v1/catalog/node/NE-1")  # case-insensitive
    assert node["Node"]["Node"] == "ne-1"
    node, _ = get(agent, "/v1/catalog/node/ne-1?filter=" + q("x in Tags"))
    assert list(node["Services"].keys()) == ["ne-b"]
    assert get(agent, "/v1/catalog/node/ne-unknown")[0] is None
    lst, _ = get(agent, "/v1/catalog/node-services/ne-1")
    assert [s["ID"] for s in lst["Services"]] == ["ne-a", "ne-b"]
    assert lst["Node"]["Node"] == "ne-1"
    assert get(agent, "/v1/catalog/node-services/ne-unknown")[0] == {"Node": None, "Services": None}
    assert get(agent, "/v1/catalog/node-services/ne-empty")[0]["Services"] is None
    assert get(agent, "/v1/catalog/node-services/ne-empty?filter=" + q("Port == 1"))[0]["Services"] == []


def test_health_endpoints(agent):
    register(agent, {"Node": "he-1", "Address": "10.7.0.1", "NodeMeta": {"zone": "a"},
                     "Service": {"Service": "he"},
                     "Checks": [{"CheckID": "he-svc", "Name": "svc", "Status": "warning",
                                 "ServiceID": "he", "Output": "slow"},
                                {"CheckID": "serfHealth", "Name": "Serf", "Status": "passing"}]})
    register(agent, {"Node": "he-2", "Address": "10.7.0.2", "NodeMeta": {"zone": "b"},
                     "Service": {"Service": "he"},
                     "Checks": [{"CheckID": "he-svc", "Name": "svc", "Status": "passing",
                                 "ServiceID": "he"}]})
    checks, _ = get(agent, "/v1/health/node/he-1")
    assert [c["CheckID"] for c in checks] == ["he-svc", "serfHealth"]
    checks, _ = get(agent, "/v1/health/node/he-1?filter=" + q("Status == warning"))
    assert [c["CheckID"] for c in checks] == ["he-svc"]
    assert get(agent, "/v1/health/node/he-unknown")[0] == []
    checks, _ = get(agent, "/v1/health/checks/he")
    assert [(c["Node"], c["CheckID"]) for c in checks] == [("he-1", "he-svc"), ("he-2", "he-svc")]
    checks, _ = get(agent, "/v1/health/checks/he?node-meta=zone:b")
    assert [c["Node"] for c in checks] == ["he-2"]
    checks, _ = get(agent, "/v1/health/checks/he?filter=" + q('Output contains "slow"'))
    assert [c["Node"] for c in checks] == ["he-1"]
    warning, _ = get(agent, "/v1/health/state/warning")
    assert ("he-1", "he-svc") in [(c["Node"], c["CheckID"]) for c in warning]
    assert all(c["Status"] == "warning" for c in warning)
    anyc, _ = get(agent, "/v1/health/state/any?node-meta=zone:a")
    assert [(c["Node"], c["CheckID"]) for c in anyc] == [("he-1", "he-svc"), ("he-1", "serfHealth")]
    passing, _ = get(agent, "/v1/health/state/passing?filter=" + q('Node == "he-2"'))
    assert [c["CheckID"] for c in passing] == ["he-svc"]
    # ?passing drops instances with any non-passing check (node checks included).
    nodes, _ = get(agent, "/v1/health/service/he?passing")
    assert [n["Node"]["Node"] for n in nodes] == ["he-2"]
    nodes, _ = get(agent, "/v1/health/service/he?passing=false")
    assert len(nodes) == 2
    nodes, _ = get(agent, "/v1/health/service/he?passing=1")
    assert len(nodes) == 1
    nodes, _ = get(agent, "/v1/health/service/he?filter=" + q("Checks.Status == warning"))
    assert [n["Node"]["Node"] for n in nodes] == ["he-1"]
    # A node-level check going critical takes every service on the node down.
    register(agent, {"Node": "he-2", "Address": "10.7.0.2", "NodeMeta": {"zone": "b"},
                     "Check": {"CheckID": "serfHealth", "Name": "Serf", "Status": "critical"}})
    nodes, _ = get(agent, "/v1/health/service/he?passing")
    assert nodes == []


def test_deregister_cascades(agent):
    register(agent, {"Node": "dc-1", "Address": "10.8.0.1", "Service": {"Service": "dc-a"},
                     "Check": {"CheckID": "dc-c", "Name": "c", "ServiceID": "dc-a",
                               "Status": "passing"}})
    register(agent, {"Node": "dc-1", "Address": "10.8.0.1", "Service": {"Service": "dc-b"},
                     "Check": {"CheckID": "dc-n", "Name": "n", "Status": "passing"}})
    _, h1 = get(agent, "/v1/catalog/service/dc-a")
    deregister(agent, {"Node": "dc-1", "CheckID": "dc-n"})
    assert [c["CheckID"] for c in get(agent, "/v1/health/node/dc-1")[0]] == ["dc-c"]
    deregister(agent, {"Node": "dc-1", "ServiceID": "dc-a"})
    assert get(agent, "/v1/health/node/dc-1")[0] == []  # its check went with it
    svc, h2 = get(agent, "/v1/catalog/service/dc-a")
    assert svc == [] and index_of(h2) > index_of(h1)  # the extinction index, not 0 or less
    deregister(agent, {"Node": "dc-1"})
    assert get(agent, "/v1/catalog/node/dc-1")[0] is None
    assert get(agent, "/v1/catalog/service/dc-b")[0] == []
    deregister(agent, {"Node": "dc-1"})  # again: nothing to do, still true
    deregister(agent, {"Node": "dc-1", "ServiceID": "nope", "Address": "obsolete is allowed"})


def blocking_get(agent, path, index, wait, out):
    start = time.time()
    status, headers, body = agent.request("GET", "%s%sindex=%d&wait=%s" % (
        path, "&" if "?" in path else "?", index, wait), timeout=60)
    out.append((time.time() - start, status, headers, body))


def test_blocking_health_service_per_service(agent):
    register(agent, {"Node": "bl-1", "Address": "10.9.0.1", "Service": {"Service": "bl-web"},
                     "Check": {"CheckID": "bl-web-chk", "Name": "c", "ServiceID": "bl-web",
                               "Status": "passing"}})
    register(agent, {"Node": "bl-2", "Address": "10.9.0.2", "Service": {"Service": "bl-db"}})
    _, headers = get(agent, "/v1/health/service/bl-web")
    index = index_of(headers)
    out = []
    t = threading.Thread(target=blocking_get,
                         args=(agent, "/v1/health/service/bl-web", index, "20s", out))
    t.start()
    time.sleep(0.7)
    # Changes elsewhere (another service, a KV write, another node) must not wake it.
    register(agent, {"Node": "bl-2", "Address": "10.9.0.2", "Service": {"Service": "bl-db",
                                                                         "Tags": ["x"]}})
    register(agent, {"Node": "bl-3", "Address": "10.9.0.3"})
    agent.request("PUT", "/v1/kv/bl-key", "v")
    time.sleep(1.0)
    assert t.is_alive(), "woken by a change to another service"
    # A check change of bl-web wakes it.
    woke = time.time()
    register(agent, {"Node": "bl-1", "Address": "10.9.0.1", "SkipNodeUpdate": True,
                     "Check": {"CheckID": "bl-web-chk", "Name": "c", "ServiceID": "bl-web",
                               "Status": "critical"}})
    t.join(10)
    assert not t.is_alive()
    elapsed, status, headers, body = out[0]
    assert status == 200 and elapsed >= 1.5
    assert time.time() - woke < 2
    assert index_of(headers) > index
    assert json.loads(body)[0]["Checks"][0]["Status"] == "critical"

    # A node change (address) wakes it too: the node is part of the answer.
    index = index_of(headers)
    out = []
    t = threading.Thread(target=blocking_get,
                         args=(agent, "/v1/health/service/bl-web", index, "20s", out))
    t.start()
    time.sleep(0.5)
    register(agent, {"Node": "bl-1", "Address": "10.9.0.99"})
    t.join(10)
    assert not t.is_alive()
    assert json.loads(out[0][3])[0]["Node"]["Address"] == "10.9.0.99"

    # Without a change, ?wait runs out and the same index comes back.
    _, headers = get(agent, "/v1/health/service/bl-web")
    out = []
    blocking_get(agent, "/v1/health/service/bl-web", index_of(headers), "1s", out)
    elapsed, status, h2, _ = out[0]
    assert status == 200 and 0.9 <= elapsed < 5 and index_of(h2) == index_of(headers)


def test_blocking_catalog_reads(agent):
    register(agent, {"Node": "bc-1", "Address": "10.10.0.1", "Service": {"Service": "bc-svc"}})
    for path, change in [
        ("/v1/catalog/service/bc-svc",
         {"Node": "bc-2", "Address": "10.10.0.2", "Service": {"Service": "bc-svc"}}),
        ("/v1/catalog/nodes", {"Node": "bc-3", "Address": "10.10.0.3"}),
        ("/v1/catalog/services",
         {"Node": "bc-3", "Address": "10.10.0.3", "Service": {"Service": "bc-new"}}),
        ("/v1/catalog/node/bc-1",
         {"Node": "bc-1", "Address": "10.10.0.1", "Service": {"Service": "bc-more"}}),
        ("/v1/health/state/any",
         {"Node": "bc-1", "Address": "10.10.0.1", "Check": {"Name": "bc-chk"}}),
    ]:
        _, headers = get(agent, path)
        out = []
        t = threading.Thread(target=blocking_get, args=(agent, path, index_of(headers), "20s", out))
        t.start()
        time.sleep(0.4)
        register(agent, change)
        t.join(10)
        assert not t.is_alive(), path
        assert out[0][1] == 200 and index_of(out[0][2]) > index_of(headers), path
    # The last instance going away wakes a blocked service query with an empty answer.
    _, headers = get(agent, "/v1/catalog/service/bc-new")
    out = []
    t = threading.Thread(target=blocking_get,
                         args=(agent, "/v1/catalog/service/bc-new", index_of(headers), "20s", out))
    t.start()
    time.sleep(0.4)
    deregister(agent, {"Node": "bc-3", "ServiceID": "bc-new"})
    t.join(10)
    assert not t.is_alive()
    assert json.loads(out[0][3]) == [] and index_of(out[0][2]) > index_of(headers)


def test_consistency_modes(agent):
    register(agent, {"Node": "cm-1", "Address": "10.11.0.1", "Service": {"Service": "cm"}})
    for mode in ("stale", "consistent"):
        status, headers, body = agent.request("GET", "/v1/health/service/cm?" + mode)
        assert status == 200 and len(json.loads(body)) == 1
        assert headers["x-consul-effective-consistency"] == mode
    status, _, body = agent.request("GET", "/v1/catalog/nodes?stale&consistent")
    assert status == 400
    status, _, body = agent.request("GET", "/v1/catalog/nodes?dc=elsewhere")
    assert status == 500 and body == b"No path to datacenter"
    status, _, body = agent.request("GET", "/v1/health/service/cm?pretty")
    assert body.startswith(b"[\n    {")


@pytest.mark.parametrize("body,status,message", [
    ("", 400, b"Request decode failed: EOF"),
    ("{not json", 400, b"Request decode failed"),
    ("[1]", 400, b"Request decode failed: json: cannot unmarshal array into Go value of type "
                 b"structs.RegisterRequest"),
    ('{"Node": 5}', 400, b"Request decode failed: json: cannot unmarshal number into Go struct "
                         b"field RegisterRequest.Node of type string"),
    ('{"Node": "x", "Address": "1.1.1.1", "Service": {"Service": "s", "Port": "80"}}', 400,
     b"RegisterRequest.Service.Port of type int"),
    ('{"Node": "x", "Address": "1.1.1.1", "Service": {"Service": "s", "Tags": "a"}}', 400,
     b"of type []string"),
    ('{"Node": "x", "Address": "1.1.1.1", "NodeMeta": {"a": 1}}', 400, b"of type string"),
    ('{"Node": "x", "Address": "1.1.1.1", "Check": {"Name": "c", "Definition": '
     '{"Interval": "ten seconds"}}}', 400, b'time: invalid duration \\"ten seconds\\"'),
    ('{"Address": "1.1.1.1"}', 400, b"Must provide node"),
    ('{"Node": "x"}', 400, b"Must provide address if SkipNodeUpdate is not set"),
    ('{"Node": "x", "Address": "1.1.1.1", "ID": "nope"}', 400, b"Bad node ID"),
    ('{"Node": "x", "Address": "1.1.1.1", "Service": {"ID": "s"}}', 400,
     b"Must provide service name with ID"),
    ('{"Node": "x", "Address": "1.1.1.1", "Service": {"Service": "s", "Address": "0.0.0.0"}}',
     400, b"Invalid service address"),
    ('{"Node": "x", "Address": "1.1.1.1", "Service": {"Service": "s", "Meta": {"bad key": "v"}}}',
     400, b"Invalid Service Meta for node x and serviceID s: Couldn't load metadata pair "
          b"('bad key', 'v'): Key contains invalid characters"),
    ('{"Node": "x", "Address": "1.1.1.1", "Check": {"CheckID": "c", "Node": "y"}}', 400,
     b'check node \\"y\\" does not match node \\"x\\"'),
    ('{"Node": "x", "Address": "1.1.1.1", "Check": {"CheckID": "c", "ServiceID": "none"}}', 500,
     b'failed inserting check on node \\"x\\": Missing service registration'),
    ('{"Node": "x", "Address": "1.1.1.1", "Datacenter": "dc9"}', 500, b"No path to datacenter"),
])
def test_register_bad_input(agent, body, status, message):
    st, _, out = agent.request("PUT", "/v1/catalog/register", body)
    assert st == status, out
    assert message.decode("unicode_escape").encode() in out, out
    assert agent.request("GET", "/v1/catalog/node/x")[2] == b"null"


def test_bad_requests(agent):
    def expect(method, path, status, contains=b"", body=None):
        st, _, out = agent.request(method, path, body)
        assert st == status, (path, st, out)
        assert contains in out, (path, out)
    expect("PUT", "/v1/catalog/deregister", 400, b"Must provide node", "{}")
    expect("PUT", "/v1/catalog/deregister", 400, b"Request decode failed", "{x")
    expect("PUT", "/v1/catalog/deregister", 400, b"of type string", '{"Node": true}')
    expect("GET", "/v1/catalog/register", 405)
    expect("POST", "/v1/catalog/nodes", 405)
    expect("GET", "/v1/catalog/service/", 400, b"Missing service name")
    expect("GET", "/v1/catalog/node/", 400, b"Missing node name")
    expect("GET", "/v1/health/service/", 400, b"Missing service name")
    expect("GET", "/v1/health/checks/", 400, b"Missing service name")
    expect("GET", "/v1/health/node/", 400, b"Missing node name")
    expect("GET", "/v1/health/state/", 400, b"Missing check state")
    expect("GET", "/v1/health/state/maintenance", 400, b"Invalid check state")
    expect("GET", "/v1/health/service/x?passing=maybe", 400, b"Invalid value for ?passing")
    expect("GET", "/v1/catalog/nodes?filter=" + q("Nope == 1"), 400,
           b'Failed to create boolean expression evaluator: Selector "Nope" is not valid')
    expect("GET", "/v1/catalog/service/x?filter=" + q("ServiceTags == a"), 400,
           b"Failed to create boolean expression evaluator: Invalid match operator")
    expect("GET", "/v1/health/service/x?filter=" + q("Node.Node =="), 400,
           b"Failed to create boolean expression evaluator: 1:")
    expect("GET", "/v1/health/state/any?filter=" + q("Status matches \"(\""), 400,
           b"Failed to compile regular expression")
    expect("GET", "/v1/catalog/nodes?index=abc", 400, b"Invalid index")
    # A bare word is an identifier: "-" is not part of one (bexpr's grammar), so quote it.
    expect("GET", "/v1/catalog/nodes?filter=" + q("Node == a-b"), 400, b"no match found")


def test_many_services_one_node(agent):
    """Registering hundreds of services with checks on one node stays consistent and fast."""
    start = time.time()
    for i in range(300):
        register(agent, {"Node": "many", "Address": "10.12.0.1", "SkipNodeUpdate": i > 0,
                         "Service": {"Service": "many-%d" % (i % 10), "ID": "m-%d" % i},
                         "Check": {"CheckID": "m-%d" % i, "Name": "c", "ServiceID": "m-%d" % i,
                                   "Status": "passing" if i % 3 else "critical"}})
    assert time.time() - start < 60
    node, _ = get(agent, "/v1/catalog/node-services/many")
    assert len(node["Services"]) == 300
    healthy, _ = get(agent, "/v1/health/service/many-1?passing")
    all_, _ = get(agent, "/v1/health/service/many-1")
    assert len(all_) == 30
    assert len(healthy) == len([i for i in range(300) if i % 10 == 1 and i % 3])
    deregister(agent, {"Node": "many"})
    assert get(agent, "/v1/health/service/many-1")[0] == []
    assert get(agent, "/v1/health/node/many")[0] == []
