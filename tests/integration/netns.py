"""A small private network made of Linux network namespaces, for partition tests.

    root ns --mgmt veth (10.214.N.4i+1/30 <-> .4i+2)--> member ns i      (test -> HTTP API)
    hub ns: bridge br0 <--cluster veth (10.213.N.i/24)--> member ns i  (gossip, Raft, RPC)

Every member namespace has two links: a "cluster" veth into a bridge in a hub namespace, which
carries all agent-to-agent traffic (agents -bind there), and a "mgmt" veth straight to the root
namespace, which only the test uses to reach the agent's HTTP API (agents -client there). Cutting
a member's cluster link in the hub partitions it from the others while the test can still ask it
questions. The cluster subnet exists only inside the namespaces; the root namespace gets one /30
per member on its mgmt veth. Names carry the test's pid so parallel runs do not collide, and
`destroy()` removes everything that was made (deleting a namespace deletes its links).

Needs root and iproute2's `ip netns`; `usable()` says why not otherwise."""
import os
import shutil
import subprocess


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def usable():
    """None if namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2's `ip` is not installed"
    name = "cc-probe%d" % os.getpid()
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return "`ip netns add` does not work here: " + r.stderr.strip()
    try:
        r = _ip("netns", "exec", name, "ip", "link", "add", "v0", "type", "veth", "peer",
                "name", "v1", check=False)
        if r.returncode != 0:
            return "veth links cannot be made here: " + r.stderr.strip()
    finally:
        _ip("netns", "del", name, check=False)
    return None


def _free_subnet(start):
    """A third octet N in 1..250 such that no root-namespace address is in 10.214.N.0/24 (an
    earlier run's, or anyone's), starting from `start`."""
    used = _ip("-4", "-o", "addr", "show").stdout
    for k in range(250):
        n = (start - 1 + k) % 250 + 1
        if (" 10.214.%d." % n) not in used:
            return n
    raise RuntimeError("no free 10.214.N.0/24 in the root namespace")


def sweep_stale():
    """Deletes namespaces left by an earlier run that was killed before its finalizer ran:
    ours are named cc-p<i>-<pid> / cc-phub-<pid>, and that pid is no longer running. (Their
    root-side veths go with them.)"""
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith("cc-p"):
            continue
        head, _, pid = name.rpartition("-")
        if not pid.isdigit() or not (head.startswith("cc-phub") or head[4:].isdigit()):
            continue
        if not os.path.exists("/proc/%s" % pid):
            _ip("netns", "del", name, check=False)


class Net:
    """Up to 60 members. Member i (1-based) is namespace `ns(i)`, cluster address
    `cluster_ip(i)`, mgmt address `mgmt_ip(i)` (the member side; root has the other end)."""

    def __init__(self, n):
        assert 1 <= n <= 60
        pid = os.getpid()
        self.tag = "%d" % pid
        self.n = n
        self.subnet = _free_subnet(pid % 250 + 1)  # third octet of the mgmt /24 in root
        self.hub = "cc-phub-" + self.tag
        self.made = []  # namespaces created, deleted by destroy()
        self.root_links = []  # root-side veth names (gone with their peer's ns, but be sure)

    def ns(self, i):
        return "cc-p%d-%s" % (i, self.tag)

    def cluster_ip(self, i):
        return "10.213.%d.%d" % (self.subnet, i)

    def mgmt_ip(self, i):
        return "10.214.%d.%d" % (self.subnet, 4 * i + 2)

    def _root_mgmt_ip(self, i):
        return "10.214.%d.%d" % (self.subnet, 4 * i + 1)

    def _hub_link(self, i):
        return "h%d" % i

    def create(self):
        """Builds the namespaces and links; on any failure destroys what was made and raises."""
        sweep_stale()
        try:
            self._add_ns(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i in range(1, self.n + 1):
                ns = self.ns(i)
                self._add_ns(ns)
                # cluster link: eth0 in the member, h<i> on the hub's bridge
                _ip("-n", self.hub, "link", "add", self._hub_link(i), "type", "veth", "peer",
                    "name", "eth0", "netns", ns)
                _ip("-n", self.hub, "link", "set", self._hub_link(i), "master", "br0")
                _ip("-n", self.hub, "link", "set", self._hub_link(i), "up")
                _ip("-n", ns, "addr", "add", self.cluster_ip(i) + "/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                # mgmt link: a /30 between the root namespace and the member
                root_link = "ccm%d-%s" % (i, self.tag)
                _ip("link", "add", root_link, "type", "veth", "peer", "name", "mgmt0",
                    "netns", ns)
                self.root_links.append(root_link)
                _ip("addr", "add", self._root_mgmt_ip(i) + "/30", "dev", root_link)
                _ip("link", "set", root_link, "up")
                _ip("-n", ns, "addr", "add", self.mgmt_ip(i) + "/30", "dev", "mgmt0")
                _ip("-n", ns, "link", "set", "mgmt0", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_ns(self, name):
        _ip("netns", "add", name)
        self.made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def isolate(self, i):
        """Cuts member i's cluster link at the hub: it reaches no other member, and none it."""
        _ip("-n", self.hub, "link", "set", self._hub_link(i), "down")

    def heal(self, i):
        _ip("-n", self.hub, "link", "set", self._hub_link(i), "up")

    def destroy(self):
        """Deletes every namespace and root link this object made; safe to call twice."""
        errors = []
        for link in self.root_links:
            r = _ip("link", "del", link, check=False)
            if r.returncode != 0 and "Cannot find" not in r.stderr:
                errors.append(r.stderr.strip())
        self.root_links = []
        for name in reversed(self.made):
            r = _ip("netns", "del", name, check=False)
            if r.returncode != 0:
                errors.append(r.stderr.strip())
        self.made = []
        if errors:
            raise RuntimeError("netns cleanup: " + "; ".join(errors))

    def leftovers(self):
        """Names of this run's namespaces that still exist (for the test's own check)."""
        r = _ip("netns", "list", check=False)
        return [line.split()[0] for line in r.stdout.splitlines()
                if line.split() and line.split()[0].endswith("-" + self.tag)
                and line.startswith("cc-p")]
