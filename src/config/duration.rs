//! Durations as written in config and APIs: `30s`, `500ms`, `2h45m30s`.

use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration as the config writes it, deserialized once: a bad one is
/// reported by serde with its path (`server.drain_delay: "5x": unknown
/// unit …`), and every section reads a plain [`Duration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like 30s, 500ms or 2h45m30s")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                parse_duration(s).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                // A bare number is a unit left out, except nothing at all.
                match n {
                    0 => Ok(HumanDuration(Duration::ZERO)),
                    _ => Err(E::custom(format!("{n} needs a unit, like {n}s or {n}ms"))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom("a duration cannot be negative")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

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

    #[test]
    fn config_durations_deserialize_from_text_or_zero() {
        let parse = |v: serde_json::Value| serde_json::from_value::<HumanDuration>(v).map(Duration::from);
        assert_eq!(parse(serde_json::json!("2h45m30s")).ok(), Some(Duration::from_secs(9930)));
        assert_eq!(parse(serde_json::json!(0)).ok(), Some(Duration::ZERO));
        for bad in [serde_json::json!(30), serde_json::json!(-1), serde_json::json!("5x"), serde_json::json!(true)] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
