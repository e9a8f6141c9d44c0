"""Serving the web app: the command line, and the server's life in a ``with`` block."""

import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from emotion_cnn import serve


def test_streamlit_command_passes_port_address_and_model_to_the_app():
    command = serve.streamlit_command(port=8600, address="0.0.0.0", model="m.keras", headless=True)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert command[4] == str(serve.APP) and serve.APP.is_file()
    assert command[command.index("--server.port") + 1] == "8600"
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.headless") + 1] == "true"
    # the app reads --model from its own arguments, which follow "--"
    assert command[-3:] == ["--", "--model", "m.keras"]
    plain = serve.streamlit_command(port=8600)
    assert "--" not in plain and "--server.headless" not in plain


def test_serving_app_answers_while_the_block_runs_and_stops_after(tiny_model):
    with serve.serving_app(model=tiny_model[0]) as url:
        with urllib.request.urlopen(url + "_stcore/health", timeout=5) as reply:
            assert reply.read() == b"ok"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "_stcore/health", timeout=2)


def test_serving_app_reports_a_server_that_exits(monkeypatch):
    monkeypatch.setattr(serve, "streamlit_command", lambda **_: [
        sys.executable, "-c", "import sys; print('no such model: m.keras'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match=r"exited with code 3: no such model: m\.keras"):
        with serve.serving_app(model="m.keras"):
            pytest.fail("the block must not run")


def test_serving_app_gives_up_on_a_silent_server_and_stops_it(monkeypatch):
    monkeypatch.setattr(serve, "streamlit_command", lambda **_: [
        sys.executable, "-c", "import time; time.sleep(60)"])
    children = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        children.append(real_popen(*args, **kwargs))
        return children[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        with serve.serving_app(model="m.keras", timeout=1):
            pytest.fail("the block must not run")
    assert len(children) == 1 and children[0].poll() is not None
