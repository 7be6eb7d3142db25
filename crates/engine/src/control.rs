//! Commands in the control room: only from the owner, only in the owner's
//! own control room (both are checked before any command runs).

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId};

use sha2::Digest;

use super::command::{self, Command, Setting, Target};
use super::*;

/// What a handler needs: the owner, their overview, the event that asked.
struct Ctx<'a> {
    owner: &'a OwnerState,
    overview: &'a OwnerOverview,
    meta: &'a EventMeta,
    now_ms: u64,
    config: &'a EngineConfig,
}

impl Ctx<'_> {
    fn reply(&self, text: Text) -> Effect {
        notice(&self.config.bot, &self.meta.room_id, self.meta, "reply", text)
    }

    fn name(&self) -> String {
        self.owner.displayname.clone().unwrap_or_else(|| self.owner.user_id.localpart().to_owned())
    }

    /// Numbers refer to the list the owner saw last.
    fn resolve(&self, targets: &[Target]) -> Result<Vec<Subject>, String> {
        let mut out = Vec::new();
        for t in targets {
            let subject = match t {
                Target::Subject(s) => s.clone(),
                Target::Number(n) => self.owner.last_list.get(n - 1).cloned().ok_or_else(|| {
                    format!("There is no number {n} in your last list; send `pending` to see the current one.")
                })?,
            };
            if !out.contains(&subject) {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// Held rooms of `subject`, and the captured messages that go with them.
    fn held_of(&self, subject: &Subject) -> (Vec<OwnedRoomId>, Vec<&Deferred>) {
        let rooms: Vec<OwnedRoomId> =
            self.overview.held.iter().filter(|(_, h)| subject.covers(&h.inviter)).map(|(r, _)| r.clone()).collect();
        let messages =
            self.overview.deferred.iter().filter(|d| subject.covers(&d.sender) || rooms.contains(&d.room_id)).collect();
        (rooms, messages)
    }
}

pub(super) fn command(
    snapshot: &Snapshot,
    meta: &EventMeta,
    owner: &OwnedUserId,
    msgtype: &str,
    body: &str,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if *owner != meta.sender || msgtype != "m.text" {
        return Decision::default();
    }
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    if state.control_room != meta.room_id {
        return Decision::default();
    }
    let Some(cmd) = command::parse(body) else { return Decision::default() };
    let empty = OwnerOverview::default();
    let ctx = Ctx { owner: state, overview: snapshot.overview.as_ref().unwrap_or(&empty), meta, now_ms, config };
    let answer = |text: Text| Decision::default().effect(ctx.reply(text));
    let with_targets = |targets: &[Target], run: &dyn Fn(&[Subject]) -> Decision| match ctx.resolve(targets) {
        Ok(subjects) => run(&subjects),
        Err(message) => answer(texts::plain(&message)),
    };
    match cmd {
        Command::Help { topic } => answer(texts::help(topic.as_deref())),
        Command::Unknown { word } => answer(texts::unknown_command(&word)),
        Command::Invalid { message, usage } => answer(texts::invalid(&message, usage)),
        Command::Pending => pending(&ctx),
        Command::Digest => {
            let seed = meta.event_id.to_string();
            housekeeping::send_digest(state, ctx.overview, None, now_ms, &seed, config)
        }
        Command::Show { targets } => with_targets(&targets, &|s| answer(show(&ctx, &s[0]))),
        Command::Allow { targets, for_ms } => with_targets(&targets, &|s| allow(&ctx, s, for_ms)),
        Command::Deny { targets } => with_targets(&targets, &|s| deny_or_block(&ctx, s, false)),
        Command::Block { targets } => with_targets(&targets, &|s| deny_or_block(&ctx, s, true)),
        Command::Unblock { targets } => with_targets(&targets, &|s| unblock(&ctx, s)),
        Command::Allowed => answer(list_contacts(&ctx, true)),
        Command::Blocked => answer(list_contacts(&ctx, false)),
        Command::Settings => answer(settings(&ctx)),
        Command::Set(setting) => set(&ctx, setting),
        Command::ReplyShow => answer(preview(state, config)),
        Command::ReplyReset => {
            set_owner(&ctx, OwnerState { reply_template: None, ..state.clone() }, |o| preview(o, config))
        }
        Command::Pause { for_ms } => pause(&ctx, for_ms),
        Command::Verify { code } => verify(&ctx, &code),
        Command::Resume => resume(&ctx),
        Command::Stop => optin::opt_out(snapshot, owner, Some(meta), config),
    }
}

fn set_owner(ctx: &Ctx<'_>, updated: OwnerState, say: impl Fn(&OwnerState) -> Text) -> Decision {
    let text = say(&updated);
    Decision::default().change(StateChange::PutOwner(updated)).effect(ctx.reply(text))
}

fn preview(owner: &OwnerState, config: &EngineConfig) -> Text {
    let name = owner.displayname.clone().unwrap_or_else(|| owner.user_id.localpart().to_owned());
    let rendered = texts::etiquette(owner.reply_template.as_deref(), &name, owner.email.as_deref(), false);
    let interval = owner.reply_interval_ms.unwrap_or(config.reply_interval_ms);
    texts::reply_preview(&rendered, owner.reply_template.is_some(), &texts::format_duration(interval))
}

fn pending(ctx: &Ctx<'_>) -> Decision {
    let (entries, invites) = pending_entries(ctx.overview);
    let list: Vec<Subject> = entries.iter().map(|e| Subject::User(e.sender.clone())).collect();
    let tz = super::schedule::zone(ctx.owner.timezone.as_deref());
    let text = texts::pending(&entries, &invites, &tz);
    let mut d = Decision::default().effect(ctx.reply(text));
    if list != ctx.owner.last_list {
        d = d.change(StateChange::PutOwner(OwnerState { last_list: list, ..ctx.owner.clone() }));
    }
    d
}

fn show(ctx: &Ctx<'_>, subject: &Subject) -> Text {
    let (_, mut messages) = ctx.held_of(subject);
    messages.retain(|m| subject.covers(&m.sender));
    messages.sort_by_key(|m| m.ts_ms);
    if messages.is_empty() {
        return texts::plain(&format!("Nothing from {subject} is waiting."));
    }
    let items: Vec<String> = messages
        .iter()
        .map(|m| {
            let what = if m.encrypted {
                "(an encrypted message Gatekeeper could not read)".to_owned()
            } else if let Some(media) = &m.media {
                format!("(sent {}: {})", media.name, media.url)
            } else {
                m.body.clone()
            };
            let edited = if m.edited { " (edited)" } else { "" };
            format!("{}{edited} — {what}", texts::format_time(m.ts_ms))
        })
        .collect();
    texts::list(&format!("{} message(s) from {subject}:", items.len()), &items)
}

fn release_or_leave(ctx: &Ctx<'_>, d: Decision, rooms: &[OwnedRoomId], leave: bool) -> Decision {
    let owner = &ctx.owner.user_id;
    rooms.iter().fold(d, |d, room| {
        if leave {
            d.effect(Effect::Leave { as_user: owner.clone(), room_id: room.clone(), reason: None })
                .effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::held_room_id(room.as_str()) })
                .change(StateChange::RemoveRoom(room.clone()))
        } else {
            release(d, owner, room)
        }
    })
}

fn drop_messages(d: Decision, owner: &OwnedUserId, messages: &[&Deferred]) -> Decision {
    messages
        .iter()
        .fold(d, |d, m| d.change(StateChange::RemoveDeferred { owner: owner.clone(), event_id: m.event_id.clone() }))
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") }
}

fn allow(ctx: &Ctx<'_>, subjects: &[Subject], for_ms: Option<u64>) -> Decision {
    let owner = &ctx.owner.user_id;
    let until_ms = for_ms.map(|ms| ctx.now_ms.saturating_add(ms));
    let mut d = Decision::default();
    let mut lines = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(owner.clone()) {
            lines.push("You are always allowed to reach yourself.".to_owned());
            continue;
        }
        let (rooms, messages) = ctx.held_of(subject);
        d = d
            .change(StateChange::PutContact {
                owner: owner.clone(),
                subject: subject.clone(),
                contact: Contact::Allowed { since_ms: ctx.now_ms, source: AllowSource::Command, until_ms },
            })
            .effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::allow(owner, subject) });
        d = release_or_leave(ctx, d, &rooms, false);
        d = drop_messages(d, owner, &messages);
        if ctx.config.notify_allowed {
            for room in rooms.iter().filter(|r| ctx.overview.held.get(*r).is_some_and(|h| h.is_dm)) {
                d = d.effect(Effect::SendNotice {
                    as_user: owner.clone(),
                    room_id: room.clone(),
                    txn_id: txn_id(ctx.meta, &format!("allowed.{room}")),
                    body: texts::you_are_allowed(&ctx.name()).plain,
                    html: texts::you_are_allowed(&ctx.name()).html,
                });
            }
        }
        let until = until_ms.map(|u| format!(" until {}", texts::format_time(u))).unwrap_or_default();
        let released =
            if rooms.is_empty() { String::new() } else { format!("; released {}", plural(rooms.len(), "room")) };
        lines.push(format!("Allowed {subject}{until}{released}."));
    }
    d.effect(ctx.reply(texts::lines(&lines)))
}

fn deny_or_block(ctx: &Ctx<'_>, subjects: &[Subject], block: bool) -> Decision {
    let owner = &ctx.owner.user_id;
    let mut d = Decision::default();
    let mut lines = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(owner.clone()) {
            lines.push("You cannot block or deny yourself.".to_owned());
            continue;
        }
        let (rooms, messages) = ctx.held_of(subject);
        d = release_or_leave(ctx, d, &rooms, true);
        d = drop_messages(d, owner, &messages);
        let counts = format!("left {} and dropped {}", plural(rooms.len(), "room"), plural(messages.len(), "message"));
        if block {
            if matches!(ctx.overview.contacts.get(subject), Some(Contact::Allowed { .. })) {
                d = d.effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::allow_id(subject) });
            }
            d = d.change(StateChange::PutContact {
                owner: owner.clone(),
                subject: subject.clone(),
                contact: Contact::Blocked { since_ms: ctx.now_ms },
            });
            lines.push(format!("Blocked {subject}: {counts}. Their invites will be declined without a reply."));
        } else if rooms.is_empty() && messages.is_empty() {
            lines.push(format!("Nothing from {subject} is waiting."));
        } else {
            lines.push(format!("Denied {subject}: {counts}. Next time they are a new contact again."));
        }
    }
    d.effect(ctx.reply(texts::lines(&lines)))
}

fn unblock(ctx: &Ctx<'_>, subjects: &[Subject]) -> Decision {
    let mut d = Decision::default();
    let mut lines = Vec::new();
    for subject in subjects {
        if matches!(ctx.overview.contacts.get(subject), Some(Contact::Blocked { .. })) {
            d = d.change(StateChange::RemoveContact { owner: ctx.owner.user_id.clone(), subject: subject.clone() });
            lines.push(format!("Unblocked {subject}: they are a new contact again."));
        } else {
            lines.push(format!("{subject} was not blocked."));
        }
    }
    d.effect(ctx.reply(texts::lines(&lines)))
}

const LIST_LIMIT: usize = 100;

fn list_contacts(ctx: &Ctx<'_>, allowed: bool) -> Text {
    let mut items: Vec<String> = ctx
        .overview
        .contacts
        .iter()
        .filter_map(|(subject, c)| match (c, allowed) {
            (Contact::Allowed { since_ms, source, until_ms }, true) => {
                let how = match source {
                    AllowSource::Imported => "an existing chat",
                    AllowSource::OwnerStarted => "you wrote first",
                    AllowSource::Command => "allowed by you",
                };
                let until = match until_ms {
                    Some(u) if *u <= ctx.now_ms => " — expired".to_owned(),
                    Some(u) => format!(" — until {}", texts::format_time(*u)),
                    None => String::new(),
                };
                Some(format!("{subject} — since {} ({how}){until}", texts::format_time(*since_ms)))
            }
            (Contact::Blocked { since_ms }, false) => {
                Some(format!("{subject} — since {}", texts::format_time(*since_ms)))
            }
            _ => None,
        })
        .collect();
    let what = if allowed { "allowed" } else { "blocked" };
    if items.is_empty() {
        return texts::plain(&format!("Nobody is {what}."));
    }
    let total = items.len();
    items.truncate(LIST_LIMIT);
    if total > LIST_LIMIT {
        items.push(format!("… and {} more", total - LIST_LIMIT));
    }
    texts::list(&format!("{} {what}:", plural(total, "entry").replace("entrys", "entries")), &items)
}

fn settings(ctx: &Ctx<'_>) -> Text {
    let o = ctx.owner;
    let minute = o.digest_minute.unwrap_or(8 * 60);
    let items = vec![
        format!(
            "reply: {}",
            if o.reply_template.is_some() { "your own text (see `reply`)" } else { "the default (see `reply`)" }
        ),
        format!(
            "reply-interval: {}",
            texts::format_duration(o.reply_interval_ms.unwrap_or(ctx.config.reply_interval_ms))
        ),
        format!("email: {}", o.email.as_deref().unwrap_or("off")),
        format!("timezone: {}", o.timezone.as_deref().unwrap_or("UTC")),
        format!("digest-time: {:02}:{:02}", minute / 60, minute % 60),
        format!("retention: {}", texts::format_duration(o.retention_ms.unwrap_or(ctx.config.retention_ms))),
        format!("notify: {}", o.notify.unwrap_or(Notify::Quiet).as_str()),
        format!("empty-digest: {}", if o.digest_when_empty { "on" } else { "off" }),
        match o.paused_until_ms {
            Some(u) if u == u64::MAX => "paused: until you send `resume`".to_owned(),
            Some(u) if u > ctx.now_ms => format!("paused: until {}", texts::format_time(u)),
            _ => "paused: no".to_owned(),
        },
    ];
    texts::list("Your settings (change one with `set <key> <value>`):", &items)
}

fn set(ctx: &Ctx<'_>, setting: Setting) -> Decision {
    let o = ctx.owner.clone();
    let (updated, said) = match setting {
        Setting::Reply(text) => {
            let updated = OwnerState { reply_template: Some(text), ..o };
            let p = preview(&updated, ctx.config);
            return set_owner(ctx, updated, move |_| p.clone());
        }
        Setting::ReplyInterval(ms) => (
            OwnerState { reply_interval_ms: Some(ms), ..o },
            format!("New contacts get the automatic reply at most once every {}.", texts::format_duration(ms)),
        ),
        Setting::Email(Some(e)) => match &ctx.config.mail_secret {
            // E-mail is set up: the address must prove it is the owner's
            // before anything but the code is sent to it.
            Some(secret) => {
                let code = mail::verification_code(secret, &o.user_id, &e, ctx.meta.event_id.as_str());
                let pending = PendingEmail {
                    address: e.clone(),
                    code: code.clone(),
                    expires_ms: ctx.now_ms + mail::CODE_LIFETIME_MS,
                    attempts: 0,
                };
                let updated = OwnerState { email_pending: Some(pending), ..o };
                let message = texts::verification_email(&code);
                return Decision::default()
                    .change(StateChange::PutOwner(updated))
                    .effect(Effect::SendEmail {
                        owner: ctx.owner.user_id.clone(),
                        to: e.clone(),
                        subject: "Your Gatekeeper verification code".into(),
                        text: message.plain,
                        html: message.html,
                        message_id: mail::message_id(ctx.meta.event_id.as_str(), "verify", ctx.config.server_name.as_str()),
                        unsubscribe: None,
                    })
                    .effect(ctx.reply(texts::plain(&format!(
                        "I sent a code to {e}. Answer with `verify <code>` within an hour; until then nothing else is e-mailed there."
                    ))));
            }
            None => (
                OwnerState { email: Some(e.clone()), ..o },
                format!(
                    "The automatic reply now mentions {e}. (E-mail is not set up on this server, so digests stay here.)"
                ),
            ),
        },
        Setting::Email(None) => (
            OwnerState { email: None, email_pending: None, ..o },
            "Your e-mail address is removed: no more e-mailed digests, and the automatic reply no longer mentions it."
                .into(),
        ),
        Setting::Timezone(tz) => {
            (OwnerState { timezone: Some(tz.clone()), ..o }, format!("Your time zone is now {tz}."))
        }
        Setting::DigestMinute(m) => (
            OwnerState { digest_minute: Some(m), ..o },
            format!("Your digest time is now {:02}:{:02}.", m / 60, m % 60),
        ),
        Setting::Notify(mode) => {
            let rule = rules::control_room(o.control_room.as_str(), &ctx.config.bot, mode);
            let said = match mode {
                Notify::Quiet => "Digests and my answers now notify you quietly (no sound).",
                Notify::Sound => "Digests and my answers now notify you like any direct message.",
                Notify::Off => "Digests and my answers no longer notify you; they wait here.",
            };
            return Decision::default()
                .change(StateChange::PutOwner(OwnerState { notify: Some(mode), ..o }))
                .effect(Effect::PutPushRule { owner: ctx.owner.user_id.clone(), rule })
                .effect(ctx.reply(texts::plain(said)));
        }
        Setting::EmptyDigest(on) => (
            OwnerState { digest_when_empty: on, ..o },
            if on {
                "On days with nothing new, the digest says so in one line.".to_owned()
            } else {
                "On days with nothing new, there is no digest.".to_owned()
            },
        ),
        Setting::Retention(ms) => (
            OwnerState { retention_ms: Some(ms), ..o },
            format!("Messages you have not decided about are kept for {}.", texts::format_duration(ms)),
        ),
    };
    set_owner(ctx, updated, |_| texts::plain(&said))
}

/// At most this many wrong codes before the owner must ask for a new one.
const MAX_CODE_ATTEMPTS: u32 = 5;

fn verify(ctx: &Ctx<'_>, code: &str) -> Decision {
    let o = ctx.owner.clone();
    let Some(pending) = o.email_pending.clone() else {
        return Decision::default()
            .effect(ctx.reply(texts::plain("There is no address waiting for a code; use `set email <address>`.")));
    };
    if pending.expires_ms <= ctx.now_ms || pending.attempts >= MAX_CODE_ATTEMPTS {
        return set_owner(ctx, OwnerState { email_pending: None, ..o }, |_| {
            texts::plain("That code has expired; send `set email <address>` again for a new one.")
        });
    }
    if !mail::codes_match(&pending.code, code) {
        let left = MAX_CODE_ATTEMPTS - pending.attempts - 1;
        let updated =
            OwnerState { email_pending: Some(PendingEmail { attempts: pending.attempts + 1, ..pending }), ..o };
        return set_owner(ctx, updated, move |_| {
            texts::plain(&format!("That code does not match ({left} tries left)."))
        });
    }
    let address = pending.address;
    set_owner(ctx, OwnerState { email: Some(address.clone()), email_pending: None, ..o }, move |_| {
        texts::plain(&format!("Verified: your digests will also be e-mailed to {address}."))
    })
}

fn pause(ctx: &Ctx<'_>, for_ms: Option<u64>) -> Decision {
    let until = for_ms.map_or(u64::MAX, |ms| ctx.now_ms.saturating_add(ms));
    let said = match for_ms {
        Some(_) => format!(
            "Paused until {}: invites ring as they used to. Send `resume` to hold again sooner.",
            texts::format_time(until)
        ),
        None => "Paused: invites ring as they used to until you send `resume`.".to_owned(),
    };
    Decision::default()
        .change(StateChange::PutOwner(OwnerState { paused_until_ms: Some(until), ..ctx.owner.clone() }))
        .effect(Effect::EnablePushRule {
            owner: ctx.owner.user_id.clone(),
            rule_id: rules::HOLD_INVITES.into(),
            enabled: false,
        })
        .effect(ctx.reply(texts::plain(&said)))
}

fn resume(ctx: &Ctx<'_>) -> Decision {
    if !ctx.owner.is_paused(ctx.now_ms) {
        return Decision::default().effect(ctx.reply(texts::plain("Gatekeeper is not paused.")));
    }
    Decision::default()
        .change(StateChange::PutOwner(OwnerState { paused_until_ms: None, ..ctx.owner.clone() }))
        .effect(Effect::EnablePushRule {
            owner: ctx.owner.user_id.clone(),
            rule_id: rules::HOLD_INVITES.into(),
            enabled: true,
        })
        .effect(ctx.reply(texts::plain("Holding again: new contacts' invites wait for you.")))
}

/// Strangers waiting, oldest first, with their group-room invitations.
pub(super) fn pending_entries(overview: &OwnerOverview) -> (Vec<PendingEntry>, Vec<(String, String)>) {
    let mut by_sender: BTreeMap<OwnedUserId, PendingEntry> = BTreeMap::new();
    for (room, held) in &overview.held {
        let e = by_sender.entry(held.inviter.clone()).or_insert_with(|| PendingEntry {
            sender: held.inviter.clone(),
            name: held.inviter_name.clone(),
            rooms: vec![],
            messages: 0,
            first_ms: held.invited_at_ms,
            last_ms: held.invited_at_ms,
            preview: None,
        });
        e.rooms.push(room.clone());
        e.first_ms = e.first_ms.min(held.invited_at_ms);
        e.last_ms = e.last_ms.max(held.invited_at_ms);
    }
    let mut messages: Vec<&Deferred> = overview.deferred.iter().collect();
    messages.sort_by_key(|m| m.ts_ms);
    for m in messages {
        let e = by_sender.entry(m.sender.clone()).or_insert_with(|| PendingEntry {
            sender: m.sender.clone(),
            name: None,
            rooms: vec![m.room_id.clone()],
            messages: 0,
            first_ms: m.ts_ms,
            last_ms: m.ts_ms,
            preview: None,
        });
        e.messages += 1;
        e.first_ms = e.first_ms.min(m.ts_ms);
        e.last_ms = e.last_ms.max(m.ts_ms);
        e.preview = Some(if m.encrypted {
            "(an encrypted message)".to_owned()
        } else if let Some(media) = &m.media {
            format!("(sent {})", texts::one_line(&media.name, 60))
        } else {
            texts::one_line(&m.body, 80)
        });
    }
    let invites = overview
        .held
        .values()
        .filter(|h| !h.is_dm)
        .map(|h| {
            let name = h.name.clone().unwrap_or_else(|| "a room".to_owned());
            let size = h.members.map(|n| format!(" ({n} members)")).unwrap_or_default();
            let reason = h.reason.as_ref().map(|r| format!(": “{}”", texts::one_line(r, 80))).unwrap_or_default();
            (h.inviter.to_string(), format!("invited you to {}{size}{reason}", texts::one_line(&name, 60)))
        })
        .collect();
    let mut entries: Vec<PendingEntry> = by_sender.into_values().collect();
    entries.sort_by_key(|e| (e.first_ms, e.sender.clone()));
    (entries, invites)
}

/// A one-click link from an e-mail, confirmed on its web page: the same
/// decision as the command, answered in the control room.
pub(super) fn link_used(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    action: links::LinkAction,
    subject: Option<&Subject>,
    nonce: &str,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let empty = OwnerOverview::default();
    // No event asked; the link's nonce seeds the transaction IDs instead.
    let digest = sha2::Sha256::digest(nonce.as_bytes());
    let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let Ok(event_id) = ruma::OwnedEventId::try_from(format!("$link{id}")) else { return Decision::default() };
    let meta = EventMeta { event_id, room_id: state.control_room.clone(), sender: owner.clone(), ts_ms: now_ms };
    let ctx = Ctx { owner: state, overview: snapshot.overview.as_ref().unwrap_or(&empty), meta: &meta, now_ms, config };
    let subjects: Vec<Subject> = subject.cloned().into_iter().collect();
    use links::LinkAction as A;
    let d = match (action, subjects.is_empty()) {
        (A::Unsubscribe, _) => {
            return set_owner(&ctx, OwnerState { email: None, email_pending: None, ..state.clone() }, |_| {
                texts::plain("From your e-mail: digests are no longer e-mailed. Set an address again with `set email`.")
            });
        }
        (_, true) => return Decision::default(),
        (A::Allow, _) => allow(&ctx, &subjects, None),
        (A::Allow30, _) => allow(&ctx, &subjects, Some(30 * 86_400_000)),
        (A::Deny, _) => deny_or_block(&ctx, &subjects, false),
        (A::Block | A::BlockServer, _) => deny_or_block(&ctx, &subjects, true),
    };
    // Say where the decision came from.
    let effects = d
        .effects
        .into_iter()
        .map(|e| match e {
            Effect::SendNotice { as_user, room_id, txn_id, body, html } if room_id == state.control_room => {
                Effect::SendNotice { as_user, room_id, txn_id, body: format!("From your e-mail: {body}"), html }
            }
            other => other,
        })
        .collect();
    Decision { changes: d.changes, effects, outcomes: d.outcomes }
}
