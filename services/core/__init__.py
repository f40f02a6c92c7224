"""Pure domain logic: no Kafka, SMTP, DNS, HTTP or asyncio imports, and no clock reads."""
