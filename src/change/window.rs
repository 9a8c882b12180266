//! Maintenance windows: `Sun 02:00-03:00 Europe/Paris`, `daily 23:30-00:30 Asia/Kolkata`.
//!
//! A window is a weekday (or `daily`), a start and end wall-clock time and an IANA time
//! zone; an end at or before the start runs past midnight. Times are wall-clock in the
//! zone, so a window keeps its local hours across daylight-saving changes; a start that
//! falls into a spring-forward gap moves to the first instant after it (jiff's
//! `compatible` disambiguation, as RFC 5545 prescribes), and the window keeps its
//! length. Pure: the current time is passed in.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// A parsed maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `None`: every day.
    pub weekday: Option<Weekday>,
    /// Local start time.
    pub start: Time,
    /// Local end time (at or before `start`: the next day).
    pub end: Time,
    /// The zone's IANA name.
    pub zone: String,
    tz: TimeZone,
}

/// `Sun`, `sunday` → that weekday; `daily` → `Some(None)`; anything else → `None`.
#[expect(
    clippy::option_option,
    reason = "None: not a day word; Some(None): every day"
)]
pub(crate) fn weekday(word: &str) -> Option<Option<Weekday>> {
    Some(Some(match word.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        "daily" => return Some(None),
        _ => return None,
    }))
}

impl Window {
    /// Parses `DAY HH:MM-HH:MM ZONE`, DAY a weekday (`Sun`, `Sunday`) or `daily`.
    ///
    /// # Errors
    /// A message saying which part is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORM: &str = "allowed: `DAY HH:MM-HH:MM ZONE` with DAY a weekday (Mon…Sun) or `daily` and ZONE an IANA time zone, e.g. `Sun 02:00-03:00 Europe/Paris`";
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [day, hours, zone] = parts[..] else {
            return Err(format!("`{}` is not a window; {FORM}", text.escape_debug()));
        };
        let weekday = weekday(day).ok_or_else(|| format!("`{day}` is not a day; {FORM}"))?;
        let (start, end) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{hours}` is not HH:MM-HH:MM; {FORM}"))?;
        let time = |s: &str| {
            Time::strptime("%H:%M", s).map_err(|_| format!("`{s}` is not a time HH:MM; {FORM}"))
        };
        let (start, end) = (time(start)?, time(end)?);
        let tz = TimeZone::get(zone).map_err(|_| {
            format!("`{zone}` is not an IANA time zone (e.g. Europe/Paris, Asia/Kolkata)")
        })?;
        Ok(Self {
            weekday,
            start,
            end,
            zone: zone.to_owned(),
            tz,
        })
    }

    /// The window's length: end − start in wall-clock terms (24 h for equal times).
    fn length(&self) -> jiff::Span {
        let minutes = |t: Time| i64::from(t.hour()) * 60 + i64::from(t.minute());
        let mut length = minutes(self.end) - minutes(self.start);
        if length <= 0 {
            length += 24 * 60;
        }
        length.minutes()
    }

    /// The occurrence opening on the local date of `day` (if the window opens that
    /// weekday): its start and end instants.
    fn opening_on(&self, day: jiff::civil::Date) -> Option<(Zoned, Zoned)> {
        if self.weekday.is_some_and(|w| w != day.weekday()) {
            return None;
        }
        let start = day.to_datetime(self.start).to_zoned(self.tz.clone()).ok()?;
        let end = start.checked_add(self.length()).ok()?;
        Some((start, end))
    }

    /// When a disruptive change may run: `None` when `now` is inside an occurrence,
    /// else the start of the next one.
    pub fn next_start(&self, now: Timestamp) -> Option<Zoned> {
        let here = now.to_zoned(self.tz.clone());
        let today = here.date();
        // Yesterday's occurrence may still be open (a window past midnight).
        for offset in -1..=8 {
            let Ok(day) = today.checked_add(offset.days()) else {
                continue;
            };
            let Some((start, end)) = self.opening_on(day) else {
                continue;
            };
            if start.timestamp() <= now && now < end.timestamp() {
                return None;
            }
            if start.timestamp() > now {
                return Some(start);
            }
        }
        None
    }

    /// Whether `now` is inside an occurrence.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.next_start(now).is_none()
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let day = match self.weekday {
            None => "daily".to_owned(),
            Some(w) => format!("{w:?}")[..3].to_owned(),
        };
        write!(
            f,
            "{day} {}-{} {}",
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M"),
            self.zone
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_with_the_form() {
        let w = Window::parse("Sun 02:00-03:00 Europe/Paris").unwrap();
        assert_eq!(w.to_string(), "Sun 02:00-03:00 Europe/Paris");
        assert!(
            Window::parse("Sun 2-3 Europe/Paris")
                .unwrap_err()
                .contains("HH:MM")
        );
        assert!(
            Window::parse("Sun 02:00-03:00 Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
        assert!(
            Window::parse("Funday 02:00-03:00 UTC")
                .unwrap_err()
                .contains("not a day")
        );
        assert!(Window::parse("daily").is_err());
    }

    #[test]
    fn kolkata_windows_open_at_local_time() {
        // Asia/Kolkata is UTC+05:30 all year.
        let w = Window::parse("daily 02:00-03:00 Asia/Kolkata").unwrap();
        // 2026-12-03 12:00 UTC is 17:30 in Kolkata: the next opening is 02:00 IST
        // on the 4th, which is 20:30 UTC on the 3rd.
        let next = w.next_start(at("2026-12-03T12:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), at("2026-12-03T20:30:00Z"));
        assert!(w.is_open(at("2026-12-03T21:00:00Z")));
        assert!(!w.is_open(at("2026-12-03T21:30:00Z")));
    }

    #[test]
    fn a_window_past_midnight_is_open_after_midnight() {
        let w = Window::parse("Sat 23:30-00:30 UTC").unwrap();
        // 2026-12-06 is a Sunday: 00:10 is still Saturday's window.
        assert!(w.is_open(at("2026-12-06T00:10:00Z")));
        assert!(!w.is_open(at("2026-12-06T00:40:00Z")));
    }

    #[test]
    fn daylight_saving_keeps_local_hours_and_moves_a_start_out_of_the_gap() {
        // Europe/Paris springs forward on 2026-03-29 at 02:00 (to 03:00 CEST): a
        // 02:00 start does not exist that night; the window opens at 03:00 CEST
        // (01:00 UTC) and keeps its hour.
        let w = Window::parse("Sun 02:00-03:00 Europe/Paris").unwrap();
        let next = w.next_start(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), at("2026-03-29T01:00:00Z"));
        assert!(w.is_open(at("2026-03-29T01:30:00Z")));
        assert!(!w.is_open(at("2026-03-29T02:00:00Z")));
        // A week later it is 02:00 CEST, i.e. 00:00 UTC; in winter 02:00 CET is 01:00 UTC.
        let next = w.next_start(at("2026-03-30T12:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), at("2026-04-05T00:00:00Z"));
        let next = w.next_start(at("2026-12-01T12:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), at("2026-12-06T01:00:00Z"));
    }
}
