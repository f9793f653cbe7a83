//! Every job kind, its limits, payload and constructor. Enqueuers (the API, the scheduler)
//! build jobs here; the worker's handlers run them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ghostworks_domain::limits::{
    ACCOUNT_EXISTS_EMAIL_WINDOW_MINUTES, INVITATION_EMAIL_WINDOW_MINUTES,
    PASSWORD_RESET_EMAIL_WINDOW_MINUTES,
};
use ghostworks_domain::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Job, Kind};

/// An e-mail attempt must end before PostgreSQL's idle-in-transaction timeout (60 s, see
/// `ghostworks_db::connect`): the job's transaction stays open while the SMTP server answers.
const EMAIL_TIMEOUT: Duration = Duration::from_secs(45);

/// Eight attempts over about ten minutes (5 s, 10 s, … 320 s): a relay that is down for a
/// few minutes loses nothing.
pub const VERIFICATION_EMAIL: Kind = Kind {
    name: "email.verification",
    max_attempts: 8,
    backoff: Duration::from_secs(5),
    timeout: EMAIL_TIMEOUT,
};

pub const PASSWORD_RESET_EMAIL: Kind = Kind {
    name: "email.password_reset",
    ..VERIFICATION_EMAIL
};

pub const INVITATION_EMAIL: Kind = Kind {
    name: "email.invitation",
    ..VERIFICATION_EMAIL
};

/// Tells an account's owner that someone tried to register their address again.
pub const ACCOUNT_EXISTS_EMAIL: Kind = Kind {
    name: "email.account_exists",
    ..VERIFICATION_EMAIL
};

/// The periodic global maintenance; it fans out one [`TENANT_MAINTENANCE`] job per workspace.
pub const MAINTENANCE: Kind = Kind {
    name: "maintenance",
    max_attempts: 3,
    backoff: Duration::from_secs(60),
    timeout: Duration::from_secs(600),
};

pub const TENANT_MAINTENANCE: Kind = Kind {
    name: "maintenance.tenant",
    ..MAINTENANCE
};

#[derive(Debug, Serialize, Deserialize)]
pub struct UserPayload {
    pub user_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InvitationPayload {
    pub user_id: Uuid,
    pub invited_by: Uuid,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MaintenancePayload {
    pub period: DateTime<Utc>,
}

/// The link that verifies the user's address (a fresh token, made when the e-mail is sent).
pub fn verification_email(user: Uuid) -> Job {
    Job::new(&VERIFICATION_EMAIL, UserPayload { user_id: user })
}

/// The number of the clock-aligned window of `minutes` that `now` falls in.
fn window(now: DateTime<Utc>, minutes: i64) -> i64 {
    now.timestamp().div_euclid(minutes * 60)
}

/// A password reset link, at most one per account per window of
/// [`PASSWORD_RESET_EMAIL_WINDOW_MINUTES`] (the idempotency key names the window).
pub fn password_reset_email(user: Uuid, now: DateTime<Utc>) -> Job {
    let window = window(now, PASSWORD_RESET_EMAIL_WINDOW_MINUTES);
    Job::new(&PASSWORD_RESET_EMAIL, UserPayload { user_id: user })
        .idempotency_key(format!("{user}:{window}"))
}

/// Tells `user` they were added to the workspace `tenant` by `invited_by`: at most once per
/// workspace and account per window of [`INVITATION_EMAIL_WINDOW_MINUTES`].
pub fn invitation_email(
    tenant: Uuid,
    user: Uuid,
    invited_by: Uuid,
    role: Role,
    now: DateTime<Utc>,
) -> Job {
    let window = window(now, INVITATION_EMAIL_WINDOW_MINUTES);
    Job::new(
        &INVITATION_EMAIL,
        InvitationPayload {
            user_id: user,
            invited_by,
            role,
        },
    )
    .tenant(tenant)
    .idempotency_key(format!("{tenant}:{user}:{window}"))
}

/// Tells `user` that their address was registered again (at most once per window of
/// [`ACCOUNT_EXISTS_EMAIL_WINDOW_MINUTES`]): the answer to that registration is the same as to
/// a new one, so only the owner of the address learns of it.
pub fn account_exists_email(user: Uuid, now: DateTime<Utc>) -> Job {
    let window = window(now, ACCOUNT_EXISTS_EMAIL_WINDOW_MINUTES);
    Job::new(&ACCOUNT_EXISTS_EMAIL, UserPayload { user_id: user })
        .idempotency_key(format!("{user}:{window}"))
}

pub fn maintenance(period: DateTime<Utc>) -> Job {
    Job::new(&MAINTENANCE, MaintenancePayload { period }).idempotency_key(period.to_rfc3339())
}

pub fn tenant_maintenance(tenant: Uuid, period: DateTime<Utc>) -> Job {
    Job::new(&TENANT_MAINTENANCE, MaintenancePayload { period })
        .tenant(tenant)
        .idempotency_key(format!("{tenant}:{}", period.to_rfc3339()))
}
