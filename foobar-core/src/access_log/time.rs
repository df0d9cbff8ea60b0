//! Wall-clock times as log lines write them, without a calendar crate.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC date and time of day.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn civil(time: SystemTime) -> Civil {
    // Times before 1970 are clamped: a request never arrives then.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Days since the epoch to a proleptic Gregorian date, after Howard
    // Hinnant's `civil_from_days`.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: of_day / 3600,
        minute: of_day % 3600 / 60,
        second: of_day % 60,
        millis: since.subsec_millis(),
    }
}

/// `2026-12-04T14:26:15.123Z`
pub(super) fn write_rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let c = civil(time);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    );
}

/// `04/Dec/2026:14:26:15 +0000` (nginx's `$time_local`, in UTC).
pub(super) fn write_common_log(out: &mut Vec<u8>, time: SystemTime) {
    let c = civil(time);
    let month = MONTHS[(c.month as usize).clamp(1, 12) - 1];
    let _ = write!(
        out,
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn known_dates() {
        for (secs, rfc, common) in [
            (0, "1970-01-01T00:00:00.000Z", "01/Jan/1970:00:00:00 +0000"),
            (
                951_782_400,
                "2000-02-29T00:00:00.000Z",
                "29/Feb/2000:00:00:00 +0000",
            ),
            (
                1_796_394_375,
                "2026-12-04T14:26:15.000Z",
                "04/Dec/2026:14:26:15 +0000",
            ),
            (
                4_102_444_799,
                "2099-12-31T23:59:59.000Z",
                "31/Dec/2099:23:59:59 +0000",
            ),
        ] {
            let mut out = Vec::new();
            write_rfc3339(&mut out, at(secs, 0));
            assert_eq!(String::from_utf8(out).unwrap(), rfc);
            let mut out = Vec::new();
            write_common_log(&mut out, at(secs, 0));
            assert_eq!(String::from_utf8(out).unwrap(), common);
        }
        let mut out = Vec::new();
        write_rfc3339(&mut out, at(1, 7));
        assert_eq!(String::from_utf8(out).unwrap(), "1970-01-01T00:00:01.007Z");
    }
}
