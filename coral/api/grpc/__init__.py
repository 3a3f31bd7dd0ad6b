"""The grpc.aio adapter for the coral.v1 services."""
