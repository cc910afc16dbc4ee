#!/usr/bin/env python3
"""Prints the checkpoint a new, empty log signs, made apart from Onboard's code.

    empty_checkpoint.py KEY_FILE [ROOT_BASE64]

KEY_FILE is a Go-format note signing key (`PRIVATE+KEY+<name>+<hash>+<base64(0x01||seed)>`, as
`onboard keygen` and `onboard demo` write it). The checkpoint (C2SP tlog-checkpoint) has the
key's name as origin, size 0 and RFC 6962's empty-tree root, SHA-256 of nothing, unless
ROOT_BASE64 is given (a wrong root, for the refusal case). It is signed as C2SP signed-note
says: key id = SHA-256(name || 0x0A || 0x01 || public key)[:4], line `— <name> base64(id||sig)`.
"""
import base64
import hashlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def main() -> None:
    # The base64 key may itself hold "+"; the name may not (signed-note).
    parts = open(sys.argv[1], encoding="utf-8").read().strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        sys.exit("not a Go-format note signing key")
    name, raw = parts[2], base64.b64decode(parts[4])
    if raw[0] != 1 or len(raw) != 33:
        sys.exit("not an Ed25519 note key")
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    root = sys.argv[2] if len(sys.argv) > 2 else base64.b64encode(hashlib.sha256(b"").digest()).decode()
    body = f"{name}\n0\n{root}\n"
    signature = base64.b64encode(key_id + key.sign(body.encode())).decode()
    sys.stdout.write(f"{body}\n\u2014 {name} {signature}\n")


if __name__ == "__main__":
    main()
