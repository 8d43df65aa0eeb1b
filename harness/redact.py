"""Secrets in URLs: credentials (``user:pass@``), a query string (``?api_key=...``) and a fragment never
enter a run's spec, record, config hash or log line, whatever the source of the URL (a suite option, a
config file, the environment, an exception's text). Pure Python.

``public_url`` is what may be shown; ``has_secret`` says whether a URL carries anything it drops;
``redact`` replaces every such URL inside a text (an error message, a traceback) by its public form;
``endpoint_parts`` splits a URL for an HTTP client that joins paths onto its base (the query goes as
the client's default query, so that ``base?k=v`` + ``/chat/completions`` is not joined into
``base?k=v/chat/completions``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# scheme://anything up to whitespace or a quote: the URLs inside free text
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment, its path without a trailing slash."""
    if not url:
        return ""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparseable port or host: show nothing of it beyond the scheme
        return f"{url.split(':', 1)[0]}://<unparseable>" if "://" in url else "<unparseable>"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def has_secret(url: Any) -> bool:
    """Whether ``url`` (a string with a scheme) carries credentials, a query or a fragment."""
    if not isinstance(url, str) or "://" not in url:
        return False
    try:
        parts = urlsplit(url.strip())
        return bool(parts.username or parts.password or parts.query or parts.fragment or "@" in parts.netloc)
    except ValueError:
        return True


def redact(text: Any) -> Any:
    """``text`` with every URL that carries a secret replaced by its public form (non-strings as given)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URL.sub(lambda m: public_url(m.group()) if has_secret(m.group()) else m.group(), text)


def endpoint_parts(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without query and fragment, its query as a dict): for a client that joins request paths
    onto a base URL and takes the query separately (openai's ``default_query``)."""
    parts = urlsplit(url.strip())
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, dict(parse_qsl(parts.query, keep_blank_values=True))
