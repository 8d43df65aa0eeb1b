"""MT-Bench judging: FastChat's prompts and rating parsing, the OpenAI-compatible judge against a fake
server on loopback, the judgment cache, and score aggregation against a hand-worked example."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import HarnessError
from suites.mt_bench.answers import (
    JUDGE_PROMPT_FILE,
    QUESTION_FILE,
    REFERENCE_DIR,
    load_questions,
    load_reference_answers,
)
from suites.mt_bench.judges import API_ERROR_OUTPUT, JudgeUnreachableError, OpenAIJudge, public_url
from suites.mt_bench.judging import (
    JudgmentCache,
    aggregate_scores,
    build_matches,
    drop_model_lines,
    judge_matches,
    load_judge_prompts,
    parse_rating,
    prompt_name,
    read_rating,
)

MTBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtbench"


@pytest.fixture(scope="module")
def questions():
    return {q.question_id: q for q in load_questions(MTBENCH / QUESTION_FILE)}


@pytest.fixture(scope="module")
def prompts():
    return load_judge_prompts(MTBENCH / JUDGE_PROMPT_FILE)


@pytest.fixture(scope="module")
def references():
    return load_reference_answers(MTBENCH / REFERENCE_DIR / "gpt-4.jsonl")


# ---------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judgment", "expected"),
    [
        ("The answer is helpful. Rating: [[7]]", 7),
        ("Rating: [[8.5]]", 8.5),
        ("I would rate it [6] out of 10.", 6),  # FastChat's fallback pattern
        ("[[3]] at first, then [[9]]", 3),  # the first match wins
        ("[2] in passing, but Rating: [[9]]", 9),  # [[x]] is searched before [x]
        ("Rating: 7/10", -1),
        ("Verdict: [[A]]", -1),
        ("", -1),
        ("Rating: [[07]]", 7),  # ast.literal_eval raised SyntaxError
        ("Rating: [[10]]", 10),
        ("Rating: [[1.0]]", 1.0),
        ("Rating: [[7.]]", 7.0),
        ("Rating: [[11]]", -1),  # off the 1-10 scale
        ("Rating: [[0]]", -1),
        ("Rating: [[10.5]]", -1),
        ("Rating: [[1000000000]]", -1),
        ("Rating: [[1e9]]", -1),
        ("Rating: [[" + "9" * 5000 + "]]", -1),  # ast.literal_eval: SyntaxError / int digits limit
        ("Rating: [[" + "0" * 5000 + "7]]", -1),
        ("Rating: [[-3]]", -1),
        ("Rating: [[__import__('os').system('true')]]", -1),
        ("[[11]] then [[7]]", -1),  # FastChat's rule: the first rating counts, and it is off the scale
    ],
)
def test_parse_rating(judgment, expected):
    assert parse_rating(judgment) == expected
    rating, status = read_rating(judgment)
    assert rating == expected and status == ("ok" if expected != -1 else status)
    assert type(rating) is type(expected)


def test_rating_status_says_why():
    assert read_rating("no number") == (-1, "no_rating")
    assert read_rating("[[11]]") == (-1, "off_scale")
    assert read_rating("[[" + "9" * 5000 + "]]") == (-1, "off_scale")
    assert read_rating(None) == (-1, "no_rating")  # type: ignore[arg-type]


def test_public_url_hides_credentials_and_query():
    assert public_url("https://user:secret@judge.example:8443/v1/?api_key=sk-x#frag") == "https://judge.example:8443/v1"
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


# ---------------------------------------------------------------------------------------------------
# prompt construction (real FastChat prompts, questions and reference answers)
# ---------------------------------------------------------------------------------------------------


def test_prompt_choice_follows_fastchat():
    assert prompt_name("writing", 1) == "single-v1"
    assert prompt_name("writing", 2) == "single-v1-multi-turn"
    for category in ("math", "reasoning", "coding"):
        assert prompt_name(category, 1) == "single-math-v1"
        assert prompt_name(category, 2) == "single-math-v1-multi-turn"


def test_every_reference_category_question_has_a_reference(questions, references):
    needing = {qid for qid, q in questions.items() if q.category in ("math", "reasoning", "coding")}
    assert len(needing) == 30
    assert needing <= set(references)


def test_math_prompts_insert_the_reference_answers(questions, prompts, references):
    q = questions[111]
    assert q.category == "math"
    answers = {111: ["ANSWER-ONE", "ANSWER-TWO"]}
    turn1, turn2 = build_matches([q], answers, prompts, references)
    ref1, ref2 = references[111]
    assert turn1.prompt.name == "single-math-v1" and turn1.turn == 1
    assert turn1.system == "You are a helpful assistant."
    assert q.turns[0] in turn1.user and "ANSWER-ONE" in turn1.user and ref1 in turn1.user
    assert "[The Start of Reference Answer]" in turn1.user
    assert "ANSWER-TWO" not in turn1.user and ref2 not in turn1.user
    assert turn2.prompt.name == "single-math-v1-multi-turn" and turn2.turn == 2
    assert "focus on the assistant's answer to the second question" in turn2.system
    for text in (q.turns[0], q.turns[1], "ANSWER-ONE", "ANSWER-TWO", ref1, ref2):
        assert text in turn2.user
    assert turn2.user.index(q.turns[0]) < turn2.user.index(q.turns[1])


def test_general_prompts_have_no_reference_and_turn2_shows_both_turns(questions, prompts, references):
    q = questions[81]
    assert q.category == "writing"
    turn1, turn2 = build_matches([q], {81: ["FIRST", "SECOND"]}, prompts, references)
    assert turn1.prompt.name == "single-v1"
    assert turn1.user.startswith("[Instruction]\nPlease act as an impartial judge")
    assert "Reference" not in turn1.user and "FIRST" in turn1.user and "SECOND" not in turn1.user
    assert turn2.prompt.name == "single-v1-multi-turn"
    assert "Reference" not in turn2.user
    conversation = turn2.user
    assert conversation.index(q.turns[0]) < conversation.index("FIRST") < conversation.index(q.turns[1]) < conversation.index("SECOND")
    assert "### Assistant A:\nSECOND" in conversation


def test_missing_reference_is_an_error(questions, prompts):
    with pytest.raises(HarnessError, match="no reference answer"):
        build_matches([questions[111]], {111: ["a", "b"]}, prompts, references={})


# ---------------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------------


def test_aggregate_scores_hand_worked():
    categories = {81: "writing", 101: "reasoning", 111: "math", 121: "coding"}
    rows = [(81, 1, 8), (81, 2, 6), (101, 1, 3), (101, 2, -1), (111, 1, -1), (111, 2, -1), (121, 1, 10), (121, 2, 5)]
    judgments = [{"question_id": q, "turn": t, "score": s} for q, t, s in rows]
    scores = aggregate_scores(judgments, categories)
    # valid: 8, 6, 3, 10, 5 -> 32 / 5; turn 1: 8, 3, 10; turn 2: 6, 5
    assert scores["overall"] == pytest.approx(6.4)
    assert scores["turn1"] == pytest.approx(7.0)
    assert scores["turn2"] == pytest.approx(5.5)
    assert scores["category_writing"] == pytest.approx(7.0)
    assert scores["category_reasoning"] == pytest.approx(3.0)
    assert scores["category_coding"] == pytest.approx(7.5)
    assert math.isnan(scores["category_math"])  # both turns unparseable: excluded, not zero
    assert (scores["judgments"], scores["judgments_valid"], scores["judgments_unparseable"]) == (8, 5, 3)


def test_aggregate_with_nothing_valid_is_nan_not_zero():
    scores = aggregate_scores([{"question_id": 81, "turn": 1, "score": -1}], {81: "writing"})
    assert math.isnan(scores["overall"]) and scores["judgments_valid"] == 0


# ---------------------------------------------------------------------------------------------------
# a fake OpenAI-compatible judge on loopback
# ---------------------------------------------------------------------------------------------------


class FakeJudgeServer:
    """Serves /v1/models and /v1/chat/completions; replies with ``reply`` (or ``status``), records requests."""

    def __init__(self, reply: str = "The response is relevant and mostly accurate. Rating: [[7]]"):
        self.reply = reply
        self.status = 200
        # (request body, request number) -> (HTTP status, content type, raw body), or None for the default
        self.respond: Callable[[dict, int], tuple[int, str, bytes] | None] | None = None
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-judge", "object": "model", "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if server.respond is not None:
                    answer = server.respond(body, len(server.requests))
                    if answer is not None:
                        code, content_type, payload = answer
                        self.send_response(code)
                        self.send_header("Content-Type", content_type)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                if server.status != 200:
                    self._send(server.status, {"error": {"message": "bad request", "type": "invalid_request_error"}})
                    return
                self._send(200, {
                    "id": f"cmpl-{len(server.requests)}", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": server.reply}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_judge():
    server = FakeJudgeServer()
    yield server
    server.stop()


def dead_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


ANSWERS = {
    81: ["Aloha from Hawaii: a travel post.", "A travel post, all sentences starting with A."],
    111: ["The area is 3.", "The circle's area is 5 pi."],
    131: ["[5, 1, 3]", "[{\"rating\": 5}]"],
}


def test_end_to_end_judging_and_cache(tmp_path, fake_judge, questions, prompts, references):
    chosen = [questions[q] for q in ANSWERS]
    matches = build_matches(chosen, ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, "sk-test", max_tokens=2048, max_retries=0, parallel=2)
    judge.check()
    cache_file, judgment_file = tmp_path / "cache.jsonl", tmp_path / "model_judgment" / "fake-judge_single.jsonl"

    first = judge_matches(matches, judge, JudgmentCache(cache_file), "my-model", judgment_file)
    assert (first.asked, first.cached, first.errors) == (6, 0, 0)
    assert len(fake_judge.requests) == 6
    assert all(r["score"] == 7 for r in first.records)
    request = fake_judge.requests[0]
    assert request["model"] == "fake-judge" and request["temperature"] == 0 and request["max_tokens"] == 2048
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert {r["messages"][1]["content"] for r in fake_judge.requests} == {m.user for m in matches}
    assert all(h["authorization"] == "Bearer sk-test" for h in fake_judge.headers)

    lines = [json.loads(line) for line in judgment_file.read_text().splitlines()]
    assert len(lines) == 6
    assert set(lines[0]) == {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp",
                             "rating_status"}
    assert {line["rating_status"] for line in lines} == {"ok"}
    assert {(r["question_id"], r["turn"]) for r in lines} == {(q, t) for q in ANSWERS for t in (1, 2)}
    assert {tuple(r["judge"]) for r in lines} == {("fake-judge", "single-v1"), ("fake-judge", "single-v1-multi-turn"),
                                                   ("fake-judge", "single-math-v1"), ("fake-judge", "single-math-v1-multi-turn")}
    assert aggregate_scores(first.records, {q.question_id: q.category for q in chosen})["overall"] == 7.0

    # a new process (new cache object, same file): every judgment is a hit, the server sees nothing
    second = judge_matches(matches, judge, JudgmentCache(cache_file), "my-model")
    assert (second.asked, second.cached) == (0, 6)
    assert len(fake_judge.requests) == 6
    assert [r["score"] for r in second.records] == [r["score"] for r in first.records]

    # a changed turn-2 answer is one new judgment; a changed turn-1 answer changes both prompts
    changed = {**ANSWERS, 81: [ANSWERS[81][0], "A different second answer."]}
    third = judge_matches(build_matches(chosen, changed, prompts, references), judge, JudgmentCache(cache_file), "my-model")
    assert third.asked == 1 and len(fake_judge.requests) == 7
    changed = {**ANSWERS, 111: ["The area is 4.", ANSWERS[111][1]]}
    fourth = judge_matches(build_matches(chosen, changed, prompts, references), judge, JudgmentCache(cache_file), "my-model")
    assert fourth.asked == 2 and len(fake_judge.requests) == 9


def test_a_different_judge_does_not_share_the_cache(tmp_path, fake_judge, questions, prompts, references):
    chosen = [questions[81]]
    matches = build_matches(chosen, ANSWERS, prompts, references)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    judge_matches(matches, OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0), cache, "m")
    other = judge_matches(matches, OpenAIJudge("other-judge", fake_judge.base_url, None, max_retries=0), cache, "m")
    assert other.asked == 2 and len(fake_judge.requests) == 4


def test_unparseable_and_failed_judgments(tmp_path, fake_judge, questions, prompts, references):
    matches = build_matches([questions[81]], ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0, parallel=1)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    fake_judge.reply = "I cannot decide."
    report = judge_matches(matches, judge, cache, "m")
    assert [r["score"] for r in report.records] == [-1, -1] and report.errors == 0 and report.failed == 2
    assert [r["rating_status"] for r in report.records] == ["no_rating"] * 2
    assert len(cache) == 0  # only valid ratings are cached: a rerun asks again for the rest

    fake_judge.status = 400  # e.g. a prompt longer than the judge's context
    failed = judge_matches(build_matches([questions[111]], ANSWERS, prompts, references), judge, cache, "m")
    assert failed.errors == 2 and all(r["judgment"].startswith(API_ERROR_OUTPUT + " HTTP 400") for r in failed.records)
    assert len(cache) == 0  # errors are never cached: the next run asks again


def test_unreachable_judge_is_a_one_line_error():
    url = dead_url()
    judge = OpenAIJudge("gpt-4", url, "sk-test", max_retries=0)
    with pytest.raises(JudgeUnreachableError) as info:
        judge.check()
    message = str(info.value)
    assert "\n" not in message and "127.0.0.1" in message and "cannot be reached" in message
    assert "sk-test" not in message
    assert isinstance(info.value, HarnessError)


# ---------------------------------------------------------------------------------------------------
# a judge that answers badly: every reply is recorded as a failed judgment, none raises, none is cached
# ---------------------------------------------------------------------------------------------------


def completion(content: object) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fake-judge",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}).encode()


BAD_REPLIES = {
    "http-500": (500, "application/json", b'{"error": {"message": "internal error"}}'),
    "http-503-html": (503, "text/html", b"<html><body>Service Unavailable</body></html>"),
    "http-429": (429, "application/json", b'{"error": {"message": "rate limited"}}'),
    "html-200": (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
    "empty-body": (200, "application/json", b""),
    "cut-json": (200, "application/json", completion("Rating: [[7]]")[:40]),
    "json-without-choices": (200, "application/json", b'{"id": "x", "object": "chat.completion"}'),
    "empty-choices": (200, "application/json", b'{"id": "x", "object": "chat.completion", "choices": []}'),
    "choices-null": (200, "application/json", b'{"id": "x", "choices": null}'),
    "choice-without-message": (200, "application/json", b'{"id": "x", "choices": [{"index": 0}]}'),
    "content-null": (200, "application/json", completion(None)),
    "content-number": (200, "application/json", completion(7)),
    "json-list": (200, "application/json", b"[1, 2, 3]"),
    "json-string": (200, "application/json", b'"Rating: [[7]]"'),
}


@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
def test_a_bad_judge_reply_is_a_recorded_judge_error(tmp_path, fake_judge, questions, prompts, references, kind):
    fake_judge.respond = lambda body, n: BAD_REPLIES[kind]
    matches = build_matches([questions[81]], ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0, timeout=10, parallel=1)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    judgment_file = tmp_path / "judgments.jsonl"
    report = judge_matches(matches, judge, cache, "m", judgment_file)
    assert report.errors == 2 and report.failed == 2 and len(cache) == 0
    assert all(r["score"] == -1 and r["rating_status"] == "judge_error" for r in report.records)
    assert all(r["judgment"].startswith(API_ERROR_OUTPUT) and len(r["judgment"]) < 400 for r in report.records)
    lines = [json.loads(line) for line in judgment_file.read_text().splitlines()]
    assert [line["rating_status"] for line in lines] == ["judge_error"] * 2
    scores = aggregate_scores(report.records, {81: "writing"})
    assert math.isnan(scores["overall"]) and scores["judgments_judge_error"] == 2


@pytest.mark.parametrize(
    ("reply", "status"),
    [("Rating: [[11]]", "off_scale"), ("Rating: [[1e9]]", "no_rating"), ("[[" + "9" * 5000 + "]]", "off_scale"),
     ("I refuse to rate.", "no_rating"), ("", "no_rating"), ("Rating: [[07]]", "ok")],
)
def test_ratings_are_read_without_evaluating_judge_text(tmp_path, fake_judge, questions, prompts, references,
                                                        reply, status):
    fake_judge.reply = reply
    matches = build_matches([questions[81]], ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0, parallel=1)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    report = judge_matches(matches, judge, cache, "m")
    assert [r["rating_status"] for r in report.records] == [status] * 2
    assert [r["score"] for r in report.records] == ([7, 7] if status == "ok" else [-1, -1])
    assert len(cache) == (2 if status == "ok" else 0)


def test_an_off_scale_rating_in_an_old_cache_is_asked_again(tmp_path, fake_judge, questions, prompts, references):
    matches = build_matches([questions[81]], ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0, parallel=1)
    cache_file = tmp_path / "cache.jsonl"
    cache = JudgmentCache(cache_file)
    for m in matches:  # what the old code cached: a rating of 1e9
        key = JudgmentCache.key(m.question.question_id, m.turn, judge.identity, list(m.answers), m.system, m.user)
        cache.put(key, {"judgment": "[[1000000000]]", "score": 1000000000})
    report = judge_matches(matches, judge, JudgmentCache(cache_file), "m")
    assert report.asked == 2 and [r["score"] for r in report.records] == [7, 7]


def test_a_backend_returning_the_wrong_number_of_replies_fails_those_judgments(tmp_path, questions, prompts, references):
    class Short:
        identity = OpenAIJudge("short", "http://127.0.0.1:9/v1", None).identity

        def complete(self, conversations):
            return ["Rating: [[5]]"]  # one reply for two prompts

    matches = build_matches([questions[81]], ANSWERS, prompts, references)
    report = judge_matches(matches, Short(), JudgmentCache(tmp_path / "c.jsonl"), "m")
    assert report.failed == 2 and report.errors == 2


def test_a_judge_failing_everything_is_given_up_on(tmp_path, fake_judge, questions, prompts, references):
    fake_judge.status = 500
    chosen = [questions[q] for q in ANSWERS]
    matches = build_matches(chosen, ANSWERS, prompts, references)
    judge = OpenAIJudge("fake-judge", fake_judge.base_url, None, max_retries=0, parallel=1)
    report = judge_matches(matches, judge, JudgmentCache(tmp_path / "c.jsonl"), "m", batch_size=1, give_up_after=2)
    assert len(fake_judge.requests) == 2 and report.asked == 2 and report.failed == 6
    assert sum("not asked" in r["judgment"] for r in report.records) == 4


def test_an_earlier_attempts_lines_are_replaced(tmp_path):
    path = tmp_path / "model_judgment" / "j_single.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"model": "run-a", "score": -1}) + "\n" + json.dumps({"model": "run-b", "score": 5})
                    + "\n" + '{"model": "run-a", "sco\n')
    drop_model_lines(path, "run-a")
    assert [json.loads(line)["model"] for line in path.read_text().splitlines()] == ["run-b"]
