//! Reporting periods: days, weeks (starting Monday) and months in a fixed UTC offset, as
//! `[start, end)` instants. Civil dates from day numbers (Howard Hinnant's algorithm), so no
//! time library is needed for a fixed offset.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    #[default]
    Month,
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(text: &str) -> Result<Interval, String> {
        match text {
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            other => Err(format!("no interval {other:?}: use day, week or month")),
        }
    }
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month, day) of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` of an instant in the offset.
pub fn date_label(at: i64, offset_secs: i64) -> String {
    let (y, m, d) = civil_from_days((at + offset_secs).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` as the instant that day starts in the offset.
pub fn parse_date(text: &str, offset_secs: i64) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 2023-02-30 and the like: refused rather than rolled over.
    (civil_from_days(days) == (year, month, day)).then(|| days * 86_400 - offset_secs)
}

/// The start of the period holding `at`.
pub fn period_start(at: i64, interval: Interval, offset_secs: i64) -> i64 {
    let days = (at + offset_secs).div_euclid(86_400);
    let first = match interval {
        Interval::Day => days,
        // 1970-01-01 was a Thursday: Monday is three days before it.
        Interval::Week => days - (days + 3).rem_euclid(7),
        Interval::Month => {
            let (y, m, _) = civil_from_days(days);
            days_from_civil(y, m, 1)
        }
    };
    first * 86_400 - offset_secs
}

/// The start of the period after the one starting at `start`.
pub fn next_period(start: i64, interval: Interval, offset_secs: i64) -> i64 {
    match interval {
        Interval::Day => start + 86_400,
        Interval::Week => start + 7 * 86_400,
        Interval::Month => {
            let (y, m, _) = civil_from_days((start + offset_secs).div_euclid(86_400));
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * 86_400 - offset_secs
        }
    }
}

/// The periods covering `[from, to)`: the first starts at or before `from`, the last ends at
/// or after `to`.
pub fn periods(from: i64, to: i64, interval: Interval, offset_secs: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = period_start(from, interval, offset_secs);
    while start < to && out.len() < 100_000 {
        let end = next_period(start, interval, offset_secs);
        out.push((start, end));
        start = end;
    }
    out
}

/// A UTC offset such as `+02:00`, `-0530`, `Z` or `UTC`, in seconds east.
pub fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3_600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 19_000, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(parse_date("2024-02-29", 0), Some(1_709_164_800));
        assert_eq!(parse_date("2023-02-29", 0), None);
    }

    #[test]
    fn periods_in_an_offset() {
        let offset = parse_offset("+02:00").unwrap();
        let jan = parse_date("2024-01-01", offset).unwrap();
        let months = periods(
            jan,
            parse_date("2024-04-01", offset).unwrap(),
            Interval::Month,
            offset,
        );
        let labels: Vec<String> = months.iter().map(|(s, _)| date_label(*s, offset)).collect();
        assert_eq!(labels, ["2024-01-01", "2024-02-01", "2024-03-01"]);
        assert_eq!(months[1].1 - months[1].0, 29 * 86_400);
        // 2024-01-03 was a Wednesday: its week began Monday the 1st.
        let wednesday = parse_date("2024-01-03", 0).unwrap() + 3_600;
        assert_eq!(
            date_label(period_start(wednesday, Interval::Week, 0), 0),
            "2024-01-01"
        );
        assert_eq!(parse_offset("-0530"), Some(-19_800));
        assert_eq!(parse_offset("2"), None);
    }
}
