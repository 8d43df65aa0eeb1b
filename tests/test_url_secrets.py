"""Secrets in URLs (issue 36, class 4): a judge URL's credentials (``user:pass@``) and query key never
enter a spec, a record, a config hash or a log line, from any source (``--suite-opt``, a config file,
the environment, an exception's text), and a URL with a query is joined with urllib.parse semantics
(the query after the request path, not before it)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.redact import endpoint_parts, has_secret, public_url, redact

SECRET_PARTS = ("hunter2", "sk-live-123", "alice")
JUDGE_ENV = ("HARNESS_JUDGE_BASE_URL", "HARNESS_JUDGE_MODEL", "HARNESS_JUDGE_API_KEY", "OPENAI_API_KEY",
             "HARNESS_JUDGE_BASE_URL_FROM_OPTION")


def _clean(text: str) -> bool:
    return not any(part in text for part in SECRET_PARTS)


@pytest.mark.parametrize("url, public", [
    ("https://alice:hunter2@judge.example:8443/v1/?key=sk-live-123#f", "https://judge.example:8443/v1"),
    ("http://judge.example/v1?api_key=sk-live-123", "http://judge.example/v1"),
    ("http://alice@judge.example/v1", "http://judge.example/v1"),
    ("http://[::1]:8000/v1?key=sk-live-123", "http://[::1]:8000/v1"),
    ("ray://alice:hunter2@head:10001", "ray://head:10001"),
])
def test_public_url_and_redact_drop_every_secret_part(url: str, public: str):
    assert has_secret(url) and public_url(url) == public
    text = f"ConnectError: cannot reach {url} (tried 3 times)\n  File 'x.py', in {url}"
    assert _clean(redact(text)) and public in redact(text)
    assert redact("see http://judge.example/v1 for more") == "see http://judge.example/v1 for more"
    assert not has_secret("http://judge.example/v1") and not has_secret("not a url")


def test_a_query_url_is_split_for_the_client():
    assert endpoint_parts("http://h:1/v1?key=sk-live-123&x=") == ("http://h:1/v1", {"key": "sk-live-123", "x": ""})


class _Recorder:
    """A loopback OpenAI-compatible endpoint that records each request's path and headers."""

    def __init__(self):
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                owner.paths.append(self.path)
                owner.auth.append(self.headers.get("Authorization"))
                self._reply({"object": "list", "data": []})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.paths.append(self.path)
                owner.auth.append(self.headers.get("Authorization"))
                self._reply({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Rating: [[7]]"},
                                          "finish_reason": "stop"}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]


@pytest.fixture
def endpoint():
    server = _Recorder()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_a_query_url_is_joined_before_the_query(endpoint):
    from suites.mt_bench.judges import OpenAIJudge

    judge = OpenAIJudge("m", f"http://alice:hunter2@127.0.0.1:{endpoint.port}/v1?key=sk-live-123", None,
                        max_retries=0, parallel=1)
    judge.check()
    assert judge.complete([("system", "user")]) == ["Rating: [[7]]"]
    assert endpoint.paths == ["/v1/models?key=sk-live-123", "/v1/chat/completions?key=sk-live-123"]
    assert judge.identity.base_url == f"http://127.0.0.1:{endpoint.port}/v1" and _clean(json.dumps(judge.identity.to_dict()))


def _plan(monkeypatch, suite_options: dict, env: dict):
    from harness.pipeline.plan import GridRequest, plan_grid

    for var in JUDGE_ENV:  # set, then removed: monkeypatch removes what the plan sets there again
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return plan_grid(GridRequest(suite="mt-bench", adapters="lora", preset="cpu", suite_options=suite_options),
                     cuda_available=False)[0]


SECRET_URL = "http://alice:hunter2@judge.local:8000/v1?key=sk-live-123"


@pytest.mark.parametrize("source", ["suite-opt", "environment"])
def test_no_secret_in_the_spec_or_the_hash_from_any_source(source: str, monkeypatch):
    import os

    from harness.spec import RunSpec
    from suites.mt_bench.options import MTBenchOptions, endpoint_url

    if source == "suite-opt":
        spec = _plan(monkeypatch, {"judge": "openai", "judge_base_url": SECRET_URL}, {})
    else:
        spec = _plan(monkeypatch, {"judge": "openai"}, {"HARNESS_JUDGE_BASE_URL": SECRET_URL})
    assert spec.suite_options["judge_base_url"] == "http://judge.local:8000/v1"
    assert _clean(json.dumps(spec.to_dict())) and _clean(json.dumps(spec.identity()))
    assert _clean(spec.run_id)
    # the calls still use the full URL (this process's environment, inherited by pool workers)
    assert endpoint_url(MTBenchOptions.from_options(spec.suite_options), os.environ) == SECRET_URL
    plain = _plan(monkeypatch, {"judge": "openai", "judge_base_url": "http://judge.local:8000/v1"}, {})
    assert spec.config_hash == plain.config_hash  # one judge, one hash, whatever its credentials
    assert RunSpec.from_dict(spec.to_dict()).config_hash == spec.config_hash


def test_a_config_file_suite_opt_is_stripped_too(tmp_path: Path, monkeypatch, capsys):
    for var in JUDGE_ENV:
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"suite_opt": {"judge": "openai", "judge_base_url": "http://alice:hunter2@127.0.0.1:9/v1?key=sk-live-123"}}))
    code = main(["run", "--suite", "mt-bench", "--adapters", "lora", "--preset", "cpu", "--results-dir",
                 str(tmp_path / "r"), "--config", str(config), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be reached" in err  # the dead endpoint, named by its public form only
    assert "http://127.0.0.1:9/v1" in err and _clean(err), err


def test_an_option_url_with_a_secret_that_no_suite_strips_is_refused(monkeypatch):
    from harness.pipeline.plan import refuse_secrets

    with pytest.raises(HarnessError) as caught:
        refuse_secrets("--opt", {"init_from": "https://alice:hunter2@weights.example/x?token=sk-live-123"})
    assert "credentials or a query" in str(caught.value) and _clean(str(caught.value))
    refuse_secrets("--opt", {"init_from": "https://weights.example/x"})


def test_a_failed_runs_record_holds_no_secret(monkeypatch, tmp_path: Path):
    """An exception whose text carries a URL with credentials: the record's message and traceback show
    its public form."""
    import importlib

    from harness.pipeline import runner
    from harness.pipeline.plan import GridRequest, plan_grid

    toy = importlib.import_module("tests.toy_faults")
    try:
        spec = plan_grid(GridRequest(suite="toy-faults", adapters="head", tasks="ok", seeds=(1,), preset="cpu"),
                         cuda_available=False)[0]

        def boom(self):
            raise ConnectionError(f"cannot reach {SECRET_URL}")

        monkeypatch.setattr("harness.pipeline.train.TrainingRun.run", boom)
        record = runner.execute_run(spec, runner.ExecutionOptions(device="cpu", progress=False))
    finally:
        toy.unregister()
    assert record["status"] == "failed"
    assert "http://judge.local:8000/v1" in record["error"]["message"]
    assert _clean(record["error"]["message"]) and _clean(record["error"]["traceback"])


def test_the_basic_auth_of_a_url_still_reaches_the_endpoint(endpoint):
    from suites.mt_bench.judges import OpenAIJudge

    judge = OpenAIJudge("m", f"http://alice:hunter2@127.0.0.1:{endpoint.port}/v1", None, max_retries=0, parallel=1)
    judge.complete([("s", "u")])
    expected = "Basic " + base64.b64encode(b"alice:hunter2").decode()
    assert endpoint.auth[-1] in (expected, "Bearer EMPTY")  # the client's own key header may win
