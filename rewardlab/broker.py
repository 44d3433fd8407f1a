"""The embedded broker of `make demo`: kombu's SQLAlchemy transport on an SQLite file, polled every
REWARDLAB_EMBEDDED_BROKER_POLL seconds (0.1 by default) instead of kombu's 1 s.

kombu's virtual transports sleep their polling interval between empty polls, and also whenever a worker's one
prefetch slot is taken, so with 1 s a live chat turn could wait up to a second in the queue before a free worker
took it. The SQLAlchemy transport hands every transport option to `create_engine`, so the interval cannot be set
as an option: this subclass carries it, and `register()` makes it the transport behind `sqla+` URLs.
"""

from __future__ import annotations

import os

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

POLL_SECONDS = float(os.environ.get("REWARDLAB_EMBEDDED_BROKER_POLL", "0.1"))


class Transport(SQLAlchemyTransport):
    polling_interval = POLL_SECONDS


def register() -> None:
    TRANSPORT_ALIASES["sqla"] = "rewardlab.broker:Transport"
