//! Backup schedules: `backup: { schedule: "daily 01:00 Europe/Paris" }` in a spec.
//!
//! A schedule is a weekday (or `daily`), a wall-clock time and an IANA time zone, as a
//! maintenance window is ([`crate::change::window`]): the backup runs at that local
//! time whatever the season. Each platform gets it in its own form: a systemd
//! `OnCalendar=` expression with the zone (systemd.time(7), "Calendar Events"), and a
//! six-field cron with a `CRON_TZ=` prefix for CloudNativePG's `ScheduledBackup`
//! (robfig/cron v3 syntax, seconds first).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

/// A parsed backup schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `None`: every day.
    pub weekday: Option<Weekday>,
    /// Local time of day.
    pub at: Time,
    /// The zone's IANA name.
    pub zone: String,
}

const FORM: &str = "allowed: `DAY HH:MM ZONE` with DAY a weekday (Mon…Sun) or `daily` and ZONE an IANA time zone, e.g. `daily 01:00 Europe/Paris`";

impl Schedule {
    /// Parses `DAY HH:MM ZONE`, DAY a weekday (`Sun`, `Sunday`) or `daily`.
    ///
    /// # Errors
    /// A message saying which part is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [day, at, zone] = parts[..] else {
            return Err(format!(
                "`{}` is not a schedule; {FORM}",
                text.escape_debug()
            ));
        };
        let weekday = crate::change::window::weekday(day)
            .ok_or_else(|| format!("`{day}` is not a day; {FORM}"))?;
        let at = Time::strptime("%H:%M", at)
            .map_err(|_| format!("`{at}` is not a time HH:MM; {FORM}"))?;
        TimeZone::get(zone).map_err(|_| {
            format!("`{zone}` is not an IANA time zone (e.g. Europe/Paris, Asia/Kolkata)")
        })?;
        Ok(Self {
            weekday,
            at,
            zone: zone.to_owned(),
        })
    }

    /// systemd's `OnCalendar=` value: `*-*-* 01:00:00 Europe/Paris`, `Sun *-*-* …`.
    pub fn on_calendar(&self) -> String {
        let day = self
            .weekday
            .map(|w| format!("{} ", short_day(w)))
            .unwrap_or_default();
        format!("{day}*-*-* {} {}", self.at.strftime("%H:%M:%S"), self.zone)
    }

    /// robfig/cron v3 with seconds (CloudNativePG's `ScheduledBackup.spec.schedule`):
    /// `CRON_TZ=Europe/Paris 0 0 1 * * *`.
    pub fn cron_with_seconds(&self) -> String {
        let day = self
            .weekday
            .map_or_else(|| "*".to_owned(), |w| w.to_sunday_zero_offset().to_string());
        format!(
            "CRON_TZ={} 0 {} {} * * {day}",
            self.zone,
            self.at.minute(),
            self.at.hour()
        )
    }

    /// Standard five-field cron in the schedule's zone (`30 1 * * *`; the zone goes
    /// beside it, as mariadb-operator's `Backup.spec.timeZone`).
    pub fn cron(&self) -> String {
        let day = self
            .weekday
            .map_or_else(|| "*".to_owned(), |w| w.to_sunday_zero_offset().to_string());
        format!("{} {} * * {day}", self.at.minute(), self.at.hour())
    }
}

fn short_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_the_form() {
        let daily = Schedule::parse("daily 01:00 Europe/Paris").unwrap();
        assert_eq!(daily.on_calendar(), "*-*-* 01:00:00 Europe/Paris");
        assert_eq!(
            daily.cron_with_seconds(),
            "CRON_TZ=Europe/Paris 0 0 1 * * *"
        );
        let weekly = Schedule::parse("Sunday 23:30 Asia/Kolkata").unwrap();
        assert_eq!(weekly.on_calendar(), "Sun *-*-* 23:30:00 Asia/Kolkata");
        assert_eq!(
            weekly.cron_with_seconds(),
            "CRON_TZ=Asia/Kolkata 0 30 23 * * 0"
        );
        assert_eq!(daily.cron(), "0 1 * * *");
        assert_eq!(weekly.cron(), "30 23 * * 0");
        for bad in [
            "daily 01:00",
            "nightly 01:00 UTC",
            "daily 25:00 UTC",
            "daily 01:00 Mars/Olympus",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(
                err.contains("allowed") || err.contains("IANA"),
                "{bad}: {err}"
            );
        }
    }

    /// systemd itself reads the calendar expressions (`systemd-analyze calendar`
    /// works without a running systemd), when it is installed.
    #[test]
    fn systemd_accepts_the_calendar_expressions() {
        let Ok(out) = std::process::Command::new("systemd-analyze")
            .args([
                "calendar",
                &Schedule::parse("daily 01:00 Europe/Paris")
                    .unwrap()
                    .on_calendar(),
                &Schedule::parse("Sun 02:15 America/New_York")
                    .unwrap()
                    .on_calendar(),
            ])
            .output()
        else {
            // CI installs it (scripts/test); a developer's machine may not have it.
            assert!(
                std::env::var_os("CI").is_none(),
                "systemd-analyze is missing; scripts/test installs the systemd package"
            );
            eprintln!("systemd-analyze is not installed; skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("Normalized form: *-*-* 01:00:00 Europe/Paris"),
            "{text}"
        );
        assert!(
            text.contains("Normalized form: Sun *-*-* 02:15:00 America/New_York"),
            "{text}"
        );
    }
}
