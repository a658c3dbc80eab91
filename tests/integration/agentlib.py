"""Start and stop real `concord agent` processes for integration tests.

Each agent gets its own free ports on a loopback address and its own data directory, and its
log goes to a file that is printed when a test fails. Nothing here sends traffic anywhere but
127.0.0.0/8."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CONCORD_BIN", os.path.join(ROOT, "build", "concord"))


def free_port(ip="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port that is free for both TCP and UDP on ip right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((ip, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class Agent:
    """One agent process. `dev=True` runs `-dev` (in-memory); otherwise a single server with
    -bootstrap-expect=1 and a persistent -data-dir, so it can be killed and restarted.
    `netns` runs it inside that network namespace (`ip netns exec`, which execs the agent, so
    proc is the agent itself); then `ip` (-bind) and `client_ip` (-client, the HTTP API the test
    uses) are addresses in that namespace, and the ports are Consul's defaults since the
    namespace's port space is the agent's own."""

    def __init__(self, dev=True, ip="127.0.0.1", node=None, extra_args=None, data_dir=None,
                 server=True, expect=1, netns=None, client_ip=None):
        self.bin = BIN
        self.ip = ip
        self.dev = dev
        self.server = server
        self.expect = expect
        self.node = node or "node-%d" % os.getpid()
        self.extra_args = list(extra_args or [])
        self.netns = netns
        self.client_ip = client_ip or ip
        if netns:
            (self.http_port, self.dns_port, self.server_port, self.serf_port,
             self.serf_wan_port) = 8500, 8600, 8300, 8301, 8302
        else:
            # five distinct ports (free_port alone may hand out a port it just gave)
            ports = []
            while len(ports) < 5:
                p = free_port(ip)
                if p not in ports:
                    ports.append(p)
            (self.http_port, self.dns_port, self.server_port, self.serf_port,
             self.serf_wan_port) = ports
        self.http_addr = "%s:%d" % (self.client_ip, self.http_port)
        self.url = "http://" + self.http_addr
        self.data_dir = data_dir or (None if dev else tempfile.mkdtemp(prefix="concord-test-"))
        self.log_path = tempfile.mktemp(prefix="concord-log-", suffix=".txt")
        self.proc = None

    def args(self):
        a = [self.bin, "agent", "-node", self.node, "-bind", self.ip, "-client", self.client_ip,
             "-http-port", str(self.http_port), "-dns-port", str(self.dns_port),
             "-server-port", str(self.server_port), "-serf-lan-port", str(self.serf_port),
             "-serf-wan-port", str(self.serf_wan_port),
             "-log-level", "debug"]
        if self.dev:
            a.append("-dev")
        elif self.server:
            a += ["-server", "-bootstrap-expect=%d" % self.expect, "-data-dir", self.data_dir]
        else:
            a += ["-data-dir", self.data_dir]
        a += self.extra_args
        return ["ip", "netns", "exec", self.netns] + a if self.netns else a

    def start(self, wait=True):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            if self.server:
                self.wait_leader()
            else:
                self.wait_http()
        return self

    def wait_http(self, timeout=20.0):
        """A client agent has no leader of its own: wait until its HTTP API answers."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                urllib.request.urlopen(self.url + "/v1/agent/self", timeout=1).read()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise RuntimeError("agent HTTP never came up:\n" + self.log())

    @property
    def serf_addr(self):
        return "%s:%d" % (self.ip, self.serf_port)

    def wait_leader(self, timeout=20.0):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.url + "/v1/status/leader", timeout=1) as r:
                    leader = json.loads(r.read())
                    if leader:
                        return leader
            except (OSError, urllib.error.URLError, ValueError) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("agent never got a leader (%s):\n%s" % (last, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-20000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the agent; returns its exit code. Fails the test if it hangs."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("agent did not stop on %s:\n%s" % (sig, self.log()))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    # -- HTTP helpers (raw, so tests see exact status codes, headers and bodies) --
    def request(self, method, path, body=None, headers=None, timeout=30):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def get_json(self, path):
        status, headers, body = self.request("GET", path)
        assert status == 200, (status, body)
        return json.loads(body), headers

    def cli(self, *args, env=None, input=None, timeout=30):
        """Runs `concord <args>` against this agent; returns CompletedProcess (text)."""
        e = dict(os.environ)
        e["CONSUL_HTTP_ADDR"] = self.http_addr
        e.pop("CONSUL_HTTP_TOKEN", None)
        if env:
            e.update(env)
        return subprocess.run([self.bin] + list(args), env=e, input=input, capture_output=True,
                              text=True, timeout=timeout)
