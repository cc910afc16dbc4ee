// Command tlogcheck verifies Onboard's audit log with Go's own transparency-log packages,
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, over any C2SP tlog-tiles
// location served over HTTP: a running server's tiles API ([audit_http]), a bucket website or
// CDN in front of a publication target ([publish]), or an export behind a static file server.
//
//	go run . BASE_URL VKEY [SAVED_CHECKPOINT_FILE] [ENTRY_INDEX]
//
// It checks the checkpoint's signature, that every hash tile and entry bundle matches the
// signed root, and, optionally, that the log extends a checkpoint saved earlier (a consistency
// proof) and that one entry is in the log (an inclusion proof). It exits 1 on any failure.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is C2SP tlog-tiles' fixed height: 256 hashes per full tile.
const tileHeight = 8

// emptyRoot is the root a checkpoint of 0 entries signs: RFC 6962's hash of the empty tree,
// SHA-256 of nothing. Go's tlog defines the empty tree's hash as all zeros instead, and its
// proofs refuse a tree of size 0, so size 0 is checked here rather than with tlog.
var emptyRoot = tlog.Hash(sha256.Sum256(nil))

// checkpoint is a signed C2SP tlog-checkpoint: origin, size, root.
type checkpoint struct {
	origin string
	tree   tlog.Tree
}

// openCheckpoint verifies the signed note with the log's key (other signatures, such as
// witness cosignatures, are ignored) and parses its body.
func openCheckpoint(msg []byte, verifiers note.Verifiers) (checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return checkpoint{}, errors.New("checkpoint body: want origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return checkpoint{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint root: %w", err)
	}
	return checkpoint{origin: lines[0], tree: tlog.Tree{N: size, Hash: root}}, nil
}

// tiles reads C2SP tiles over HTTP. C2SP paths are Go's without the height element:
// tile/8/0/x001/234 is tile/0/x001/234, and Go's data tiles are C2SP's entry bundles.
type tiles struct{ base string }

func (t tiles) get(path string) ([]byte, error) {
	resp, err := http.Get(t.base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func c2spPath(t tlog.Tile) string {
	p := strings.Replace(t.Path(), fmt.Sprintf("tile/%d/", t.H), "tile/", 1)
	return strings.Replace(p, "tile/data/", "tile/entries/", 1)
}

func (t tiles) Height() int { return tileHeight }

func (t tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		data, err := t.get(c2spPath(tile))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// bundleTile is the entry bundle holding entry i in a tree of size n (partial at the right
// edge: as wide as the tree has entries there).
func bundleTile(i, n int64) tlog.Tile {
	start := i >> tileHeight << tileHeight
	w := n - start
	if w > 1<<tileHeight {
		w = 1 << tileHeight
	}
	return tlog.Tile{H: tileHeight, L: -1, N: start >> tileHeight, W: int(w)}
}

// bundle splits an entry bundle: each entry is a big-endian uint16 length and the bytes.
func bundle(data []byte) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated length")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("truncated entry")
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	return entries, nil
}

func run() error {
	if len(os.Args) < 3 {
		return errors.New("usage: tlogcheck BASE_URL VKEY [SAVED_CHECKPOINT_FILE] [ENTRY_INDEX]")
	}
	base := strings.TrimSuffix(os.Args[1], "/") + "/"
	v, err := note.NewVerifier(os.Args[2])
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	verifiers := note.VerifierList(v)
	src := tiles{base}
	msg, err := src.get("checkpoint")
	if err != nil {
		return err
	}
	cp, err := openCheckpoint(msg, verifiers)
	if err != nil {
		return err
	}
	fmt.Printf("checkpoint: origin %s, %d entries, root %s (signature valid)\n", cp.origin, cp.tree.N, cp.tree.Hash)

	// Every hash read through TileHashReader is checked against the signed root first.
	hashes := tlog.TileHashReader(cp.tree, src)
	if cp.tree.N == 0 {
		// A new log: nothing to read, but the root must be the empty tree's.
		if cp.tree.Hash != emptyRoot {
			return fmt.Errorf("a checkpoint of 0 entries must sign the empty tree's root %s", emptyRoot)
		}
	} else if root, err := tlog.TreeHash(cp.tree.N, hashes); err != nil || root != cp.tree.Hash {
		return fmt.Errorf("hash tiles do not give the signed root: %v", err)
	}

	// Every entry: its record hash must be the tile's leaf hash, its seq its index.
	actions := map[string]int{}
	for start := int64(0); start < cp.tree.N; start += 1 << tileHeight {
		tile := bundleTile(start, cp.tree.N)
		w := int64(tile.W)
		data, err := src.get(c2spPath(tile))
		if err != nil {
			return err
		}
		entries, err := bundle(data)
		if err != nil || int64(len(entries)) != w {
			return fmt.Errorf("entry bundle %s: %d entries (%v), want %d", c2spPath(tile), len(entries), err, w)
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := hashes.ReadHashes(indexes)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != leaves[i] {
				return fmt.Errorf("entry %d does not hash to its leaf", start+int64(i))
			}
			var fields struct {
				Seq    int64  `json:"seq"`
				Action string `json:"action"`
			}
			if err := json.Unmarshal(e, &fields); err != nil || fields.Seq != start+int64(i) {
				return fmt.Errorf("entry %d: not a JSON object with its seq (%v)", start+int64(i), err)
			}
			actions[fields.Action]++
		}
	}
	fmt.Printf("%d/%d entries valid\n", cp.tree.N, cp.tree.N)
	names := make([]string, 0, len(actions))
	for a := range actions {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		fmt.Printf("  %s=%d\n", a, actions[a])
	}

	// Monitoring: the log must extend the checkpoint saved last time.
	if len(os.Args) > 3 && os.Args[3] != "" {
		saved, err := os.ReadFile(os.Args[3])
		if err != nil {
			return err
		}
		old, err := openCheckpoint(saved, verifiers)
		if err != nil {
			return fmt.Errorf("saved %w", err)
		}
		if old.origin != cp.origin || old.tree.N > cp.tree.N {
			return fmt.Errorf("ALERT: the log went back from %d to %d entries", old.tree.N, cp.tree.N)
		}
		// Every tree extends the empty one, whose root is fixed; tlog proves sizes from 1.
		if old.tree.N == 0 && old.tree.Hash != emptyRoot {
			err = fmt.Errorf("the saved checkpoint of 0 entries does not sign the empty tree's root")
		} else if old.tree.N > 0 {
			var proof tlog.TreeProof
			proof, err = tlog.ProveTree(cp.tree.N, old.tree.N, hashes)
			if err == nil {
				err = tlog.CheckTree(proof, cp.tree.N, cp.tree.Hash, old.tree.N, old.tree.Hash)
			}
		}
		if err != nil {
			return fmt.Errorf("ALERT: not consistent with the saved checkpoint of %d entries: %v", old.tree.N, err)
		}
		fmt.Printf("consistent with the saved checkpoint of %d entries\n", old.tree.N)
	}

	// One entry's inclusion proof, as an auditor would hand it to someone else.
	if len(os.Args) > 4 {
		i, err := strconv.ParseInt(os.Args[4], 10, 64)
		if err != nil || i < 0 || i >= cp.tree.N {
			return fmt.Errorf("entry index %q out of range", os.Args[4])
		}
		data, err := src.get(c2spPath(bundleTile(i, cp.tree.N)))
		if err != nil {
			return err
		}
		entries, err := bundle(data)
		if err != nil || int64(len(entries)) <= i%(1<<tileHeight) {
			return fmt.Errorf("entry bundle for %d: %v", i, err)
		}
		entry := entries[i%(1<<tileHeight)]
		proof, err := tlog.ProveRecord(cp.tree.N, i, hashes)
		if err == nil {
			err = tlog.CheckRecord(proof, cp.tree.N, cp.tree.Hash, i, tlog.RecordHash(entry))
		}
		if err != nil {
			return fmt.Errorf("inclusion of entry %d: %v", i, err)
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, entry, "  ", "  ")
		fmt.Printf("entry %d is in the log (inclusion proof of %d hashes):\n  %s\n", i, len(proof), pretty.String())
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "INVALID:", err)
		os.Exit(1)
	}
}
