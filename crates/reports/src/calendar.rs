//! Reporting periods: days, weeks (starting Monday) and months in a time zone, as `[start,
//! end)` instants. Civil dates from day numbers (Howard Hinnant's algorithm); a zone's offset at
//! an instant, and the instant a local midnight falls at, from jiff's time zone database, so a
//! day in Europe/Paris is 23 or 25 hours long when the clocks change.

use serde::Serialize;

/// A time zone: an IANA name (`Europe/Paris`, with its changes to daylight-saving time) or a
/// fixed offset (`+02:00`); UTC by default. Shown and stored by its name.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// A fixed offset, seconds east of UTC (±14 hours at most).
    pub fn fixed(secs: i64) -> Option<Zone> {
        if secs == 0 {
            return Some(Zone::utc());
        }
        let offset = jiff::tz::Offset::from_seconds(i32::try_from(secs).ok()?).ok()?;
        Some(Zone {
            name: offset_name(secs),
            tz: jiff::tz::TimeZone::fixed(offset),
        })
    }

    /// `UTC`, an offset (`+02:00`, `-0530`) or an IANA name (`America/New_York`); the error says
    /// what to write instead.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let text = text.trim();
        if let Some(secs) = parse_offset(text) {
            return Zone::fixed(secs).ok_or_else(|| format!("{text:?} is too far from UTC"));
        }
        // A name, not a path: the database is only ever read by name.
        let named = !text.is_empty()
            && !text.starts_with(['/', '.'])
            && !text.contains("..")
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        match named.then(|| jiff::tz::TimeZone::get(text)) {
            Some(Ok(tz)) => Ok(Zone {
                name: tz.iana_name().unwrap_or(text).to_owned(),
                tz,
            }),
            _ => Err(format!(
                "{text:?} is not a time zone: use an IANA name such as Europe/Paris or America/New_York, an offset such as +02:00 or -0530, or UTC"
            )),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds east of UTC at the instant `at`.
    pub fn offset_at(&self, at: i64) -> i64 {
        jiff::Timestamp::from_second(at)
            .map(|t| i64::from(self.tz.to_offset(t).seconds()))
            .unwrap_or(0)
    }

    /// The local day number (days since 1970-01-01) of the instant `at`.
    pub fn local_day(&self, at: i64) -> i64 {
        (at + self.offset_at(at)).div_euclid(86_400)
    }

    /// Seconds since local midnight at the instant `at`.
    pub fn local_second(&self, at: i64) -> i64 {
        (at + self.offset_at(at)).rem_euclid(86_400)
    }

    /// The instant of `second` after midnight on local day `day`. A local time the clocks skip
    /// is moved forward by the gap (02:30 on a night that jumps from 02:00 to 03:00 is 03:30);
    /// one they repeat is its first occurrence.
    pub fn instant_of(&self, day: i64, second: i64) -> i64 {
        let local = day * 86_400 + second;
        let (y, m, d) = civil_from_days(day);
        let time = jiff::civil::Time::midnight()
            .checked_add(jiff::SignedDuration::from_secs(second))
            .ok();
        let instant = i16::try_from(y)
            .ok()
            .and_then(|y| jiff::civil::Date::new(y, m as i8, d as i8).ok())
            .zip(time)
            .and_then(|(date, time)| self.tz.to_timestamp(date.to_datetime(time)).ok());
        match instant {
            Some(instant) => instant.as_second(),
            // Beyond the years jiff knows: the offset of the nearest instant.
            None => local - self.offset_at(local),
        }
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// From its name, or (as stored before zones had names) from seconds east of UTC.
impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Name(String),
            Seconds(i64),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Name(name) => Zone::parse(&name).map_err(serde::de::Error::custom),
            Stored::Seconds(secs) => Zone::fixed(secs)
                .ok_or_else(|| serde::de::Error::custom(format!("no offset of {secs} s"))),
        }
    }
}

/// `+02:00` for 7,200 seconds east.
fn offset_name(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

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

/// `YYYY-MM-DD` of an instant in the zone.
pub fn date_label(at: i64, zone: &Zone) -> String {
    let (y, m, d) = civil_from_days(zone.local_day(at));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` as the instant that day starts in the zone.
pub fn parse_date(text: &str, zone: &Zone) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 2023-02-30 and the like: refused rather than rolled over.
    (civil_from_days(days) == (year, month, day)).then(|| zone.instant_of(days, 0))
}

/// The start of the period holding `at`.
pub fn period_start(at: i64, interval: Interval, zone: &Zone) -> i64 {
    let days = zone.local_day(at);
    let first = match interval {
        Interval::Day => days,
        // 1970-01-01 was a Thursday: Monday is three days before it.
        Interval::Week => days - (days + 3).rem_euclid(7),
        Interval::Month => {
            let (y, m, _) = civil_from_days(days);
            days_from_civil(y, m, 1)
        }
    };
    zone.instant_of(first, 0)
}

/// The start of the period after the one starting at `start`.
pub fn next_period(start: i64, interval: Interval, zone: &Zone) -> i64 {
    let days = zone.local_day(start);
    let next = match interval {
        Interval::Day => days + 1,
        Interval::Week => days + 7,
        Interval::Month => {
            let (y, m, _) = civil_from_days(days);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1)
        }
    };
    zone.instant_of(next, 0)
}

/// The periods covering `[from, to)`: the first starts at or before `from`, the last ends at
/// or after `to`.
pub fn periods(from: i64, to: i64, interval: Interval, zone: &Zone) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = period_start(from, interval, zone);
    while start < to && out.len() < 100_000 {
        let end = next_period(start, interval, zone);
        out.push((start, end));
        start = end;
    }
    out
}

/// A UTC offset such as `+02:00`, `-0530`, `Z` or `UTC`, in seconds east.
fn parse_offset(text: &str) -> Option<i64> {
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
        assert_eq!(parse_date("2024-02-29", &Zone::utc()), Some(1_709_164_800));
        assert_eq!(parse_date("2023-02-29", &Zone::utc()), None);
    }

    #[test]
    fn periods_in_an_offset() {
        let zone = Zone::parse("+02:00").unwrap();
        let jan = parse_date("2024-01-01", &zone).unwrap();
        let months = periods(
            jan,
            parse_date("2024-04-01", &zone).unwrap(),
            Interval::Month,
            &zone,
        );
        let labels: Vec<String> = months.iter().map(|(s, _)| date_label(*s, &zone)).collect();
        assert_eq!(labels, ["2024-01-01", "2024-02-01", "2024-03-01"]);
        assert_eq!(months[1].1 - months[1].0, 29 * 86_400);
        // 2024-01-03 was a Wednesday: its week began Monday the 1st.
        let utc = Zone::utc();
        let wednesday = parse_date("2024-01-03", &utc).unwrap() + 3_600;
        assert_eq!(
            date_label(period_start(wednesday, Interval::Week, &utc), &utc),
            "2024-01-01"
        );
        assert_eq!(Zone::parse("-0530").unwrap().offset_at(0), -19_800);
        assert_eq!(Zone::parse("-0530").unwrap().name(), "-05:30");
        assert!(Zone::parse("2").is_err());
    }

    #[test]
    fn days_in_a_named_zone_follow_its_clock_changes() {
        let paris = Zone::parse("Europe/Paris").unwrap();
        assert_eq!(paris.name(), "Europe/Paris");
        // 2024-03-31: clocks went from 02:00 to 03:00, a day of 23 hours.
        let days = periods(
            parse_date("2024-03-30", &paris).unwrap(),
            parse_date("2024-04-02", &paris).unwrap(),
            Interval::Day,
            &paris,
        );
        let hours: Vec<i64> = days.iter().map(|(s, e)| (e - s) / 3_600).collect();
        assert_eq!(hours, [24, 23, 24]);
        // Midnight in Paris on 2024-03-30 (winter, +01:00) is 23:00 UTC the day before.
        assert_eq!(days[0].0, 1_711_753_200);
        assert_eq!(date_label(days[1].0, &paris), "2024-03-31");
        // October's month is an hour longer than its 31 days.
        let october = parse_date("2024-10-01", &paris).unwrap();
        assert_eq!(
            next_period(october, Interval::Month, &paris) - october,
            31 * 86_400 + 3_600
        );
        for wrong in ["Mars/Olympus", "../etc/passwd", "/etc/localtime", ""] {
            assert!(Zone::parse(wrong).is_err(), "{wrong}");
        }
        let stored: Zone = serde_json::from_str("3600").unwrap();
        assert_eq!(stored.name(), "+01:00");
        let named: Zone = serde_json::from_str("\"America/New_York\"").unwrap();
        assert_eq!(
            serde_json::to_string(&named).unwrap(),
            "\"America/New_York\""
        );
    }
}
