"""mailstream: an event-sourced mail transfer agent on Apache Kafka."""
