"""`mailstream` operator commands: a client of the ingest HTTP API (and, for `events`, of mail.events)."""
