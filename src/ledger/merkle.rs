//! The Merkle tree of RFC 6962 / RFC 9162 (Certificate Transparency): leaf hash `SHA-256(0x00 ‖ leaf)`, node hash
//! `SHA-256(0x01 ‖ left ‖ right)`, split at the largest power of two below the size. Any verifier that implements
//! the RFC checks our proofs; the domain separation keeps a leaf from passing for a node.
//!
//! Storage keeps only *perfect* subtrees (2^level leaves starting at a multiple of 2^level), written once when they
//! complete, two hashes per leaf on average. Every root and proof is assembled from O(log n) of them, so the tree
//! never has to be held in memory or rehashed.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Hash of a leaf's bytes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// Hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree (RFC 6962: the hash of the empty string).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The perfect subtrees completed by appending leaf number `index` (0-based) with hash `leaf`: `(level, position,
/// hash)`, lowest first, starting with the leaf itself at level 0. `perfect` reads earlier perfect subtrees.
///
/// # Errors
/// Whatever `perfect` returns.
pub fn completed_by_append<E>(
    index: u64,
    leaf: Hash,
    mut perfect: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<(u8, u64, Hash)>, E> {
    let mut out = vec![(0u8, index, leaf)];
    let (mut level, mut position, mut hash) = (0u8, index, leaf);
    while position & 1 == 1 {
        let left = perfect(level, position - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        position >>= 1;
        out.push((level, position, hash));
    }
    Ok(out)
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaves `[start, start + size)` of the tree, `size ≥ 1`, `start` a multiple of the split sizes (as
/// every subtree the RFC's recursion visits is).
fn subtree<E>(
    start: u64,
    size: u64,
    perfect: &mut impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if size.is_power_of_two() {
        let level = size.trailing_zeros() as u8;
        return perfect(level, start >> level);
    }
    let k = split(size);
    let left = subtree(start, k, perfect)?;
    let right = subtree(start + k, size - k, perfect)?;
    Ok(node_hash(&left, &right))
}

/// Root of the tree of the first `size` leaves.
///
/// # Errors
/// Whatever `perfect` returns.
pub fn root<E>(size: u64, mut perfect: impl FnMut(u8, u64) -> Result<Hash, E>) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(0, size, &mut perfect)
}

/// RFC 6962 `PATH(index, D[size])`: the sibling hashes from leaf `index` up to the root of the first `size` leaves,
/// lowest first. Empty when `index ≥ size`.
///
/// # Errors
/// Whatever `perfect` returns.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mut perfect: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut path = Vec::new();
    if index >= size {
        return Ok(path);
    }
    // Walk down from the root, collecting the sibling of each subtree that holds the leaf; reverse at the end.
    let (mut start, mut len, mut m) = (0u64, size, index);
    while len > 1 {
        let k = split(len);
        if m < k {
            path.push(subtree(start + k, len - k, &mut perfect)?);
            len = k;
        } else {
            path.push(subtree(start, k, &mut perfect)?);
            start += k;
            m -= k;
            len -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// Whether `proof` shows that `leaf` is leaf number `index` of the tree of `size` leaves with `root` (RFC 9162
/// §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 6962 `PROOF(old_size, D[new_size])`: the hashes that show the tree of the first `old_size` leaves is a prefix
/// of the tree of `new_size` (so nothing before `old_size` was changed, removed or reordered). Empty when
/// `old_size` is 0 or equals `new_size`.
///
/// # Errors
/// Whatever `perfect` returns.
pub fn consistency_proof<E>(
    old_size: u64,
    new_size: u64,
    mut perfect: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut proof = Vec::new();
    if old_size == 0 || old_size >= new_size {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start..start+n], whole), iteratively: the recursion only ever descends one side.
    let (mut start, mut n, mut m, mut whole) = (0u64, new_size, old_size, true);
    let mut tail = Vec::new();
    loop {
        if m == n {
            if !whole {
                proof.push(subtree(start, n, &mut perfect)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            tail.push(subtree(start + k, n - k, &mut perfect)?);
            n = k;
        } else {
            tail.push(subtree(start, k, &mut perfect)?);
            start += k;
            m -= k;
            n -= k;
            whole = false;
        }
    }
    proof.extend(tail.into_iter().rev());
    Ok(proof)
}

/// Whether `proof` shows that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
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
    snode == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 6962 MTH, straight from the definition.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn grow(n: u64) -> (Vec<Hash>, HashMap<(u8, u64), Hash>) {
        let mut leaves = Vec::new();
        let mut nodes = HashMap::new();
        for i in 0..n {
            let leaf = leaf_hash(format!("leaf {i}").as_bytes());
            leaves.push(leaf);
            let done = completed_by_append(i, leaf, |l, p| {
                nodes
                    .get(&(l, p))
                    .copied()
                    .ok_or(format!("missing {l}/{p}"))
            })
            .unwrap();
            for (l, p, h) in done {
                nodes.insert((l, p), h);
            }
        }
        (leaves, nodes)
    }

    #[test]
    fn roots_and_proofs_from_perfect_subtrees_match_the_rfc_definition() {
        let (leaves, nodes) = grow(70);
        let get = |l: u8, p: u64| nodes.get(&(l, p)).copied().ok_or(());
        for size in 0..=70u64 {
            let r = root(size, get).unwrap();
            assert_eq!(r, naive_root(&leaves[..size as usize]), "size {size}");
            for index in 0..size {
                let proof = inclusion_proof(index, size, get).unwrap();
                assert!(
                    verify_inclusion(&leaves[index as usize], index, size, &proof, &r),
                    "leaf {index} of {size}"
                );
                // The same proof does not pass for another leaf, another position or another root.
                let other = leaf_hash(b"forged");
                assert!(!verify_inclusion(&other, index, size, &proof, &r));
                if size > 1 {
                    assert!(!verify_inclusion(
                        &leaves[index as usize],
                        (index + 1) % size,
                        size,
                        &proof,
                        &r
                    ));
                }
                assert!(!verify_inclusion(
                    &leaves[index as usize],
                    index,
                    size,
                    &proof,
                    &leaf_hash(b"other root")
                ));
            }
        }
    }

    #[test]
    fn every_prefix_is_provably_consistent_and_a_rewritten_one_is_not() {
        let (leaves, nodes) = grow(40);
        let get = |l: u8, p: u64| nodes.get(&(l, p)).copied().ok_or(());
        let mut rewritten = leaves.clone();
        rewritten[2] = leaf_hash(b"rewritten");
        for new in 1..=40u64 {
            let new_root = root(new, get).unwrap();
            for old in 1..=new {
                let old_root = root(old, get).unwrap();
                let proof = consistency_proof(old, new, get).unwrap();
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "{old} -> {new}"
                );
                // A head over a history in which leaf 2 was different is not extended by this tree.
                if old > 2 && old < new {
                    let forged = naive_root(&rewritten[..old as usize]);
                    assert!(
                        !verify_consistency(old, new, &forged, &new_root, &proof),
                        "{old} -> {new}"
                    );
                    assert!(!verify_consistency(old, new, &old_root, &forged, &proof));
                }
            }
        }
    }

    #[test]
    fn a_leaf_never_passes_for_a_node() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
    }
}
