"""Parsing judgement import files (TRL, HH, OASST, Chatbot Arena, rated completions): pure functions, no database."""

import math

import pytest

from annotate.formats import ImportFormatError, Limits, Turn
from annotate.judgement_formats import FORMATS, JudgementRecord, iter_judgements, parse_judgements
from tests.conftest import jsonl


def problems_of(data: bytes, format: str, limits: Limits | None = None) -> list[tuple[int, str, str]]:
    with pytest.raises(ImportFormatError) as info:
        parse_judgements(data, format=format, filename="bad.jsonl", limits=limits)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def user(text: str) -> Turn:
    return Turn("user", text)


def bot(text: str) -> Turn:
    return Turn("assistant", text)


# --- trl ------------------------------------------------------------------------------------------------------


def test_trl_standard_rows_put_chosen_first_as_a_better_with_the_files_margin():
    data = jsonl(
        {"prompt": " Name a colour. ", "chosen": "Blue.", "rejected": "No.", "margin": 0.7},
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Bye.", "id": "r2"},
        {"prompt": "Count", "chosen": "1 2 3", "rejected": "3 2 1", "margin": 2},
    )
    first, second, third = parse_judgements(data, format="trl")
    assert first == JudgementRecord(
        line=1, conversation=(user("Name a colour."),), replies=("Blue.", "No."), kind="compare", choice=-3, margin=0.7
    )
    assert (second.line, second.choice, second.margin, second.metadata) == (2, -3, None, {"id": "r2"})
    assert third.margin == 2.0 and isinstance(third.margin, float)
    assert first.tiers == () and first.models == () and first.both_bad is False


def test_trl_conversational_rows_keep_the_system_message_and_history():
    row = {
        "prompt": [msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Joke?")],
        "chosen": [msg("assistant", "Why did the chicken cross?")],
        "rejected": [msg("assistant", "No.")],
        "margin": -0.5,
    }
    [record] = parse_judgements(jsonl(row), format="trl")
    assert record.conversation == (Turn("system", "Be brief."), user("Hi"), bot("Hello!"), user("Joke?"))
    assert record.replies == ("Why did the chicken cross?", "No.")
    assert (record.kind, record.choice, record.margin) == ("compare", -3, -0.5)


def test_trl_implicit_prompt_rows_take_the_shared_prefix_as_the_conversation():
    history = [msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Joke?")]
    row = {"chosen": [*history, msg("assistant", "A pun.")], "rejected": [*history, msg("assistant", "No.")]}
    [record] = parse_judgements(jsonl(row), format="trl")
    assert record.conversation == (user("Hi"), bot("Hello!"), user("Joke?"))
    assert (record.replies, record.choice, record.margin) == (("A pun.", "No."), -3, None)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "expected a number, got 'big'"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": True}, "margin", "expected a number, got a boolean"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": math.nan}, "margin", "expected a finite number"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": math.inf}, "margin", "expected a finite number"),
        ({"prompt": "p", "chosen": "same ", "rejected": " same"}, "rejected", "are identical"),
        ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", "expected a string or a list of messages"),
        ({"prompt": "p", "chosen": [msg("assistant", "a")], "rejected": "b"}, "chosen", "as 'prompt' is one"),
        ({"prompt": "p", "chosen": "a", "rejected": ""}, "rejected", "empty text"),
        (
            {"prompt": [msg("user", "p")], "chosen": [msg("user", "a")], "rejected": [msg("assistant", "b")]},
            "chosen[0].role",
            "must be an assistant message, not 'user'",
        ),
        (
            {"prompt": [msg("user", "p"), msg("assistant", "x")], "chosen": [msg("assistant", "a")], "rejected": []},
            "prompt[1].role",
            "must end in a user turn",
        ),
        (
            {"prompt": [msg("user", "p")], "chosen": [msg("assistant", "a"), msg("assistant", "c")], "rejected": []},
            "chosen",
            "exactly one assistant message, got 2",
        ),
        (
            {
                "chosen": [msg("user", "p"), msg("assistant", "a")],
                "rejected": [msg("user", "q"), msg("assistant", "b")],
            },
            "rejected",
            "share every turn but the last",
        ),
        (
            {"chosen": [msg("user", "p"), msg("user", "a")], "rejected": [msg("user", "p"), msg("assistant", "b")]},
            "chosen[1].role",
            "must be an assistant message",
        ),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "prompt", "'hh'"),
    ],
)
def test_trl_bad_rows_are_reported_with_line_and_field(row, field, message):
    data = jsonl({"prompt": "fine", "chosen": "a", "rejected": "b"}, row)
    [(line, got_field, got_message)] = problems_of(data, "trl")
    assert (line, got_field) == (2, field)
    assert message in got_message


# --- hh -------------------------------------------------------------------------------------------------------


def test_hh_transcripts_share_a_prefix_and_the_chosen_final_reply_wins():
    data = jsonl(
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: Why did the chicken cross?",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No.",
        },
    )
    first, second = parse_judgements(data, format="hh")
    assert (first.conversation, first.replies, first.choice) == ((user("Hi"),), ("Hello!", "Go away."), -3)
    assert second.line == 2
    assert second.conversation == (user("Hi"), bot("Hello!"), user("Joke?"))
    assert second.replies == ("Why did the chicken cross?", "No.")
    assert (second.kind, second.choice, second.margin) == ("compare", -3, None)


def test_hh_bad_rows_name_their_line_and_field_and_refuse_the_file():
    good = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    data = jsonl(
        good,
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: c"},
        good,
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"},
        {"chosen": "Human: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
    )
    problems = problems_of(data, "hh")
    assert [(line, field) for line, field, _ in problems] == [(2, "rejected"), (4, "rejected"), (5, "chosen")]
    assert "share every turn but the last" in problems[0][2]
    assert "identical" in problems[1][2]


# --- oasst ----------------------------------------------------------------------------------------------------


def oasst(message_id: str, role: str, text: str, rank: int | None = None, replies: list | None = None) -> dict:
    return {"message_id": message_id, "role": role, "text": text, "rank": rank, "replies": replies or [], "lang": "en"}


def test_oasst_trees_give_one_ranking_per_prompter_message_with_ranked_replies():
    tree = {
        "message_tree_id": "t1",
        "prompt": oasst(
            "p1",
            "prompter",
            "Hi",
            replies=[
                oasst(
                    "a1",
                    "assistant",
                    "a1 text",
                    1,
                    [oasst("p3", "prompter", "Why?", 0, [oasst("c1", "assistant", "c1", 0)])],
                ),
                oasst(
                    "a2",
                    "assistant",
                    "a2 text",
                    0,
                    [
                        oasst(
                            "p2",
                            "prompter",
                            "More?",
                            None,
                            [oasst("b1", "assistant", "b1 text", 1), oasst("b2", "assistant", "b2 text", 0)],
                        )
                    ],
                ),
                oasst("a3", "assistant", "a3 text", 1),
                oasst("a4", "assistant", "a4 text", None),  # unranked: left out
            ],
        ),
    }
    unranked = {
        "message_tree_id": "t2",
        "prompt": oasst("q1", "prompter", "Hey", replies=[oasst("x", "assistant", "x")]),
    }
    second = {
        "message_tree_id": "t3",
        "prompt": oasst(
            "r1", "prompter", "Yo", replies=[oasst("y1", "assistant", "y1", 0), oasst("y2", "assistant", "y2", 1)]
        ),
    }
    top, nested, last = parse_judgements(jsonl(tree, unranked, second), format="oasst")

    assert top.line == 1 and top.kind == "rank" and top.choice == 0
    assert top.conversation == (user("Hi"),)
    assert top.replies == ("a2 text", "a1 text", "a3 text")
    assert top.tiers == ((0,), (1, 2))  # a1 and a3 share rank 1
    assert top.metadata == {
        "message_tree_id": "t1",
        "message_id": "p1",
        "reply_message_ids": ["a2", "a1", "a3"],
        "lang": "en",
    }

    assert nested.line == 1
    assert nested.conversation == (user("Hi"), bot("a2 text"), user("More?"))
    assert nested.replies == ("b2 text", "b1 text")
    assert nested.tiers == ((0,), (1,))
    assert nested.metadata["message_id"] == "p2"

    assert (last.line, last.replies, last.tiers) == (3, ("y1", "y2"), ((0,), (1,)))


@pytest.mark.parametrize(
    ("replies", "field", "message"),
    [
        ([oasst("a", "assistant", "a", 0), oasst("b", "assistant", "b", -1)], "prompt.replies[1].rank", "got -1"),
        ([oasst("a", "assistant", "a", 0), oasst("b", "assistant", "b", "1")], "prompt.replies[1].rank", "got '1'"),
        ([oasst("a", "assistant", "a", 0), oasst("b", "assistant", "b", 1.5)], "prompt.replies[1].rank", "got 1.5"),
        ([oasst("a", "assistant", "a", True)], "prompt.replies[0].rank", "got a boolean"),
        ([oasst("a", "prompter", "a", 0)], "prompt.replies[0].role", "expected 'assistant'"),
        ([{"role": "assistant", "rank": 0}], "prompt.replies[0].text", "missing"),
        ([oasst("a", "assistant", " ", 0)], "prompt.replies[0].text", "empty text"),
        (
            [oasst("a", "assistant", "same", 0), oasst("b", "assistant", "same ", 1)],
            "prompt.replies[1].text",
            "duplicates",
        ),
        ([{**oasst("a", "assistant", "a", 0), "replies": "none"}], "prompt.replies[0].replies", "expected a list"),
        (
            [oasst("a", "assistant", "a", 0, [oasst("p", "assistant", "p")])],
            "prompt.replies[0].replies[0].role",
            "expected 'prompter' (a reply to an assistant message), got 'assistant'",
        ),
        (
            [oasst("a", "assistant", "a", 0, [oasst("p", "prompter", "p", None, [oasst("b", "assistant", "b", "x")])])],
            "prompt.replies[0].replies[0].replies[0].rank",
            "got 'x'",
        ),
        ("all", "prompt.replies", "expected a list, got a string"),
    ],
)
def test_oasst_bad_trees_name_the_path_of_the_bad_field(replies, field, message):
    good = {
        "prompt": oasst(
            "p", "prompter", "Hi", replies=[oasst("a", "assistant", "a", 0), oasst("b", "assistant", "b", 1)]
        )
    }
    bad = {"prompt": {**oasst("p", "prompter", "Hi"), "replies": replies}}
    [(line, got_field, got_message)] = problems_of(jsonl(good, bad), "oasst")
    assert (line, got_field) == (2, field)
    assert message in got_message


def test_oasst_tree_shape_errors():
    problems = problems_of(jsonl({"message_tree_id": "t"}, {"prompt": oasst("p", "assistant", "x")}), "oasst")
    assert problems == [
        (1, "prompt", "missing (expected a message tree: its root prompter message)"),
        (2, "prompt.role", "expected 'prompter' (the tree's root), got 'assistant'"),
    ]


def test_oasst_a_file_without_any_ranking_is_an_error_but_one_unranked_tree_is_not():
    unranked = {"prompt": oasst("p", "prompter", "Hi", replies=[oasst("a", "assistant", "a", 0)])}
    [(line, _, message)] = problems_of(jsonl(unranked, unranked), "oasst")
    assert line == 0
    assert message.startswith("no judgements in the file")


# --- arena ----------------------------------------------------------------------------------------------------


def battle(winner: str, reply_a: str = "A says hi", reply_b: str = "B says hi", history=(), **extra) -> dict:
    turns = [*history, msg("user", "Hi")]
    return {
        "question_id": f"q-{winner}",
        "model_a": "gpt-4",
        "model_b": "claude-v1",
        "winner": winner,
        "conversation_a": [*turns, msg("assistant", reply_a)],
        "conversation_b": [*turns, msg("assistant", reply_b)],
        "turn": 1 + len(history) // 2,
        "anony": True,
        "toxic_chat_tag": {"roberta-large": {"flagged": False}},
        **extra,
    }


def test_arena_battles_record_the_winner_models_and_alternating_ties():
    data = jsonl(
        battle("model_a"),
        battle("model_b"),
        battle("tie"),
        battle("tie"),
        battle("tie (bothbad)"),
        battle("tie (bothbad)"),
        battle("model_b", history=[msg("user", "Start"), msg("assistant", "Started.")]),
    )
    records = parse_judgements(data, format="arena")
    assert [(r.line, r.choice, r.both_bad) for r in records] == [
        (1, -3, False),
        (2, 3, False),
        (3, -1, False),
        (4, 1, False),
        (5, -1, True),
        (6, 1, True),
        (7, 3, False),
    ]
    first = records[0]
    assert first.kind == "compare"
    assert first.conversation == (user("Hi"),)
    assert first.replies == ("A says hi", "B says hi")
    assert first.models == ("gpt-4", "claude-v1")
    assert first.margin is None
    assert first.metadata == {"question_id": "q-model_a", "turn": 1, "anony": True}
    assert records[-1].conversation == (user("Start"), bot("Started."), user("Hi"))
    assert records[-1].metadata["turn"] == 2


def test_arena_models_are_optional():
    row = battle("model_a")
    del row["model_a"], row["model_b"]
    [record] = parse_judgements(jsonl(row), format="arena")
    assert record.models == (None, None)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (battle("draw"), "winner", "expected one of model_a, model_b, tie, tie (bothbad), got 'draw'"),
        ({**battle("tie"), "winner": None}, "winner", "got null"),
        ({k: v for k, v in battle("tie").items() if k != "winner"}, "winner", "missing"),
        (battle("tie", reply_a="Same.", reply_b=" Same."), "conversation_b", "the two final replies are identical"),
        ({**battle("tie"), "model_a": 7}, "model_a", "expected a string, got a number"),
        ({**battle("tie"), "conversation_a": "Hi"}, "conversation_a", "expected a list of messages, got a string"),
        ({**battle("tie"), "conversation_b": [msg("user", "Hi")]}, "conversation_b", "got 1 message(s)"),
        (
            {**battle("tie"), "conversation_b": [msg("user", "Hi"), msg("user", "Hello?")]},
            "conversation_b[1].role",
            "must be an assistant message, not 'user'",
        ),
        (
            {**battle("tie"), "conversation_a": [msg("user", "Hi"), msg("assistant", "")]},
            "conversation_a[1].content",
            "empty text",
        ),
        (
            {
                **battle("tie"),
                "conversation_a": [msg("user", "1"), msg("assistant", "a1"), msg("user", "2"), msg("assistant", "a2")],
                "conversation_b": [msg("user", "1"), msg("assistant", "b1"), msg("user", "2"), msg("assistant", "b2")],
            },
            "conversation_b",
            "differ at message 1: they must share every turn but the final assistant reply",
        ),
        (
            {
                **battle("tie"),
                "conversation_b": [msg("user", "1"), msg("assistant", "b1"), msg("user", "Hi"), msg("assistant", "b")],
            },
            "conversation_b",
            "differ at message 0",
        ),
    ],
)
def test_arena_bad_battles_are_reported_with_line_and_field(row, field, message):
    [(line, got_field, got_message)] = problems_of(jsonl(battle("tie"), row), "arena")
    assert (line, got_field) == (2, field)
    assert message in got_message


def test_arena_unknown_winner_message_reads_plainly():
    data = jsonl(battle("tie"), battle("model_a"), battle("draw"))
    with pytest.raises(ImportFormatError) as info:
        parse_judgements(data, format="arena", filename="battles.jsonl")
    assert str(info.value) == (
        "battles.jsonl: 1 problem(s), nothing imported: "
        "line 3, field 'winner': expected one of model_a, model_b, tie, tie (bothbad), got 'draw'"
    )


# --- rated ----------------------------------------------------------------------------------------------------


def test_rated_completions_become_pairs_by_score_difference():
    data = jsonl(
        {
            "prompt": "Name a colour.",
            "completions": [
                {"text": "Blue.", "score": 7.5},
                {"text": "Blue, the sky's.", "score": 9},
                {"text": "Red.", "score": 7.5},
                {"text": "No.", "score": 2},
            ],
            "source": "rm-v1",
        },
        {"prompt": "Tie?", "completions": [{"text": "x", "score": 1}, {"text": "y", "score": 1}]},
        {
            "messages": [msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Joke?")],
            "completions": [{"text": "No.", "score": -1}, {"text": "A pun.", "score": 0.5}],
        },
    )
    records = parse_judgements(data, format="rated")
    assert [(r.line, r.replies, r.margin) for r in records] == [
        (1, ("Blue, the sky's.", "Blue."), 1.5),
        (1, ("Blue, the sky's.", "Red."), 1.5),
        (1, ("Blue, the sky's.", "No."), 7.0),
        (1, ("Blue.", "No."), 5.5),
        (1, ("Red.", "No."), 5.5),
        (3, ("A pun.", "No."), 1.5),
    ]  # Blue. and Red. score the same: no pair; line 2 is all ties: no record
    assert all(r.kind == "compare" and r.choice == -3 for r in records)
    assert records[0].conversation == (user("Name a colour."),)
    assert records[0].metadata == {"source": "rm-v1", "scores": [9.0, 7.5]}
    assert records[-1].conversation == (user("Hi"), bot("Hello!"), user("Joke?"))


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (
            {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": True}]},
            "completions[1].score",
            "got a boolean",
        ),
        (
            {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": "9"}]},
            "completions[1].score",
            "got '9'",
        ),
        (
            {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": math.nan}]},
            "completions[1].score",
            "finite",
        ),
        ({"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b"}]}, "completions[1].score", "missing"),
        (
            {"prompt": "p", "completions": [{"text": "a ", "score": 1}, {"text": " a", "score": 2}]},
            "completions[1].text",
            "duplicates completions[0].text",
        ),
        (
            {"prompt": "p", "completions": [{"text": "a", "score": 1}]},
            "completions",
            "at least 2 completions are needed, got 1",
        ),
        ({"prompt": "p", "completions": ["a", "b"]}, "completions[0]", "expected an object with 'text' and 'score'"),
        ({"prompt": "p", "completions": {"a": 1}}, "completions", "expected a list"),
        ({"prompt": "p"}, "completions", "missing"),
        ({"completions": []}, "", "expected a 'prompt' or 'messages' field"),
        ({"prompt": "p", "messages": [msg("user", "p")], "completions": []}, "prompt", "not both"),
        ({"messages": [msg("assistant", "p")], "completions": []}, "messages[0].role", "must end in a user turn"),
        (
            {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 2}], "metadata": "x"},
            "metadata",
            "expected an object, got a string",
        ),
    ],
)
def test_rated_bad_rows_are_reported_with_line_and_field(row, field, message):
    good = {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 2}]}
    [(line, got_field, got_message)] = problems_of(jsonl(good, row), "rated")
    assert (line, got_field) == (2, field)
    assert message in got_message


def test_rated_a_file_of_equal_scores_has_no_judgements():
    row = {"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 1}]}
    assert problems_of(jsonl(row), "rated") == [
        (0, "", "no judgements in the file (in every row all completions have the same score)")
    ]


# --- the file as a whole --------------------------------------------------------------------------------------

HH_ROW = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}


def test_an_unknown_format_is_a_value_error_naming_the_allowed_ones():
    with pytest.raises(
        ValueError, match="unknown judgement format 'csv'; expected one of trl, hh, oasst, arena, rated"
    ):
        parse_judgements(jsonl(HH_ROW), format="csv")
    with pytest.raises(ValueError, match="'csv'"):
        iter_judgements(jsonl(HH_ROW), format="csv")  # at once, not at the first record
    assert FORMATS == ("trl", "hh", "oasst", "arena", "rated")


def test_blank_lines_and_a_byte_order_mark_are_ignored_and_lines_keep_their_numbers():
    data = b"\xef\xbb\xbf" + jsonl(HH_ROW) + b"\n  \r\n" + jsonl(HH_ROW)
    assert [r.line for r in parse_judgements(data, format="hh")] == [1, 4]


def test_every_bad_line_is_listed_and_nothing_is_returned():
    data = jsonl(HH_ROW, b'{"chosen": "unterminated', HH_ROW, b"[1, 2]", {"chosen": 3, "rejected": "x"}) + (
        b'{"chosen": "caf\xe9"}\n'
    )
    problems = problems_of(data, "hh")
    assert [(line, field) for line, field, _ in problems] == [(2, ""), (4, ""), (5, "chosen"), (6, "")]
    assert "malformed JSON" in problems[0][2] and "column" in problems[0][2]
    assert problems[1][2] == "expected a JSON object, got a list"
    assert problems[2][2] == "expected a string, got a number"
    assert problems[3][2].startswith("invalid UTF-8 at byte")


def test_the_iterator_stops_giving_records_after_a_bad_line_and_raises_at_the_end():
    data = jsonl(HH_ROW, b"nope", HH_ROW)
    got = []
    with pytest.raises(ImportFormatError):
        for record in iter_judgements(data, format="hh"):
            got.append(record.line)
    assert got == [1]


def test_deeply_nested_json_is_a_line_problem_not_a_crash():
    data = jsonl(HH_ROW) + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    [(line, _, message)] = problems_of(data, "hh")
    assert (line, message) == (2, "malformed JSON (nested too deeply)")


def test_limits_on_rows_replies_text_and_size():
    rows = problems_of(jsonl(*[HH_ROW] * 4), "hh", Limits(max_rows=3))
    assert rows == [(4, "", "the file has more than 3 rows")]
    assert len(parse_judgements(jsonl(*[HH_ROW] * 3), format="hh", limits=Limits(max_rows=3))) == 3

    completions = [{"text": f"c{i}", "score": i} for i in range(5)]
    [(_, field, message)] = problems_of(
        jsonl({"prompt": "p", "completions": completions}), "rated", Limits(max_completions=4)
    )
    assert (field, message) == ("completions", "5 completions; at most 4")

    replies = [oasst(f"a{i}", "assistant", f"a{i}", i) for i in range(5)]
    tree = {"prompt": oasst("p", "prompter", "Hi", replies=replies)}
    [(_, field, message)] = problems_of(jsonl(tree), "oasst", Limits(max_completions=4))
    assert (field, message) == ("prompt.replies", "5 replies; at most 4")

    [(_, field, message)] = problems_of(
        jsonl({"prompt": "x" * 11, "chosen": "a", "rejected": "b"}), "trl", Limits(max_text_chars=10)
    )
    assert (field, message) == ("prompt", "text of 11 characters exceeds the limit of 10")

    data = jsonl(HH_ROW) * 20
    [(line, _, message)] = problems_of(data, "hh", Limits(max_bytes=1000))
    assert len(data) == 1740
    assert (line, message) == (0, "the file is 1,740 bytes; the limit is 1,000 bytes")


def test_an_empty_file_is_an_error():
    assert problems_of(b"\n \n", "arena") == [(0, "", "the file has no rows")]


def test_metadata_must_be_an_object():
    [(line, field, message)] = problems_of(jsonl({**HH_ROW, "metadata": [1]}), "hh")
    assert (line, field, message) == (1, "metadata", "expected an object, got a list")
