"""Parks N blocking queries on one key of a Concord agent, wakes them with one PUT, and reports
the time until every one has answered and the agent's RSS per parked query.
usage: parked.py HOST PORT PID N"""
import json
import selectors
import socket
import sys
import time
import urllib.request


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    host, port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    base = "http://%s:%d" % (host, port)
    urllib.request.urlopen(urllib.request.Request(base + "/v1/kv/parked/k", b"0", method="PUT")).read()
    with urllib.request.urlopen(base + "/v1/kv/parked/k") as r:
        index = int(r.headers["X-Consul-Index"])
    rss0 = rss_kb(pid)
    sel = selectors.DefaultSelector()
    req = ("GET /v1/kv/parked/k?index=%d&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n" % index).encode()
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    time.sleep(2.0)  # let the agent park them all
    rss1 = rss_kb(pid)
    t0 = time.time()
    urllib.request.urlopen(urllib.request.Request(base + "/v1/kv/parked/k", b"1", method="PUT")).read()
    done = 0
    answered = set()
    while done < n and time.time() - t0 < 60:
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(65536)
            if key.fileobj not in answered and (data.startswith(b"HTTP/1.1 200") or not data):
                answered.add(key.fileobj)
                done += 1
                sel.unregister(key.fileobj)
    elapsed = time.time() - t0
    for s in socks:
        s.close()
    print(json.dumps({"parked": n, "answered": done, "wake_all_s": round(elapsed, 3),
                      "rss_before_kb": rss0, "rss_parked_kb": rss1,
                      "bytes_per_parked": round((rss1 - rss0) * 1024 / n)}))


main()
