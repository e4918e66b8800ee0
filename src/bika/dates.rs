//! Zope `DateTime` strings as BIKA LIMS 3.1's legacy API writes them
//! (`2026/11/26 14:57:0.619412 UTC`: the seconds are not zero-padded, the zone is a name) read
//! leniently into the snapshot's RFC 3339 form (`2026-11-26T14:57:00.619412+00:00`, whole
//! seconds without a fraction, as senaite.jsonapi writes them). Pure functions.

/// The RFC 3339 form of a Zope `DateTime` string, or `None` when `s` is not one (it is then
/// kept as it is).
pub fn zope_to_rfc3339(s: &str) -> Option<String> {
    let mut parts = s.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut d = date.split('/');
    let year = number(d.next()?, 4, 4)?;
    let month = number(d.next()?, 1, 2)?;
    let day = number(d.next()?, 1, 2)?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':');
    let hour = number(t.next()?, 1, 2)?;
    let minute = number(t.next()?, 1, 2)?;
    let sec_text = t.next()?;
    if t.next().is_some() || hour > 23 || minute > 59 {
        return None;
    }
    let (whole, frac) = match sec_text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (sec_text, ""),
    };
    let second = number(whole, 1, 2)?;
    if second > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let offset = zone_offset(zone)?;
    let frac = frac.trim_end_matches('0');
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac:0<6}")
    };
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{frac}{offset}"
    ))
}

/// Digits only, `min..=max` of them.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `UTC`, `GMT`, `GMT+2`, `GMT-0530`, `+0100` as `+HH:MM`; other zone names are not guessed.
fn zone_offset(zone: &str) -> Option<String> {
    let z = zone.to_ascii_uppercase();
    let rest = match z.as_str() {
        "UTC" | "GMT" | "Z" | "UT" => return Some("+00:00".into()),
        _ => z
            .strip_prefix("GMT")
            .or_else(|| z.strip_prefix("UTC"))
            .unwrap_or(&z),
    };
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => ('+', &rest[1..]),
        b'-' => ('-', &rest[1..]),
        _ => return None,
    };
    let (h, m) = match digits.len() {
        1 | 2 => (number(digits, 1, 2)?, 0),
        4 => (number(&digits[..2], 2, 2)?, number(&digits[2..], 2, 2)?),
        _ => return None,
    };
    (h <= 14 && m < 60).then(|| format!("{sign}{h:02}:{m:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpadded_seconds_from_the_real_bika_parse() {
        assert_eq!(
            zope_to_rfc3339("2026/11/26 14:57:0.619412 UTC").as_deref(),
            Some("2026-11-26T14:57:00.619412+00:00")
        );
        assert_eq!(
            zope_to_rfc3339("2026/11/26 14:53:15.374089 UTC").as_deref(),
            Some("2026-11-26T14:53:15.374089+00:00")
        );
        assert_eq!(
            zope_to_rfc3339("2026/1/6 4:5:7 GMT+2").as_deref(),
            Some("2026-01-06T04:05:07+02:00")
        );
        assert_eq!(
            zope_to_rfc3339("2026/11/26 00:00:00.000000 GMT-0530").as_deref(),
            Some("2026-11-26T00:00:00-05:30")
        );
    }

    #[test]
    fn other_strings_are_left_alone() {
        for s in [
            "2026-11-26T21:46:40+00:00",
            "Water",
            "2026/11/26",
            "2026/13/26 10:00:00 UTC",
            "2026/11/26 10:00:00 US/Eastern",
            "1/2/3 4:5:6 UTC",
            "",
        ] {
            assert_eq!(zope_to_rfc3339(s), None, "{s}");
        }
    }
}
