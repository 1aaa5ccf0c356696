//! Debezium's text and byte encodings, decoded on the hot path: exact decimal text of
//! `VariableScaleDecimal`s and the ISO form of `ZonedTimestamp`s. Both have a fast path for what
//! Debezium writes in practice and fall back to the general algorithm (or arrow's parser) for
//! the rest, with the same results (tested against them).

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};

/// Big-endian two's complement unscaled integer and a scale → decimal text, appended to `out`
/// (`[0x04, 0xCB, 0x2F]`, 5 → `3.14159`). Exact at any size.
pub fn decimal_text_into(out: &mut String, be: &[u8], scale: i32) {
    use std::fmt::Write as _;
    let start = out.len();
    if be.len() <= 16 {
        // Fits an i128: sign-extend and print it.
        let fill = if be.first().is_some_and(|b| b & 0x80 != 0) { 0xFF } else { 0 };
        let mut bytes = [fill; 16];
        bytes[16 - be.len()..].copy_from_slice(be);
        let v = i128::from_be_bytes(bytes);
        // u64 prints faster than u128, and nearly every value fits.
        match u64::try_from(v.unsigned_abs()) {
            Ok(small) => {
                let _ = write!(out, "{small}");
            }
            Err(_) => {
                let _ = write!(out, "{}", v.unsigned_abs());
            }
        }
        place_point(out, start, scale, v < 0);
    } else {
        big_digits(out, be);
        let negative = be.first().is_some_and(|b| b & 0x80 != 0);
        place_point(out, start, scale, negative);
    }
}

/// `out[start..]` holds the magnitude's digits: insert the decimal point for `scale` (or append
/// zeros for a negative one) and the sign of a nonzero negative value.
fn place_point(out: &mut String, start: usize, scale: i32, negative: bool) {
    let digits = out.len() - start;
    if scale > 0 {
        let scale = scale as usize;
        if digits <= scale {
            out.insert_str(start, &"0".repeat(scale + 1 - digits));
        }
        out.insert(out.len() - scale, '.');
    } else if scale < 0 && &out[start..] != "0" {
        out.push_str(&"0".repeat(scale.unsigned_abs() as usize));
    }
    if negative && out[start..].bytes().any(|b| b != b'0' && b != b'.') {
        out.insert(start, '-');
    }
}

/// Decimal digits of the magnitude of a big-endian two's complement integer of any length.
fn big_digits(out: &mut String, be: &[u8]) {
    use std::fmt::Write as _;
    let negative = be.first().is_some_and(|b| b & 0x80 != 0);
    let mut mag: Vec<u8> = if negative {
        // Two's complement negate: invert and add one.
        let mut m: Vec<u8> = be.iter().map(|b| !b).collect();
        for byte in m.iter_mut().rev() {
            let (v, carry) = byte.overflowing_add(1);
            *byte = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        be.to_vec()
    };
    // Base-1e9 limbs by repeated division.
    let mut limbs = Vec::new();
    while mag.iter().any(|b| *b != 0) {
        let mut rem: u64 = 0;
        for byte in mag.iter_mut() {
            let cur = (rem << 8) | u64::from(*byte);
            *byte = (cur / 1_000_000_000) as u8;
            rem = cur % 1_000_000_000;
        }
        limbs.push(rem);
    }
    match limbs.split_last() {
        None => out.push('0'),
        Some((top, rest)) => {
            let _ = write!(out, "{top}");
            for l in rest.iter().rev() {
                let _ = write!(out, "{l:09}");
            }
        }
    }
}

/// A column of Debezium `ZonedTimestamp`s (`2026-11-23T23:23:02.766172Z`: UTC, 0 to 9 fraction
/// digits) as microseconds since the epoch; `None` if any value has another form (an offset
/// other than `Z`, a year past 9999): the caller then uses arrow's general parser.
///
/// An empty string is null, as arrow's cast makes it: it is what a record's absent image (the
/// `before` of an insert) holds under its non-nullable fields.
pub fn zoned_micros_column(strings: &StringArray) -> Option<TimestampMicrosecondArray> {
    let mut values = Vec::with_capacity(strings.len());
    let mut empty = false;
    for i in 0..strings.len() {
        let v = strings.value(i);
        values.push(if strings.is_null(i) || v.is_empty() {
            empty |= strings.is_valid(i);
            0
        } else {
            zoned_micros(v)?
        });
    }
    let nulls = if empty {
        Some(arrow::buffer::NullBuffer::from_iter((0..strings.len()).map(|i| strings.is_valid(i) && !strings.value(i).is_empty())))
    } else {
        strings.nulls().cloned()
    };
    Some(TimestampMicrosecondArray::new(values.into(), nulls))
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` → microseconds since the epoch (fraction truncated, as
/// arrow's cast does); `None` for any other form.
pub fn zoned_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let micros = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => {
            let mut m = 0i64;
            for i in 0..6 {
                m = m * 10 + digits.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
            m
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, TimeUnit};
    use rand::{Rng, SeedableRng};

    fn text(be: &[u8], scale: i32) -> String {
        let mut s = String::new();
        decimal_text_into(&mut s, be, scale);
        s
    }

    #[test]
    fn decimal_text_is_exact() {
        assert_eq!(text(&[0x04, 0xCB, 0x2F], 5), "3.14159");
        assert_eq!(text(&[0x04, 0xE2], 2), "12.50");
        assert_eq!(text(&[0xFB, 0x1E], 2), "-12.50");
        assert_eq!(text(&[0x05], 3), "0.005");
        assert_eq!(text(&[0xFB], 3), "-0.005");
        assert_eq!(text(&[0x00], 0), "0");
        assert_eq!(text(&[], 2), "0.00");
        assert_eq!(text(&[0x7B], -2), "12300");
        // 2^96 = 79228162514264337593543950336, beyond i64 and f64's exact range.
        let mut big = vec![0x01];
        big.extend([0u8; 12]);
        assert_eq!(text(&big, 10), "7922816251426433759.3543950336");
    }

    /// The i128 fast path and the long-division path agree, sign and scale included.
    #[test]
    fn both_decimal_paths_agree() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..20_000 {
            let len = rng.random_range(1..=16);
            let be: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let scale = rng.random_range(-3..=40);
            // The same value padded to 17 bytes takes the general path.
            let fill = if be[0] & 0x80 != 0 { 0xFF } else { 0 };
            let mut wide = vec![fill];
            wide.extend(&be);
            assert_eq!(text(&be, scale), text(&wide, scale), "{be:02x?} scale {scale}");
        }
    }

    /// The fast path gives what arrow's parser gives, for every fraction length, before and
    /// after the epoch and on leap days; other forms are left to arrow.
    #[test]
    fn zoned_timestamps_parse_as_arrow_does() -> Result<(), Box<dyn std::error::Error>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut samples =
            vec!["1970-01-01T00:00:00Z".to_string(), "2000-02-29T23:59:59.999999999Z".into(), "1969-12-31T23:59:59.5Z".into()];
        for _ in 0..5_000 {
            let secs = rng.random_range(-62_000_000_000i64..253_000_000_000);
            let nanos = rng.random_range(0..1_000_000_000u32);
            let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or("timestamp")?;
            let digits = rng.random_range(0..=9usize);
            let frac = format!("{nanos:09}");
            let f = if digits == 0 { String::new() } else { format!(".{}", &frac[..digits]) };
            samples.push(format!("{}{f}Z", t.format("%Y-%m-%dT%H:%M:%S")));
        }
        samples.push(String::new());
        let column = StringArray::from(samples.clone());
        let fast = zoned_micros_column(&column).ok_or("the fast path refused Debezium's form")?;
        let arrow = arrow::compute::cast(&column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let arrow = arrow.as_any().downcast_ref::<TimestampMicrosecondArray>().ok_or("cast type")?;
        for (i, s) in samples.iter().enumerate() {
            assert_eq!((fast.is_null(i), fast.value(i)), (arrow.is_null(i), arrow.value(i)), "{s:?}");
        }
        for other in
            ["2026-11-23T23:23:02+01:00", "+12026-11-23T23:23:02Z", "2026-02-30T00:00:00Z", "2026-11-23 23:23:02Z", "2026-11-23T23:23:02.Z"]
        {
            assert_eq!(zoned_micros(other), None, "{other}");
        }
        Ok(())
    }
}
