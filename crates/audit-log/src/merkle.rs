//! Merkle tree proofs (RFC 9162 §2.1): generation over stored subtree hashes, and verification.
//!
//! A *complete node* `(level, index)` is the root of the perfect subtree over leaves
//! `[index << level, (index + 1) << level)`. The log stores every complete node, so any proof is a
//! handful of reads: at most one proof element covers an incomplete (right-edge) range, and that
//! range decomposes into at most `log2(n)` complete nodes.

use crate::hash::{Hash, empty_root, largest_power_of_two_below, node_hash};

/// Anything that can hand out complete-node hashes.
pub trait NodeSource {
    /// The error a lookup can fail with (a storage error, or a missing node).
    type Error;
    /// The hash of complete node `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof does not verify, or why one cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is at or beyond the tree size.
    #[error("index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The two sizes do not describe an older and a newer tree.
    #[error("sizes {size1} and {size2} do not make a consistency proof")]
    BadSizes {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes.
    #[error("proof has {got} hashes, want {want}")]
    WrongLength {
        /// Hashes present.
        got: usize,
        /// Hashes the sizes require.
        want: usize,
    },
    /// The recomputed root differs from the expected one.
    #[error("recomputed root {computed} does not match expected root {expected}")]
    RootMismatch {
        /// What the proof leads to (hex).
        computed: String,
        /// What the caller expected (hex).
        expected: String,
    },
}

/// The hash of leaves `[lo, hi)`, where `lo` is aligned as in every range the RFC 6962 recursion
/// produces (a multiple of the smallest power of two ≥ `hi - lo`): the complete pieces are the
/// set bits of `hi - lo`, left to right, folded from the right.
pub fn range_hash<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    if hi == lo {
        return Ok(empty_root());
    }
    let len = hi - lo;
    let mut pieces: Vec<Hash> = Vec::with_capacity(len.count_ones() as usize);
    let mut start = lo;
    for level in (0..64u8).rev() {
        if len & (1u64 << level) != 0 {
            pieces.push(src.node(level, start >> level)?);
            start += 1u64 << level;
        }
    }
    let mut acc = pieces.pop().unwrap_or_else(empty_root);
    while let Some(left) = pieces.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root of the tree of size `size`.
pub fn root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}

/// The audit path for leaf `index` in the tree of size `size` (RFC 9162 §2.1.3.1), leaf-first.
pub fn inclusion_proof<S, E>(src: &S, index: u64, size: u64) -> Result<Vec<Hash>, E>
where
    S: NodeSource<Error = E>,
    E: From<ProofError>,
{
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index - lo < k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof between sizes `size1` and `size2` (RFC 9162 §2.1.4.1), `0 < size1 ≤ size2`.
pub fn consistency_proof<S, E>(src: &S, size1: u64, size2: u64) -> Result<Vec<Hash>, E>
where
    S: NodeSource<Error = E>,
    E: From<ProofError>,
{
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::BadSizes { size1, size2 }.into());
    }
    let mut proof = Vec::with_capacity(64);
    // SUBPROOF(m, D[lo:hi], b), unrolled: the recursion only ever narrows one range.
    let (mut m, mut lo, mut hi, mut complete) = (size1, 0u64, size2, true);
    while m != hi - lo {
        let k = largest_power_of_two_below(hi - lo);
        if m <= k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            m -= k;
            lo += k;
            complete = false;
        }
    }
    if !complete {
        proof.push(range_hash(src, lo, hi)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The number of hashes in an inclusion proof, split into the part below the point where the
/// leaf's path meets the right edge (`inner`) and the right-edge part (`border`).
fn inclusion_proof_shape(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

/// The exact length of an inclusion proof for `index` in a tree of `size` (`index < size`).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = inclusion_proof_shape(index, size);
    inner + border
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2) with its exact length enforced.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(index, size, leaf_hash, proof)?;
    check_root(&computed, root)
}

/// The root an inclusion proof leads to (exact length enforced).
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // With the length fixed above, the walk always ends at the root.
    debug_assert_eq!(snode, 0);
    Ok(r)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2, c2sp.org/merkle-tree) with its exact length
/// enforced; size 0 and equal sizes are handled explicitly. From size 0 to a larger size only
/// the empty proof is valid (c2sp.org/merkle-tree), and only between what can be trees of those
/// sizes: the older root must be the empty tree's and the newer one a SHA-256 output, as the
/// conformance vectors (testdata/merkle) require. Two trees of size 0 must both have the empty
/// tree's root. Roots are byte strings: one that is not 32 bytes can only ever equal an
/// identical byte string (equal sizes), never a computed root.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[Hash],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::BadSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        if size1 == 0 {
            // Both sides must be the empty tree's root, not merely equal.
            check_root(&empty_root(), root1)?;
        }
        return check_root(root1, root2);
    }
    if size1 == 0 {
        // c2sp.org/merkle-tree: "If m equals 0, the proof is valid if and only if it is empty"
        // (every tree extends the empty tree; RFC 9162 leaves the case undefined).
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        // A root that is not the empty tree's is no tree of size 0; one that is not 32 bytes is
        // no tree at all.
        check_root(&empty_root(), root1)?;
        if root2.len() != 32 {
            return Err(ProofError::RootMismatch {
                computed: String::new(),
                expected: hex::encode(root2),
            });
        }
        return Ok(());
    }
    let (inner, border) = inclusion_proof_shape(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    let inner = inner - shift;
    // When size1 is a power of two, its root is the first node of the path and is not sent.
    let size1_is_subtree = size1 == 1u64 << shift;
    let start = usize::from(!size1_is_subtree);
    let want = start + inner + border;
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let seed = if size1_is_subtree {
        Hash::try_from(root1).map_err(|_| ProofError::RootMismatch {
            computed: String::new(),
            expected: hex::encode(root1),
        })?
    } else {
        proof[0]
    };
    let mut fnode = (size1 - 1) >> shift;
    let mut snode = (size2 - 1) >> shift;
    let (mut fr, mut sr) = (seed, seed);
    for c in &proof[start..] {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    check_root(&fr, root1)?;
    check_root(&sr, root2)
}

fn check_root(computed: &[u8], expected: &[u8]) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            computed: hex::encode(computed),
            expected: hex::encode(expected),
        })
    }
}

/// The right edge of a growing tree: the roots of its maximal complete subtrees, left to right.
///
/// Appending a leaf is amortised O(1) and reports every complete node it creates, which is how
/// the log learns what to store; the root is a fold over at most 64 hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// Number of leaves so far; its set bits are the levels of the subtrees in `nodes`.
    size: u64,
    /// `(level, hash)` of each maximal complete subtree, highest level first.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, read from stored complete nodes.
    pub fn load<S: NodeSource>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push((level, src.node(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, calling `created(level, index, hash)` for every new complete node
    /// (the leaf itself first, at level 0).
    pub fn push(&mut self, leaf: Hash, mut created: impl FnMut(u8, u64, &Hash)) {
        let index = self.size;
        created(0, index, &leaf);
        let mut cur = (0u8, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            let merged = node_hash(&left, &cur.1);
            let up = level + 1;
            created(up, index >> up, &merged);
            cur = (up, merged);
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, reference_root};
    use std::collections::HashMap;

    /// Complete nodes of a tree built by [`Frontier`], kept in a map.
    #[derive(Default)]
    struct MapNodes(HashMap<(u8, u64), Hash>);

    impl NodeSource for MapNodes {
        type Error = ProofError;
        fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or(ProofError::IndexOutOfRange { index, size: 0 })
        }
    }

    fn build(n: u64) -> (MapNodes, Vec<Hash>, Frontier) {
        let mut nodes = MapNodes::default();
        let mut leaves = Vec::new();
        let mut f = Frontier::default();
        for i in 0..n {
            let h = leaf_hash(format!("leaf {i}").as_bytes());
            leaves.push(h);
            f.push(h, |l, i, h| {
                nodes.0.insert((l, i), *h);
            });
        }
        (nodes, leaves, f)
    }

    #[test]
    fn frontier_root_matches_reference_for_every_size_up_to_300() {
        let (nodes, leaves, _) = build(300);
        for n in 0..=300u64 {
            let want = reference_root(&leaves[..n as usize]);
            assert_eq!(root(&nodes, n).unwrap(), want, "size {n}");
            assert_eq!(Frontier::load(&nodes, n).unwrap().root(), want, "size {n}");
        }
    }

    #[test]
    fn proofs_verify_for_all_small_trees() {
        let (nodes, leaves, _) = build(70);
        for n in 1..=70u64 {
            let r = reference_root(&leaves[..n as usize]);
            for i in 0..n {
                let p: Vec<Hash> = inclusion_proof(&nodes, i, n).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, n));
                verify_inclusion(i, n, &leaves[i as usize], &p, &r).unwrap();
            }
            for m in 1..=n {
                let r1 = reference_root(&leaves[..m as usize]);
                let p: Vec<Hash> = consistency_proof(&nodes, m, n).unwrap();
                verify_consistency(m, n, &r1, &r, &p).unwrap();
            }
        }
    }

    /// c2sp.org/merkle-tree: "If m equals 0, the proof is valid if and only if it is empty";
    /// between the empty tree's root and a 32-byte root (testdata/merkle's size-0 cases).
    #[test]
    fn from_size_0_only_the_empty_proof_is_valid() {
        let (_, leaves, _) = build(5);
        let r = reference_root(&leaves);
        let empty = empty_root();
        verify_consistency(0, 5, &empty, &r, &[]).unwrap();
        verify_consistency(0, 1, &empty, &leaves[0], &[]).unwrap();
        assert_eq!(
            verify_consistency(0, 5, &empty, &r, &[leaves[0]]),
            Err(ProofError::WrongLength { got: 1, want: 0 })
        );
        // Not a tree of size 0, or not a tree at all.
        assert!(verify_consistency(0, 1, &[], &leaves[0], &[]).is_err());
        assert!(verify_consistency(0, 5, &r, &r, &[]).is_err());
        assert!(verify_consistency(0, 5, &empty, &r[..31], &[]).is_err());
        // The other cases keep their answers: equal sizes, backwards sizes.
        verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
        assert!(verify_consistency(0, 0, &r, &r, &[]).is_err());
        assert!(verify_consistency(5, 0, &r, &empty, &[]).is_err());
    }

    #[test]
    fn no_proof_for_a_leaf_beyond_the_tree() {
        let (nodes, _, _) = build(8);
        let e = inclusion_proof::<_, ProofError>(&nodes, 8, 8).unwrap_err();
        assert_eq!(e, ProofError::IndexOutOfRange { index: 8, size: 8 });
    }
}
