//! Every input limit of the API, in characters unless stated otherwise.

pub const EMAIL_MAX: usize = 255;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const PERSON_NAME_MAX: usize = 50;

pub const WORKSPACE_NAME_MAX: usize = 255;
pub const WORKSPACE_SLUG_MAX: usize = 100;
pub const WORKSPACE_DESCRIPTION_MAX: usize = 1000;

pub const ARTIFACT_NAME_MAX: usize = 255;
pub const ARTIFACT_DESCRIPTION_MAX: usize = 2000;
pub const ARTIFACT_TAGS_MAX: usize = 20;
pub const ARTIFACT_TAG_MAX: usize = 50;
pub const METADATA_KEYS_MAX: usize = 50;
pub const METADATA_KEY_MAX: usize = 100;
pub const METADATA_STRING_MAX: usize = 1000;
/// Largest magnitude of a number in metadata or settings: PostgreSQL keeps it as an exact
/// decimal, and one near `f64::MAX` would not read back as a JSON number.
pub const JSON_NUMBER_MAX: f64 = 1e300;

pub const PAGE_LIMIT_DEFAULT: i64 = 20;
pub const PAGE_LIMIT_MAX: i64 = 100;
/// The deepest `offset` a page may start at: skipping rows still reads them, so deeper pages
/// use the `cursor` of the page before (keyset paging), whose cost does not grow with depth.
pub const PAGE_OFFSET_MAX: i64 = 10_000;
/// A filtered listing counts its matches exactly up to this many; beyond it `total` is a lower
/// bound (`total_exact: false`), so a broad search does not count its whole workspace.
pub const FILTERED_TOTAL_EXACT_MAX: i64 = 1_000;
pub const SEARCH_QUERY_MAX: usize = 200;
pub const FILTER_TAGS_MAX: usize = 20;

/// Lifetime of an e-mail verification link, from when the e-mail is sent.
pub const VERIFICATION_TTL_HOURS: i64 = 48;
/// Lifetime of a password reset link, from when the e-mail is sent.
pub const PASSWORD_RESET_TTL_MINUTES: i64 = 30;
/// At most one password reset e-mail per account per window of this many minutes (aligned to
/// the clock), however many addresses ask: requests cannot flood a mailbox.
pub const PASSWORD_RESET_EMAIL_WINDOW_MINUTES: i64 = 10;
/// At most one invitation e-mail per workspace and address per window of this many minutes
/// (aligned to the clock): adding, removing and adding someone again cannot flood a mailbox.
pub const INVITATION_EMAIL_WINDOW_MINUTES: i64 = 24 * 60;
/// At most one "someone tried to register with your address" e-mail per account per window.
pub const ACCOUNT_EXISTS_EMAIL_WINDOW_MINUTES: i64 = 60;
