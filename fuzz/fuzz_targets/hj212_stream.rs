//! Framer + parser + conversion on arbitrary bytes, fed in pieces whose size the input chooses, as a TCP stream
//! would deliver them. Must never panic, and the framer's buffer must stay bounded.
#![no_main]

use cems_sentinel::hj212::records::{to_records, ConvertConfig};
use cems_sentinel::hj212::{check_line, Framer, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let cfg = ConvertConfig::default();
    let _ = check_line(bytes, &|_| true, &cfg);
    let mut framer = Framer::new();
    for chunk in bytes.chunks(usize::from(cut).max(1)) {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            if let Ok(mut frame) = frame {
                let _ = frame.check_crc(true);
                if let Ok(p) = Packet::parse(&frame.segment) {
                    let _ = to_records(&p, &cfg);
                }
            }
        }
        assert!(framer.buffered() <= 6 + 9999 + 6 + 256);
    }
    let _ = framer.finish();
});
