#!/usr/bin/env python3
"""An independent check of Onboard's sealed delivery (proto/onboard/v1/delivery.proto), with
pyhpke, an HPKE implementation that shares no code with the server's (rust-hpke), from
RFC 9180: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
info = b"onboard.v1 client secret", aad = the key id.

usage: open_sealed.py keygen
         prints {"public_key": hex, "private_key": hex}: a new X25519 key pair
       open_sealed.py open < {"private_key": hex, "enc": hex, "ciphertext": hex, "key_id": str}
         prints the secret; exits 3 when it does not open (another key, key id, or a change),
         another non-zero code when something else went wrong
"""
import json
import os
import sys

from pyhpke import AEADId, CipherSuite, KDFId, KEMId, OpenError

INFO = b"onboard.v1 client secret"
SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
)


def keygen():
    pair = SUITE.kem.derive_key_pair(os.urandom(32))
    print(
        json.dumps(
            {
                "public_key": pair.public_key.to_public_bytes().hex(),
                "private_key": pair.private_key.to_private_bytes().hex(),
            }
        )
    )


def open_sealed():
    req = json.load(sys.stdin)
    skr = SUITE.kem.deserialize_private_key(bytes.fromhex(req["private_key"]))
    # pyhpke 0.6 leaves CipherSuite.open (single shot) unimplemented: the recipient context
    # and its first open are the same thing (RFC 9180 §6.1).
    ctx = SUITE.create_recipient_context(bytes.fromhex(req["enc"]), skr, info=INFO)
    try:
        secret = ctx.open(bytes.fromhex(req["ciphertext"]), aad=req["key_id"].encode())
    except OpenError as e:
        print(f"does not open: {e}", file=sys.stderr)
        sys.exit(3)
    sys.stdout.write(secret.decode())


if __name__ == "__main__":
    {"keygen": keygen, "open": open_sealed}[sys.argv[1]]()
