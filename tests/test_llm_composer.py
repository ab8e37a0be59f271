import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lib_stylus.characters import GENERIC_SUBJECT
from lib_stylus.composer import Composer
from lib_stylus.llm_composer import LLMComposer
from compose_fixtures import build_library

REPLIES = {}  # path -> (delay seconds, reply content)
SEEN = []
HANDLED = []  # one item per request whose handling (error handling included) is over


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append((self.path, self.headers.get("Authorization"), body))
        delay, content = REPLIES[self.path.split("/")[1]]
        time.sleep(delay)
        if content is None:
            self.send_response(500)
            self.end_headers()
            return
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    """A client that gave up (the timeout cases) is expected: its broken pipe is not a failure to print."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def shutdown_request(self, request):
        super().shutdown_request(request)
        HANDLED.append(request)


@pytest.fixture(scope="module")
def server():
    srv = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return Composer(build_library(str(tmp_path_factory.mktemp("lib"))))


PROMPT = "a boy fishing at a lake, with a robot, Street Fighter character"


def llm(server, local, mode, timeout=5.0):
    return LLMComposer(local, f"{server}/{mode}/v1", "test-model", api_key="k", timeout=timeout)


def test_success_uses_llm_choices_and_keeps_rules(server, local):
    # The local composer's rules judge each choice with the words of the task it was chosen for: a
    # character is no pick for "with a robot", but "Street Fighter character" asks for one (as it does
    # of the local composer, which picks chun_li there)
    REPLIES["ok"] = (0, 'Reasoning... ```json\n{"tasks": [{"task": "with a robot", "adapters": ["robot_mech",'
                        ' "chun_li"]}, {"task": "Street Fighter character", "adapters": ["chun_li",'
                        ' "sf_style", "nope"]}]}\n```')
    comp = llm(server, local, "ok").compose(PROMPT, "sd1")
    assert comp.composer == "llm" and not comp.fallback
    assert comp.stems == ["robot_mech", "chun_li", "sf_style"]
    assert "chun_li" in local.compose(PROMPT, "sd1").stems
    assert comp.tasks[0].span == (PROMPT.index("with a robot"), PROMPT.index("with a robot") + 12)
    reasons = {d.stem: d.reason for d in comp.drops}
    assert reasons["chun_li"].startswith(GENERIC_SUBJECT)
    assert reasons["nope"] == "not among the candidates offered"
    path, auth, body = SEEN[-1]
    assert path == "/ok/v1/chat/completions" and auth == "Bearer k" and body["model"] == "test-model"
    assert "robot_mech" in body["messages"][1]["content"]


@pytest.mark.parametrize("mode,reply,delay,why", [
    ("malformed", "I would pick the robot one.", 0, "ValueError"),
    ("badshape", '{"tasks": "robot"}', 0, "ValueError"),
    ("http500", None, 0, "HTTPError"),
    ("slow", '{"tasks": []}', 1.5, "timed out"),
])
def test_failures_fall_back_to_local(server, local, mode, reply, delay, why):
    REPLIES[mode] = (delay, reply)
    comp = llm(server, local, mode, timeout=0.5).compose(PROMPT, "sd1")
    assert comp.composer == "local" and why in comp.fallback
    assert comp.stems == local.compose(PROMPT, "sd1").stems


def test_a_client_that_gave_up_leaves_no_traceback(server, local, capsys):
    """Issue 9 item 19: a reply after the client's timeout printed a BrokenPipeError traceback."""
    REPLIES["late"] = (1.0, '{"tasks": []}')
    before = len(HANDLED)
    comp = llm(server, local, "late", timeout=0.3).compose(PROMPT, "sd1")
    assert comp.composer == "local" and "timed out" in comp.fallback
    deadline = time.monotonic() + 20
    while len(HANDLED) == before and time.monotonic() < deadline:  # the late reply is written, then it ends
        time.sleep(0.05)
    assert len(HANDLED) > before
    err = capsys.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err
