//! E-mail: the verification message, the digest's subject and its
//! one-click links, and what the control room hears about mail.

use super::{Text, escape_html, format_duration, plain};
use crate::links::LinkAction;

pub fn verification_email(code: &str) -> Text {
    Text {
        plain: format!(
            "Your Gatekeeper verification code is {code}.\n\nType `verify {code}` in your Gatekeeper chat on Matrix \
             within an hour, and your daily digests will also be e-mailed here.\n\nIf you did not ask for this, \
             ignore this message: nothing will be sent to this address."
        ),
        html: email_document(&format!(
            "<p>Your Gatekeeper verification code is <b>{code}</b>.</p><p>Type <code>verify {code}</code> in your \
             Gatekeeper chat on Matrix within an hour, and your daily digests will also be e-mailed here.</p>\
             <p>If you did not ask for this, ignore this message: nothing will be sent to this address.</p>"
        )),
    }
}

/// A whole, plain HTML document around a body of Gatekeeper's own markup.
pub fn email_document(body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gatekeeper</title></head>\
         <body style=\"font-family: sans-serif; max-width: 40em; line-height: 1.5\">{body}</body></html>"
    )
}

pub fn verification_subject() -> String {
    "Your Gatekeeper verification code".into()
}

pub fn digest_email_subject(senders: usize) -> String {
    if senders == 1 {
        "Gatekeeper digest: 1 person wrote to you".to_owned()
    } else {
        format!("Gatekeeper digest: {senders} people wrote to you")
    }
}

/// What a one-click link does, on its button and in the e-mail.
pub fn link_label(action: LinkAction) -> &'static str {
    match action {
        LinkAction::Allow => "Allow",
        LinkAction::Allow30 => "Allow 30 days",
        LinkAction::Deny => "Deny",
        LinkAction::Block => "Block",
        LinkAction::BlockServer => "Block server",
        LinkAction::Unsubscribe => "Unsubscribe",
        LinkAction::Undo => "Undo",
    }
}

/// The HTML below an e-mailed digest: for each sender (as numbered in the
/// digest) a link per decision, then the unsubscribe link.
pub fn one_click_links(senders: &[(String, Vec<(LinkAction, String)>)], lifetime_ms: u64, stop_url: &str) -> String {
    let mut html = String::from("<h3>Decide with one click</h3><ol>");
    for (subject, links) in senders {
        let anchors: Vec<String> = links
            .iter()
            .map(|(action, url)| format!("<a href=\"{}\">{}</a>", escape_html(url), link_label(*action)))
            .collect();
        html.push_str(&format!("<li><code>{}</code>: {}</li>", escape_html(subject), anchors.join(" · ")));
    }
    html.push_str(&format!(
        "</ol><p><small>Links work once and for {}. <a href=\"{}\">Stop these e-mails</a>.</small></p>",
        format_duration(lifetime_ms),
        escape_html(stop_url)
    ));
    html
}

/// Mail to the owner's address failed for good.
pub fn mail_failed(to: &str, reason: &str) -> Text {
    plain(&format!(
        "I could not e-mail {to}: {reason}. Your digests still arrive here; I will try again with the next one."
    ))
}

/// The owner used the unsubscribe link of an e-mail.
pub fn unsubscribed_by_email() -> Text {
    plain("From your e-mail: digests are no longer e-mailed. Set an address again with `set email`.")
}

/// A command's answer, when the decision came from a link in an e-mail.
/// Only the plain text says so (the HTML is the command's, as it always
/// was).
pub fn from_your_email(answer: &str) -> String {
    format!("From your e-mail: {answer}")
}
