"""Strings read from a record or a results folder are untrusted: the one place that makes them safe for
each output (issue 36).

A record is a JSON file anybody can drop into a store, so its ``suite``, ``task``, ``adapter``, model,
preset, option values, metric names, notes and error messages may hold anything. Every writer of the
project goes through this module before such a string reaches

- a file name: ``safe_filename`` (an allow-list of characters; a changed name becomes a slug plus a
  short hash of the original, so two hostile names never collide) and ``path_inside`` (the resolved
  path must stay inside the output folder, else ``UnsafePathError``);
- a CSV cell: ``csv_cell`` / ``csv_frame`` / ``csv_text`` (the OWASP rule against spreadsheet formulas:
  a string starting with ``= + - @``, TAB or CR gets a leading ``'``; numbers, and strings that are a
  plain number such as ``-0.5``, stay as they are);
- Markdown: ``markdown_text`` (``\\ | < > [ ] ! ` * _ ~`` escaped, ``< > &`` as entities, line breaks
  as spaces: no raw HTML, no links or remote images, no table break; ``markdown_paragraph`` escapes a
  leading ``# + - = 1.`` too);
- LaTeX: ``latex_text`` (the ten special characters, line breaks as spaces, characters pdflatex cannot
  set replaced);
- a terminal: ``terminal_text`` (ANSI/OSC escape sequences, C0 and C1 control characters and
  bidirectional overrides removed; ``\\n`` kept where allowed).

Every function removes control characters first, so no output carries an escape sequence.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:  # pandas only for the CSV helpers: the CLI's other commands import this module too
    import pandas as pd

# ESC [ ... final byte (CSI), ESC ] ... BEL or ESC \ (OSC), ESC P/X/^/_ ... ESC \ (DCS, SOS, PM, APC),
# other two-byte ESC sequences; the 8-bit forms (0x9b CSI, 0x9d OSC) too
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 except TAB/LF/CR (handled by the callers), DEL, C1; Unicode bidi embeddings/overrides/isolates,
# line/paragraph separators, zero-width and BOM characters that can hide or reorder text
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_BREAKS = re.compile(r"\r\n|[\r\n\t\v\f]")


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def strip_controls(value: Any, *, keep_newlines: bool = False) -> str:
    """The text without escape sequences and control characters; line breaks (CR, LF, TAB) become
    spaces unless ``keep_newlines`` (then LF is kept, CR and TAB become spaces)."""
    text = _ESCAPE_SEQUENCE.sub("", _text(value))
    text = _CONTROL.sub("", text)
    if keep_newlines:
        return text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _BREAKS.sub(" ", text)


def terminal_text(value: Any, *, keep_newlines: bool = True) -> str:
    """What may be printed to a terminal: no escape sequence, no control character (``\\n`` kept by
    default: callers print multi-line tables)."""
    return strip_controls(value, keep_newlines=keep_newlines)


# -------------------------------------------------------------------------------------------- file names

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80


class UnsafePathError(HarnessError):
    """A file name built from a record would leave the output folder."""


def safe_filename(value: Any) -> str:
    """A file-name component made of ``A-Z a-z 0-9 . _ -`` only, never empty, ``.``/``..`` or hidden,
    at most ``MAX_NAME`` characters. A name already like that is kept; any other becomes a slug plus
    the first 8 hex digits of the SHA-256 of the original (``evil-path-3f2a9c1b``), so two different
    hostile names never share a file."""
    text = _text(value)
    if _SAFE_NAME.fullmatch(text) and not text.startswith((".", "-")) and len(text) <= MAX_NAME:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    slug = _UNSAFE_CHARS.sub("-", text).strip(".-_")[: MAX_NAME - 9] or "x"
    return f"{slug}-{digest}"


def is_safe_filename(name: Any) -> bool:
    """Whether ``name`` is a plain file name a writer may use: only ``A-Z a-z 0-9 . _ -``, not hidden,
    not ``.``/``..``, at most 200 characters (names joined from ``safe_filename`` parts)."""
    return (isinstance(name, str) and bool(_SAFE_NAME.fullmatch(name)) and not name.startswith((".", "-"))
            and len(name) <= 200)


def path_inside(root: str | Path, name: str) -> Path:
    """``root / name`` after checking, with both resolved (symlinks followed), that it stays inside
    ``root``; ``UnsafePathError`` otherwise. ``name`` should come from ``safe_filename``: this is
    the second guard."""
    base = Path(root).resolve()
    target = (base / name).resolve()
    if target == base or base not in target.parents:
        raise UnsafePathError(f"refusing to write {terminal_text(name, keep_newlines=False)!r}: it is not a "
                              f"file inside {base}")
    return target


# -------------------------------------------------------------------------------------------------- CSV

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value safe for a CSV cell a spreadsheet opens: non-strings unchanged (a negative number stays a
    number); a string loses its escape sequences and control characters (line breaks are kept: the CSV
    writer quotes them), and one starting with ``= + - @``, TAB or CR gets a leading ``'`` unless it is
    a plain number such as ``-0.5`` or ``+1.20``."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("\t", "\r"):
        return "'" + strip_controls(value, keep_newlines=True)
    text = strip_controls(value, keep_newlines=True)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every string cell and column name through ``csv_cell``."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """The CSV text of a frame (no index), every string neutralised."""
    return csv_frame(frame).to_csv(index=False)


def csv_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``csv.DictWriter`` rows with every string value through ``csv_cell``."""
    return [{k: csv_cell(v) for k, v in row.items()} for row in rows]


# --------------------------------------------------------------------------------------------- Markdown

_MARKDOWN_SPECIALS = {
    "\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "!": "\\!",
    "~": "\\~", "<": "&lt;", ">": "&gt;", "&": "&amp;",
}
_BLOCK_START = re.compile(r"^(\s*)([#+=-]|\d+[.)])")


def markdown_text(value: Any) -> str:
    """Text that renders as itself inside a Markdown table cell or paragraph: no HTML, link, image,
    emphasis, code span or table break; line breaks become spaces."""
    return "".join(_MARKDOWN_SPECIALS.get(ch, ch) for ch in strip_controls(value))


def markdown_paragraph(value: Any) -> str:
    """``markdown_text`` for a paragraph of its own: a leading ``# + - = 1.`` escaped too (no heading,
    list or setext underline)."""
    text = markdown_text(value)
    return _BLOCK_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


# ------------------------------------------------------------------------------------------------ LaTeX

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# characters outside ASCII that pdflatex sets with the packages the tables declare (the rest become ?)
LATEX_UNICODE = {"±": r"$\pm$", "–": "--", "—": "---", "×": r"$\times$", "·": r"$\cdot$", "²": r"\textsuperscript{2}",
                 "▲": r"$\blacktriangle$", "▼": r"$\blacktriangledown$", "≈": r"$\approx$", "α": r"$\alpha$", "≤": r"$\leq$",
                 "…": r"\ldots{}", "é": r"\'e", "ö": r'\"o', "ü": r'\"u', "ä": r'\"a', "’": "'", "‘": "`",
                 "“": "``", "”": "''", "→": r"$\rightarrow$", "ᴴ": r"\textsuperscript{H}", "ᴾ": r"\textsuperscript{P}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex_text(value: Any) -> str:
    """Text that pdflatex sets as itself: the ten special characters escaped, line breaks as spaces,
    characters it cannot set replaced by ``?``."""
    out = []
    for ch in strip_controls(value):
        if ch in _LATEX_SPECIALS:
            out.append(_LATEX_SPECIALS[ch])
        elif ch in LATEX_UNICODE:
            out.append(LATEX_UNICODE[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def safe_print(*parts: Any, **kwargs: Any) -> None:
    """``print`` for lines that may quote records, run ids, paths or plug-in text: each part through
    ``terminal_text`` first."""
    print(*(terminal_text(p) for p in parts), **kwargs)
