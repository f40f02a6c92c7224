"""The operator's message read model: mail.accepted and mail.status projected into SQLite per replica,
searched by GET /api/messages and summed up by GET /api/queue/metrics (docs/read-model.md)."""
