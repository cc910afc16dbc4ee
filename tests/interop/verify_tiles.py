#!/usr/bin/env python3
"""An independent check of an Onboard audit export, written from the C2SP specs (signed-note,
tlog-checkpoint, tlog-tiles) and RFC 6962, sharing no code with the Rust verifier.

usage: verify_tiles.py EXPORT_DIR VKEY [OLDER_CHECKPOINT_FILE ...]
Exits 0 when the checkpoint signature, every hash tile, every entry bundle and the root agree,
and, for each older signed checkpoint given, its signature, its root over the first `size`
entries, and every tile of its size (tlog-tiles: "Logs MUST serve partial tiles corresponding to
tree sizes for which a checkpoint was produced, but MAY delete any partial tile once the
corresponding full tile is available").
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


def parse_checkpoint(text):
    """tlog-checkpoint: origin, decimal size without leading zeros, base64 of a 32-byte root."""
    lines = text.split("\n")
    if len(lines) < 4 or not lines[0]:
        fail("checkpoint body has no origin, size and root")
    origin, size_s, root_b64 = lines[:3]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        fail(f"checkpoint size {size_s!r} is not a decimal without leading zeros")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != 32:
        fail("checkpoint root is not 32 bytes")
    return origin, int(size_s), root


def bundle_leaves(data):
    """Leaf hashes of an entry bundle: each entry a big-endian uint16 length, then its bytes."""
    leaves, pos = [], 0
    while pos < len(data):
        ln = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + ln > len(data):
            fail("an entry bundle ends inside an entry")
        leaves.append(leaf_hash(data[pos + 2 : pos + 2 + ln]))
        pos += 2 + ln
    return leaves


def read_tile(export, level, n, w):
    """Tile (level, n) of width w as hashes: its own file, or cut from the full tile, which MAY
    replace it. Entry bundles (level "entries") are read as their entries' leaf hashes."""
    path = os.path.join(export, tile_path(level, n, w))
    full = os.path.join(export, tile_path(level, n, WIDTH))
    if not os.path.exists(path) and w < WIDTH and os.path.exists(full):
        path = full
    if not os.path.exists(path):
        fail(f"{tile_path(level, n, w)} is missing")
    data = open(path, "rb").read()
    if level == "entries":
        return b"".join(bundle_leaves(data)[:w])
    return data[: w * 32] if path == full else data


def check_older(export, vkey, path, origin, leaves):
    """An older checkpoint: signed, a prefix of the tree, and every tile of its size there."""
    older = check_signature(open(path, encoding="utf-8").read(), vkey)
    o, size, root = parse_checkpoint(older)
    if o != origin or size > len(leaves):
        fail(f"{path}: not an earlier checkpoint of {origin}")
    if mth(leaves[:size]) != root:
        fail(f"{path}: root differs from the first {size} entries")
    for n in range((size + WIDTH - 1) // WIDTH):
        w = min(WIDTH, size - n * WIDTH)
        if read_tile(export, "entries", n, w) != b"".join(leaves[n * WIDTH : n * WIDTH + w]):
            fail(f"{path}: {tile_path('entries', n, w)} differs from the entries")
    level_hashes, level = leaves[:size], 0
    while len(level_hashes) > 0:
        for n in range((len(level_hashes) + WIDTH - 1) // WIDTH):
            w = min(WIDTH, len(level_hashes) - n * WIDTH)
            want = b"".join(level_hashes[n * WIDTH : n * WIDTH + w])
            if read_tile(export, level, n, w) != want:
                fail(f"{path}: {tile_path(level, n, w)} differs from the entries")
        level_hashes = [
            mth(level_hashes[i * WIDTH : (i + 1) * WIDTH])
            for i in range(len(level_hashes) // WIDTH)
        ]
        level += 1
    return size


def main():
    export, vkey = sys.argv[1], sys.argv[2]
    if os.path.isfile(vkey):
        vkey = open(vkey).read()
    note = open(os.path.join(export, "checkpoint"), encoding="utf-8").read()
    text = check_signature(note, vkey)
    origin, size, root = parse_checkpoint(text)

    leaves = []
    for n in range((size + WIDTH - 1) // WIDTH):
        w = min(WIDTH, size - n * WIDTH)
        data = open(os.path.join(export, tile_path("entries", n, w)), "rb").read()
        leaves.extend(bundle_leaves(data))
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
    older = [check_older(export, vkey, p, origin, leaves) for p in sys.argv[3:]]
    print(
        f"OK: {origin}: {size} entries, {tiles} hash tiles, signature and root verified"
        + (f"; older checkpoints at {older} verified with their tiles" if older else "")
    )


if __name__ == "__main__":
    main()
