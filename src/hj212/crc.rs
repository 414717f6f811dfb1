//! The HJ 212 CRC (HJ 212-2017 App. A) and the MODBUS dialect some real devices send instead.
//!
//! HJ 212's CRC is **not** CRC-16/MODBUS: per byte the register is shifted right by 8 *before* the byte is xored in.
//! A consequence worth knowing: its low byte is always one of `00 01 40 41 80 81 C0 C1`. Some real data acquisition
//! units print CRC-16/MODBUS low byte first instead; that dialect is accepted only for devices configured to use it.

use serde::{Deserialize, Serialize};

/// The HJ 212 CRC of a data segment (check value: `"123456789"` → 0x2F80).
pub fn hj212(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc = (crc >> 8) ^ u16::from(b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// Standard CRC-16/MODBUS (check value: `"123456789"` → 0x4B37).
pub fn modbus(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// Which CRC a device uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrcDialect {
    /// The standard's algorithm, high byte first.
    #[default]
    Hj212,
    /// CRC-16/MODBUS printed low byte first (seen on real devices).
    ModbusLowByteFirst,
}

/// How a CRC field checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcCheck {
    /// Matches the standard algorithm.
    Ok {
        /// Printed in lower-case hex (a tolerated deviation).
        lowercase: bool,
    },
    /// Matches the MODBUS dialect (accepted only when configured).
    Modbus,
    /// Matches neither.
    Mismatch {
        /// What the field says.
        got: u16,
        /// What the standard algorithm gives.
        expected: u16,
    },
    /// The field is not four hex digits.
    NotHex,
}

/// Checks a 4-character CRC field against a data segment.
pub fn check(segment: &[u8], field: &[u8]) -> CrcCheck {
    let Some(got) = std::str::from_utf8(field)
        .ok()
        .filter(|s| s.len() == 4)
        .and_then(|s| u16::from_str_radix(s, 16).ok())
    else {
        return CrcCheck::NotHex;
    };
    let expected = hj212(segment);
    if got == expected {
        return CrcCheck::Ok {
            lowercase: field.iter().any(u8::is_ascii_lowercase),
        };
    }
    if got == modbus(segment).swap_bytes() {
        return CrcCheck::Modbus;
    }
    CrcCheck::Mismatch { got, expected }
}

/// The CRC field for a segment, upper-case hex, high byte first.
pub fn field(segment: &[u8]) -> String {
    format!("{:04X}", hj212(segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_and_the_standards_example() {
        assert_eq!(hj212(b"123456789"), 0x2F80);
        assert_eq!(hj212(b""), 0xFFFF);
        assert_eq!(modbus(b"123456789"), 0x4B37);
        let seg = b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
        assert_eq!(hj212(seg), 0x1C80);
        assert_eq!(modbus(seg), 0x0759);
        assert_eq!(check(seg, b"1C80"), CrcCheck::Ok { lowercase: false });
        assert_eq!(check(seg, b"1c80"), CrcCheck::Ok { lowercase: true });
        assert_eq!(check(seg, b"5907"), CrcCheck::Modbus);
        assert_eq!(
            check(seg, b"1C08"),
            CrcCheck::Mismatch {
                got: 0x1C08,
                expected: 0x1C80
            }
        );
        assert_eq!(check(seg, b"1CZZ"), CrcCheck::NotHex);
    }

    #[test]
    fn low_byte_of_hj212_crc_takes_eight_values() {
        let allowed = [0x00, 0x01, 0x40, 0x41, 0x80, 0x81, 0xC0, 0xC1];
        for i in 0u32..2000 {
            let data = i.to_le_bytes();
            assert!(allowed.contains(&(hj212(&data) & 0xFF)));
        }
    }
}
