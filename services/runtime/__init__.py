"""What every CaseBridge service runs on: settings, logging, Kafka, PostgreSQL, delivery."""
