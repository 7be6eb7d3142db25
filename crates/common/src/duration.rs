//! Durations written for people (`30s`, `15m`, `12h`, `7d`, `2w`, `1h30m`):
//! the one syntax that chat commands and the configuration file share.

/// Longest duration accepted anywhere (ten years).
const MAX_MS: u64 = 10 * 365 * 86_400_000;

/// Parses a duration into milliseconds. The error is a sentence for the
/// person who wrote it.
pub fn parse(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a duration (use e.g. 30s, 15m, 12h, 7d, 2w)");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    if total > MAX_MS {
        return Err(format!("`{s}` is longer than ten years"));
    }
    Ok(total)
}

/// `7d`, `12h`, `1h30m`: the form [`parse`] accepts.
pub fn format(ms: u64) -> String {
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse() {
        assert_eq!(parse("30s"), Ok(30_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000));
        for bad in ["", "7", "d", "0d", "7x", "-1d", "99999999999999999999w", "11000w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [1000, 60_000, 5_400_000, 7 * 86_400_000, 9 * 86_400_000 + 3_600_000] {
            assert_eq!(parse(&format(ms)), Ok(ms));
        }
        assert_eq!(format(0), "0s");
    }
}
