"""The embedded broker polls every 0.1 s (kombu's default is 1 s, which held a chat turn up to a second)."""

from kombu import Connection

from rewardlab import broker
from rewardlab.celery import app  # noqa: F401 - importing the app registers the transport


def test_sqla_urls_use_the_quick_polling_transport(tmp_path):
    with Connection(f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}") as connection:
        assert isinstance(connection.transport, broker.Transport)
        assert connection.transport.polling_interval == broker.POLL_SECONDS == 0.1
