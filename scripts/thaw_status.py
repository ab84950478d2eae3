#!/usr/bin/env python3
"""Query a Thaw coordinator's status from Python, written from docs/protocol.md alone.

Usage: thaw_status.py tcp://127.0.0.1:5555 [--server-key coord.public]
       thaw_status.py tcp://127.0.0.1:5555 --worker-message '{"type": "heartbeat", ...}' --secret job.secret
Prints the status object (or, with --worker-message, the reply to that message) as JSON; exits 1 if
nothing answers within 3 seconds. Status needs no secret. A worker message is signed as the protocol's
"Worker authentication" section says: a second frame {"sequence": S, "mac": HMAC-SHA256(secret,
"S\\n" + body)}, with S this process's microsecond clock.
"""
import hashlib
import hmac
import json
import sys
import time

import zmq


def option(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


def signed_frames(body: bytes, secret_path: str) -> list:
    """The two frames of a worker message: the body, then its authentication."""
    secret = bytes.fromhex(open(secret_path).read().strip())
    sequence = time.time_ns() // 1000
    mac = hmac.new(secret, f"{sequence}\n".encode() + body, hashlib.sha256).hexdigest()
    return [body, json.dumps({"sequence": sequence, "mac": mac}).encode()]


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "tcp://127.0.0.1:5555"
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    if option("--server-key"):
        socket.curve_serverkey = open(option("--server-key")).read().strip().encode()
        socket.curve_publickey, socket.curve_secretkey = zmq.curve_keypair()
    socket.connect(address)
    message = option("--worker-message")
    if message is not None:
        body = message.encode()
        socket.send_multipart(signed_frames(body, option("--secret")) if option("--secret") else [body])
    else:
        socket.send_json({"type": "status"})
    if not socket.poll(3000):
        print(f"no answer from {address}", file=sys.stderr)
        return 1
    reply = socket.recv_json()
    print(json.dumps(reply, sort_keys=True))
    return 0 if message is not None or reply.get("type") == "status" else 1


if __name__ == "__main__":
    sys.exit(main())
