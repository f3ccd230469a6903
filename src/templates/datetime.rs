//! RFC 3339 timestamps for the `date` and `timestamp_ms` filters.
//!
//! TextUs writes timestamps with any fraction length and either `Z` or a
//! `±hh:mm` offset (`2024-05-14T16:02:11.482Z`,
//! `2023-11-17T13:59:04.568354-05:00`). Parsing is total: anything that is not
//! a valid timestamp gives `None` and the filter hands its input back unchanged.
//!
//! The calendar is jiff's: which dates exist, the distance to the epoch, week
//! days, days of the year, names and padding. Two things stay here, because
//! they are what users write and jiff would change them:
//! - The syntax. jiff's parser reads Temporal's ISO 8601, a superset of RFC 3339
//!   (`+02` and `+0200` offsets, comma fractions, `[Europe/Paris]` annotations,
//!   six-digit years, at most nine fraction digits), and it turns a leap
//!   second's `:60` into `:59`, where this parser has always read it as the next
//!   minute's `:00`. So the layout is checked here and jiff gets the fields.
//! - The `strftime` subset. jiff refuses a format with an unknown specifier
//!   (here it is copied through, so a typo shows in the output rather than
//!   failing the delivery), knows specifiers this subset never offered (`%f`,
//!   `%Z`, `%-d`: they stay literal text) and has no `%L`. So the format is
//!   translated into jiff's, specifier by specifier.

use jiff::SignedDuration;
use jiff::civil::DateTime;
use jiff::fmt::strtime::BrokenDownTime;
use jiff::tz::Offset;

/// A parsed timestamp, kept in the offset it was written in so `date` prints
/// the wall-clock time the sender meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Timestamp {
    /// The wall-clock time as written, to the millisecond (finer digits are
    /// dropped); a leap second's `:60` is held as `:59` with `leap` set, since
    /// jiff has no second 60.
    civil: DateTime,
    leap: bool,
    offset: Offset,
}

const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, with `t` or a space
/// accepted for `T` and `z` for `Z` (RFC 3339 §5.6 allows both).
pub(super) fn parse(text: &str) -> Option<Timestamp> {
    let b = text.trim().as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let two = |at: usize| i8::try_from(digits(&b[at..at + 2])?).ok();
    let second = two(17)?;
    let mut millis = 0;
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Pad to three digits: ".5" is 500 ms.
        let ms: Vec<u8> = frac[..n].iter().copied().chain(*b"000").take(3).collect();
        millis = digits(&ms)?;
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            // Stricter than jiff's offsets, which go to ±25:59:59.
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    let leap = second == 60;
    let civil = DateTime::new(
        i16::try_from(digits(&b[0..4])?).ok()?,
        two(5)?,
        two(8)?,
        two(11)?,
        two(14)?,
        if leap { 59 } else { second },
        i32::try_from(millis * 1_000_000).ok()?,
    )
    .ok()?;
    let offset = Offset::from_seconds(i32::try_from(offset_minutes * 60).ok()?).ok()?;
    Some(Timestamp {
        civil,
        leap,
        offset,
    })
}

/// Parses a run of ASCII digits (at most four, so it cannot overflow).
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

impl Timestamp {
    /// Milliseconds since the Unix epoch (UTC), as HubSpot's `hs_timestamp` wants.
    pub(super) fn unix_millis(&self) -> i64 {
        // Civil arithmetic rather than jiff's `Timestamp`, whose range stops a day short of
        // the years 0000 and 9999 that a four-digit year can write with any offset.
        let since = self.civil.duration_since(EPOCH)
            - SignedDuration::from_secs(i64::from(self.offset.seconds()))
            + SignedDuration::from_secs(i64::from(self.leap));
        since.as_secs() * 1_000 + i64::from(since.subsec_millis())
    }

    /// Formats with a `strftime` subset: `%Y %y %m %d %e %H %I %p %M %S %L
    /// %z %:z %b %B %a %A %j %F %T %R %s %%`. An unknown specifier is copied
    /// through as written, so a typo shows up in the output instead of failing
    /// the delivery.
    pub(super) fn format(&self, fmt: &str) -> String {
        let mut jiff_fmt = String::with_capacity(fmt.len() + 8);
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                jiff_fmt.push(c);
                continue;
            }
            match chars.next() {
                None => jiff_fmt.push_str("%%"),
                Some(':') => match chars.next() {
                    Some('z') => jiff_fmt.push_str("%:z"),
                    Some(other) => literal(&mut jiff_fmt, &format!("%:{other}")),
                    None => jiff_fmt.push_str("%%:"),
                },
                Some(spec) => self.translate(&mut jiff_fmt, spec),
            }
        }
        let mut tm = BrokenDownTime::from(self.civil);
        tm.set_offset(Some(self.offset));
        // Every specifier handed to jiff is one it formats from a date, a time and an
        // offset, all of which are set; should that ever fail, the format shows as written,
        // like a typo.
        tm.to_string(&jiff_fmt).unwrap_or_else(|_| fmt.to_owned())
    }

    /// Appends the jiff form of the specifier `%spec` to `out`.
    fn translate(&self, out: &mut String, spec: char) {
        match spec {
            'Y' | 'y' | 'm' | 'd' | 'e' | 'H' | 'I' | 'p' | 'M' | 'z' | 'b' | 'B' | 'a' | 'A'
            | 'j' | 'F' | 'R' => {
                out.push('%');
                out.push(spec);
            }
            // A leap second shows as written.
            'S' if self.leap => out.push_str("60"),
            'T' if self.leap => out.push_str("%H:%M:60"),
            'S' | 'T' => {
                out.push('%');
                out.push(spec);
            }
            'L' => out.push_str(&format!(
                "{:03}",
                self.civil.subsec_nanosecond() / 1_000_000
            )),
            's' => out.push_str(&self.unix_millis().div_euclid(1_000).to_string()),
            '%' => out.push_str("%%"),
            other => literal(out, &format!("%{other}")),
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC with exactly three fraction digits.
pub(super) fn format_utc_millis(ms: i64) -> String {
    // jiff's range ends with the year 9999; a time past it (only a clock or a store gone
    // wrong gives one) shows as that end.
    let at = jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{at:.3}")
}

/// Appends `text` to a jiff format so that it prints as itself.
fn literal(out: &mut String, text: &str) {
    out.push_str(&text.replace('%', "%%"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Option<i64> {
        parse(s).map(|t| t.unix_millis())
    }

    #[test]
    fn formats_unix_millis_with_three_fraction_digits() {
        assert_eq!(format_utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_utc_millis(1_715_702_531_482),
            "2024-05-14T16:02:11.482Z"
        );
        assert_eq!(
            format_utc_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_utc_millis(1_715_702_531_400),
            "2024-05-14T16:02:11.400Z"
        );
        // Past jiff's range: its last instant (its range leaves room for any offset).
        assert_eq!(format_utc_millis(i64::MAX), "9999-12-30T22:00:00.999Z");
        for ms in [0, 1, 999, 86_399_999, 1_715_702_531_482, 4_102_444_800_000] {
            let text = format_utc_millis(ms);
            assert_eq!(self::ms(&text), Some(ms), "{text}");
        }
    }

    #[test]
    fn parses_fixture_timestamps_to_unix_millis() {
        // Cross-checked with `date -d ... +%s%3N`.
        assert_eq!(ms("2024-05-14T16:02:11.482Z"), Some(1_715_702_531_482));
        assert_eq!(
            ms("2023-11-17T13:59:04.568354-05:00"),
            Some(1_700_247_544_568)
        );
        assert_eq!(
            ms("2021-07-27T18:48:16.878086+00:00"),
            Some(1_627_411_696_878)
        );
        assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(ms("2024-02-29T00:00:00.5+01:30"), Some(1_709_159_400_500));
        assert_eq!(ms("2024-05-14t16:02:11z"), Some(1_715_702_531_000));
        assert_eq!(ms("2024-05-14 16:02:11Z"), Some(1_715_702_531_000));
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "",
            "yesterday",
            "2024-05-14",
            "2024-05-14T16:02:11",       // no offset
            "2024-05-14T16:02:11.Z",     // empty fraction
            "2024-13-01T00:00:00Z",      // month
            "2023-02-29T00:00:00Z",      // not a leap year
            "2024-05-14T24:00:00Z",      // hour
            "2024-05-14T16:02:11+2:00",  // short offset
            "2024-05-14T16:02:11+24:00", // offset hour
            "2024-05-14T16:02:11Zjunk",  // trailing input
            "2024-05-14T16:02:11.48é2Z", // non-ascii in fraction
            "+024-05-14T16:02:11Z",      // sign in year
            "２０２４-05-14T16:02:11Z",  // full-width digits
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_in_the_written_offset() {
        let ts = parse("2023-11-17T13:59:04.568354-05:00");
        let Some(ts) = ts else {
            panic!("fixture timestamp parses")
        };
        assert_eq!(ts.format("%Y-%m-%d %H:%M"), "2023-11-17 13:59");
        assert_eq!(
            ts.format("%d %b %Y, %I:%M %p (%z)"),
            "17 Nov 2023, 01:59 PM (-0500)"
        );
        assert_eq!(
            ts.format("%A %B %e %S.%L %:z"),
            "Friday November 17 04.568 -05:00"
        );
        assert_eq!(
            ts.format("%F %T %j %y %s"),
            "2023-11-17 13:59:04 321 23 1700247544"
        );
        assert_eq!(ts.format("100%% %q %:x %"), "100% %q %:x %");
    }

    #[test]
    fn twelve_hour_clock_edges() {
        let midnight = parse("2024-01-01T00:05:00Z").map(|t| t.format("%I %p %a %R"));
        assert_eq!(midnight.as_deref(), Some("12 AM Mon 00:05"));
        let noon = parse("2024-01-01T12:00:00Z").map(|t| t.format("%I %p"));
        assert_eq!(noon.as_deref(), Some("12 PM"));
    }
}
