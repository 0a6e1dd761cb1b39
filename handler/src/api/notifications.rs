//! What the ledger sent: an appointment's notifications (status of each message), a staff
//! re-send of one that failed, and a staff test email (also at the original article's
//! `POST /api/test/email`). Bodies and addresses never appear in answers or logs.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::extract::{ValidJson, path_id};
use super::input;
use crate::auth::access::{Caller, patient_scope};
use crate::domain::audit::{Action, Outcome};
use crate::domain::values::EmailAddress;
use crate::domain::{AppointmentId, FieldCheck, NotificationId};
use crate::error::ApiError;
use crate::notify::{Mailbox, Message, SendError};
use crate::startup::AppState;
use crate::store::StoreError;

/// `GET /api/appointments/{id}/notifications`: for whoever may see the appointment.
pub async fn list(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, AppointmentId::parse)?;
    let found = state.store.list_notifications(id, patient_scope(&caller)?).await;
    let outcome = input::audit_outcome(&found);
    let patient = found.as_ref().ok().and_then(|rows| rows.first()).map(|n| n.patient_id);
    let entry = caller.audit(Action::List, "notification", Some(id.to_string()), patient, outcome);
    state.store.append_audit(vec![entry]).await?;
    Ok(HttpResponse::Ok().json(input::Items { items: found? }))
}

/// `POST /api/notifications/{id}/resend` (staff): a failed message goes out again, now.
pub async fn resend(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, NotificationId::parse)?;
    let entry = caller.audit(Action::Update, "notification", Some(id.to_string()), None, Outcome::Success);
    let resent = match state.store.resend_notification(id, state.clock.now(), entry).await {
        Err(StoreError::Refused(_)) => {
            return Err(ApiError::Conflict {
                message: "only a failed notification can be sent again".into(),
                field: Some("status".into()),
            });
        }
        other => other?,
    };
    crate::notify::sweep::kick(state.clone());
    Ok(HttpResponse::Accepted().json(resent))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestEmail {
    /// Where the test message goes.
    #[schemars(email, length(max = 254))]
    to: String,
}

/// What took a test message.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestEmailSent {
    pub sent: bool,
    /// `acs` (Communication Services) or `outbox`.
    pub transport: &'static str,
    /// The message's operation id (the outbox file name, or the Communication Services operation).
    pub operation_id: uuid::Uuid,
}

/// `POST /api/test/email` `{to}` (staff): one test message through the configured transport,
/// to check a deployment's email settings. Answers which transport took it.
pub async fn test_email(
    state: web::Data<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<TestEmail>,
) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let to = check.check("to", EmailAddress::parse(&body.to));
    let to = input::finish(check, || to)?;
    let message = Message {
        to: Mailbox { address: to.as_str().to_owned(), display_name: None },
        subject: format!("Test message from {}", state.notify.clinic_name),
        text: format!(
            "This is a test message from {}. If you can read it, email is set up.\n",
            state.notify.clinic_name
        ),
        html: "<p>This is a test message. If you can read it, email is set up.</p>".into(),
        attachments: Vec::new(),
    };
    let operation = uuid::Uuid::new_v4();
    let entry = caller.audit(Action::Create, "test_email", Some(operation.to_string()), None, Outcome::Success);
    state.store.append_audit(vec![entry]).await?;
    match state.mailer.send(operation, &message).await {
        Ok(()) => Ok(HttpResponse::Ok().json(TestEmailSent {
            sent: true,
            transport: state.mailer.kind(),
            operation_id: operation,
        })),
        Err(SendError::Refused { code }) => {
            Err(ApiError::bad_field("to", format!("the email service refused the message ({code})")))
        }
        Err(e @ SendError::Retry { .. }) => Err(ApiError::Unavailable(Box::new(e))),
    }
}
