"""Which training run a log line belongs to: a context variable the runner sets around a run, so every line logged
inside it (the trainers', transformers', the worker's) can carry `run_id`. Standard library only; the project's log
formatter (`rewardlab.logging`) reads it.

>>> with run_context(7):
...     run_id_var.get()
7
>>> run_id_var.get() is None
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

run_id_var: ContextVar[int | None] = ContextVar("rewardlab_run_id", default=None)


@contextlib.contextmanager
def run_context(run_id: int | None) -> Iterator[None]:
    """Within the block, log lines carry this run's id."""
    token = run_id_var.set(run_id)
    try:
        yield
    finally:
        run_id_var.reset(token)
