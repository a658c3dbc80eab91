"""A headless Chromium driven over the DevTools protocol, for the web UI's browser tests.

`chromium --dump-dom` cannot be used: it dumps at the load event (before the app's fetches
answer), and with --virtual-time-budget it waits for every pending request, which for a page
holding blocking queries means minutes. So the browser runs with --remote-debugging-pipe
(DevTools JSON messages, each ending in a NUL byte, on its fds 3 and 4: no websocket or
extra package needed) and the test polls the live DOM with Runtime.evaluate until what it
expects is there. Only 127.0.0.1 is ever loaded, and the browser's own background services
are switched off and can resolve no host name, so nothing leaves the machine."""
import json
import os
import select
import shutil
import subprocess
import tempfile
import time


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self):
        self.exe = chromium_path()
        if self.exe is None:
            raise RuntimeError("chromium is not installed (make deps installs it)")
        self.profile = tempfile.mkdtemp(prefix="concord-chromium-")
        # ours -> chromium's fd 3; chromium's fd 4 -> ours
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        # bash, not sh: dash refuses fd numbers above 9 in redirections
        cmd = ("exec \"$0\" --headless --no-sandbox --disable-gpu --no-first-run "
               "--disable-extensions --disable-background-networking --disable-sync "
               "--disable-component-update --disable-default-apps --mute-audio "
               "--disable-domain-reliability --disable-client-side-phishing-detection "
               "'--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1' "
               "--user-data-dir=\"$1\" --remote-debugging-pipe about:blank "
               "3<&%d 4>&%d" % (to_r, from_w))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["bash", "-c", cmd, self.exe, self.profile],
                                     pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        os.close(to_r)
        os.close(from_w)
        self.buf = b""
        self.next_id = 0
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = [t for t in targets if t["type"] == "page"][0]
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")

    def _send(self, msg):
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.to_w, data)
            data = data[n:]

    def _recv(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            r, _, _ = select.select([self.from_r], [], [], left)
            if r:
                chunk = os.read(self.from_r, 65536)
                if not chunk:
                    raise RuntimeError("chromium exited:\n" + self.output())
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.time() + timeout
        while True:
            m = self._recv(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            # events (console messages, page lifecycle) are not needed: dropped

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def eval(self, expr):
        """Evaluates a JavaScript expression in the page; returns its value (JSON-able)."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("page threw: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def wait_for(self, expr, timeout=15.0, what=None):
        """Polls expr until it is truthy; returns its value. Fails with the page's DOM."""
        deadline = time.time() + timeout
        # a DOM node comes back by value as {}, which Python finds false: answer true for it
        probe = "(() => { const v = (%s); return v instanceof Node ? true : v; })()" % expr
        while time.time() < deadline:
            try:
                v = self.eval(probe)
            except RuntimeError:
                v = None
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s; page:\n%s" % (what or expr, self.dom()))

    def dom(self):
        return self.eval("document.documentElement.outerHTML")

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except Exception:
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            os.close(self.to_w)
            os.close(self.from_r)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)
