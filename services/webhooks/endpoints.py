"""The endpoints to deliver to: those of the configuration file, and those registered through the API as the
compacted mail.webhooks holds them (read from its beginning at every start; a WebhookDeleted removes one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import WebhookDeleted, WebhookEndpoint
from mailstream.events.serde import SerdeError
from mailstream.events.topics import WEBHOOKS
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
Changed = Callable[[dict[str, WebhookEndpoint]], Awaitable[None]]


class Endpoints:
    def __init__(self, configured: list[WebhookEndpoint]) -> None:
        self._configured = {e.id: e for e in configured}
        self._registered: dict[str, WebhookEndpoint] = {}
        self.caught_up = False

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        ident = (key or b"").decode(errors="replace")
        try:
            record = WEBHOOKS.decode(value)
        except SerdeError as exc:  # one bad record must not stop every endpoint
            log.error("endpoint_unreadable", key=ident, error=str(exc))
            return
        if isinstance(record, WebhookDeleted):
            self._registered.pop(ident, None)
        else:
            self._registered[ident] = record

    def current(self) -> dict[str, WebhookEndpoint]:
        return {**self._registered, **self._configured}  # the file's ids (config-…) never clash with the API's

    async def run(self, bootstrap: Bootstrap, changed: Changed) -> None:
        """Tail mail.webhooks; `changed` gets every endpoint once the tail has caught up, then after each change."""
        tailer = TopicTailer(bootstrap, WEBHOOKS.name, WEBHOOKS.partitions, {})
        pending = True
        try:
            while True:
                batch = await tailer.poll_batch(timeout=0.5)
                for msg in batch:
                    self.apply(msg.key(), msg.value())
                pending = pending or bool(batch)
                if not batch and pending:  # an empty poll: caught up with what was written
                    self.caught_up, pending = True, False
                    await changed(self.current())
        finally:
            await tailer.close()
