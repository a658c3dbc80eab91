"""pytest fixtures: real agents started per test module (`agent`) or per test (`fresh_agent`,
`server_agent` with a persistent data dir for kill -9/restart tests)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentlib import Agent  # noqa: E402


def _start(request, **kw):
    a = Agent(**kw)
    a.start()

    def fin():
        try:
            code = a.stop()
        finally:
            a.kill()
        # A clean shutdown must exit 0; under ASan a leak report makes it non-zero.
        assert code == 0, "agent exited with %s on SIGTERM:\n%s" % (code, a.log())
    request.addfinalizer(fin)
    return a


@pytest.fixture(scope="module")
def agent(request):
    """A `concord agent -dev` shared by the tests of one module."""
    return _start(request, node="dev-" + request.module.__name__.split(".")[-1][:20])


@pytest.fixture
def fresh_agent(request):
    """A `-dev` agent of this test's own."""
    return _start(request, node="fresh")


@pytest.fixture
def server_agent(request):
    """A single server with -bootstrap-expect=1 and a data dir on disk."""
    return _start(request, dev=False, node="server1")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name in ("agent", "fresh_agent", "server_agent"):
            a = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if a is not None:
                rep.sections.append(("%s log" % name, a.log()[-8000:]))
