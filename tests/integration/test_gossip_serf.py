"""Interop between Concord's gossip (tests/tools/gossip_peer) and a real serf agent (Debian's
`serf`, agent protocol 5): each joins the other, lists it alive with its tags, receives its
user events, and notices when it is killed. This proves the memberlist wire format and serf's
messages byte for byte against the Go implementation.

Everything binds 127.0.0.1. Skipped when /usr/bin/serf or the gossip_peer binary is missing.
The peer binary sits next to $CONCORD_BIN (<build>/gossip_peer)."""
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from agentlib import BIN, free_port

SERF = "/usr/bin/serf"
PEER = os.path.join(os.path.dirname(BIN), "gossip_peer")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SERF), reason="serf is not installed (make deps)"),
    pytest.mark.skipif(not os.path.exists(PEER), reason="gossip_peer is not built"),
]

# Failure detection with two members: one failed probe (1 s), then the minimum suspicion
# timeout, 4 * max(1, log10(2)) = 4 s (no third member can confirm). Allow slack for ASan.
DETECT_TIMEOUT = 20


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


class SerfAgent:
    def __init__(self, tmp, node, tags, extra=()):
        self.node = node
        self.port = free_port()
        self.rpc_port = free_port()
        self.rpc = "127.0.0.1:%d" % self.rpc_port
        self.addr = "127.0.0.1:%d" % self.port
        self.events_path = os.path.join(tmp, node + "-events.txt")
        handler = os.path.join(tmp, node + "-handler.sh")
        with open(handler, "w") as f:
            # Records every event; answers queries with "pong:<payload>" (serf sends a handler's
            # output back as the query response).
            f.write('#!/bin/sh\nIN="$(cat)"\n'
                    'printf "%%s %%s %%s\\n" "$SERF_EVENT" "$SERF_USER_EVENT$SERF_QUERY_NAME" "$IN" >> %s\n'
                    '[ "$SERF_EVENT" = query ] && printf "pong:%%s" "$IN"\nexit 0\n'
                    % self.events_path)
        os.chmod(handler, 0o755)
        self.log_path = os.path.join(tmp, node + "-serf.log")
        args = [SERF, "agent", "-bind", self.addr, "-rpc-addr", self.rpc, "-node", node,
                "-event-handler", handler, "-log-level", "debug"]
        for k, v in tags.items():
            args += ["-tag", "%s=%s" % (k, v)]
        args += list(extra)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._rpc_up, 10, "serf RPC on " + self.rpc)

    def _rpc_up(self):
        r = subprocess.run([SERF, "members", "-rpc-addr=" + self.rpc], capture_output=True)
        return r.returncode == 0

    def members(self):
        r = subprocess.run([SERF, "members", "-rpc-addr=" + self.rpc, "-format=json"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return {}
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def join(self, addr):
        r = subprocess.run([SERF, "join", "-rpc-addr=" + self.rpc, addr], capture_output=True,
                           text=True, timeout=15)
        assert r.returncode == 0, r.stdout + r.stderr

    def event(self, name, payload):
        r = subprocess.run([SERF, "event", "-rpc-addr=" + self.rpc, name, payload],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr

    def events(self):
        try:
            with open(self.events_path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self):
        self.kill()
        self.log.close()


class Peer:
    """gossip_peer: JSON lines out, commands in."""

    def __init__(self, tmp, node, tags, join=None, extra=()):
        self.node = node
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.err_path = os.path.join(tmp, node + "-peer.log")
        args = [PEER, "-node", node, "-bind", self.addr, "-log-level", "debug"]
        for k, v in tags.items():
            args += ["-tag", "%s=%s" % (k, v)]
        if join:
            args += ["-join", join]
        args += list(extra)
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        self.lines = []
        self.q = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_event(lambda e: e["event"] == "ready", 10, "peer ready")

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                ev = json.loads(line)
                self.lines.append(ev)
                self.q.put(ev)

    def wait_event(self, pred, timeout, what):
        return wait_for(lambda: next((e for e in list(self.lines) if pred(e)), None), timeout, what)

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def members(self):
        n = len(self.lines)
        self.send("members")
        ev = wait_for(lambda: next((e for e in self.lines[n:] if e["event"] == "members"), None),
                      10, "members reply")
        return {m["name"]: m for m in ev["members"]}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self):
        """Quits cleanly; the exit status must be 0 (under ASan a leak makes it non-zero)."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, ValueError):
                pass
            code = self.proc.wait(15)
            self.err.close()
            return code
        self.err.close()
        return self.proc.returncode

    def log(self):
        with open(self.err_path) as f:
            return f.read()


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="concord-gossip-serf-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pair(tmp, request):
    """A serf agent and a Concord peer, not yet joined."""
    made = []

    def make(peer_joins_serf=False):
        s = SerfAgent(tmp, "serf-1", {"role": "serf", "dc": "dc1"})
        made.append(s)
        p = Peer(tmp, "concord-1", {"role": "concord", "dc": "dc1"},
                 join=s.addr if peer_joins_serf else None, extra=["-respond"])
        made.append(p)
        return s, p

    yield make
    codes = []
    for obj in reversed(made):
        if isinstance(obj, Peer):
            codes.append((obj, obj.close()))
        else:
            obj.close()
    for p, code in codes:
        if code not in (0, -9):
            raise AssertionError("gossip_peer exited %s:\n%s" % (code, p.log()[-4000:]))


def assert_see_each_other(s, p):
    sm = wait_for(lambda: (lambda m: m if m.get("concord-1", {}).get("status") == "alive" else None)(
        s.members()), 15, "serf to list concord-1 alive")
    c = sm["concord-1"]
    assert c["tags"] == {"role": "concord", "dc": "dc1"}
    assert c["addr"] == p.addr
    assert c["protocol"]["version"] == 4  # serf delegate protocol Concord speaks (Consul's)
    pm = wait_for(lambda: (lambda m: m if m.get("serf-1", {}).get("status") == "alive" else None)(
        p.members()), 15, "concord to list serf-1 alive")
    m = pm["serf-1"]
    assert m["tags"] == {"role": "serf", "dc": "dc1"}
    assert m["addr"] == "127.0.0.1" and m["port"] == s.port
    assert m["protocol"] == [1, 5, 2]  # memberlist protocol range and version serf speaks
    assert m["delegate"][2] == 5  # serf agent protocol 5
    assert pm["concord-1"]["status"] == "alive"


def test_serf_joins_concord(pair):
    s, p = pair()
    s.join(p.addr)
    assert_see_each_other(s, p)


def test_concord_joins_serf(pair):
    s, p = pair(peer_joins_serf=True)
    ev = p.wait_event(lambda e: e["event"] == "joined", 10, "join to finish")
    assert ev["n"] == 1, ev
    assert_see_each_other(s, p)


def test_user_events_both_ways(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    s.event("from-serf", "hello-concord")
    ev = p.wait_event(lambda e: e["event"] == "user" and e["name"] == "from-serf", 15,
                      "serf's event at concord")
    assert ev["payload"] == "hello-concord"
    assert ev["coalesce"] is True  # `serf event` coalesces by default
    p.send("event from-concord hello-serf")
    wait_for(lambda: "user from-concord hello-serf" in s.events(), 15,
             "concord's event at serf's handler")
    # The local member gets its own event too, exactly once, as serf does.
    time.sleep(1)
    own = [e for e in p.lines if e["event"] == "user" and e["name"] == "from-concord"]
    assert len(own) == 1


def test_tag_update_reaches_serf(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    p.send("tags role=concord dc=dc1 version=2")
    wait_for(lambda: s.members().get("concord-1", {}).get("tags", {}).get("version") == "2", 15,
             "serf to see the new tag")


def test_serf_killed_is_detected(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    s.kill()
    ev = p.wait_event(lambda e: e["event"] == "member-failed" and e["member"]["name"] == "serf-1",
                      DETECT_TIMEOUT, "concord to mark serf-1 failed")
    assert ev["member"]["status"] == "failed"
    assert p.members()["serf-1"]["status"] == "failed"


def test_concord_killed_is_detected(pair):
    s, p = pair()
    s.join(p.addr)
    assert_see_each_other(s, p)
    p.kill()
    wait_for(lambda: s.members().get("concord-1", {}).get("status") == "failed", DETECT_TIMEOUT,
             "serf to mark concord-1 failed")


def test_concord_leaves_gracefully(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    p.send("leave")
    p.wait_event(lambda e: e["event"] == "left", 15, "leave to finish")
    wait_for(lambda: s.members().get("concord-1", {}).get("status") == "left", 15,
             "serf to list concord-1 as left")


def test_serf_query_is_acked(pair):
    """`serf query` asks every member for an ack: Concord's member must be among them."""
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    r = subprocess.run([SERF, "query", "-rpc-addr=" + s.rpc, "-timeout=3s", "-format=json",
                        "hello", "world"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert "concord-1" in out["Acks"], out
    # A tag filter that excludes us: no ack from us.
    r = subprocess.run([SERF, "query", "-rpc-addr=" + s.rpc, "-timeout=2s", "-format=json",
                        "-tag", "role=serf", "hello", "again"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "concord-1" not in json.loads(r.stdout)["Acks"]


def test_serf_query_gets_concord_response(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    r = subprocess.run([SERF, "query", "-rpc-addr=" + s.rpc, "-timeout=3s", "-format=json",
                        "ask", "42"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["Responses"].get("concord-1") == "concord-1:42", out
    q = p.wait_event(lambda e: e["event"] == "query", 5, "the query at concord")
    assert q["name"] == "ask" and q["payload"] == "42" and q["from"] == "serf-1"


def test_concord_query_reaches_serf(pair):
    s, p = pair(peer_joins_serf=True)
    assert_see_each_other(s, p)
    p.send("query ask hello")
    done = p.wait_event(lambda e: e["event"] == "query-done", 15, "the query to finish")
    acks = {e["from"] for e in p.lines if e["event"] == "query-ack"}
    resps = {e["from"]: e["payload"] for e in p.lines if e["event"] == "query-response"}
    assert acks == {"serf-1", "concord-1"}, p.lines
    assert resps.get("serf-1") == "pong:hello", resps
    assert resps.get("concord-1") == "concord-1:hello", resps
    assert done["acks"] == 2 and done["responses"] == 2
