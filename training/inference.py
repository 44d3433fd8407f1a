"""Live chat replies, on the `inference` queue's worker: the two replies to a labeler's message.

The worker keeps the policies it used loaded between tasks (the serving one, and the one before it when a
project pits them against each other), so a turn costs one generation, not a model load; a policy that is no
longer asked for is dropped, and a new serving version is loaded the first time a turn needs it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from annotate import chat
from annotate.models import ChatOpponent
from ml.config import SampleConfig
from training import datasets, services
from training.models import ModelVersion

logger = logging.getLogger(__name__)

# Policies kept loaded, by checkpoint path, least recently used first: the serving one and its opponent.
KEEP_LOADED = 2
_loaded: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
_lock = threading.Lock()
loads = {"count": 0}  # how many checkpoints this process loaded (the tests and the bench read it)


def loaded_policy(path: str) -> tuple[Any, Any]:
    """(tokenizer, model) for the checkpoint at `path`, loaded once per process and kept while it is used."""
    from ml import policy
    from ml.common import pick_device

    with _lock:
        if path in _loaded:
            _loaded.move_to_end(path)
            return _loaded[path]
        tokenizer, model = policy.load_policy(path, trainable=False)
        model = model.to(pick_device("auto"))
        _loaded[path] = (tokenizer, model)
        loads["count"] += 1
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
        return tokenizer, model


def chat_config(project, seed: int = 0) -> SampleConfig:
    """Sampling settings for one turn. `seed` differs per turn and per attempt (sampling reseeds its generators), so
    two labelers sending the same message, or a retry, do not get the same pair of replies again."""
    return SampleConfig(
        seed=seed,
        prompts=1,
        replies_per_prompt=2,
        max_new_tokens=project.chat_max_tokens,
        temperature=0.9,
        top_p=0.95,
        resample_rounds=3,
        compare_previous=False,
    )


def _write(version: ModelVersion, turns: list[dict[str, str]], config: SampleConfig, n: int, exclude: list[str]):
    from ml.sampling import SampleRequest, sample_replies

    result = sample_replies(
        version.artifact_path,
        [SampleRequest(turns, exclude)],
        config,
        replies_per_prompt=n,
        loaded=loaded_policy(version.artifact_path),
    )
    return result.replies[0]


def generate_turn(turn_id: int) -> str:
    """Write a queued turn's two replies, or fail it with a message the labeler sees (with a retry button)."""
    turn = chat.turn_begin(turn_id)
    if turn is None:
        return "not queued"
    project = turn.chat.project
    try:
        serving = services.serving_policy(project)
        if serving is None:
            raise chat.ChatError("No policy is serving in this project yet; an admin promotes one on the Models page.")
        opponent = serving
        if project.chat_opponent == ChatOpponent.PREVIOUS:
            opponent = services.previous_policy(project, serving) or serving
        config = chat_config(project, seed=(turn.pk * 7919 + turn.attempts) % 2**31)
        turns = datasets.chat_turns(turn)
        if opponent.pk == serving.pk:
            texts = _write(serving, turns, config, 2, [])
            written = [(text, serving) for text in texts]
        else:
            first = _write(serving, turns, config, 1, [])
            second = _write(opponent, turns, config, 1, first)
            written = [(text, serving) for text in first] + [(text, opponent) for text in second]
        if len(written) < 2:
            raise chat.ChatError(
                "The model could not write two different replies (empty or repeated); try again, or rephrase."
            )
        chat.turn_replies_store(turn_id=turn_id, replies=written[:2])
        return "ready"
    except SoftTimeLimitExceeded:
        chat.turn_fail(
            turn_id=turn_id,
            error=f"The model took longer than {settings.REWARDLAB_CHAT_TIMEOUT_SECONDS} s; try again.",
        )
        return "failed"
    except chat.ChatError as exc:
        chat.turn_fail(turn_id=turn_id, error=str(exc))
        return "failed"
    except Exception as exc:  # the labeler gets a retry button; the log gets the traceback
        logger.exception("chat turn %s failed", turn_id)
        chat.turn_fail(turn_id=turn_id, error=f"The model failed to answer ({type(exc).__name__}: {exc}).")
        return "failed"
