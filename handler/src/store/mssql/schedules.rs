//! `doctor_schedules` and `doctor_time_off`: the same operations and guarantees as the SQLite
//! store's.

use std::collections::HashMap;

use tiberius::Row;

use super::conn::MssqlConn;
use super::{rows, sql};
use crate::domain::doctor_schedule::{DoctorCalendar, NewTimeOff, Schedule, StoredSchedule, TimeOff, TimeOffReason};
use crate::domain::schedule::Interval;
use crate::domain::{DoctorId, SpecialtyId, TimeOffId, time};
use crate::store::{ExpectedVersion, StoreError, TIME_OFF_LIST_LIMIT};

/// Reads the nine schedule columns starting at `at` (the minute columns are INT).
fn schedule_from_row(r: &Row, at: usize) -> Result<StoredSchedule, StoreError> {
    let minutes = |i: usize| rows::int32(r, at + i).map(i64::from);
    let schedule = Schedule::from_stored(
        &rows::text(r, at + 1)?,
        &rows::text(r, at + 2)?,
        minutes(3)?,
        minutes(4)?,
        minutes(5)?,
        minutes(6)?,
    )
    .map_err(|e| StoreError::Other(e.0.into()))?;
    Ok(StoredSchedule {
        doctor_id: rows::id(r, at, DoctorId::new)?,
        schedule,
        updated_at: rows::instant(r, at + 7)?,
        version: rows::int(r, at + 8)?,
    })
}

fn time_off_from_row(r: &Row) -> Result<TimeOff, StoreError> {
    Ok(TimeOff {
        id: rows::id(r, 0, TimeOffId::new)?,
        doctor_id: rows::id(r, 1, DoctorId::new)?,
        starts_at: rows::instant(r, 2)?,
        ends_at: rows::instant(r, 3)?,
        reason: rows::parsed(r, 4, TimeOffReason::parse, "a time-off reason")?,
        created_at: rows::instant(r, 5)?,
    })
}

async fn require_doctor(c: &mut MssqlConn, id: DoctorId) -> Result<(), StoreError> {
    match c.row(sql::DOCTOR_EXISTS, &[&id.get()]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

pub async fn get(c: &mut MssqlConn, doctor: DoctorId) -> Result<StoredSchedule, StoreError> {
    let row = c.row(sql::SCHEDULE_GET, &[&doctor.get()]).await?.ok_or(StoreError::NotFound)?;
    schedule_from_row(&row, 0)
}

/// Runs inside the caller's transaction.
pub async fn put(
    c: &mut MssqlConn,
    doctor: DoctorId,
    schedule: &Schedule,
    expected: ExpectedVersion,
) -> Result<StoredSchedule, StoreError> {
    require_doctor(c, doctor).await?;
    let current = c.row(sql::SCHEDULE_GET_FOR_UPDATE, &[&doctor.get()]).await?;
    let current_version = current.as_ref().map(|r| rows::int(r, 8)).transpose()?;
    if current_version != expected {
        return Err(StoreError::StaleVersion);
    }
    let hours = schedule.weekly_hours_json();
    let types = schedule.types_json();
    let now = time::now().naive_utc();
    let changed: i64 = match expected {
        None => rows::scalar(
            c.row(
                sql::SCHEDULE_INSERT,
                &[
                    &doctor.get(),
                    &hours.as_str(),
                    &types.as_str(),
                    &schedule.buffer_before_minutes,
                    &schedule.buffer_after_minutes,
                    &schedule.min_notice_minutes,
                    &schedule.horizon_days,
                    &now,
                ],
            )
            .await
            // Another first put won the primary key: this one is stale.
            .map_err(|e| match e {
                StoreError::Duplicate { .. } => StoreError::StaleVersion,
                other => other,
            })?,
            "row count",
        )?,
        Some(version) => rows::scalar(
            c.row(
                sql::SCHEDULE_UPDATE,
                &[
                    &doctor.get(),
                    &hours.as_str(),
                    &types.as_str(),
                    &schedule.buffer_before_minutes,
                    &schedule.buffer_after_minutes,
                    &schedule.min_notice_minutes,
                    &schedule.horizon_days,
                    &now,
                    &version,
                ],
            )
            .await?,
            "row count",
        )?,
    };
    if changed != 1 {
        return Err(StoreError::StaleVersion);
    }
    get(c, doctor).await
}

/// Runs inside the caller's transaction.
pub async fn add_time_off(c: &mut MssqlConn, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError> {
    require_doctor(c, doctor).await?;
    let id: i64 = rows::scalar(
        c.row(
            sql::TIME_OFF_INSERT,
            &[
                &doctor.get(),
                &new.range.start.naive_utc(),
                &new.range.end.naive_utc(),
                &new.reason.as_str(),
                &time::now().naive_utc(),
            ],
        )
        .await?,
        "inserted id",
    )?;
    let row = c.row(sql::TIME_OFF_GET, &[&id]).await?.ok_or(StoreError::NotFound)?;
    time_off_from_row(&row)
}

/// Runs inside the caller's transaction.
pub async fn delete_time_off(c: &mut MssqlConn, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError> {
    let changed: i64 = rows::scalar(c.row(sql::TIME_OFF_DELETE, &[&id.get(), &doctor.get()]).await?, "row count")?;
    if changed == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

pub async fn list_time_off(c: &mut MssqlConn, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError> {
    let found = c
        .rows(
            sql::TIME_OFF_LIST,
            &[&doctor.get(), &window.end.naive_utc(), &window.start.naive_utc(), &TIME_OFF_LIST_LIMIT],
        )
        .await?;
    found.iter().map(time_off_from_row).collect()
}

/// Two queries whatever the number of doctors: schedules, then all their time off.
pub async fn specialty_calendars(
    c: &mut MssqlConn,
    specialty: SpecialtyId,
    window: Interval,
) -> Result<Vec<DoctorCalendar>, StoreError> {
    let found = c.rows(sql::SPECIALTY_SCHEDULES, &[&specialty.get()]).await?;
    let mut calendars = found
        .iter()
        .map(|r| {
            Ok(DoctorCalendar {
                doctor: super::doctors::from_row(r)?,
                schedule: schedule_from_row(r, 10)?,
                time_off: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let off = c
        .rows(sql::SPECIALTY_TIME_OFF, &[&specialty.get(), &window.end.naive_utc(), &window.start.naive_utc()])
        .await?;
    let index: HashMap<i64, usize> = calendars.iter().enumerate().map(|(i, cal)| (cal.doctor.id.get(), i)).collect();
    for r in &off {
        let doctor = rows::int(r, 0)?;
        let interval = Interval { start: rows::instant(r, 1)?, end: rows::instant(r, 2)? };
        if let Some(&i) = index.get(&doctor) {
            calendars[i].time_off.push(interval);
        }
    }
    Ok(calendars)
}
