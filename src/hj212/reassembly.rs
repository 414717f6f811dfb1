//! Segmented packets (Flag bit D, PNUM/PNO): each segment is a full packet with its own QN that repeats `DataTime`
//! and carries a disjoint subset of factors (HJ 212-2017 App. C.47–C.50). Segments are joined by (MN, CN, DataTime)
//! until PNO 1..PNUM have all arrived; what is still incomplete after `max_age_ms` is released with a warning
//! rather than lost (data is data, the gap is recorded).

use super::packet::Packet;
use super::Warning;
use std::collections::{BTreeMap, HashMap};

type Key = (String, String, String);

struct Pending {
    first_seen_ms: i64,
    pnum: u32,
    segments: BTreeMap<u32, Packet>,
    bytes: usize,
}

/// Joins segments. Pure: the caller passes the clock.
#[derive(Default)]
pub struct Reassembler {
    pending: HashMap<Key, Pending>,
    /// Bytes of the segments held (as received).
    bytes: usize,
}

fn size_of(p: &Packet) -> usize {
    p.received.iter().map(Vec::len).sum::<usize>().max(1)
}

fn merge(segments: BTreeMap<u32, Packet>, pnum: u32) -> Option<Packet> {
    let got = segments.len() as u32;
    let mut parts = segments.into_values();
    let mut merged = parts.next()?;
    for p in parts {
        merged
            .cp
            .extend(p.cp.into_iter().filter(|(k, _)| k != "DataTime"));
        merged.received.extend(p.received);
        for w in p.warnings {
            if !merged.warnings.contains(&w) {
                merged.warnings.push(w);
            }
        }
    }
    if got < pnum {
        merged
            .warnings
            .push(Warning::IncompleteSegments { got, of: pnum });
    }
    Some(merged)
}

impl Reassembler {
    /// A packet arrives: unsegmented packets pass straight through; a segment completes its packet or waits.
    pub fn push(&mut self, p: Packet, now_ms: i64) -> Option<Packet> {
        let (Some(pnum), Some(pno)) = (p.pnum, p.pno) else {
            return Some(p);
        };
        if pnum <= 1 {
            return Some(p);
        }
        let key = (
            p.mn.clone().unwrap_or_default(),
            p.cn.clone().unwrap_or_default(),
            p.cp_value("DataTime").unwrap_or_default().to_string(),
        );
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            first_seen_ms: now_ms,
            pnum,
            segments: BTreeMap::new(),
            bytes: 0,
        });
        let size = size_of(&p);
        if let Some(replaced) = entry.segments.insert(pno, p) {
            let old = size_of(&replaced);
            entry.bytes -= old;
            self.bytes -= old;
        }
        entry.bytes += size;
        self.bytes += size;
        if entry.segments.len() as u32 >= entry.pnum {
            let done = self.pending.remove(&key)?;
            self.bytes -= done.bytes;
            return merge(done.segments, done.pnum);
        }
        None
    }

    /// Releases the oldest waiting packets (marked incomplete, as on timeout) until at most `max_bytes` of segments
    /// are held: a device that opens segmented packets and never finishes them cannot grow memory without bound.
    pub fn release_over(&mut self, max_bytes: usize) -> Vec<Packet> {
        let mut out = Vec::new();
        while self.bytes > max_bytes {
            let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(p) = self.pending.remove(&oldest) {
                self.bytes -= p.bytes;
                out.extend(merge(p.segments, p.pnum));
            }
        }
        out
    }

    /// Bytes of segments held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Releases packets whose segments have waited longer than `max_age_ms`, marked incomplete.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> Vec<Packet> {
        let old: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms - p.first_seen_ms > max_age_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in old {
            if let Some(p) = self.pending.remove(&k) {
                self.bytes -= p.bytes;
                out.extend(merge(p.segments, p.pnum));
            }
        }
        out
    }

    /// Segmented packets waiting.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(qn: &str, pno: u32, factors: &str) -> Packet {
        Packet::parse(format!("QN={qn};ST=31;CN=2051;PW=1;MN=M;Flag=7;PNUM=2;PNO={pno};CP=&&DataTime=20160801084000;{factors}&&").as_bytes()).unwrap()
    }

    #[test]
    fn segments_join_in_any_order() {
        let mut r = Reassembler::default();
        assert!(r.push(seg("2", 2, "a21002-Avg=3"), 0).is_none());
        let whole = r.push(seg("1", 1, "a21026-Avg=1"), 1).unwrap();
        assert_eq!(whole.cp_value("a21026-Avg"), Some("1"));
        assert_eq!(whole.cp_value("a21002-Avg"), Some("3"));
        assert_eq!(whole.cp.iter().filter(|(k, _)| k == "DataTime").count(), 1);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn a_lost_segment_is_released_incomplete_not_lost() {
        let mut r = Reassembler::default();
        assert!(r.push(seg("1", 1, "a21026-Avg=1"), 0).is_none());
        assert!(r.expire(10_000, 60_000).is_empty());
        let out = r.expire(70_000, 60_000);
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .warnings
            .contains(&Warning::IncompleteSegments { got: 1, of: 2 }));
    }

    #[test]
    fn never_finished_packets_are_released_oldest_first_once_over_the_budget() {
        let mut r = Reassembler::default();
        for minute in 0..50u32 {
            let p = Packet::parse(format!("QN=1;ST=31;CN=2051;PW=1;MN=M;Flag=7;PNUM=3;PNO=1;CP=&&DataTime=201608010{:03}00;a21026-Avg=1&&", 800 + minute).as_bytes()).unwrap();
            assert!(r.push(p, i64::from(minute)).is_none());
        }
        let held = r.bytes();
        assert_eq!(r.waiting(), 50);
        let released = r.release_over(held / 2);
        assert!(r.bytes() <= held / 2 && r.waiting() == 50 - released.len());
        assert_eq!(released.len(), 25);
        // The oldest went first, marked incomplete: the data is kept, not dropped.
        assert_eq!(released[0].cp_value("DataTime"), Some("20160801080000"));
        assert!(released.iter().all(|p| p
            .warnings
            .contains(&Warning::IncompleteSegments { got: 1, of: 3 })));
        assert_eq!(r.release_over(0).len(), 25);
        assert_eq!(r.bytes(), 0);
    }
}
