"""Exactly-once consume → transform → produce on Kafka transactions (KIP-447).

One transaction per consumed batch carries the handler's output records, its state changelog
writes and the input offsets, so a crash at any point leaves either all of them or none.
State lives in the handler's memory and is rebuilt from the compacted changelog whenever a
partition is (re)assigned or a transaction fails. Fencing of a zombie (a member that lost its
partitions but still runs) comes from the consumer group generation carried by
``send_offsets_to_transaction``, which is why every committed transaction sends offsets.

The parts: `loop` (batches, the handler, commits, rebalances), `transaction` (what one carries and
how it ends), `restore` (offsets and state of a partition becoming ours), `dead_letter` (a record
the handler cannot handle set aside), `clients` (the four Kafka clients and their errors). With
:mod:`mailstream.events.kafka`, the only modules that import confluent_kafka.
"""

from mailstream.events.handler import PartitionHandler, Writes
from mailstream.events.processor.clients import ProcessorFatalError
from mailstream.events.processor.loop import TransactionalProcessor
from mailstream.events.processor.transaction import Output, Write

__all__ = ["Output", "PartitionHandler", "ProcessorFatalError", "TransactionalProcessor", "Write", "Writes"]
