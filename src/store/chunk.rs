//! One stored chunk: the points of one series within one hour, sorted by time, times as offsets from the chunk start
//! so that postcard's varints keep them to 2–3 bytes.

use crate::domain::{Interval, Point, ValueFlag};
use serde::{Deserialize, Serialize};

const CHUNK_FORMAT_V1: u8 = 1;

/// A point as stored inside its chunk (source and code live in the key).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredPoint {
    pub time_ms: i64,
    pub value: f64,
    pub flag: ValueFlag,
    pub interval: Interval,
    pub converted: Option<f64>,
}

impl StoredPoint {
    pub fn into_point(self, source_id: &str, code: &str) -> Point {
        Point {
            source_id: source_id.to_string(),
            code: code.to_string(),
            time_ms: self.time_ms,
            interval: self.interval,
            value: self.value,
            flag: self.flag,
            converted: self.converted,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    offset_ms: Vec<u32>,
    value: Vec<f64>,
    flag: Vec<u8>,
    interval: Vec<u8>,
    converted: Vec<Option<f64>>,
}

/// Result of inserting into a chunk.
pub(crate) enum Insert {
    Stored,
    Same,
    Different(StoredPoint),
}

pub(crate) struct Chunk {
    start_ms: i64,
    points: Vec<StoredPoint>,
    pub dirty: bool,
}

impl Chunk {
    pub fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            points: Vec::new(),
            dirty: false,
        }
    }

    pub fn points(&self) -> impl Iterator<Item = StoredPoint> + '_ {
        self.points.iter().copied()
    }

    /// Inserts keeping time order; the first reading at a time wins.
    pub fn insert(&mut self, p: &Point) -> Insert {
        let sp = StoredPoint {
            time_ms: p.time_ms,
            value: p.value,
            flag: p.flag,
            interval: p.interval,
            converted: p.converted,
        };
        match self.points.binary_search_by_key(&p.time_ms, |s| s.time_ms) {
            Ok(i) => {
                let stored = self.points[i];
                if stored.into_point(&p.source_id, &p.code).same_reading(p) {
                    Insert::Same
                } else {
                    Insert::Different(stored)
                }
            }
            Err(i) => {
                self.points.insert(i, sp);
                self.dirty = true;
                Insert::Stored
            }
        }
    }

    /// The stored bytes (format byte, start, postcard of the columns).
    ///
    /// # Errors
    /// When the columns cannot be encoded (an error rather than an empty value, which would lose the hour).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let wire = Wire {
            offset_ms: self
                .points
                .iter()
                .map(|p| (p.time_ms - self.start_ms) as u32)
                .collect(),
            value: self.points.iter().map(|p| p.value).collect(),
            flag: self.points.iter().map(|p| p.flag.to_u8()).collect(),
            interval: self.points.iter().map(|p| p.interval.to_u8()).collect(),
            converted: self.points.iter().map(|p| p.converted).collect(),
        };
        let mut out = Vec::with_capacity(8 + self.points.len() * 14);
        out.push(CHUNK_FORMAT_V1);
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend(postcard::to_stdvec(&wire).map_err(|e| e.to_string())?);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (&version, rest) = bytes.split_first().ok_or("empty chunk")?;
        if version != CHUNK_FORMAT_V1 {
            return Err(format!("unknown chunk format {version}"));
        }
        if rest.len() < 8 {
            return Err("short chunk header".into());
        }
        let (start, body) = rest.split_at(8);
        let start_ms = i64::from_be_bytes(start.try_into().map_err(|_| "chunk header")?);
        let w: Wire = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        let n = w.offset_ms.len();
        if [
            w.value.len(),
            w.flag.len(),
            w.interval.len(),
            w.converted.len(),
        ]
        .iter()
        .any(|l| *l != n)
        {
            return Err("chunk columns differ in length".into());
        }
        let points = (0..n)
            .map(|i| StoredPoint {
                time_ms: start_ms + i64::from(w.offset_ms[i]),
                value: w.value[i],
                flag: ValueFlag::from_u8(w.flag[i]),
                interval: Interval::from_u8(w.interval[i]),
                converted: w.converted[i],
            })
            .collect();
        Ok(Self {
            start_ms,
            points,
            dirty: false,
        })
    }
}
