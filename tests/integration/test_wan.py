"""WAN federation: two datacenters on loopback. dc1 has one server (127.0.0.1) and a client
agent (127.0.0.2); dc2 has one server (127.0.0.3) that joins dc1's server over the WAN pool
with -join-wan. Datacenter lists, WAN members, ?dc= forwarding (client -> its server -> the
other datacenter's server) for KV, catalog and health, the CLI's -datacenter, an unknown
datacenter, DNS names of the other datacenter (<name>.service.dc2.consul through dc1's server
and client, checked with dig), and what a request -- HTTP or DNS -- for a datacenter whose
only server died gets."""
import json
import re
import shutil
import subprocess
import time

import pytest

from agentlib import BIN, Agent


def wait_until(fn, timeout=20.0, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except (OSError, ValueError, AssertionError):
            last = None
        if last:
            return last
        time.sleep(interval)
    return last


def wan_addr(a):
    return "%s:%d" % (a.ip, a.serf_wan_port)


def stop_all(agents):
    codes = {}
    for a in reversed(agents):
        try:
            codes[a.node] = a.stop()
        finally:
            a.kill()
    return codes


@pytest.fixture(scope="module")
def feds(request):
    s1 = Agent(dev=False, ip="127.0.0.1", node="w-s1", extra_args=["-datacenter", "dc1"])
    s1.start()
    c1 = Agent(dev=False, server=False, ip="127.0.0.2", node="w-c1",
               extra_args=["-datacenter", "dc1", "-retry-join", s1.serf_addr,
                           "-retry-interval", "1s"])
    s2 = Agent(dev=False, ip="127.0.0.3", node="w-s2",
               extra_args=["-datacenter", "dc2", "-join-wan", wan_addr(s1)])
    agents = [s1]
    killed = set()

    def fin():
        codes = stop_all(agents)
        bad = {n: c for n, c in codes.items() if n not in killed and c != 0}
        # a clean shutdown exits 0 (an ASan leak report would not)
        assert not bad, (bad, [a.log() for a in agents if a.node in bad])
    request.addfinalizer(fin)
    c1.start()
    agents.append(c1)
    s2.start()
    agents.append(s2)
    # the client has found its server once a forwarded read answers
    assert wait_until(lambda: c1.request("GET", "/v1/catalog/nodes")[0] == 200), c1.log()
    return {"s1": s1, "c1": c1, "s2": s2, "agents": agents, "killed": killed}


def datacenters(a):
    status, _, body = a.request("GET", "/v1/catalog/datacenters")
    assert status == 200, body
    return json.loads(body)


def test_datacenters_on_every_agent(feds):
    for a in (feds["s1"], feds["c1"], feds["s2"]):
        got = wait_until(lambda: datacenters(a) if len(datacenters(a)) == 2 else None)
        # ours first, then by name
        assert got == (["dc2", "dc1"] if a is feds["s2"] else ["dc1", "dc2"]), (a.node, got)


def test_wan_members(feds):
    s1, s2, c1 = feds["s1"], feds["s2"], feds["c1"]
    members, _ = s1.get_json("/v1/agent/members?wan=1")
    byname = {m["Name"]: m for m in members}
    assert set(byname) == {"w-s1.dc1", "w-s2.dc2"}, members
    m = byname["w-s2.dc2"]
    assert m["Addr"] == "127.0.0.3" and m["Port"] == s2.serf_wan_port
    assert m["Status"] == 1
    assert m["Tags"]["role"] == "consul" and m["Tags"]["dc"] == "dc2"
    assert m["Tags"]["port"] == str(s2.server_port)
    assert "segment" not in m["Tags"] and "wan_join_port" not in m["Tags"]
    # the LAN pool is unchanged: no WAN names there
    lan, _ = s1.get_json("/v1/agent/members")
    assert {m["Name"] for m in lan} == {"w-s1", "w-c1"}
    # the CLI
    r = s2.cli("members", "-wan")
    assert r.returncode == 0, r.stderr
    assert "w-s1.dc1" in r.stdout and "w-s2.dc2" in r.stdout, r.stdout
    # a client agent has no WAN pool
    got, _ = c1.get_json("/v1/agent/members?wan=1")
    assert got == []
    status, _, body = c1.request("PUT", "/v1/agent/join/%s?wan=1" % wan_addr(s2))
    assert status == 500 and b"Must be a server to join WAN cluster" in body, (status, body)


def test_kv_through_client_to_dc2(feds):
    s1, s2, c1 = feds["s1"], feds["s2"], feds["c1"]
    status, _, body = c1.request("PUT", "/v1/kv/wan/key?dc=dc2", body="in-dc2")
    assert status == 200 and body.strip() == b"true", (status, body)
    # in dc2
    status, _, body = s2.request("GET", "/v1/kv/wan/key?raw")
    assert status == 200 and body == b"in-dc2", (status, body)
    # and not in dc1
    assert s1.request("GET", "/v1/kv/wan/key")[0] == 404
    assert c1.request("GET", "/v1/kv/wan/key")[0] == 404
    # read back through dc1's client and server
    for a in (c1, s1):
        status, _, body = a.request("GET", "/v1/kv/wan/key?dc=dc2&raw")
        assert status == 200 and body == b"in-dc2", (a.node, status, body)
    # ?dc naming our own datacenter is served here
    assert s2.request("GET", "/v1/kv/wan/key?dc=dc2&raw")[2] == b"in-dc2"
    assert s1.request("GET", "/v1/kv/wan/key?dc=dc1")[0] == 404


def test_blocking_query_across_datacenters(feds):
    s2, c1 = feds["s2"], feds["c1"]
    s2.request("PUT", "/v1/kv/wan/block", body="1")
    _, headers, _ = c1.request("GET", "/v1/kv/wan/block?dc=dc2")
    index = int(headers["x-consul-index"])
    t0 = time.time()
    status, headers, _ = c1.request("GET", "/v1/kv/wan/block?dc=dc2&index=%d&wait=1s" % index)
    assert status == 200 and time.time() - t0 >= 0.9
    assert int(headers["x-consul-index"]) == index


def test_catalog_and_health_of_dc2(feds):
    s2, c1 = feds["s2"], feds["c1"]
    reg = {"Name": "web", "ID": "web1", "Port": 8080,
           "Check": {"TTL": "30s", "Status": "passing"}}
    status, _, body = s2.request("PUT", "/v1/agent/service/register", body=json.dumps(reg))
    assert status == 200, body

    def dc2_web():
        got, _ = c1.get_json("/v1/catalog/service/web?dc=dc2")
        return got if got else None
    got = wait_until(dc2_web)
    assert got and got[0]["Node"] == "w-s2" and got[0]["Datacenter"] == "dc2", got
    # dc1 has no such service
    got, _ = c1.get_json("/v1/catalog/service/web")
    assert got == []
    nodes, _ = c1.get_json("/v1/catalog/nodes?dc=dc2")
    assert [n["Node"] for n in nodes] == ["w-s2"], nodes
    health = wait_until(lambda: c1.get_json("/v1/health/service/web?dc=dc2&passing")[0])
    assert health and health[0]["Service"]["ID"] == "web1", health
    services, _ = feds["s1"].get_json("/v1/catalog/services?dc=dc2")
    assert "web" in services


def test_cli_datacenter_flag(feds):
    s2, c1 = feds["s2"], feds["c1"]
    s2.request("PUT", "/v1/kv/wan/cli", body="from-dc2")
    r = c1.cli("kv", "get", "-datacenter", "dc2", "wan/cli")
    assert r.returncode == 0 and r.stdout.strip() == "from-dc2", (r.returncode, r.stdout, r.stderr)
    r = c1.cli("kv", "get", "wan/cli")
    assert r.returncode == 1, r.stdout
    r = c1.cli("catalog", "datacenters")
    assert r.returncode == 0 and r.stdout.split() == ["dc1", "dc2"], r.stdout
    r = c1.cli("kv", "put", "-datacenter", "dc2", "wan/cli2", "v")
    assert r.returncode == 0, r.stderr
    assert s2.request("GET", "/v1/kv/wan/cli2?raw")[2] == b"v"


def test_unknown_datacenter(feds):
    for a in (feds["c1"], feds["s1"]):
        status, _, body = a.request("GET", "/v1/kv/x?dc=nowhere")
        assert status == 500 and body.strip() == b"No path to datacenter", (a.node, status, body)
        status, _, body = a.request("PUT", "/v1/kv/x?dc=nowhere", body="v")
        assert status == 500 and body.strip() == b"No path to datacenter", (a.node, status, body)
    r = feds["c1"].cli("kv", "get", "-datacenter", "nowhere", "x")
    assert r.returncode == 1 and "No path to datacenter" in r.stderr, r.stderr


def test_cli_join_wan(request, feds):
    """A third datacenter joined with `concord join -wan`."""
    s3 = Agent(dev=False, ip="127.0.0.4", node="w-s3", extra_args=["-datacenter", "dc3"])
    s3.start()
    feds["agents"].append(s3)
    r = s3.cli("join", "-wan", wan_addr(feds["s1"]))
    assert r.returncode == 0, r.stderr
    assert "Successfully joined cluster by contacting 1 nodes" in r.stdout, r.stdout
    for a in (feds["s1"], feds["c1"], feds["s2"]):
        got = wait_until(lambda: datacenters(a) if len(datacenters(a)) == 3 else None)
        assert got and got[0] == ("dc2" if a is feds["s2"] else "dc1") and \
            sorted(got) == ["dc1", "dc2", "dc3"], (a.node, got)
    status, _, body = feds["c1"].request("PUT", "/v1/kv/in3?dc=dc3", body="3")
    assert status == 200, body
    assert s3.request("GET", "/v1/kv/in3?raw")[2] == b"3"


def test_prepared_query_failover(feds):
    """No healthy local instance: the query runs in other datacenters in Consul's order
    (NearestN first, then Failover.Datacenters we know), answering with the remote's
    Datacenter and how many were tried. Needs web in dc2 (test_catalog_and_health_of_dc2)
    and dc3 without it (test_cli_join_wan)."""
    s1, c1 = feds["s1"], feds["c1"]

    def make(name, failover):
        body = {"Name": name, "Service": {"Service": "web", "Failover": failover}}
        status, _, out = c1.request("POST", "/v1/query", body=json.dumps(body))
        assert status == 200, out

    make("q-dcs", {"Datacenters": ["dc2"]})
    make("q-near", {"NearestN": 1})
    make("q-order", {"Datacenters": ["nowhere", "dc3", "dc2"]})
    make("q-none", {})
    make("q-dc3", {"Datacenters": ["dc3"]})
    got, _ = c1.get_json("/v1/query/q-dcs/execute")
    assert got["Datacenter"] == "dc2" and got["Failovers"] == 1, got
    assert [n["Service"]["ID"] for n in got["Nodes"]] == ["web1"], got
    assert got["Nodes"][0]["Node"]["Datacenter"] == "dc2"
    got, _ = s1.get_json("/v1/query/q-near/execute")
    assert got["Datacenter"] == "dc2" and got["Failovers"] == 1 and len(got["Nodes"]) == 1, got
    got, _ = c1.get_json("/v1/query/q-order/execute?limit=1")
    assert got["Datacenter"] == "dc2" and got["Failovers"] == 2 and len(got["Nodes"]) == 1, got
    got, _ = c1.get_json("/v1/query/q-none/execute")
    assert got["Datacenter"] == "dc1" and got["Failovers"] == 0 and got["Nodes"] == [], got
    # tried, nothing there: the remote's empty answer
    got, _ = c1.get_json("/v1/query/q-dc3/execute")
    assert got["Datacenter"] == "dc3" and got["Failovers"] == 1 and got["Nodes"] == [], got
    # a healthy local instance: no failover
    reg = {"Name": "web", "ID": "web-local", "Port": 80}
    assert s1.request("PUT", "/v1/agent/service/register", body=json.dumps(reg))[0] == 200
    got = wait_until(lambda: c1.get_json("/v1/query/q-dcs/execute")[0]
                     if c1.get_json("/v1/query/q-dcs/execute")[0]["Datacenter"] == "dc1" else None)
    assert got and got["Failovers"] == 0, got
    assert [n["Service"]["ID"] for n in got["Nodes"]] == ["web-local"], got
    assert s1.request("PUT", "/v1/agent/service/deregister/web-local")[0] == 200


def dig(agent, name, qtype, tcp=False):
    """One dig question: (status, answer rows, authority rows, additional rows), rows split
    on whitespace."""
    cmd = ["dig", "@" + agent.client_ip, "-p", str(agent.dns_port), "+time=4", "+tries=1",
           "+tcp" if tcp else "+notcp", name, qtype]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, (out.stdout, out.stderr)
    m = re.search(r"status: (\w+)", out.stdout)
    assert m, out.stdout
    sections = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    cur = None
    for line in out.stdout.splitlines():
        h = re.match(r";; (\w+) SECTION:", line)
        if h:
            cur = sections.get(h.group(1))
        elif not line.strip() or line.startswith(";"):
            cur = None if not line.strip() else cur
        elif cur is not None:
            cur.append(line.split())
    return m.group(1), sections["ANSWER"], sections["AUTHORITY"], sections["ADDITIONAL"]


needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")


@needs_dig
def test_dns_other_datacenter(feds):
    """A name of dc2 asked in dc1 (its server, and its client through the server) is dc2's
    answer; an unknown datacenter is NXDOMAIN with the SOA; .addr and dc-less names stay
    local; and dc2 asks dc1 the same way."""
    s1, s2, c1 = feds["s1"], feds["s2"], feds["c1"]
    reg = {"Name": "dnsweb", "ID": "dnsweb1", "Port": 9090, "Tags": ["blue"]}
    status, _, body = s2.request("PUT", "/v1/agent/service/register", body=json.dumps(reg))
    assert status == 200, body
    assert wait_until(lambda: s2.get_json("/v1/catalog/service/dnsweb")[0]), s2.log()
    # dc2's own answer, as dc2's server gives it
    st, ans, _, _ = dig(s2, "dnsweb.service.consul", "A")
    assert st == "NOERROR" and [r[4] for r in ans] == ["127.0.0.3"], (st, ans)
    for a in (s1, c1):
        st, ans, _, extra = dig(a, "dnsweb.service.dc2.consul", "SRV")
        assert st == "NOERROR", (a.node, st, a.log())
        assert [r[3:] for r in ans] == [["SRV", "1", "1", "9090", "w-s2.node.dc2.consul."]], ans
        assert ["w-s2.node.dc2.consul.", "0", "IN", "A", "127.0.0.3"] in extra, extra
        for tcp in (False, True):
            st, ans, _, _ = dig(a, "dnsweb.service.dc2.consul", "A", tcp=tcp)
            assert st == "NOERROR" and [r[4] for r in ans] == ["127.0.0.3"], (a.node, tcp, ans)
        # tags, RFC 2782, <dc>.dc, nodes
        st, ans, _, _ = dig(a, "blue.dnsweb.service.dc2.dc.consul", "A")
        assert [r[4] for r in ans] == ["127.0.0.3"], (a.node, st, ans)
        st, ans, _, _ = dig(a, "_dnsweb._tcp.service.dc2.consul", "SRV")
        assert [r[6] for r in ans] == ["9090"], (a.node, st, ans)
        st, ans, _, _ = dig(a, "w-s2.node.dc2.consul", "A")
        assert st == "NOERROR" and [r[4] for r in ans] == ["127.0.0.3"], (a.node, st, ans)
        # dc2's names that dc2 does not have: its NXDOMAIN
        st, ans, auth, _ = dig(a, "nope.service.dc2.consul", "A")
        assert st == "NXDOMAIN" and auth and auth[0][3] == "SOA", (a.node, st, auth)
        # only in dc2: dc1 itself does not have it
        st, _, _, _ = dig(a, "dnsweb.service.consul", "A")
        assert st == "NXDOMAIN", (a.node, st)
        # a datacenter nobody knows: NXDOMAIN with the SOA (Consul's ErrNoDCPath)
        for name in ("dnsweb.service.nowhere.consul", "w-s2.node.nowhere.consul"):
            st, ans, auth, _ = dig(a, name, "A")
            assert st == "NXDOMAIN" and not ans, (a.node, name, st, ans)
            assert len(auth) == 1 and auth[0][0] == "consul." and auth[0][3] == "SOA", auth
        # .addr needs no catalog: answered here whatever the datacenter
        st, ans, _, _ = dig(a, "7f000063.addr.dc2.consul", "A")
        assert [r[4] for r in ans] == ["127.0.0.99"], (a.node, st, ans)
    # the other way round: dc2 asks dc1
    st, ans, _, _ = dig(s2, "w-s1.node.dc1.consul", "A")
    assert st == "NOERROR" and [r[4] for r in ans] == ["127.0.0.1"], (st, ans, s2.log())
    st, ans, _, _ = dig(s2, "consul.service.dc1.consul", "A")
    assert [r[4] for r in ans] == ["127.0.0.1"], (st, ans)


@needs_dig
def test_dns_translate_wan_addrs(feds, tmp_path):
    """translate_wan_addrs is the asked agent's: a dc1 client with it gets dc2 nodes' WAN
    addresses (through its server, which does not translate), its own datacenter's stay."""
    s1, s2 = feds["s1"], feds["s2"]
    reg = {"Node": "ext2", "Address": "10.2.2.2", "TaggedAddresses": {"wan": "198.51.100.2"},
           "Service": {"Service": "extsvc", "Port": 80}}
    status, _, body = s2.request("PUT", "/v1/catalog/register", body=json.dumps(reg))
    assert status == 200, body
    cfg = tmp_path / "translate.json"
    cfg.write_text(json.dumps({"translate_wan_addrs": True}))
    ct = Agent(dev=False, server=False, ip="127.0.0.8", node="w-ct",
               extra_args=["-datacenter", "dc1", "-retry-join", s1.serf_addr,
                           "-retry-interval", "1s", "-config-file", str(cfg)])
    ct.start()
    feds["agents"].append(ct)
    assert wait_until(lambda: ct.request("GET", "/v1/catalog/nodes")[0] == 200), ct.log()
    st, ans, _, _ = dig(s1, "ext2.node.dc2.consul", "A")
    assert [r[4] for r in ans] == ["10.2.2.2"], (st, ans)
    st, ans, _, _ = dig(ct, "ext2.node.dc2.consul", "A")
    assert [r[4] for r in ans] == ["198.51.100.2"], (st, ans, ct.log())
    st, ans, _, _ = dig(ct, "extsvc.service.dc2.consul", "A")
    assert [r[4] for r in ans] == ["198.51.100.2"], (st, ans)
    st, ans, _, extra = dig(ct, "extsvc.service.dc2.consul", "SRV")
    assert ans and ans[0][7] == "c6336402.addr.dc2.consul.", ans
    st, ans, _, _ = dig(ct, "w-s1.node.consul", "A")
    assert [r[4] for r in ans] == ["127.0.0.1"], (st, ans)


def test_dead_datacenter_fails_after_hold(feds):
    """Last: dc2's only server dies; its datacenter then answers Consul's error once the
    hold time (7 s) is over, not at once and not never."""
    s2, c1, s1 = feds["s2"], feds["c1"], feds["s1"]
    feds["killed"].add(s2.node)
    s2.kill()
    t0 = time.time()
    status, _, body = c1.request("GET", "/v1/kv/wan/key?dc=dc2", timeout=30)
    took = time.time() - t0
    assert status == 500 and b"No path to datacenter" in body, (status, body)
    assert 5 <= took <= 15, took
    # the rest still works
    status, _, body = c1.request("GET", "/v1/kv/wan/key?dc=dc1")
    assert status == 404, (status, body)
    assert "dc1" in datacenters(s1)
    if shutil.which("dig") is None:
        return
    # DNS for the dead datacenter: SERVFAIL (it is known, nobody answers), soon and without
    # stopping anything else
    for a in (s1, c1):
        for name in ("dnsweb.service.dc2.consul", "w-s2.node.dc2.consul"):
            t0 = time.time()
            st, ans, _, _ = dig(a, name, "A")
            assert st == "SERVFAIL" and not ans, (a.node, name, st, ans)
            assert time.time() - t0 < 4.5, (a.node, time.time() - t0)
        st, ans, _, _ = dig(a, "w-s1.node.consul", "A", tcp=True)
        assert st == "NOERROR" and [r[4] for r in ans] == ["127.0.0.1"], (a.node, st, ans)
    assert s1.request("GET", "/v1/agent/self")[0] == 200


def test_client_cannot_join_wan(request):
    """Consul: -join-wan on a client agent fails its start."""
    c = Agent(dev=False, server=False, ip="127.0.0.5", node="w-badclient",
              extra_args=["-join-wan", "127.0.0.1:1"])
    c.start(wait=False)
    request.addfinalizer(c.kill)
    assert c.proc.wait(20) == 1
    assert "Must be a server to join WAN cluster" in c.log()


def test_encrypted_wan_leave_and_force_leave(request):
    """The WAN pool uses the -encrypt key: a server without it cannot join. A server that
    leaves gracefully takes its datacenter out of the list; force-leave -wan works by WAN
    name."""
    k = subprocess.run([BIN, "keygen"], capture_output=True, text=True).stdout.strip()
    assert len(k) == 44, k
    a = Agent(dev=False, ip="127.0.0.5", node="e-a", extra_args=["-datacenter", "ea", "-encrypt", k])
    a.start()
    agents = [a]
    request.addfinalizer(lambda: stop_all(agents))
    b = Agent(dev=False, ip="127.0.0.6", node="e-b",
              extra_args=["-datacenter", "eb", "-encrypt", k, "-join-wan", wan_addr(a)])
    b.start()
    agents.append(b)
    assert wait_until(lambda: datacenters(a) == ["ea", "eb"]), datacenters(a)
    plain = Agent(dev=False, ip="127.0.0.7", node="e-plain", extra_args=["-datacenter", "ep"])
    plain.start()
    agents.append(plain)
    status, _, body = plain.request("PUT", "/v1/agent/join/%s?wan=1" % wan_addr(a))
    assert status == 500, (status, body)
    assert datacenters(a) == ["ea", "eb"]
    # force-leave -wan of a member that is alive: Consul's force-leave only acts on failed
    # members, the name must be known in the WAN pool
    status, _, body = a.request("PUT", "/v1/agent/force-leave/e-b?wan=1")
    assert status == 500 and b"No node found with name 'e-b'" in body, (status, body)
    status, _, body = a.request("PUT", "/v1/agent/force-leave/e-b.eb?wan=1")
    assert status == 200, (status, body)
    # a graceful leave takes eb out of a's list
    status, _, _ = b.request("PUT", "/v1/agent/leave")
    assert status == 200
    assert b.proc.wait(20) == 0
    assert wait_until(lambda: datacenters(a) == ["ea"]), datacenters(a)
    status, _, body = a.request("GET", "/v1/kv/x?dc=eb")
    assert status == 500 and body.strip() == b"No path to datacenter"


def test_flood_join():
    """Consul's flood join: a server whose datacenter already has a server in the WAN pool is
    joined into it through the LAN pool (its wan_join_port tag), with no -join-wan of its own."""
    a1 = Agent(dev=False, ip="127.0.0.4", node="f-a1", extra_args=["-datacenter", "fa"])
    b1 = Agent(dev=False, ip="127.0.0.5", node="f-b1",
               extra_args=["-datacenter", "fb", "-join-wan", wan_addr(a1)])
    b2 = Agent(dev=False, ip="127.0.0.6", node="f-b2", expect=2,
               extra_args=["-datacenter", "fb", "-join", b1.serf_addr])
    agents = []
    try:
        for a in (a1, b1):
            a.start()
            agents.append(a)
        b2.start(wait=False)
        agents.append(b2)

        def wan_names(a):
            members, _ = a.get_json("/v1/agent/members?wan=1")
            return {m["Name"]: m["Status"] for m in members}
        want = {"f-a1.fa": 1, "f-b1.fb": 1, "f-b2.fb": 1}
        assert wait_until(lambda: wan_names(a1) == want, timeout=30), (wan_names(a1), b2.log())
        assert wait_until(lambda: wan_names(b2) == want, timeout=30), wan_names(b2)
        assert "flood-joined 1 server(s) of fb" in b1.log() + b2.log()
    finally:
        codes = stop_all(agents)
        assert all(c == 0 for c in codes.values()), codes
