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
use crate::pipeline::executor::{PerformError, Performer};
use crate::pipeline::translate::Internal;
use crate::store::FollowUp;

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

#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        // Pre-encoded: a long URL must not be folded or encoded (folding
        // inside it would break it). Only printable ASCII reaches here.
        HeaderValue::dangerous_new_pre_encoded(Self::name(), self.0.clone(), self.0.clone())
    }
}

#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
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
        unsubscribe: Option<&str>,
    ) -> Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        let mut builder = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.to_owned()))
            .header(AutoSubmitted);
        if let Some(url) = unsubscribe.filter(|u| u.bytes().all(|b| b.is_ascii_graphic())) {
            // RFC 8058 one-click: a POST to the URL unsubscribes, no page.
            builder = builder.header(ListUnsubscribe(format!("<{url}>"))).header(ListUnsubscribePost);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text.to_owned(), html.to_owned()))
            .map_err(|e| e.to_string())
    }
}

/// A mail server's answer as it may be logged: mail servers quote the
/// addresses they refuse, and an owner's address stays out of the logs.
fn loggable(error: &impl std::fmt::Display) -> String {
    static ADDRESS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+").expect("a valid pattern")
    });
    ADDRESS.replace_all(&error.to_string(), "[address]").into_owned()
}

fn failed(owner: &ruma::OwnedUserId, to: &str, reason: String) -> Vec<FollowUp> {
    let result = Internal::MailFailed { owner: owner.clone(), to: to.to_owned(), reason };
    vec![FollowUp { internal: true, raw: serde_json::to_vec(&result).expect("results serialize") }]
}

impl Performer for Mailer {
    async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
        let Effect::SendEmail { owner, to, subject, text, html, message_id, unsubscribe } = effect else {
            return Err(PerformError::Permanent("not an e-mail".into()));
        };
        let message = match Self::build(&self.from, to, subject, text, html, message_id, unsubscribe.as_deref()) {
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
                    tracing::warn!(%owner, message_id, error = loggable(&e), "e-mail failed; telling the owner");
                    return Ok(failed(owner, to, format!("the mail server said: {e}")));
                }
                Err(e) => {
                    tracing::warn!(%owner, message_id, error = loggable(&e), retry_in = ?delay, "e-mail failed; will retry");
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
    fn mail_server_answers_are_logged_without_addresses() {
        let answer = "permanent error (550): 5.1.1 <alice.o+gk@mail.example.org>: Recipient address rejected";
        assert_eq!(loggable(&answer), "permanent error (550): 5.1.1 <[address]>: Recipient address rejected");
        // Matrix IDs are no addresses.
        assert_eq!(loggable(&"@alice:example.org"), "@alice:example.org");
    }

    #[tokio::test]
    async fn an_unreachable_mail_server_is_retried_then_reported_not_blocking_forever() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = EmailConfig {
            smtp_url: crate::secret::Secret::new(format!("smtp://127.0.0.1:{port}")),
            from: "Gatekeeper <gk@example.org>".into(),
            secret: crate::secret::Secret::new("s".repeat(40)),
            public_url: None,
            listen: None,
            link_lifetime: crate::config::HumanDuration(Duration::from_secs(60)),
        };
        let mut mailer = Mailer::new(&config).unwrap();
        mailer.first_retry = Duration::from_millis(5);
        let effect = Effect::SendEmail {
            owner: "@alice:example.org".try_into().unwrap(),
            to: "a@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>t</p>".into(),
            message_id: "<m@example.org>".into(),
            unsubscribe: None,
        };
        let follow_ups = mailer.perform(&effect).await.unwrap();
        assert_eq!(follow_ups.len(), 1);
        let report: Internal = serde_json::from_slice(&follow_ups[0].raw).unwrap();
        let Internal::MailFailed { to, reason, .. } = report else { panic!() };
        assert_eq!(to, "a@example.org");
        assert!(!reason.is_empty());
    }

    #[test]
    fn messages_are_multipart_auto_generated_and_headers_cannot_be_injected() {
        let from: Mailbox = "Gatekeeper <gk@example.org>".parse().unwrap();
        let m = Mailer::build(
            &from,
            "a@example.org",
            "Digest",
            "plain text",
            "<p>html</p>",
            "<gk.1@example.org>",
            Some("https://gk.example.org/action/ab.cd"),
        )
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        for header in [
            "Auto-Submitted: auto-generated",
            "Message-ID: <gk.1@example.org>",
            "Date: ",
            "To: a@example.org",
            "List-Unsubscribe: <https://gk.example.org/action/ab.cd>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        ] {
            assert!(raw.contains(header), "{header} missing in {raw}");
        }
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(Mailer::build(&from, "a@example.org\r\nBcc: evil@x.org", "s", "t", "h", "<i@x>", None).is_err());
        let injected =
            Mailer::build(&from, "a@example.org", "Digest\r\nBcc: evil@x.org", "t", "h", "<i@x>", Some("x\r\nBcc: y"))
                .unwrap();
        let raw = String::from_utf8(injected.formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc: evil@x.org"), "{raw}");
    }
}
