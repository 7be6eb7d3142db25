//! Urgent messages and `undo`: what the stranger is told, what the owner
//! hears, and what `undo` says it did.

use super::{Text, escape_html, format_duration, plain, plural, who};
use crate::{Subject, UndoKind};

/// The automatic reply, with the one way through for what cannot wait.
pub fn with_urgent(reply: Text, name: &str) -> Text {
    let sentence = format!(
        "If it truly cannot wait, send one message that starts with \"urgent:\" and {name} gets it at once — once."
    );
    Text {
        plain: format!("{}\n\n{sentence}", reply.plain),
        html: format!("{}<p>{}</p>", reply.html, escape_html(&sentence)),
    }
}

pub fn urgent_through(name: &str) -> Text {
    plain(&format!("Your urgent message has been passed on to {name} now."))
}

pub fn urgent_not_through(name: &str) -> Text {
    plain(&format!(
        "Your urgent message could not be passed on right now; it is kept, and {name} will read it with the others."
    ))
}

fn urgent_lines(sender: &ruma::UserId, name: Option<&str>, subject: &str, text: &str) -> (String, String) {
    let from = who(sender.as_str(), name);
    let subject = if subject.is_empty() { "(no subject)" } else { subject };
    let mut plain = format!("🔔 Urgent message from {from}\nSubject: {subject}");
    let mut html = format!(
        "<p>🔔 <strong>Urgent message</strong> from {}</p><p><strong>Subject:</strong> {}</p>",
        escape_html(&from),
        escape_html(subject)
    );
    if !text.is_empty() {
        plain.push_str(&format!("\n\n{text}"));
        html.push_str(&format!("<blockquote>{}</blockquote>", escape_html(text).replace('\n', "<br>")));
    }
    (plain, html)
}

/// The notice in the control room.
pub fn urgent_for_owner(sender: &ruma::UserId, name: Option<&str>, subject: &str, text: &str) -> Text {
    let (mut plain, mut html) = urgent_lines(sender, name, subject, text);
    let after = "Their chat stays held; `pending` lists them with the others.";
    plain.push_str(&format!("\n\n{after}"));
    html.push_str("<p>Their chat stays held; <code>pending</code> lists them with the others.</p>");
    Text { plain, html }
}

pub fn urgent_email(sender: &ruma::UserId, name: Option<&str>, subject: &str, text: &str) -> Text {
    let (plain, html) = urgent_lines(sender, name, subject, text);
    Text { plain, html }
}

/// Fixed: nothing a sender wrote reaches a mail header.
pub fn urgent_email_subject() -> String {
    "Urgent message from a new contact".into()
}

pub fn urgent_set(on: bool, per_sender_ms: u64, per_day: u32) -> Text {
    plain(&if on {
        format!(
            "Urgent messages are on: the automatic reply tells new contacts that a message starting with \
             \"urgent:\" reaches you at once (with sound, and by e-mail if you have a digest address) — \
             at most once per sender every {} and {per_day} a day.",
            format_duration(per_sender_ms)
        )
    } else {
        "Urgent messages are off: every message from a new contact waits for the digest.".to_owned()
    })
}

pub fn urgent_per_sender_set(ms: u64) -> Text {
    plain(&format!("At most one urgent message per sender every {}.", format_duration(ms)))
}

pub fn urgent_per_day_set(n: u32) -> Text {
    plain(&format!("At most {n} urgent messages a day."))
}

pub fn urgent_is_on_or_off() -> String {
    "Use `set urgent on` or `set urgent off`.".into()
}

pub fn urgent_per_sender_too_short() -> String {
    "The shortest period is 1d.".into()
}

pub fn urgent_per_day_bounds(max: u32) -> String {
    format!("Give a number from 1 to {max}.")
}

/// The setting as `settings` shows it.
pub fn urgent_setting(on: bool, per_sender_ms: u64, per_day: u32) -> String {
    if on {
        format!("urgent: on (once per sender every {}, {per_day} a day)", format_duration(per_sender_ms))
    } else {
        "urgent: off".into()
    }
}

pub fn nothing_to_undo() -> Text {
    plain("Nothing to undo: no decision of yours in the last 24 hours is left to take back.")
}

pub fn undo_hint() -> String {
    "`undo` takes this back within 24 hours.".into()
}

/// One subject's part of what `undo` did.
pub fn undone(kind: UndoKind, subject: &Subject, rooms: usize, messages: usize) -> String {
    let what = match kind {
        UndoKind::Allow => "Took back allowing",
        UndoKind::Deny => "Took back denying",
        UndoKind::Block => "Took back blocking",
    };
    let mut line = format!("{what} {subject}");
    if rooms > 0 {
        line.push_str(&format!("; holding {} again", plural(rooms, "room")));
    }
    if messages > 0 {
        line.push_str(&format!("; {} waiting again", plural(messages, "message")));
    }
    line.push('.');
    line
}

pub fn undone_more(n: usize) -> String {
    format!("{} can still be undone.", plural(n, "more decision"))
}

pub fn bulk_done(kind: UndoKind, senders: usize) -> String {
    let verb = match kind {
        UndoKind::Block => "Blocked",
        _ => "Denied",
    };
    format!("{verb} everyone pending: {}. `undo` takes it all back within 24 hours.", plural(senders, "sender"))
}

pub fn nobody_pending_for_all() -> Text {
    plain("Nobody is waiting: nothing to do.")
}
