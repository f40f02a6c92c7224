"""Structured logs, health and Prometheus metrics shared by every service."""
