//! E-mail delivery: the mail lane's performer. Messages are multipart
//! (plain + HTML), marked `Auto-Submitted: auto-generated`, and carry a
//! deterministic Message-ID; only Gatekeeper's own text reaches a header.
//! Temporary failures are retried with backoff; a final failure comes back
//! as an input, so the owner is told in the control room.

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::EmailConfig;
use crate::engine::Effect;
use crate::executor::{PerformError, Performer};
use crate::store::FollowUp;
use crate::translate::Internal;

/// Tries per e-mail before the owner is told it failed.
const ATTEMPTS: u32 = 5;

#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    first_retry: Duration,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose())
            .map_err(|e| anyhow::anyhow!("email.smtp_url: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from = config.from.parse().map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
        Ok(Self { transport, from, first_retry: Duration::from_secs(2) })
    }

    /// Builds the message; fails only on an address that does not parse
    /// (which the command parser already refuses).
    pub fn build(
        from: &Mailbox,
        to: &str,
        subject: &str,
        text: &str,
        html: &str,
        message_id: &str,
    ) -> Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.to_owned()))
            .header(AutoSubmitted)
            .multipart(MultiPart::alternative_plain_html(text.to_owned(), html.to_owned()))
            .map_err(|e| e.to_string())
    }
}

fn failed(owner: &ruma::OwnedUserId, to: &str, reason: String) -> Vec<FollowUp> {
    let result = Internal::MailFailed { owner: owner.clone(), to: to.to_owned(), reason };
    vec![FollowUp { internal: true, raw: serde_json::to_vec(&result).expect("results serialize") }]
}

impl Performer for Mailer {
    async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
        let Effect::SendEmail { owner, to, subject, text, html, message_id } = effect else {
            return Err(PerformError::Permanent("not an e-mail".into()));
        };
        let message = match Self::build(&self.from, to, subject, text, html, message_id) {
            Ok(m) => m,
            Err(reason) => return Ok(failed(owner, to, reason)),
        };
        let mut delay = self.first_retry;
        for attempt in 1..=ATTEMPTS {
            match self.transport.send(message.clone()).await {
                Ok(_) => {
                    tracing::info!(%owner, message_id, "e-mail sent");
                    return Ok(Vec::new());
                }
                Err(e) if e.is_permanent() || attempt == ATTEMPTS => {
                    tracing::warn!(%owner, message_id, error = %e, "e-mail failed; telling the owner");
                    return Ok(failed(owner, to, format!("the mail server said: {e}")));
                }
                Err(e) => {
                    tracing::warn!(%owner, message_id, error = %e, retry_in = ?delay, "e-mail failed; will retry");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_multipart_auto_generated_and_headers_cannot_be_injected() {
        let from: Mailbox = "Gatekeeper <gk@example.org>".parse().unwrap();
        let m =
            Mailer::build(&from, "a@example.org", "Digest", "plain text", "<p>html</p>", "<gk.1@example.org>").unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        for header in
            ["Auto-Submitted: auto-generated", "Message-ID: <gk.1@example.org>", "Date: ", "To: a@example.org"]
        {
            assert!(raw.contains(header), "{header} missing in {raw}");
        }
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(Mailer::build(&from, "a@example.org\r\nBcc: evil@x.org", "s", "t", "h", "<i@x>").is_err());
        let injected = Mailer::build(&from, "a@example.org", "Digest\r\nBcc: evil@x.org", "t", "h", "<i@x>").unwrap();
        let raw = String::from_utf8(injected.formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc: evil@x.org"), "{raw}");
    }
}
