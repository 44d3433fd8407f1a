"""Parsing import files: pure functions, no database."""

import json

import pytest

from annotate.formats import ImportFormatError, Limits, Turn, parse_prompts_jsonl
from tests.conftest import jsonl


def problems_of(data: bytes, limits: Limits | None = None) -> list[tuple[int, str, str]]:
    with pytest.raises(ImportFormatError) as info:
        parse_prompts_jsonl(data, filename="bad.jsonl", limits=limits)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_prompt_with_completions_parses_to_one_user_turn_and_candidates():
    [record] = parse_prompts_jsonl(jsonl({"prompt": " Hi there ", "completions": ["Hello!", "Hey."]}))
    assert record.conversation == (Turn("user", "Hi there"),)
    assert record.completions == ("Hello!", "Hey.")
    assert record.line == 1


def test_conversational_rows_keep_system_and_assistant_history():
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another?"},
        ],
        "completions": ["Red.", "Green."],
    }
    [record] = parse_prompts_jsonl(jsonl(row))
    assert [t.role for t in record.conversation] == ["system", "user", "assistant", "user"]
    assert record.completions == ("Red.", "Green.")


def test_hh_transcript_shared_prefix_becomes_conversation_and_final_turns_candidates():
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: Why did the chicken cross?",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No.",
    }
    [record] = parse_prompts_jsonl(jsonl(row))
    assert record.conversation == (Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "Joke?"))
    assert record.completions == ("Why did the chicken cross?", "No.")
    assert record.shape == "hh"


def test_blank_lines_and_a_byte_order_mark_are_ignored():
    data = b"\xef\xbb\xbf" + jsonl({"prompt": "a"}) + b"\n  \n" + jsonl({"prompt": "b"})
    assert [r.line for r in parse_prompts_jsonl(data)] == [1, 4]


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (b'{"prompt": "unterminated', "", "malformed JSON"),
        (b"[1, 2]", "", "expected a JSON object, got a list"),
        ({"prompt": 42}, "prompt", "expected a string, got a number"),
        ({"prompt": "   "}, "prompt", "empty text"),
        ({"prompt": "hi", "completions": "one"}, "completions", "expected a list of strings"),
        ({"prompt": "hi", "completions": ["ok", ""]}, "completions[1]", "empty text"),
        ({"prompt": "hi", "completions": ["ok", None]}, "completions[1]", "expected a string, got null"),
        ({"prompt": "hi", "completions": ["ok", "ok"]}, "completions[1]", "duplicates completions[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "unknown role 'robot'"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "messages[1].role",
            "must end in a user turn",
        ),
        ({"messages": []}, "messages", "the conversation is empty"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "system", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            },
            "messages[1].role",
            "a system message may only open",
        ),
        ({"text": "hi"}, "", "expected a 'prompt', 'messages' or 'chosen'/'rejected' field"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt", "not both"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b"}, "rejected", "missing"),
        ({"chosen": "Human: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "chosen", "starts with"),
        (
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: c"},
            "rejected",
            "share every turn but the last",
        ),
        (
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"},
            "rejected",
            "identical",
        ),
        ({"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a"}, "chosen", "must end with an 'Assistant:' turn"),
        ({"prompt": "nul\x00byte"}, "prompt", "NUL"),
    ],
)
def test_each_bad_input_is_reported_with_its_line_and_field(row, field, message):
    data = jsonl({"prompt": "fine"}, row)
    [(line, got_field, got_message)] = problems_of(data)
    assert line == 2
    assert got_field == field
    assert message in got_message


def test_invalid_utf8_is_reported_with_its_line():
    data = jsonl({"prompt": "fine"}) + b'{"prompt": "caf\xe9"}\n'
    [(line, _, message)] = problems_of(data)
    assert line == 2
    assert "invalid UTF-8 at byte" in message


def test_oversized_text_is_refused_with_its_size():
    data = jsonl({"prompt": "x" * 101})
    [(_, field, message)] = problems_of(data, Limits(max_text_chars=100))
    assert field == "prompt"
    assert "101 characters exceeds the limit of 100" in message


def test_too_many_rows_and_completions_are_refused():
    rows = [{"prompt": f"p{i}"} for i in range(4)]
    assert any("more than 3 rows" in m for _, _, m in problems_of(jsonl(*rows), Limits(max_rows=3)))
    row = {"prompt": "p", "completions": [f"c{i}" for i in range(5)]}
    assert "at most 4" in problems_of(jsonl(row), Limits(max_completions=4))[0][2]


def test_a_file_over_the_size_limit_is_refused_before_parsing():
    [(line, _, message)] = problems_of(jsonl({"prompt": "x" * 2000}), Limits(max_bytes=1000))
    assert line == 0
    assert message == "the file is 2,015 bytes; the limit is 1,000 bytes"


def test_every_bad_line_is_listed_not_only_the_first():
    data = jsonl({"prompt": ""}, {"prompt": "ok"}, b"nope", {"prompt": 1})
    assert [line for line, _, _ in problems_of(data)] == [1, 3, 4]


def test_an_empty_file_is_an_error():
    assert problems_of(b"\n\n")[0][2] == "the file has no rows"


def test_error_message_names_file_line_and_field():
    with pytest.raises(ImportFormatError) as info:
        parse_prompts_jsonl(jsonl({"prompt": "ok"}, {"prompt": 3}), filename="prompts.jsonl")
    assert str(info.value).startswith("prompts.jsonl: 1 problem(s), nothing imported: line 2, field 'prompt'")


def test_metadata_keeps_category_and_id():
    [record] = parse_prompts_jsonl(jsonl({"prompt": "p", "category": "brainstorming", "id": "x1"}))
    assert record.metadata == {"category": "brainstorming", "id": "x1"}
    assert json.dumps(record.metadata)
