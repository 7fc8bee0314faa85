//! Durations as people write them, on the command line (`-t 10s`) and in `hosts.toml`
//! (`command_timeout = "1h30m"` or `= 90`): parsed without a panic whatever the input, and
//! bounded by [`MAX_DURATION`].

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The longest duration rexec accepts anywhere: 365 days. Anything longer (a typo such as
/// `-t 100000000000000000000`) is a usage error rather than "forever".
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

const EXPECTED: &str =
    "expected a number of seconds, or a number with a unit: 500ms, 10s, 2m, 1h, 1h30m";

/// Parses a duration: a bare number of seconds (`10`, `1.5`), a number with a unit
/// (`500ms`, `10s`, `1.5s`, `2m`, `1h`, `7d`), or several such parts (`1h30m`, `1h 30m`).
/// Units are those of the `humantime` crate (`ns`, `us`, `ms`, `s`/`sec`, `m`/`min`,
/// `h`/`hr`, `d`, `w`, ...); a decimal number takes a single unit (`1.5h`).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for anything else, for zero or a value that rounds to zero
/// nanoseconds, and for anything longer than [`MAX_DURATION`] (365 days). Never panics.
pub fn parse_duration(text: &str) -> Result<Duration> {
    duration_from_text(text).map_err(|why| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("invalid duration {text:?}: {why}"),
        )
    })
}

/// The duration `text` stands for, or why it is not one.
pub(crate) fn duration_from_text(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    if is_decimal(t) {
        let secs: f64 = t.parse().map_err(|_| invalid())?;
        return duration_from_secs(secs);
    }
    match humantime::parse_duration(t) {
        Ok(d) => check_bounds(d),
        // humantime says "overflow" also for a fraction of a nanosecond (`0.1ns`): such
        // a decimal is judged by its value instead.
        Err(humantime::DurationError::NumberOverflow) => match decimal_with_unit(t) {
            Err(why) if why == invalid() => Err(too_long()),
            other => other,
        },
        Err(_) => decimal_with_unit(t),
    }
}

/// A decimal number with one unit: `1.5s`, `0.5h`.
fn decimal_with_unit(t: &str) -> std::result::Result<Duration, String> {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim_start();
    if !is_decimal(number) || unit.is_empty() || !unit.chars().all(char::is_alphabetic) {
        return Err(invalid());
    }
    let per_unit = humantime::parse_duration(&format!("1{unit}")).map_err(|_| invalid())?;
    let value: f64 = number.parse().map_err(|_| invalid())?;
    duration_from_secs(value * per_unit.as_secs_f64())
}

/// A number of seconds (from a bare number or a TOML float) as a duration.
pub(crate) fn duration_from_secs(secs: f64) -> std::result::Result<Duration, String> {
    if secs.is_nan() {
        return Err(invalid());
    }
    if secs <= 0.0 {
        return Err(not_positive());
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(too_long());
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| invalid())
        .and_then(check_bounds)
}

/// A whole number of seconds (from a TOML integer) as a duration.
pub(crate) fn duration_from_int(secs: i64) -> std::result::Result<Duration, String> {
    match u64::try_from(secs) {
        Ok(0) | Err(_) => Err(not_positive()),
        Ok(s) => check_bounds(Duration::from_secs(s)),
    }
}

fn check_bounds(d: Duration) -> std::result::Result<Duration, String> {
    if d.is_zero() {
        Err(not_positive())
    } else if d > MAX_DURATION {
        Err(too_long())
    } else {
        Ok(d)
    }
}

/// Digits with at most one `.` and at least one digit: `10`, `1.5`, `.5`, `5.`.
fn is_decimal(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.matches('.').count() <= 1
}

fn invalid() -> String {
    EXPECTED.to_owned()
}

fn not_positive() -> String {
    "must be more than zero".to_owned()
}

fn too_long() -> String {
    "longer than the maximum of 365 days".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let ok = |t: &str| parse_duration(t).unwrap();
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok(" 1.5 "), Duration::from_millis(1500));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("0.5h"), Duration::from_secs(1800));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("7d"), Duration::from_secs(7 * 86400));
        assert_eq!(ok("365d"), MAX_DURATION);
        for bad in [
            "", "soon", "-5", "0", "0s", "0.0", "1e3", "nan", "inf", "1.5.5", "s", ".",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for long in [
            "366d",
            "100000000000000000000",
            "99999999999999999999999999s",
            "1e30",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            if long != "1e30" {
                assert!(e.to_string().contains("maximum of 365 days"), "{e}");
            }
        }
    }

    fn message(text: &str) -> String {
        parse_duration(text).unwrap_err().to_string()
    }

    #[test]
    fn units() {
        let ok = |t: &str| parse_duration(t).unwrap();
        assert_eq!(ok("1ns"), Duration::from_nanos(1));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("3sec"), Duration::from_secs(3));
        assert_eq!(ok("2min"), Duration::from_secs(120));
        assert_eq!(ok("2hr"), Duration::from_secs(7200));
        assert_eq!(ok("1w"), Duration::from_secs(7 * 86400));
        assert_eq!(ok("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
        assert_eq!(ok("1.5 h"), Duration::from_secs(5400));
        assert_eq!(ok(".5"), Duration::from_millis(500));
        assert_eq!(ok("5."), Duration::from_secs(5));
        assert_eq!(ok("0.5m"), Duration::from_secs(30));
        // humantime takes a decimal in any part.
        assert_eq!(ok("1.5h30m"), Duration::from_secs(7200));
        for bad in ["10x", "1.5.s", "1h-5m", "+5", "5 5", "ms", "٣s"] {
            assert!(
                message(bad).contains("expected a number of seconds"),
                "{bad}: {}",
                message(bad)
            );
        }
    }

    #[test]
    fn whitespace_and_empty() {
        assert_eq!(
            parse_duration("\t 10s \n").unwrap(),
            Duration::from_secs(10)
        );
        for blank in ["", " ", "\t\n"] {
            let e = parse_duration(blank).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("expected a number"), "{e}");
        }
        // The message quotes the text as given.
        assert!(
            message(" soon ").contains("\" soon \""),
            "{}",
            message(" soon ")
        );
    }

    #[test]
    fn zero_and_what_rounds_to_zero() {
        // Regression: `0.1ns` was "longer than the maximum of 365 days" (humantime calls
        // a fraction of a nanosecond an overflow).
        for zero in [
            "0",
            "0s",
            "0ms",
            "0.0",
            "0h0m",
            "0.0000000001",
            "0.1ns",
            "0.4ns",
        ] {
            assert!(
                message(zero).contains("more than zero"),
                "{zero}: {}",
                message(zero)
            );
        }
        assert_eq!(duration_from_int(0), Err(not_positive()));
        assert_eq!(duration_from_int(-1), Err(not_positive()));
        assert_eq!(duration_from_int(i64::MIN), Err(not_positive()));
        assert_eq!(duration_from_secs(-0.0), Err(not_positive()));
        assert_eq!(duration_from_secs(f64::NEG_INFINITY), Err(not_positive()));
        assert_eq!(duration_from_secs(f64::MIN_POSITIVE), Err(not_positive()));
        assert_eq!(duration_from_secs(f64::NAN), Err(invalid()));
    }

    #[test]
    fn the_maximum_is_inclusive_and_overflow_is_too_long() {
        let max = MAX_DURATION.as_secs();
        assert_eq!(max, 31_536_000);
        let ok = |t: &str| parse_duration(t).unwrap();
        assert_eq!(ok(&max.to_string()), MAX_DURATION);
        assert_eq!(ok(&format!("{max}s")), MAX_DURATION);
        assert_eq!(ok("8760h"), MAX_DURATION);
        assert_eq!(ok("52w"), Duration::from_secs(52 * 7 * 86400));
        for long in [
            format!("{}", max + 1),
            format!("{}s", max + 1),
            "8760h1ns".to_owned(),
            "53w".to_owned(),
            "1y".to_owned(),
            "365.5d".to_owned(),
            "18446744073709551616s".to_owned(),
            "18446744073709551615".to_owned(),
            "9".repeat(400),
            format!("{}s", "9".repeat(400)),
        ] {
            assert!(
                message(&long).contains("maximum of 365 days"),
                "{long}: {}",
                message(&long)
            );
        }
        assert_eq!(duration_from_int(i64::MAX), Err(too_long()));
        assert_eq!(duration_from_int(max as i64), Ok(MAX_DURATION));
        assert_eq!(duration_from_int(max as i64 + 1), Err(too_long()));
        assert_eq!(duration_from_secs(f64::INFINITY), Err(too_long()));
        assert_eq!(duration_from_secs(f64::MAX), Err(too_long()));
        assert_eq!(duration_from_secs(1.5), Ok(Duration::from_millis(1500)));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_stays_in_bounds(text in "\\PC{0,40}") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero() && d <= MAX_DURATION, "{text:?}: {d:?}");
            }
        }

        #[test]
        fn whole_seconds_round_trip(secs in 1u64..=31_536_000) {
            proptest::prop_assert_eq!(
                parse_duration(&secs.to_string()).unwrap(),
                Duration::from_secs(secs)
            );
            proptest::prop_assert_eq!(
                parse_duration(&format!("{secs}s")).unwrap(),
                Duration::from_secs(secs)
            );
        }
    }
}
