//! Durations (`30s`), sizes (`1MiB`) and rates (`100/10s`) as written in relay.yaml.
//!
//! Each parser returns the reason a text is not valid; the caller adds the key, the
//! location and the (possibly hidden) quoted input.
//!
//! Not `humantime` / `bytesize` (issue 17 item 6): both accept more than relay.yaml does
//! (`humantime` takes `1h30m`, `2h 37min`, `1week`; `bytesize` takes decimals and spaces, as in
//! `1.5 MB`, and rounds), so using them would change what a valid file is.

use std::time::Duration;

use super::Rate;

/// The longest duration accepted anywhere. Bigger values are almost certainly typos,
/// and `Instant + Duration` panics on overflow in the code that uses them.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

const DURATION_FORMS: &str = "expected a number and a unit: 500ms, 30s, 10m, 12h, 7d";
const SIZE_FORMS: &str = "expected bytes or a number and a unit: 65536, 64KiB, 1MiB, 10MB, 1GiB";
const RATE_FORMS: &str = "expected COUNT/PERIOD: 1/s, 100/10s, 30/m";

/// `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(text);
    let Some(unit_ms) = duration_unit_ms(unit) else {
        return Err(DURATION_FORMS.to_owned());
    };
    let n = number(digits, DURATION_FORMS)?;
    let ms = n.checked_mul(unit_ms).ok_or_else(too_long)?;
    let duration = Duration::from_millis(ms);
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// An integer number of bytes, optionally with a unit: `B`, `KB`, `KiB`, `MB`, `MiB`,
/// `GB` or `GiB`.
pub(super) fn size(text: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(text);
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(SIZE_FORMS.to_owned()),
    };
    number(digits, SIZE_FORMS)?
        .checked_mul(multiplier)
        .ok_or_else(|| "too large".to_owned())
}

/// `<count>/<unit>` (per one unit) or `<count>/<duration>`.
pub(super) fn rate(text: &str) -> Result<Rate, String> {
    let Some((count, period)) = text.split_once('/') else {
        return Err(RATE_FORMS.to_owned());
    };
    let count =
        u32::try_from(number(count, RATE_FORMS)?).map_err(|_| "count is too large".to_owned())?;
    if count == 0 {
        return Err("count must be at least 1".to_owned());
    }
    let per = match duration_unit_ms(period) {
        Some(ms) => Duration::from_millis(ms),
        None => duration(period).map_err(|_| RATE_FORMS.to_owned())?,
    };
    if per.is_zero() {
        return Err("period must be greater than zero".to_owned());
    }
    Ok(Rate { count, per })
}

/// Splits `12ms` into `("12", "ms")`.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A non-empty run of ASCII digits.
fn number(digits: &str, forms: &str) -> Result<u64, String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(forms.to_owned());
    }
    // Only overflow can fail now.
    digits.parse().map_err(|_| "too large".to_owned())
}

fn duration_unit_ms(unit: &str) -> Option<u64> {
    match unit {
        "ms" => Some(1),
        "s" => Some(1_000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    }
}

fn too_long() -> String {
    "too long (at most 3650d)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_every_unit() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in [
            "1x",
            "",
            "s",
            "10",
            "1.5s",
            "-1s",
            " 1s",
            "1 s",
            "1S",
            "１s",
            "99999999999999999999s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(duration("1x"), Err(DURATION_FORMS.to_owned()));
        assert!(
            duration("3651d")
                .expect_err("too long")
                .contains("too long")
        );
        assert!(duration("18446744073709551615d").is_err());
    }

    #[test]
    fn sizes_know_decimal_and_binary_units() {
        assert_eq!(size("1024"), Ok(1024));
        assert_eq!(size("10B"), Ok(10));
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("2KB"), Ok(2_000));
        assert_eq!(size("1MiB"), Ok(1_048_576));
        assert_eq!(size("3MB"), Ok(3_000_000));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("1GB"), Ok(1_000_000_000));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "1mb",
            "MiB",
            "1.5MiB",
            "1 MiB",
            "-1",
            "1TiB",
            "",
            "18446744073709551615GiB",
        ] {
            assert!(size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn rates_take_a_unit_or_a_duration() {
        let r = |count, secs| {
            Ok(Rate {
                count,
                per: Duration::from_secs(secs),
            })
        };
        assert_eq!(rate("1/s"), r(1, 1));
        assert_eq!(rate("100/10s"), r(100, 10));
        assert_eq!(rate("30/m"), r(30, 60));
        assert_eq!(rate("5/2h"), r(5, 7200));
        assert_eq!(
            rate("10/500ms"),
            Ok(Rate {
                count: 10,
                per: Duration::from_millis(500)
            })
        );
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in [
            "1",
            "/s",
            "1/",
            "0/s",
            "1/0s",
            "1/x",
            "a/s",
            "1/s/s",
            "5000000000/s",
            "1/10",
        ] {
            assert!(rate(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(rate("0/s"), Err("count must be at least 1".to_owned()));
    }
}
