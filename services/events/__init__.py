"""The wire contract: record types, topic declarations and Avro serde. Nothing else names a topic."""
