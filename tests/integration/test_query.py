"""/v1/query against a real agent: prepared query CRUD through Raft, execute with health,
tag, meta filters and ?limit, templates (name_prefix_match with ${name.*} and ${match(N)}),
explain, Consul's error answers, and DNS <name>.query.consul answered from execute."""
import json
import shutil
import subprocess

import pytest


def req(agent, method, path, body=None):
    status, headers, out = agent.request(method, path, None if body is None else json.dumps(body))
    try:
        return status, headers, json.loads(out)
    except ValueError:
        return status, headers, out.decode()


def register(agent, node, address, svc_id, name, port, tags=None, status="passing", node_meta=None,
             svc_meta=None):
    body = {"Node": node, "Address": address, "NodeMeta": node_meta or {},
            "Service": {"ID": svc_id, "Service": name, "Port": port, "Tags": tags or [],
                        "Meta": svc_meta or {}},
            "Check": {"CheckID": "chk-" + svc_id, "Name": "c", "Status": status, "ServiceID": svc_id}}
    status_code, _, out = req(agent, "PUT", "/v1/catalog/register", body)
    assert status_code == 200, out


@pytest.fixture(scope="module")
def cat(agent):
    register(agent, "q-n1", "10.9.0.1", "db1", "db", 5432, ["primary", "v1"], node_meta={"zone": "a"},
             svc_meta={"ver": "1"})
    register(agent, "q-n2", "10.9.0.2", "db2", "db", 5433, ["replica", "v1"], node_meta={"zone": "b"},
             svc_meta={"ver": "2"})
    register(agent, "q-n3", "10.9.0.3", "db3", "db", 5434, ["replica", "v2"], status="warning",
             node_meta={"zone": "b"})
    register(agent, "q-n4", "10.9.0.4", "db4", "db", 5435, ["replica"], status="critical")
    register(agent, "q-n5", "10.9.0.5", "geo1", "geo-db-customer", 6000, ["primary"])
    return agent


def create(agent, body):
    status, _, out = req(agent, "POST", "/v1/query", body)
    assert status == 200, out
    assert list(out.keys()) == ["ID"] and len(out["ID"]) == 36
    return out["ID"]


def execute(agent, name, query=""):
    status, _, out = req(agent, "GET", "/v1/query/%s/execute%s" % (name, query))
    assert status == 200, out
    return out


def node_names(out):
    return sorted(n["Node"]["Node"] for n in out["Nodes"])


def test_crud(cat):
    agent = cat
    qid = create(agent, {"Name": "crud-db", "Service": {"Service": "db", "Tags": ["primary"]},
                         "DNS": {"TTL": "10s"}})
    status, headers, out = req(agent, "GET", "/v1/query/" + qid)
    assert status == 200 and len(out) == 1
    q = out[0]
    assert list(q.keys()) == ["ID", "Name", "Session", "Token", "Template", "Service", "DNS",
                              "CreateIndex", "ModifyIndex"]
    assert q["ID"] == qid and q["Name"] == "crud-db" and q["DNS"] == {"TTL": "10s"}
    assert q["Template"] == {"Type": "", "Regexp": "", "RemoveEmptyTags": False}
    svc = q["Service"]
    assert svc["Service"] == "db" and svc["Tags"] == ["primary"] and svc["OnlyPassing"] is False
    assert svc["Failover"] == {"NearestN": 0, "Datacenters": None, "Targets": None}
    assert svc["NodeMeta"] is None and svc["IgnoreCheckIDs"] is None
    assert int(headers["x-consul-index"]) == q["ModifyIndex"]
    # listed
    status, _, out = req(agent, "GET", "/v1/query")
    assert status == 200 and qid in [x["ID"] for x in out]
    # update replaces the whole query and keeps CreateIndex
    status, _, out = req(agent, "PUT", "/v1/query/" + qid,
                         {"Name": "crud-db", "Service": {"Service": "db", "Tags": ["replica"]}})
    assert status == 200, out
    q2 = req(agent, "GET", "/v1/query/" + qid)[2][0]
    assert q2["Service"]["Tags"] == ["replica"] and q2["DNS"] == {"TTL": ""}
    assert q2["CreateIndex"] == q["CreateIndex"] and q2["ModifyIndex"] > q["ModifyIndex"]
    # delete
    status, _, out = req(agent, "DELETE", "/v1/query/" + qid)
    assert status == 200
    status, _, out = req(agent, "GET", "/v1/query/" + qid)
    assert status == 404 and out == "Query not found"
    status, _, out = req(agent, "DELETE", "/v1/query/" + qid)
    assert status == 500 and out == "Cannot modify non-existent prepared query: '%s'" % qid


def test_execute_filters(cat):
    agent = cat
    create(agent, {"Name": "all-db", "Service": {"Service": "db"}})
    out = execute(agent, "all-db")
    assert list(out.keys())[:6] == ["Service", "Nodes", "DNS", "Datacenter", "PeerName", "Failovers"]
    assert out["Service"] == "db" and out["Datacenter"] == "dc1" and out["Failovers"] == 0
    # critical dropped, warning kept
    assert node_names(out) == ["q-n1", "q-n2", "q-n3"]
    n = out["Nodes"][0]
    assert list(n.keys()) == ["Node", "Service", "Checks"]
    create(agent, {"Name": "passing-db", "Service": {"Service": "db", "OnlyPassing": True}})
    assert node_names(execute(agent, "passing-db")) == ["q-n1", "q-n2"]
    create(agent, {"Name": "ignore-db", "Service": {"Service": "db", "IgnoreCheckIDs": ["chk-db4"]}})
    assert node_names(execute(agent, "ignore-db")) == ["q-n1", "q-n2", "q-n3", "q-n4"]
    create(agent, {"Name": "tag-db", "Service": {"Service": "db", "Tags": ["REPLICA", "!v2"]}})
    assert node_names(execute(agent, "tag-db")) == ["q-n2"]
    create(agent, {"Name": "meta-db", "Service": {"Service": "db", "NodeMeta": {"zone": "b"}}})
    assert node_names(execute(agent, "meta-db")) == ["q-n2", "q-n3"]
    create(agent, {"Name": "smeta-db", "Service": {"Service": "db", "ServiceMeta": {"ver": "1"}}})
    assert node_names(execute(agent, "smeta-db")) == ["q-n1"]
    assert len(execute(agent, "all-db", "?limit=2")["Nodes"]) == 2
    # by ID too, and names are case-insensitive
    qid = create(agent, {"Name": "byid-db", "Service": {"Service": "db", "OnlyPassing": True}})
    assert node_names(execute(agent, qid)) == ["q-n1", "q-n2"]
    assert node_names(execute(agent, "BYID-DB")) == ["q-n1", "q-n2"]
    # shuffled: some run shows a different first node
    firsts = {execute(agent, "all-db")["Nodes"][0]["Node"]["Node"] for _ in range(30)}
    assert len(firsts) > 1
    # nothing there: Nodes is [], failover has nowhere to go
    create(agent, {"Name": "none", "Service": {"Service": "nope",
                                               "Failover": {"Datacenters": ["dc2"]}}})
    out = execute(agent, "none")
    assert out["Nodes"] == [] and out["Failovers"] == 0
    status, _, out = req(agent, "GET", "/v1/query/missing/execute")
    assert status == 404 and out == "Query not found"
    status, _, out = req(agent, "GET", "/v1/query/all-db/execute?limit=x")
    assert status == 500 and out.startswith("Bad limit")


def test_templates(cat):
    agent = cat
    create(agent, {"Name": "geo-db-", "Template": {"Type": "name_prefix_match",
                                                   "Regexp": "^geo-db-(.*)-([^-]+)$"},
                   "Service": {"Service": "geo-db-${match(1)}", "Tags": ["${match(2)}"]}})
    out = execute(agent, "geo-db-customer-primary")
    assert out["Service"] == "geo-db-customer" and node_names(out) == ["q-n5"]
    status, _, out = req(agent, "GET", "/v1/query/geo-db-customer-primary/explain")
    assert status == 200
    assert out["Query"]["Service"]["Service"] == "geo-db-customer"
    assert out["Query"]["Service"]["Tags"] == ["primary"]
    assert out["Query"]["Name"] == "geo-db-"
    # name.* variables and RemoveEmptyTags; the empty-named template catches everything else
    create(agent, {"Name": "", "Template": {"Type": "name_prefix_match", "RemoveEmptyTags": True},
                   "Service": {"Service": "${name.full}", "Tags": ["${name.suffix}", "x${name.prefix}"]}})
    out = req(agent, "GET", "/v1/query/db/explain")[2]
    assert out["Query"]["Service"]["Service"] == "db"
    assert out["Query"]["Service"]["Tags"] == ["db", "x"]
    assert node_names(execute(agent, "db")) == []  # no instance has tags "db" and "x"
    # a second empty-named template is refused
    status, _, out = req(agent, "POST", "/v1/query",
                         {"Template": {"Type": "name_prefix_match"}, "Service": {"Service": "x"}})
    assert status == 500 and out == "a query template with an empty name already exists"
    # templates resolve by name only
    tid = [q["ID"] for q in req(agent, "GET", "/v1/query")[2] if q["Name"] == "geo-db-"][0]
    status, _, out = req(agent, "GET", "/v1/query/%s/execute" % tid)
    assert status == 500
    assert out == "prepared query templates can only be resolved up by name, not by ID"


@pytest.mark.parametrize("body,status,text", [
    ({"Service": {"Service": "db"}}, 500, "Invalid prepared query: Must be bound to a session"),
    ({"Name": "e1"}, 500, "Invalid prepared query: Must provide a Service name to query"),
    ({"Name": "e2", "Service": {"Service": "db", "Failover": {"NearestN": -1}}}, 500,
     "Invalid prepared query: Bad NearestN '-1', must be >= 0"),
    ({"Name": "e3", "Service": {"Service": "db"}, "DNS": {"TTL": "soon"}}, 500,
     "Invalid prepared query: Bad DNS TTL 'soon': time: invalid duration \"soon\""),
    ({"Name": "e4", "Service": {"Service": "db"}, "Token": "<hidden>"}, 500,
     "Invalid prepared query: Bad Token '<hidden>', it looks like a query definition with a "
     "redacted token was submitted"),
    ({"Name": "e5", "ID": "11111111-2222-3333-4444-555555555555", "Service": {"Service": "db"}},
     500, "ID must be empty when creating a new prepared query"),
    ({"Name": "e6", "Session": "11111111-2222-3333-4444-555555555555", "Service": {"Service": "db"}},
     500, 'invalid session "11111111-2222-3333-4444-555555555555"'),
    ({"Name": "e7", "Template": {"Type": "bogus"}, "Service": {"Service": "db"}}, 500,
     "failed compiling template: Bad Template.Type 'bogus'"),
    ({"Name": "e8", "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${nope}"}},
     500, "failed compiling template: Bad evaluation for '${nope}' in Service.Service: "
          "unknown variable accessed: nope"),
    ({"Name": "e9", "Service": {"Service": "db", "Tags": "x"}}, 400,
     "Request decode failed: json: cannot unmarshal string into Go struct field "
     "PreparedQuery.Service.Tags of type []string"),
    ([1], 400, "Request decode failed: json: cannot unmarshal array into Go value of type "
               "structs.PreparedQuery"),
])
def test_create_errors(agent, body, status, text):
    st, _, out = req(agent, "POST", "/v1/query", body)
    assert (st, out) == (status, text)


def test_name_rules(agent):
    qid = create(agent, {"Name": "unique", "Service": {"Service": "db"}})
    st, _, out = req(agent, "POST", "/v1/query", {"Name": "UNIQUE", "Service": {"Service": "db"}})
    assert (st, out) == (500, "name 'UNIQUE' aliases an existing query name")
    st, _, out = req(agent, "POST", "/v1/query", {"Name": qid, "Service": {"Service": "db"}})
    assert (st, out) == (500, "name '%s' aliases an existing query ID" % qid)
    # a session-bound anonymous query
    st, _, sess = req(agent, "PUT", "/v1/session/create", {"Name": "q"})
    assert st == 200, sess
    anon = create(agent, {"Session": sess["ID"], "Service": {"Service": "db"}})
    assert execute(agent, anon)["Service"] == "db"
    st, _, out = req(agent, "PUT", "/v1/query/00000000-0000-0000-0000-000000000000",
                     {"Name": "x", "Service": {"Service": "db"}})
    assert st == 500 and out.startswith("Cannot modify non-existent prepared query")
    assert agent.request("PATCH", "/v1/query")[0] == 405
    assert agent.request("PUT", "/v1/query/x/execute", "")[0] == 405


def test_blocking_list(agent):
    status, headers, _ = req(agent, "GET", "/v1/query")
    idx = int(headers["x-consul-index"])
    create(agent, {"Name": "blk", "Service": {"Service": "db"}})
    status, headers, out = req(agent, "GET", "/v1/query?index=%d&wait=5s" % idx)
    assert status == 200 and int(headers["x-consul-index"]) > idx


def dig(agent, *args):
    out = subprocess.run(["dig", "@" + agent.ip, "-p", str(agent.dns_port), "+time=2", "+tries=1",
                          "+noall", "+answer"] + list(args),
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return [l.split() for l in out.stdout.splitlines() if l.strip()]


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_dns(cat):
    agent = cat
    create(agent, {"Name": "dns-db", "Service": {"Service": "db", "OnlyPassing": True},
                   "DNS": {"TTL": "42s"}})
    srv = dig(agent, "dns-db.query.consul", "SRV")
    assert sorted(int(r[6]) for r in srv) == [5432, 5433]
    assert all(r[1] == "42" for r in srv)
    a = dig(agent, "dns-db.query.dc1.consul", "A")
    assert sorted(r[4] for r in a) == ["10.9.0.1", "10.9.0.2"]
    # templates answer too
    a = dig(agent, "geo-db-customer-primary.query.consul", "A")
    assert [r[4] for r in a] in ([["10.9.0.5"]][0], [])  # present when test_templates ran first
    out = subprocess.run(["dig", "@" + agent.ip, "-p", str(agent.dns_port), "+time=2", "+tries=1",
                          "nosuch.query.consul", "A"], capture_output=True, text=True, timeout=20)
    assert "NXDOMAIN" in out.stdout or "NOERROR" in out.stdout


def test_python_consul(cat):
    import consul
    c = consul.Consul(host=cat.ip, port=cat.http_port)
    # python-consul always sends Template.Type name_prefix_match: its queries are templates
    q = c.query.create("db", name="pyc-db", onlypassing=True, tags=["v1"], ttl="7s")
    qid = q["ID"]
    got = c.query.get(qid)
    assert got[0]["Name"] == "pyc-db" and got[0]["DNS"]["TTL"] == "7s"
    assert got[0]["Template"]["Type"] == "name_prefix_match"
    assert qid in [x["ID"] for x in c.query.list()]
    res = c.query.execute("pyc-db")
    assert res["Service"] == "db" and node_names(res) == ["q-n1", "q-n2"]
    assert len(c.query.execute("pyc-db", limit=1)["Nodes"]) == 1
    assert c.query.explain("pyc-db")["Query"]["Service"]["Tags"] == ["v1"]
    assert c.query.update(qid, "db", name="pyc-db", tags=["primary"]) is True
    assert node_names(c.query.execute("pyc-db")) == ["q-n1"]
    assert c.query.delete(qid) is True
    assert c.query.get(qid)[1] is None  # python-consul answers (index, None) for a 404
