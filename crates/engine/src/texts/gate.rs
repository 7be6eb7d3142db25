//! What strangers are told (the etiquette reply) and what the owner hears
//! about it.

use super::{Text, escape_html, plain};

pub fn you_are_allowed(name: &str) -> Text {
    plain(&format!("Good news: {name} has added you to their contacts, so your messages now reach them directly."))
}

/// The default etiquette reply. `{name}` is the owner, `{schedule}` the
/// sentence that says when they read (see [`reading_time`]),
/// `{email_sentence}` becomes a sentence with what the owner chose to show
/// strangers (`set contact`), or nothing.
pub const DEFAULT_REPLY: &str = "Hi, and thank you for your message! It has been kept, and {name} will read it. \
{schedule} A chat message from someone new asks for attention right now in a way a short email doesn't, \
so {name} reads these in a summary instead. Could you reply with one line: who you are and what it is about? \
You may hear back after that.{email_sentence}\n\n\
(An automatic note from {name}'s Gatekeeper, sent once.)";

/// When the owner reads first messages, for the etiquette reply: "Anna
/// reads first messages from new contacts every morning at 08:00
/// (Europe/Berlin) — next in 14 hours." From the owner's digest time and
/// zone (`zone` as the owner set it; UTC when unset), counted from `now_ms`
/// to the next digest, across daylight-saving changes.
pub fn reading_time(name: &str, zone: Option<&str>, minute: u16, now_ms: u64) -> String {
    let tz = crate::schedule::zone(zone);
    let next = crate::schedule::next_due(now_ms, &tz, minute);
    let when = match minute / 60 {
        5..=11 => "every morning",
        12..=16 => "every afternoon",
        17..=21 => "every evening",
        _ => "every day",
    };
    let label = tz.iana_name().unwrap_or("UTC");
    let minutes = next.saturating_sub(now_ms).div_ceil(60_000).max(1);
    let wait = match minutes {
        1 => "1 minute".to_owned(),
        m if m < 60 => format!("{m} minutes"),
        m => match (m + 30) / 60 {
            1 => "1 hour".to_owned(),
            h => format!("{h} hours"),
        },
    };
    format!(
        "{name} reads first messages from new contacts {when} at {:02}:{:02} ({label}) — next in {wait}.",
        minute / 60,
        minute % 60
    )
}

/// The etiquette reply `owner` sends now: their template (or the default)
/// with their name, their reading time and their contact text.
pub fn etiquette_of(owner: &crate::OwnerState, encrypted: bool, now_ms: u64) -> Text {
    let name = owner.displayname.clone().unwrap_or_else(|| owner.user_id.localpart().to_owned());
    let minute = owner.digest_minute.unwrap_or(crate::schedule::DEFAULT_MINUTE);
    let schedule = reading_time(&name, owner.timezone.as_deref(), minute, now_ms);
    let reply = etiquette(owner.reply_template.as_deref(), &name, owner.contact.as_deref(), encrypted, &schedule);
    if owner.urgent { super::with_urgent(reply, &name) } else { reply }
}

/// Renders the etiquette reply from the owner's template (or the default).
/// Only the owner's own text reaches it, and it is escaped for HTML.
///
/// `{contact}` (and `{email}`, its name in older templates) is the contact
/// text, never the digest address: that one is private. `{schedule}` is
/// when the owner reads (see [`reading_time`]).
pub fn etiquette(template: Option<&str>, name: &str, contact: Option<&str>, encrypted: bool, schedule: &str) -> Text {
    let email_sentence =
        contact.map(|c| format!(" If it can't wait, you can also reach {name} at {c}.")).unwrap_or_default();
    let mut plain = template
        .unwrap_or(DEFAULT_REPLY)
        .replace("{email_sentence}", &email_sentence)
        .replace("{schedule}", schedule)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn the_reply_says_when_the_owner_reads_in_their_zone_across_daylight_saving() {
        // Berlin, the evening before summer time begins: 08:00 CEST on
        // 29 March is 06:00 UTC, 10 hours after 20:00 UTC (not 11).
        assert_eq!(
            reading_time("Anna", Some("Europe/Berlin"), 480, ms("2026-03-28T20:00:00Z")),
            "Anna reads first messages from new contacts every morning at 08:00 (Europe/Berlin) — next in 10 hours."
        );
        // The same evening in winter time: 11 hours.
        assert!(
            reading_time("Anna", Some("Europe/Berlin"), 480, ms("2026-03-21T20:00:00Z")).ends_with("next in 11 hours.")
        );
        // New York falls back on 1 November: from 18:30 EDT (22:30 UTC) on
        // 31 October to 18:30 EST (23:30 UTC) the next day is 25 hours.
        assert_eq!(
            reading_time("Bo", Some("America/New_York"), 18 * 60 + 30, ms("2026-10-31T22:30:00Z")),
            "Bo reads first messages from new contacts every evening at 18:30 (America/New_York) — next in 25 hours."
        );
        // Sydney's summer time ends on 5 April: from 15:00 AEDT (04:00 UTC)
        // to 13:00 AEST (03:00 UTC) the next day is 23 hours, not 22.
        assert_eq!(
            reading_time("Cy", Some("Australia/Sydney"), 13 * 60, ms("2026-04-04T04:00:00Z")),
            "Cy reads first messages from new contacts every afternoon at 13:00 (Australia/Sydney) — next in 23 hours."
        );
        // From 02:00 AEDT on the day itself: 12 hours.
        assert!(
            reading_time("Cy", Some("Australia/Sydney"), 13 * 60, ms("2026-04-04T15:00:00Z"))
                .ends_with("next in 12 hours.")
        );
        // Minutes when it is close; UTC when no zone is set.
        assert_eq!(
            reading_time("Di", None, 0, ms("2026-11-25T23:35:00Z")),
            "Di reads first messages from new contacts every day at 00:00 (UTC) — next in 25 minutes."
        );
    }

    #[test]
    fn the_default_reply_asks_for_one_line_and_says_when() {
        let owner = crate::OwnerState {
            displayname: Some("Anna".into()),
            timezone: Some("Europe/Berlin".into()),
            ..crate::OwnerState::new("@anna:example.org".try_into().unwrap(), "!c:example.org".try_into().unwrap(), 0)
        };
        let t = etiquette_of(&owner, false, ms("2026-11-24T17:00:00Z"));
        assert!(t.plain.contains("who you are and what it is about"), "{}", t.plain);
        assert!(t.plain.contains("every morning at 08:00 (Europe/Berlin) — next in 14 hours."), "{}", t.plain);
        assert!(t.plain.chars().count() < 600, "{}", t.plain.chars().count());
        // A template of the owner's own may place the sentence too.
        let own = crate::OwnerState { reply_template: Some("Away. {schedule}".into()), ..owner };
        assert_eq!(
            etiquette_of(&own, false, ms("2026-11-24T17:00:00Z")).plain,
            "Away. Anna reads first messages from new contacts every morning at 08:00 (Europe/Berlin) — next in 14 hours."
        );
    }
}
