#!/usr/bin/env python3
"""An independent check of an Onboard audit export, written from the C2SP specs (signed-note,
tlog-checkpoint, tlog-tiles) and RFC 6962, sharing no code with the Rust verifier.

usage: verify_tiles.py EXPORT_DIR VKEY
Exits 0 when the checkpoint signature, every hash tile, every entry bundle and the root agree.
"""
import base64
import hashlib
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

WIDTH = 256
HEIGHT = 8


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def index_path(n):
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.insert(0, f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(parts)


def tile_path(level, n, w):
    base = f"tile/{level}/{index_path(n)}"
    return base if w == WIDTH else f"{base}.p/{w}"


def leaf_hash(b):
    return hashlib.sha256(b"\x00" + b).digest()


def node_hash(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(hashes):
    """RFC 6962 Merkle tree hash over leaf hashes, split at the largest power of two < n."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def check_signature(note, vkey):
    name, key_id_hex, key_b64 = vkey.strip().split("+", 2)
    raw = base64.b64decode(key_b64)
    if raw[0] != 1 or len(raw) != 33:
        fail("verifier key is not Ed25519")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != key_id_hex:
        fail("verifier key id does not match its key")
    split = note.rindex("\n\n")
    text, sigs = note[: split + 1], note[split + 2 :]
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            fail(f"bad signature line {line!r}")
        who, sig_b64 = line[2:].split(" ", 1)
        sig = base64.b64decode(sig_b64)
        if who == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            return text
    fail("no signature by the given key")


def main():
    export, vkey = sys.argv[1], sys.argv[2]
    if os.path.isfile(vkey):
        vkey = open(vkey).read()
    note = open(os.path.join(export, "checkpoint"), encoding="utf-8").read()
    text = check_signature(note, vkey)
    origin, size_s, root_b64 = text.split("\n")[:3]
    size, root = int(size_s), base64.b64decode(root_b64)

    leaves = []
    for n in range((size + WIDTH - 1) // WIDTH):
        w = min(WIDTH, size - n * WIDTH)
        data = open(os.path.join(export, tile_path("entries", n, w)), "rb").read()
        pos = 0
        while pos < len(data):
            ln = int.from_bytes(data[pos : pos + 2], "big")
            leaves.append(leaf_hash(data[pos + 2 : pos + 2 + ln]))
            pos += 2 + ln
        if len(leaves) != n * WIDTH + w:
            fail(f"entry bundle {n} holds the wrong number of entries")

    # Hash tiles: level L holds the tree's nodes at height 8L.
    level_hashes, level, tiles = leaves, 0, 0
    while len(level_hashes) > 0:
        for n in range((len(level_hashes) + WIDTH - 1) // WIDTH):
            w = min(WIDTH, len(level_hashes) - n * WIDTH)
            got = open(os.path.join(export, tile_path(level, n, w)), "rb").read()
            want = b"".join(level_hashes[n * WIDTH : n * WIDTH + w])
            if got != want:
                fail(f"hash tile {tile_path(level, n, w)} differs from the entries")
            tiles += 1
        level_hashes = [
            mth(level_hashes[i * WIDTH : (i + 1) * WIDTH])
            for i in range(len(level_hashes) // WIDTH)
        ]
        level += 1

    if mth(leaves) != root:
        fail("root differs from the checkpoint")
    print(f"OK: {origin}: {size} entries, {tiles} hash tiles, signature and root verified")


if __name__ == "__main__":
    main()
