//! iCalendar (RFC 5545) text for one appointment: the `calendar.ics` download and, later, the
//! invitations and cancellations attached to emails (RFC 6047). Pure: no I/O, no clock.
//!
//! Nothing clinical goes into the calendar: events land in personal and shared calendars that
//! sync to third parties, so the appointment's `reason` is never read here.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::appointment::{Appointment, Status};

/// The iTIP method (RFC 5546) of the calendar object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A plain download: the client just stores the event.
    Publish,
    /// An invitation or an update of one (emails).
    Request,
    /// Withdraws the event from the recipient's calendar (emails).
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }

    /// The MIME type to send the text with: iMIP requires the `method` parameter to match the
    /// METHOD property.
    pub fn content_type(self) -> &'static str {
        match self {
            Method::Publish => "text/calendar; charset=utf-8; method=PUBLISH",
            Method::Request => "text/calendar; charset=utf-8; method=REQUEST",
            Method::Cancel => "text/calendar; charset=utf-8; method=CANCEL",
        }
    }
}

/// What an event needs beyond the appointment row.
#[derive(Debug, Clone, Copy)]
pub struct EventInfo<'a> {
    pub appointment: &'a Appointment,
    pub doctor_name: &'a str,
    /// The doctor's zone: the local time in the description is the one the clinic works in.
    pub time_zone: Tz,
    /// The clinic's sender address, if known.
    pub organizer_email: Option<&'a str>,
    /// DTSTAMP: when this text was made (the caller's clock, so output is reproducible).
    pub stamp: DateTime<Utc>,
}

/// The VCALENDAR text with one VEVENT, CRLF line endings, lines folded at 75 octets.
pub fn render(info: &EventInfo<'_>, method: Method) -> String {
    let a = info.appointment;
    let mut out = Lines::default();
    out.prop("BEGIN", "VCALENDAR");
    out.prop("VERSION", "2.0");
    out.prop("PRODID", "-//Patient Portal//Appointments//EN");
    out.prop("CALSCALE", "GREGORIAN");
    out.prop("METHOD", method.as_str());
    out.prop("BEGIN", "VEVENT");
    // The same UID across reschedules with a growing SEQUENCE makes clients move the event
    // instead of adding a second one.
    out.prop("UID", &escape_text(&a.ical_uid));
    out.prop("SEQUENCE", &a.ical_sequence.max(0).to_string());
    out.prop("DTSTAMP", &utc(info.stamp));
    // UTC instants ("Z" form) need no VTIMEZONE block and cannot be misread across DST changes;
    // clients show them in the viewer's own zone.
    out.prop("DTSTART", &utc(a.start));
    out.prop("DTEND", &utc(a.end));
    out.prop("CREATED", &utc(a.created_at));
    out.prop("LAST-MODIFIED", &utc(a.updated_at));
    out.prop("SUMMARY", &escape_text(&format!("Appointment with {}", info.doctor_name)));
    let status = event_status(a.status, method);
    out.prop("DESCRIPTION", &escape_text(&description(info, status)));
    out.prop("STATUS", status.as_str());
    if let Some(email) = info.organizer_email {
        // A CAL-ADDRESS is a URI, not TEXT: no escaping, but control characters could start a
        // new property, so they are dropped.
        let email: String = email.chars().filter(|c| !c.is_control()).collect();
        out.prop("ORGANIZER", &format!("mailto:{email}"));
    }
    out.prop("END", "VEVENT");
    out.prop("END", "VCALENDAR");
    out.text
}

/// The VEVENT STATUS values we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventStatus {
    Tentative,
    Confirmed,
    Cancelled,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            EventStatus::Tentative => "TENTATIVE",
            EventStatus::Confirmed => "CONFIRMED",
            EventStatus::Cancelled => "CANCELLED",
        }
    }
}

fn event_status(status: Status, method: Method) -> EventStatus {
    // RFC 5546: a CANCEL carries STATUS:CANCELLED whatever the row says.
    if method == Method::Cancel {
        return EventStatus::Cancelled;
    }
    match status {
        Status::Pending => EventStatus::Tentative,
        Status::Booked | Status::CheckedIn | Status::Fulfilled => EventStatus::Confirmed,
        Status::Cancelled | Status::NoShow | Status::EnteredInError => EventStatus::Cancelled,
    }
}

/// Local start in the doctor's zone, zone named, and length: no clinical detail.
fn description(info: &EventInfo<'_>, status: EventStatus) -> String {
    let a = info.appointment;
    let local = a.start.with_timezone(&info.time_zone);
    let minutes = (a.end - a.start).num_minutes().max(0);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    let mut s = String::new();
    if status == EventStatus::Cancelled {
        s.push_str("Cancelled. ");
    }
    let _ = write!(s, "Starts {} ({}), {minutes} {unit}.", local.format("%Y-%m-%d %H:%M"), info.time_zone.name());
    s
}

/// DATE-TIME in UTC form, `YYYYMMDDTHHMMSSZ` (sub-seconds dropped).
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// TEXT escaping (RFC 5545 3.3.11). Line breaks of any style become `\n`; other control
/// characters (not allowed in TEXT) are dropped, so a value can never start a new property.
fn escape_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Content lines, folded as they are written.
#[derive(Default)]
struct Lines {
    text: String,
}

impl Lines {
    /// Maximum octets of a line, not counting its CRLF (RFC 5545 3.1).
    const MAX_OCTETS: usize = 75;

    /// Appends `NAME:value`, `value` already escaped as its type needs.
    fn prop(&mut self, name: &str, value: &str) {
        let mut used = 0;
        for c in name.chars().chain(std::iter::once(':')).chain(value.chars()) {
            let n = c.len_utf8();
            // Breaks fall between characters, so multibyte UTF-8 sequences are never split.
            if used + n > Self::MAX_OCTETS {
                self.text.push_str("\r\n ");
                used = 1;
            }
            self.text.push(c);
            used += n;
        }
        self.text.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::schedule::Interval;
    use crate::domain::values::LongText;
    use crate::domain::{AppointmentId, DoctorId, PatientId};

    const REASON: &str = "Recurring chest pain after chemotherapy";

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn appointment(start: DateTime<Utc>, minutes: i64, status: Status) -> Appointment {
        let end = start + chrono::Duration::minutes(minutes);
        Appointment {
            id: AppointmentId::new(1).unwrap(),
            patient_id: PatientId::new(2).unwrap(),
            doctor_id: DoctorId::new(3).unwrap(),
            appointment_type: "consult".into(),
            reason: Some(LongText::parse(REASON).unwrap()),
            start,
            end,
            blocked: Interval { start, end },
            status,
            hold_expires_at: None,
            cancel_reason: None,
            rescheduled_from: None,
            rescheduled_to: None,
            waitlist_entry_id: None,
            ical_uid: "3f1c2a9e-7b1d-4c55-9a0e-0d2f6b8e4a11@patient-portal".into(),
            ical_sequence: 2,
            created_at: at(2026, 5, 1, 8, 15) + chrono::Duration::microseconds(123_456),
            updated_at: at(2026, 5, 2, 10, 45),
            version: 3,
        }
    }

    fn info<'a>(a: &'a Appointment, doctor_name: &'a str) -> EventInfo<'a> {
        EventInfo {
            appointment: a,
            doctor_name,
            time_zone: chrono_tz::Europe::Berlin,
            organizer_email: None,
            stamp: at(2026, 5, 3, 12, 0),
        }
    }

    fn unfold(text: &str) -> String {
        text.replace("\r\n ", "")
    }

    /// The unfolded value of the first `name` property.
    fn value(text: &str, name: &str) -> Option<String> {
        let prefix = format!("{name}:");
        unfold(text).split("\r\n").find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    fn assert_well_formed(text: &str) {
        assert!(text.ends_with("\r\n"));
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "bare CR or LF in {text:?}");
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
        }
    }

    #[test]
    fn booked_appointment_renders_every_property() {
        let a = appointment(at(2026, 6, 10, 7, 0), 30, Status::Booked);
        let mut i = info(&a, "Dr. Anna Schmidt");
        i.organizer_email = Some("appointments@clinic.example");
        let text = render(&i, Method::Publish);
        assert_well_formed(&text);
        let expected = [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Patient Portal//Appointments//EN",
            "CALSCALE:GREGORIAN",
            "METHOD:PUBLISH",
            "BEGIN:VEVENT",
            "UID:3f1c2a9e-7b1d-4c55-9a0e-0d2f6b8e4a11@patient-portal",
            "SEQUENCE:2",
            "DTSTAMP:20260503T120000Z",
            "DTSTART:20260610T070000Z",
            "DTEND:20260610T073000Z",
            "CREATED:20260501T081500Z",
            "LAST-MODIFIED:20260502T104500Z",
            "SUMMARY:Appointment with Dr. Anna Schmidt",
            "DESCRIPTION:Starts 2026-06-10 09:00 (Europe/Berlin)\\, 30 minutes.",
            "STATUS:CONFIRMED",
            "ORGANIZER:mailto:appointments@clinic.example",
            "END:VEVENT",
            "END:VCALENDAR",
        ];
        let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn organizer_only_when_known() {
        let a = appointment(at(2026, 6, 10, 7, 0), 30, Status::Booked);
        let text = render(&info(&a, "Dr. Lee"), Method::Request);
        assert!(!text.contains("ORGANIZER"));
        assert_eq!(value(&text, "METHOD").as_deref(), Some("REQUEST"));
    }

    #[test]
    fn long_multibyte_names_fold_on_char_boundaries() {
        let a = appointment(at(2026, 6, 10, 7, 0), 30, Status::Booked);
        let name = "Prof. Dr. med. Zoë Øster-Müller-Łukasiewicz-Straßenbürger 医師 🩺 Ärztin für Allgemeinmedizin";
        let text = render(&info(&a, name), Method::Publish);
        assert_well_formed(&text);
        assert!(text.contains("\r\n "), "expected folding");
        // Every physical line is valid UTF-8 on its own: no character was split.
        assert!(text.split("\r\n").all(|l| std::str::from_utf8(l.as_bytes()).is_ok()));
        assert_eq!(value(&text, "SUMMARY"), Some(format!("Appointment with {name}")));
    }

    #[test]
    fn folding_fills_lines_to_exactly_75_octets() {
        let mut lines = Lines::default();
        lines.prop("X", &"a".repeat(200));
        let physical: Vec<&str> = lines.text.trim_end_matches("\r\n").split("\r\n").collect();
        assert_eq!(physical[0].len(), 75);
        assert_eq!(physical[1].len(), 75);
        assert!(physical[1].starts_with(' ') && !physical[1].starts_with("  "));
        assert_eq!(unfold(&lines.text), format!("X:{}\r\n", "a".repeat(200)));
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(escape_text(r"a\b;c,d"), r"a\\b\;c\,d");
        assert_eq!(escape_text("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
        assert_eq!(escape_text("bell\u{7}tab\t"), "belltab\t");

        let a = appointment(at(2026, 6, 10, 7, 0), 30, Status::Booked);
        let text = render(&info(&a, "Dr. Smith; Jones, \\ Co\r\nSTATUS:CANCELLED"), Method::Publish);
        assert_well_formed(&text);
        assert_eq!(
            value(&text, "SUMMARY").as_deref(),
            Some(r"Appointment with Dr. Smith\; Jones\, \\ Co\nSTATUS:CANCELLED")
        );
        assert_eq!(value(&text, "STATUS").as_deref(), Some("CONFIRMED"));
    }

    #[test]
    fn reason_never_appears() {
        for method in [Method::Publish, Method::Request, Method::Cancel] {
            for status in Status::ALL {
                let a = appointment(at(2026, 6, 10, 7, 0), 30, status);
                let mut i = info(&a, "Dr. Lee");
                i.organizer_email = Some("clinic@example.org");
                let text = unfold(&render(&i, method));
                assert!(!text.contains(REASON), "{method:?} {status:?}");
                assert!(!text.contains("chemotherapy"), "{method:?} {status:?}");
                assert!(!text.contains("consult"), "{method:?} {status:?}");
            }
        }
    }

    #[test]
    fn status_mapping() {
        let cases = [
            (Status::Pending, "TENTATIVE"),
            (Status::Booked, "CONFIRMED"),
            (Status::CheckedIn, "CONFIRMED"),
            (Status::Fulfilled, "CONFIRMED"),
            (Status::Cancelled, "CANCELLED"),
            (Status::NoShow, "CANCELLED"),
            (Status::EnteredInError, "CANCELLED"),
        ];
        for (status, expected) in cases {
            let a = appointment(at(2026, 6, 10, 7, 0), 30, status);
            for method in [Method::Publish, Method::Request] {
                assert_eq!(value(&render(&info(&a, "Dr. Lee"), method), "STATUS").as_deref(), Some(expected));
            }
            let cancel = render(&info(&a, "Dr. Lee"), Method::Cancel);
            assert_eq!(value(&cancel, "STATUS").as_deref(), Some("CANCELLED"), "{status:?}");
            assert_eq!(value(&cancel, "METHOD").as_deref(), Some("CANCEL"));
            assert!(value(&cancel, "DESCRIPTION").is_some_and(|d| d.starts_with("Cancelled. ")));
        }
    }

    #[test]
    fn local_time_follows_dst() {
        // 2026-03-29 is the EU spring-forward day: 07:00Z is 09:00 CEST, the day before 08:00Z
        // is 09:00 CET.
        for (start, day) in [(at(2026, 3, 29, 7, 0), "2026-03-29"), (at(2026, 3, 28, 8, 0), "2026-03-28")] {
            let a = appointment(start, 45, Status::Booked);
            let text = render(&info(&a, "Dr. Lee"), Method::Publish);
            assert_eq!(value(&text, "DESCRIPTION"), Some(format!(r"Starts {day} 09:00 (Europe/Berlin)\, 45 minutes.")));
            assert_eq!(value(&text, "DTSTART"), Some(utc(start)));
        }
    }

    #[test]
    fn content_type_matches_method() {
        for m in [Method::Publish, Method::Request, Method::Cancel] {
            assert!(m.content_type().ends_with(&format!("method={}", m.as_str())));
        }
    }
}
