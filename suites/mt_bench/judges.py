"""MT-Bench judges: who judged (``JudgeIdentity``, part of every record and cache key) and the backends
that produce judgments, as FastChat's gen_judgment.py asks for them.

Backends: any OpenAI-compatible chat endpoint (temperature 0, max_tokens 2048 as FastChat), or a local
Hugging Face causal LM (greedy). A judge reply the client cannot use (an HTTP error after the retries,
an HTML or empty body, JSON without ``choices``) becomes a judgment text starting with FastChat's
``$ERROR$`` and the reason (``judge_error``), which judging scores -1 and never caches; failures no retry
can fix (unreachable endpoint, refused key, unknown model) raise one-line errors instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.redact import endpoint_parts, public_url, redact

__all__ = ["public_url"]  # re-exported: the judge's URL as records show it (harness.redact)

API_ERROR_OUTPUT = "$ERROR$"  # FastChat's judgment text when the API failed: scored -1, never cached


class JudgeUnreachableError(HarnessError):
    """The judge endpoint cannot be reached (connection refused, DNS, timeout)."""


def judge_error(reason: str) -> str:
    """The judgment text of a failed judge call: FastChat's $ERROR$ and why (one line, bounded)."""
    return f"{API_ERROR_OUTPUT} {' '.join(redact(reason).split())[:300]}"


def is_judge_error(reply: Any) -> bool:
    return not isinstance(reply, str) or reply.startswith(API_ERROR_OUTPUT)


def reply_text(response: Any) -> str | None:
    """The message content of a chat-completions response; None for anything else (a body the client
    returned as a string, JSON without ``choices``, an empty list, a message without text content)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    content = getattr(getattr(choices[0], "message", None), "content", None)
    return content if isinstance(content, str) else None


@dataclass(frozen=True)
class JudgeIdentity:
    """Who judged: part of the record and of every cache key. Never holds the API key."""

    backend: str  # "openai" (any OpenAI-compatible endpoint) or "hf" (a local causal LM)
    model: str
    base_url: str = ""  # public_url() of the endpoint; "" for a local model
    settings: str = ""  # decoding settings that change judgments (temperature, max tokens)
    note: str = ""  # e.g. that a small local model is a weak judge

    @property
    def key(self) -> str:
        return f"{self.backend}|{self.model}|{self.base_url}|{self.settings}"

    @property
    def file_stem(self) -> str:
        """FastChat names judgment files after the judge model: model_judgment/<judge>_single.jsonl."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.model).strip("_") or "judge"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class JudgeBackend(Protocol):
    identity: JudgeIdentity

    def check(self) -> None:
        """Raise a one-line HarnessError when the judge cannot be used (before any training)."""

    def complete(self, conversations: list[tuple[str, str]]) -> list[str]:
        """The judge's reply to each (system prompt, user prompt); API_ERROR_OUTPUT for a failed call."""


class OpenAIJudge:
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, ...)."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, *, max_tokens: int = 2048,
                 timeout: float = 120.0, max_retries: int = 3, parallel: int = 4):
        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.parallel = max(1, parallel)
        self.identity = JudgeIdentity("openai", model, public_url(self.base_url), f"temperature=0,max_tokens={max_tokens}")
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import openai

            # a local server needs no key, but the client insists on one. The client appends request paths
            # to the base URL's text, query included: the query goes as its default query instead
            base, query = endpoint_parts(self.base_url)
            self._client = openai.OpenAI(base_url=base, api_key=self.api_key or "EMPTY", default_query=query or None,
                                         timeout=self.timeout, max_retries=self.max_retries)
        return self._client

    def _fail(self, exc: Exception) -> HarnessError:
        """A one-line error for the failures that no retry can fix; None for the rest."""
        import openai

        where = self.identity.base_url
        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            return JudgeUnreachableError(f"the MT-Bench judge endpoint {where} cannot be reached ({type(exc).__name__}); "
                                         "check HARNESS_JUDGE_BASE_URL / --suite-opt judge_base_url")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return HarnessError(f"the MT-Bench judge endpoint {where} refused the API key (HTTP {exc.status_code}); "
                                "set HARNESS_JUDGE_API_KEY")
        if isinstance(exc, openai.NotFoundError):
            return HarnessError(f"the MT-Bench judge endpoint {where} does not serve model '{self.model}' "
                                "(HTTP 404); check HARNESS_JUDGE_MODEL / --suite-opt judge_model")
        return HarnessError(f"the MT-Bench judge endpoint {where} failed: {type(exc).__name__}: {redact(str(exc))[:200]}")

    def check(self) -> None:
        """One cheap request without retries: list the models; an endpoint without /models gets a
        one-token chat completion instead."""
        import openai

        client = self.client().with_options(max_retries=0, timeout=min(self.timeout, 15.0))
        try:
            client.models.list()
            return
        except openai.NotFoundError:
            pass
        except openai.OpenAIError as exc:
            raise self._fail(exc) from None
        try:
            client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        except openai.OpenAIError as exc:
            raise self._fail(exc) from None

    def _one(self, system: str, user: str) -> str:
        import openai

        try:
            response = self.client().chat.completions.create(
                model=self.model, n=1, temperature=0, max_tokens=self.max_tokens,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
                openai.NotFoundError) as exc:
            raise self._fail(exc) from None
        except openai.APIStatusError as exc:  # HTTP 4xx/5xx after the retries, e.g. a prompt too long
            return judge_error(f"HTTP {exc.status_code} {type(exc).__name__}")
        except Exception as exc:  # a body the client cannot decode (empty, HTML, cut): this judgment failed
            return judge_error(f"unreadable response: {type(exc).__name__}: {exc}")
        text = reply_text(response)
        if text is None:
            return judge_error(f"malformed response without choices[0].message.content: {str(response)[:120]}")
        return text

    def complete(self, conversations: list[tuple[str, str]]) -> list[str]:
        if self.parallel == 1 or len(conversations) <= 1:
            return [self._one(s, u) for s, u in conversations]
        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(lambda c: self._one(*c), conversations))


class HFJudge:
    """A local Hugging Face causal LM as judge (greedy), loaded on first use.

    ``source`` resolves a catalogue name or folder to weights (suites._shared.models.model_source); it is
    passed in so this module does not depend on the instruction suite. ``prefill`` starts the judge's reply
    (e.g. RATING_PREFILL): a small model that never writes FastChat's ``[[rating]]`` on its own then only
    has to write the number. The reply, prefill included, is parsed as usual.
    """

    def __init__(self, model: str, source: Callable[[str], str], device: Any, *, max_new_tokens: int = 2048,
                 batch_size: int = 4, note: str = "", prefill: str = ""):
        self.model_name = model
        self.source = source
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.prefill = prefill
        settings = f"greedy,max_new_tokens={max_new_tokens}" + (f",prefill={json.dumps(prefill)}" if prefill else "")
        self.identity = JudgeIdentity("hf", model, "", settings, note)
        self._loaded: tuple[Any, Any] | None = None

    def check(self) -> None:
        self.source(self.model_name)  # raises a one-line HarnessError for an unknown or missing model

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = self.source(self.model_name)
            cuda_bf16 = getattr(self.device, "type", "") == "cuda" and torch.cuda.is_bf16_supported()
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if cuda_bf16 else torch.float32)
            model.to(self.device).eval()
            tokenizer = AutoTokenizer.from_pretrained(path)
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._loaded = (model, tokenizer)
        return self._loaded

    def close(self) -> None:
        self._loaded = None

    def render(self, tokenizer: Any, system: str, user: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + self.prefill
        return f"{system}\n\n{user}\n\n{self.prefill}"

    def complete(self, conversations: list[tuple[str, str]]) -> list[str]:
        import torch

        model, tokenizer = self.load()
        prompts = [self.render(tokenizer, s, u) for s, u in conversations]
        templated = bool(getattr(tokenizer, "chat_template", None))
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        out: list[str] = []
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=not templated).to(self.device)
                with torch.no_grad():
                    generated = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                               temperature=None, top_p=None, top_k=None,
                                               pad_token_id=tokenizer.pad_token_id)
                out += tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        finally:
            tokenizer.padding_side = side
        return [(self.prefill + t).strip() for t in out]
