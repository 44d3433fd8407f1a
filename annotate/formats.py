"""Import formats: JSONL files of prompts and candidate replies, parsed into plain records.

Pure functions, no database. Three shapes are accepted, one JSON object per line:

    {"prompt": "Explain the moon landing to a 6 year old.", "completions": ["People went to the moon...", ...]}
    {"messages": [{"role": "user", "content": "Hi"}, ...], "completions": ["...", ...]}
    {"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello!", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Go away."}

`completions` is optional (a prompt with none becomes a demonstration task only). An HH transcript's shared
prefix becomes the conversation and its two final assistant turns become the candidates. Every problem is
reported with its line number and field; callers import nothing when any line is wrong.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")
# HH transcripts separate turns with a blank line and a speaker tag.
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


@dataclass(frozen=True)
class Turn:
    role: str
    text: str


@dataclass(frozen=True)
class PromptRecord:
    """One imported prompt: the conversation (ending in a user turn) and its candidate replies."""

    line: int
    conversation: tuple[Turn, ...]
    completions: tuple[str, ...]
    metadata: dict = field(default_factory=dict, compare=False)
    shape: str = "prompt"


@dataclass(frozen=True)
class ImportProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}, field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 32_000
    max_rows: int = 200_000
    max_completions: int = 32
    max_bytes: int = 256 * 1024 * 1024


class ImportFormatError(ValueError):
    """Raised with every problem found in a file; nothing from the file may be imported."""

    def __init__(self, problems: list[ImportProblem], filename: str = "") -> None:
        self.problems = problems
        self.filename = filename
        head = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        prefix = f"{filename}: " if filename else ""
        super().__init__(f"{prefix}{len(problems)} problem(s), nothing imported: {head}{more}")


class _LineError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message


def parse_prompts_jsonl(data: bytes, *, filename: str = "", limits: Limits | None = None) -> list[PromptRecord]:
    """Parse a whole file. Returns its records, or raises ImportFormatError listing every bad line."""
    limits = limits or Limits()
    check_size(data, limits, filename)
    problems: list[ImportProblem] = []
    records: list[PromptRecord] = []
    for number, obj in json_lines(data, limits, problems):
        try:
            records.append(_parse_record(obj, number, limits))
        except _LineError as exc:
            problems.append(ImportProblem(number, exc.field, exc.message))
    if not records and not problems:
        problems.append(ImportProblem(0, "", "the file has no rows"))
    if problems:
        raise ImportFormatError(problems, filename)
    return records


def check_size(data: bytes, limits: Limits, filename: str) -> None:
    if len(data) > limits.max_bytes:
        message = f"the file is {_size(len(data))}; the limit is {_size(limits.max_bytes)}"
        raise ImportFormatError([ImportProblem(0, "", message)], filename)


def json_lines(
    data: bytes, limits: Limits, problems: list[ImportProblem], lines_before: int = 0
) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON value) for each non-blank line of a JSONL file (or of a part of one, after
    `lines_before` lines). A line that is not UTF-8 or not JSON, and the first line past `limits.max_rows`, are
    added to `problems` (with their line) instead."""
    rows = 0
    for number, raw in enumerate(data.split(b"\n"), start=1 + lines_before):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
        if not raw.strip():
            continue
        rows += 1
        if rows > limits.max_rows:
            problems.append(ImportProblem(number, "", f"the file has more than {limits.max_rows} rows"))
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(ImportProblem(number, "", f"invalid UTF-8 at byte {exc.start}"))
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ImportProblem(number, "", f"malformed JSON ({exc.msg} at column {exc.colno})"))
        except RecursionError:
            problems.append(ImportProblem(number, "", "malformed JSON (nested too deeply)"))


def _parse_record(obj: object, line: int, limits: Limits) -> PromptRecord:
    if not isinstance(obj, dict):
        raise _LineError("", f"expected a JSON object, got {_type_name(obj)}")
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _LineError("metadata", f"expected an object, got {_type_name(metadata)}")
    for key in ("category", "id", "source"):
        if key in obj and key not in metadata:
            metadata = {**metadata, key: obj[key]}

    if "chosen" in obj or "rejected" in obj:
        conversation, completions = _parse_hh(obj, limits)
        return PromptRecord(line, conversation, completions, metadata, shape="hh")
    if "messages" in obj:
        if "prompt" in obj:
            raise _LineError("prompt", "give either 'prompt' or 'messages', not both")
        conversation = _parse_messages(obj["messages"], limits)
        shape = "messages"
    elif "prompt" in obj:
        conversation = (Turn("user", _text(obj["prompt"], "prompt", limits)),)
        shape = "prompt"
    else:
        raise _LineError("", "expected a 'prompt', 'messages' or 'chosen'/'rejected' field")
    completions = _parse_completions(obj.get("completions", []), limits)
    return PromptRecord(line, conversation, completions, metadata, shape=shape)


def _parse_messages(messages: object, limits: Limits) -> tuple[Turn, ...]:
    if not isinstance(messages, list):
        raise _LineError("messages", f"expected a list, got {_type_name(messages)}")
    if not messages:
        raise _LineError("messages", "the conversation is empty")
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _LineError(where, f"expected an object, got {_type_name(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise _LineError(f"{where}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if role == "system" and i != 0:
            raise _LineError(f"{where}.role", "a system message may only open the conversation")
        if "content" not in message:
            raise _LineError(f"{where}.content", "missing")
        turns.append(Turn(role, _text(message["content"], f"{where}.content", limits)))
    if turns[-1].role != "user":
        raise _LineError(
            f"messages[{len(turns) - 1}].role",
            f"the conversation must end in a user turn, not {turns[-1].role!r}",
        )
    return tuple(turns)


def _parse_completions(completions: object, limits: Limits) -> tuple[str, ...]:
    if not isinstance(completions, list):
        raise _LineError("completions", f"expected a list of strings, got {_type_name(completions)}")
    if len(completions) > limits.max_completions:
        raise _LineError("completions", f"{len(completions)} completions; at most {limits.max_completions}")
    texts: list[str] = []
    for i, completion in enumerate(completions):
        text = _text(completion, f"completions[{i}]", limits)
        if text in texts:
            raise _LineError(f"completions[{i}]", f"duplicates completions[{texts.index(text)}]")
        texts.append(text)
    return tuple(texts)


def _parse_hh(obj: dict, limits: Limits) -> tuple[tuple[Turn, ...], tuple[str, ...]]:
    chosen = _split_hh(obj.get("chosen"), "chosen", limits)
    rejected = _split_hh(obj.get("rejected"), "rejected", limits)
    if chosen[:-1] != rejected[:-1]:
        raise _LineError("rejected", "'chosen' and 'rejected' must share every turn but the last")
    if chosen[-1].text == rejected[-1].text:
        raise _LineError("rejected", "the final assistant turns of 'chosen' and 'rejected' are identical")
    return chosen[:-1], (chosen[-1].text, rejected[-1].text)


def _split_hh(transcript: object, name: str, limits: Limits) -> tuple[Turn, ...]:
    if transcript is None:
        raise _LineError(name, "missing")
    if not isinstance(transcript, str):
        raise _LineError(name, f"expected a string, got {_type_name(transcript)}")
    if not transcript.startswith("\n\nHuman: "):
        raise _LineError(name, "an HH transcript starts with '\\n\\nHuman: '")
    parts = _HH_TURN.split(transcript)
    # split() with one group gives ["", speaker, text, speaker, text, ...]
    turns = []
    for speaker, text in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        turns.append(Turn(role, _text(text, name, limits)))
    for previous, current in itertools.pairwise(turns):
        if previous.role == current.role:
            raise _LineError(name, f"two {current.role} turns in a row")
    if len(turns) < 2 or turns[-1].role != "assistant":
        raise _LineError(name, "an HH transcript must end with an 'Assistant:' turn after a 'Human:' turn")
    return tuple(turns)


def _text(value: object, name: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise _LineError(name, f"expected a string, got {_type_name(value)}")
    if not value.strip():
        raise _LineError(name, "empty text")
    if "\x00" in value:
        raise _LineError(name, "contains a NUL character")
    if len(value) > limits.max_text_chars:
        raise _LineError(name, f"text of {len(value)} characters exceeds the limit of {limits.max_text_chars}")
    return value.strip()


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1_000_000 else f"{n / 1e6:,.1f} MB"


def _type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)
