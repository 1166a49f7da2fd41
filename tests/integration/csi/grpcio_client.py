"""A second gRPC client of the CSI plugin: Python's grpcio, as it is, over the unix
socket, with the :authority it chooses (grpcio 1.5x and later: the socket's path,
percent-encoded), or one given. Calls Identity/GetPluginInfo and Node/NodeGetInfo three
times each on one channel (later calls refer to the header table) and prints one line
per call: the method and the answer's first string field, or the error.

    python grpcio_client.py TARGET [AUTHORITY]
"""
import sys

import grpc


def first_string(message: bytes) -> str:
    """Field 1 of a protobuf message, as a string (both answers start with one)."""
    pos = 0
    while pos < len(message):
        key, pos = varint(message, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = varint(message, pos)
        elif wire == 2:
            n, pos = varint(message, pos)
            if field == 1:
                return message[pos:pos + n].decode()
            pos += n
        else:
            raise ValueError(f"wire type {wire}")
    return ""


def varint(b: bytes, pos: int):
    value, shift = 0, 0
    while True:
        byte = b[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def main() -> int:
    target = sys.argv[1]
    options = [("grpc.default_authority", sys.argv[2])] if len(sys.argv) > 2 else []
    with grpc.insecure_channel(target, options=options) as channel:
        for _ in range(3):
            for method in ("/csi.v1.Identity/GetPluginInfo", "/csi.v1.Node/NodeGetInfo"):
                call = channel.unary_unary(method)
                try:
                    print(method, first_string(call(b"", timeout=10)), flush=True)
                except grpc.RpcError as e:
                    print(method, "ERROR", e.code().name, e.details(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
