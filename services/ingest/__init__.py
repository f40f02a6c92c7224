"""Ingest: turning HTTP and SMTP submissions into messages ready for the queue."""
