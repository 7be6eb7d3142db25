//! What strangers are told (the etiquette reply) and what the owner hears
//! about it.

use super::{Text, escape_html, plain};

pub fn you_are_allowed(name: &str) -> Text {
    plain(&format!("Good news: {name} has added you to their contacts, so your messages now reach them directly."))
}

/// The default etiquette reply. `{name}` is the owner, `{email_sentence}`
/// becomes a sentence with what the owner chose to show strangers
/// (`set contact`), or nothing.
pub const DEFAULT_REPLY: &str = "Hi, and thank you for your message! It has been kept, and {name} will read it. \
{name} reads first messages from new contacts once a day, in a summary, rather than as instant messages: \
a chat message asks for attention right now in a way a short email doesn't. You may hear back after that.{email_sentence}\n\n\
(An automatic note from {name}'s Gatekeeper, sent once.)";

/// Renders the etiquette reply from the owner's template (or the default).
/// Only the owner's own text reaches it, and it is escaped for HTML.
///
/// `{contact}` (and `{email}`, its name in older templates) is the contact
/// text, never the digest address: that one is private.
pub fn etiquette(template: Option<&str>, name: &str, contact: Option<&str>, encrypted: bool) -> Text {
    let email_sentence =
        contact.map(|c| format!(" If it can't wait, you can also reach {name} at {c}.")).unwrap_or_default();
    let mut plain = template
        .unwrap_or(DEFAULT_REPLY)
        .replace("{email_sentence}", &email_sentence)
        .replace("{contact}", contact.unwrap_or(""))
        .replace("{email}", contact.unwrap_or(""))
        .replace("{name}", name);
    if encrypted {
        plain.push_str(
            "\n\n(Your message was end-to-end encrypted, so this note could not include it; that you wrote is noted.)",
        );
    }
    let html = plain
        .split("\n\n")
        .map(|para| format!("<p>{}</p>", escape_html(para).replace('\n', "<br>")))
        .collect::<String>();
    Text { plain, html }
}

pub fn reply_preview(rendered: &Text, custom: bool, interval: &str) -> Text {
    let which = if custom { "your own text" } else { "the default" };
    Text {
        plain: format!(
            "New contacts get this note ({which}), at most once every {interval} each:\n\n{}\n\nChange it with `reply set <text>`, or go back with `reply reset`.",
            rendered.plain
        ),
        html: format!(
            "<p>New contacts get this note ({which}), at most once every {interval} each:</p><blockquote>{}</blockquote>\
             <p>Change it with <code>reply set &lt;text&gt;</code>, or go back with <code>reply reset</code>.</p>",
            rendered.html
        ),
    }
}

/// The owner wrote in a held chat, which allowed its inviter.
pub fn answered_in_held_chat(inviter: &ruma::UserId) -> Text {
    plain(&format!(
        "You answered {inviter} in a held chat, so they can reach you directly now (`block {inviter}` undoes it)."
    ))
}

/// Ends a message trimmed when it was kept: the digest and `show` quote it
/// with this, so the owner knows there was more.
pub fn trimmed_on_capture(bytes: usize) -> String {
    format!(" … [trimmed: the message was {bytes} bytes long]")
}

/// What a digest or `pending` says of invitations and messages counted but
/// not kept for one sender (empty when there are none).
pub fn not_kept(invites: u32, messages: u32) -> String {
    let mut parts = Vec::new();
    if invites > 0 {
        parts.push(format!("+{invites} more {} not held", if invites == 1 { "invitation" } else { "invitations" }));
    }
    if messages > 0 {
        parts.push(format!("and {messages} more {} not kept", if messages == 1 { "message" } else { "messages" }));
    }
    parts.join(", ")
}

/// Messages counted on the owner, not kept: their senders had nothing else
/// kept when the owner's bound was reached.
pub fn messages_not_kept(n: u32, kept: u64) -> String {
    format!(
        "{n} more {} came from people with nothing else kept while {kept} messages were kept (the most Gatekeeper keeps); they were counted, not kept.",
        if n == 1 { "message" } else { "messages" }
    )
}

/// Invitations left silent and unjoined because the owner had the most
/// held rooms allowed.
pub fn invites_not_held(n: u32, held: u64) -> String {
    format!(
        "{n} more {} came while {held} held rooms were waiting (the most Gatekeeper holds); they are left silent and unjoined in your invitations. Decide on some waiting people to make room.",
        if n == 1 { "invitation" } else { "invitations" }
    )
}
