//! What the platform sends back, framed with a correct CRC: 9014 data acknowledgement, 9011 request answer, 9012
//! execution result, 9013 notice acknowledgement (HJ 212-2017 §6.1–6.2, App. C). 2017 replies use ST=91 and echo
//! the request's QN, PW and MN; a 2005 device gets the 2005 form with the QN inside CP.

use super::frame::encode;
use super::packet::Packet;

/// Flag for a reply: the sender's protocol version, no ack requested.
fn reply_flag(p: &Packet) -> u8 {
    p.version().max(1) << 2
}

fn header(p: &Packet, cn: &str) -> String {
    let mut s = String::new();
    if let Some(qn) = &p.qn {
        s.push_str(&format!("QN={qn};"));
    }
    s.push_str(&format!(
        "ST=91;CN={cn};PW={};MN={};Flag={};",
        p.pw.as_deref().unwrap_or_default(),
        p.mn.as_deref().unwrap_or_default(),
        reply_flag(p)
    ));
    s
}

/// 9014 data acknowledgement for an upload that asked for one (Flag bit A); `None` when none is due.
pub fn data_ack(p: &Packet) -> Option<Vec<u8>> {
    if !p.wants_ack() {
        return None;
    }
    if p.version() == 0 {
        // HJ/T 212-2005 form: QN and CN of the upload inside CP.
        let seg = format!(
            "ST=91;CN=9014;PW={};MN={};CP=&&QN={};CN={}&&",
            p.pw.as_deref().unwrap_or_default(),
            p.mn.as_deref().unwrap_or_default(),
            p.qn.as_deref().unwrap_or_default(),
            p.cn.as_deref().unwrap_or_default()
        );
        return Some(encode(&seg));
    }
    Some(encode(&format!("{}CP=&&&&", header(p, "9014"))))
}

/// 9011 request answer with a `QnRtn` (1 ready, 2 rejected, 3 PW error, 4 MN error, …).
pub fn request_answer(p: &Packet, qn_rtn: u16) -> Vec<u8> {
    encode(&format!("{}CP=&&QnRtn={qn_rtn}&&", header(p, "9011")))
}

/// 9012 execution result with an `ExeRtn` (1 success, 2 failed, …, 100 no data).
pub fn execution_result(p: &Packet, exe_rtn: u16) -> Vec<u8> {
    encode(&format!("{}CP=&&ExeRtn={exe_rtn}&&", header(p, "9012")))
}

/// 9013 notice acknowledgement.
pub fn notice_ack(p: &Packet) -> Vec<u8> {
    encode(&format!("{}CP=&&&&", header(p, "9013")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hj212::Framer;

    fn parse_back(bytes: &[u8]) -> Packet {
        let mut f = Framer::new();
        f.push(bytes);
        let mut frame = f.next_frame().unwrap().unwrap();
        frame.check_crc(false).unwrap();
        Packet::parse(&frame.segment).unwrap()
    }

    #[test]
    fn data_ack_matches_the_standard_form_and_verifies() {
        let up = Packet::parse(b"QN=20160801085857223;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20160801085857&&").unwrap();
        let ack = data_ack(&up).unwrap();
        let text = String::from_utf8(ack.clone()).unwrap();
        assert!(text.starts_with("##0087QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"), "{text}");
        let back = parse_back(&ack);
        assert_eq!(back.cn.as_deref(), Some("9014"));
        assert_eq!(back.qn, up.qn);
        let no_ack = Packet::parse(b"QN=1;ST=32;CN=2011;PW=1;MN=1;Flag=4;CP=&&&&").unwrap();
        assert!(data_ack(&no_ack).is_none());
    }

    #[test]
    fn request_and_notice_replies_round_trip() {
        let req =
            Packet::parse(b"QN=20160801085857223;ST=32;CN=1013;PW=123456;MN=ABC;Flag=5;CP=&&&&")
                .unwrap();
        assert_eq!(
            parse_back(&request_answer(&req, 1)).cp_value("QnRtn"),
            Some("1")
        );
        assert_eq!(
            parse_back(&execution_result(&req, 100)).cp_value("ExeRtn"),
            Some("100")
        );
        assert_eq!(parse_back(&notice_ack(&req)).cn.as_deref(), Some("9013"));
        // A 2005 device (Flag with version bits 0) gets the 2005 form.
        let old = Packet::parse(
            b"QN=20040516010101001;ST=32;CN=2051;PW=1;MN=M;Flag=1;CP=&&DataTime=20040516010000&&",
        )
        .unwrap();
        let back = parse_back(&data_ack(&old).unwrap());
        assert_eq!(back.cp_value("QN"), Some("20040516010101001"));
        assert_eq!(back.cp_value("CN"), Some("2051"));
    }
}
