"""Live chat in a real browser on a real worker: a labeler has a three-turn chat with the tiny policy (trained
and promoted first, on the same worker), votes each turn with the keyboard, rewrites one reply, rates the chat;
the export then holds the three conversational pairs."""

import time

import pytest
from celery.contrib.testing.worker import start_worker

from annotate import exports
from annotate.models import Chat, Demonstration
from annotate.roles import RoleName
from rewardlab.celery import app
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot
from training import services as run_services
from training.models import RunStatus, TrainingRun

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def wait_for_run(run: TrainingRun, seconds: int = 180) -> TrainingRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            break
        time.sleep(0.5)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def test_a_labeler_chats_three_turns_with_the_keyboard_rewrites_one_reply_and_rates_the_chat(
    page_for, make_user, labeled, settings
):
    from tests.training.conftest import SFT_TINY

    settings.REWARDLAB_RUN_HEARTBEAT_SECONDS = 600
    labeled.chat_enabled = True
    labeled.chat_max_tokens = 16
    labeled.save()
    labeler = make_user(RoleName.LABELER, "lee")
    with start_worker(
        app, pool="solo", queues=["training", "inference"], perform_ping_check=False, shutdown_timeout=60
    ):
        run = run_services.run_start(kind="sft", project=labeled, config=SFT_TINY, created_by=make_user(RoleName.ADMIN))
        run_services.model_version_promote(version=wait_for_run(run).output_version)

        page = page_for(labeler, password=PASSWORD)
        page.click("[data-project=demo] [data-chat]")
        page.fill("#id_goal", "Learn to <b>cook</b> rice.")
        page.fill("#id_text", "How much water for one cup of rice?")
        page.click("button:has-text('Start chatting')")
        page.wait_for_selector("[data-turn-state]")
        for number, (key, follow_up) in enumerate([("1", "And for brown rice?"), ("8", "Thanks!"), ("3", "")], 1):
            page.wait_for_selector("[data-turn-state=ready]", timeout=90_000)
            if number == 3:  # the two replies and the scale, on a laptop and on a tablet in dark mode
                screenshot(page, "chat-vote")
                page.emulate_media(color_scheme="dark")
                page.set_viewport_size({"width": 820, "height": 1180})
                screenshot(page, "chat-vote-tablet-dark")
                page.emulate_media(color_scheme="light")
                page.set_viewport_size({"width": 1280, "height": 860})
            page.locator("body").press(key)
            if number == 2:  # rewrite the chosen reply, then Ctrl+Enter sends the vote with it
                page.keyboard.press("e")
                page.fill("[data-edit-text]", "Use a little more water for brown rice.")
                page.keyboard.press("Control+Enter")
            else:
                page.keyboard.press("Enter")
            page.wait_for_selector(f"[data-turn-reply='{number}']")
            if follow_up:
                page.fill("[data-composer]", follow_up)
                page.keyboard.press("Control+Enter")
                page.wait_for_selector(f"[data-turn-prompt='{number + 1}']")
        screenshot(page, "chat-turns")
        page.click("summary:has-text('End the chat')")
        page.check("input[name=rating][value='6']")
        page.fill("[data-end-comment]", "Clear answers.")
        page.click("button:has-text('End chat')")
        page.wait_for_selector("[data-chat-ended]")

    chat = Chat.objects.get(labeler=labeler)
    assert (chat.status, chat.rating, chat.comment) == ("ended", 6, "Clear answers.")
    assert "Learn to <b>cook</b> rice." in page.inner_text(".livechat__goal")  # shown as text, not markup
    edit = Demonstration.objects.get(labeler=labeler).message
    assert edit.text == "Use a little more water for brown rice."
    options = exports.ExportOptions(style="conversational", labelers=(labeler.pk,))
    rows = list(exports.preference_rows(labeled, options))
    assert sorted(len(row["prompt"]) for row in rows) == [1, 3, 5]  # three turns: 1, 3 and 5 messages deep
    deepest = max(rows, key=lambda row: len(row["prompt"]))
    assert deepest["prompt"][3]["content"] == "Use a little more water for brown rice."  # went on from the edit
    assert deepest["prompt"][4]["content"] == "Thanks!"
