"""A labeler completes one task of each kind with the keyboard only, in Chromium; untrusted replies stay inert."""

import pytest

from annotate import services
from annotate.models import Comparison, Demonstration, Project, Ranking, Rating
from annotate.roles import RoleName
from tests.conftest import PASSWORD, jsonl
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROWS = [
    {
        "messages": [
            {"role": "user", "content": "I need a name for my bakery."},
            {"role": "assistant", "content": "Happy to help! What kind of bakery is it?"},
            {"role": "user", "content": "Sourdough, in an old train station."},
        ],
        "completions": [
            "**Platform Loaf** — a nod to the station.\n\nOther ideas:\n- The Rising Line\n- Crumb & Carriage",
            "Bakery.",
            "Why do you want to open a bakery? Most fail within a year.",
            "Here are some names: Sourdough Station, Loaf Line, The Starter Platform.",
        ],
    },
    {
        "prompt": "Explain the moon landing to a 6 year old in a few sentences.",
        "completions": [
            "People flew to the moon in a big rocket and walked on it!",
            "Explain gravity to a 6 year old.",
        ],
    },
]


@pytest.fixture
def project(db):
    project = services.project_create(
        name="Assistant",
        slug="assistant",
        import_task_kinds=["demonstrate", "rank", "compare", "rate"],
        guidelines="Be **helpful**.",
    )
    services.prompts_import(project=project, data=jsonl(*ROWS), filename="rows.jsonl")
    return project


def open_kind(page, kind: str) -> None:
    page.goto(f"/projects/assistant/label/?mode={kind}")
    page.wait_for_selector(f"#workspace[data-kind={kind}]")


def swapped_to_next_task(page, previous_task: str) -> None:
    page.wait_for_function(
        "prev => document.querySelector('#workspace') && document.querySelector('#workspace').dataset.task !== prev",
        arg=previous_task,
    )


def test_a_labeler_completes_every_kind_with_the_keyboard_only(page_for, make_user, project):
    labeler = make_user(RoleName.LABELER, "kim")
    page = page_for(labeler, password=PASSWORD)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Demonstrate: the composer has focus; type, then Ctrl+Enter.
    open_kind(page, "demonstrate")
    page.evaluate("window.__sameDocument = true")
    task = page.get_attribute("#workspace", "data-task")
    screenshot(page, "label-demonstrate")
    page.keyboard.type("How about **Platform Loaf**? It nods to the station.")
    page.keyboard.press("Control+Enter")
    swapped_to_next_task(page, task)
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped it in: no full page reload
    new_task = page.get_attribute("#workspace", "data-task")
    assert page.url.endswith(f"/projects/assistant/label/{new_task}/?mode=demonstrate")  # the pushed URL
    assert (
        Demonstration.objects.get(labeler=labeler).message.text
        == "How about **Platform Loaf**? It nods to the station."
    )

    # Rank: 3 best, then 1 tied with 4 (Shift), a mistake undone, then 2.
    open_kind(page, "rank")
    task = page.get_attribute("#workspace", "data-task")
    number_to_message = {
        int(card.get_attribute("data-candidate")): int(card.get_attribute("data-message"))
        for card in page.query_selector_all(".candidate[data-candidate]")
    }
    for key in ["3", "1", "Shift+4", "2", "Backspace", "2"]:
        page.keyboard.press(key)
    assert page.inner_text("[data-tiers] .tier:nth-child(2) .tier__name") == "2ND"
    screenshot(page, "label-rank")
    page.keyboard.press("Enter")
    swapped_to_next_task(page, task)
    ranking = Ranking.objects.get(labeler=labeler)
    m = number_to_message
    assert ranking.tiers == [[m[3]], [m[1], m[4]], [m[2]]]

    # Compare: 2 = "A is better", b = both bad, Enter.
    open_kind(page, "compare")
    task = page.get_attribute("#workspace", "data-task")
    left = int(page.get_attribute(".candidate[data-side=A]", "data-message"))
    page.keyboard.press("2")
    page.keyboard.press("b")
    screenshot(page, "label-compare")
    page.keyboard.press("Enter")
    swapped_to_next_task(page, task)
    comparison = Comparison.objects.get(labeler=labeler)
    assert (comparison.candidate_a_id, comparison.choice, comparison.both_bad) == (left, -3, True)

    # Rate: 5, flag 2 with Shift+2, Enter.
    open_kind(page, "rate")
    task = page.get_attribute("#workspace", "data-task")
    page.keyboard.press("5")
    page.keyboard.press("Shift+2")
    screenshot(page, "label-rate")
    page.keyboard.press("Enter")
    swapped_to_next_task(page, task)
    rating = Rating.objects.get(labeler=labeler)
    assert (rating.score, rating.flags) == (5, [Project.objects.get().flags[1]["key"]])
    assert errors == []


def test_guidelines_help_and_skip_are_one_key_away(page_for, make_user, project):
    page = page_for(make_user(RoleName.LABELER, "kim"), password=PASSWORD)
    open_kind(page, "compare")
    page.keyboard.press("?")
    assert page.is_visible("#help-dialog")
    screenshot(page, "label-help")
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    assert page.is_visible("#guidelines-dialog")
    assert page.inner_html("#guidelines-dialog .prose").strip() == "<p>Be <strong>helpful</strong>.</p>"
    page.keyboard.press("Escape")
    assert not page.is_visible("#guidelines-dialog")
    task = page.get_attribute("#workspace", "data-task")
    page.keyboard.press("s")
    page.keyboard.press("ArrowDown")  # "The task is unclear"
    page.keyboard.press("Enter")
    swapped_to_next_task(page, task)
    from annotate.models import Assignment

    assert Assignment.objects.get(task_id=int(task)).skip_reason == "The task is unclear"


def test_a_reply_with_script_and_img_payloads_is_shown_inert(page_for, make_user, db):
    project = services.project_create(name="Hostile", slug="hostile", import_task_kinds=["rank"])
    payloads = [
        '<script>window.__pwned = "script"</script>Hello',
        "<img src=x onerror=\"window.__pwned = 'img'\"> and [a link](javascript:window.__pwned=1)",
        "```html\n<script>window.__pwned = 'code'</script>\n```",
        '<svg onload="window.__pwned=\'svg\'"></svg><iframe src="javascript:alert(1)"></iframe>',
    ]
    row = {"prompt": "<b onmouseover=\"window.__pwned='prompt'\">hover</b>", "completions": payloads}
    services.prompts_import(project=project, data=jsonl(row), filename="x.jsonl")
    page = page_for(make_user(RoleName.LABELER, "kim"), password=PASSWORD)
    page.goto("/projects/hostile/label/")
    page.wait_for_selector("#workspace[data-kind=rank]")
    page.hover(".bubble--user")
    for key in ["1", "2", "3", "4"]:  # the board renders the replies' text into chips too
        page.keyboard.press(key)
    screenshot(page, "label-hostile")
    assert page.evaluate("window.__pwned") is None
    assert (
        page.eval_on_selector_all(
            ".candidate__body :is(script, img, svg, iframe), .bubble :is(script, b)",
            "els => els.length",
        )
        == 0
    )
    assert "<script>window.__pwned" in page.inner_text(".candidates")
    assert "<b onmouseover" in page.inner_text(".bubble--user")


def test_the_page_works_as_plain_forms_without_javascript(browser, live_server, make_user, project):
    labeler = make_user(RoleName.LABELER, "kim")
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("#id_username", "kim")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.goto("/projects/assistant/label/?mode=compare")
    page.check("input[name=choice][value='4']", force=True)
    page.click("#task-form button[type=submit]")
    page.wait_for_url("**/label/**")
    assert Comparison.objects.get(labeler=labeler).choice == 4
    context.close()


@pytest.mark.parametrize("kind", ["rank", "compare"])
def test_task_pages_fit_a_tablet_in_dark_mode(page_for, make_user, project, kind):
    page = page_for(make_user(RoleName.LABELER, "kim"), password=PASSWORD, width=820, height=1180, dark=True)
    open_kind(page, kind)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 18, 24)"
    screenshot(page, f"label-{kind}-tablet-dark")


def test_replies_can_be_ranked_by_drag_and_drop(page_for, make_user, project):
    page = page_for(make_user(RoleName.LABELER, "kim"), password=PASSWORD)
    open_kind(page, "rank")
    # drag reply 2 into the "new tier" zone: it becomes the best; then reply 4 onto the same tier: a tie
    page.locator("[data-pool] .chip-reply[data-number='2']").drag_to(page.locator(".tier--new .tier__items"))
    assert page.inner_text(".candidate[data-candidate='2'] [data-tier-label]") == "BEST"
    page.locator("[data-pool] .chip-reply[data-number='4']").drag_to(page.locator(".tier[data-tier='0'] .tier__items"))
    assert page.inner_text(".candidate[data-candidate='4'] [data-tier-label]") == "BEST (TIE)"
    page.keyboard.press("1")
    page.keyboard.press("3")
    values = page.eval_on_selector_all("select[data-place-for]", "els => els.map(e => e.value)")
    assert values == ["2", "1", "3", "1"]
