//! The digest: strangers' held messages as one calm, email-like summary.
//! Numbered per sender so the owner can answer `allow 2`; every piece of
//! sender-controlled text is escaped; split into several notices rather
//! than ever exceeding Matrix's event size, and never silently cut.

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{Text, UNREADABLE, escape_html, plain};
use crate::schedule::{self, local_time};
use crate::state::{Deferred, HeldRoom, OwnerOverview, OwnerState};
use crate::subject::Subject;

/// Longest message quoted in full; longer ones are trimmed with a note.
pub const MAX_MESSAGE_CHARS: usize = 1200;
/// Messages quoted per sender; the rest are counted, for `show`.
pub const MAX_MESSAGES_PER_SENDER: usize = 25;
/// Plain + HTML bytes per notice. Matrix events are limited to 64 KiB of
/// JSON; escaping and the envelope need the rest.
pub const PART_BUDGET: usize = 40_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub parts: Vec<Text>,
    /// The numbering used, for `allow 2` afterwards.
    pub list: Vec<Subject>,
    pub messages: Vec<OwnedEventId>,
    pub invites: Vec<OwnedRoomId>,
}

struct Section {
    sender: OwnedUserId,
    name: Option<String>,
    messages: Vec<Deferred>,
    invites: Vec<HeldRoom>,
}

fn trimmed(body: &str) -> (String, bool) {
    if body.chars().count() <= MAX_MESSAGE_CHARS {
        (body.to_owned(), false)
    } else {
        (body.chars().take(MAX_MESSAGE_CHARS).collect(), true)
    }
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!(", {:.1} MB", b as f64 / (1u64 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!(", {} KB", b >> 10),
        Some(b) => format!(", {b} bytes"),
        None => String::new(),
    }
}

/// Everything not yet digested, or `None` when there is nothing new.
pub fn render(owner: &OwnerState, overview: &OwnerOverview) -> Option<Digest> {
    let tz = schedule::zone(owner.timezone.as_deref());
    let mut by_sender: BTreeMap<OwnedUserId, Section> = BTreeMap::new();
    let section = |map: &mut BTreeMap<OwnedUserId, Section>, who: &OwnedUserId| {
        map.entry(who.clone()).or_insert_with(|| Section {
            sender: who.clone(),
            name: None,
            messages: vec![],
            invites: vec![],
        });
    };
    for m in overview.deferred.iter().filter(|m| !m.digested) {
        section(&mut by_sender, &m.sender);
        by_sender.get_mut(&m.sender).expect("just inserted").messages.push(m.clone());
    }
    for h in overview.held.values().filter(|h| !h.is_dm && !h.digested) {
        section(&mut by_sender, &h.inviter);
        by_sender.get_mut(&h.inviter).expect("just inserted").invites.push(h.clone());
    }
    if by_sender.is_empty() {
        return None;
    }
    // The name a sender gave when inviting the owner, from any held room.
    for h in overview.held.values() {
        if let Some(s) = by_sender.get_mut(&h.inviter)
            && s.name.is_none()
        {
            s.name = h.inviter_name.clone();
        }
    }
    let mut sections: Vec<Section> = by_sender.into_values().collect();
    for s in &mut sections {
        s.messages.sort_by_key(|m| m.ts_ms);
    }
    let first_seen = |s: &Section| {
        s.messages.iter().map(|m| m.ts_ms).chain(s.invites.iter().map(|h| h.invited_at_ms)).min().unwrap_or(0)
    };
    sections.sort_by_key(|s| (first_seen(s), s.sender.clone()));

    let people = if sections.len() == 1 { "1 person".to_owned() } else { format!("{} people", sections.len()) };
    let since = match owner.digest_last_sent_ms {
        Some(t) => format!("since {}", local_time(t, &tz)),
        None => format!("since {}", local_time(owner.since_ms, &tz)),
    };
    let header = Text {
        plain: format!("{people} wrote to you {since}.\n"),
        html: format!("<h3>{} wrote to you {}</h3>", escape_html(&people), escape_html(&since)),
    };
    let footer = Text {
        plain: "\nAnswer with `allow 1`, `allow 1 for 30d`, `deny 1`, `block 1` or `show 1` (the numbers above)."
            .into(),
        html: "<p>Answer with <code>allow 1</code>, <code>allow 1 for 30d</code>, <code>deny 1</code>, \
               <code>block 1</code> or <code>show 1</code> (the numbers above).</p>"
            .into(),
    };

    let mut rendered = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        rendered.push(render_section(i + 1, s, &tz));
    }
    let parts = pack(header, rendered, footer);
    Some(Digest {
        parts,
        list: sections.iter().map(|s| Subject::User(s.sender.clone())).collect(),
        messages: sections.iter().flat_map(|s| s.messages.iter().map(|m| m.event_id.clone())).collect(),
        invites: overview.held.iter().filter(|(_, h)| !h.is_dm && !h.digested).map(|(r, _)| r.clone()).collect(),
    })
}

fn render_section(n: usize, s: &Section, tz: &jiff::tz::TimeZone) -> Text {
    let shown = super::who(s.sender.as_str(), s.name.as_deref());
    let who = escape_html(&shown);
    let count = match s.messages.len() {
        0 => String::new(),
        1 => "1 message".to_owned(),
        k => format!("{k} messages"),
    };
    let when = match (s.messages.first(), s.messages.last()) {
        (Some(a), Some(b)) if local_time(a.ts_ms, tz) != local_time(b.ts_ms, tz) => {
            format!("{} – {}", local_time(a.ts_ms, tz), local_time(b.ts_ms, tz))
        }
        (Some(a), _) => local_time(a.ts_ms, tz),
        _ => String::new(),
    };
    let summary =
        [count.as_str(), when.as_str()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(", ");
    let mut plain =
        format!("\n{n}. {shown}{}\n", if summary.is_empty() { String::new() } else { format!(" — {summary}") });
    let mut html = format!(
        "<p><b>{n}.</b> <code>{who}</code>{}</p>",
        if summary.is_empty() { String::new() } else { format!(" — {}", escape_html(&summary)) }
    );
    for h in &s.invites {
        let name = h.name.clone().unwrap_or_else(|| "a room".into());
        let members = h.members.map(|m| format!(" ({m} members)")).unwrap_or_default();
        let reason = h.reason.as_ref().map(|r| format!(": “{r}”")).unwrap_or_default();
        let line = format!("invited you to {name}{members}{reason} — {}", local_time(h.invited_at_ms, tz));
        plain.push_str(&format!("   {line}\n"));
        html.push_str(&format!("<p><i>{}</i></p>", escape_html(&line)));
    }
    if !s.messages.is_empty() {
        html.push_str("<blockquote>");
    }
    for m in s.messages.iter().take(MAX_MESSAGES_PER_SENDER) {
        let stamp = local_time(m.ts_ms, tz);
        let edited = if m.edited { " (edited)" } else { "" };
        let (text, cut) = if m.encrypted {
            (UNREADABLE.to_owned(), false)
        } else if let Some(media) = &m.media {
            let kind = media.mimetype.clone().unwrap_or_else(|| "file".into());
            (format!("[{kind}: {}{} — {}]", media.name, size(media.size), media.url), false)
        } else {
            trimmed(&m.body)
        };
        let note = if cut { format!(" … (trimmed; `show {n}` for all of it)") } else { String::new() };
        plain.push_str(&format!("   [{stamp}{edited}] {}{note}\n", text.replace('\n', "\n   ")));
        html.push_str(&format!(
            "<p><small>{}{edited}</small><br>{}{}</p>",
            escape_html(&stamp),
            escape_html(&text).replace('\n', "<br>"),
            escape_html(&note)
        ));
    }
    if !s.messages.is_empty() {
        html.push_str("</blockquote>");
    }
    if s.messages.len() > MAX_MESSAGES_PER_SENDER {
        let more = s.messages.len() - MAX_MESSAGES_PER_SENDER;
        let line = format!("… and {more} more; `show {n}` lists them all.");
        plain.push_str(&format!("   {line}\n"));
        html.push_str(&format!("<p>{}</p>", escape_html(&line)));
    }
    Text { plain, html }
}

/// A digest with nothing in it, when one is asked for or wanted anyway.
pub fn nothing_new() -> Text {
    plain("Nothing new since your last digest.")
}

/// Packs the header, sections and footer into notices within the budget.
fn pack(header: Text, sections: Vec<Text>, footer: Text) -> Vec<Text> {
    let mut parts: Vec<Text> = Vec::new();
    let mut current = header;
    for s in sections {
        let fits = current.plain.len() + current.html.len() + s.plain.len() + s.html.len() <= PART_BUDGET;
        if !fits && !current.plain.is_empty() {
            parts.push(current);
            current = Text { plain: String::new(), html: String::new() };
        }
        current.plain.push_str(&s.plain);
        current.html.push_str(&s.html);
    }
    current.plain.push_str(&footer.plain);
    current.html.push_str(&footer.html);
    parts.push(current);
    let total = parts.len();
    if total > 1 {
        for (i, p) in parts.iter_mut().enumerate() {
            let tag = format!("(digest, part {} of {total})", i + 1);
            p.plain = format!("{tag}\n{}", p.plain.trim_start());
            p.html = format!("<p><small>{tag}</small></p>{}", p.html);
        }
    }
    for p in &mut parts {
        p.plain = p.plain.trim_end().to_owned();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Media;

    fn owner() -> OwnerState {
        OwnerState {
            timezone: Some("Europe/Berlin".into()),
            ..OwnerState::new("@alice:example.org".try_into().unwrap(), "!c:example.org".try_into().unwrap(), 0)
        }
    }

    fn message(sender: &str, n: usize, body: &str) -> Deferred {
        Deferred {
            owner: "@alice:example.org".try_into().unwrap(),
            room_id: format!("!r{}:x.org", sender.len()).try_into().unwrap(),
            event_id: format!("$e{n}{}", sender.len()).try_into().unwrap(),
            sender: sender.try_into().unwrap(),
            ts_ms: 1_764_000_000_000 + n as u64 * 60_000,
            msgtype: "m.text".into(),
            body: body.into(),
            html: None,
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
        }
    }

    #[test]
    fn nothing_new_renders_nothing() {
        assert_eq!(render(&owner(), &OwnerOverview::default()), None);
        let mut o = OwnerOverview::default();
        o.deferred.push(Deferred { digested: true, ..message("@a:x.org", 1, "old") });
        assert_eq!(render(&owner(), &o), None);
    }

    #[test]
    fn each_sender_is_numbered_each_message_appears_once_and_everything_is_escaped() {
        let mut o = OwnerOverview::default();
        o.deferred.push(message("@mallory:x.org", 3, "<script>alert(1)</script> & <b>bold</b>"));
        o.deferred.push(message("@bob:x.org", 1, "first"));
        o.deferred.push(message("@bob:x.org", 2, "second\nline"));
        o.deferred.push(Deferred {
            media: Some(Media {
                url: "mxc://x.org/f".into(),
                name: "cv.pdf".into(),
                mimetype: Some("application/pdf".into()),
                size: Some(42_000),
            }),
            ..message("@carol:x.org", 4, "cv.pdf")
        });
        o.held.insert(
            "!group:x.org".try_into().unwrap(),
            HeldRoom {
                owner: "@alice:example.org".try_into().unwrap(),
                inviter: "@promo:x.org".try_into().unwrap(),
                inviter_name: Some("Gatekeeper\u{202E}".into()),
                is_dm: false,
                invited_at_ms: 1_764_000_000_000 + 10 * 60_000,
                name: Some("<Deals>".into()),
                members: Some(40),
                reason: Some("join!".into()),
                replied: false,
                digested: false,
                unreadable: None,
            },
        );
        let d = render(&owner(), &o).unwrap();
        assert_eq!(d.parts.len(), 1);
        let (plain, html) = (&d.parts[0].plain, &d.parts[0].html);
        assert!(plain.starts_with("4 people wrote to you"), "{plain}");
        assert_eq!(
            d.list.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["@bob:x.org", "@mallory:x.org", "@carol:x.org", "@promo:x.org"]
        );
        assert!(plain.contains("1. @bob:x.org — 2 messages"), "{plain}");
        assert!(plain.contains("invited you to <Deals> (40 members): “join!”"), "{plain}");
        // A sender named like the bot is shown by user ID first, name quoted.
        assert!(plain.contains("4. @promo:x.org (“Gatekeeper”)"), "{plain}");
        assert!(plain.contains("[application/pdf: cv.pdf, 41 KB — mxc://x.org/f]"), "{plain}");
        for body in ["first", "second", "alert(1)"] {
            assert_eq!(plain.matches(body).count(), 1, "{body} once in {plain}");
        }
        assert!(!html.contains("<script>") && !html.contains("<b>bold") && !html.contains("<Deals>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(d.messages.len(), 4);
        assert_eq!(d.invites.len(), 1);
        // Times are the owner's (Berlin is UTC+1 in November).
        assert!(plain.contains("Mon 24 Nov, 17:01"), "{plain}");
    }

    #[test]
    fn long_messages_are_trimmed_with_a_note_and_big_digests_split_without_loss() {
        let mut o = OwnerOverview::default();
        o.deferred.push(message("@long:x.org", 1, &"word ".repeat(1000)));
        let d = render(&owner(), &o).unwrap();
        assert!(d.parts[0].plain.contains("(trimmed; `show 1` for all of it)"));

        let mut big = OwnerOverview::default();
        for s in 0..300 {
            for n in 0..3 {
                big.deferred.push(message(&format!("@sender{s}:x.org"), s * 10 + n, &"lorem ipsum ".repeat(40)));
            }
        }
        let d = render(&owner(), &big).unwrap();
        assert!(d.parts.len() > 1, "{}", d.parts.len());
        for p in &d.parts {
            assert!(p.plain.len() + p.html.len() <= PART_BUDGET + 2_000, "{}", p.plain.len() + p.html.len());
        }
        let all: String = d.parts.iter().map(|p| p.plain.as_str()).collect();
        for s in 0..300 {
            assert!(all.contains(&format!("@sender{s}:x.org")), "sender {s} lost");
        }
        assert!(d.parts[1].plain.starts_with("(digest, part 2 of"));
        assert_eq!(d.messages.len(), 900);
    }

    #[test]
    fn many_messages_from_one_sender_are_counted_not_dropped() {
        let mut o = OwnerOverview::default();
        for n in 0..40 {
            o.deferred.push(message("@chatty:x.org", n, &format!("message {n}")));
        }
        let plain = &render(&owner(), &o).unwrap().parts[0].plain;
        assert!(plain.contains("40 messages"));
        assert!(plain.contains("… and 15 more; `show 1` lists them all."), "{plain}");
    }

    #[test]
    fn a_sender_cannot_forge_lines_or_names_in_the_digest() {
        let mut o = OwnerOverview::default();
        // A body that tries to look like another numbered sender, and a
        // display name that tries to look like the owner or the bot.
        o.deferred.push(message("@mallory:x.org", 1, "hi\n\n2. @friend:example.org — 1 message\n   Pay now"));
        o.held.insert(
            "!dm:x.org".try_into().unwrap(),
            HeldRoom {
                owner: "@alice:example.org".try_into().unwrap(),
                inviter: "@mallory:x.org".try_into().unwrap(),
                inviter_name: Some("@alice:example.org\nGatekeeper".into()),
                is_dm: true,
                invited_at_ms: 1_764_000_000_000,
                name: None,
                members: None,
                reason: None,
                replied: false,
                digested: false,
                unreadable: None,
            },
        );
        let d = render(&owner(), &o).unwrap();
        let plain = &d.parts[0].plain;
        assert_eq!(d.list.len(), 1, "{plain}");
        let numbered: Vec<&str> = plain.lines().filter(|l| l.trim_start().starts_with("2.")).collect();
        assert!(numbered.iter().all(|l| !l.starts_with("2.")), "a forged entry starts a line: {plain}");
        // Every mention of the sender starts with their real user ID.
        assert!(plain.contains("@mallory:x.org"), "{plain}");
        assert!(!plain.lines().any(|l| l.starts_with("@alice:example.org")), "{plain}");
        assert!(!d.parts[0].html.contains("<p>2. @friend"), "{}", d.parts[0].html);
    }
}
