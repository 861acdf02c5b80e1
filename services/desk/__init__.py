"""A department's desk: the department's own adapter to the platform, on the bus only
(protos/asyncapi/desk.yaml). `python -m services.desk`."""
