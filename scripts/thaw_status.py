#!/usr/bin/env python3
"""Query a Thaw coordinator's status from Python, written from docs/protocol.md alone.

Usage: thaw_status.py tcp://127.0.0.1:5555 [--server-key coord.public]
Prints the status object as JSON; exits 1 if nothing answers within 3 seconds.
"""
import json
import sys

import zmq


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    if "--server-key" in sys.argv:
        socket.curve_serverkey = open(sys.argv[sys.argv.index("--server-key") + 1]).read().strip().encode()
        socket.curve_publickey, socket.curve_secretkey = zmq.curve_keypair()
    socket.connect(address)
    socket.send_json({"type": "status"})
    if not socket.poll(3000):
        print(f"no answer from {address}", file=sys.stderr)
        return 1
    reply = socket.recv_json()
    print(json.dumps(reply, sort_keys=True))
    return 0 if reply.get("type") == "status" else 1


if __name__ == "__main__":
    sys.exit(main())
