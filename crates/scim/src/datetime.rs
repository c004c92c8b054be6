//! Just enough of xsd:dateTime (RFC 7643 §2.3.5) to compare two instants:
//! `gt`/`lt` on dateTime attributes are chronological (RFC 7644 Table 3),
//! which string order is not once offsets or fractions differ.

/// An instant: seconds since 1970-01-01T00:00:00Z and nanoseconds.
pub(crate) type Instant = (i64, u32);

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]`. Without a zone the
/// time is taken as UTC (xsd:dateTime allows that; SCIM servers send `Z`).
pub(crate) fn parse_datetime(text: &str) -> Option<Instant> {
    let bytes = text.as_bytes();
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let year = digits(bytes, 0, 4)?;
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    let hour = digits(bytes, 11, 2)?;
    let minute = digits(bytes, 14, 2)?;
    // 60 for a leap second.
    let second = digits(bytes, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut rest = &bytes[19..];
    let mut nanos: u32 = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let length = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 {
            return None;
        }
        // Digits past nanoseconds cannot change an order we can represent.
        for (index, digit) in fraction[..length].iter().enumerate() {
            if index < 9 {
                nanos = nanos * 10 + u32::from(digit - b'0');
            }
        }
        let missing_digits = 9usize.saturating_sub(length);
        nanos *= 10u32.pow(u32::try_from(missing_digits).unwrap_or(0));
        rest = &fraction[length..];
    }

    let offset_seconds: i64 = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, b':', *m1, *m2];
            let hours = digits(&zone, 0, 2)?;
            let minutes = digits(&zone, 3, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };

    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_seconds;
    Some((seconds, nanos))
}

fn digits(bytes: &[u8], start: usize, count: usize) -> Option<u32> {
    bytes
        .get(start..start + count)?
        .iter()
        .try_fold(0u32, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u32::from(byte - b'0'))
        })
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known
/// era-based conversion: 400-year eras of 146 097 days).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn epoch_and_offsets() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(
            parse_datetime("2000-03-01T00:00:00Z"),
            Some((951_868_800, 0))
        );
        assert_eq!(
            parse_datetime("2011-05-13T04:42:34.5Z"),
            Some((1_305_261_754, 500_000_000))
        );
        assert_eq!(
            parse_datetime("2011-05-13T04:42:34"),
            Some((1_305_261_754, 0))
        );
    }

    #[test]
    fn rejects_what_is_not_a_datetime() {
        for text in [
            "",
            "bjensen",
            "2011-13-01T00:00:00Z",
            "2011-02-29T00:00:00Z",
            "2011-05-13 04:42:34Z",
            "2011-05-13T04:42:34.Z",
            "2011-05-13T04:42:34+0100",
            "2011-05-13T04:42:34Zjunk",
        ] {
            assert_eq!(parse_datetime(text), None, "{text}");
        }
    }
}
