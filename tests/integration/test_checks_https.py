"""HTTPS health checks and an https watch handler, against Python ssl servers whose
certificates are made at test time with the openssl CLI:

- a CA the agent trusts (through SSL_CERT_FILE, which OpenSSL's default store honours as Go's
  crypto/x509 does on Linux) and a server certificate it signed for localhost / 127.0.0.1;
- a self-signed certificate nobody trusts.

Checks go passing and critical with Go's error texts; TLSSkipVerify and TLSServerName change
the outcome; a relative redirect stays on https; a plain HTTP server behind an https URL is
named as such; a watch's http handler posts to an https URL with tls_skip_verify."""
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from agentlib import Agent


def wait_for(fn, timeout=15.0, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("condition not met in %.1fs (last: %r)" % (timeout, last))


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    p = lambda n: str(d / n)  # noqa: E731
    # The CA the agent trusts, and a server certificate it signs.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=Test CA")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p("srv.key"), "-out", p("srv.csr"), "-subj", "/CN=localhost")
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
            "-CAcreateserial", "-out", p("srv.pem"), "-days", "2", "-extfile", p("ext.cnf"))
    # A self-signed one for the same names, that nothing trusts.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p("self.key"), "-out", p("self.pem"), "-days", "2", "-subj",
            "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return p


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"secure fine"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", 0))
        self.server.posts.append((self.path, self.rfile.read(n)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def _serve(cert=None, key=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.posts = []
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def servers(certs):
    s = {"trusted": _serve(certs("srv.pem"), certs("srv.key")),
         "selfsigned": _serve(certs("self.pem"), certs("self.key")),
         "plain": _serve()}
    yield s
    for srv in s.values():
        srv.shutdown()
        srv.server_close()


def _start_agent(request, certs, **kw):
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = certs("ca.pem")  # inherited by the agent only
    try:
        a = Agent(**kw)
        a.start()
    finally:
        if old is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = old

    def fin():
        try:
            code = a.stop()
        finally:
            a.kill()
        assert code == 0, "agent exited with %s on SIGTERM:\n%s" % (code, a.log())
    request.addfinalizer(fin)
    return a


@pytest.fixture(scope="module")
def agent(request, certs):
    return _start_agent(request, certs, node="https-checks")


def url(srv, path="/health", host="127.0.0.1"):
    return "https://%s:%d%s" % (host, srv.server_address[1], path)


def register(a, body):
    status, _, out = a.request("PUT", "/v1/agent/check/register", json.dumps(body))
    assert status == 200, out


def check(a, cid):
    return a.get_json("/v1/agent/checks")[0].get(cid) or {}


def settled(a, cid):
    """The check once it has run (its output no longer empty)."""
    return wait_for(lambda: check(a, cid).get("Output") and check(a, cid))


def test_trusted_ca_passes(agent, servers):
    u = url(servers["trusted"])
    register(agent, {"CheckID": "ok", "Name": "ok", "HTTP": u, "Interval": "1s"})
    ch = settled(agent, "ok")
    assert ch["Status"] == "passing", ch
    assert ch["Output"] == "HTTP GET %s: 200 OK Output: secure fine" % u


def test_trusted_by_dns_name(agent, servers):
    u = url(servers["trusted"], host="localhost")
    register(agent, {"CheckID": "dns", "Name": "dns", "HTTP": u, "Interval": "1s"})
    ch = settled(agent, "dns")
    assert ch["Status"] == "passing", ch


def test_unknown_authority_is_critical(agent, servers):
    u = url(servers["selfsigned"])
    register(agent, {"CheckID": "self", "Name": "self", "HTTP": u, "Interval": "1s"})
    ch = settled(agent, "self")
    assert ch["Status"] == "critical"
    assert ch["Output"] == ('Get "%s": tls: failed to verify certificate: x509: certificate '
                            'signed by unknown authority' % u)


def test_skip_verify_passes(agent, servers):
    u = url(servers["selfsigned"])
    register(agent, {"CheckID": "skip", "Name": "skip", "HTTP": u, "Interval": "1s",
                     "TLSSkipVerify": True})
    ch = settled(agent, "skip")
    assert ch["Status"] == "passing", ch
    assert ch["Output"].endswith("200 OK Output: secure fine")


def test_server_name_mismatch_is_critical(agent, servers):
    u = url(servers["trusted"])
    register(agent, {"CheckID": "sni-bad", "Name": "sni-bad", "HTTP": u, "Interval": "1s",
                     "TLSServerName": "wrong.example"})
    ch = settled(agent, "sni-bad")
    assert ch["Status"] == "critical"
    assert ch["Output"] == ('Get "%s": tls: failed to verify certificate: x509: certificate is '
                            'valid for localhost, not wrong.example' % u)


def test_server_name_match_passes(agent, servers):
    u = url(servers["trusted"])
    register(agent, {"CheckID": "sni-ok", "Name": "sni-ok", "HTTP": u, "Interval": "1s",
                     "TLSServerName": "localhost"})
    assert settled(agent, "sni-ok")["Status"] == "passing"


def test_redirect_stays_on_https(agent, servers):
    u = url(servers["trusted"], "/moved")
    register(agent, {"CheckID": "redir", "Name": "redir", "HTTP": u, "Interval": "1s"})
    ch = settled(agent, "redir")
    assert ch["Status"] == "passing", ch
    assert ch["Output"] == "HTTP GET %s: 200 OK Output: secure fine" % u


def test_not_tls_behind_https_url(agent, servers):
    # Python's http.server answers a ClientHello in HTTP/0.9 style (a bare HTML body).
    u = url(servers["plain"])
    register(agent, {"CheckID": "plain", "Name": "plain", "HTTP": u, "Interval": "1s"})
    ch = settled(agent, "plain")
    assert ch["Status"] == "critical"
    assert ch["Output"] == ('Get "%s": tls: first record does not look like a TLS handshake'
                            % u)


def test_http_response_to_https_client(agent):
    # A server that answers anything with an HTTP/1.x status line, as Go's own does.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            with c:
                c.recv(4096)
                c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to "
                          b"an HTTPS server.\n")
    threading.Thread(target=serve, daemon=True).start()
    u = "https://127.0.0.1:%d/" % lsock.getsockname()[1]
    try:
        register(agent, {"CheckID": "h2s", "Name": "h2s", "HTTP": u, "Interval": "1s"})
        ch = settled(agent, "h2s")
        assert ch["Status"] == "critical"
        assert ch["Output"] == 'Get "%s": http: server gave HTTP response to HTTPS client' % u
    finally:
        put = agent.request("PUT", "/v1/agent/check/deregister/h2s")
        assert put[0] == 200
        lsock.close()


def test_handshake_timeout_is_critical(agent):
    # A server that accepts and never answers: the check's timeout ends the handshake.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    u = "https://127.0.0.1:%d/" % lsock.getsockname()[1]
    try:
        register(agent, {"CheckID": "slow", "Name": "slow", "HTTP": u, "Interval": "5s",
                         "Timeout": "300ms"})
        ch = settled(agent, "slow")
        assert ch["Status"] == "critical"
        assert ch["Output"] == ('Get "%s": context deadline exceeded (Client.Timeout exceeded '
                                'while awaiting headers)' % u)
    finally:
        agent.request("PUT", "/v1/agent/check/deregister/slow")
        lsock.close()


def test_check_definition_keeps_tls_fields(agent, servers):
    register(agent, {"CheckID": "defn", "Name": "defn", "HTTP": url(servers["selfsigned"]),
                     "Interval": "10s", "TLSSkipVerify": True, "TLSServerName": "localhost"})
    d = check(agent, "defn")["Definition"]
    assert d.get("TLSSkipVerify") is True and d.get("TLSServerName") == "localhost"


def test_watch_http_handler_to_https(request, certs, servers, tmp_path):
    srv = servers["selfsigned"]
    target = "https://127.0.0.1:%d/hook" % srv.server_address[1]
    cfg = tmp_path / "watch.json"
    cfg.write_text(json.dumps({"watches": [
        {"type": "key", "key": "tk", "handler_type": "http",
         "http_handler_config": {"path": target, "method": "PUT", "timeout": "5s",
                                 "tls_skip_verify": True}}]}))
    a = _start_agent(request, certs, node="https-watch", extra_args=["-config-file", str(cfg)])
    wait_for(lambda: len(srv.posts) >= 1)
    status, _, _ = a.request("PUT", "/v1/kv/tk", "v")
    assert status == 200
    wait_for(lambda: len(srv.posts) >= 2)
    path, body = srv.posts[-1]
    assert path == "/hook" and json.loads(body)["Key"] == "tk"
