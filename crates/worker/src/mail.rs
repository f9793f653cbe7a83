//! E-mail: templates compiled into the binary (a text and an HTML part each), and delivery over
//! SMTP with lettre, reusing pooled connections.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::runner::JobError;

/// One SMTP command without an answer for this long fails the attempt (which is retried).
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Fills `{{name}}` placeholders; values are HTML-escaped in HTML templates (names and
/// workspace names are user input).
fn render(template: &str, vars: &[(&str, &str)], html: bool) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        let v = if html { escape_html(v) } else { v.to_string() };
        out = out.replace(&format!("{{{{{k}}}}}"), &v);
    }
    debug_assert!(!out.contains("{{"), "unfilled placeholder in {out}");
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn email(subject: String, text: &str, html: &str, vars: &[(&str, &str)]) -> Email {
    Email {
        subject,
        text: render(text, vars, false),
        html: render(html, vars, true),
    }
}

pub fn verification(name: &str, link: &str, hours: i64) -> Email {
    email(
        "Verify your e-mail address".into(),
        include_str!("../templates/verification.txt"),
        include_str!("../templates/verification.html"),
        &[
            ("name", name),
            ("link", link),
            ("hours", &hours.to_string()),
        ],
    )
}

pub fn password_reset(name: &str, link: &str, minutes: i64) -> Email {
    email(
        "Reset your password".into(),
        include_str!("../templates/password_reset.txt"),
        include_str!("../templates/password_reset.html"),
        &[
            ("name", name),
            ("link", link),
            ("minutes", &minutes.to_string()),
        ],
    )
}

/// The subject is fixed: the workspace's name is its owner's choice, so it stays in the body.
pub fn invitation(name: &str, inviter: &str, workspace: &str, role: &str, link: &str) -> Email {
    email(
        "You were added to a Ghostworks workspace".into(),
        include_str!("../templates/invitation.txt"),
        include_str!("../templates/invitation.html"),
        &[
            ("name", name),
            ("inviter", inviter),
            ("workspace", workspace),
            ("role", role),
            ("link", link),
        ],
    )
}

pub fn account_exists(name: &str, login: &str, reset: &str) -> Email {
    email(
        "Someone tried to register your address".into(),
        include_str!("../templates/account_exists.txt"),
        include_str!("../templates/account_exists.html"),
        &[("name", name), ("login", login), ("reset", reset)],
    )
}

#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("SMTP_URL: {0}")]
    Url(#[from] lettre::transport::smtp::Error),
    #[error("MAIL_FROM: {0}")]
    From(#[from] lettre::address::AddressError),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str, public_url: &str) -> Result<Self, MailConfigError> {
        Ok(Self {
            transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?
                .timeout(Some(SMTP_TIMEOUT))
                .build(),
            from: from.parse()?,
            public_url: public_url.trim_end_matches('/').to_string(),
        })
    }

    /// An absolute link into the web app.
    pub fn link(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.public_url)
    }

    /// Sends `email` to `to`. The Message-ID derives from the job, so should a crash after
    /// delivery make the job send again, the copies share one id that mail clients collapse.
    pub async fn send(&self, job: Uuid, to: &str, email: Email) -> Result<(), JobError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| JobError::Permanent(format!("recipient address: {e}")))?;
        let part = |ct: ContentType, body: String| {
            SinglePart::builder()
                .header(ct)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(body)
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .message_id(Some(format!("<{job}@{}>", self.from.email.domain())))
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, email.text))
                    .singlepart(part(ContentType::TEXT_HTML, email.html)),
            )
            .map_err(|e| JobError::Permanent(format!("building the message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                JobError::Permanent(format!("SMTP: {e}"))
            } else {
                JobError::Retry(format!("SMTP: {e}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder_and_escape_html() {
        let all = [
            verification("Ada", "https://app/x?t=1", 48),
            password_reset("Ada", "https://app/y?t=2", 30),
            invitation(
                "Ada",
                "Bob <b@x>",
                "R&D \"Lab\"",
                "admin",
                "https://app/w/1",
            ),
            account_exists("Ada", "https://app/login", "https://app/forgot-password"),
        ];
        for e in &all {
            assert!(!e.text.contains("{{") && !e.html.contains("{{"), "{e:?}");
        }
        assert!(all[0].text.contains("https://app/x?t=1") && all[0].text.contains("48 hours"));
        assert!(all[1].text.contains("30 minutes"));
        assert_eq!(all[2].subject, "You were added to a Ghostworks workspace");
        assert!(
            all[2].html.contains("R&amp;D &quot;Lab&quot;")
                && all[2].html.contains("Bob &lt;b@x&gt;")
        );
        assert!(all[2]
            .text
            .contains("Bob <b@x> added you to the workspace \"R&D \"Lab\"\""));
        assert!(all[3].text.contains("https://app/forgot-password"));
    }
}
