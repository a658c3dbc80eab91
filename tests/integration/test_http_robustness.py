"""The HTTP server under hostile or unusual clients, over raw sockets against a real agent:
malformed requests, oversize headers, pipelining, chunked bodies, slow and vanishing clients.
After each, the agent must still answer normally."""
import socket
import time


def raw(agent, data, timeout=5.0, shut=False):
    host, port = agent.http_addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def healthy(agent):
    status, _, body = agent.request("GET", "/v1/status/leader")
    return status == 200 and body.startswith(b'"')


def test_malformed_request_line(agent):
    # Go answers 400 to a request line without a path; llhttp calls an unknown method 501.
    out = raw(agent, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") or out.startswith(b"HTTP/1.1 501")
    out = raw(agent, b"GET /v1/status/leader HTTP/1.1\r\nBad Header Line\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert healthy(agent)


def test_oversize_headers(agent):
    out = raw(agent, b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431") or out.startswith(b"HTTP/1.1 400") or out == b""
    assert healthy(agent)


def test_pipelined_requests_answered_in_order(agent):
    agent.request("PUT", "/v1/kv/pipe/a", "A")
    agent.request("PUT", "/v1/kv/pipe/b", "B")
    reqs = (b"GET /v1/kv/pipe/a?raw HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /v1/kv/pipe/c HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nC"
            b"GET /v1/kv/pipe/b?raw HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/kv/pipe/c?raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(agent, reqs)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:4] for part in out.split(b"HTTP/1.1 ")[1:]]
    assert out.count(b"HTTP/1.1 200") == 4
    assert [b[:1] for b in bodies] == [b"A", b"t", b"B", b"C"]


def test_chunked_body(agent):
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    out = raw(agent, b"PUT /v1/kv/chunked/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 200")
    assert agent.request("GET", "/v1/kv/chunked/k?raw")[2] == b"hello world"


def test_bad_chunk(agent):
    out = raw(agent, b"PUT /v1/kv/chunked/bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert agent.request("GET", "/v1/kv/chunked/bad")[0] == 404


def test_oversize_content_length_rejected_early(agent):
    out = raw(agent, b"PUT /v1/kv/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc")
    assert out.startswith(b"HTTP/1.1 413")
    assert healthy(agent)


def test_keepalive_many_requests_one_connection(agent):
    host, port = agent.http_addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    for i in range(50):
        s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b'"'):
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
    s.close()


def test_http10_closes(agent):
    out = raw(agent, b"GET /v1/status/leader HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.")
    assert b" 200 " in out.split(b"\r\n")[0]


def test_slow_client_and_half_requests(agent):
    host, port = agent.http_addr.split(":")
    socks = []
    for _ in range(50):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    # While 50 clients dribble, others are served normally.
    assert healthy(agent)
    for s in socks:
        s.close()
    assert healthy(agent)


def test_garbage_bytes(agent):
    import random
    rnd = random.Random(1234)
    for _ in range(30):
        blob = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 2000)))
        raw(agent, blob, timeout=1.0, shut=True)
    assert healthy(agent)


def test_percent_decoded_key(agent):
    assert agent.request("PUT", "/v1/kv/pct/a%20b", "v")[0] == 200
    keys = agent.get_json("/v1/kv/pct/?keys")[0]
    assert keys == ["pct/a b"]


def test_path_traversal_rejected(agent):
    out = raw(agent, b"GET /v1/kv/../agent/self HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert not out.startswith(b"HTTP/1.1 200")
