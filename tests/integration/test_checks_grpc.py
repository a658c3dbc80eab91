"""gRPC and H2PING health checks run by a real agent against a real gRPC server (Debian's
python3-grpcio) serving grpc.health.v1.Health/Check through a generic handler with raw-bytes
(de)serializers, so no generated code or grpcio-health-checking is needed. The server flips
between SERVING and NOT_SERVING and the checks follow through /v1/agent/checks; an unknown
service answers NOT_FOUND; H2PING pings the same server; closed ports go critical; and the
TLS variants (GRPCUseTLS, H2PingUseTLS, TLSSkipVerify) against the server with a self-signed
certificate."""
import json
import subprocess
import threading
from concurrent import futures

import pytest

from agentlib import free_port
from test_checks import check, put, wait_for, wait_status

grpc = pytest.importorskip("grpc")

SERVING, NOT_SERVING = 1, 2


def _parse_service(req):
    """HealthCheckRequest.service from its protobuf bytes (field 1, length-delimited)."""
    if not req:
        return ""
    assert req[0] == 0x0A, req
    n, shift, i = 0, 0, 1
    while True:
        b = req[i]
        n |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            break
    return req[i:i + n].decode()


class HealthServer:
    def __init__(self, tls=None):
        self.status = {"": SERVING, "my.service": SERVING}
        self.requests = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(self.check)})
        self.server.add_generic_rpc_handlers((handler,))
        if tls:
            creds = grpc.ssl_server_credentials([tls])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def check(self, req, ctx):
        svc = _parse_service(req)
        with self.lock:
            self.requests.append(svc)
            st = self.status.get(svc)
        if st is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, st])  # HealthCheckResponse{status}

    def set(self, svc, st):
        with self.lock:
            self.status[svc] = st


@pytest.fixture(scope="module")
def health():
    srv = HealthServer()
    yield srv
    srv.server.stop(0)


def register(agent, body):
    status, _, text = put(agent, "/v1/agent/check/register", body)
    return status, text.decode() if isinstance(text, bytes) else text


def test_grpc_check_follows_serving_status(agent, health):
    target = "127.0.0.1:%d" % health.port
    st, text = register(agent, {"ID": "g-server", "Name": "g-server", "GRPC": target,
                                "Interval": "1s"})
    assert st == 200, text
    ch = wait_status(agent, "g-server", "passing")
    assert ch["Output"] == "gRPC check %s: success" % target
    assert ch["Type"] == "grpc"
    assert "" in health.requests

    st, text = register(agent, {"ID": "g-svc", "Name": "g-svc", "GRPC": target + "/my.service",
                                "Interval": "1s", "Timeout": "3s"})
    assert st == 200, text
    ch = wait_status(agent, "g-svc", "passing")
    assert ch["Output"] == "gRPC check %s/my.service: success" % target
    assert "my.service" in health.requests

    health.set("my.service", NOT_SERVING)
    ch = wait_status(agent, "g-svc", "critical")
    assert ch["Output"] == "gRPC %s/my.service serving status: NOT_SERVING" % target
    # the whole-server check is not affected
    assert check(agent, "g-server")["Status"] == "passing"

    health.set("my.service", SERVING)
    wait_status(agent, "g-svc", "passing")

    # The check JSON carries the definition as Consul shows it.
    checks = agent.get_json("/v1/agent/checks")[0]
    assert checks["g-svc"]["Interval"] == "1s"
    assert checks["g-svc"]["Timeout"] == "3s"
    for cid in ("g-server", "g-svc"):
        put(agent, "/v1/agent/check/deregister/" + cid)


def test_grpc_unknown_service_and_closed_port(agent, health):
    target = "127.0.0.1:%d/nope" % health.port
    st, text = register(agent, {"ID": "g-nope", "Name": "g-nope", "GRPC": target,
                                "Interval": "1s", "Status": "passing"})
    assert st == 200, text
    ch = wait_status(agent, "g-nope", "critical")
    assert ch["Output"] == "rpc error: code = NotFound desc = unknown service"

    closed = free_port()
    st, text = register(agent, {"ID": "g-closed", "Name": "g-closed",
                                "GRPC": "127.0.0.1:%d" % closed, "Interval": "1s",
                                "Status": "passing"})
    assert st == 200, text
    ch = wait_status(agent, "g-closed", "critical")
    assert ch["Output"] == ('rpc error: code = Unavailable desc = connection error: desc = '
                            '"transport: Error while dialing: dial tcp 127.0.0.1:%d: connect: '
                            'connection refused"' % closed)
    for cid in ("g-nope", "g-closed"):
        put(agent, "/v1/agent/check/deregister/" + cid)


def test_grpc_check_on_a_service_from_the_api(agent, health):
    target = "127.0.0.1:%d/my.service" % health.port
    health.set("my.service", SERVING)
    st, _, text = put(agent, "/v1/agent/service/register", {
        "Name": "grpcsvc", "Port": health.port,
        "Check": {"GRPC": target, "Interval": "1s", "GRPCUseTLS": False}})
    assert st == 200, text
    ch = wait_status(agent, "service:grpcsvc", "passing")
    assert ch["ServiceName"] == "grpcsvc"
    health_entries = wait_for(lambda: [e for e in agent.get_json(
        "/v1/health/service/grpcsvc?passing")[0] if e["Checks"]])
    assert health_entries[0]["Service"]["Service"] == "grpcsvc"
    health.set("my.service", NOT_SERVING)
    wait_status(agent, "service:grpcsvc", "critical")
    health.set("my.service", SERVING)
    put(agent, "/v1/agent/service/deregister/grpcsvc")


def test_h2ping_check(agent, health):
    target = "127.0.0.1:%d" % health.port
    st, text = register(agent, {"ID": "h2", "Name": "h2", "H2PING": target, "Interval": "1s",
                                "H2PingUseTLS": False})
    assert st == 200, text
    ch = wait_status(agent, "h2", "passing")
    assert ch["Output"] == "HTTP2 ping was successful"
    assert ch["Type"] == "h2ping"

    closed = free_port()
    st, text = register(agent, {"ID": "h2-closed", "Name": "h2-closed",
                                "H2PING": "127.0.0.1:%d" % closed, "Interval": "1s",
                                "H2PingUseTLS": False, "Status": "passing"})
    assert st == 200, text
    ch = wait_status(agent, "h2-closed", "critical")
    assert ch["Output"] == ("Failed to dial to 127.0.0.1:%d: dial tcp 127.0.0.1:%d: connect: "
                            "connection refused" % (closed, closed))
    for cid in ("h2", "h2-closed"):
        put(agent, "/v1/agent/check/deregister/" + cid)


def test_h2ping_against_a_plain_tcp_server_is_critical(agent):
    """Something that accepts but does not speak HTTP/2: the deadline ends the ping."""
    import socket
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    try:
        st, text = register(agent, {"ID": "h2-mute", "Name": "h2-mute",
                                    "H2PING": "127.0.0.1:%d" % port, "Interval": "1s",
                                    "Timeout": "500ms", "H2PingUseTLS": False,
                                    "Status": "passing"})
        assert st == 200, text
        ch = wait_status(agent, "h2-mute", "critical")
        assert ch["Output"] == "HTTP2 ping failed: context deadline exceeded"
    finally:
        put(agent, "/v1/agent/check/deregister/h2-mute")
        lsock.close()


@pytest.fixture(scope="module")
def tls_health(tmp_path_factory):
    """The same health service over TLS, with a self-signed certificate for 127.0.0.1."""
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "crt.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    srv = HealthServer(tls=(key.read_bytes(), crt.read_bytes()))
    yield srv
    srv.server.stop(0)


def test_tls_variants(agent, health, tls_health):
    target = "127.0.0.1:%d" % tls_health.port
    tls_health.set("my.service", SERVING)
    st, text = register(agent, {"ID": "g-tls", "Name": "g-tls", "GRPC": target + "/my.service",
                                "Interval": "1s", "GRPCUseTLS": True, "TLSSkipVerify": True})
    assert st == 200, text
    ch = wait_status(agent, "g-tls", "passing")
    assert ch["Output"] == "gRPC check %s/my.service: success" % target
    tls_health.set("my.service", NOT_SERVING)
    ch = wait_status(agent, "g-tls", "critical")
    assert ch["Output"] == "gRPC %s/my.service serving status: NOT_SERVING" % target
    tls_health.set("my.service", SERVING)

    # Verified against the system's CAs: a self-signed certificate fails.
    st, text = register(agent, {"ID": "g-tls-verify", "Name": "g-tls-verify", "GRPC": target,
                                "Interval": "1s", "GRPCUseTLS": True, "Status": "passing"})
    assert st == 200, text
    ch = wait_status(agent, "g-tls-verify", "critical")
    assert ch["Output"].startswith(
        'rpc error: code = Unavailable desc = connection error: desc = "transport: '
        'authentication handshake failed: tls: failed to verify certificate: x509: '), ch["Output"]

    # H2PingUseTLS defaults to true, as in Consul.
    st, text = register(agent, {"ID": "h2-tls", "Name": "h2-tls", "H2PING": target,
                                "Interval": "1s", "TLSSkipVerify": True})
    assert st == 200, text
    ch = wait_status(agent, "h2-tls", "passing")
    assert ch["Output"] == "HTTP2 ping was successful"
    # ... so against a cleartext server it fails.
    plain = "127.0.0.1:%d" % health.port
    st, text = register(agent, {"ID": "h2-tls-plain", "Name": "h2-tls-plain", "H2PING": plain,
                                "Interval": "1s", "Timeout": "2s", "TLSSkipVerify": True,
                                "Status": "passing"})
    assert st == 200, text
    ch = wait_status(agent, "h2-tls-plain", "critical")
    assert ch["Output"] == ("Failed to dial to %s: tls: first record does not look like a TLS "
                            "handshake" % plain)
    for cid in ("g-tls", "g-tls-verify", "h2-tls", "h2-tls-plain"):
        put(agent, "/v1/agent/check/deregister/" + cid)


def test_grpc_interval_required(agent, health):
    st, text = register(agent, {"Name": "g-noint", "GRPC": "127.0.0.1:%d" % health.port})
    assert st == 400, text
    assert "Interval must be > 0" in text


def test_grpc_check_from_config_file(tmp_path, health, request):
    from agentlib import Agent
    cfg = tmp_path / "svc.json"
    cfg.write_text(json.dumps({"service": {
        "name": "filegrpc", "port": health.port,
        "checks": [{"id": "fg", "name": "fg", "grpc": "127.0.0.1:%d/my.service" % health.port,
                    "grpc_use_tls": False, "interval": "1s"},
                   {"id": "fh", "name": "fh", "h2ping": "127.0.0.1:%d" % health.port,
                    "h2ping_use_tls": False, "interval": "1s"}]}}))
    health.set("my.service", SERVING)
    a = Agent(node="grpcfile", extra_args=["-config-file", str(cfg)])
    a.start()
    try:
        ch = wait_status(a, "fg", "passing")
        assert ch["Type"] == "grpc"
        ch = wait_status(a, "fh", "passing")
        assert ch["Output"] == "HTTP2 ping was successful"
    finally:
        code = a.stop()
        a.kill()
    assert code == 0, a.log()


def test_grpc_and_h2ping_checks_survive_a_restart(server_agent, health):
    """API registrations persist in the data dir with their TLS flags, as Consul's do, so an
    H2PING check registered with H2PingUseTLS false comes back as one (not refused)."""
    target = "127.0.0.1:%d" % health.port
    health.set("my.service", SERVING)
    for body in ({"ID": "pg", "Name": "pg", "GRPC": target + "/my.service", "Interval": "1s"},
                 {"ID": "ph", "Name": "ph", "H2PING": target, "Interval": "1s",
                  "H2PingUseTLS": False}):
        st, text = register(server_agent, body)
        assert st == 200, text
    wait_status(server_agent, "pg", "passing")
    wait_status(server_agent, "ph", "passing")
    server_agent.restart()
    ch = wait_status(server_agent, "pg", "passing")
    assert ch["Type"] == "grpc"
    ch = wait_status(server_agent, "ph", "passing")
    assert ch["Type"] == "h2ping"
    assert ch["Output"] == "HTTP2 ping was successful"
