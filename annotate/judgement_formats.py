"""Judgement import formats: JSONL files of human preferences, parsed into plain records.

Pure functions, no database. Five shapes are accepted, one JSON object per line (`format=` says which):

    trl     {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "margin": 0.7}
            {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]}
            {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}
    hh      {"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello!", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Go away."}
    oasst   {"message_tree_id": "t1", "prompt": {"message_id": "m1", "role": "prompter", "text": "Hi", "replies": [
             {"message_id": "m2", "role": "assistant", "text": "Hello!", "rank": 0, "replies": []}, ...]}}
    arena   {"question_id": "q1", "model_a": "gpt-4", "model_b": "claude-v1", "winner": "model_a",
             "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
             "conversation_b": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}
    rated   {"prompt": "Hi", "completions": [{"text": "Hello!", "score": 8}, {"text": "Go away.", "score": 2.5}]}
            ({"messages": [...]} in place of "prompt", as in prompt imports)

Each judgement becomes a JudgementRecord: the conversation (ending in a user turn) and the candidate replies, with
either a comparison of exactly two replies (kind "compare"; replies[0] is A, replies[1] is B) or a ranking of two or
more (kind "rank"; `tiers` lists indices into `replies`, best first, tied replies sharing a tier). Conventions:

- A strict preference whose strength the file does not grade is choice -3 ("A is better") when A won and +3
  ("B is better") when B won; the file's own strength (TRL "margin", a rated score difference) goes in `margin`.
  trl, hh and rated records put the winner first, so their choice is always -3.
- A tie (arena "tie", "tie (bothbad)") is "about the same": choice -1 on odd lines and +1 on even lines, so ties
  lean to neither side on average; "tie (bothbad)" also sets both_bad.
- oasst: every prompter message with two or more assistant replies that carry an integer rank gives one "rank"
  record (rank 0 best; replies whose rank is null are left out); a tree with none gives no record.
- rated: every two completions of a row with different scores give one "compare" record (higher score first,
  margin = the score difference); equal scores give none. All records of a row share its line number.
- arena: both conversations must share every turn but their final assistant replies (a multi-turn battle whose
  earlier replies differ is refused: its final replies answer different conversations).

Every problem is reported with its line number and field, and the whole file is refused when any line is wrong.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from annotate.formats import (
    ImportFormatError,
    ImportProblem,
    Limits,
    Turn,
    _LineError,
    _parse_hh,
    _parse_messages,
    _text,
    _type_name,
    check_size,
    json_lines,
)

__all__ = [
    "FORMATS",
    "ImportFormatError",
    "ImportProblem",
    "JudgementRecord",
    "Limits",
    "Turn",
    "iter_judgements",
    "parse_judgements",
]

FORMATS = ("trl", "hh", "oasst", "arena", "rated")
COMPARE = "compare"
RANK = "rank"
A_BETTER = -3
B_BETTER = 3
ARENA_WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
# Arena fields worth keeping with the judgement (the moderation blobs are left out: large and not judgements).
_ARENA_METADATA = ("question_id", "turn", "judge", "language", "tstamp", "anony")


@dataclass(frozen=True)
class JudgementRecord:
    """One imported judgement over the candidate `replies` to `conversation` (see the module docstring)."""

    line: int
    conversation: tuple[Turn, ...]
    replies: tuple[str, ...]
    kind: str
    choice: int = 0
    both_bad: bool = False
    margin: float | None = None
    tiers: tuple[tuple[int, ...], ...] = ()
    models: tuple[str | None, ...] = ()
    metadata: dict = field(default_factory=dict, compare=False)


def parse_judgements(
    data: bytes, *, format: str, filename: str = "", limits: Limits | None = None, lines_before: int = 0
) -> list[JudgementRecord]:
    """Every judgement in the file, in file order. Raises ImportFormatError listing every bad line (nothing may be
    imported when any line is wrong), or ValueError for an unknown `format`. `data` may be a part of a file, after
    `lines_before` lines: line numbers are then the file's."""
    return list(iter_judgements(data, format=format, filename=filename, limits=limits, lines_before=lines_before))


def iter_judgements(
    data: bytes, *, format: str, filename: str = "", limits: Limits | None = None, lines_before: int = 0
) -> Iterator[JudgementRecord]:
    """parse_judgements, one record at a time. The file is only known to be good once the iterator is exhausted:
    it raises ImportFormatError at the end (after reading every line) when any line was wrong, so whatever was
    done with the records it gave must be undone (consume it inside a transaction). After the first bad line it
    gives no more records, only reads on to list every problem. An unknown `format` and a file over the size
    limit raise at once, before the first record."""
    if format not in _PARSERS:
        raise ValueError(f"unknown judgement format {format!r}; expected one of {', '.join(FORMATS)}")
    limits = limits or Limits()
    check_size(data, limits, filename)
    return _iter_records(data, format, filename, limits, lines_before)


def _iter_records(
    data: bytes, format: str, filename: str, limits: Limits, lines_before: int
) -> Iterator[JudgementRecord]:
    parse_row = _PARSERS[format]
    problems: list[ImportProblem] = []
    rows = 0
    records = 0
    for number, obj in json_lines(data, limits, problems, lines_before):
        rows += 1
        try:
            if not isinstance(obj, dict):
                raise _LineError("", f"expected a JSON object, got {_type_name(obj)}")
            found = parse_row(obj, number, limits)
        except _LineError as exc:
            problems.append(ImportProblem(number, exc.field, exc.message))
            continue
        if not problems:
            records += len(found)
            yield from found
    if not rows and not problems:
        problems.append(ImportProblem(0, "", "the file has no rows"))
    elif not records and not problems:
        problems.append(ImportProblem(0, "", f"no judgements in the file{_NONE_WHY.get(format, '')}"))
    if problems:
        raise ImportFormatError(problems, filename)


_NONE_WHY = {
    "oasst": " (no prompter message has two or more assistant replies with a rank)",
    "rated": " (in every row all completions have the same score)",
}


# --- trl ------------------------------------------------------------------------------------------------------


def _parse_trl(obj: dict, line: int, limits: Limits) -> list[JudgementRecord]:
    for name in ("chosen", "rejected"):
        if name not in obj:
            raise _LineError(name, "missing")
    if "prompt" in obj:
        prompt = obj["prompt"]
        if isinstance(prompt, str):
            conversation: tuple[Turn, ...] = (Turn("user", _text(prompt, "prompt", limits)),)
            for name in ("chosen", "rejected"):
                if not isinstance(obj[name], str):
                    raise _LineError(name, f"expected a string, as 'prompt' is one, got {_type_name(obj[name])}")
            chosen = _text(obj["chosen"], "chosen", limits)
            rejected = _text(obj["rejected"], "rejected", limits)
        elif isinstance(prompt, list):
            conversation = _messages(prompt, "prompt", limits)
            chosen = _single_reply(obj["chosen"], "chosen", limits)
            rejected = _single_reply(obj["rejected"], "rejected", limits)
        else:
            raise _LineError("prompt", f"expected a string or a list of messages, got {_type_name(prompt)}")
    else:
        # Implicit prompt: chosen and rejected are whole conversations that differ only in the final reply.
        if not isinstance(obj["chosen"], list) and not isinstance(obj["rejected"], list):
            hint = " (HH transcripts? use the 'hh' format)" if _looks_hh(obj["chosen"]) else ""
            raise _LineError(
                "prompt", f"missing: only conversational rows (lists of messages) may leave the prompt out{hint}"
            )
        conversation, chosen = _conversation_and_reply(obj["chosen"], "chosen", limits)
        rest, rejected = _conversation_and_reply(obj["rejected"], "rejected", limits)
        if rest != conversation:
            raise _LineError("rejected", "'chosen' and 'rejected' must share every turn but the last")
    if chosen == rejected:
        raise _LineError("rejected", "'chosen' and 'rejected' are identical")
    margin = _margin(obj)
    return [
        JudgementRecord(
            line, conversation, (chosen, rejected), COMPARE, A_BETTER, margin=margin, metadata=_row_metadata(obj)
        )
    ]


def _margin(obj: dict) -> float | None:
    margin = obj.get("margin")
    if margin is None:
        return None
    return _finite(margin, "margin")


def _looks_hh(value: object) -> bool:
    return isinstance(value, str) and value.startswith("\n\nHuman:")


# --- hh -------------------------------------------------------------------------------------------------------


def _parse_hh_row(obj: dict, line: int, limits: Limits) -> list[JudgementRecord]:
    conversation, replies = _parse_hh(obj, limits)
    return [JudgementRecord(line, conversation, replies, COMPARE, A_BETTER, metadata=_row_metadata(obj))]


# --- oasst ----------------------------------------------------------------------------------------------------


def _parse_oasst(obj: dict, line: int, limits: Limits) -> list[JudgementRecord]:
    if "prompt" not in obj:
        raise _LineError("prompt", "missing (expected a message tree: its root prompter message)")
    tree_id = obj.get("message_tree_id")
    records: list[JudgementRecord] = []
    # Prompter messages still to visit: (message, its path, the conversation before it). A stack, not recursion:
    # it visits depth first in file order, so a tree's records come out as its messages do.
    stack: list[tuple[object, str, tuple[Turn, ...]]] = [(obj["prompt"], "prompt", ())]
    while stack:
        message, path, before = stack.pop()
        text = _oasst_message(message, path, "prompter", limits)
        conversation = (*before, Turn("user", text))
        replies = _oasst_replies(message, path, limits)
        ranked: list[tuple[int, int, str]] = []  # (rank, position, text)
        deeper: list[tuple[object, str, tuple[Turn, ...]]] = []
        for i, reply in enumerate(replies):
            where = f"{path}.replies[{i}]"
            reply_text = _oasst_message(reply, where, "assistant", limits)
            rank = reply.get("rank")  # _oasst_message checked that it is an object
            if rank is not None:
                if type(rank) is not int or rank < 0:
                    raise _LineError(f"{where}.rank", f"expected a whole number 0 or more, or null, got {_got(rank)}")
                for _, j, other in ranked:
                    if other == reply_text:
                        raise _LineError(f"{where}.text", f"duplicates {path}.replies[{j}].text (both ranked)")
                ranked.append((rank, i, reply_text))
            answered = (*conversation, Turn("assistant", reply_text))
            for k, follow_up in enumerate(_oasst_replies(reply, where, limits)):
                deeper.append((follow_up, f"{where}.replies[{k}]", answered))
        if len(ranked) >= 2:
            ranked.sort()
            tiers = tuple(
                tuple(i for i, _ in group)
                for _, group in itertools.groupby(enumerate(r for r, _, _ in ranked), key=lambda item: item[1])
            )
            records.append(
                JudgementRecord(
                    line,
                    conversation,
                    tuple(t for _, _, t in ranked),
                    RANK,
                    tiers=tiers,
                    metadata=_oasst_metadata(tree_id, message, [replies[i] for _, i, _ in ranked]),
                )
            )
        stack.extend(reversed(deeper))
    return records


def _oasst_message(message: object, path: str, role: str, limits: Limits) -> str:
    if not isinstance(message, dict):
        raise _LineError(path, f"expected a message object, got {_type_name(message)}")
    if "role" not in message:
        raise _LineError(f"{path}.role", "missing")
    if message["role"] != role:
        why = "the tree's root" if path == "prompt" else f"a reply to {_PARENT[role]}"
        raise _LineError(f"{path}.role", f"expected {role!r} ({why}), got {_got(message['role'])}")
    if "text" not in message:
        raise _LineError(f"{path}.text", "missing")
    return _text(message["text"], f"{path}.text", limits)


_PARENT = {"prompter": "an assistant message", "assistant": "a prompter message"}


def _oasst_replies(message: dict, path: str, limits: Limits) -> list:
    replies = message.get("replies", [])
    if not isinstance(replies, list):
        raise _LineError(f"{path}.replies", f"expected a list, got {_type_name(replies)}")
    if len(replies) > limits.max_completions:
        raise _LineError(f"{path}.replies", f"{len(replies)} replies; at most {limits.max_completions}")
    return replies


def _oasst_metadata(tree_id: object, message: dict, replies: list[dict]) -> dict:
    metadata: dict = {}
    if tree_id is not None:
        metadata["message_tree_id"] = tree_id
    if message.get("message_id") is not None:
        metadata["message_id"] = message["message_id"]
    if any(reply.get("message_id") is not None for reply in replies):
        metadata["reply_message_ids"] = [reply.get("message_id") for reply in replies]
    if message.get("lang") is not None:
        metadata["lang"] = message["lang"]
    return metadata


# --- arena ----------------------------------------------------------------------------------------------------


def _parse_arena(obj: dict, line: int, limits: Limits) -> list[JudgementRecord]:
    models = (_model(obj, "model_a", limits), _model(obj, "model_b", limits))
    if "winner" not in obj:
        raise _LineError("winner", "missing")
    winner = obj["winner"]
    if winner not in ARENA_WINNERS:
        raise _LineError("winner", f"expected one of {', '.join(ARENA_WINNERS)}, got {_got(winner)}")
    for name in ("conversation_a", "conversation_b"):
        if name not in obj:
            raise _LineError(name, "missing")
    conversation, reply_a = _conversation_and_reply(obj["conversation_a"], "conversation_a", limits)
    other, reply_b = _conversation_and_reply(obj["conversation_b"], "conversation_b", limits)
    if other != conversation:
        at = next((i for i, (x, y) in enumerate(zip(conversation, other, strict=False)) if x != y), None)
        where = f"differ at message {at}" if at is not None else "have different lengths"
        raise _LineError(
            "conversation_b",
            f"'conversation_a' and 'conversation_b' {where}: they must share every turn but the final assistant "
            "reply (a multi-turn battle whose earlier replies differ cannot be imported)",
        )
    if reply_a == reply_b:
        raise _LineError("conversation_b", "the two final replies are identical")
    both_bad = winner == "tie (bothbad)"
    if winner == "model_a":
        choice = A_BETTER
    elif winner == "model_b":
        choice = B_BETTER
    else:
        choice = -1 if line % 2 else 1
    metadata = {key: obj[key] for key in _ARENA_METADATA if obj.get(key) is not None}
    return [
        JudgementRecord(
            line, conversation, (reply_a, reply_b), COMPARE, choice, both_bad, models=models, metadata=metadata
        )
    ]


def _model(obj: dict, name: str, limits: Limits) -> str | None:
    value = obj.get(name)
    return None if value is None else _text(value, name, limits)


# --- rated ----------------------------------------------------------------------------------------------------


def _parse_rated(obj: dict, line: int, limits: Limits) -> list[JudgementRecord]:
    if "messages" in obj:
        if "prompt" in obj:
            raise _LineError("prompt", "give either 'prompt' or 'messages', not both")
        conversation = _parse_messages(obj["messages"], limits)
    elif "prompt" in obj:
        conversation = (Turn("user", _text(obj["prompt"], "prompt", limits)),)
    else:
        raise _LineError("", "expected a 'prompt' or 'messages' field")
    if "completions" not in obj:
        raise _LineError("completions", "missing")
    completions = obj["completions"]
    if not isinstance(completions, list):
        raise _LineError("completions", f"expected a list of {{text, score}} objects, got {_type_name(completions)}")
    if len(completions) < 2:
        raise _LineError("completions", f"at least 2 completions are needed, got {len(completions)}")
    if len(completions) > limits.max_completions:
        raise _LineError("completions", f"{len(completions)} completions; at most {limits.max_completions}")
    scored: list[tuple[float, str]] = []
    seen: dict[str, int] = {}
    for i, completion in enumerate(completions):
        where = f"completions[{i}]"
        if not isinstance(completion, dict):
            raise _LineError(where, f"expected an object with 'text' and 'score', got {_type_name(completion)}")
        for key in ("text", "score"):
            if key not in completion:
                raise _LineError(f"{where}.{key}", "missing")
        text = _text(completion["text"], f"{where}.text", limits)
        if text in seen:
            raise _LineError(f"{where}.text", f"duplicates completions[{seen[text]}].text")
        seen[text] = i
        scored.append((_finite(completion["score"], f"{where}.score"), text))
    scored.sort(key=lambda item: -item[0])  # stable: equal scores keep their file order
    base = _row_metadata(obj)
    records = []
    for (high, better), (low, worse) in itertools.combinations(scored, 2):
        if high > low:
            records.append(
                JudgementRecord(
                    line,
                    conversation,
                    (better, worse),
                    COMPARE,
                    A_BETTER,
                    margin=high - low,
                    metadata={**base, "scores": [high, low]},
                )
            )
    return records


# --- shared ---------------------------------------------------------------------------------------------------


def _messages(value: object, name: str, limits: Limits) -> tuple[Turn, ...]:
    """formats._parse_messages, its errors naming the field `name` instead of 'messages'."""
    try:
        return _parse_messages(value, limits)
    except _LineError as exc:
        if exc.field.startswith("messages"):
            raise _LineError(name + exc.field.removeprefix("messages"), exc.message) from None
        raise


def _single_reply(value: object, name: str, limits: Limits) -> str:
    """A TRL conversational completion: a list of exactly one assistant message."""
    if not isinstance(value, list):
        raise _LineError(name, f"expected a list of messages, as 'prompt' is one, got {_type_name(value)}")
    if len(value) != 1:
        raise _LineError(name, f"expected exactly one assistant message, got {len(value)} messages")
    return _reply_message(value[0], f"{name}[0]", limits)


def _conversation_and_reply(value: object, name: str, limits: Limits) -> tuple[tuple[Turn, ...], str]:
    """A whole conversation ending in an assistant reply: (the turns before the reply, the reply)."""
    if not isinstance(value, list):
        raise _LineError(name, f"expected a list of messages, got {_type_name(value)}")
    if len(value) < 2:
        raise _LineError(name, f"expected the conversation then the assistant reply, got {len(value)} message(s)")
    conversation = _messages(value[:-1], name, limits)
    return conversation, _reply_message(value[-1], f"{name}[{len(value) - 1}]", limits)


def _reply_message(message: object, where: str, limits: Limits) -> str:
    if not isinstance(message, dict):
        raise _LineError(where, f"expected an object, got {_type_name(message)}")
    role = message.get("role")
    if role != "assistant":
        raise _LineError(f"{where}.role", f"the reply must be an assistant message, not {_got(role)}")
    if "content" not in message:
        raise _LineError(f"{where}.content", "missing")
    return _text(message["content"], f"{where}.content", limits)


def _finite(value: object, name: str) -> float:
    if type(value) not in (int, float):  # bool is an int subclass, not a number here
        raise _LineError(name, f"expected a number, got {_got(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise _LineError(name, f"expected a finite number, got {number}")
    return number


def _row_metadata(obj: dict) -> dict:
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _LineError("metadata", f"expected an object, got {_type_name(metadata)}")
    for key in ("category", "id", "source"):
        if key in obj and key not in metadata:
            metadata = {**metadata, key: obj[key]}
    return metadata


def _got(value: object) -> str:
    """A value for a message: short scalars as written (quoted strings), anything else by its kind."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return _type_name(value)
    return repr(value)


_PARSERS: dict[str, Callable[[dict, int, Limits], list[JudgementRecord]]] = {
    "trl": _parse_trl,
    "hh": _parse_hh_row,
    "oasst": _parse_oasst,
    "arena": _parse_arena,
    "rated": _parse_rated,
}
