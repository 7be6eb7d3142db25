//! Control-room commands, one file each: a command's name, aliases, usage
//! and help line (its [`Spec`]), how its arguments are read, and what it
//! does. The parser, `help` and the dispatcher all read the one list in
//! `registry!` below, so they cannot drift apart. A command is parsed once
//! into a [`Command`] before anything runs: every argument is validated
//! then, so a handler only sees well-formed commands. Who may command (the
//! owner, in their own control room) is checked by `control` before any
//! handler runs.

mod args;

mod allow;
mod allowed;
mod banned;
mod block;
mod blocked;
mod deny;
mod digest;
pub mod discover;
mod help;
mod pause;
mod pending;
mod reply;
mod report;
mod resume;
mod set;
mod settings;
mod share;
mod show;
mod stop;
mod subscribe;
mod subscriptions;
mod unblock;
mod undo;
mod unsubscribe;
mod verify;

use ruma::{OwnedRoomId, OwnedUserId};

use crate::texts::{self, Text};
use crate::{Decision, Deferred, Effect, EngineConfig, EventMeta, OwnerOverview, OwnerState, StateChange, Subject};

pub(crate) use allow::allow;
pub use args::{Args, Target, check_email, is_time_zone, parse_duration};
pub(crate) use block::block;
pub(crate) use deny::deny;
pub use set::MAX_TEMPLATE;
pub(crate) use undo::undo;

/// The prefix other bots use; optional in the control room.
pub const PREFIX: &str = "!gk";

/// The prefixes a command may start with: `!gk`, and the conventional
/// `!gatekeeper`. The bot's user ID or display name (a mention) works too.
pub const PREFIXES: [&str; 2] = [PREFIX, "!gatekeeper"];

/// What the parser and `help` know about a command.
pub struct Spec {
    pub name: &'static str,
    /// Other words that mean the same command (`?` for `help`).
    pub aliases: &'static [&'static str],
    pub usage: &'static str,
    /// What the command does, for `help`: lower case and without a full
    /// stop, as it also ends a line of the overview.
    pub summary: &'static str,
    /// Reads the words after the name. An `Err` is why they were refused,
    /// answered with this command's usage.
    pub parse: fn(&Args<'_>) -> Result<Command, String>,
}

/// What a well-formed command does for the owner who gave it.
trait Handler {
    fn run(self, ctx: &Ctx<'_>) -> Decision;
}

/// The list of commands: `Variant(module::Type)`, in the order `help`
/// shows them. Each module has a `SPEC` and a `Type` that implements
/// [`Handler`]. This one list makes the [`Command`] enum, [`ALL`] (what the
/// parser and `help` read) and the dispatch, so that adding a command is
/// writing its file and naming it here.
macro_rules! registry {
    ($($variant:ident($module:ident::$type:ident)),* $(,)?) => {
        $(pub use $module::$type;)*

        /// A control-room command, parsed.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Command {
            $($variant($type),)*
            /// A known command with arguments it cannot take.
            Invalid { message: String, usage: &'static str },
            /// Anything else: answered with a one-line error.
            Unknown { word: String },
        }

        /// Every command, in the order `help` lists them.
        pub const ALL: &[&Spec] = &[$(&$module::SPEC),*];

        impl Command {
            /// Which command this is; `None` for one refused or unknown.
            pub fn spec(&self) -> Option<&'static Spec> {
                match self {
                    $(Command::$variant(_) => Some(&$module::SPEC),)*
                    Command::Invalid { .. } | Command::Unknown { .. } => None,
                }
            }

            /// Carries the command out. Only for the owner in their own
            /// control room: the caller has checked that.
            pub(crate) fn run(self, ctx: &Ctx<'_>) -> Decision {
                match self {
                    $(Command::$variant(command) => Handler::run(command, ctx),)*
                    Command::Invalid { message, usage } => ctx.answer(texts::invalid(&message, usage)),
                    Command::Unknown { word } => ctx.answer(texts::unknown_command(&word)),
                }
            }
        }
    };
}

registry! {
    Pending(pending::Pending),
    Digest(digest::Digest),
    Show(show::Show),
    Allow(allow::Allow),
    Deny(deny::Deny),
    Block(block::Block),
    Undo(undo::UndoLast),
    Unblock(unblock::Unblock),
    Allowed(allowed::Allowed),
    Blocked(blocked::Blocked),
    Report(report::Report),
    Subscribe(subscribe::Subscribe),
    Unsubscribe(unsubscribe::Unsubscribe),
    Subscriptions(subscriptions::Subscriptions),
    Banned(banned::Banned),
    Share(share::Share),
    Reply(reply::Reply),
    Settings(settings::Settings),
    Set(set::Setting),
    Verify(verify::Verify),
    Pause(pause::Pause),
    Resume(resume::Resume),
    Stop(stop::Stop),
    Help(help::Help),
}

/// The command called `name` (lower case), by its name or an alias.
pub fn find(name: &str) -> Option<&'static Spec> {
    ALL.iter().copied().find(|spec| spec.name == name || spec.aliases.contains(&name))
}

/// `None` when the text is not addressed to Gatekeeper at all (empty, or
/// only the prefix), so that chatter in the control room is not answered.
pub fn parse(text: &str) -> Option<Command> {
    parse_as(text, &Addressee::default())
}

/// Who the bot is, for a command that mentions it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Addressee<'a> {
    /// The bot's user ID.
    pub bot: Option<&'a ruma::UserId>,
    /// Take any user ID at the start as the bot's: for declaring reads,
    /// where reading more than needed is harmless and less is not.
    pub any_user: bool,
    /// The bot's display name, as a client writes a mention of it.
    pub name: Option<&'a str>,
}

/// The text after a mention of the bot at its start (`@bot:server:`,
/// `Gatekeeper: …`), or the text as it was.
fn after_mention<'t>(text: &'t str, to: &Addressee<'_>) -> &'t str {
    let strip_end = |rest: &'t str| {
        let rest = rest.strip_prefix([':', ',']).unwrap_or(rest);
        (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim_start())
    };
    let short = |n: &&str| n.chars().filter(|c| c.is_whitespace()).count() < MAX_MENTION_WORDS;
    if let Some(name) = to.name.filter(|n| !n.trim().is_empty()).filter(short)
        && let Some(head) = text.get(..name.len())
        && head.eq_ignore_ascii_case(name)
        && let Some(rest) = strip_end(&text[name.len()..])
    {
        return rest;
    }
    let first = text.split(char::is_whitespace).next().unwrap_or_default();
    let id = first.strip_suffix([':', ',']).unwrap_or(first);
    let is_bot = match to.bot {
        Some(bot) => id == bot.as_str() || (to.any_user && <&ruma::UserId>::try_from(id).is_ok()),
        None => to.any_user && <&ruma::UserId>::try_from(id).is_ok(),
    };
    match is_bot {
        true => text[first.len()..].trim_start(),
        false => text,
    }
}

/// [`parse`] for a text that may mention the bot `to` at its start.
pub fn parse_as(text: &str, to: &Addressee<'_>) -> Option<Command> {
    let trimmed = after_mention(text.trim(), to);
    let rest = match trimmed.split_once(char::is_whitespace) {
        Some((first, rest)) if PREFIXES.iter().any(|p| first.eq_ignore_ascii_case(p)) => rest.trim_start(),
        None if PREFIXES.iter().any(|p| trimmed.eq_ignore_ascii_case(p)) => return None,
        _ => trimmed,
    };
    let (word, args) = match rest.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    if word.is_empty() {
        return None;
    }
    let Some(spec) = find(&word.to_ascii_lowercase()) else {
        return Some(Command::Unknown { word: word.to_owned() });
    };
    let args = Args { text: args, words: args.split_whitespace().collect() };
    Some((spec.parse)(&args).unwrap_or_else(|message| Command::Invalid { message, usage: spec.usage }))
}

/// What a handler may read: the owner, their overview, the event that
/// asked. Nothing else, so a handler cannot reach another owner's data.
pub(crate) struct Ctx<'a> {
    pub(crate) owner: &'a OwnerState,
    pub(crate) overview: &'a OwnerOverview,
    pub(crate) meta: &'a EventMeta,
    pub(crate) now_ms: u64,
    pub(crate) config: &'a EngineConfig,
    /// Records of verification codes mailed (see `codes_read`).
    pub(crate) codes: &'a std::collections::BTreeMap<crate::WaveKey, crate::WaveRecord>,
    /// The policy lists the owner follows and the operator's (see
    /// `crate::policy_read`), as kept.
    pub(crate) policy: &'a std::collections::BTreeMap<OwnedRoomId, crate::policy::PolicyList>,
}

/// What a command reads beyond the owner and their overview: for `set
/// email`, the codes already mailed to that address and by its sender.
/// The bot's names are not known here, so the text is also read from
/// each of its first words on, as if a mention came before: reading more
/// than the command needs is harmless, less would skip its limits.
pub fn codes_read(input: &crate::Input) -> Vec<crate::WaveKey> {
    let crate::Input::Message { meta, msgtype, body, .. } = input else { return Vec::new() };
    // Every message a stranger sends comes through here: a text without
    // the setting's name cannot be `set email`, and reading it as a command
    // from each of its first words would cost more than deciding it.
    if msgtype != "m.text" || !has_word_ci(body, &["email"]) {
        return Vec::new();
    }
    let mut keys = Vec::new();
    for command in as_if_addressed(body) {
        if let Command::Set(set::Setting::Email(Some(address))) = command {
            for key in [crate::WaveKey::CodesTo(set::mailbox(&address)), crate::WaveKey::CodesBy(meta.sender.clone())] {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// Every command `body` may be, read from each of its first words on as
/// if a mention of the bot came before: where the bot's names are not
/// known (declaring reads), reading more than the command needs is
/// harmless and less is not.
fn as_if_addressed(body: &str) -> impl Iterator<Item = Command> + '_ {
    let body = body.trim_start();
    let any = Addressee { any_user: true, ..Addressee::default() };
    let starts = std::iter::once(0)
        .chain(body.char_indices().filter(|(_, c)| c.is_whitespace()).map(|(i, _)| i).take(MAX_MENTION_WORDS));
    starts.filter_map(move |start| parse_as(&body[start..], &any))
}

/// Whether `text` has one of `words` (lower case) in it, ASCII letters in
/// any case (as command and setting names are matched): a cheap test that
/// rules out every command named by `words` before parsing.
fn has_word_ci(text: &str, words: &[&str]) -> bool {
    let text = text.to_ascii_lowercase();
    words.iter().any(|w| text.contains(w))
}

/// Words of a display name a mention may have, for [`as_if_addressed`].
const MAX_MENTION_WORDS: usize = 16;

/// Whether a command reads the ban lists the owner follows (see
/// `crate::policy_read`): the list commands, and `stop`, which forgets
/// them. Read as [`codes_read`] reads.
pub fn reads_lists(body: &str) -> bool {
    static NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        [&subscribe::SPEC, &unsubscribe::SPEC, &subscriptions::SPEC, &stop::SPEC]
            .into_iter()
            .flat_map(|spec| std::iter::once(spec.name).chain(spec.aliases.iter().copied()))
            .collect()
    });
    if !has_word_ci(body, &NAMES) {
        return false;
    }
    as_if_addressed(body).any(|command| {
        matches!(
            command,
            Command::Subscribe(_) | Command::Unsubscribe(_) | Command::Subscriptions(_) | Command::Stop(_)
        )
    })
}

impl Ctx<'_> {
    /// Gatekeeper's answer where the command was given.
    pub(crate) fn reply(&self, text: Text) -> Effect {
        crate::notice(&self.config.bot, &self.meta.room_id, self.meta, "reply", text)
    }

    /// Only an answer: nothing changes.
    pub(crate) fn answer(&self, text: Text) -> Decision {
        Decision::default().effect(self.reply(text))
    }

    /// The owner's record replaced by `updated`, and an answer.
    pub(crate) fn update(&self, updated: OwnerState, text: Text) -> Decision {
        Decision::default().change(StateChange::PutOwner(updated)).effect(self.reply(text))
    }

    /// How the owner is called where others read it.
    fn name(&self) -> String {
        self.owner.displayname.clone().unwrap_or_else(|| self.owner.user_id.localpart().to_owned())
    }

    /// Numbers refer to the list the owner saw last.
    fn resolve(&self, targets: &[Target]) -> Result<Vec<Subject>, Text> {
        let mut out = Vec::new();
        for t in targets {
            let subject = match t {
                Target::Subject(s) => s.clone(),
                Target::Number(n) => {
                    self.owner.last_list.get(n - 1).cloned().ok_or_else(|| texts::no_such_number(*n))?
                }
            };
            if !out.contains(&subject) {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// `run` on the subjects `targets` name, or the answer why they do not
    /// resolve (and nothing changes).
    fn with_subjects(&self, targets: &[Target], run: impl FnOnce(&[Subject]) -> Decision) -> Decision {
        match self.resolve(targets) {
            Ok(subjects) => run(&subjects),
            Err(why) => self.answer(why),
        }
    }

    /// Held rooms of `subject`, and the captured messages that go with them.
    fn held_of(&self, subject: &Subject) -> (Vec<OwnedRoomId>, Vec<&Deferred>) {
        let rooms: Vec<OwnedRoomId> =
            self.overview.held.iter().filter(|(_, h)| subject.covers(&h.inviter)).map(|(r, _)| r.clone()).collect();
        let messages =
            self.overview.deferred.iter().filter(|d| subject.covers(&d.sender) || rooms.contains(&d.room_id)).collect();
        (rooms, messages)
    }

    /// Leaves `subject`'s held rooms as the owner, quietly, and forgets
    /// them; what was captured there is marked denied at `stamp`, kept a
    /// day for `undo` and shown nowhere: `deny` and `block`. Also says how
    /// many rooms and messages that was.
    fn leave_and_drop(&self, d: Decision, subject: &Subject, stamp: u64) -> (Decision, usize, usize) {
        let owner = &self.owner.user_id;
        let (rooms, messages) = self.held_of(subject);
        let d = rooms.iter().fold(d, |d, room| {
            d.effect(Effect::Leave { as_user: owner.clone(), room_id: room.clone(), reason: None })
                .effect(crate::unsilence(owner, room))
                .change(StateChange::RemoveRoom { room: room.clone(), owner: owner.clone() })
        });
        let d = messages
            .iter()
            .fold(d, |d, m| d.change(StateChange::PutDeferred(Deferred { denied_ms: Some(stamp), ..(*m).clone() })));
        let d = self.forget_counts(d, subject);
        (d, rooms.len(), messages.len())
    }

    /// Everyone waiting: the senders of held rooms and of kept messages
    /// (`deny all`, `block all`), oldest first.
    fn everyone_pending(&self) -> Vec<Subject> {
        let mut senders: Vec<(u64, &OwnedUserId)> =
            self.overview.held.values().map(|h| (h.invited_at_ms, &h.inviter)).collect();
        senders.extend(self.overview.deferred.iter().map(|m| (m.received_ms, &m.sender)));
        senders.sort();
        let mut out: Vec<Subject> = Vec::new();
        for (_, user) in senders {
            let subject = Subject::User(user.clone());
            if *user != self.owner.user_id && !out.contains(&subject) {
                out.push(subject);
            }
        }
        out
    }

    /// The owner's record with this decision remembered for `undo`.
    fn remember(&self, d: Decision, entry: crate::Undo) -> Decision {
        if entry.subjects.is_empty() {
            return d;
        }
        d.change(StateChange::PutOwner(crate::undo::recorded(self.owner, entry, self.now_ms)))
    }

    /// Once the owner decided on `subject`, what was counted of them (not
    /// held, not kept) is settled too: counting starts over if they return.
    fn forget_counts(&self, d: Decision, subject: &Subject) -> Decision {
        let owner = &self.owner.user_id;
        self.overview.strangers.iter().filter(|(user, _)| subject.covers(user)).fold(d, |d, (user, state)| {
            d.change(StateChange::PutStranger {
                owner: owner.clone(),
                user: user.clone(),
                state: crate::StrangerState {
                    last_reply_ms: state.last_reply_ms,
                    urgent_ms: state.urgent_ms,
                    urgent_refused_ms: state.urgent_refused_ms,
                    ..Default::default()
                },
            })
        })
    }
}

fn drop_messages(d: Decision, owner: &OwnedUserId, messages: &[&Deferred]) -> Decision {
    messages
        .iter()
        .fold(d, |d, m| d.change(StateChange::RemoveDeferred { owner: owner.clone(), event_id: m.event_id.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Notify;

    /// The word test in front of `codes_read` and `reads_lists` only skips
    /// texts that no start of theirs would read as the commands they look
    /// for: each answers what reading every start answers.
    #[test]
    fn declared_reads_skip_only_texts_without_the_commands() {
        let bodies = [
            "set email a@example.org",
            "SET EMAIL a@example.org",
            "@gk:example.org set Email a@example.org",
            "Gatekeeper: set email off",
            "my email is a@example.org, set email a@example.org",
            "set e-mail a@example.org",
            "emails, lorem ipsum dolor sit amet",
            "Gatekeeper: stop",
            "please STOP writing",
            "!gatekeeper subscribe #bans:example.org",
            "Unsubscribe !list:example.org",
            "subscriptions",
            "lorem ipsum dolor sit amet consectetur",
            "",
            "   ",
            "ſtop",
        ];
        let (mut setting_email, mut reading_lists) = (0, 0);
        for body in bodies {
            let input = crate::Input::Message {
                meta: crate::EventMeta {
                    event_id: "$e".try_into().unwrap(),
                    room_id: "!r:example.org".try_into().unwrap(),
                    sender: "@s:example.org".try_into().unwrap(),
                    ts_ms: 1,
                },
                msgtype: "m.text".into(),
                body: body.into(),
                html: None,
                media: None,
                replaces: None,
            };
            let sets_email = as_if_addressed(body).any(|c| matches!(c, Command::Set(set::Setting::Email(Some(_)))));
            assert_eq!(!codes_read(&input).is_empty(), sets_email, "codes read for {body:?}");
            let lists = as_if_addressed(body).any(|c| {
                matches!(
                    c,
                    Command::Subscribe(_) | Command::Unsubscribe(_) | Command::Subscriptions(_) | Command::Stop(_)
                )
            });
            assert_eq!(reads_lists(body), lists, "lists read for {body:?}");
            setting_email += usize::from(sets_email);
            reading_lists += usize::from(lists);
        }
        // The corpus has texts of both kinds, read as commands.
        assert!(setting_email >= 4 && reading_lists >= 4, "{setting_email} {reading_lists}");
        // The word test compares lower case: so do the names it is given
        // (a name with a capital could never be found by `find` either).
        for spec in ALL {
            for name in std::iter::once(&spec.name).chain(spec.aliases) {
                assert_eq!(*name, name.to_ascii_lowercase());
            }
        }
    }

    fn check(text: &str, expected: Option<Command>) {
        assert_eq!(parse(text), expected, "parsing {text:?}");
    }

    fn user(s: &str) -> Target {
        Target::Subject(s.parse().unwrap())
    }

    fn usage(name: &str) -> &'static str {
        find(name).unwrap_or_else(|| panic!("no command {name}")).usage
    }

    fn invalid(text: &str, command: &str) {
        match parse(text) {
            Some(Command::Invalid { usage: u, message }) => {
                assert_eq!(u, usage(command), "{text}");
                assert!(!message.is_empty());
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn parses_every_command() {
        let help = |topic: Option<&str>| Some(Command::Help(Help { topic: topic.map(Into::into) }));
        let set = |s: Setting| Some(Command::Set(s));
        check("help", help(None));
        check("  HELP  ", help(None));
        check("!gk help", help(None));
        check("!GK   help", help(None));
        check("?", help(None));
        check("help Pending", help(Some("pending")));
        check("pending", Some(Command::Pending(Pending { page: None })));
        check("digest", Some(Command::Digest(Digest)));
        check("allowed", Some(Command::Allowed(Allowed)));
        check("blocked", Some(Command::Blocked(Blocked)));
        check("settings", Some(Command::Settings(Settings)));
        check("resume", Some(Command::Resume(Resume)));
        check("stop", Some(Command::Stop(Stop)));
        check("show 2", Some(Command::Show(Show { target: Target::Number(2), page: 1 })));
        check("show @a:x.org", Some(Command::Show(Show { target: user("@a:x.org"), page: 1 })));
        check("show #2 PAGE 3", Some(Command::Show(Show { target: Target::Number(2), page: 3 })));
        check("pending 2", Some(Command::Pending(Pending { page: Some(2) })));
        check("pending page 2", Some(Command::Pending(Pending { page: Some(2) })));
        check(
            "allow 1 #3 @x:y.org *:example.org",
            Some(Command::Allow(Allow {
                targets: vec![Target::Number(1), Target::Number(3), user("@x:y.org"), user("*:example.org")],
                for_ms: None,
            })),
        );
        check(
            "allow 2 for 30d",
            Some(Command::Allow(Allow { targets: vec![Target::Number(2)], for_ms: Some(30 * 86_400_000) })),
        );
        check("deny 1 2", Some(Command::Deny(Deny { targets: vec![Target::Number(1), Target::Number(2)] })));
        check("block *:spam.org", Some(Command::Block(Block { targets: vec![user("*:spam.org")], reason: None })));
        check(
            "block @a:x.org 2 because  spam\tand  more",
            Some(Command::Block(Block {
                targets: vec![user("@a:x.org"), Target::Number(2)],
                reason: Some("spam and more".into()),
            })),
        );
        check("block all because spam", Some(Command::Block(Block { targets: vec![], reason: Some("spam".into()) })));
        check("unblock @a:x.org", Some(Command::Unblock(Unblock { targets: vec![user("@a:x.org")] })));
        check("verify 123456", Some(Command::Verify(Verify { code: "123456".into() })));
        check("pause", Some(Command::Pause(Pause { for_ms: None })));
        check("pause 2h", Some(Command::Pause(Pause { for_ms: Some(7_200_000) })));
        check("reply", Some(Command::Reply(Reply::Show)));
        check("reply reset", Some(Command::Reply(Reply::Reset)));
        check("reply set Hello {name}!\nSecond", set(Setting::Reply("Hello {name}!\nSecond".into())));
        check("set reply Hi", set(Setting::Reply("Hi".into())));
        check("set reply-interval 3d", set(Setting::ReplyInterval(3 * 86_400_000)));
        check("set email a@example.org", set(Setting::Email(Some("a@example.org".into()))));
        check("set email OFF", set(Setting::Email(None)));
        check("set timezone Europe/Berlin", set(Setting::Timezone("Europe/Berlin".into())));
        check("set digest-time 8:05", set(Setting::DigestMinute(485)));
        check("set retention 60d", set(Setting::Retention(60 * 86_400_000)));
        check("set notify sound", set(Setting::Notify(Notify::Sound)));
        check("frobnicate now", Some(Command::Unknown { word: "frobnicate".into() }));
        check("!gk", None);
        check("", None);
        check("   ", None);
    }

    #[test]
    fn every_bad_argument_is_refused_with_the_usage() {
        invalid("help a b", "help");
        invalid("pending now", "pending");
        invalid("pending 0", "pending");
        invalid("pending 1 2", "pending");
        invalid("show 1 page", "show");
        invalid("show 1 page 0", "show");
        invalid("show 1 2 3", "show");
        invalid("stop it", "stop");
        invalid("show", "show");
        invalid("show 1 2", "show");
        invalid("allow", "allow");
        invalid("allow alice", "allow");
        invalid("allow @alice", "allow");
        invalid("allow 0", "allow");
        invalid("allow 99999999999999999999999", "allow");
        invalid("allow 1 for", "allow");
        invalid("allow 1 for ever", "allow");
        invalid("allow 1 for 2d 3d", "allow");
        invalid("allow for 2d", "allow");
        invalid("deny *:", "deny");
        invalid("block #x", "block");
        invalid("unblock", "unblock");
        invalid("pause soon", "pause");
        invalid("verify", "verify");
        invalid("verify abc", "verify");
        invalid("pause 1h 2h", "pause");
        invalid("reply frob", "reply");
        invalid("reply set", "set");
        invalid(&format!("reply set {}", "x".repeat(MAX_TEMPLATE + 1)), "set");
        invalid("set", "set");
        invalid("set colour blue", "set");
        invalid("set timezone Mars/Olympus", "set");
        invalid("set timezone", "set");
        invalid("set digest-time 25:00", "set");
        invalid("set digest-time 8", "set");
        invalid("set digest-time 08:5", "set");
        invalid("set reply-interval 0d", "set");
        invalid("set retention 1h", "set");
        invalid("set notify loud", "set");
        invalid("set empty-digest maybe", "set");
        invalid("set retention 400d", "set");
        for bad in ["a", "a@b", "@b.org", "a@b.org\r\nBcc: x@y.org", "a b@c.org", "<a@b.org>", "a@b@c.org"] {
            invalid(&format!("set email {bad}"), "set");
        }
    }
}
