"""The web UI at /ui/: how the agent serves it (over raw HTTP) and what it shows (in a real
headless Chromium, driven over the DevTools protocol by browser.py)."""
import http.client
import json
import os
import tempfile
import time
import urllib.parse

import pytest

from agentlib import ROOT, Agent
from browser import Browser

UI_DIR = os.path.join(ROOT, "ui")
DISABLED = (b"Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent "
            b"configuration and restart.")


def raw(agent, method, path, headers=None):
    """One request with the path sent exactly as given; redirects are not followed.
    Returns (status, headers with lower-case names, body)."""
    c = http.client.HTTPConnection(agent.client_ip, agent.http_port, timeout=10)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def ui_file(name):
    with open(os.path.join(UI_DIR, name), "rb") as f:
        return f.read()


def put(agent, path, body=""):
    status, _, out = agent.request("PUT", path, body)
    assert status == 200, (path, status, out)
    return out


# ---- serving ----

def test_index(agent):
    status, h, body = raw(agent, "GET", "/ui/")
    assert status == 200
    assert h["content-type"] == "text/html; charset=utf-8"
    assert body == ui_file("index.html")
    assert b'<script src="/ui/app.js"' in body
    assert h["cache-control"] == "no-cache"
    assert h["etag"].startswith('"') and h["etag"].endswith('"')
    assert "script-src 'self'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert int(h["content-length"]) == len(body)


@pytest.mark.parametrize("name,ctype", [
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
])
def test_assets_and_content_types(agent, name, ctype):
    status, h, body = raw(agent, "GET", "/ui/" + name)
    assert status == 200
    assert h["content-type"] == ctype
    assert body == ui_file(name)
    assert "content-security-policy" not in h  # only the HTML page carries it


def test_etag_revalidation_304(agent):
    _, h, _ = raw(agent, "GET", "/ui/app.js")
    status, h2, body = raw(agent, "GET", "/ui/app.js", {"If-None-Match": h["etag"]})
    assert status == 304 and body == b""
    assert h2["etag"] == h["etag"]
    status, _, body = raw(agent, "GET", "/ui/app.js", {"If-None-Match": '"other"'})
    assert status == 200 and body == ui_file("app.js")
    # different files, different ETags
    assert raw(agent, "GET", "/ui/app.css")[1]["etag"] != h["etag"]


def test_head(agent):
    status, h, body = raw(agent, "HEAD", "/ui/app.js")
    assert status == 200 and body == b""
    assert int(h["content-length"]) == len(ui_file("app.js"))
    assert h["content-type"] == "text/javascript; charset=utf-8"
    status, h, body = raw(agent, "HEAD", "/")
    assert status == 301 and h["location"] == "/ui/" and body == b""


def test_other_methods_405(agent):
    status, h, _ = raw(agent, "POST", "/ui/app.js")
    assert status == 405
    assert h["allow"] == "OPTIONS,GET,HEAD"


def test_root_redirects_to_ui(agent):
    status, h, body = raw(agent, "GET", "/")
    assert status == 301
    assert h["location"] == "/ui/"
    assert body == b'<a href="/ui/">Moved Permanently</a>.\n\n'
    # any method, as Consul's index handler (without the HTML body, as Go's http.Redirect)
    status, h, body = raw(agent, "POST", "/")
    assert status == 301 and h["location"] == "/ui/" and body == b""
    # and the Go ServeMux redirects around it
    assert raw(agent, "GET", "/ui")[:2][0] == 301
    assert raw(agent, "GET", "/ui")[1]["location"] == "/ui/"
    status, h, _ = raw(agent, "GET", "/ui/index.html")
    assert status == 301 and h["location"] == "/ui/"
    status, h, _ = raw(agent, "GET", "/ui/dc1/index.html")
    assert status == 301 and h["location"] == "/ui/dc1/"


def test_unknown_paths_stay_404(agent):
    for path in ("/nope", "/v1/nope", "/favicon.ico", "/uix/"):
        status, _, body = raw(agent, "GET", path)
        assert status == 404 and body == b"", path
    assert raw(agent, "POST", "/nope")[0] == 404
    # the API is untouched
    assert raw(agent, "GET", "/v1/status/leader")[0] == 200


@pytest.mark.parametrize("path", [
    "/ui/dc1/services", "/ui/dc1/services/web", "/ui/dc1/kv/a/b/c/", "/ui/dc1/nodes/n1",
    "/ui/missing.js", "/ui/dc1/",
])
def test_spa_fallback_serves_index(agent, path):
    status, h, body = raw(agent, "GET", path)
    assert status == 200, path
    assert h["content-type"] == "text/html; charset=utf-8"
    assert body == ui_file("index.html")


@pytest.mark.parametrize("path", [
    "/ui/../etc/passwd",
    "/ui/%2e%2e/%2e%2e/etc/passwd",
    "/ui/..%2f..%2f..%2fetc%2fpasswd",
    "/ui/%2e%2e%2f%2e%2e%2fetc/passwd",
    "/ui/../../../../../../etc/passwd",
    "/ui/./../CMakeLists.txt",
    "/ui/..\\..\\etc\\passwd",
    "/ui/%00../etc/passwd",
    "/ui//etc/passwd",
])
def test_traversal_never_leaves_the_ui(agent, path):
    """Paths are cleaned before routing: a ".." that climbs out of /ui/ is redirected to the
    clean path (404 there), and nothing under /ui/ names a file outside the embedded UI."""
    index = ui_file("index.html")
    for _ in range(4):
        status, h, body = raw(agent, "GET", path)
        assert b"root:" not in body and b"cmake_minimum_required" not in body, path
        if status != 301:
            break
        path = h["location"]
    assert status in (200, 400, 404), (path, status)
    if status == 200:
        assert body == index, path
    if "passwd" in path and not path.startswith("/ui/"):
        assert status == 404, path


# ---- on and off ----

def _client(extra=None, config=None):
    """A client agent (no Raft, so quick to start) with extra flags or a config file."""
    args = list(extra or [])
    if config is not None:
        f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(config, f)
        f.close()
        args += ["-config-file", f.name]
    return Agent(dev=False, server=False, node="ui-client", extra_args=args)


@pytest.mark.parametrize("extra,config,on", [
    ([], None, False),
    (["-ui"], None, True),
    ([], {"ui_config": {"enabled": True}}, True),
    ([], {"ui": True}, True),
    (["-ui"], {"ui_config": {"enabled": False}}, True),  # the flag wins over files
])
def test_ui_flag_and_config(extra, config, on):
    a = _client(extra, config).start()
    try:
        status, h, body = raw(a, "GET", "/ui/")
        if on:
            assert status == 200 and body == ui_file("index.html")
            assert raw(a, "GET", "/")[0] == 301
        else:
            assert status == 404 and body == b""
            assert raw(a, "GET", "/ui/app.js")[0] == 404
            assert raw(a, "GET", "/ui")[0] == 404
            status, h, body = raw(a, "GET", "/")
            assert status == 200 and body == DISABLED
            assert h["content-type"] == "text/plain; charset=utf-8"
    finally:
        assert a.stop() == 0, a.log()


def test_dev_can_turn_it_off(request):
    path = os.path.join(tempfile.mkdtemp(), "ui.json")
    with open(path, "w") as f:
        json.dump({"ui_config": {"enabled": False}}, f)
    a = Agent(dev=True, node="ui-dev-off", extra_args=["-config-file", path]).start()
    try:
        assert raw(a, "GET", "/ui/")[0] == 404
        assert raw(a, "GET", "/")[2] == DISABLED
    finally:
        assert a.stop() == 0, a.log()


def test_agent_help_mentions_ui(agent):
    r = agent.cli("agent", "-h")
    assert "-ui" in r.stdout + r.stderr


# ---- in a browser ----

# make deps installs chromium, so these run in make test; a missing browser fails them unless
# CONCORD_NO_BROWSER=1 says on purpose that this machine has none.
needs_chromium = pytest.mark.skipif(os.environ.get("CONCORD_NO_BROWSER") == "1",
                                    reason="CONCORD_NO_BROWSER=1: browser tests not run")


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def seeded(agent):
    """Services with known health, and keys, in the module's -dev agent."""
    put(agent, "/v1/agent/service/register", json.dumps({
        "Name": "web", "ID": "web-1", "Port": 8080, "Address": "10.1.2.3", "Tags": ["v1", "blue"],
        "Checks": [
            {"CheckID": "web-ok", "Name": "web ok", "TTL": "10m", "Status": "passing"},
            {"CheckID": "web-slow", "Name": "web slow", "TTL": "10m", "Status": "warning"},
            {"CheckID": "web-down", "Name": "web down", "TTL": "10m", "Status": "critical"},
        ]}))
    put(agent, "/v1/agent/check/fail/web-down?note=" + urllib.parse.quote("connection refused"))
    put(agent, "/v1/agent/service/register", json.dumps({"Name": "db", "ID": "db-1", "Port": 5432}))
    put(agent, "/v1/kv/app/config/db", "postgres://db:5432")
    put(agent, "/v1/kv/app/config/cache?flags=42", "redis://cache:6379")
    put(agent, "/v1/kv/top", "root-level")
    return agent


def js(s):
    return json.dumps(s)


def row_text(b, table_body, attr, name):
    return b.wait_for("(() => { const r = document.querySelector('#%s tr[%s=' + %s + ']');"
                      " return r && r.textContent; })()" % (table_body, attr, js(js(name))),
                      what="%s row %s" % (table_body, name))


def counts_of(b, service):
    row_text(b, "services-body", "data-service", service)
    return b.wait_for(
        "(() => { const r = document.querySelector('#services-body tr[data-service=' + %s + ']');"
        " const c = [...r.querySelectorAll('.health .count')].map(x => x.textContent);"
        " return c.length === 3 && r.querySelector('.instances').textContent !== '0' &&"
        " [r.querySelector('.instances').textContent].concat(c); })()" % js(js(service)))


@needs_chromium
def test_browser_services_list(browser, seeded):
    b = browser
    b.goto(seeded.url + "/ui/")
    # "/ui/" routes itself to the agent's datacenter
    b.wait_for("location.pathname === '/ui/dc1/services'")
    # instances, then passing / warning / critical: web's three checks plus the node's serfHealth
    assert counts_of(b, "web") == ["1", "2", "1", "1"]
    assert counts_of(b, "db") == ["1", "1", "0", "0"]
    text = row_text(b, "services-body", "data-service", "web")
    assert "v1" in text and "blue" in text
    # the datacenter picker lists /v1/catalog/datacenters and selects ours
    assert b.eval("[...document.querySelectorAll('#dc option')].map(o => o.value)") == ["dc1"]
    assert b.eval("document.getElementById('dc').value") == "dc1"
    # the filter box narrows the list without a reload
    b.eval("(() => { const f = document.getElementById('filter'); f.value = 'WEB';"
           " f.dispatchEvent(new Event('input')); })()")
    assert b.eval("[...document.querySelectorAll('#services-body tr')].map(r => r.dataset.service)") \
        == ["web"]
    b.eval("(() => { const f = document.getElementById('filter'); f.value = 'blue';"
           " f.dispatchEvent(new Event('input')); })()")
    assert b.eval("[...document.querySelectorAll('#services-body tr')].map(r => r.dataset.service)") \
        == ["web"]


@needs_chromium
def test_browser_follows_changes(browser, seeded):
    """Blocking queries keep an open page current: no reload between these steps."""
    b = browser
    b.goto(seeded.url + "/ui/dc1/services")
    row_text(b, "services-body", "data-service", "web")
    put(seeded, "/v1/agent/service/register", json.dumps({"Name": "late", "Port": 1}))
    row_text(b, "services-body", "data-service", "late")
    put(seeded, "/v1/agent/check/pass/web-down")
    b.wait_for("(() => { const r = document.querySelector('#services-body tr[data-service=web]');"
               " return [...r.querySelectorAll('.health .count')].map(x => x.textContent)"
               ".join() === '3,1,0'; })()", what="web's counts after web-down passed")
    put(seeded, "/v1/agent/check/fail/web-down?note=" + urllib.parse.quote("connection refused"))
    put(seeded, "/v1/agent/service/deregister/late")
    b.wait_for("!document.querySelector('#services-body tr[data-service=late]')",
               what="late to disappear")


@needs_chromium
def test_browser_service_instances(browser, seeded):
    b = browser
    b.goto(seeded.url + "/ui/dc1/services/web")
    text = b.wait_for("(() => { const i = document.querySelector('[data-instance=\"web-1\"]');"
                      " return i && i.querySelector('table.checks') && i.textContent; })()")
    assert "10.1.2.3:8080" in text
    assert seeded.node in text
    assert "connection refused" in text
    for check, status in (("web-ok", "passing"), ("web-slow", "warning"),
                          ("web-down", "critical"), ("serfHealth", "passing")):
        got = b.eval("document.querySelector('[data-instance=\"web-1\"] tr[data-check=%s] .status')"
                     ".textContent" % js(check))
        assert got == status, check
    # the node link leads to the node's page
    href = b.eval("document.querySelector('[data-instance=\"web-1\"] a[href*=\"/nodes/\"]')"
                  ".getAttribute('href')")
    assert href == "/ui/dc1/nodes/" + urllib.parse.quote(seeded.node)


@needs_chromium
def test_browser_nodes(browser, seeded):
    b = browser
    b.goto(seeded.url + "/ui/dc1/nodes")
    text = row_text(b, "nodes-body", "data-node", seeded.node)
    assert seeded.ip in text
    assert "critical" in text  # web-down is failing on this node
    b.goto(seeded.url + "/ui/dc1/nodes/" + urllib.parse.quote(seeded.node))
    b.wait_for("document.querySelector('#node-services tr[data-service=\"web-1\"]')")
    b.wait_for("document.querySelector('#node-checks tr[data-check=\"web-down\"]')")
    assert "10.1.2.3:8080" in b.eval("document.getElementById('node-services').textContent")
    assert b.eval("document.querySelector('#node-checks tr[data-check=serfHealth] .status')"
                  ".textContent") == "passing"


@needs_chromium
def test_browser_kv_browse_and_view(browser, seeded):
    b = browser
    b.goto(seeded.url + "/ui/dc1/kv/")
    b.wait_for("document.querySelector('#kv-keys tr[data-key=\"app/\"]')")
    assert b.eval("document.querySelector('#kv-keys tr[data-key=\"top\"] a').getAttribute('href')") \
        == "/ui/dc1/kv/top"
    # into the folders by clicking, as a user would
    b.eval("document.querySelector('#kv-keys tr[data-key=\"app/\"] a').click()")
    b.wait_for("location.pathname === '/ui/dc1/kv/app/'")
    b.wait_for("document.querySelector('#kv-keys tr[data-key=\"app/config/\"]')")
    b.eval("document.querySelector('#kv-keys tr[data-key=\"app/config/\"] a').click()")
    b.wait_for("document.querySelector('#kv-keys tr[data-key=\"app/config/db\"]')")
    b.eval("document.querySelector('#kv-keys tr[data-key=\"app/config/cache\"] a').click()")
    assert b.wait_for("document.getElementById('kv-value') &&"
                      " document.getElementById('kv-value').value") == "redis://cache:6379"
    assert b.eval("document.getElementById('kv-flags').value") == "42"
    # a deep link works too
    b.goto(seeded.url + "/ui/dc1/kv/app/config/db")
    assert b.wait_for("document.getElementById('kv-value') &&"
                      " document.getElementById('kv-value').value") == "postgres://db:5432"
    # and the open key follows changes
    put(seeded, "/v1/kv/app/config/db", "postgres://db2:5432")
    b.wait_for("document.getElementById('kv-value').value === 'postgres://db2:5432'")


@needs_chromium
def test_browser_kv_edit_create_delete(browser, seeded):
    b = browser
    put(seeded, "/v1/kv/edit/me", "old")
    b.goto(seeded.url + "/ui/dc1/kv/edit/me")
    b.wait_for("document.getElementById('kv-value') && document.getElementById('kv-value').value === 'old'")
    b.eval("(() => { document.getElementById('kv-value').value = 'new value';"
           " document.getElementById('kv-flags').value = '7';"
           " document.querySelector('#kv-edit button[type=submit]').click(); })()")
    b.wait_for("document.getElementById('kv-flags-shown') &&"
               " document.getElementById('kv-flags-shown').textContent === '7'")
    entry = seeded.get_json("/v1/kv/edit/me")[0][0]
    assert entry["Flags"] == 7
    assert entry["Value"] == "bmV3IHZhbHVl"  # "new value"
    # create a key from the folder view
    b.goto(seeded.url + "/ui/dc1/kv/edit/")
    b.wait_for("document.getElementById('kv-create')")
    b.eval("(() => { document.getElementById('kv-new-key').value = 'made';"
           " document.getElementById('kv-new-value').value = 'by the ui';"
           " document.querySelector('#kv-create button[type=submit]').click(); })()")
    b.wait_for("location.pathname === '/ui/dc1/kv/edit/made'")
    assert seeded.request("GET", "/v1/kv/edit/made?raw")[2] == b"by the ui"
    # delete asks first: refusing keeps the key, accepting deletes it
    b.eval("window.confirm = () => false; document.getElementById('kv-delete').click()")
    assert seeded.request("GET", "/v1/kv/edit/made")[0] == 200
    b.eval("window.confirm = () => true; document.getElementById('kv-delete').click()")
    b.wait_for("location.pathname === '/ui/dc1/kv/edit/'")
    assert seeded.request("GET", "/v1/kv/edit/made")[0] == 404


@needs_chromium
def test_browser_renders_markup_as_text(browser, seeded):
    """Names, tags, outputs and values are attacker-controlled: they must show as text."""
    b = browser
    evil_key = 'x/<img src=x onerror="window.__pwned=1">'
    evil_val = '<script>window.__pwned=2</script><b id="inj">bold</b>'
    evil_tag = '<img src=y onerror="window.__pwned=3">'
    put(seeded, "/v1/kv/" + urllib.parse.quote(evil_key, safe="/"), evil_val)
    put(seeded, "/v1/agent/service/register", json.dumps({
        "Name": "evil", "ID": "evil-1", "Port": 1, "Tags": [evil_tag],
        "Check": {"CheckID": "evil-check", "TTL": "10m"}}))
    put(seeded, "/v1/agent/check/warn/evil-check?note=" +
        urllib.parse.quote('<img src=z onerror="window.__pwned=4"><i id="inj2">x</i>'))
    no_markup = ("!window.__pwned && !document.querySelector('main img') &&"
                 " !document.getElementById('inj') && !document.getElementById('inj2') &&"
                 " !document.querySelector('main script')")

    b.goto(seeded.url + "/ui/dc1/kv/x/")
    shown = b.wait_for("(() => { const a = document.querySelector('#kv-keys a'); return a && a.textContent; })()")
    assert shown == evil_key[2:]
    assert b.eval(no_markup)
    b.eval("document.querySelector('#kv-keys a').click()")
    assert b.wait_for("document.getElementById('kv-value') && document.getElementById('kv-value').value") \
        == evil_val
    assert b.eval("document.querySelector('main h1').textContent") == evil_key
    assert b.eval(no_markup)

    b.goto(seeded.url + "/ui/dc1/services")
    text = row_text(b, "services-body", "data-service", "evil")
    assert evil_tag in text
    assert b.eval(no_markup)
    b.goto(seeded.url + "/ui/dc1/services/evil")
    text = b.wait_for("(() => { const i = document.querySelector('[data-instance=\"evil-1\"] tr[data-check=\"evil-check\"] pre');"
                      " return i && i.textContent; })()")
    assert 'onerror="window.__pwned=4"' in text
    assert b.eval(no_markup)


@needs_chromium
def test_browser_datacenter_picker(request, browser):
    """Two datacenters over the WAN: the picker lists both and choosing one sends ?dc= to it."""
    s1 = Agent(dev=False, ip="127.0.0.1", node="ui-s1", extra_args=["-datacenter", "dc1", "-ui"])
    s2 = Agent(dev=False, ip="127.0.0.3", node="ui-s2",
               extra_args=["-datacenter", "dc2", "-join-wan",
                           "%s:%d" % (s1.ip, s1.serf_wan_port)])
    started = []

    def fin():
        codes = {}
        for a in reversed(started):
            try:
                codes[a.node] = a.stop()
            finally:
                a.kill()
        assert all(c == 0 for c in codes.values()), (codes, [a.log() for a in started])
    request.addfinalizer(fin)
    s1.start()
    started.append(s1)
    s2.start()
    started.append(s2)
    deadline = time.time() + 20
    while json.loads(s1.request("GET", "/v1/catalog/datacenters")[2]) != ["dc1", "dc2"]:
        assert time.time() < deadline, s1.log()
        time.sleep(0.1)
    put(s2, "/v1/catalog/register", json.dumps({
        "Node": "far-node", "Address": "10.9.9.9",
        "Service": {"Service": "only-in-dc2", "Port": 99}}))
    put(s2, "/v1/kv/where", "dc2's value")
    put(s1, "/v1/kv/where", "dc1's value")

    b = browser
    b.goto(s1.url + "/ui/")
    b.wait_for("location.pathname === '/ui/dc1/services'")
    row_text(b, "services-body", "data-service", "consul")
    assert b.eval("[...document.querySelectorAll('#dc option')].map(o => o.value)") == ["dc1", "dc2"]
    assert b.eval("!document.querySelector('#services-body tr[data-service=\"only-in-dc2\"]')")
    b.eval("(() => { const s = document.getElementById('dc'); s.value = 'dc2';"
           " s.dispatchEvent(new Event('change')); })()")
    b.wait_for("location.pathname === '/ui/dc2/services'")
    row_text(b, "services-body", "data-service", "only-in-dc2")
    b.goto(s1.url + "/ui/dc2/nodes")
    row_text(b, "nodes-body", "data-node", "far-node")
    b.goto(s1.url + "/ui/dc2/kv/where")
    assert b.wait_for("document.getElementById('kv-value') &&"
                      " document.getElementById('kv-value').value") == "dc2's value"
    assert b.eval("document.getElementById('dc').value") == "dc2"
    b.goto(s1.url + "/ui/dc1/kv/where")
    assert b.wait_for("document.getElementById('kv-value') &&"
                      " document.getElementById('kv-value').value") == "dc1's value"
