"""User events across a gossip pool: one server and four client agents on 127.0.0.1..5.

An event fired on any agent reaches every agent's /v1/event/list (events are pure gossip,
so client agents take part fully); ?name filters the list; node, service and tag filters are
checked by each receiving agent against its own name and services; a blocking list wakes on a
new event; `concord event` prints Consul's "Event ID: <id>"."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from agentlib import Agent

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wait_until(fn, timeout=30.0, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


def index_of(event_id):
    """Consul's uuidToUint64."""
    h = event_id.replace("-", "")
    return int(h[:16], 16) ^ int(h[16:], 16)


def events(agent, query=""):
    status, headers, body = agent.request("GET", "/v1/event/list" + query)
    assert status == 200, (status, body)
    return json.loads(body), headers


def ids(agent, query=""):
    return [e["ID"] for e in events(agent, query)[0]]


@pytest.fixture(scope="module")
def pool(request):
    server = Agent(node="ev-srv", ip="127.0.0.1").start()
    agents = [server]

    def fin():
        for a in agents:
            try:
                code = a.stop()
            finally:
                a.kill()
            assert code == 0, "agent %s exited with %s:\n%s" % (a.node, code, a.log())
    request.addfinalizer(fin)
    for i in range(2, 6):
        c = Agent(dev=False, server=False, node="ev-cli%d" % i, ip="127.0.0.%d" % i,
                  extra_args=["-join", "127.0.0.1:%d" % server.serf_port])
        c.start()
        agents.append(c)

    def all_joined():
        for a in agents:
            status, _, body = a.request("GET", "/v1/agent/members")
            if status != 200 or sum(1 for m in json.loads(body) if m["Status"] == 1) != 5:
                return False
        return True
    assert wait_until(all_joined), server.log()
    # Services for the service/tag filters: web (tag v1) on cli3, db (tag replica) on cli4.
    for a, svc in ((agents[2], {"Name": "web", "Tags": ["v1", "primary"]}),
                   (agents[3], {"Name": "db", "Tags": ["replica"]})):
        status, _, body = a.request("PUT", "/v1/agent/service/register", json.dumps(svc))
        assert status == 200, body
    return agents


def test_fire_reaches_every_agent(pool):
    status, headers, body = pool[2].request("PUT", "/v1/event/fire/deploy", body=b"1609030")
    assert status == 200, body
    ev = json.loads(body)
    assert UUID.match(ev["ID"])
    assert ev == {"ID": ev["ID"], "Name": "deploy", "Payload": "MTYwOTAzMA==", "NodeFilter": "",
                  "ServiceFilter": "", "TagFilter": "", "Version": 1, "LTime": 0}
    for a in pool:
        assert wait_until(lambda: ev["ID"] in ids(a)), (a.node, a.log())
    for a in pool:
        listed, headers = events(a, "?name=deploy")
        got = [e for e in listed if e["ID"] == ev["ID"]][0]
        assert got["Payload"] == "MTYwOTAzMA==" and got["Version"] == 1 and got["LTime"] > 0
        # X-Consul-Index is derived from the newest listed event's ID.
        assert int(headers["x-consul-index"]) == index_of(listed[-1]["ID"])


def test_name_filter_and_empty_list(pool):
    a = pool[0]
    for name in ("alpha", "beta", "alpha"):
        status, _, _ = a.request("PUT", "/v1/event/fire/" + name)
        assert status == 200
    assert wait_until(lambda: len(ids(pool[4], "?name=alpha")) == 2)
    listed, _ = events(pool[4], "?name=beta")
    assert [e["Name"] for e in listed] == ["beta"] and listed[0]["Payload"] is None
    listed, headers = events(pool[4], "?name=never-fired")
    assert listed == [] and headers["x-consul-index"] == "1"


def test_node_filter(pool):
    status, _, body = pool[0].request("PUT", "/v1/event/fire/only-cli2?node=%5Eev-cli2%24")
    assert status == 200, body
    eid = json.loads(body)["ID"]
    assert wait_until(lambda: eid in ids(pool[1])), pool[1].log()
    # A later unfiltered event reaching everyone proves the filtered one had its chance.
    status, _, body = pool[0].request("PUT", "/v1/event/fire/marker-node")
    marker = json.loads(body)["ID"]
    for a in pool:
        assert wait_until(lambda: marker in ids(a))
        assert (eid in ids(a)) == (a.node == "ev-cli2"), a.node


def test_service_and_tag_filters(pool):
    fired = {}
    for name, q in (("svc-web", "service=web"), ("svc-db", "service=%5Edb%24"),
                    ("tag-v1", "service=web%7Cdb&tag=%5Ev1%24"),
                    ("tag-none", "service=web&tag=replica")):
        status, _, body = pool[1].request("PUT", "/v1/event/fire/%s?%s" % (name, q))
        assert status == 200, body
        fired[name] = json.loads(body)
    assert fired["tag-v1"]["ServiceFilter"] == "web|db" and fired["tag-v1"]["TagFilter"] == "^v1$"
    status, _, body = pool[1].request("PUT", "/v1/event/fire/marker-svc")
    marker = json.loads(body)["ID"]
    want = {"ev-cli3": {"svc-web", "tag-v1"}, "ev-cli4": {"svc-db"}}
    for a in pool:
        assert wait_until(lambda: marker in ids(a))
        have = {e["Name"] for e in events(a)[0]} & set(fired)
        assert have == want.get(a.node, set()), (a.node, have)


def test_blocking_list_wakes_on_new_event(pool):
    a = pool[3]
    _, headers = events(a)
    index = headers["x-consul-index"]
    result = {}

    def block():
        t0 = time.time()
        result["r"] = a.request("GET", "/v1/event/list?index=%s&wait=20s" % index)
        result["t"] = time.time() - t0
    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.7)
    assert "r" not in result  # still parked
    status, _, body = pool[0].request("PUT", "/v1/event/fire/wake")
    eid = json.loads(body)["ID"]
    t.join(25)
    status, headers, body = result["r"]
    assert status == 200 and result["t"] < 10
    listed = json.loads(body)
    assert listed[-1]["ID"] == eid
    assert int(headers["x-consul-index"]) == index_of(eid)
    # With nothing new, the wait runs out and the same index comes back.
    t0 = time.time()
    _, headers, _ = a.request("GET", "/v1/event/list?index=%s&wait=1s" % headers["x-consul-index"])
    assert 0.9 < time.time() - t0 < 5 and int(headers["x-consul-index"]) == index_of(eid)
    # A name filter keeps a blocked list parked through events it does not show.
    _, headers = events(a, "?name=wake")
    result.clear()

    def block_named():
        result["r"] = a.request("GET", "/v1/event/list?name=wake&index=%s&wait=2s"
                                % headers["x-consul-index"])
    t = threading.Thread(target=block_named)
    t.start()
    time.sleep(0.3)
    pool[0].request("PUT", "/v1/event/fire/other-name")
    time.sleep(0.7)
    assert "r" not in result
    t.join(10)
    assert result["r"][1]["x-consul-index"] == headers["x-consul-index"]


def test_fire_errors(pool):
    a = pool[0]
    status, _, body = a.request("PUT", "/v1/event/fire/")
    assert status == 400 and body == b"Missing name"
    status, _, body = a.request("PUT", "/v1/event/fire/x?tag=v1")
    assert status == 500 and body == b"Cannot provide tag filter without service filter"
    status, _, body = a.request("PUT", "/v1/event/fire/x?node=%28")
    assert status == 500 and body.startswith(b"Invalid node filter: error parsing regexp")
    status, _, body = a.request("PUT", "/v1/event/fire/big", body=b"x" * 600)
    assert status == 500
    assert body == b"user event exceeds configured limit of 512 bytes before encoding"
    status, _, _ = a.request("GET", "/v1/event/fire/x")
    assert status == 405
    status, _, body = a.request("GET", "/v1/event/list?index=abc")
    assert status == 400


def test_cli_event(pool):
    out = pool[4].cli("event", "-name", "cli-fired", "-node", "ev-", "the payload")
    assert out.returncode == 0, out.stderr
    m = re.match(r"^Event ID: ([0-9a-f-]{36})\n$", out.stdout)
    assert m, out.stdout
    eid = m.group(1)
    for a in pool:
        assert wait_until(lambda: eid in ids(a, "?name=cli-fired"))
    got = events(pool[0], "?name=cli-fired")[0][-1]
    assert got["NodeFilter"] == "ev-" and got["Payload"] == "dGhlIHBheWxvYWQ="
    out = pool[4].cli("event")
    assert out.returncode == 1 and out.stderr.startswith("Event name must be specified\n")
    out = pool[4].cli("event", "-name", "x", "-tag", "v1")
    assert out.returncode == 1
    assert out.stderr == "Cannot provide tag filter without service filter.\n"
    out = pool[4].cli("event", "-name", "x", "a", "b")
    assert out.returncode == 1 and out.stderr.startswith("Too many command line arguments.\n")
    out = pool[4].cli("event", "-name", "big", "y" * 600)
    assert out.returncode == 1
    assert out.stderr == ("Error firing event: Unexpected response code: 500 (user event "
                          "exceeds configured limit of 512 bytes before encoding)\n")
    out = pool[4].cli("event", "-name", "x", env={"CONSUL_HTTP_ADDR": "127.0.0.1:1"})
    assert out.returncode == 1 and out.stderr.startswith("Error querying Consul agent: ")


def test_python_consul(pool):
    import consul
    a = pool[1]
    c = consul.Consul(host=a.ip, port=a.http_port)
    fired = c.event.fire("py-event", "py-body", node="ev-")
    assert UUID.match(fired["ID"]) and fired["NodeFilter"] == "ev-" and fired["LTime"] == 0
    assert wait_until(lambda: any(e["ID"] == fired["ID"] for e in c.event.list(name="py-event")[1]))
    index, listed = c.event.list(name="py-event")
    assert int(index) == index_of(fired["ID"]) and listed[-1]["Payload"] == b"py-body"  # python-consul decodes it
    # A blocking list (python-consul passes index and wait) returns on the next event.
    result = {}
    t = threading.Thread(target=lambda: result.update(r=c.event.list(index=index, wait="20s")))
    t0 = time.time()
    t.start()
    time.sleep(0.5)
    nxt = c.event.fire("py-event-2")
    t.join(25)
    new_index, listed = result["r"]
    assert time.time() - t0 < 10 and listed[-1]["ID"] == nxt["ID"]
    assert int(new_index) == index_of(nxt["ID"])


# ---- Interop with a real serf agent (Debian's /usr/bin/serf): the msgpack UserEvent inside a
# "consul:event:<name>" serf event, both ways, byte-compatible with what Consul's agent reads
# and writes. ----

def _mp_str(b):
    assert len(b) < 256
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def consul_encode(event_id, name, payload):
    """Consul's agent encodeMsgPack(UserEvent) for an event without filters."""
    out = bytes([0x84]) + _mp_str(b"ID") + _mp_str(event_id.encode())
    out += _mp_str(b"n") + _mp_str(name.encode())
    out += _mp_str(b"p") + bytes([0xc4, len(payload)]) + payload
    return out + _mp_str(b"v") + bytes([0x01])


def mp_decode_map(b):
    """Just enough msgpack to read a UserEvent: a fixmap of fixstr/str8 keys to fixstr, str8,
    bin8 or positive fixint values."""
    def val(i):
        t = b[i]
        if 0xa0 <= t <= 0xbf:
            n = t & 0x1f
            return b[i + 1:i + 1 + n], i + 1 + n
        if t in (0xd9, 0xc4):
            n = b[i + 1]
            return b[i + 2:i + 2 + n], i + 2 + n
        if t < 0x80:
            return t, i + 1
        raise AssertionError("unexpected msgpack type 0x%02x" % t)
    assert 0x80 <= b[0] <= 0x8f
    out, i = {}, 1
    for _ in range(b[0] & 0x0f):
        k, i = val(i)
        out[k.decode()], i = val(i)
    assert i == len(b)
    return out


@pytest.mark.skipif(not os.path.exists("/usr/bin/serf"), reason="serf is not installed")
def test_events_interoperate_with_a_real_serf_agent(request, tmp_path):
    from test_gossip_serf import SerfAgent
    a = Agent(node="ev-serf-concord").start()
    serf = SerfAgent(str(tmp_path), "ev-serf-go", {})

    def fin():
        serf.close()
        try:
            a.stop()
        finally:
            a.kill()
    request.addfinalizer(fin)
    serf.join("127.0.0.1:%d" % a.serf_port)
    assert wait_until(lambda: "ev-serf-go" in [m["Name"] for m in
                                              json.loads(a.request("GET", "/v1/agent/members")[2])])
    # serf -> Concord: an event exactly as a Consul agent would have gossiped it.
    eid = "4c0c2a55-0d7e-4cb5-9f1a-8d2b3c4d5e6f"
    r = subprocess.run(["/usr/bin/serf", "event", "-rpc-addr=" + serf.rpc, "consul:event:from-go",
                        consul_encode(eid, "from-go", b"v=42")], capture_output=True, timeout=10)
    assert r.returncode == 0, r
    assert wait_until(lambda: eid in ids(a)), a.log()
    got = events(a, "?name=from-go")[0][-1]
    assert got["Payload"] == "dj00Mg==" and got["Version"] == 1 and got["LTime"] > 0
    # Concord -> serf: the handler sees "consul:event:<name>" and Consul's msgpack UserEvent.
    status, _, body = a.request("PUT", "/v1/event/fire/from-concord?node=ev-", body=b"hello")
    assert status == 200, body
    fired = json.loads(body)

    def seen():
        try:
            with open(serf.events_path, "rb") as f:
                for line in f.read().split(b"\n"):
                    if line.startswith(b"user consul:event:from-concord "):
                        return line[len(b"user consul:event:from-concord "):]
        except FileNotFoundError:
            return None
    raw = wait_until(seen)
    assert raw, open(serf.log_path).read()
    ev = mp_decode_map(raw)
    assert ev == {"ID": fired["ID"].encode(), "n": b"from-concord", "p": b"hello",
                  "nf": b"ev-", "v": 1}
