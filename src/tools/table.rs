//! Plain-text tables and Beijing-time formatting for the terminal.

/// `YYYY-MM-DD HH:MM` in Beijing time.
pub fn beijing(ms: i64) -> String {
    let (y, m, d) = crate::domain::beijing_date(ms);
    let rem = (ms + crate::domain::BEIJING_OFFSET_MS).rem_euclid(crate::domain::MS_PER_DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3_600_000,
        (rem / 60_000) % 60
    )
}

/// Display width of a string, counting CJK characters as two columns.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum()
}

/// Cuts a string to at most `max` display columns, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = width(c.encode_utf8(&mut [0; 4]));
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// Renders rows as an aligned table with a header rule.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cols {
                s.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_is_utc_plus_8() {
        assert_eq!(beijing(1_740_931_200_000), "2025-03-03 00:00");
        assert_eq!(beijing(0), "1970-01-01 08:00");
        assert_eq!(beijing(951_782_400_000 - 8 * 3_600_000), "2000-02-29 00:00");
    }

    #[test]
    fn tables_align_cjk() {
        let t = render(
            &["a", "b"],
            &[
                vec!["治污".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[2], "治污  x");
        assert_eq!(lines[3], "y     z");
        assert_eq!(truncate("治污设施未运行", 7), "治污设…");
    }
}
