"""Generated protobuf and gRPC code for coral.v1 (scripts/gen_proto.py). Do not edit."""
