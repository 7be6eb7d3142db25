//! `set <key> <value>`: change one of the owner's settings.

use super::args::{check_email, clock_time, is_time_zone, parse_duration};
use super::{Args, Command, Ctx, Handler, Spec, reply};
use crate::state::Notify;
use crate::{Decision, Effect, OwnerState, PendingEmail, StateChange, WaveKey, WaveRecord, mail, rules, texts, urgent};

pub(super) const SPEC: Spec = Spec {
    name: "set",
    aliases: &[],
    usage: "set <reply|reply-interval|email|contact|timezone|digest-time|retention|notify|empty-digest|urgent|urgent-per-sender|urgent-per-day|banned> <value>",
    summary: "change a setting",
    parse,
};

/// Longest reply template accepted.
pub const MAX_TEMPLATE: usize = 2000;

/// Shortest and longest time messages may be kept.
const MIN_RETENTION_MS: u64 = 86_400_000;
/// Longest contact text: one line in the reply.
const MAX_CONTACT: usize = 200;
const MAX_RETENTION_MS: u64 = 365 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// The owner's own etiquette reply.
    Reply(String),
    ReplyInterval(u64),
    /// The digest address; `None`: none (`set email off`).
    Email(Option<String>),
    /// What the reply shows strangers; `None`: nothing (`set contact off`).
    Contact(Option<String>),
    Timezone(String),
    /// Minutes after local midnight.
    DigestMinute(u16),
    Retention(u64),
    Notify(Notify),
    EmptyDigest(bool),
    /// Urgent messages on or off.
    Urgent(bool),
    /// At most one urgent message per sender in this period.
    UrgentPerSender(u64),
    /// At most this many urgent messages a day.
    UrgentPerDay(u32),
    /// What to do with a banned sender's invitation: `true` leaves it
    /// unanswered (`ignore`), `false` declines it (`decline`).
    Banned(bool),
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let (key, value) = args.text.split_once(char::is_whitespace).unwrap_or((args.text, ""));
    setting(key, value).map(Command::Set)
}

/// `set <key> <value>` by another name (`reply set <text>`), refused with
/// `set`'s usage.
pub(super) fn command(key: &str, value: &str) -> Command {
    setting(key, value).map(Command::Set).unwrap_or_else(|message| Command::Invalid { message, usage: SPEC.usage })
}

fn setting(key: &str, value: &str) -> Result<Setting, String> {
    let (key, value) = (key.to_ascii_lowercase(), value.trim());
    if value.is_empty() {
        return Err(texts::needs_a_value(&key));
    }
    match key.as_str() {
        "reply" if value.chars().count() > MAX_TEMPLATE => Err(texts::reply_too_long(MAX_TEMPLATE)),
        "reply" => Ok(Setting::Reply(value.to_owned())),
        "reply-interval" => parse_duration(value).map(Setting::ReplyInterval),
        "email" if value.eq_ignore_ascii_case("off") => Ok(Setting::Email(None)),
        "email" => check_email(value).map(|e| Setting::Email(Some(e))),
        "contact" if value.eq_ignore_ascii_case("off") => Ok(Setting::Contact(None)),
        "contact" if value.chars().count() > MAX_CONTACT || value.chars().any(char::is_control) => {
            Err(texts::contact_too_long(MAX_CONTACT))
        }
        "contact" => Ok(Setting::Contact(Some(value.to_owned()))),
        "timezone" if is_time_zone(value) => Ok(Setting::Timezone(value.to_owned())),
        "timezone" => Err(texts::not_a_time_zone(value)),
        "digest-time" => clock_time(value).map(Setting::DigestMinute),
        "notify" => value.parse().map(Setting::Notify),
        "empty-digest" => match value.to_ascii_lowercase().as_str() {
            "on" => Ok(Setting::EmptyDigest(true)),
            "off" => Ok(Setting::EmptyDigest(false)),
            _ => Err(texts::empty_digest_is_on_or_off()),
        },
        "urgent" => match value.to_ascii_lowercase().as_str() {
            "on" => Ok(Setting::Urgent(true)),
            "off" => Ok(Setting::Urgent(false)),
            _ => Err(texts::urgent_is_on_or_off()),
        },
        "urgent-per-sender" => match parse_duration(value) {
            Ok(ms) if ms < urgent::MIN_PER_SENDER_MS => Err(texts::urgent_per_sender_too_short()),
            other => other.map(Setting::UrgentPerSender),
        },
        "urgent-per-day" => match value.parse::<u32>() {
            Ok(n) if (1..=urgent::MAX_PER_DAY).contains(&n) => Ok(Setting::UrgentPerDay(n)),
            _ => Err(texts::urgent_per_day_bounds(urgent::MAX_PER_DAY)),
        },
        "banned" => match value.to_ascii_lowercase().as_str() {
            "decline" => Ok(Setting::Banned(false)),
            "ignore" => Ok(Setting::Banned(true)),
            _ => Err(texts::banned_is_decline_or_ignore()),
        },
        "retention" => match parse_duration(value) {
            Ok(ms) if ms < MIN_RETENTION_MS => Err(texts::retention_too_short()),
            Ok(ms) if ms > MAX_RETENTION_MS => Err(texts::retention_too_long()),
            other => other.map(Setting::Retention),
        },
        _ => Err(texts::no_such_setting(&key)),
    }
}

impl Handler for Setting {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let o = ctx.owner.clone();
        let (updated, said) = match self {
            Setting::Reply(text) => {
                let updated = OwnerState { reply_template: Some(text), ..o };
                let preview = reply::preview(&updated, ctx.config, ctx.now_ms);
                (updated, preview)
            }
            Setting::ReplyInterval(ms) => {
                (OwnerState { reply_interval_ms: Some(ms), ..o }, texts::reply_interval_set(ms))
            }
            Setting::Email(Some(address)) => match &ctx.config.mail_secret {
                // E-mail is set up: the address must prove it is the
                // owner's before anything but the code is sent to it.
                Some(secret) => {
                    // The same limits per owner (their record, and what a
                    // `stop` did not reset) and per address (whoever asked).
                    let by = WaveKey::CodesBy(o.user_id.clone());
                    let to = WaveKey::CodesTo(mailbox(&address));
                    let recent = |times: &mut dyn Iterator<Item = u64>| -> Vec<u64> {
                        let mut t: Vec<u64> = times.filter(|t| ctx.now_ms.saturating_sub(*t) < mail::DAY_MS).collect();
                        t.sort_unstable();
                        t.dedup();
                        t
                    };
                    let times_of = |key: &WaveKey| -> Vec<u64> {
                        recent(&mut ctx.codes.get(key).into_iter().flat_map(|r| r.seen.iter().map(|(_, t)| *t)))
                    };
                    let mine = recent(&mut o.codes_mailed.iter().copied().chain(times_of(&by)));
                    let theirs = times_of(&to);
                    for times in [&mine, &theirs] {
                        if let Some(last) = times.last()
                            && ctx.now_ms.saturating_sub(*last) < mail::CODE_INTERVAL_MS
                        {
                            return ctx.answer(texts::code_wait(last + mail::CODE_INTERVAL_MS));
                        }
                        if times.len() >= mail::CODES_PER_DAY {
                            return ctx.answer(texts::code_wait(times[0] + mail::DAY_MS));
                        }
                    }
                    let me = o.user_id.clone();
                    let mailed = |key: WaveKey, times: &[u64]| {
                        let mut seen: Vec<(ruma::OwnedUserId, u64)> = times.iter().map(|t| (me.clone(), *t)).collect();
                        seen.push((me.clone(), ctx.now_ms));
                        let record =
                            WaveRecord { seen, expires_ms: ctx.now_ms + mail::DAY_MS, ..WaveRecord::default() };
                        StateChange::PutWave(key, record)
                    };
                    let codes_mailed = Vec::new();
                    let code = mail::verification_code(secret, &o.user_id, &address, ctx.meta.event_id.as_str());
                    let pending = PendingEmail {
                        address: address.clone(),
                        code: code.clone(),
                        expires_ms: ctx.now_ms + mail::CODE_LIFETIME_MS,
                        attempts: 0,
                    };
                    let message = texts::verification_email(&code);
                    let server = ctx.config.server_name.as_str();
                    return Decision::default()
                        .change(StateChange::PutOwner(OwnerState { email_pending: Some(pending), codes_mailed, ..o }))
                        .change(mailed(by, &mine))
                        .change(mailed(to, &theirs))
                        .effect(Effect::SendEmail {
                            owner: ctx.owner.user_id.clone(),
                            to: address.clone(),
                            subject: texts::verification_subject(),
                            text: message.plain,
                            html: message.html,
                            message_id: mail::message_id(ctx.meta.event_id.as_str(), "verify", server),
                            unsubscribe: None,
                        })
                        .effect(ctx.reply(texts::code_sent(&address)));
                }
                // Without e-mail nothing can confirm the address: it is not
                // stored, or it would be mailed unconfirmed once e-mail is
                // set up.
                None => return ctx.answer(texts::no_mail_here()),
            },
            Setting::Contact(contact) => {
                let said = texts::contact_set(contact.as_deref());
                (OwnerState { contact, ..o }, said)
            }
            Setting::Email(None) => {
                (OwnerState { email: None, email_pending: None, email_unconfirmed: None, ..o }, texts::email_removed())
            }
            Setting::Timezone(zone) => {
                let said = texts::time_zone_set(&zone);
                (OwnerState { timezone: Some(zone), ..o }, said)
            }
            Setting::DigestMinute(m) => (OwnerState { digest_minute: Some(m), ..o }, texts::digest_time_set(m)),
            Setting::Notify(mode) => {
                let rule = rules::control_room(o.control_room.as_str(), &ctx.config.bot, mode);
                return Decision::default()
                    .change(StateChange::PutOwner(OwnerState { notify: Some(mode), ..o }))
                    .effect(Effect::PutPushRule { owner: ctx.owner.user_id.clone(), rule })
                    .effect(ctx.reply(texts::notify_set(mode)));
            }
            Setting::EmptyDigest(on) => (OwnerState { digest_when_empty: on, ..o }, texts::empty_digest_set(on)),
            Setting::Urgent(on) => {
                let said = texts::urgent_set(
                    on,
                    o.urgent_per_sender_ms.unwrap_or(urgent::DEFAULT_PER_SENDER_MS),
                    o.urgent_per_day.unwrap_or(urgent::DEFAULT_PER_DAY),
                );
                let rule = urgent::rule_effect(&o, on, ctx.config);
                let mut d = Decision::default().change(StateChange::PutOwner(OwnerState { urgent: on, ..o }));
                d.effects.extend(rule);
                return d.effect(ctx.reply(said));
            }
            Setting::UrgentPerSender(ms) => {
                (OwnerState { urgent_per_sender_ms: Some(ms), ..o }, texts::urgent_per_sender_set(ms))
            }
            Setting::UrgentPerDay(n) => (OwnerState { urgent_per_day: Some(n), ..o }, texts::urgent_per_day_set(n)),
            Setting::Retention(ms) => (OwnerState { retention_ms: Some(ms), ..o }, texts::retention_set(ms)),
            Setting::Banned(ignore) => (OwnerState { banned_ignore: ignore, ..o }, texts::banned_set(ignore)),
        };
        ctx.update(updated, said)
    }
}

/// The inbox an address reaches, as far as can be told without knowing its
/// provider: case does not matter, nor does a `+tag` on the local part (the
/// usual sub-addressing), so variants of one address share its limits.
pub(crate) fn mailbox(address: &str) -> String {
    let lower = address.to_lowercase();
    match lower.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{base}@{domain}")
        }
        None => lower,
    }
}
