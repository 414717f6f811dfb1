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
}

/// Joins segments. Pure: the caller passes the clock.
#[derive(Default)]
pub struct Reassembler {
    pending: HashMap<Key, Pending>,
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
        });
        entry.segments.insert(pno, p);
        if entry.segments.len() as u32 >= entry.pnum {
            let done = self.pending.remove(&key)?;
            return merge(done.segments, done.pnum);
        }
        None
    }

    /// Releases packets whose segments have waited longer than `max_age_ms`, marked incomplete.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> Vec<Packet> {
        let old: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms - p.first_seen_ms > max_age_ms)
            .map(|(k, _)| k.clone())
            .collect();
        old.into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .filter_map(|p| merge(p.segments, p.pnum))
            .collect()
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
}
