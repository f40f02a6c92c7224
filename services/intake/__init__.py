"""Where the two doors meet: the HTTP API (`mailstream.ingest`) and the SMTP gateway (`mailstream.gateway`)
hand their messages to the same submission path — routing from metadata, the early refusal of draining
and disabled queues, and the durable write (body once, then accepted + status + Reception)."""
