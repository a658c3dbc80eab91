"""Gossip encryption against Debian's real `serf agent -encrypt` (memberlist's AES-GCM keyring):
Concord (the gossip_peer tool and the concord agent) and serf with the same key join both ways
and exchange user events; with different keys (or one side without a key) the join fails and
neither lists the other; two Concord agents join encrypted; `concord keygen` makes 32-byte
keys; `concord keyring -list|-install|-use|-remove` rotates keys across two Concord agents and
a serf agent (serf's internal key queries), persisting <data_dir>/serf/local.keyring.

Everything binds 127.0.0.1. Skipped without /usr/bin/serf or the gossip_peer binary."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from agentlib import BIN, Agent
from test_gossip_serf import PEER, SERF, Peer, SerfAgent, wait_for

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SERF), reason="serf is not installed (make deps)"),
    pytest.mark.skipif(not os.path.exists(PEER), reason="gossip_peer is not built"),
]


def keygen():
    r = subprocess.run([BIN, "keygen"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="concord-gossip-enc-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs():
    """Closes whatever a test started, last first."""
    made = []
    yield made
    for obj in reversed(made):
        if isinstance(obj, Agent):
            obj.kill()
        else:
            obj.close()


def alive_in(members_fn, name, timeout, what):
    return wait_for(lambda: (lambda m: m if m.get(name, {}).get("status") == "alive" else None)(
        members_fn()), timeout, what)


def agent_members(a):
    ms, _ = a.get_json("/v1/agent/members")
    return {m["Name"]: {"status": {1: "alive"}.get(m["Status"], m["Status"])} for m in ms}


def test_keygen():
    k1, k2 = keygen(), keygen()
    assert len(base64.b64decode(k1, validate=True)) == 32
    assert k1 != k2
    # Usable as is: serf accepts it.
    r = subprocess.run([SERF, "keygen"], capture_output=True, text=True, timeout=10)
    assert len(base64.b64decode(r.stdout.strip())) == 32  # and serf's are the same shape


def test_peer_and_serf_same_key_both_ways(tmp, procs):
    key = keygen()
    s = SerfAgent(tmp, "serf-1", {"role": "serf"}, extra=["-encrypt", key])
    procs.append(s)
    p = Peer(tmp, "concord-1", {"role": "concord"}, extra=["-encrypt", key])
    procs.append(p)
    s.join(p.addr)  # serf -> Concord: an encrypted push-pull stream
    alive_in(s.members, "concord-1", 15, "serf to list concord-1")
    alive_in(p.members, "serf-1", 15, "concord-1 to list serf-1")
    # A second Concord member joins through serf (Concord -> serf).
    p2 = Peer(tmp, "concord-2", {"role": "concord"}, join=s.addr, extra=["-encrypt", key])
    procs.append(p2)
    ev = p2.wait_event(lambda e: e["event"] == "joined", 10, "join to finish")
    assert ev["n"] == 1, ev
    alive_in(s.members, "concord-2", 15, "serf to list concord-2")
    alive_in(p.members, "concord-2", 15, "concord-1 to list concord-2")
    # User events both ways (UDP gossip, encrypted).
    s.event("from-serf", "hello-concord")
    ev = p.wait_event(lambda e: e["event"] == "user" and e["name"] == "from-serf", 15,
                      "serf's event at concord-1")
    assert ev["payload"] == "hello-concord"
    p2.send("event from-concord hello-serf")
    wait_for(lambda: "user from-concord hello-serf" in s.events(), 15,
             "concord's event at serf's handler")
    # Still all alive after several probe rounds (pings and acks decrypt both ways).
    time.sleep(4)
    m = s.members()
    assert m["concord-1"]["status"] == "alive" and m["concord-2"]["status"] == "alive", m
    assert "Decrypt packet failed" not in open(s.log_path).read()


def test_different_keys_do_not_join(tmp, procs):
    s = SerfAgent(tmp, "serf-1", {"role": "serf"}, extra=["-encrypt", keygen()])
    procs.append(s)
    p = Peer(tmp, "concord-1", {"role": "concord"}, extra=["-encrypt", keygen()])
    procs.append(p)
    r = subprocess.run([SERF, "join", "-rpc-addr=" + s.rpc, p.addr], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0, r.stdout
    p.send("join " + s.addr)
    ev = p.wait_event(lambda e: e["event"] == "joined", 15, "join to fail")
    assert ev["n"] == 0, ev
    time.sleep(2)
    assert "concord-1" not in s.members()
    assert "serf-1" not in p.members()


def test_plaintext_and_encrypted_do_not_join(tmp, procs):
    s = SerfAgent(tmp, "serf-1", {"role": "serf"})  # no key
    procs.append(s)
    p = Peer(tmp, "concord-1", {"role": "concord"}, extra=["-encrypt", keygen()])
    procs.append(p)
    r = subprocess.run([SERF, "join", "-rpc-addr=" + s.rpc, p.addr], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0, r.stdout
    p.send("join " + s.addr)
    ev = p.wait_event(lambda e: e["event"] == "joined", 15, "join to fail")
    assert ev["n"] == 0, ev
    assert "concord-1" not in s.members()


def test_verify_incoming_off_accepts_plaintext(tmp, procs):
    """The upgrade path: a member with a key but encrypt_verify_incoming off takes a plaintext
    member's traffic, and with verify_outgoing off sends plaintext it can read."""
    s = SerfAgent(tmp, "serf-1", {"role": "serf"})  # no key
    procs.append(s)
    p = Peer(tmp, "concord-1", {"role": "concord"},
             extra=["-encrypt", keygen(), "-verify-incoming", "0", "-verify-outgoing", "0"])
    procs.append(p)
    s.join(p.addr)
    alive_in(s.members, "concord-1", 15, "serf to list concord-1")
    alive_in(p.members, "serf-1", 15, "concord-1 to list serf-1")


def start_agent(procs, key=None, dev=True, node=None, extra=(), server=True):
    args = list(extra)
    if key:
        args += ["-encrypt", key]
    a = Agent(dev=dev, node=node, extra_args=args, server=server)
    procs.append(a)
    return a.start()


def keyring_list(a):
    r = a.cli("keyring", "-list")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "==> Gathering installed encryption keys..."
    assert lines[2] == "dc1 (LAN):"
    return sorted(l.strip() for l in lines[3:])


def test_agents_and_serf_rotate_keys(tmp, procs):
    k1, k2 = keygen(), keygen()
    a = start_agent(procs, k1, node="agent-a")
    # agent-b is a client agent with a data dir (a second bootstrapped server would make a
    # second Raft cluster).
    b = start_agent(procs, k1, dev=False, node="agent-b", extra=["-join", a.serf_addr],
                    server=False)
    alive_in(lambda: agent_members(a), "agent-b", 20, "agent-a to list agent-b")
    s = SerfAgent(tmp, "serf-1", {"role": "serf"}, extra=["-encrypt", k1])
    procs.append(s)
    s.join(a.serf_addr)
    alive_in(lambda: agent_members(b), "serf-1", 20, "agent-b to list serf-1")
    # The first start wrote the keyring file.
    keyring_file = os.path.join(b.data_dir, "serf", "local.keyring")
    assert json.load(open(keyring_file)) == [k1]
    assert oct(os.stat(keyring_file).st_mode & 0o777) == "0o600"

    assert keyring_list(a) == ["%s [3/3]" % k1]
    body, _ = a.get_json("/v1/operator/keyring")
    assert body == [{"WAN": False, "Datacenter": "dc1", "Segment": "", "Keys": {k1: 3},
                     "PrimaryKeys": {k1: 3}, "NumNodes": 3}]

    r = a.cli("keyring", "-install", k2)
    assert r.returncode == 0 and r.stdout == "==> Installing new gossip encryption key...\n", r
    assert keyring_list(a) == sorted(["%s [3/3]" % k1, "%s [3/3]" % k2])
    # As in Consul, a client agent does not run key operations.
    st, _, body = b.request("GET", "/v1/operator/keyring")
    assert st == 500 and body == b"keyring operations must run against a server node", body
    r = subprocess.run([SERF, "keys", "-list", "-rpc-addr=" + s.rpc], capture_output=True,
                       text=True, timeout=20)
    assert k2 in r.stdout and k1 in r.stdout, r.stdout
    r = a.cli("keyring", "-use", k2)
    assert r.returncode == 0, r.stdout + r.stderr
    body, _ = a.get_json("/v1/operator/keyring")
    assert body[0]["PrimaryKeys"] == {k2: 3}
    # The primary cannot go.
    r = a.cli("keyring", "-remove", k2)
    assert r.returncode == 1
    assert "3/3 nodes reported failure" in r.stderr
    assert "Removing the primary key is not allowed" in r.stderr
    r = a.cli("keyring", "-remove", k1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert keyring_list(a) == ["%s [3/3]" % k2]
    assert json.load(open(keyring_file)) == [k2]
    # Gossip goes on under the new key: a serf agent that knows only k2 joins.
    s2 = SerfAgent(tmp, "serf-2", {"role": "serf"}, extra=["-encrypt", k2])
    procs.append(s2)
    s2.join(b.serf_addr)
    alive_in(lambda: agent_members(a), "serf-2", 20, "agent-a to list serf-2")
    m = agent_members(a)
    assert all(m[n]["status"] == "alive" for n in ("agent-a", "agent-b", "serf-1")), m
    # A restart with the old -encrypt key keeps the file's keyring, and says so.
    b.stop()
    b.start()
    alive_in(lambda: agent_members(b), "serf-2", 20, "restarted agent-b to rejoin")
    assert "doesn't include key provided with -encrypt" in b.log()
    assert json.load(open(keyring_file)) == [k2]


def test_keyring_http_and_cli_errors(procs):
    a = start_agent(procs, keygen())
    st, _, body = a.request("POST", "/v1/operator/keyring", "not json")
    assert st == 400 and body.startswith(b"Request decode failed:"), body
    st, _, body = a.request("GET", "/v1/operator/keyring?relay-factor=9")
    assert st == 400
    assert body == b"Invalid relay-factor: Relay factor must be in range: [0, 5]"
    st, _, body = a.request("PUT", "/v1/operator/keyring?local-only=true", '{"Key": "x"}')
    assert st == 400
    st, _, body = a.request("POST", "/v1/operator/keyring", '{"Key": "AAAA"}')
    assert st == 500 and b"key size must be 16, 24 or 32 bytes" in body, body
    st, _, body = a.request("PUT", "/v1/operator/keyring", '{"Key": "%s"}' % keygen())
    assert st == 500 and b"Requested key is not in the keyring" in body, body
    st, _, _ = a.request("PATCH", "/v1/operator/keyring")
    assert st == 405
    r = a.cli("keyring")
    assert r.returncode == 1 and "Usage: concord keyring" in r.stderr
    r = a.cli("keyring", "-list", "-install", "x")
    assert r.returncode == 1 and r.stderr.strip() == "Only a single action is allowed"


def test_keyring_without_encryption(procs):
    a = start_agent(procs)
    st, _, body = a.request("GET", "/v1/operator/keyring")
    assert st == 500 and b"Keyring is empty (encryption not enabled)" in body, body
    r = a.cli("keyring", "-list")
    assert r.returncode == 1


def test_bad_encrypt_key_is_refused():
    for key, msg in (("not base64!", "illegal base64"), ("AAAA", "16, 24 or 32 bytes")):
        r = subprocess.run([BIN, "agent", "-dev", "-encrypt", key], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0
        assert "encrypt has invalid key" in r.stderr + r.stdout and msg in r.stderr + r.stdout


def test_agent_joins_serf_encrypted(tmp, procs):
    key = keygen()
    s = SerfAgent(tmp, "serf-1", {"role": "serf"}, extra=["-encrypt", key])
    procs.append(s)
    a = start_agent(procs, key, node="agent-a", extra=["-join", s.addr])
    alive_in(lambda: agent_members(a), "serf-1", 20, "agent to list serf-1")
    alive_in(s.members, "agent-a", 20, "serf to list agent-a")
    # With another key the start-up join fails, and the agent stops as Consul's does.
    b = Agent(dev=True, node="agent-b", extra_args=["-encrypt", keygen(), "-join", s.addr])
    procs.append(b)
    b.start(wait=False)
    assert b.proc.wait(30) == 1
    assert "agent-b" not in s.members()
