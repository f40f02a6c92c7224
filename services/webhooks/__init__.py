"""Webhooks: the events of mail.events POSTed, signed, to the endpoints tenants register."""
