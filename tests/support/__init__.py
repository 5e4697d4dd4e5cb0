"""Test support: the real stack, services as processes, and Kafka/PostgreSQL probes."""
