//! What the `date` and `timestamp_ms` filters (and the admin API's `since`/`until`, which use
//! the same parser) accept and what they make of it, as one table per question. Written over
//! the hand-written parser before dates moved to jiff, so the move could not change what users
//! can write; the Unix milliseconds were computed independently (Python's `datetime`).

use super::datetime::parse;

/// Unix milliseconds of `text`, or `None` where the parser refuses it.
fn ms(text: &str) -> Option<i64> {
    parse(text).map(|t| t.unix_millis())
}

#[test]
fn every_accepted_form_gives_its_instant() {
    let table: &[(&str, i64)] = &[
        // Fractions: any number of digits, the first three kept, never rounded.
        ("2024-05-14T16:02:11Z", 1_715_702_531_000),
        ("2024-05-14T16:02:11.5Z", 1_715_702_531_500),
        ("2024-05-14T16:02:11.48Z", 1_715_702_531_480),
        ("2024-05-14T16:02:11.482Z", 1_715_702_531_482),
        ("2024-05-14T16:02:11.4829Z", 1_715_702_531_482),
        ("2024-05-14T16:02:11.482999Z", 1_715_702_531_482),
        ("2024-05-14T16:02:11.123456789Z", 1_715_702_531_123),
        ("2024-05-14T16:02:11.1234567891234Z", 1_715_702_531_123),
        (
            "2024-05-14T16:02:11.9999999999999999999999999999999999999999Z",
            1_715_702_531_999,
        ),
        ("2024-05-14T16:02:11.000Z", 1_715_702_531_000),
        // Separators: T, t or a space; Z or z (RFC 3339 §5.6).
        ("2024-05-14t16:02:11Z", 1_715_702_531_000),
        ("2024-05-14 16:02:11Z", 1_715_702_531_000),
        ("2024-05-14T16:02:11z", 1_715_702_531_000),
        ("2024-05-14t16:02:11.482z", 1_715_702_531_482),
        ("2024-05-14t16:02:11+00:00", 1_715_702_531_000),
        // Surrounding whitespace is ignored.
        ("  2024-05-14T16:02:11Z\n", 1_715_702_531_000),
        ("\t2024-05-14T16:02:11.482Z ", 1_715_702_531_482),
        // Offsets: ±hh:mm up to 23:59; -00:00 (offset unknown) is UTC.
        ("2023-11-17T13:59:04.568354-05:00", 1_700_247_544_568),
        ("2024-05-14T16:02:11+00:00", 1_715_702_531_000),
        ("2024-05-14T16:02:11-00:00", 1_715_702_531_000),
        ("2024-05-14T16:02:11+05:30", 1_715_682_731_000),
        ("2024-05-14T16:02:11+14:00", 1_715_652_131_000),
        ("2024-05-14T16:02:11+23:59", 1_715_616_191_000),
        ("2024-05-14T16:02:11-23:59", 1_715_788_871_000),
        // Leap seconds: `:60` counts as the next minute's `:00`, wherever it is written.
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),
        ("2016-12-31T23:59:60.999Z", 1_483_228_800_999),
        ("2016-12-31T18:59:60-05:00", 1_483_228_800_000),
        ("2024-05-14T16:02:60Z", 1_715_702_580_000),
        ("1969-12-31T23:59:60Z", 0),
        ("9999-12-31T23:59:60Z", 253_402_300_800_000),
        // The calendar: leap years, month lengths, before 1970, years 0000 and 9999.
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2000-02-29T12:00:00Z", 951_825_600_000),
        ("2024-02-29T00:00:00.5+01:30", 1_709_159_400_500),
        ("1900-02-28T12:00:00Z", -2_203_934_400_000),
        ("2024-04-30T00:00:00Z", 1_714_435_200_000),
        ("2024-12-31T23:59:59Z", 1_735_689_599_000),
        ("0000-01-01T00:00:00Z", -62_167_219_200_000),
        ("0000-02-29T00:00:00Z", -62_162_121_600_000),
        ("0000-01-01T00:00:00+23:59", -62_167_305_540_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ("9999-12-31T23:59:59-23:59", 253_402_387_139_000),
    ];
    for (text, want) in table {
        assert_eq!(ms(text), Some(*want), "{text:?}");
    }
}

#[test]
fn everything_else_is_refused() {
    for bad in [
        "",
        "   ",
        "yesterday",
        "2024-05-14",
        "2024-05-14T16:02:11",          // no offset
        "2024-05-14T16:02Z",            // no seconds
        "2024-05-14T16:02:11.Z",        // empty fraction
        "2024-05-14T16:02:11,5Z",       // comma for the fraction
        "2024-05-14T16:02:11.5",        // fraction, no offset
        "2024-00-01T00:00:00Z",         // month 0
        "2024-13-01T00:00:00Z",         // month 13
        "2024-01-00T00:00:00Z",         // day 0
        "2024-04-31T00:00:00Z",         // April has 30 days
        "2023-02-29T00:00:00Z",         // not a leap year
        "1900-02-29T00:00:00Z",         // a century, not a leap year
        "2024-05-14T24:00:00Z",         // hour 24
        "2024-05-14T23:60:00Z",         // minute 60
        "2024-05-14T23:59:61Z",         // second 61
        "2024-05-14T16:02:11+2:00",     // short offset hour
        "2024-05-14T16:02:11+24:00",    // offset hour 24
        "2024-05-14T16:02:11+23:60",    // offset minute 60
        "2024-05-14T16:02:11+0200",     // offset without a colon
        "2024-05-14T16:02:11+02",       // offset without minutes
        "2024-05-14T16:02:11+02:00:00", // offset with seconds
        "2024-05-14T16:02:11 Z",        // space before Z
        "2024-05-14T16:02:11Zjunk",     // trailing input
        "2024-05-14T16:02:11Z[UTC]",    // a time zone annotation
        "2024-05-14T16:02:11+02:00[Europe/Paris]",
        "2024-05-14T16:02:11.48é2Z", // non-ascii in the fraction
        "2024-05-14T16:02:11−05:00", // U+2212 minus sign
        "+024-05-14T16:02:11Z",      // sign in the year
        "-2024-05-14T16:02:11Z",     // negative year
        "02024-05-14T16:02:11Z",     // five-digit year
        "+002024-05-14T16:02:11Z",   // expanded year
        "２０２４-05-14T16:02:11Z",  // full-width digits
        "20240514T160211Z",          // basic format
        "2024-5-14T16:02:11Z",       // one-digit month
        "2024-05-14T6:02:11Z",       // one-digit hour
        "2024/05/14T16:02:11Z",      // slashes
        "2024-05-14_16:02:11Z",      // other separator
        "2024-05-14TT16:02:11Z",     // doubled separator
        "2024-05-14T1a:02:11Z",      // letter in the hour
        "2024-05-14T16:02:11.5.5Z",  // two fractions
    ] {
        assert_eq!(parse(bad), None, "{bad:?}");
    }
}

#[test]
fn date_formats_every_specifier_in_the_written_offset() {
    let table: &[(&str, &str, &str)] = &[
        (
            "2024-05-14T16:02:11.482Z",
            "%Y-%m-%d %H:%M",
            "2024-05-14 16:02",
        ),
        (
            "2023-11-17T13:59:04.568354-05:00",
            "%d %b %Y, %I:%M %p (%z)",
            "17 Nov 2023, 01:59 PM (-0500)",
        ),
        (
            "2023-11-17T13:59:04.568354-05:00",
            "%A %B %e %S.%L %:z",
            "Friday November 17 04.568 -05:00",
        ),
        (
            "2023-11-17T13:59:04.568354-05:00",
            "%F %T %j %y %s",
            "2023-11-17 13:59:04 321 23 1700247544",
        ),
        ("2024-01-05T09:08:07Z", "%e|%d|%R|%L", " 5|05|09:08|000"),
        ("2024-01-05T09:08:07.5Z", "%L", "500"),
        ("2024-01-05T09:08:07.482999Z", "%L", "482"),
        // 12-hour clock.
        ("2024-01-01T00:05:00Z", "%I %p %a %R", "12 AM Mon 00:05"),
        ("2024-01-01T11:59:00Z", "%I %p", "11 AM"),
        ("2024-01-01T12:00:00Z", "%I %p", "12 PM"),
        ("2024-01-01T13:00:00Z", "%I %p", "01 PM"),
        ("2024-01-01T23:00:00Z", "%I %p", "11 PM"),
        // Offsets: -00:00 prints as +00:00.
        ("2024-05-14T16:02:11-00:00", "%z %:z", "+0000 +00:00"),
        ("2024-05-14T16:02:11+05:30", "%z %:z %H", "+0530 +05:30 16"),
        ("2024-05-14T16:02:11-23:59", "%z %:z", "-2359 -23:59"),
        // A leap second keeps its :60 on display; %s counts it as the next minute.
        (
            "2016-12-31T23:59:60.5Z",
            "%F %T %S.%L %R %s %j %a",
            "2016-12-31 23:59:60 60.500 23:59 1483228800 366 Sat",
        ),
        (
            "2016-12-31T18:59:60-05:00",
            "%T %z %s",
            "18:59:60 -0500 1483228800",
        ),
        // Before 1970 and the ends of the range.
        ("1969-12-31T23:59:59.999Z", "%s %L", "-1 999"),
        (
            "0000-01-01T00:00:00Z",
            "%Y %y %a %A %j",
            "0000 00 Sat Saturday 001",
        ),
        ("0999-03-01T00:00:00Z", "%Y %y", "0999 99"),
        ("2009-03-01T00:00:00Z", "%y", "09"),
        (
            "9999-12-31T23:59:59Z",
            "%F %T %a %j",
            "9999-12-31 23:59:59 Fri 365",
        ),
        // Days of the year.
        ("2024-12-31T00:00:00Z", "%j %a", "366 Tue"),
        ("2023-12-31T00:00:00Z", "%j %a", "365 Sun"),
        ("2024-01-07T00:00:00Z", "%a %A %j", "Sun Sunday 007"),
        // Text around the specifiers, in any script.
        ("2024-05-14T16:02:11Z", "Zeit: %H时 — ok", "Zeit: 16时 — ok"),
    ];
    for (text, fmt, want) in table {
        let Some(ts) = parse(text) else {
            panic!("{text:?} parses")
        };
        assert_eq!(ts.format(fmt), *want, "{text:?} with {fmt:?}");
    }
}

#[test]
fn month_and_weekday_names_are_english() {
    let table = [
        ("2024-01-05", "Jan January Fri Friday 005"),
        ("2024-02-05", "Feb February Mon Monday 036"),
        ("2024-03-05", "Mar March Tue Tuesday 065"),
        ("2024-04-05", "Apr April Fri Friday 096"),
        ("2024-05-05", "May May Sun Sunday 126"),
        ("2024-06-05", "Jun June Wed Wednesday 157"),
        ("2024-07-05", "Jul July Fri Friday 187"),
        ("2024-08-05", "Aug August Mon Monday 218"),
        ("2024-09-05", "Sep September Thu Thursday 249"),
        ("2024-10-05", "Oct October Sat Saturday 279"),
        ("2024-11-05", "Nov November Tue Tuesday 310"),
        ("2024-12-05", "Dec December Thu Thursday 340"),
    ];
    for (date, want) in table {
        let text = format!("{date}T12:00:00Z");
        let Some(ts) = parse(&text) else {
            panic!("{text:?} parses")
        };
        assert_eq!(ts.format("%b %B %a %A %j"), want, "{text:?}");
    }
}

// Unknown specifiers are copied through as written, so a typo shows in the output instead of
// failing the delivery; that includes specifiers other strftime implementations know.
#[test]
fn an_unknown_specifier_is_copied_through() {
    let Some(ts) = parse("2024-05-14T16:02:11.482+02:00") else {
        panic!("parses")
    };
    let table = [
        ("100%%", "100%"),
        ("%%q", "%q"),
        ("%%Y", "%Y"),
        ("%q", "%q"),
        ("%", "%"),
        ("a%", "a%"),
        ("%:", "%:"),
        ("%:x", "%:x"),
        ("%::z", "%::z"),
        ("%E", "%E"),
        ("%ü", "%ü"),
        ("%f %N %Z %c %D %x %X", "%f %N %Z %c %D %x %X"),
        ("%P %u %w %U %G %V %C %h", "%P %u %w %U %G %V %C %h"),
        ("%n%t%k%l", "%n%t%k%l"),
        ("%-d %_d %05Y %^B %#z", "%-d %_d %05Y %^B %#z"),
        ("%3f %.3f %Q", "%3f %.3f %Q"),
        ("%H%q%M", "16%q02"),
    ];
    for (fmt, want) in table {
        // After a real specifier, so a format jiff refused (shown as written) cannot pass.
        assert_eq!(
            ts.format(&format!("%H|{fmt}")),
            format!("16|{want}"),
            "{fmt:?}"
        );
    }
}
