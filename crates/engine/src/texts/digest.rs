//! The digest: strangers' held messages as one calm, email-like summary.
//! Numbered per sender so the owner can answer `allow 2`; every piece of
//! sender-controlled text is escaped; split into several notices rather
//! than ever exceeding Matrix's event size (inside one sender's section
//! too, with a "continued" line), and never silently cut. Each notice says
//! which messages and invitations it carries, so that only those are
//! marked as digested with it.

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId};

use super::{Text, UNREADABLE, defang, escape_html, one_line, plain};
use crate::limits::Meter;
use crate::schedule::{self, local_time};
use crate::state::{Deferred, HeldRoom, OwnerOverview, OwnerState, WaveKind};
use crate::subject::Subject;

/// Longest message quoted in full; longer ones are trimmed with a note.
pub const MAX_MESSAGE_CHARS: usize = 1200;
/// Messages quoted per sender; the rest are counted, for `show`.
pub const MAX_MESSAGES_PER_SENDER: usize = 25;
/// Messages quoted in one digest, all senders together: many made-up
/// senders in one group room get counted, not quoted, past it.
pub const MAX_QUOTED_PER_DIGEST: usize = 200;
/// Senders listed by number in one digest; the rest are one line that
/// points to `pending`. With the quotes bound, this keeps a digest (and
/// its e-mail) to a few notices, whatever strangers do.
pub const MAX_SENDERS_PER_DIGEST: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The notices, each within the event limit.
    pub parts: Vec<Text>,
    /// What each part carries, index for index with `parts`.
    pub carried: Vec<Carried>,
    /// The numbering used, for `allow 2` afterwards.
    pub list: Vec<Subject>,
}

/// The items one part of a digest shows (or counts, "… and 15 more"): they
/// are digested exactly when that part is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    pub messages: Vec<OwnedEventId>,
    pub invites: Vec<OwnedRoomId>,
    /// Senders whose counted-not-kept numbers this part reports.
    pub counted: Vec<OwnedUserId>,
}

impl Digest {
    /// Every message the digest carries, in any part.
    pub fn messages(&self) -> impl Iterator<Item = &OwnedEventId> {
        self.carried.iter().flat_map(|c| &c.messages)
    }

    /// Every group invitation the digest carries, in any part.
    pub fn invites(&self) -> impl Iterator<Item = &OwnedRoomId> {
        self.carried.iter().flat_map(|c| &c.invites)
    }
}

struct Section {
    sender: OwnedUserId,
    name: Option<String>,
    messages: Vec<Deferred>,
    invites: Vec<(OwnedRoomId, HeldRoom)>,
    /// Invitations and messages counted, not kept, since the last digest.
    counted: (u32, u32),
    /// Whom their display name imitates, if anyone.
    imitates: Option<String>,
    /// The one line they gave for why they write.
    subject: Option<String>,
    card: super::Card,
}

/// The smallest piece of a digest a part boundary may not cut.
struct Atom {
    kind: Kind,
    /// The section (0-based) it belongs to; the header and footer have none.
    section: Option<usize>,
    text: Text,
    carried: Carried,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A sender's numbered first line.
    Head,
    /// A line under it (an invitation, "… and 15 more").
    Line,
    /// A quoted message: consecutive ones share one `<blockquote>`.
    Quote,
}

const QUOTE_OPEN: &str = "<blockquote>";
const QUOTE_CLOSE: &str = "</blockquote>";

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

/// Everything not yet digested, or `None` when there is nothing new, in
/// parts that fit an appservice's events. See [`render_for`].
pub fn render(owner: &OwnerState, overview: &OwnerOverview) -> Option<Digest> {
    render_for(owner, overview, false)
}

/// Everything not yet digested, or `None` when there is nothing new, in
/// parts that each fit one event (`client_mode`: one encrypted event).
pub fn render_for(owner: &OwnerState, overview: &OwnerOverview, client_mode: bool) -> Option<Digest> {
    let tz = schedule::zone(owner.timezone.as_deref());
    let mut by_sender: BTreeMap<OwnedUserId, Section> = BTreeMap::new();
    let section = |map: &mut BTreeMap<OwnedUserId, Section>, who: &OwnedUserId| {
        map.entry(who.clone()).or_insert_with(|| Section {
            sender: who.clone(),
            name: None,
            messages: vec![],
            invites: vec![],
            counted: (0, 0),
            imitates: None,
            subject: None,
            card: super::Card::default(),
        });
    };
    for m in overview.deferred.iter().filter(|m| !m.digested) {
        section(&mut by_sender, &m.sender);
        by_sender.get_mut(&m.sender).expect("just inserted").messages.push(m.clone());
    }
    // Wave senders, by the strongest reason any of their invites was marked
    // with (a server's wave groups them by server).
    let mut wave_of: BTreeMap<OwnedUserId, WaveKind> = BTreeMap::new();
    for h in overview.held.values() {
        if let Some(k) = h.wave {
            let kind = wave_of.entry(h.inviter.clone()).or_insert(k);
            *kind = (*kind).max(k);
        }
    }
    // Group invitations, and a wave sender's every invitation: a wave is
    // counted by the accounts that invited, message or not.
    let shown = |h: &HeldRoom| (!h.is_dm || wave_of.contains_key(&h.inviter)) && !h.digested;
    for (room, h) in overview.held.iter().filter(|(_, h)| shown(h)) {
        section(&mut by_sender, &h.inviter);
        by_sender.get_mut(&h.inviter).expect("just inserted").invites.push((room.clone(), h.clone()));
    }
    for (who, st) in overview.strangers.iter().filter(|(_, st)| st.has_unreported()) {
        section(&mut by_sender, who);
        let s = by_sender.get_mut(who).expect("just inserted");
        s.counted = (st.invites_not_held.unreported(), st.messages_not_kept.unreported());
    }
    let not_held = owner.invites_not_held.unreported();
    let not_kept = owner.messages_not_kept.unreported();
    let banned = owner.banned.unreported();
    if by_sender.is_empty() && not_held == 0 && not_kept == 0 && banned == 0 {
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
    let contacts = super::contact_users(&overview.contacts);
    let likeness = super::Likeness::new(owner, &contacts);
    let mut rooms_of: BTreeMap<&OwnedUserId, Vec<&HeldRoom>> = BTreeMap::new();
    for h in overview.held.values() {
        rooms_of.entry(&h.inviter).or_default().push(h);
    }
    let mut messages_of: BTreeMap<&OwnedUserId, Vec<&Deferred>> = BTreeMap::new();
    for m in &overview.deferred {
        messages_of.entry(&m.sender).or_default().push(m);
    }
    for s in by_sender.values_mut() {
        s.imitates = likeness.of(s.name.as_deref());
        let rooms = rooms_of.remove(&s.sender).unwrap_or_default();
        let theirs = messages_of.remove(&s.sender).unwrap_or_default();
        s.subject = super::subject_of(rooms.iter().copied(), theirs.iter().copied());
        s.card = super::Card::of(&s.sender, s.name.as_deref(), &rooms, &theirs);
    }
    let mut sections: Vec<Section> = by_sender.into_values().collect();
    for s in &mut sections {
        // Within one sender's section, the order they wrote in (their
        // clock only reorders their own messages); between senders, the
        // order Gatekeeper received them.
        s.messages.sort_by_key(|m| (m.ts_ms, m.received_ms, m.event_id.clone()));
    }
    let first_seen = |s: &Section| {
        s.messages
            .iter()
            .map(|m| m.received_ms)
            .chain(s.invites.iter().map(|(_, h)| h.invited_at_ms))
            .min()
            .unwrap_or(u64::MAX)
    };
    sections.sort_by_key(|s| (first_seen(s), s.sender.clone()));
    let (waved, mut sections): (Vec<Section>, Vec<Section>) =
        sections.into_iter().partition(|s| wave_of.contains_key(&s.sender));
    let groups = wave_groups(waved, &wave_of);

    let everyone = sections.len() + groups.iter().map(|g| g.senders.len()).sum::<usize>();
    let people = if everyone == 1 { "1 person".to_owned() } else { format!("{everyone} people") };
    let since = match owner.digest_last_sent_ms {
        Some(t) => format!("since {}", local_time(t, &tz)),
        None => format!("since {}", local_time(owner.since_ms, &tz)),
    };
    let mut header = Text {
        plain: format!("{people} wrote to you {since}.\n"),
        html: format!("<h3>{} wrote to you {}</h3>", escape_html(&people), escape_html(&since)),
    };
    if not_held > 0 {
        let note = super::invites_not_held(not_held, overview.held.len() as u64);
        header.plain.push_str(&format!("{note}\n"));
        header.html.push_str(&format!("<p>{}</p>", escape_html(&note)));
    }
    if not_kept > 0 {
        let note = super::messages_not_kept(not_kept, overview.deferred.len() as u64);
        header.plain.push_str(&format!("{note}\n"));
        header.html.push_str(&format!("<p>{}</p>", escape_html(&note)));
    }
    if banned > 0 {
        let note = super::banned_in_digest(banned, owner.banned_ignore);
        header.plain.push_str(&format!("{note}\n"));
        header.html.push_str(&format!("<p>{}</p>", escape_html(&note)));
    }
    let footer = Text {
        plain: "\nAnswer with `allow 1`, `allow 1 for 30d`, `deny 1`, `block 1` or `show 1` (the numbers above)."
            .into(),
        html: "<p>Answer with <code>allow 1</code>, <code>allow 1 for 30d</code>, <code>deny 1</code>, \
               <code>block 1</code> or <code>show 1</code> (the numbers above).</p>"
            .into(),
    };

    let rest = sections.split_off(sections.len().min(MAX_SENDERS_PER_DIGEST));
    let mut atoms = Vec::new();
    let mut quotes_left = MAX_QUOTED_PER_DIGEST;
    for (i, s) in sections.iter().enumerate() {
        section_atoms(&mut atoms, i, s, &tz, &mut quotes_left);
    }
    if !rest.is_empty() {
        let line = format!("… and {} more people; `pending` lists everyone waiting.", rest.len());
        let text = Text { plain: format!("\n{line}\n"), html: format!("<p>{}</p>", escape_html(&line)) };
        let carried = Carried {
            messages: rest.iter().flat_map(|s| s.messages.iter().map(|m| m.event_id.clone())).collect(),
            invites: rest.iter().flat_map(|s| s.invites.iter().map(|(r, _)| r.clone())).collect(),
            counted: rest.iter().filter(|s| s.counted != (0, 0)).map(|s| s.sender.clone()).collect(),
        };
        atoms.push(Atom { kind: Kind::Line, section: None, text, carried });
    }
    let mut list: Vec<Subject> = sections.iter().map(|s| Subject::User(s.sender.clone())).collect();
    for g in groups {
        let text = match &g.server {
            Some(server) => {
                list.push(Subject::Server(server.clone()));
                wave_server_line(list.len(), server.as_str(), g.senders.len(), g.messages)
            }
            None => wave_senders_line(&g.senders, g.messages),
        };
        atoms.push(Atom { kind: Kind::Line, section: None, text, carried: g.carried });
    }
    let continued: Vec<Text> = sections.iter().enumerate().map(|(i, s)| continued(i + 1, s)).collect();
    let (parts, carried) = pack(header, atoms, &continued, footer, client_mode);
    Some(Digest { parts, carried, list })
}

/// Wave senders grouped: one group per server whose new senders made a
/// wave, and one for senders who invited several owners.
struct WaveGroup {
    server: Option<OwnedServerName>,
    senders: Vec<OwnedUserId>,
    messages: usize,
    carried: Carried,
}

fn wave_groups(waved: Vec<Section>, wave_of: &BTreeMap<OwnedUserId, WaveKind>) -> Vec<WaveGroup> {
    let mut groups: BTreeMap<Option<OwnedServerName>, WaveGroup> = BTreeMap::new();
    for s in waved {
        let server = (wave_of.get(&s.sender) == Some(&WaveKind::Server)).then(|| s.sender.server_name().to_owned());
        let g = groups.entry(server.clone()).or_insert_with(|| WaveGroup {
            server,
            senders: vec![],
            messages: 0,
            carried: Carried::default(),
        });
        // Messages counted rather than kept are theirs too.
        g.messages += s.messages.len() + s.counted.1 as usize;
        if s.counted != (0, 0) {
            g.carried.counted.push(s.sender.clone());
        }
        g.carried.messages.extend(s.messages.into_iter().map(|m| m.event_id));
        g.carried.invites.extend(s.invites.into_iter().map(|(r, _)| r));
        g.senders.push(s.sender);
    }
    // Servers first, by how many accounts came from them; then the senders.
    let mut groups: Vec<WaveGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| (g.server.is_none(), std::cmp::Reverse(g.senders.len())));
    groups
}

/// Shown by user ID in a group of wave senders; the rest are counted.
pub const WAVE_SENDERS_SHOWN: usize = 10;

fn messages_note(messages: usize) -> String {
    match messages {
        0 => String::new(),
        1 => " (1 message)".into(),
        n => format!(" ({n} messages)"),
    }
}

/// Item `n`: the accounts of one server's wave, and the command that blocks it.
fn wave_server_line(n: usize, server: &str, accounts: usize, messages: usize) -> Text {
    let who = if accounts == 1 { "1 account".to_owned() } else { format!("{accounts} accounts") };
    let line = format!(
        "{who} from {server} invited you{} within an hour, as part of a wave; none got an automatic reply.",
        messages_note(messages)
    );
    let block = format!("block *:{server}");
    Text {
        plain: format!("\n{n}. {line} `{block}` blocks them all.\n"),
        html: format!(
            "<p><b>{n}.</b> {} <code>{}</code> blocks them all.</p>",
            escape_html(&line),
            escape_html(&block)
        ),
    }
}

/// Senders who invited several people at once, by user ID (the first
/// [`WAVE_SENDERS_SHOWN`]), with the command that blocks the first.
fn wave_senders_line(senders: &[OwnedUserId], messages: usize) -> Text {
    let shown: Vec<&str> = senders.iter().take(WAVE_SENDERS_SHOWN).map(|s| s.as_str()).collect();
    let more = senders.len().saturating_sub(WAVE_SENDERS_SHOWN);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    let who = if senders.len() == 1 { "1 account".to_owned() } else { format!("{} accounts", senders.len()) };
    let line = format!(
        "{who} invited several people within an hour{}, as part of a wave; none got an automatic reply: {}{more}.",
        messages_note(messages),
        shown.join(", ")
    );
    let block = format!("block {}", senders[0]);
    Text {
        plain: format!("\n{line} `{block}` blocks one.\n"),
        html: format!("<p>{} <code>{}</code> blocks one.</p>", escape_html(&line), escape_html(&block)),
    }
}

fn head_line(n: usize, s: &Section, summary: &str) -> Text {
    let shown = super::who_flagged(s.sender.as_str(), s.name.as_deref(), s.imitates.as_deref());
    Text {
        plain: format!("\n{n}. {shown}{}\n", if summary.is_empty() { String::new() } else { format!(" — {summary}") }),
        html: format!(
            "<p><b>{n}.</b> <code>{}</code>{}</p>",
            escape_html(&shown),
            if summary.is_empty() { String::new() } else { format!(" — {}", escape_html(summary)) }
        ),
    }
}

/// The line that opens a part which goes on with sender `n`'s section.
fn continued(n: usize, s: &Section) -> Text {
    head_line(n, s, "continued")
}

fn section_atoms(atoms: &mut Vec<Atom>, i: usize, s: &Section, tz: &jiff::tz::TimeZone, quotes_left: &mut usize) {
    let n = i + 1;
    let count = match s.messages.len() {
        0 => String::new(),
        1 => "1 message".to_owned(),
        k => format!("{k} messages"),
    };
    let when = match (s.messages.first(), s.messages.last()) {
        (Some(a), Some(b)) if local_time(a.received_ms, tz) != local_time(b.received_ms, tz) => {
            format!("{} – {}", local_time(a.received_ms, tz), local_time(b.received_ms, tz))
        }
        (Some(a), _) => local_time(a.received_ms, tz),
        _ => String::new(),
    };
    let summary =
        [count.as_str(), when.as_str()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(", ");
    let atom = |kind, text, carried| Atom { kind, section: Some(i), text, carried };
    atoms.push(atom(Kind::Head, head_line(n, s, &summary), Carried::default()));
    // The subject first, then the card: before anything they wrote.
    if let Some(line) = &s.subject {
        let t = super::subject_heading(line);
        let text = Text { plain: format!("   {}\n", t.plain), html: format!("<p>{}</p>", t.html) };
        atoms.push(atom(Kind::Line, text, Carried::default()));
    }
    let card = super::card_line(&s.card);
    let text = Text { plain: format!("   {card}\n"), html: format!("<p><small>{}</small></p>", escape_html(&card)) };
    atoms.push(atom(Kind::Line, text, Carried::default()));
    for (room, h) in &s.invites {
        // Stranger text on one line of bounded length, its links dead: it
        // can neither start a forged line nor outgrow a part.
        let name = h.name.as_deref().map(|n| defang(&one_line(n, 80))).unwrap_or_else(|| "a room".into());
        let members = h.members.map(|m| format!(" ({m} members)")).unwrap_or_default();
        let reason = h.reason.as_ref().map(|r| format!(": “{}”", defang(&one_line(r, 300)))).unwrap_or_default();
        let line = format!("invited you to {name}{members}{reason} — {}", local_time(h.invited_at_ms, tz));
        let text = Text { plain: format!("   {line}\n"), html: format!("<p><i>{}</i></p>", escape_html(&line)) };
        atoms.push(atom(Kind::Line, text, Carried { invites: vec![room.clone()], ..Carried::default() }));
    }
    if s.counted != (0, 0) {
        let line = super::not_kept(s.counted.0, s.counted.1);
        let text = Text { plain: format!("   {line}\n"), html: format!("<p><i>{}</i></p>", escape_html(&line)) };
        atoms.push(atom(Kind::Line, text, Carried { counted: vec![s.sender.clone()], ..Carried::default() }));
    }
    let quoted = s.messages.len().min(MAX_MESSAGES_PER_SENDER).min(*quotes_left);
    *quotes_left -= quoted;
    for m in s.messages.iter().take(quoted) {
        let stamp = local_time(m.received_ms, tz);
        let edited = if m.edited { " (edited)" } else { "" };
        let (text, cut) = if m.encrypted {
            (UNREADABLE.to_owned(), false)
        } else if let Some(media) = &m.media {
            // A named reference only: nothing of a stranger's is loaded.
            let kind = media.mimetype.as_deref().map(|k| defang(&one_line(k, 80))).unwrap_or_else(|| "file".into());
            let (name, url) = (defang(&one_line(&media.name, 200)), defang(&one_line(&media.url, 300)));
            (format!("[{kind}: {name}{} — {url}]", size(media.size)), false)
        } else {
            trimmed(&defang(&super::visible(&m.body)))
        };
        let note = if cut { format!(" … (trimmed; `show {n}` for all of it)") } else { String::new() };
        let text = Text {
            plain: format!("   [{stamp}{edited}] {}{note}\n", text.replace('\n', "\n   ")),
            html: format!(
                "<p><small>{}{edited}</small><br>{}{}</p>",
                escape_html(&stamp),
                escape_html(&text).replace('\n', "<br>"),
                escape_html(&note)
            ),
        };
        atoms.push(atom(Kind::Quote, text, Carried { messages: vec![m.event_id.clone()], ..Carried::default() }));
    }
    if s.messages.len() > quoted {
        let rest = &s.messages[quoted..];
        let line = format!("… and {} more; `show {n}` lists them all.", rest.len());
        let text = Text { plain: format!("   {line}\n"), html: format!("<p>{}</p>", escape_html(&line)) };
        let carried = Carried { messages: rest.iter().map(|m| m.event_id.clone()).collect(), ..Carried::default() };
        atoms.push(atom(Kind::Line, text, carried));
    }
}

/// A digest with nothing in it, when one is asked for or wanted anyway.
pub fn nothing_new() -> Text {
    plain("Nothing new since your last digest.")
}

/// The tag of part `i` of `total`, when there is more than one.
fn part_tag(i: usize, total: usize) -> Text {
    let tag = format!("(digest, part {i} of {total})");
    Text { plain: format!("{tag}\n"), html: format!("<p><small>{tag}</small></p>") }
}

/// Packs the header, the sections' atoms and the footer into notices that
/// each fit one event. A part ends before the atom that would not fit; if
/// that atom is inside a section, the next part opens with the section's
/// `continued` line. A sender's first line never ends a part alone.
fn pack(
    header: Text,
    atoms: Vec<Atom>,
    continued: &[Text],
    footer: Text,
    client_mode: bool,
) -> (Vec<Text>, Vec<Carried>) {
    // Every part reserves room for what only some parts get: the header,
    // the footer, the part tag at its longest and a continued line.
    let longest_continued = continued.iter().map(|t| Meter::cost(&t.plain, &t.html)).max().unwrap_or(0);
    let tag = part_tag(usize::MAX, usize::MAX);
    let fresh = || {
        let mut m = Meter::new(client_mode, &[(&header.plain, &header.html), (&footer.plain, &footer.html)]);
        m.take(Meter::cost(&tag.plain, &tag.html) + longest_continued);
        m
    };
    let cost = |a: &Atom, quoting: bool| {
        Meter::cost(&a.text.plain, &a.text.html)
            + if a.kind == Kind::Quote && !quoting { QUOTE_OPEN.len() + QUOTE_CLOSE.len() } else { 0 }
    };
    let mut parts = vec![(header.clone(), Carried::default())];
    let mut meter = fresh();
    let mut quoting = false;
    let mut fresh_part = true;
    for (i, a) in atoms.iter().enumerate() {
        // A head is only placed where its first line fits beside it.
        let next = atoms.get(i + 1).filter(|n| a.kind == Kind::Head && n.section == a.section);
        let needed = cost(a, quoting) + next.map_or(0, |n| cost(n, false));
        if !meter.has_room(needed) && !fresh_part {
            let (text, _) = parts.last_mut().expect("a part is open");
            if quoting {
                text.html.push_str(QUOTE_CLOSE);
            }
            quoting = false;
            meter = fresh();
            let mut text = Text { plain: String::new(), html: String::new() };
            if a.kind != Kind::Head
                && let Some(s) = a.section
            {
                text.plain.push_str(&continued[s].plain);
                text.html.push_str(&continued[s].html);
            }
            parts.push((text, Carried::default()));
        }
        let c = cost(a, quoting);
        meter.take(c);
        fresh_part = false;
        let (text, carried) = parts.last_mut().expect("a part is open");
        match (a.kind == Kind::Quote, quoting) {
            (true, false) => text.html.push_str(QUOTE_OPEN),
            (false, true) => text.html.push_str(QUOTE_CLOSE),
            _ => {}
        }
        quoting = a.kind == Kind::Quote;
        text.plain.push_str(&a.text.plain);
        text.html.push_str(&a.text.html);
        carried.messages.extend(a.carried.messages.iter().cloned());
        carried.invites.extend(a.carried.invites.iter().cloned());
        carried.counted.extend(a.carried.counted.iter().cloned());
    }
    let (last, _) = parts.last_mut().expect("a part is open");
    if quoting {
        last.html.push_str(QUOTE_CLOSE);
    }
    last.plain.push_str(&footer.plain);
    last.html.push_str(&footer.html);
    let total = parts.len();
    let (mut texts, carried): (Vec<Text>, Vec<Carried>) = parts.into_iter().unzip();
    for (i, p) in texts.iter_mut().enumerate() {
        if total > 1 {
            let tag = part_tag(i + 1, total);
            p.plain = format!("{}{}", tag.plain, p.plain.trim_start());
            p.html = format!("{}{}", tag.html, p.html);
        }
        p.plain = p.plain.trim_end().to_owned();
    }
    (texts, carried)
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
            received_ms: 1_764_000_000_000 + n as u64 * 60_000,
            msgtype: "m.text".into(),
            body: body.into(),
            html: None,
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
            redacted_by: None,
            denied_ms: None,
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
                wave: None,
                reply_owed_ms: None,
                said: None,
                invited_here: None,
                shared: None,
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
        // Named, not loaded; its address as text that does not link.
        assert!(plain.contains("[application/pdf: cv[.]pdf, 41 KB — mxc[:]//x[.]org/f]"), "{plain}");
        // Each quoted once (the first is also a subject, above them).
        for body in ["] first", "] second", "] <script>alert(1)"] {
            assert_eq!(plain.matches(body).count(), 1, "{body} once in {plain}");
        }
        assert!(!html.contains("<script>") && !html.contains("<b>bold") && !html.contains("<Deals>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(d.messages().count(), 4);
        assert_eq!(d.invites().count(), 1);
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
            assert!(crate::limits::fits(&p.plain, &p.html, false), "{}", p.plain.len() + p.html.len());
        }
        let all: String = d.parts.iter().map(|p| p.plain.as_str()).collect();
        // The first senders are listed; the rest are counted, carried
        // (marked with the part that counts them) and left to `pending`.
        for s in 0..MAX_SENDERS_PER_DIGEST {
            assert!(all.contains(&format!("@sender{s}:x.org")), "sender {s} lost");
        }
        assert!(all.contains("… and 100 more people; `pending` lists everyone waiting."), "{all}");
        assert_eq!(d.list.len(), MAX_SENDERS_PER_DIGEST);
        assert!(d.parts[1].plain.starts_with("(digest, part 2 of"));
        assert_eq!(d.messages().count(), 900);
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
                wave: None,
                reply_owed_ms: None,
                said: None,
                invited_here: None,
                shared: None,
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
