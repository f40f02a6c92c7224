"""What the webhook API reads: the endpoints registered through it (mail.webhooks) and the newest attempts of
every endpoint (mail.webhook-attempts), both in memory.

Each replica tails both topics from their beginning at start-up: mail.webhooks is compacted (a record per
endpoint), and of the attempts only the newest `kept` per endpoint stay in memory, so memory is bounded by
endpoints × kept however long the topic is (reading it through costs start-up time, not memory).
"""

from __future__ import annotations

import asyncio
from collections import deque

from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import WebhookAttempt, WebhookDeleted, WebhookEndpoint
from mailstream.events.serde import SerdeError
from mailstream.events.topics import WEBHOOK_ATTEMPTS, WEBHOOKS
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class WebhookView:
    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self._attempts: dict[str, deque[WebhookAttempt]] = {}

    def put(self, record: WebhookEndpoint | WebhookDeleted) -> None:
        """Apply a record of mail.webhooks: as read by the tail, and as written by this replica (read your writes)."""
        if isinstance(record, WebhookDeleted):
            self._endpoints.pop(record.id, None)
        else:
            self._endpoints[record.id] = record

    def add_attempt(self, attempt: WebhookAttempt) -> None:
        kept = self._attempts.get(attempt.endpoint_id)
        if kept is None:
            kept = self._attempts[attempt.endpoint_id] = deque(maxlen=self._kept)
        kept.append(attempt)

    def endpoint(self, ident: str) -> WebhookEndpoint | None:
        return self._endpoints.get(ident)

    def endpoints(self) -> list[WebhookEndpoint]:
        return sorted(self._endpoints.values(), key=lambda e: (e.created_at, e.id))

    def attempts(self, ident: str) -> list[WebhookAttempt]:
        """The endpoint's newest attempts, newest first."""
        return list(reversed(self._attempts.get(ident, ())))

    async def run(self, bootstrap: Bootstrap) -> None:
        await asyncio.gather(self._tail_endpoints(bootstrap), self._tail_attempts(bootstrap))

    async def _tail_endpoints(self, bootstrap: Bootstrap) -> None:
        tailer = TopicTailer(bootstrap, WEBHOOKS.name, WEBHOOKS.partitions, {})
        try:
            while True:
                for msg in await tailer.poll_batch(timeout=0.5):
                    try:
                        self.put(WEBHOOKS.decode(msg.value()))
                    except SerdeError as exc:
                        log.error("webhook_record_unreadable", offset=msg.offset(), error=str(exc))
        finally:
            await tailer.close()

    async def _tail_attempts(self, bootstrap: Bootstrap) -> None:
        tailer = TopicTailer(bootstrap, WEBHOOK_ATTEMPTS.name, WEBHOOK_ATTEMPTS.partitions, {})
        try:
            while True:
                for msg in await tailer.poll_batch(timeout=0.5):
                    try:
                        self.add_attempt(WEBHOOK_ATTEMPTS.decode(msg.value()))
                    except SerdeError as exc:
                        log.error("webhook_attempt_unreadable", offset=msg.offset(), error=str(exc))
        finally:
            await tailer.close()
