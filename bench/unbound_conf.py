"""Writes an unbound.conf that serves, from local-data only, the records Concord answers for the
nodes bench/catalog_load.py registers, so that dnsperf can ask both the same questions.

  web.service.consul.           A    127.1.x.y             one per instance (N)
  web.service.consul.           SRV  1 1 8080 web-NNNNN.node.dc1.consul.   one per instance (N)
  web-NNNNN.node.dc1.consul.    A    127.1.x.y             the SRV targets (N)
  web3.service.consul.          A / SRV                    the first 3 instances only

Concord answers at most udp_answer_limit=3 instances to a UDP query without EDNS (a random 3 of
them; SRV with the 3 targets' A records in additional); unbound answers a local-data RRset whole
or not at all, so `web3` is the like-for-like name: 3 records, the size of Concord's answer.
TTLs are 0, as Concord's default service_ttl and node_ttl.

Only local data is served: everything outside consul. is refused, no address may be queried
(do-not-query-address 0.0.0.0/0 and ::/0), the iterator has no validator or trust anchor, and
remote control is off. One thread, as Concord answers DNS from one loop.

usage: unbound_conf.py N PORT DIR > DIR/unbound.conf"""
import sys


def node_addr(i):
    return "127.1.%d.%d" % (i // 250, i % 250 + 1)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    n, port, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if not 3 <= n <= 62500 or not 0 < port < 65536:
        sys.exit("N must be 3..62500 and PORT 1..65535")
    out = ["server:",
           "  interface: 127.0.0.1",
           "  port: %d" % port,
           "  do-ip4: yes",
           "  do-ip6: no",
           "  do-udp: yes",
           "  do-tcp: yes",
           "  num-threads: 1",
           "  do-daemonize: no",
           "  use-syslog: no",
           '  logfile: "%s/unbound.log"' % d,
           "  verbosity: 0",
           '  chroot: ""',
           '  username: ""',
           '  directory: "%s"' % d,
           '  pidfile: "%s/unbound.pid"' % d,
           "  access-control: 127.0.0.0/8 allow",
           "  do-not-query-localhost: yes",
           "  do-not-query-address: 0.0.0.0/0",
           "  do-not-query-address: ::/0",
           '  module-config: "iterator"',
           "  hide-identity: yes",
           "  hide-version: yes",
           "  minimal-responses: yes",
           '  local-zone: "." refuse',
           '  local-zone: "consul." static']
    for i in range(n):
        out.append('  local-data: "web.service.consul. 0 IN A %s"' % node_addr(i))
    for i in range(n):
        out.append('  local-data: "web.service.consul. 0 IN SRV 1 1 8080 web-%05d.node.dc1.consul."' % i)
    for i in range(n):
        out.append('  local-data: "web-%05d.node.dc1.consul. 0 IN A %s"' % (i, node_addr(i)))
    for i in range(3):
        out.append('  local-data: "web3.service.consul. 0 IN A %s"' % node_addr(i))
        out.append('  local-data: "web3.service.consul. 0 IN SRV 1 1 8080 web-%05d.node.dc1.consul."' % i)
    out += ["remote-control:", "  control-enable: no", ""]
    sys.stdout.write("\n".join(out))


main()
