//! `doctor_schedules` and `doctor_time_off`: the same operations and guarantees as the SQL
//! Server store's.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{map_error, rows};
use crate::domain::doctor_schedule::{DoctorCalendar, NewTimeOff, Schedule, StoredSchedule, TimeOff, TimeOffReason};
use crate::domain::schedule::Interval;
use crate::domain::{DoctorId, SpecialtyId, TimeOffId, time};
use crate::store::{ExpectedVersion, StoreError, TIME_OFF_LIST_LIMIT};

const SCHEDULE_COLUMNS: &str = "s.doctor_id, s.weekly_hours, s.appointment_types, s.buffer_before_minutes,
    s.buffer_after_minutes, s.min_notice_minutes, s.horizon_days, s.updated_at, s.version";

/// Reads the nine schedule columns starting at `at`.
fn schedule_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<StoredSchedule> {
    let hours: String = r.get(at + 1)?;
    let types: String = r.get(at + 2)?;
    let schedule =
        Schedule::from_stored(&hours, &types, r.get(at + 3)?, r.get(at + 4)?, r.get(at + 5)?, r.get(at + 6)?).map_err(
            |_| {
                rusqlite::Error::FromSqlConversionFailure(
                    at + 1,
                    rusqlite::types::Type::Text,
                    "stored value is not a valid schedule".into(),
                )
            },
        )?;
    Ok(StoredSchedule {
        doctor_id: rows::id(r, at, DoctorId::new)?,
        schedule,
        updated_at: rows::instant(r, at + 7)?,
        version: r.get(at + 8)?,
    })
}

fn time_off_from_row(r: &Row<'_>) -> rusqlite::Result<TimeOff> {
    Ok(TimeOff {
        id: rows::id(r, 0, TimeOffId::new)?,
        doctor_id: rows::id(r, 1, DoctorId::new)?,
        starts_at: rows::instant(r, 2)?,
        ends_at: rows::instant(r, 3)?,
        reason: rows::parsed(r, 4, TimeOffReason::parse, "a time-off reason")?,
        created_at: rows::instant(r, 5)?,
    })
}

fn require_doctor(c: &Connection, id: DoctorId) -> Result<(), StoreError> {
    c.query_row("SELECT 1 FROM doctors WHERE id = ?1", [id.get()], |_| Ok(()))
        .optional()
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn get(c: &Connection, doctor: DoctorId) -> Result<StoredSchedule, StoreError> {
    c.prepare_cached(&format!("SELECT {SCHEDULE_COLUMNS} FROM doctor_schedules s WHERE s.doctor_id = ?1"))
        .and_then(|mut s| s.query_row([doctor.get()], |r| schedule_from_row(r, 0)).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn put(
    c: &Connection,
    doctor: DoctorId,
    schedule: &Schedule,
    expected: ExpectedVersion,
) -> Result<StoredSchedule, StoreError> {
    require_doctor(c, doctor)?;
    let now = time::to_db_text(time::now());
    let values = params![
        doctor.get(),
        schedule.weekly_hours_json(),
        schedule.types_json(),
        schedule.buffer_before_minutes,
        schedule.buffer_after_minutes,
        schedule.min_notice_minutes,
        schedule.horizon_days,
        now,
        expected,
    ];
    let n = match expected {
        // The primary key makes a second "first" schedule fail; that is a stale version too.
        None => c
            .execute(
                "INSERT INTO doctor_schedules (doctor_id, weekly_hours, appointment_types, buffer_before_minutes,
                     buffer_after_minutes, min_notice_minutes, horizon_days, updated_at, version)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1 WHERE ?9 IS NULL",
                values,
            )
            .map_err(|e| match map_error(e) {
                StoreError::Duplicate { .. } => StoreError::StaleVersion,
                other => other,
            })?,
        Some(_) => c
            .execute(
                "UPDATE doctor_schedules SET weekly_hours = ?2, appointment_types = ?3, buffer_before_minutes = ?4,
                     buffer_after_minutes = ?5, min_notice_minutes = ?6, horizon_days = ?7, updated_at = ?8,
                     version = version + 1
                 WHERE doctor_id = ?1 AND version = ?9",
                values,
            )
            .map_err(map_error)?,
    };
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    get(c, doctor)
}

pub fn add_time_off(c: &Connection, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError> {
    require_doctor(c, doctor)?;
    let id: i64 = c
        .query_row(
            "INSERT INTO doctor_time_off (doctor_id, starts_at, ends_at, reason, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            params![
                doctor.get(),
                time::to_db_text(new.range.start),
                time::to_db_text(new.range.end),
                new.reason.as_str(),
                time::to_db_text(time::now())
            ],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    c.query_row(
        "SELECT id, doctor_id, starts_at, ends_at, reason, created_at FROM doctor_time_off WHERE id = ?1",
        [id],
        time_off_from_row,
    )
    .map_err(map_error)
}

pub fn delete_time_off(c: &Connection, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError> {
    let n = c
        .execute("DELETE FROM doctor_time_off WHERE id = ?1 AND doctor_id = ?2", params![id.get(), doctor.get()])
        .map_err(map_error)?;
    if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

pub fn list_time_off(c: &Connection, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError> {
    c.prepare_cached(
        "SELECT id, doctor_id, starts_at, ends_at, reason, created_at FROM doctor_time_off
         WHERE doctor_id = ?1 AND starts_at < ?2 AND ends_at > ?3
         ORDER BY starts_at, id LIMIT ?4",
    )
    .and_then(|mut s| {
        s.query_map(
            params![doctor.get(), time::to_db_text(window.end), time::to_db_text(window.start), TIME_OFF_LIST_LIMIT],
            time_off_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(map_error)
}

/// Two queries: the doctors with their schedules, then all their time off in the window.
pub fn specialty_calendars(
    c: &Connection,
    specialty: SpecialtyId,
    window: Interval,
) -> Result<Vec<DoctorCalendar>, StoreError> {
    let mut calendars: Vec<DoctorCalendar> = c
        .prepare_cached(&format!(
            "SELECT d.id, d.name, d.specialty_id, d.email, d.time_zone, d.bio, d.active, d.created_at,
                    d.updated_at, d.version, {SCHEDULE_COLUMNS}
             FROM doctors d JOIN doctor_schedules s ON s.doctor_id = d.id
             WHERE d.specialty_id = ?1 AND d.active = 1
             ORDER BY d.id"
        ))
        .and_then(|mut s| {
            s.query_map([specialty.get()], |r| {
                Ok(DoctorCalendar {
                    doctor: super::doctors::from_row(r)?,
                    schedule: schedule_from_row(r, 10)?,
                    time_off: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    let off: Vec<(i64, Interval)> = c
        .prepare_cached(
            "SELECT t.doctor_id, t.starts_at, t.ends_at
             FROM doctor_time_off t JOIN doctors d ON d.id = t.doctor_id
             WHERE d.specialty_id = ?1 AND d.active = 1 AND t.starts_at < ?2 AND t.ends_at > ?3
             ORDER BY t.doctor_id, t.starts_at",
        )
        .and_then(|mut s| {
            s.query_map(params![specialty.get(), time::to_db_text(window.end), time::to_db_text(window.start)], |r| {
                Ok((r.get(0)?, Interval { start: rows::instant(r, 1)?, end: rows::instant(r, 2)? }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    let index: HashMap<i64, usize> = calendars.iter().enumerate().map(|(i, cal)| (cal.doctor.id.get(), i)).collect();
    for (doctor, interval) in off {
        if let Some(&i) = index.get(&doctor) {
            calendars[i].time_off.push(interval);
        }
    }
    Ok(calendars)
}
