"""Test and benchmark infrastructure: local Kafka broker, Postfix test tools.

Nothing here imports pytest, so bench scripts can use it too."""
