"""Shared library of the onething services: config, telemetry, Mongo/S3/AMQP plumbing, identifiers."""
