"""Registers or deregisters catalog nodes, each with one instance of service `web` and a passing
check, through PUT /v1/catalog/register and /v1/catalog/deregister, and prints the throughput.

Node i (0-based) is `web-NNNNN` at 127.1.<i // 250>.<i % 250 + 1>, service port 8080: the same
names and addresses that bench/unbound_conf.py writes as unbound local-data, so both servers
answer the same records.

Load: CONNS keep-alive connections, each with one request in flight (no pipelining: what many
independent clients do), driven from one thread with selectors. Requests are encoded before
the clock starts; responses are parsed only as far as status, Content-Length and body. Python's
http.client with one thread per connection was the bottleneck here (the server sat below half a
core), which is why this is not http.client.

usage: catalog_load.py HOST PORT register|deregister FIRST COUNT [CONNS]
prints: {"op": ..., "count": N, "conns": C, "seconds": S, "per_s": R, "errors": E,
         "client_cpu_pct": this loader's own CPU use, to tell when it, not the server, limits}"""
import json
import selectors
import socket
import sys
import time

MAX_NODES = 62500  # 127.1.0.1 .. 127.1.249.250
MAX_RESPONSE = 1 << 20


def node_name(i):
    return "web-%05d" % i


def node_addr(i):
    return "127.1.%d.%d" % (i // 250, i % 250 + 1)


def request(host, op, i):
    if op == "deregister":
        body = {"Node": node_name(i)}
    else:
        body = {"Node": node_name(i), "Address": node_addr(i),
                "Service": {"ID": "web", "Service": "web", "Port": 8080, "Tags": ["v1"]},
                "Check": {"CheckID": "service:web", "Name": "web", "Status": "passing",
                          "ServiceID": "web"}}
    data = json.dumps(body).encode()
    head = ("PUT /v1/catalog/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (op, host, len(data))).encode()
    return head + data


class Conn:
    """One keep-alive connection; `buf` holds the bytes of the response being read."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.index = None

    def response(self):
        """(status, body) once a whole response is in buf, else None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = 0
        lines = self.buf[:end].split(b"\r\n")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return None
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        return int(lines[0].split()[1]), body


def main():
    if len(sys.argv) < 6 or sys.argv[3] not in ("register", "deregister"):
        sys.exit(__doc__)
    host, port, op = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    first, count = int(sys.argv[4]), int(sys.argv[5])
    nconns = int(sys.argv[6]) if len(sys.argv) > 6 else 32
    if first < 0 or count <= 0 or first + count > MAX_NODES or not 0 < nconns <= 1024:
        sys.exit("bad range: nodes 0..%d, 1..1024 connections" % (MAX_NODES - 1))
    reqs = [(i, request(host, op, i)) for i in range(first, first + count)]
    reqs.reverse()  # pop() from the end hands them out in order
    sel = selectors.DefaultSelector()
    conns = [Conn(host, port) for _ in range(min(nconns, count))]
    done = errors = 0

    def send_next(c):
        if not reqs:
            sel.unregister(c.sock)
            c.sock.close()
            return
        c.index, data = reqs.pop()
        c.sock.sendall(data)  # small; the socket buffer takes it whole

    t0, c0 = time.perf_counter(), time.process_time()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
        send_next(c)
    while done < count:
        events = sel.select(timeout=30)
        if not events:
            sys.exit("%s: no answer for 30 s (%d of %d done)" % (op, done, count))
        for key, _ in events:
            c = key.data
            chunk = c.sock.recv(65536)
            if not chunk:
                sys.exit("%s: the server closed a connection (%d of %d done)" % (op, done, count))
            c.buf += chunk
            if len(c.buf) > MAX_RESPONSE:
                sys.exit("%s: response over %d bytes" % (op, MAX_RESPONSE))
            r = c.response()
            if r is None:
                continue
            status, body = r
            if status != 200 or body.strip() != b"true":
                if errors < 3:
                    sys.stderr.write("%s %s: %d %r\n" % (op, node_name(c.index), status, body[:200]))
                errors += 1
            done += 1
            send_next(c)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    for c in conns:
        if c.sock.fileno() >= 0:
            c.sock.close()
    print(json.dumps({"op": op, "count": count, "conns": len(conns), "seconds": round(secs, 3),
                      "per_s": round(count / secs), "errors": errors,
                      "client_cpu_pct": round(100 * cpu / secs)}))


main()
