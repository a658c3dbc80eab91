"""dig (Debian bind9-dnsutils) against tests/tools/dns_fake_server: Concord's DNS engine and
listeners serving a fixed catalog, over UDP and TCP, until the agent serves DNS itself.

Covers every record form, NXDOMAIN vs NODATA with the SOA, truncation with and without EDNS
and dig's automatic retry over TCP, recursors (a second fake server as the upstream) and
malformed packets. Only 127.0.0.1 is ever contacted."""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    cands = [os.environ.get("DNS_FAKE_SERVER", "")]
    if os.environ.get("CONCORD_BIN"):
        cands.append(os.path.join(os.path.dirname(os.environ["CONCORD_BIN"]), "dns_fake_server"))
    cands.append(os.path.join(ROOT, "build", "dns_fake_server"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


TOOL = _tool()
pytestmark = [
    pytest.mark.skipif(TOOL is None, reason="dns_fake_server not built"),
    pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed"),
]


def catalog():
    nodes = [
        {"Node": "node1", "Address": "10.0.0.1", "Meta": {"rack": "a", "rfc1035-x": "plain"}},
        {"Node": "node2", "Address": "10.0.0.2"},
        {"Node": "node6", "Address": "2001:db8::6"},
        {"Node": "far", "Address": "10.1.0.1", "Datacenter": "dc2"},
    ]
    services = [
        {"Node": "node1", "Service": "web", "Port": 80, "Tags": ["primary"]},
        {"Node": "node2", "Service": "web", "Port": 80, "Status": "warning"},
        {"Node": "node6", "Service": "web", "Port": 81},
        {"Node": "node1", "Service": "db", "Address": "10.0.0.100", "Port": 5432},
        {"Node": "node2", "Service": "down", "Port": 1, "Status": "critical"},
        {"Node": "node1", "Service": "consul", "Port": 8300},
        {"Node": "far", "Service": "web", "Datacenter": "dc2", "Port": 80},
    ]
    for i in range(300):
        name = "m%d" % i
        nodes.append({"Node": name, "Address": "10.2.%d.%d" % (i // 250, i % 250 + 1)})
        services.append({"Node": name, "Service": "many", "Port": 1000 + i})
    return {"Datacenter": "dc1", "Nodes": nodes, "Services": services,
            "Queries": [{"Name": "myq", "Service": "web", "TTL": "30s"}]}


class FakeServer:
    def __init__(self, args, cat=None):
        fd, self.path = tempfile.mkstemp(suffix=".json", prefix="dns-catalog-")
        with os.fdopen(fd, "w") as f:
            json.dump(cat or catalog(), f)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([TOOL, "-catalog", self.path, "-port", "0"] + args,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, "dns_fake_server did not start: %r %s" % (line, self.stderr())
        self.port = int(m.group(1))

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=10)
        os.unlink(self.path)
        # A clean close exits 0; under ASan a leak report makes it non-zero.
        assert code == 0, "dns_fake_server exited %s:\n%s" % (code, self.stderr())


@pytest.fixture(scope="module")
def server():
    s = FakeServer([])
    yield s
    s.stop()


def dig(server_port, *args):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(server_port), "+time=2", "+tries=1"]
                         + list(args), capture_output=True, text=True, timeout=20).stdout
    return Answer(out)


class Answer:
    """dig's text output, parsed into status, flags and sections."""

    def __init__(self, text):
        self.text = text
        m = re.search(r"status: (\w+)", text)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([a-z ]*);", text)
        self.flags = set(m.group(1).split()) if m else set()
        self.sections = {}
        cur = None
        for line in text.splitlines():
            m = re.match(r";; (\w+) SECTION:", line)
            if m:
                cur = m.group(1)
                self.sections[cur] = []
            elif cur and line and not line.startswith(";"):
                self.sections[cur].append(line.split())
            elif not line:
                cur = None

    def rrs(self, section="ANSWER", rtype=None):
        return [r for r in self.sections.get(section, []) if rtype is None or r[3] == rtype]

    def data(self, section="ANSWER", rtype=None):
        return sorted(" ".join(r[4:]) for r in self.rrs(section, rtype))

    def __repr__(self):
        return self.text


def test_service_a_and_srv(server):
    a = dig(server.port, "web.service.consul", "A")
    assert a.status == "NOERROR" and "aa" in a.flags
    assert a.data() == ["10.0.0.1", "10.0.0.2"], a
    a = dig(server.port, "primary.web.service.consul", "A")
    assert a.data() == ["10.0.0.1"]
    a = dig(server.port, "web.service.consul", "SRV")
    assert a.data() == ["1 1 80 node1.node.dc1.consul.", "1 1 80 node2.node.dc1.consul.",
                        "1 1 81 node6.node.dc1.consul."], a
    assert a.data("ADDITIONAL", "A") == ["10.0.0.1", "10.0.0.2"]
    assert a.data("ADDITIONAL", "AAAA") == ["2001:db8::6"]
    assert a.data("ADDITIONAL", "TXT") == ['"plain"', '"rack=a"']
    a = dig(server.port, "_web._tcp.service.consul", "SRV")
    assert len(a.rrs(rtype="SRV")) == 3
    a = dig(server.port, "_web._primary.service.dc1.consul", "SRV")
    assert a.data() == ["1 1 80 node1.node.dc1.consul."]
    a = dig(server.port, "db.service.consul", "SRV")
    assert a.data() == ["1 1 5432 0a000064.addr.dc1.consul."]
    assert a.data("ADDITIONAL", "A") == ["10.0.0.100"]
    a = dig(server.port, "web.service.dc2.consul", "A")
    assert a.data() == ["10.1.0.1"]


def test_tcp(server):
    a = dig(server.port, "+tcp", "web.service.consul", "SRV")
    assert a.status == "NOERROR" and len(a.rrs()) == 3
    assert "(TCP)" in a.text


def test_nxdomain_and_nodata(server):
    for name in ("nope.service.consul", "down.service.consul", "nobody.node.consul",
                 "web.service.dc9.consul", "x.y.consul"):
        a = dig(server.port, name, "A")
        assert a.status == "NXDOMAIN", (name, a)
        assert "aa" in a.flags
        soa = a.rrs("AUTHORITY", "SOA")
        assert len(soa) == 1 and soa[0][0] == "consul."
        assert soa[0][4:6] == ["ns.consul.", "hostmaster.consul."]
        assert soa[0][7:] == ["3600", "600", "86400", "0"]
    a = dig(server.port, "node1.node.consul", "AAAA")
    assert a.status == "NOERROR" and a.rrs() == [] and len(a.rrs("AUTHORITY", "SOA")) == 1


def test_node_addr_query_ptr(server):
    a = dig(server.port, "node1.node.consul", "A")
    assert a.data() == ["10.0.0.1"]
    assert a.data("ADDITIONAL", "TXT") == ['"plain"', '"rack=a"']
    a = dig(server.port, "node1.node.dc1.consul", "TXT")
    assert a.data() == ['"plain"', '"rack=a"']
    a = dig(server.port, "node6.node.consul", "AAAA")
    assert a.data() == ["2001:db8::6"]
    a = dig(server.port, "0a000002.addr.dc1.consul", "A")
    assert a.data() == ["10.0.0.2"]
    a = dig(server.port, "myq.query.consul", "A")
    assert a.data() == ["10.0.0.1", "10.0.0.2"]
    assert all(r[1] == "30" for r in a.rrs())
    a = dig(server.port, "-x", "10.0.0.1")
    assert a.data() == ["node1.node.dc1.consul."]
    a = dig(server.port, "-x", "2001:db8::6")
    assert a.data() == ["node6.node.dc1.consul."]
    a = dig(server.port, "-x", "10.9.9.9")
    assert a.status == "NXDOMAIN"


def test_soa_ns_and_case(server):
    a = dig(server.port, "consul", "SOA")
    assert a.rrs(rtype="SOA")[0][4] == "ns.consul."
    assert a.data("AUTHORITY", "NS") == ["node1.node.dc1.consul."]
    a = dig(server.port, "consul", "NS")
    assert a.data() == ["node1.node.dc1.consul."]
    assert a.data("ADDITIONAL", "A") == ["10.0.0.1"]
    a = dig(server.port, "WEB.Service.CONSUL", "A")
    assert a.status == "NOERROR" and len(a.rrs()) == 2
    assert a.rrs()[0][0] == "WEB.Service.CONSUL."


def test_truncation(server):
    # Classic client (no EDNS): udp_answer_limit 3, no TC (Consul's enable_truncate is off).
    a = dig(server.port, "+noedns", "many.service.consul", "A")
    assert len(a.rrs()) == 3 and "tc" not in a.flags
    a = dig(server.port, "+noedns", "many.service.consul", "SRV")
    assert len(a.rrs()) == 3 and len(a.rrs("ADDITIONAL", "A")) == 3
    # EDNS 1232: as many as fit, TC set; +ignore keeps dig from retrying over TCP.
    a = dig(server.port, "+ignore", "+bufsize=1232", "many.service.consul", "SRV")
    n = len(a.rrs())
    assert "tc" in a.flags and 3 < n < 300, a
    # Without +ignore dig retries over TCP and gets all 300.
    a = dig(server.port, "+bufsize=1232", "many.service.consul", "SRV")
    assert len(a.rrs()) == 300 and "tc" not in a.flags
    assert "(TCP)" in a.text
    # A 4096 buffer holds all 300 A records.
    a = dig(server.port, "+bufsize=4096", "many.service.consul", "A")
    assert len(a.rrs()) == 300 and "tc" not in a.flags
    a = dig(server.port, "+tcp", "many.service.consul", "SRV")
    assert len(a.rrs()) == 300


def test_round_robin(server):
    firsts = set()
    for _ in range(15):
        a = dig(server.port, "+noedns", "many.service.consul", "A")
        firsts.add(a.rrs()[0][4])
    assert len(firsts) > 5


def test_outside_domain_refused(server):
    a = dig(server.port, "example.com", "A")
    assert a.status == "REFUSED"
    assert "ra" not in a.flags


def test_recursors():
    upstream = FakeServer(["-domain", "example."])
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]  # bound but never read: a recursor that never answers
    front = FakeServer(["-recursor", "127.0.0.1:%d" % dead_port,
                        "-recursor", "127.0.0.1:%d" % upstream.port,
                        "-recursor-timeout", "300"])
    try:
        # The upstream's reply is relayed as it came (its flags too, as Consul does).
        a = dig(front.port, "web.service.example", "A")
        assert a.status == "NOERROR" and "aa" in a.flags
        assert a.data() == ["10.0.0.1", "10.0.0.2"]
        a = dig(front.port, "+tcp", "web.service.example", "SRV")
        assert len(a.rrs()) == 3
        a = dig(front.port, "nope.service.example", "A")
        assert a.status == "NXDOMAIN"
        # The upstream refuses what is outside its domain: SERVFAIL after both tried.
        a = dig(front.port, "www.other.test", "A")
        assert a.status == "SERVFAIL" and "ra" in a.flags
        # Its own names are still answered locally.
        a = dig(front.port, "web.service.consul", "A")
        assert a.data() == ["10.0.0.1", "10.0.0.2"]
    finally:
        dead.close()
        front.stop()
        upstream.stop()


def test_only_passing_ttls_alt_domain():
    s = FakeServer(["-only-passing", "-alt-domain", "alt.test", "-node-ttl", "9",
                    "-service-ttl", "*=5", "-service-ttl", "web=10"])
    try:
        a = dig(s.port, "web.service.alt.test", "A")
        assert a.data() == ["10.0.0.1"]
        assert a.rrs()[0][1] == "10"
        a = dig(s.port, "db.service.consul", "A")
        assert a.rrs()[0][1] == "5"
        a = dig(s.port, "node2.node.alt.test", "A")
        assert a.rrs()[0][1] == "9"
        a = dig(s.port, "nope.service.alt.test", "A")
        assert a.rrs("AUTHORITY", "SOA")[0][0] == "alt.test."
    finally:
        s.stop()


def _udp(port, payload):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def test_malformed_packets(server):
    q = struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x03web\x07service\x06consul\x00" \
        + struct.pack(">HH", 1, 1)
    good = _udp(server.port, q)
    assert good and good[:2] == b"\xbe\xef" and good[3] & 0x0F == 0
    # Two questions: FORMERR.
    r = _udp(server.port, q[:4] + b"\x00\x02" + q[6:])
    assert r and r[3] & 0x0F == 1
    # UPDATE opcode: NOTIMP.
    r = _udp(server.port, q[:2] + b"\x28\x00" + q[4:])
    assert r and r[3] & 0x0F == 4
    # Cut in the middle of the name: FORMERR. Shorter than a header, or a response: no reply.
    r = _udp(server.port, q[:20])
    assert r and r[3] & 0x0F == 1
    assert _udp(server.port, b"\x00\x01\x02") is None
    assert _udp(server.port, q[:2] + b"\x81\x00" + q[4:]) is None
    # Garbage over TCP, then a good query on a new connection.
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as t:
        t.sendall(b"\x00\x05hello" + struct.pack(">H", len(q)) + q)
        hdr = t.recv(2)
        n = struct.unpack(">H", hdr)[0]
        body = b""
        while len(body) < n:
            body += t.recv(n - len(body))
        assert body[:2] == b"\xbe\xef"
    a = dig(server.port, "web.service.consul", "A")
    assert a.status == "NOERROR"
