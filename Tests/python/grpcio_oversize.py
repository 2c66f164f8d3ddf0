"""Oversize requests through Python grpcio (a client nobody on the project wrote).

Usage: grpcio_oversize.py PORT LIMIT. Sends SearchItems and health Check requests (public, so no
token is needed and no authentication answer can come first) 1 byte and 64 MiB over
LIMIT, plain and gzip-compressed, then a normal health check on the same channel; prints one line
per call: "<label> <STATUS_CODE> <details>".
"""
import sys

import grpc

port, limit = sys.argv[1], int(sys.argv[2])
channel = grpc.insecure_channel(
    f"127.0.0.1:{port}",
    options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
)
identity = lambda b: b  # noqa: E731  raw bytes in and out
for method in ("/onewindow.v1.CatalogService/SearchItems", "/grpc.health.v1.Health/Check"):
    call = channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)
    for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
        for over in (1, 64 * 1024 * 1024):
            label = f"{method.rsplit('/', 1)[1]}+{over}{'+gzip' if compression == grpc.Compression.Gzip else ''}"
            try:
                call(b" " * (limit + over), compression=compression, timeout=60)
                print(label, "OK", "-")
            except grpc.RpcError as error:
                print(label, error.code().name, error.details())
health = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=identity, response_deserializer=identity)
print("health", "OK" if health(b"", timeout=10) is not None else "EMPTY", "-")
sys.stdout.flush()
