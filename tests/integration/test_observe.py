"""Operators' views of an agent: /v1/agent/monitor (log streaming, text and JSON, level
filter, bounded memory for a client that stops reading), `concord monitor`, and
/v1/agent/metrics (Consul's JSON shape, Prometheus text)."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from agentlib import Agent


class Stream:
    """A raw HTTP/1.1 GET whose chunked answer is read incrementally."""

    def __init__(self, agent, path, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((agent.ip, agent.http_port))
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        self.raw = b""
        self.body = b""
        self.status = None
        self.headers = {}

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        if not data:
            raise EOFError
        self.raw += data
        return True

    def head(self, timeout=10):
        deadline = time.time() + timeout
        while b"\r\n\r\n" not in self.raw:
            if time.time() > deadline:
                raise AssertionError("no response head")
            self._fill(1)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        return self.status

    def _dechunk(self):
        while True:
            if b"\r\n" not in self.raw:
                return
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2:]

    def read_until(self, pred, timeout=10):
        """Reads until pred(lines) is true; returns the lines."""
        deadline = time.time() + timeout
        while True:
            self._dechunk()
            lines = self.body.decode("utf-8", "replace").splitlines()
            if pred(lines):
                return lines
            if time.time() > deadline:
                raise AssertionError("timed out; got %d lines, last: %r"
                                     % (len(lines), [l[:200] for l in lines[-3:]]))
            self._fill(0.5)

    def drain(self, quiet=1.0, timeout=30):
        """Reads until nothing arrives for `quiet` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self._fill(quiet):
                break
        self._dechunk()

    def close(self):
        self.sock.close()


def register(agent, name):
    status, _, body = agent.request("PUT", "/v1/agent/service/register",
                                    json.dumps({"Name": name, "ID": name}))
    assert status == 200, body


TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(TRACE|DEBUG|INFO|WARN|ERROR)\]\s+\S+: ")


def test_monitor_streams_text_at_level(agent):
    debug = Stream(agent, "/v1/agent/monitor?loglevel=debug")
    info = Stream(agent, "/v1/agent/monitor")  # INFO by default
    try:
        assert debug.head() == 200 and info.head() == 200
        assert debug.headers.get("transfer-encoding") == "chunked"
        register(agent, "mon-web")
        lines = debug.read_until(lambda ls: any("Synced service mon-web" in l for l in ls))
        line = [l for l in lines if "Synced service mon-web" in l][0]
        assert TEXT_LINE.match(line), line
        assert "[DEBUG] agent: Synced service mon-web" in line
        # an info-level line (deregistration) reaches both; the debug one only the first
        status, _, _ = agent.request("PUT", "/v1/agent/service/deregister/mon-web")
        assert status == 200
        ilines = info.read_until(lambda ls: any("Deregistered service mon-web" in l for l in ls))
        assert not any("[DEBUG]" in l for l in ilines), ilines
        assert all(TEXT_LINE.match(l) for l in ilines), ilines
    finally:
        debug.close()
        info.close()


def test_monitor_json(agent):
    s = Stream(agent, "/v1/agent/monitor?loglevel=debug&logjson")
    try:
        assert s.head() == 200
        register(agent, "mon-json")
        lines = s.read_until(lambda ls: any("Synced service mon-json" in l for l in ls))
        objs = [json.loads(l) for l in lines]  # every line is one JSON object
        o = [x for x in objs if x["@message"] == "Synced service mon-json"][0]
        assert o["@level"] == "debug" and o["@module"] == "agent"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", o["@timestamp"])
        assert sorted(o) == ["@level", "@message", "@module", "@timestamp"]
    finally:
        s.close()


def test_monitor_bad_level(agent):
    status, headers, body = agent.request("GET", "/v1/agent/monitor?loglevel=foo")
    assert status == 400
    assert body == b"Unknown log level: foo"
    status, _, _ = agent.request("GET", "/v1/agent/monitor?loglevel=off")
    assert status == 400


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood(agent, n, qlen=1800, tag="x"):
    """n pipelined requests, each logging a ~2 KB debug line (Request finished: url=...)."""
    pad = "a" * qlen
    req = ("GET /v1/status/leader?tag=%s&pad=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (tag, pad)).encode()
    sock = socket.create_connection((agent.ip, agent.http_port))
    sent = 0
    got = 0
    sock.settimeout(30)
    while sent < n:
        batch = min(200, n - sent)
        sock.sendall(req * batch)
        sent += batch
        while got < sent:  # read the answers so the server keeps going
            data = sock.recv(1 << 20)
            assert data
            got += data.count(b"HTTP/1.1 200")
    sock.close()
    return sent * (qlen + 120)


@pytest.fixture
def lean_agent():
    """An agent whose RSS tracks its live memory: under ASan, freed memory is otherwise held
    in a 256 MB quarantine, which would hide (or fake) growth."""
    old = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "quarantine_size_mb=1"
    try:
        a = Agent(node="mon-lean").start()
    finally:
        if old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = old
    yield a
    try:
        assert a.stop() == 0, a.log()
    finally:
        a.kill()


def test_monitor_slow_client_bounded(lean_agent):
    agent = lean_agent
    # a client that reads nothing, with a tiny receive window
    slow = Stream(agent, "/v1/agent/monitor?loglevel=debug", rcvbuf=4096)
    time.sleep(0.3)
    before = rss_kb(agent.proc.pid)
    produced = 0
    for _ in range(4):
        produced += flood(agent, 2000)
    after = rss_kb(agent.proc.pid)
    # ~16 MB of log lines went by; the agent kept at most a bounded part of them for the slow
    # client (generously bounded here: ASan's allocator keeps freed memory for a while)
    assert produced > 15_000_000
    assert after - before < 64 * 1024, (before, after)
    # now read: what was kept is far less than what was produced, and the stream says lines
    # were dropped and how many
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    assert slow.head() == 200
    slow.drain()
    flood(agent, 5, tag="last")  # lines after the backlog: the last notice comes before them
    lines = slow.read_until(lambda ls: any("tag=last" in l for l in ls), timeout=30)
    notices = [l for l in lines if "dropped" in l and "log lines" in l]
    assert all("[WARN]" in n for n in notices), notices
    dropped = sum(int(re.search(r"dropped (\d+) log lines", n).group(1)) for n in notices)
    assert dropped > 1000, notices
    assert len(slow.body) < produced / 4, (len(slow.body), produced)
    slow.close()
    # the agent is still fine and says how many lines that monitor lost
    status, _, _ = agent.request("GET", "/v1/agent/self")
    assert status == 200


def test_cli_monitor_prints_and_exits_0_on_sigint(agent):
    env = dict(os.environ, CONSUL_HTTP_ADDR=agent.http_addr)
    p = subprocess.Popen([agent.bin, "monitor", "-log-level", "debug"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        register(agent, "mon-cli")
        deadline = time.time() + 10
        out = ""
        os.set_blocking(p.stdout.fileno(), False)
        while "Synced service mon-cli" not in out and time.time() < deadline:
            chunk = p.stdout.read()
            if chunk:
                out += chunk.decode()
            time.sleep(0.1)
        assert "[DEBUG] agent: Synced service mon-cli" in out, out
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cli_monitor_json_and_bad_level(agent):
    r = agent.cli("monitor", "-log-level", "nope")
    assert r.returncode == 1
    assert r.stderr.strip() == ("Error starting monitor: Unexpected response code: 400 "
                                "(Unknown log level: nope)")
    env = dict(os.environ, CONSUL_HTTP_ADDR=agent.http_addr)
    p = subprocess.Popen([agent.bin, "monitor", "-log-json", "-log-level=debug"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    register(agent, "mon-cli-json")
    time.sleep(1)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    msgs = [json.loads(l)["@message"] for l in out.splitlines() if l.strip()]
    assert "Synced service mon-cli-json" in msgs


def test_cli_monitor_agent_goes_away():
    a = Agent(node="mon-gone").start()
    try:
        env = dict(os.environ, CONSUL_HTTP_ADDR=a.http_addr)
        p = subprocess.Popen([a.bin, "monitor"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert a.stop() == 0
        out, _ = p.communicate(timeout=10)
        assert p.returncode == 1
        assert out.endswith("\nRemote side ended the monitor! This usually means that the\n"
                            "remote side has exited or crashed.\n"), out
    finally:
        a.kill()


# ---- metrics ----

def metric(doc, kind, name, **labels):
    for m in doc[kind]:
        if m["Name"] == name and all(m["Labels"].get(k) == v for k, v in labels.items()):
            return m
    return None


def test_metrics_json_shape_and_changes(agent):
    doc, headers = agent.get_json("/v1/agent/metrics")
    assert headers["content-type"] == "application/json"
    assert set(doc) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d0 \+0000 UTC$", doc["Timestamp"])
    for g in doc["Gauges"]:
        assert set(g) == {"Name", "Value", "Labels"}
    for c in doc["Counters"] + doc["Samples"]:
        assert set(c) == {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}
    for name in ["consul.runtime.alloc_bytes", "process.resident_memory_bytes",
                 "consul.server.isLeader", "consul.raft.applied_index", "consul.raft.peers",
                 "consul.memberlist.health.score", "consul.state.kv_entries",
                 "consul.state.nodes", "consul.state.service_instances"]:
        assert metric(doc, "Gauges", name), name
    assert metric(doc, "Gauges", "consul.server.isLeader")["Value"] == 1
    assert metric(doc, "Gauges", "consul.serf.members", status="alive")["Value"] >= 1
    kv0 = metric(doc, "Gauges", "consul.state.kv_entries")["Value"]
    idx0 = metric(doc, "Gauges", "consul.raft.applied_index")["Value"]
    http0 = metric(doc, "Counters", "consul.http.requests")["Count"]

    for i in range(3):
        status, _, _ = agent.request("PUT", "/v1/kv/metrics-test/%d" % i, "v")
        assert status == 200
    doc, _ = agent.get_json("/v1/agent/metrics")
    assert metric(doc, "Gauges", "consul.state.kv_entries")["Value"] == kv0 + 3
    assert metric(doc, "Gauges", "consul.raft.applied_index")["Value"] >= idx0 + 3
    assert metric(doc, "Counters", "consul.http.requests")["Count"] >= http0 + 4
    put = metric(doc, "Samples", "consul.api.http", method="PUT", path="v1_kv_")
    assert put and put["Count"] >= 3 and put["Max"] >= put["Min"] > 0


def parse_prometheus(text):
    """A small parser of the text exposition format: {name: type}, [(name, labels, value)]."""
    types, samples = {}, []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in types, "TYPE twice: " + name
            types[name] = typ
            continue
        if line.startswith("#") or not line:
            continue
        m = line_re.match(line)
        assert m, "bad line: %r" % line
        labels = {}
        if m.group(3):
            pos = 0
            while pos < len(m.group(3)):
                lm = label_re.match(m.group(3), pos)
                assert lm, "bad labels: %r" % line
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(4))))
    for name, _, _ in samples:
        base = re.sub(r"_(sum|count)$", "", name)
        assert name in types or base in types, "sample without TYPE: " + name
    return types, samples


def test_metrics_prometheus(agent):
    agent.request("PUT", "/v1/kv/prom", "x")
    status, headers, body = agent.request("GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse_prometheus(body.decode())
    names = {n for n, _, _ in samples}
    for name in ["consul_runtime_alloc_bytes", "consul_runtime_sys_bytes",
                 "process_resident_memory_bytes", "process_open_fds",
                 "consul_raft_applied_index", "consul_raft_last_index", "consul_server_isLeader",
                 "consul_raft_peers", "consul_serf_members", "consul_memberlist_health_score",
                 "consul_state_kv_entries", "consul_state_nodes", "consul_dns_queries",
                 "consul_rpc_request", "consul_api_http_count", "consul_api_http_sum"]:
        assert name in names, name
    assert types["consul_api_http"] == "summary"
    assert types["consul_dns_queries"] == "counter"
    assert types["consul_raft_applied_index"] == "gauge"
    put = [(l, v) for n, l, v in samples
           if n == "consul_api_http_count" and l == {"method": "PUT", "path": "v1_kv_"}]
    assert put and put[0][1] >= 1
    fds = [v for n, _, v in samples if n == "process_open_fds"][0]
    assert 3 < fds < 10000
