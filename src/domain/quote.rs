//! Quoting client input in reasons and logs: at most a short excerpt, so a 10 MiB id cannot become a 10 MiB ack or
//! log line.

/// Longest excerpt of client input any reason or log line quotes, in bytes.
pub const MAX_QUOTE_BYTES: usize = 100;

/// `text` as a Rust-debug-quoted string, cut to [`MAX_QUOTE_BYTES`] (at a character boundary) with the full
/// length said when cut.
pub fn quote(text: &str) -> String {
    if text.len() <= MAX_QUOTE_BYTES {
        return format!("{text:?}");
    }
    let mut end = MAX_QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_at_a_character_and_says_how_long_it_was() {
        assert_eq!(quote("s1"), "\"s1\"");
        let long = "排".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < MAX_QUOTE_BYTES + 40, "{}", q.len());
        assert!(q.ends_with("… (30000 bytes)"), "{q}");
    }
}
