#!/usr/bin/python3
"""Gossip benchmark driver for bench/cluster.sh: one pool of N agents of one implementation
(Concord client agents or Debian's serf agents), each on its own loopback address, measured for

  join convergence:   time from issuing the joins (every member i > 0 joins member 0, issued
                      concurrently) until every observer lists all N members alive;
  steady state:       bytes and packets sent per node per second, CPU and RSS per node, over a
                      quiet window with no polling at all (see --isolated), opened --settle
                      seconds after convergence, with a breakdown
                      by message type from a packet socket on lo;
  failure detection:  time from kill -9 of one member until every observer marks it failed.

usage: gossip.py IMPL N BIN WORKDIR [--isolated] [--stagger S] [--settle S] [--steady S]
                 [--serf-tags consul|none] [--kills K]
  IMPL concord|serf; BIN the concord or serf binary.
  --isolated: the caller runs us in a network namespace of our own (ip netns exec), so its lo
  counters (/proc/net/dev: IP packets, headers included, each counted once as sent) see only
  this pool's traffic: that is what the byte figures are. Not isolated, they are skipped.
  --serf-tags consul (default) gives each serf agent the tags a Consul client agent gossips, so
  that members are the same size in both pools; --kills K members are killed one at a time
  (the median detection time is reported).

Everything it starts is killed on exit (also on SIGTERM/SIGINT). Nothing leaves 127.0.0.0/8.
The last line printed is "RESULT key=value ...", parsed by cluster.sh."""
import argparse
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

procs = []


def log(msg):
    print(msg, flush=True)


# ---- minimal msgpack, enough for serf's IPC (maps, strings, ints, arrays, bin, bools) ----

def mp_enc(o, out):
    if o is None:
        out.append(0xc0)
    elif o is True or o is False:
        out.append(0xc3 if o else 0xc2)
    elif isinstance(o, int):
        if 0 <= o < 128:
            out.append(o)
        elif 0 <= o < 1 << 32:
            out += b"\xce" + struct.pack(">I", o)
        else:
            out += b"\xd3" + struct.pack(">q", o)
    elif isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            out.append(0xa0 | len(b))
        else:
            out += b"\xda" + struct.pack(">H", len(b))
        out += b
    elif isinstance(o, (list, tuple)):
        assert len(o) < 16
        out.append(0x90 | len(o))
        for x in o:
            mp_enc(x, out)
    elif isinstance(o, dict):
        assert len(o) < 16
        out.append(0x80 | len(o))
        for k, v in o.items():
            mp_enc(k, out)
            mp_enc(v, out)
    else:
        raise TypeError(type(o))
    return out


class Reader:
    """Decodes msgpack values from a socket, buffering."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def take(self, n):
        while len(self.buf) - self.pos < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("serf rpc: connection closed")
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def value(self):
        t = self.take(1)[0]
        if t < 0x80:
            return t
        if t >= 0xe0:
            return t - 256
        if 0x80 <= t <= 0x8f:
            return self.map(t & 0x0f)
        if 0x90 <= t <= 0x9f:
            return [self.value() for _ in range(t & 0x0f)]
        if 0xa0 <= t <= 0xbf:
            return self.take(t & 0x1f).decode(errors="replace")
        simple = {0xc0: None, 0xc2: False, 0xc3: True}
        if t in simple:
            return simple[t]
        if t in (0xc4, 0xc5, 0xc6):
            return self.take(self.u({0xc4: ">B", 0xc5: ">H", 0xc6: ">I"}[t]))
        if t in (0xd9, 0xda, 0xdb):
            return self.take(self.u({0xd9: ">B", 0xda: ">H", 0xdb: ">I"}[t])).decode(errors="replace")
        ints = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q",
                0xd0: ">b", 0xd1: ">h", 0xd2: ">i", 0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
        if t in ints:
            return self.u(ints[t])
        if t in (0xdc, 0xdd):
            return [self.value() for _ in range(self.u(">H" if t == 0xdc else ">I"))]
        if t in (0xde, 0xdf):
            return self.map(self.u(">H" if t == 0xde else ">I"))
        raise ValueError("msgpack type 0x%02x not handled" % t)

    def map(self, n):
        return {self.value(): self.value() for _ in range(n)}


class SerfRPC:
    """One IPC connection to a serf agent (handshake done)."""

    def __init__(self, addr, timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.rd = Reader(self.sock)
        self.seq = 0
        self.call("handshake", {"Version": 1}, body=False)

    def call(self, command, req=None, body=True):
        self.seq += 1
        out = mp_enc({"Command": command, "Seq": self.seq}, bytearray())
        if req is not None:
            mp_enc(req, out)
        self.sock.sendall(out)
        hdr = self.rd.value()
        if hdr.get("Error"):
            raise OSError("serf rpc %s: %s" % (command, hdr["Error"]))
        return self.rd.value() if body else None

    def close(self):
        self.sock.close()


# ---- the two implementations ----

STATUS_ALIVE, STATUS_FAILED = "alive", "failed"
CONSUL_CLIENT_TAGS = {"acls": "0", "build": "1.17.0:concord-0.1.0", "dc": "dc1", "role": "node",
                      "segment": "", "vsn": "2", "vsn_max": "3", "vsn_min": "2"}
CONSUL_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


class Node:
    def __init__(self, impl, i, binary, work, serf_tags):
        self.impl, self.i = impl, i
        self.name = "g%04d" % i
        self.ip = "127.1.%d.%d" % (i // 250, i % 250 + 1)
        self.gossip_port = pick_port(self.ip)
        self.ctl_port = pick_port(self.ip)  # concord HTTP or serf RPC
        self.gossip_addr = "%s:%d" % (self.ip, self.gossip_port)
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        if impl == "concord":
            self.argv = [binary, "agent", "-node", self.name, "-data-dir", self.dir, "-bind", self.ip,
                         "-client", self.ip, "-serf-lan-port", str(self.gossip_port),
                         "-http-port", str(self.ctl_port), "-dns-port", "-1",
                         "-server-port", str(pick_port(self.ip)), "-log-level", "warn"]
        else:
            self.argv = [binary, "agent", "-node", self.name, "-bind", self.gossip_addr,
                         "-rpc-addr", "%s:%d" % (self.ip, self.ctl_port), "-log-level", "warn"]
            if serf_tags:
                # The tags a Consul (and Concord) client agent gossips, so that both pools
                # carry members of the same size; the id is unique per node as Consul's.
                tags = dict(CONSUL_CLIENT_TAGS, id=str(uuid.uuid4()))
                for k, v in sorted(tags.items()):
                    self.argv += ["-tag", "%s=%s" % (k, v)]
        self.proc = None
        self.rpc = None
        self.http = None

    def start(self):
        logf = open(os.path.join(self.dir, "log.txt"), "ab")
        self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        procs.append(self.proc)

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "log.txt"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def _http(self, method, path):
        for attempt in range(2):
            if self.http is None:
                self.http = http.client.HTTPConnection(self.ip, self.ctl_port, timeout=10)
            try:
                self.http.request(method, path)
                r = self.http.getresponse()
                body = r.read()
                if r.status != 200:
                    raise OSError("%s %s: %d %s" % (method, path, r.status, body[:200]))
                return body
            except (OSError, http.client.HTTPException):
                self.http.close()
                self.http = None
                if attempt:
                    raise

    def ready(self):
        try:
            if self.impl == "concord":
                self._http("GET", "/v1/agent/self")
            else:
                if self.rpc is None:
                    self.rpc = SerfRPC("%s:%d" % (self.ip, self.ctl_port), timeout=2)
            return True
        except (OSError, ValueError):
            if self.rpc:
                self.rpc.close()
            self.rpc = None
            return False

    def join(self, addr):
        if self.impl == "concord":
            self._http("PUT", "/v1/agent/join/" + addr)
        else:
            self.rpc.call("join", {"Existing": [addr], "Replay": False})

    def members(self):
        """{name: status string} as this node sees the pool."""
        if self.impl == "concord":
            ms = json.loads(self._http("GET", "/v1/agent/members"))
            return {m["Name"]: CONSUL_STATUS.get(m["Status"], str(m["Status"])) for m in ms}
        ms = self.rpc.call("members")["Members"]
        return {m["Name"]: m["Status"] for m in ms}


def pick_port(ip):
    """A port free for TCP and UDP on ip now (both implementations gossip over both)."""
    for _ in range(100):
        with socket.socket() as t:
            t.bind((ip, 0))
            p = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((ip, p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port on " + ip)


def lo_counters():
    """(tx bytes, tx packets) of lo in our network namespace."""
    with open("/proc/net/dev") as f:
        for line in f:
            if line.strip().startswith("lo:"):
                v = line.split(":", 1)[1].split()
                return int(v[8]), int(v[9])
    raise RuntimeError("no lo in /proc/net/dev")


# memberlist message types (net.go), for the sniffer's breakdown.
ML_TYPES = {0: "ping", 1: "indirect-ping", 2: "ack", 3: "suspect", 4: "alive", 5: "dead",
            6: "push-pull", 7: "compound", 8: "user", 9: "compress", 11: "nack"}


class Sniffer(threading.Thread):
    """Counts the bytes of every packet sent on lo (in our own namespace: only the pool's), by
    protocol and, for UDP, by memberlist message type (after a CRC wrapper). Bytes are IP
    packets, as lo's /proc/net/dev counters count them (the 14-byte Ethernet header that the
    packet socket shows is left out): payload + 20 IP + 8 UDP or 20-32 TCP header bytes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.5)
        self.by = {}
        self.running = True

    def run(self):
        while self.running:
            try:
                pkt, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            if addr[2] != socket.PACKET_OUTGOING or len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
                continue
            ihl = (pkt[14] & 0x0f) * 4
            proto = pkt[23]
            if proto == 6:
                off = 14 + ihl + (pkt[14 + ihl + 12] >> 4) * 4
                key = "tcp (push-pull, join)" if len(pkt) > off else "tcp (no payload)"
            elif proto == 17:
                payload = pkt[14 + ihl + 8:]
                t = payload[0] if payload else -1
                if t == 12 and len(payload) > 5:  # hasCrc: type, 4 bytes CRC, message
                    t = payload[5]
                key = "udp " + ML_TYPES.get(t, "type %d" % t)
            else:
                key = "other"
            n, b = self.by.get(key, (0, 0))
            self.by[key] = (n + 1, b + len(pkt) - 14)

    def stop(self):
        self.running = False
        self.join(timeout=2)
        self.sock.close()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def poll_until(observers, pred, timeout, interval=0.1):
    """Seconds until pred(members) holds on every observer (each timed when it first holds);
    None on timeout."""
    t0 = time.monotonic()
    done = {}
    while time.monotonic() - t0 < timeout:
        for o in observers:
            if o.i in done:
                continue
            try:
                if pred(o.members()):
                    done[o.i] = time.monotonic() - t0
            except (OSError, ValueError, KeyError):
                pass
        if len(done) == len(observers):
            return max(done.values()), done
        time.sleep(interval)
    return None, done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=["concord", "serf"])
    ap.add_argument("n", type=int)
    ap.add_argument("binary")
    ap.add_argument("work")
    ap.add_argument("--isolated", action="store_true")
    ap.add_argument("--stagger", type=float, default=0.03)
    ap.add_argument("--steady", type=float, default=90.0)
    ap.add_argument("--settle", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--serf-tags", choices=["consul", "none"], default="consul")
    ap.add_argument("--kills", type=int, default=3)
    a = ap.parse_args()
    n = a.n
    if n < 5 or n > 5000:
        sys.exit("gossip.py: N must be 5..5000")

    def stop(*_):
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    nodes = [Node(a.impl, i, a.binary, a.work, a.serf_tags == "consul") for i in range(n)]
    # Observers: the seed, a few spread through the pool; the victim is none of them.
    obs_idx = sorted({0, 1, n // 3, (2 * n) // 3, n - 1})
    observers = [nodes[i] for i in obs_idx]
    victims = [nodes[i] for i in range(n // 4, n) if i not in obs_idx][:max(1, a.kills)]

    t_start = time.monotonic()
    for nd in nodes:
        nd.start()
        time.sleep(a.stagger)
    pending = list(nodes)
    deadline = time.monotonic() + 60 + n * 0.2
    while pending and time.monotonic() < deadline:
        for nd in list(pending):
            if nd.proc.poll() is not None:
                sys.exit("%s exited (%s):\n%s" % (nd.name, nd.proc.returncode, nd.log_tail()))
            if nd.ready():
                pending.remove(nd)
        time.sleep(0.05)
    if pending:
        sys.exit("%d agents never answered, e.g. %s:\n%s" % (len(pending), pending[0].name,
                                                            pending[0].log_tail()))
    log("  %d %s agents up in %.1f s (started %.0f ms apart)" %
        (n, a.impl, time.monotonic() - t_start, a.stagger * 1000))
    time.sleep(2)

    # Joins: every member but the seed joins the seed, issued by 16 threads at once.
    seed = nodes[0].gossip_addr
    errors = []
    t0 = time.monotonic()
    todo = list(nodes[1:])
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                nd = todo.pop()
            try:
                nd.join(seed)
            except (OSError, ValueError) as e:
                errors.append("%s: %s" % (nd.name, e))
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_joined = time.monotonic() - t0
    if errors:
        log("  join errors: %d, e.g. %s" % (len(errors), errors[0]))
    names = {nd.name for nd in nodes}

    def all_alive(ms):
        return all(ms.get(x) == STATUS_ALIVE for x in names)
    conv, _ = poll_until(observers, all_alive, a.timeout)
    conv = None if conv is None else conv + t_joined
    log("  joins issued in %.2f s; all %d alive on %d observers after %s s" %
        (t_joined, n, len(observers), "%.2f" % conv if conv is not None else "TIMEOUT"))

    # Steady state: nothing polls during the window. It opens only once the joins' own
    # broadcasts have run out of retransmits (with 100 members, still flowing about 15 s after
    # the joins), and should span one push-pull interval, which grows past 32 members (90 s at
    # 100), or it measures the phase of the push-pull timers rather than their rate.
    time.sleep(a.settle)
    pids = [nd.proc.pid for nd in nodes]
    sniff = None
    if a.isolated:
        try:
            sniff = Sniffer()
            sniff.start()
        except OSError as e:
            log("  (no packet socket for the breakdown: %s)" % e)
            sniff = None
    b0, p0 = lo_counters()
    c0 = sum(cpu_ticks(p) for p in pids)
    w0 = time.monotonic()
    time.sleep(a.steady)
    b1, p1 = lo_counters()
    c1 = sum(cpu_ticks(p) for p in pids)
    secs = time.monotonic() - w0
    if sniff:
        sniff.stop()
        for key, (cnt, byt) in sorted(sniff.by.items(), key=lambda kv: -kv[1][1]):
            log("    %-24s %8.1f bytes/s %6.2f packets/s per node, %5.0f bytes each" %
                (key, byt / n / secs, cnt / n / secs, byt / cnt))
    rss = sum(rss_kb(p) for p in pids) / n
    bps = (b1 - b0) / n / secs if a.isolated else -1
    pps = (p1 - p0) / n / secs if a.isolated else -1
    cpu = (c1 - c0) * 100.0 / os.sysconf("SC_CLK_TCK") / secs / n
    if a.isolated:
        log("  steady %.0f s: %.0f bytes/s and %.1f packets/s sent per node (lo of the pool's netns)"
            % (secs, bps, pps))
    log("  steady: %.3f%% of a core per node, RSS %.0f KB per node" % (cpu, rss))

    # Failure detection: kill -9 one member at a time, wait until every observer says failed.
    fails, firsts = [], []
    for victim in victims:
        victim.proc.kill()
        conv_fail, per_obs = poll_until(observers,
                                        lambda ms: ms.get(victim.name) == STATUS_FAILED, a.timeout)
        log("  kill -9 %s: failed on all %d observers after %s s (first %s s)" %
            (victim.name, len(observers),
             "%.2f" % conv_fail if conv_fail is not None else "TIMEOUT",
             "%.2f" % min(per_obs.values()) if per_obs else "-"))
        fails.append(conv_fail if conv_fail is not None else float("nan"))
        firsts.append(min(per_obs.values()) if per_obs else float("nan"))
        time.sleep(2)

    def median(v):
        v = sorted(v)
        return v[len(v) // 2]
    print("RESULT impl=%s n=%d join_s=%s fail_s=%.2f fail_first_s=%.2f bytes=%.0f pkts=%.1f "
          "cpu=%.3f rss_kb=%.0f join_errors=%d" %
          (a.impl, n, "%.2f" % conv if conv is not None else "nan", median(fails),
           median(firsts), bps, pps, cpu, rss, len(errors)), flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
