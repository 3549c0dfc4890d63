//! Durations as written in config and APIs: `30s`, `500ms`, `2h45m30s`.

use std::time::Duration;

/// Parse a duration made of `<number><unit>` parts, units `d h m s ms`, each
/// at most once and in decreasing order. A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("{s:?} is not a duration like 30s, 500ms or 2h45m30s"));
        }
        let n: u64 = s[start..i].parse().map_err(|_| format!("{s:?}: number too large"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("{s:?}: unknown unit {unit:?} (use d, h, m, s, ms)"));
        };
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(format!("{s:?}: units must appear once each, largest first"));
        }
        last_rank = Some(rank);
        total_ms = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| format!("{s:?}: duration too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30_000),
            ("500ms", 500),
            ("2h45m30s", 9_930_000),
            ("1d", 86_400_000),
            ("0", 0),
            ("1m500ms", 60_500),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "s", "10", "5x", "1s2h", "1h1h", "-5s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
