"""The service-discovery CLI commands against a real agent: `catalog datacenters|nodes|
services`, `services register|deregister`, `maint`, `reload` and `validate`, run as
subprocesses the way scripts run `consul`, checking stdout, stderr and exit codes where Consul's
output is fixed, and cross-checking through the HTTP API. Tests whose agent endpoint is not
built yet (404) are skipped, not failed."""
import json
import os
import re
import socket
import subprocess
import tempfile

import pytest


def run(agent, *args, input=None, env=None):
    """Runs `concord args...` with only CONSUL_HTTP_ADDR (pointing at agent) from CONSUL_*."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    e["CONSUL_HTTP_ADDR"] = agent.http_addr
    if env:
        e.update(env)
    return subprocess.run([agent.bin] + list(args), env=e, input=input, capture_output=True,
                          text=True, timeout=30)


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def register(agent, body):
    status, _, out = agent.request("PUT", "/v1/catalog/register", json.dumps(body))
    assert (status, out) == (200, b"true"), out


def need(agent, method, path):
    """Skips the test when the agent does not have this endpoint yet."""
    status, _, _ = agent.request(method, path)
    if status == 404:
        pytest.skip("%s %s is not built yet (404)" % (method, path))


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def nodes(agent):
    """Three catalog nodes with services, registered once for the module."""
    register(agent, {"Node": "cli-n1", "Address": "10.9.0.1", "NodeMeta": {"rack": "r1"},
                     "TaggedAddresses": {"wan": "192.0.2.1"},
                     "Service": {"Service": "cli-web", "ID": "cli-web-1", "Tags": ["v2", "a"],
                                 "Port": 80}})
    register(agent, {"Node": "cli-n2", "Address": "10.9.0.2", "NodeMeta": {"rack": "r2"},
                     "Service": {"Service": "cli-web", "ID": "cli-web-2", "Tags": ["v1"],
                                 "Port": 80}})
    register(agent, {"Node": "cli-n2", "Address": "10.9.0.2", "NodeMeta": {"rack": "r2"},
                     "Service": {"Service": "cli-db", "Port": 5432}})
    return ["cli-n1", "cli-n2"]


# ---- catalog ----

def test_catalog_datacenters(agent):
    r = run(agent, "catalog", "datacenters")
    assert (r.returncode, r.stdout, r.stderr) == (0, "dc1\n", "")
    r = run(agent, "catalog", "datacenters", "extra")
    assert (r.returncode, r.stderr) == (1, "Too many arguments (expected 0, got 1)\n")


def test_catalog_nodes(agent, nodes):
    out = ok(run(agent, "catalog", "nodes"))
    lines = out.splitlines()
    assert re.match(r"^Node\s+ID\s+Address\s+DC$", lines[0])
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows["cli-n1"][1:] == ["10.9.0.1", "dc1"]  # no node ID: the column is blank
    api = {n["Node"]: n for n in agent.get_json("/v1/catalog/nodes")[0]}
    me = api[agent.node]
    assert rows[agent.node] == [agent.node, me["ID"].split("-")[0], me["Address"], "dc1"]
    # Columns line up: every row starts each field at the header's offsets.
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for l in lines[1:]:
        assert l[starts[2]:].startswith(api[l.split()[0]]["Address"])

    det = ok(run(agent, "catalog", "nodes", "-detailed"))
    assert re.match(r"^Node\s+ID\s+Address\s+DC\s+TaggedAddresses\s+Meta$", det.splitlines()[0])
    n1 = [l for l in det.splitlines() if l.startswith("cli-n1 ")][0]
    assert re.search(r"  dc1  wan=192\.0\.2\.1 +rack=r1$", n1), n1
    mine = [l for l in det.splitlines() if l.startswith(agent.node + " ")][0]
    assert me["ID"] in mine

    only = ok(run(agent, "catalog", "nodes", "-node-meta", "rack=r2"))
    assert [l.split()[0] for l in only.splitlines()[1:]] == ["cli-n2"]
    web = ok(run(agent, "catalog", "nodes", "-service=cli-web"))
    assert sorted(l.split()[0] for l in web.splitlines()[1:]) == ["cli-n1", "cli-n2"]
    f = ok(run(agent, "catalog", "nodes", "-filter", 'Meta.rack == "r1"'))
    assert [l.split()[0] for l in f.splitlines()[1:]] == ["cli-n1"]
    f = ok(run(agent, "catalog", "nodes", "-filter=-", input='Node == "cli-n2"'))
    assert [l.split()[0] for l in f.splitlines()[1:]] == ["cli-n2"]
    assert ok(run(agent, "catalog", "nodes", "-near=_agent")).splitlines()[0] == lines[0]

    r = run(agent, "catalog", "nodes", "-service=no-such-service")
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == "No nodes match the given query - try expanding your search.\n"
    r = run(agent, "catalog", "nodes", "-filter", "Nope == 1")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Error listing nodes: Unexpected response code: 400 (")


def test_catalog_services(agent, nodes):
    out = ok(run(agent, "catalog", "services"))
    names = out.splitlines()
    assert names == sorted(names) and {"cli-web", "cli-db", "consul"} <= set(names)
    tags = ok(run(agent, "catalog", "services", "-tags"))
    width = max(len(n) for n in names) + 6
    for line in tags.splitlines():
        name = line.split()[0]
        if name == "cli-web":
            assert line == "cli-web".ljust(width) + "a,v1,v2"
    assert not tags.endswith(" \n")  # TrimSpace of the whole output

    assert ok(run(agent, "catalog", "services", "-node", "cli-n2")) == "cli-db\ncli-web\n"
    assert ok(run(agent, "catalog", "services", "-node=cli-n2", "-tags")) == (
        "cli-db       \ncli-web      v1\n")
    r = run(agent, "catalog", "services", "-node=no-such-node")
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == "No services match the given query - try expanding your search.\n"
    assert ok(run(agent, "catalog", "services", "-node-meta=rack=r1")) == "cli-web\n"
    assert ok(run(agent, "catalog", "services", "-filter", 'ServiceName == "cli-db"')) == (
        "cli-db\n")


def test_catalog_transport_error(agent):
    port = dead_port()
    r = run(agent, "catalog", "services", env={"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % port})
    assert r.returncode == 1
    assert r.stderr == ("Error listing services: Get \"http://127.0.0.1:%d/v1/catalog/services\":"
                        " dial tcp 127.0.0.1:%d: connect: connection refused\n" % (port, port))
    r = run(agent, "catalog", "nodes", "-http-addr=" + agent.url,
            env={"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % port})
    assert r.returncode == 0


# ---- services ----

def agent_services(agent):
    return agent.get_json("/v1/agent/services")[0]


def test_services_register_flags(agent):
    need(agent, "GET", "/v1/agent/services")
    r = run(agent, "services", "register", "-name=cli-flags", "-id=cli-flags-1", "-port=8080",
            "-address=10.0.0.7", "-tag=a", "-tag=b", "-meta=team=x",
            "-tagged-address=lan=10.0.0.7:8080")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Registered service: cli-flags\n", "")
    svc = agent_services(agent)["cli-flags-1"]
    assert svc["Service"] == "cli-flags" and svc["Port"] == 8080
    assert svc["Address"] == "10.0.0.7" and svc["Tags"] == ["a", "b"]
    assert svc["Meta"] == {"team": "x"}
    assert svc["TaggedAddresses"]["lan"] == {"Address": "10.0.0.7", "Port": 8080}
    r = run(agent, "services", "deregister", "-id=cli-flags-1")
    assert (r.returncode, r.stdout) == (0, "Deregistered service: cli-flags-1\n")
    assert "cli-flags-1" not in agent_services(agent)


def test_services_register_file(agent, tmp_path):
    need(agent, "GET", "/v1/agent/services")
    f = tmp_path / "svc.json"
    f.write_text(json.dumps({
        "service": {"name": "cli-file", "id": "cli-file-1", "port": 9000, "tags": ["t"],
                    "check": {"id": "cli-file-ttl", "ttl": "60s"}},
        "services": [{"name": "cli-file2", "port": 9001}]}))
    r = run(agent, "services", "register", "-tag=extra", str(f))
    assert r.returncode == 0, r
    assert r.stdout == "Registered service: cli-file2\nRegistered service: cli-file\n"
    svcs = agent_services(agent)
    assert svcs["cli-file-1"]["Tags"] == ["t", "extra"]
    assert svcs["cli-file2"]["Port"] == 9001
    checks = agent.get_json("/v1/agent/checks")[0]
    assert checks["cli-file-ttl"]["ServiceID"] == "cli-file-1"
    r = run(agent, "services", "deregister", str(f))
    assert (r.returncode, r.stdout) == (
        0, "Deregistered service: cli-file2\nDeregistered service: cli-file-1\n")
    svcs = agent_services(agent)
    assert "cli-file-1" not in svcs and "cli-file2" not in svcs


def test_services_errors(agent, tmp_path):
    r = run(agent, "services", "register")
    assert (r.returncode, r.stderr) == (
        1, "Service registration requires at least one argument or flags.\n")
    r = run(agent, "services", "deregister")
    assert (r.returncode, r.stderr) == (
        1, "Service deregistration requires at least one argument or -id.\n")
    bad = tmp_path / "bad.json"
    bad.write_text('{"service": {"name": "x", "bogus": true}}')
    r = run(agent, "services", "register", str(bad))
    assert (r.returncode, r.stderr) == (1, "Error: %s: invalid config key service.bogus\n" % bad)
    r = run(agent, "services", "register", "-name=x", "-tagged-address=lan=nohost")
    assert (r.returncode, r.stderr) == (
        1, "Invalid Tagged Address: address nohost: missing port in address\n")
    need(agent, "GET", "/v1/agent/services")
    r = run(agent, "services", "deregister", "-id=cli-no-such-service")
    assert r.returncode == 1
    assert r.stderr.startswith('Error deregistering service "": Unexpected response code: 404')


# ---- maint ----

def test_maint(agent):
    need(agent, "GET", "/v1/agent/checks")
    r = run(agent, "maint")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run(agent, "maint", "-enable", "-reason=cli test")
    assert (r.returncode, r.stdout) == (0, "Node maintenance is now enabled\n")
    checks = agent.get_json("/v1/agent/checks")[0]
    assert checks["_node_maintenance"]["Status"] == "critical"
    assert ok(run(agent, "maint")) == (
        "Node:\n  Name:   %s\n  Reason: cli test\n\n" % agent.node)

    status, _, body = agent.request("PUT", "/v1/agent/service/register",
                                    json.dumps({"Name": "cli-maint", "ID": "cli-maint-1"}))
    assert status == 200, body
    r = run(agent, "maint", "-enable", "-service=cli-maint-1")
    assert (r.returncode, r.stdout) == (
        0, 'Service maintenance is now enabled for "cli-maint-1"\n')
    out = ok(run(agent, "maint"))
    assert out.startswith("Node:\n")
    assert "Service:\n  ID:     cli-maint-1\n  Reason: " in out
    assert ok(run(agent, "maint", "-disable", "-service=cli-maint-1")) == (
        'Service maintenance is now disabled for "cli-maint-1"\n')
    assert ok(run(agent, "maint", "-disable")) == "Node maintenance is now disabled\n"
    assert ok(run(agent, "maint")) == ""
    r = run(agent, "maint", "-enable", "-service=cli-no-such")
    assert r.returncode == 1
    assert r.stderr.startswith("Error enabling service maintenance: Unexpected response code: 404")
    agent.request("PUT", "/v1/agent/service/deregister/cli-maint-1")


def test_maint_argument_errors(agent):
    for args, msg in [(["-enable", "-disable"], "Only one of -enable or -disable may be provided"),
                      (["-reason=x"], "Reason may only be provided with -enable"),
                      (["-service=x"], "Service requires either -enable or -disable")]:
        r = run(agent, "maint", *args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", msg + "\n")


# ---- reload ----

def test_reload(agent):
    need(agent, "PUT", "/v1/agent/reload")
    r = run(agent, "reload")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Configuration reload triggered\n", "")
    port = dead_port()
    r = run(agent, "reload", env={"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % port})
    assert r.returncode == 1 and r.stderr.startswith("Error reloading: Put \"http://127.0.0.1:")


# ---- validate ----

def test_validate(agent, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data_dir": str(tmp_path), "datacenter": "east",
                                "ports": {"http": 8501}}))
    r = run(agent, "validate", str(good))
    assert (r.returncode, r.stdout) == (0, "Configuration is valid!\n")
    r = run(agent, "validate", "-quiet", str(good))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "a.json").write_text(json.dumps({"data_dir": str(tmp_path)}))
    (d / "b.json").write_text(json.dumps({"log_level": "debug"}))
    assert ok(run(agent, "validate", str(d))) == "Configuration is valid!\n"

    bad = tmp_path / "bad.json"
    bad.write_text('{"data_dir": "/tmp", "nonsense_key": 1}')
    r = run(agent, "validate", str(bad))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "Config validation failed: %s: invalid config key nonsense_key\n" % bad
    nodd = tmp_path / "nodd.json"
    nodd.write_text('{"datacenter": "east"}')
    r = run(agent, "validate", str(nodd))
    assert r.returncode == 1 and "data_dir cannot be empty" in r.stderr
    # The agent itself agrees with validate about the same file.
    a = subprocess.run([agent.bin, "agent", "-config-file", str(bad)], capture_output=True,
                       text=True, timeout=30)
    assert a.returncode != 0 and "invalid config key nonsense_key" in (a.stdout + a.stderr)
    r = run(agent, "validate")
    assert (r.returncode, r.stderr) == (1, "Must specify at least one config file or directory\n")


# ---- help ----

@pytest.mark.parametrize("words,flags", [
    (["catalog", "datacenters"], ["-http-addr", "-datacenter", "-stale"]),
    (["catalog", "nodes"], ["-detailed", "-filter", "-near", "-node-meta", "-service",
                            "-partition", "-http-addr"]),
    (["catalog", "services"], ["-node", "-node-meta", "-tags", "-filter", "-namespace"]),
    (["services", "register"], ["-name", "-id", "-address", "-port", "-socket", "-meta", "-tag",
                                "-tagged-address", "-kind", "-token"]),
    (["services", "deregister"], ["-id", "-http-addr"]),
    (["maint"], ["-enable", "-disable", "-reason", "-service", "-http-addr"]),
    (["reload"], ["-http-addr", "-token"]),
    (["validate"], ["-config-format", "-quiet"]),
])
def test_command_help(agent, words, flags):
    r = run(agent, *words, "-h")
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout.startswith("Usage: concord " + " ".join(words))
    for f in flags:
        assert re.search(r"^  %s(=<[^>\n]+>)?\n     \S" % re.escape(f), r.stdout, re.M), f


def test_parent_commands(agent):
    for parent, subs in [("catalog", ["datacenters", "nodes", "services"]),
                         ("services", ["deregister", "register"])]:
        r = run(agent, parent)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("Usage: concord %s <subcommand>" % parent)
        listed = re.findall(r"^    (\S+)\s{4,}\S", r.stderr.split("Subcommands:")[1], re.M)
        assert listed == subs
