//! The evidence bundle: a directory an officer hands to a court, checkable offline by anyone with the bureau's
//! public key. Files:
//!
//! | file            | holds                                                                                      |
//! |-----------------|--------------------------------------------------------------------------------------------|
//! | `anomaly.json`  | the anomaly as stored when exported, with its figures and review trail                     |
//! | `records.jsonl` | each item the anomaly rests on: its leaf, position, bytes as received (hex), a readable copy |
//! | `leaves.jsonl`  | each leaf those items are in: receipt time, principal, transport, every item digest, proof |
//! | `head.json`     | the signed tree head the proofs lead to                                                    |
//! | `README.txt`    | how to check it                                                                            |
//! | `manifest.json` | SHA-256 of every file above; `manifest.sig` is the server's signature of it                |
//!
//! [`verify`] checks, in order: the manifest's signature (against a pinned key, when given), every file's digest,
//! the head's signature, each leaf's inclusion in the signed tree, each item's digest in its leaf, each readable copy
//! against its bytes, and that every item reports for a source of the anomaly. The first failure is the answer.

use super::head::signature_valid;
use super::merkle::{self, Hash};
use super::{item_digest, item_source, Leaf, SignedHeadFile, Signer, Transport, TreeHead};
use crate::domain::secret::{from_hex, hex, sha256_hex};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The files of a bundle by name.
pub type Files = BTreeMap<String, Vec<u8>>;

const FORMAT: &str = "cems-sentinel evidence bundle v1";
const ANOMALY: &str = "anomaly.json";
const RECORDS: &str = "records.jsonl";
const LEAVES: &str = "leaves.jsonl";
const HEAD: &str = "head.json";
const README: &str = "README.txt";
/// The signed index of the other files.
pub const MANIFEST: &str = "manifest.json";
/// The server's signature of [`MANIFEST`], hex.
pub const MANIFEST_SIG: &str = "manifest.sig";
/// Every file a bundle has.
pub const FILE_NAMES: [&str; 7] = [
    ANOMALY,
    RECORDS,
    LEAVES,
    HEAD,
    README,
    MANIFEST,
    MANIFEST_SIG,
];

/// One leaf of the log with what the bundle shows of it.
#[derive(Debug, Clone)]
pub struct Part {
    /// Leaf index.
    pub index: u64,
    /// The leaf.
    pub leaf: Leaf,
    /// Its inclusion proof in the head's tree.
    pub proof: Vec<Hash>,
    /// The items the anomaly rests on: (position in the leaf, bytes as received).
    pub items: Vec<(u32, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct RecordLine {
    leaf: u64,
    item: u32,
    transport: Transport,
    bytes_hex: String,
    readable: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct LeafLine {
    index: u64,
    received_at_ms: i64,
    principal: String,
    transport: Transport,
    item_digests: Vec<String>,
    proof: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    anomaly_id: String,
    created_at_ms: i64,
    public_key: String,
    files: BTreeMap<String, String>,
}

/// Why a bundle does not verify. Each names the file (and line) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file is missing.
    #[error("{0} is missing")]
    Missing(String),
    /// A file is not what its format says.
    #[error("{file}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Malformed {
        /// File.
        file: String,
        /// 1-based line, for JSON-lines files.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A signature does not hold.
    #[error("{what}: the signature does not verify under key {key}: the file was altered or signed by another key")]
    Signature {
        /// What was signed.
        what: &'static str,
        /// Hex public key used.
        key: String,
    },
    /// The bundle was signed by a key other than the one pinned.
    #[error("signed by key {found}, not by the pinned key {pinned}")]
    KeyMismatch {
        /// The bundle's key.
        found: String,
        /// The pinned key.
        pinned: String,
    },
    /// A file differs from the signed manifest.
    #[error("{0} differs from the signed manifest (altered after export)")]
    Digest(String),
    /// A leaf is not in the signed tree.
    #[error("leaves.jsonl line {line}: leaf {index} is not in the signed tree of {size} leaves (its fields or its proof were altered)")]
    NotIncluded {
        /// 1-based line.
        line: usize,
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// An item is not the one the log received.
    #[error("records.jsonl line {line}: {reason}")]
    Item {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What a verified bundle shows.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The anomaly.
    pub anomaly_id: String,
    /// Items checked.
    pub records: usize,
    /// Leaves checked.
    pub leaves: usize,
    /// The signed head.
    pub head: TreeHead,
    /// Hex public key that signed it.
    pub public_key: String,
}

/// A readable copy of an item, derived from its bytes alone (so a verifier recomputes and compares it).
pub fn readable(transport: Transport, item: &[u8]) -> serde_json::Value {
    match transport {
        Transport::Grpc => match <crate::pb::Record as prost::Message>::decode(item) {
            Ok(r) => serde_json::json!({
                "source_id": r.source_id,
                "time_ms": r.time_ms,
                "interval": r.interval,
                "values": r.values.iter().map(|m| serde_json::json!({
                    "code": m.code,
                    "value": m.value,
                    "flag": m.flag,
                    "converted": m.converted,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "undecodable": e.to_string() }),
        },
        Transport::Hj212 => serde_json::Value::String(String::from_utf8_lossy(item).into_owned()),
    }
}

fn json_line<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Assembles and signs a bundle.
pub fn build(
    anomaly_id: &str,
    anomaly_json: Vec<u8>,
    parts: &[Part],
    head: &TreeHead,
    signer: &Signer,
    created_at_ms: i64,
) -> Files {
    let public_key = hex(&signer.public_key());
    let mut records = Vec::new();
    let mut leaves = Vec::new();
    for p in parts {
        leaves.extend(json_line(&LeafLine {
            index: p.index,
            received_at_ms: p.leaf.received_at_ms,
            principal: p.leaf.principal.clone(),
            transport: p.leaf.transport,
            item_digests: p.leaf.item_digests.iter().map(|d| hex(d)).collect(),
            proof: p.proof.iter().map(|h| hex(h)).collect(),
        }));
        for (item, bytes) in &p.items {
            records.extend(json_line(&RecordLine {
                leaf: p.index,
                item: *item,
                transport: p.leaf.transport,
                bytes_hex: hex(bytes),
                readable: readable(p.leaf.transport, bytes),
            }));
        }
    }
    let head_file = SignedHeadFile::new(
        head,
        &signer.public_key(),
        &signer.sign(&head.signed_bytes()),
    );
    let mut files = Files::new();
    files.insert(ANOMALY.into(), anomaly_json);
    files.insert(RECORDS.into(), records);
    files.insert(LEAVES.into(), leaves);
    files.insert(
        HEAD.into(),
        serde_json::to_vec_pretty(&head_file).unwrap_or_default(),
    );
    files.insert(README.into(), readme(&public_key).into_bytes());
    let manifest = Manifest {
        format: FORMAT.into(),
        anomaly_id: anomaly_id.into(),
        created_at_ms,
        public_key,
        files: files
            .iter()
            .map(|(name, bytes)| (name.clone(), sha256_hex(bytes)))
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    files.insert(
        MANIFEST_SIG.into(),
        hex(&signer.sign(&manifest_bytes)).into_bytes(),
    );
    files.insert(MANIFEST.into(), manifest_bytes);
    files
}

fn readme(public_key: &str) -> String {
    format!(
        "Evidence bundle exported by cems-sentinel ({FORMAT}).\n\n\
         Check it offline with:  sentinel evidence verify <this directory> --public-key {public_key}\n\n\
         What it proves: every record in records.jsonl is, byte for byte, an item the server received and acknowledged\n\
         (leaves.jsonl: when, from which principal, over which transport), included in the append-only log whose head\n\
         (head.json) the server signed with the key above; manifest.json, signed with the same key, fixes every file,\n\
         anomaly.json included. Any changed, added or removed byte in any file fails the check, with the reason.\n\n\
         Compare the key with the one the bureau publishes (sentinel evidence head): a bundle re-signed with another key\n\
         verifies only if you accept that key.\n\n\
         Formats: leaf hash = SHA-256(0x00 || leaf bytes), node hash = SHA-256(0x01 || left || right) (RFC 6962); leaf\n\
         bytes = \"cems-sentinel leaf v1\\0\" || received_at_ms (i64 BE) || principal length (u32 BE) || principal ||\n\
         transport (1 = grpc, 2 = hj212) || item count (u32 BE) || item SHA-256 digests; head signature (Ed25519) over\n\
         \"cems-sentinel tree head v1\\0\" || tree_size (u64 BE) || root || signed_at_ms (i64 BE). A gRPC item is a\n\
         protobuf sentinel.v1.Record as received; an HJ 212 item is the data segment between the length and the CRC.\n"
    )
}

fn file<'a>(files: &'a Files, name: &str) -> Result<&'a [u8], BundleError> {
    files
        .get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| BundleError::Missing(name.into()))
}

fn malformed(file: &str, line: Option<usize>, reason: impl ToString) -> BundleError {
    BundleError::Malformed {
        file: file.into(),
        line,
        reason: reason.to_string(),
    }
}

fn hash_of(text: &str, file: &str, line: Option<usize>) -> Result<Hash, BundleError> {
    from_hex(text)
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| malformed(file, line, format!("{text:?} is not a 32-byte hex digest")))
}

fn lines<T: for<'de> Deserialize<'de>>(
    files: &Files,
    name: &str,
) -> Result<Vec<(usize, T)>, BundleError> {
    let text = std::str::from_utf8(file(files, name)?).map_err(|e| malformed(name, None, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|v| (i + 1, v))
                .map_err(|e| malformed(name, Some(i + 1), e))
        })
        .collect()
}

/// Checks a bundle. With `pinned_key` (32 bytes), a bundle signed by any other key fails; without, the bundle's own
/// key is used and reported, for the reader to compare with the published one.
///
/// # Errors
/// The first check that fails, as a [`BundleError`] that says which file and why.
pub fn verify(files: &Files, pinned_key: Option<&[u8]>) -> Result<Verified, BundleError> {
    // 1. The manifest, signed.
    let manifest_bytes = file(files, MANIFEST)?;
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| malformed(MANIFEST, None, e))?;
    if manifest.format != FORMAT {
        return Err(malformed(
            MANIFEST,
            None,
            format!("unknown format {:?}", manifest.format),
        ));
    }
    let key = from_hex(&manifest.public_key)
        .filter(|k| k.len() == 32)
        .ok_or_else(|| malformed(MANIFEST, None, "public_key is not a 32-byte hex key"))?;
    if let Some(pinned) = pinned_key {
        if pinned != key.as_slice() {
            return Err(BundleError::KeyMismatch {
                found: manifest.public_key.clone(),
                pinned: hex(pinned),
            });
        }
    }
    let sig_text = std::str::from_utf8(file(files, MANIFEST_SIG)?).unwrap_or_default();
    let sig = from_hex(sig_text.trim()).unwrap_or_default();
    if !signature_valid(&key, manifest_bytes, &sig) {
        return Err(BundleError::Signature {
            what: "manifest.json",
            key: manifest.public_key,
        });
    }
    // 2. Every file as signed, none missing.
    for name in [ANOMALY, RECORDS, LEAVES, HEAD, README] {
        let expected = manifest
            .files
            .get(name)
            .ok_or_else(|| malformed(MANIFEST, None, format!("does not list {name}")))?;
        if sha256_hex(file(files, name)?) != *expected {
            return Err(BundleError::Digest(name.into()));
        }
    }
    // 3. The head, signed by the same key.
    let head_file: SignedHeadFile =
        serde_json::from_slice(file(files, HEAD)?).map_err(|e| malformed(HEAD, None, e))?;
    if head_file.public_key != manifest.public_key {
        return Err(malformed(
            HEAD,
            None,
            "signed by a key other than the manifest's",
        ));
    }
    let head = head_file.verified().map_err(|_| BundleError::Signature {
        what: "head.json",
        key: head_file.public_key.clone(),
    })?;
    // 4. Each leaf in the signed tree.
    let mut leaves: HashMap<u64, Leaf> = HashMap::new();
    for (line, l) in lines::<LeafLine>(files, LEAVES)? {
        let leaf = Leaf {
            received_at_ms: l.received_at_ms,
            principal: l.principal,
            transport: l.transport,
            item_digests: l
                .item_digests
                .iter()
                .map(|d| hash_of(d, LEAVES, Some(line)))
                .collect::<Result<_, _>>()?,
        };
        let proof: Vec<Hash> = l
            .proof
            .iter()
            .map(|d| hash_of(d, LEAVES, Some(line)))
            .collect::<Result<_, _>>()?;
        if !merkle::verify_inclusion(&leaf.hash(), l.index, head.size, &proof, &head.root) {
            return Err(BundleError::NotIncluded {
                line,
                index: l.index,
                size: head.size,
            });
        }
        leaves.insert(l.index, leaf);
    }
    // 5. Each item received as shown, and the anomaly's.
    let anomaly: serde_json::Value =
        serde_json::from_slice(file(files, ANOMALY)?).map_err(|e| malformed(ANOMALY, None, e))?;
    if anomaly.get("id").and_then(|v| v.as_str()) != Some(manifest.anomaly_id.as_str()) {
        return Err(malformed(
            ANOMALY,
            None,
            "is not the anomaly the manifest names",
        ));
    }
    let sources: Vec<&str> = anomaly
        .get("source_ids")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let records = lines::<RecordLine>(files, RECORDS)?;
    for (line, r) in &records {
        let item_err = |reason: String| BundleError::Item {
            line: *line,
            reason,
        };
        let leaf = leaves
            .get(&r.leaf)
            .ok_or_else(|| item_err(format!("leaf {} is not in leaves.jsonl", r.leaf)))?;
        if leaf.transport != r.transport {
            return Err(item_err(format!(
                "transport differs from leaf {}'s",
                r.leaf
            )));
        }
        let bytes =
            from_hex(&r.bytes_hex).ok_or_else(|| item_err("bytes_hex is not hex".into()))?;
        let Some(expected) = leaf.item_digests.get(r.item as usize) else {
            return Err(item_err(format!("leaf {} has no item {}", r.leaf, r.item)));
        };
        if item_digest(&bytes) != *expected {
            return Err(item_err(format!(
                "its bytes are not item {} of leaf {} as received (digest differs)",
                r.item, r.leaf
            )));
        }
        if readable(r.transport, &bytes) != r.readable {
            return Err(item_err(
                "the readable copy differs from the bytes received".into(),
            ));
        }
        let source = item_source(r.transport, &bytes).unwrap_or_default();
        if !sources.contains(&source.as_str()) {
            return Err(item_err(format!(
                "reports for {source:?}, not a source of the anomaly"
            )));
        }
    }
    Ok(Verified {
        anomaly_id: manifest.anomaly_id,
        records: records.len(),
        leaves: leaves.len(),
        head,
        public_key: manifest.public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::merkle::{completed_by_append, inclusion_proof, root};
    use prost::Message as _;

    fn record(source: &str, t: i64, v: f64) -> Vec<u8> {
        crate::pb::Record {
            source_id: source.into(),
            time_ms: t,
            interval: 1,
            values: vec![crate::pb::Measurement {
                code: "a21026".into(),
                value: v,
                flag: 1,
                converted: None,
            }],
        }
        .encode_to_vec()
    }

    /// A log of three leaves (the middle one mixes the anomaly's outlet with another enterprise's) and a bundle of
    /// the anomaly's items.
    fn fixture() -> (Files, Signer) {
        let signer = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let batches = [
            vec![record("out-a", 0, 10.0)],
            vec![record("out-b", 60_000, 99.0), record("out-a", 60_000, 11.0)],
            vec![
                b"QN=1;ST=31;CN=2011;PW=1;MN=out-a;CP=&&DataTime=20240101000200;a21026-Rtd=12&&"
                    .to_vec(),
            ],
        ];
        let mut nodes = HashMap::new();
        let mut leaves = Vec::new();
        for (i, items) in batches.iter().enumerate() {
            let receipt = crate::ledger::Receipt {
                principal: "platform (p1)".into(),
                transport: if i == 2 {
                    Transport::Hj212
                } else {
                    Transport::Grpc
                },
                items: items.clone(),
            };
            let leaf = Leaf::of(&receipt, 1_000 + i as i64);
            for (l, p, h) in completed_by_append(i as u64, leaf.hash(), |l, p| {
                nodes.get(&(l, p)).copied().ok_or(())
            })
            .unwrap()
            {
                nodes.insert((l, p), h);
            }
            leaves.push(leaf);
        }
        let get = |l: u8, p: u64| nodes.get(&(l, p)).copied().ok_or(());
        let head = TreeHead {
            size: 3,
            root: root(3, get).unwrap(),
            signed_at_ms: 5_000,
        };
        let parts: Vec<Part> = leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| Part {
                index: i as u64,
                leaf: leaf.clone(),
                proof: inclusion_proof(i as u64, 3, get).unwrap(),
                items: batches[i]
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| item_source(leaf.transport, b).as_deref() == Some("out-a"))
                    .map(|(j, b)| (j as u32, b.clone()))
                    .collect(),
            })
            .collect();
        let anomaly =
            serde_json::to_vec(&serde_json::json!({"id": "an-1", "source_ids": ["out-a"]}))
                .unwrap();
        (
            build("an-1", anomaly, &parts, &head, &signer, 6_000),
            signer,
        )
    }

    #[test]
    fn an_exported_bundle_verifies_and_carries_only_the_anomalys_items() {
        let (files, signer) = fixture();
        let v = verify(&files, Some(&signer.public_key())).unwrap();
        assert_eq!((v.records, v.leaves, v.head.size), (3, 3, 3));
        let records = String::from_utf8(files[RECORDS].clone()).unwrap();
        assert!(
            !records.contains("out-b"),
            "another enterprise's record leaked into the bundle"
        );
        assert!(verify(&files, None).is_ok());
    }

    /// Re-signs the manifest after a change, as a forger with the server's key would have to; without it, the
    /// change already fails at the manifest.
    fn resign(files: &mut Files, signer: &Signer) {
        let mut manifest: Manifest = serde_json::from_slice(&files[MANIFEST]).unwrap();
        for (name, digest) in manifest.files.iter_mut() {
            *digest = sha256_hex(&files[name]);
        }
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        files.insert(MANIFEST_SIG.into(), hex(&signer.sign(&bytes)).into_bytes());
        files.insert(MANIFEST.into(), bytes);
    }

    #[test]
    fn any_changed_byte_fails_with_its_reason() {
        let (files, signer) = fixture();
        let other = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let altered_value = {
            let mut f = files.clone();
            let t = String::from_utf8(f[RECORDS].clone()).unwrap();
            f.insert(
                RECORDS.into(),
                t.replacen("\"value\":10.0", "\"value\":1.0", 1)
                    .into_bytes(),
            );
            f
        };
        assert!(
            matches!(verify(&altered_value, None), Err(BundleError::Digest(f)) if f == RECORDS)
        );
        // Even with the manifest re-signed by the server's own key, an altered item is not what the log received.
        let mut resigned = altered_value.clone();
        resign(&mut resigned, &signer);
        let err = verify(&resigned, None).unwrap_err();
        assert!(err.to_string().contains("readable copy differs"), "{err}");
        let mut rebytes = files.clone();
        let t = String::from_utf8(rebytes[RECORDS].clone()).unwrap();
        let first = t.lines().next().unwrap();
        let mut line: RecordLine = serde_json::from_str(first).unwrap();
        line.bytes_hex = hex(&record("out-a", 0, 1.0));
        line.readable = readable(Transport::Grpc, &record("out-a", 0, 1.0));
        rebytes.insert(
            RECORDS.into(),
            t.replacen(first, &serde_json::to_string(&line).unwrap(), 1)
                .into_bytes(),
        );
        resign(&mut rebytes, &signer);
        let err = verify(&rebytes, None).unwrap_err();
        assert!(err.to_string().contains("digest differs"), "{err}");

        let removed = {
            let mut f = files.clone();
            let t = String::from_utf8(f[RECORDS].clone()).unwrap();
            let kept: Vec<&str> = t.lines().skip(1).collect();
            f.insert(RECORDS.into(), (kept.join("\n") + "\n").into_bytes());
            f
        };
        assert!(matches!(verify(&removed, None), Err(BundleError::Digest(f)) if f == RECORDS));

        let altered_anomaly = {
            let mut f = files.clone();
            f.insert(
                ANOMALY.into(),
                serde_json::to_vec(
                    &serde_json::json!({"id": "an-1", "source_ids": ["out-a", "out-b"]}),
                )
                .unwrap(),
            );
            f
        };
        assert!(
            matches!(verify(&altered_anomaly, None), Err(BundleError::Digest(f)) if f == ANOMALY)
        );

        let forged_sig = {
            let mut f = files.clone();
            let mut sig = f[MANIFEST_SIG].clone();
            sig[0] = if sig[0] == b'0' { b'1' } else { b'0' };
            f.insert(MANIFEST_SIG.into(), sig);
            f
        };
        assert!(matches!(
            verify(&forged_sig, None),
            Err(BundleError::Signature { .. })
        ));

        // A forger who re-signs everything with their own key is caught by the pinned key.
        let mut own = altered_anomaly.clone();
        let mut manifest: Manifest = serde_json::from_slice(&own[MANIFEST]).unwrap();
        manifest.public_key = hex(&other.public_key());
        own.insert(
            MANIFEST.into(),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        );
        resign(&mut own, &other);
        assert!(matches!(
            verify(&own, Some(&signer.public_key())),
            Err(BundleError::KeyMismatch { .. })
        ));

        // A leaf whose principal is rewritten is no longer in the signed tree.
        let mut relabelled = files.clone();
        let t = String::from_utf8(relabelled[LEAVES].clone()).unwrap();
        relabelled.insert(
            LEAVES.into(),
            t.replacen("platform (p1)", "someone else", 1).into_bytes(),
        );
        resign(&mut relabelled, &signer);
        assert!(matches!(
            verify(&relabelled, None),
            Err(BundleError::NotIncluded { line: 1, .. })
        ));

        // Every single-byte change of every file fails.
        for name in FILE_NAMES {
            for at in [0, files[name].len() / 2, files[name].len() - 1] {
                let mut f = files.clone();
                let b = f.get_mut(name).unwrap();
                b[at] ^= 0x01;
                assert!(verify(&f, None).is_err(), "{name} byte {at}");
            }
        }
    }
}
