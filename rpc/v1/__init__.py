"""Generated protobuf / gRPC stubs of ``shoal.v1`` (regenerate: ``python -m shoal.rpc.codegen``)."""
