//! RFC 3339 timestamps for the `date` and `timestamp_ms` filters.
//!
//! TextUs writes timestamps with any fraction length and either `Z` or a
//! `±hh:mm` offset (`2024-05-14T16:02:11.482Z`,
//! `2023-11-17T13:59:04.568354-05:00`). This is a small hand-written parser
//! rather than a date crate: the filters need one input format, a handful of
//! `strftime` specifiers and Unix milliseconds, nothing more. Parsing is total:
//! anything that is not a valid timestamp gives `None` and the filter hands its
//! input back unchanged.

/// A parsed timestamp, kept in the offset it was written in so `date` prints
/// the wall-clock time the sender meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Timestamp {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// `60` is accepted for a leap second; it counts as the next minute's `:00`.
    second: u32,
    /// The first three fraction digits; finer precision is dropped.
    millis: u32,
    /// Offset from UTC in minutes, east positive.
    offset_minutes: i64,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

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
    let mut ts = Timestamp {
        year: digits(&b[0..4])?,
        month: digits(&b[5..7])? as u32,
        day: digits(&b[8..10])? as u32,
        hour: digits(&b[11..13])? as u32,
        minute: digits(&b[14..16])? as u32,
        second: digits(&b[17..19])? as u32,
        millis: 0,
        offset_minutes: 0,
    };
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Pad to three digits: ".5" is 500 ms.
        let ms: Vec<u8> = frac[..n].iter().copied().chain(*b"000").take(3).collect();
        ts.millis = digits(&ms)? as u32;
        rest = &frac[n..];
    }
    ts.offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
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
    let valid = (1..=12).contains(&ts.month)
        && ts.day >= 1
        && ts.day <= days_in_month(ts.year, ts.month)
        && ts.hour <= 23
        && ts.minute <= 59
        && ts.second <= 60;
    valid.then_some(ts)
}

/// Parses a run of ASCII digits (at most four, so it cannot overflow).
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// Milliseconds since the Unix epoch (UTC), as HubSpot's `hs_timestamp` wants.
    pub(super) fn unix_millis(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - self.offset_minutes * 60;
        secs * 1_000 + i64::from(self.millis)
    }

    /// Formats with a `strftime` subset: `%Y %y %m %d %e %H %I %p %M %S %L
    /// %z %:z %b %B %a %A %j %F %T %R %s %%`. An unknown specifier is copied
    /// through as written, so a typo shows up in the output instead of failing
    /// the delivery.
    pub(super) fn format(&self, fmt: &str) -> String {
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                None => out.push('%'),
                Some(':') => match chars.next() {
                    Some('z') => out.push_str(&self.offset(true)),
                    Some(other) => {
                        out.push_str("%:");
                        out.push(other);
                    }
                    None => out.push_str("%:"),
                },
                Some(spec) => self.push_spec(&mut out, spec),
            }
        }
        out
    }

    fn push_spec(&self, out: &mut String, spec: char) {
        let month_name = MONTHS[(self.month as usize).saturating_sub(1) % 12];
        let weekday =
            WEEKDAYS[(days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as usize];
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        let piece = match spec {
            'Y' => format!("{:04}", self.year),
            'y' => format!("{:02}", self.year.rem_euclid(100)),
            'm' => format!("{:02}", self.month),
            'd' => format!("{:02}", self.day),
            'e' => format!("{:>2}", self.day),
            'H' => format!("{:02}", self.hour),
            'I' => format!("{hour12:02}"),
            'p' => (if self.hour < 12 { "AM" } else { "PM" }).to_owned(),
            'M' => format!("{:02}", self.minute),
            'S' => format!("{:02}", self.second),
            'L' => format!("{:03}", self.millis),
            'z' => self.offset(false),
            'b' => month_name[..3].to_owned(),
            'B' => month_name.to_owned(),
            'a' => weekday[..3].to_owned(),
            'A' => weekday.to_owned(),
            'j' => {
                let jan1 = days_from_civil(self.year, 1, 1);
                let today = days_from_civil(self.year, self.month, self.day);
                format!("{:03}", today - jan1 + 1)
            }
            'F' => self.format("%Y-%m-%d"),
            'T' => self.format("%H:%M:%S"),
            'R' => self.format("%H:%M"),
            's' => self.unix_millis().div_euclid(1_000).to_string(),
            '%' => "%".to_owned(),
            other => format!("%{other}"),
        };
        out.push_str(&piece);
    }

    fn offset(&self, colon: bool) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.abs();
        let sep = if colon { ":" } else { "" };
        format!("{sign}{:02}{sep}{:02}", abs / 60, abs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Option<i64> {
        parse(s).map(|t| t.unix_millis())
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
