//! What each notification says: plain text and HTML for one recipient, the time in the doctor's
//! zone with the zone named (a patient in another zone still reads the clinic's wall clock, and
//! knows it), and an iCalendar attachment (REQUEST on booking and reschedule, CANCEL on cancel,
//! the appointment's UID with its SEQUENCE). Subjects carry the date only: no doctor, no reason,
//! nothing clinical. The appointment's reason is never read here.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Attachment, Mailbox, Message};
use crate::domain::appointment::Appointment;
use crate::domain::ical::{self, EventInfo};

/// Why a patient is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Booked,
    /// `previous_start`: where the appointment was before.
    Rescheduled {
        previous_start: DateTime<Utc>,
    },
    Cancelled,
    /// A slot held for a waitlisted patient until the hold's expiry.
    WaitlistOffer,
    /// A reminder ahead of the start.
    Reminder,
}

/// Everything a message is rendered from, for one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub appointment: &'a Appointment,
    pub doctor_name: &'a str,
    pub time_zone: Tz,
    pub patient_name: &'a str,
    pub patient_email: &'a str,
    pub clinic_name: &'a str,
    /// Where the patient manages appointments (a link in the body), if configured.
    pub portal_url: Option<&'a str>,
    /// The `ORGANIZER` of the calendar attachment.
    pub sender: &'a str,
    /// When the message is made (DTSTAMP).
    pub now: DateTime<Utc>,
}

/// `Friday, 4 December 2026, 09:30 CET (Europe/Berlin)`.
pub fn local_time(t: DateTime<Utc>, zone: Tz) -> String {
    let local = t.with_timezone(&zone);
    format!("{} ({})", local.format("%A, %-d %B %Y, %H:%M %Z"), zone.name())
}

fn local_date(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%A, %-d %B").to_string()
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Subject, headline and the paragraphs after the time line.
fn wording(kind: Kind, ctx: &Context<'_>) -> (String, &'static str, Vec<String>) {
    let a = ctx.appointment;
    let date = local_date(a.start, ctx.time_zone);
    match kind {
        Kind::Booked => (
            format!("Appointment confirmed for {date}"),
            "Your appointment is booked.",
            vec!["The attached invitation adds it to your calendar.".into()],
        ),
        Kind::Rescheduled { previous_start } => (
            format!("Appointment moved to {date}"),
            "Your appointment has moved.",
            vec![
                format!("It was on {}.", local_time(previous_start, ctx.time_zone)),
                "The attached update moves it in your calendar.".into(),
            ],
        ),
        Kind::Cancelled => (
            format!("Appointment on {date} cancelled"),
            "Your appointment is cancelled.",
            vec![
                "The attached cancellation removes it from your calendar. You can book another time in the portal."
                    .into(),
            ],
        ),
        Kind::WaitlistOffer => {
            let until = a.hold_expires_at.map(|t| local_time(t, ctx.time_zone)).unwrap_or_else(|| "soon".into());
            (
                format!("An earlier appointment is free on {date}"),
                "A time you were waiting for has come free, and we are holding it for you.",
                vec![format!("Confirm it in the portal by {until}; after that it goes to the next person waiting.")],
            )
        }
        Kind::Reminder => (
            format!("Reminder: appointment on {date}"),
            "This is a reminder of your appointment.",
            vec!["If you cannot come, please cancel in the portal so someone else can have the time.".into()],
        ),
    }
}

/// The calendar attachment a kind carries, if any.
fn calendar(kind: Kind, ctx: &Context<'_>) -> Option<Attachment> {
    let method = match kind {
        Kind::Booked | Kind::Rescheduled { .. } => ical::Method::Request,
        Kind::Cancelled => ical::Method::Cancel,
        Kind::WaitlistOffer | Kind::Reminder => return None,
    };
    let info = EventInfo {
        appointment: ctx.appointment,
        doctor_name: ctx.doctor_name,
        time_zone: ctx.time_zone,
        organizer_email: Some(ctx.sender),
        stamp: ctx.now,
    };
    Some(Attachment {
        name: "appointment.ics".into(),
        content_type: method.content_type().into(),
        content: ical::render(&info, method).into_bytes(),
    })
}

pub fn render(kind: Kind, ctx: &Context<'_>) -> Message {
    let a = ctx.appointment;
    let (subject, headline, paragraphs) = wording(kind, ctx);
    let when = local_time(a.start, ctx.time_zone);
    let minutes = (a.end - a.start).num_minutes().max(0);
    let with = format!("with {}, {minutes} minutes", ctx.doctor_name);

    let mut text = format!("Dear {},\n\n{headline}\n\n  {when}\n  {with}\n\n", ctx.patient_name);
    for p in &paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
    }
    if let Some(url) = ctx.portal_url {
        text.push_str(&format!("Your appointments: {url}\n\n"));
    }
    text.push_str(&format!("{}\n", ctx.clinic_name));

    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><p>Dear {},</p><p>{}</p>\
         <p><strong>{}</strong><br>{}</p>",
        escape_html(ctx.patient_name),
        escape_html(headline),
        escape_html(&when),
        escape_html(&with)
    );
    for p in &paragraphs {
        html.push_str(&format!("<p>{}</p>", escape_html(p)));
    }
    if let Some(url) = ctx.portal_url {
        html.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape_html(url)));
    }
    html.push_str(&format!("<p>{}</p></body></html>", escape_html(ctx.clinic_name)));

    Message {
        to: Mailbox { address: ctx.patient_email.to_owned(), display_name: Some(ctx.patient_name.to_owned()) },
        subject,
        text,
        html,
        attachments: calendar(kind, ctx).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::appointment::Status;
    use crate::domain::schedule::Interval;
    use crate::domain::values::LongText;
    use crate::domain::{AppointmentId, DoctorId, PatientId};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn appointment(start: &str) -> Appointment {
        let start = at(start);
        Appointment {
            id: AppointmentId::new(7).unwrap(),
            patient_id: PatientId::new(1).unwrap(),
            doctor_id: DoctorId::new(2).unwrap(),
            appointment_type: "consult".into(),
            reason: Some(LongText::parse("Suspected melanoma on the left arm").unwrap()),
            start,
            end: start + Duration::minutes(30),
            blocked: Interval::new(start, start + Duration::minutes(30)).unwrap(),
            status: Status::Booked,
            hold_expires_at: None,
            cancel_reason: None,
            rescheduled_from: None,
            rescheduled_to: None,
            waitlist_entry_id: None,
            ical_uid: "appt-7@portal".into(),
            ical_sequence: 2,
            created_at: start - Duration::days(3),
            updated_at: start - Duration::days(3),
            version: 1,
        }
    }

    fn ctx<'a>(a: &'a Appointment, zone: Tz) -> Context<'a> {
        Context {
            appointment: a,
            doctor_name: "Dr. Amara Okafor",
            time_zone: zone,
            patient_name: "Ana <López>",
            patient_email: "ana.lopez@example.org",
            clinic_name: "Northside Clinic",
            portal_url: Some("https://portal.clinic.example/appointments"),
            sender: "DoNotReply@mail.clinic.example",
            now: at("2026-03-01T12:00:00Z"),
        }
    }

    #[test]
    fn times_are_the_doctors_wall_clock_with_the_zone_named_across_dst() {
        // 09:30 in Berlin is 08:30Z in winter and 07:30Z in summer (DST began 29 March 2026).
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(local_time(at("2026-03-27T08:30:00Z"), berlin), "Friday, 27 March 2026, 09:30 CET (Europe/Berlin)");
        assert_eq!(local_time(at("2026-03-30T07:30:00Z"), berlin), "Monday, 30 March 2026, 09:30 CEST (Europe/Berlin)");
        let ny = chrono_tz::America::New_York;
        // New York fell back on 1 November 2026.
        assert_eq!(local_time(at("2026-10-30T13:30:00Z"), ny), "Friday, 30 October 2026, 09:30 EDT (America/New_York)");
        assert_eq!(local_time(at("2026-11-02T14:30:00Z"), ny), "Monday, 2 November 2026, 09:30 EST (America/New_York)");
    }

    #[test]
    fn subjects_carry_no_clinical_detail_and_bodies_no_reason() {
        let a = appointment("2026-03-30T07:30:00Z");
        for kind in [
            Kind::Booked,
            Kind::Rescheduled { previous_start: at("2026-03-27T08:30:00Z") },
            Kind::Cancelled,
            Kind::WaitlistOffer,
            Kind::Reminder,
        ] {
            let m = render(kind, &ctx(&a, chrono_tz::Europe::Berlin));
            assert!(m.subject.contains("Monday, 30 March"), "{}", m.subject);
            for secret in ["Okafor", "melanoma", "consult", "López"] {
                assert!(!m.subject.contains(secret), "{kind:?}: {}", m.subject);
            }
            assert!(!m.text.contains("melanoma") && !m.html.contains("melanoma"));
            assert!(m.text.contains("Monday, 30 March 2026, 09:30 CEST (Europe/Berlin)"), "{}", m.text);
            assert!(m.html.contains("Dear Ana &lt;López&gt;,"), "names are escaped in HTML");
            assert_eq!(m.to.address, "ana.lopez@example.org");
        }
    }

    #[test]
    fn invitations_request_cancellations_cancel_with_the_same_uid() {
        let a = appointment("2026-03-30T07:30:00Z");
        let c = ctx(&a, chrono_tz::Europe::Berlin);
        let booked = render(Kind::Booked, &c);
        let ics = String::from_utf8(booked.attachments[0].content.clone()).unwrap();
        assert_eq!(booked.attachments[0].content_type, "text/calendar; charset=utf-8; method=REQUEST");
        assert!(ics.contains("METHOD:REQUEST") && ics.contains("UID:appt-7@portal") && ics.contains("SEQUENCE:2"));
        let cancelled = render(Kind::Cancelled, &c);
        let ics = String::from_utf8(cancelled.attachments[0].content.clone()).unwrap();
        assert!(ics.contains("METHOD:CANCEL") && ics.contains("STATUS:CANCELLED") && ics.contains("UID:appt-7@portal"));
        assert!(render(Kind::Reminder, &c).attachments.is_empty());
    }

    #[test]
    fn a_reschedule_names_both_times() {
        let a = appointment("2026-11-02T14:30:00Z");
        let m = render(
            Kind::Rescheduled { previous_start: at("2026-10-30T13:30:00Z") },
            &ctx(&a, chrono_tz::America::New_York),
        );
        assert!(m.text.contains("Monday, 2 November 2026, 09:30 EST (America/New_York)"));
        assert!(m.text.contains("It was on Friday, 30 October 2026, 09:30 EDT (America/New_York)."));
    }
}
