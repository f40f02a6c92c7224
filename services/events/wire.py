"""The Confluent wire format's registry side: subjects registered at start-up, ids cached, schemas by id.

With `kafka.schema_registry` set, each service registers the current value schema of every topic that carries
one record type under TopicNameStrategy's subject `<topic>-value` with compatibility BACKWARD, and writes those
record types with their ids (serde.encode). Topics that carry several record types (mail.ready, the state
topics) keep their records' ids only where the type is registered for another topic, else single-object
encoding: a subject of TopicNameStrategy holds one evolving schema. Keys are UTF-8 strings, not Avro, so there
are no `-key` subjects. confluent_kafka's client does the HTTP and caches what it was told.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from mailstream.config.kafka import SchemaRegistryConfig
from mailstream.events.serde import SerdeError, registry
from mailstream.events.topics import TopicSpec

COMPATIBILITY = "BACKWARD"
HTTP_CONFLICT = 409
HTTP_UNPROCESSABLE = 422
SUBJECT_NOT_FOUND = 40401


class RegistryError(RuntimeError):
    """The registry could not be reached, or refused a schema: a service cannot start with it."""


def subjects(topics: Iterable[TopicSpec[Any]]) -> dict[str, str]:
    """TopicNameStrategy: `<topic>-value` -> schema name, for the topics that carry one record type."""
    return {f"{t.name}-value": t.values[0].schema_name for t in topics if len(t.values) == 1}


class RegistryIds:
    """serde.WireIds over a registry: ids to write with (those registered), and the schema behind any id read."""

    def __init__(self, client: SchemaRegistryClient, url: str) -> None:
        self._client, self._url = client, url
        self._writer: dict[str, int] = {}  # schema name -> id
        self._fingerprints: dict[int, bytes] = {}
        self._unknown: set[int] = set()  # ids the registry said it has no schema for
        self.subjects_registered: dict[str, int] = {}

    @classmethod
    def connect(cls, settings: SchemaRegistryConfig) -> RegistryIds:
        """A reader's view (no registration): for the CLI and tools."""
        return cls(SchemaRegistryClient(settings.client_conf()), settings.url)

    def register(self, topics: Iterable[TopicSpec[Any]]) -> None:
        """Register every subject's current schema (BACKWARD); RegistryError naming the subject if the
        registry is unreachable or refuses it, so the service stops at start-up rather than write unreadable
        records."""
        sources = registry().sources
        for subject, name in subjects(topics).items():
            self._set_compatibility(subject, new_subject_ok=True)
            try:
                schema_id = self._client.register_schema(subject, Schema(sources[name], "AVRO"))
            except SchemaRegistryError as exc:
                if exc.http_status_code in (HTTP_CONFLICT, HTTP_UNPROCESSABLE):
                    raise RegistryError(
                        f"schema registry at {self._url} refused {name} for subject {subject} as incompatible "
                        f"({COMPATIBILITY}) with its registered versions, or invalid: {exc.error_message}"
                    ) from None
                raise self._unavailable(exc) from None
            except Exception as exc:  # the HTTP client's own errors: connection refused, timeouts, TLS
                raise self._unavailable(exc) from None
            self._set_compatibility(subject, new_subject_ok=False)  # a subject created just now
            self._writer[name] = schema_id
            self._fingerprints[schema_id] = registry().current[name][0]
            self.subjects_registered[subject] = schema_id

    def _set_compatibility(self, subject: str, *, new_subject_ok: bool) -> None:
        try:
            self._client.set_compatibility(subject, COMPATIBILITY)
        except SchemaRegistryError as exc:
            if new_subject_ok and exc.http_status_code == 404:  # some registries want the subject to exist first
                return
            raise self._unavailable(exc) from None
        except Exception as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> RegistryError:
        return RegistryError(f"schema registry at {self._url} unavailable: {exc}")

    def close(self) -> None:
        self._client.close()

    def writer_id(self, schema_name: str) -> int | None:
        return self._writer.get(schema_name)

    def fingerprint(self, schema_id: int) -> bytes:
        known = self._fingerprints.get(schema_id)
        if known is not None:
            return known
        if schema_id in self._unknown:
            raise SerdeError(f"schema id {schema_id} is not in the registry at {self._url}")
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:  # garbage that starts with 00: asked once, not once a record
                self._unknown.add(schema_id)
            raise SerdeError(f"schema id {schema_id} from the registry at {self._url}: {exc}") from None
        except Exception as exc:  # unreachable now: asked again for the next record
            raise SerdeError(f"schema id {schema_id} from the registry at {self._url}: {exc}") from None
        if schema.schema_type not in (None, "AVRO") or schema.schema_str is None:
            raise SerdeError(f"schema id {schema_id} is {schema.schema_type}, not Avro")
        fp = registry().learn(schema.schema_str)
        self._fingerprints[schema_id] = fp
        return fp
