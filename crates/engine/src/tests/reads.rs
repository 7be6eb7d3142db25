//! `reads` and `overview_read` are complete: a rule decides the same from
//! the snapshot they declare as from one with an owner's whole overview and
//! everything due loaded. A rule that starts reading the overview (or what
//! is due) without declaring it decides differently here, where in
//! production it would silently run on an empty one.

use std::collections::BTreeMap;

use super::*;

const BOB: &str = "@bob:example.org";
const BOB_CONTROL: &str = "!bobcontrol:example.org";
const BOB_HELD: &str = "!bobheld:remote.org";
const GROUP: &str = "!group:remote.org";
const PENDING_CONTROL: &str = "!newdm:example.org";
const SECOND_DM: &str = "!seconddm:example.org";
const FRIEND: &str = "@friend:example.org";
const SPAMMER: &str = "@spammer:evil.org";

/// What a store would hold. Snapshots are assembled from it the way the
/// processor assembles them (`assemble_snapshot`): the room, the owner
/// records of the input's users and of the room's owner, the contact and
/// stranger entries between them, and the captured message referred to.
#[derive(Clone)]
struct World {
    rooms: BTreeMap<OwnedRoomId, RoomState>,
    owners: BTreeMap<OwnedUserId, OwnerState>,
    contacts: BTreeMap<(OwnedUserId, Subject), Contact>,
    strangers: BTreeMap<(OwnedUserId, OwnedUserId), StrangerState>,
    deferred: Vec<Deferred>,
    waves: BTreeMap<WaveKey, WaveRecord>,
    due: Due,
}

impl World {
    fn overview(&self, owner: &OwnedUserId) -> OwnerOverview {
        OwnerOverview {
            strangers: Default::default(),
            denied: Default::default(),
            contacts: self
                .contacts
                .iter()
                .filter(|((o, _), _)| o == owner)
                .map(|((_, s), c)| (s.clone(), c.clone()))
                .collect(),
            held: self
                .rooms
                .iter()
                .filter_map(|(r, s)| match s {
                    RoomState::Held(h) if h.owner == *owner => Some((r.clone(), h.clone())),
                    _ => None,
                })
                .collect(),
            deferred: self.deferred.iter().filter(|d| d.owner == *owner).cloned().collect(),
        }
    }

    fn point_lookups(&self, declared: &Reads) -> Snapshot {
        let mut snap = Snapshot {
            rooms: declared.room.as_ref().and_then(|r| self.rooms.get(r)).cloned().into_iter().collect(),
            ..Default::default()
        };
        let room_owner = snap.rooms.first().map(|r| r.owner().clone());
        for user in declared.users.iter().chain(room_owner.iter()) {
            if let Some(o) = self.owners.get(user) {
                snap.owners.insert(user.clone(), o.clone());
            }
        }
        for owner in snap.owners.keys() {
            for user in declared.users.iter().filter(|u| *u != owner) {
                for subject in [Subject::User(user.clone()), Subject::Server(user.server_name().to_owned())] {
                    if let Some(c) = self.contacts.get(&(owner.clone(), subject.clone())) {
                        snap.contacts.insert((owner.clone(), subject), c.clone());
                    }
                }
                if let Some(s) = self.strangers.get(&(owner.clone(), user.clone())) {
                    snap.strangers.insert((owner.clone(), user.clone()), s.clone());
                }
            }
            if let Some(event) = &declared.related {
                snap.related.extend(self.deferred.iter().find(|d| d.owner == *owner && d.event_id == *event).cloned());
            }
        }
        for key in &declared.codes {
            if let Some(r) = self.waves.get(key) {
                snap.waves.insert(key.clone(), r.clone());
            }
        }
        if let Some(sender) = &declared.waves {
            for key in crate::waves::keys(sender) {
                if let Some(r) = self.waves.get(&key) {
                    snap.waves.insert(key, r.clone());
                }
            }
        }
        snap
    }

    /// What the processor reads for `input`: nothing more than declared.
    fn declared(&self, input: &Input) -> Snapshot {
        let declared = reads(input);
        let mut snap = self.point_lookups(&declared);
        if let Some(owner) = overview_read(&snap, input) {
            snap.overview = Some(self.overview(&owner));
        }
        if declared.due {
            snap.due = Some(Due { digests: vec![], replies: vec![], ..self.due.clone() });
        }
        if let Some(owner) = &declared.due_of {
            let digests = self.due.digests.iter().filter(|d| d.owner.user_id == *owner).cloned().collect();
            let replies = self.due.replies.iter().filter(|r| r.owner.user_id == *owner).cloned().collect();
            snap.due = Some(Due { digests, replies, ..Due::default() });
        }
        snap
    }

    /// The same point look-ups, with `owner`'s whole overview and
    /// everything due loaded whatever the input.
    fn loaded(&self, input: &Input, owner: &OwnedUserId) -> Snapshot {
        let mut snap = self.point_lookups(&reads(input));
        snap.overview = Some(self.overview(owner));
        snap.due = Some(self.due.clone());
        snap.waves = self.waves.clone();
        snap
    }
}

/// Two owners with a bit of everything: held DMs and a group room with
/// captured messages, contacts of every kind, a reply already sent, an
/// opt-in under way, and a tick with every kind of work due.
fn world() -> World {
    let mut w = World {
        rooms: BTreeMap::new(),
        owners: BTreeMap::new(),
        contacts: BTreeMap::new(),
        strangers: BTreeMap::new(),
        deferred: Vec::new(),
        waves: BTreeMap::new(),
        due: Due::default(),
    };
    let alice = OwnerState { last_list: vec![usr(STRANGER), usr("@promo:remote.org")], ..owner() };
    let bob = OwnerState {
        email: Some("bob@example.org".into()),
        urgent: true,
        ..OwnerState::new(uid(BOB), rid(BOB_CONTROL), 1)
    };
    w.owners.insert(uid(ALICE), alice.clone());
    w.owners.insert(uid(BOB), bob.clone());
    w.rooms.insert(rid(CONTROL), RoomState::Control { owner: uid(ALICE) });
    w.rooms.insert(rid(BOB_CONTROL), RoomState::Control { owner: uid(BOB) });
    w.rooms.insert(rid(HELD), RoomState::Held(held_room(true)));
    let group = HeldRoom { inviter: uid("@promo:remote.org"), name: Some("Deals".into()), ..held_room(false) };
    w.rooms.insert(rid(GROUP), RoomState::Held(group));
    w.rooms.insert(
        rid(BOB_HELD),
        RoomState::Held(HeldRoom { replied: true, ..HeldRoom::new(uid(BOB), uid(STRANGER), true, NOW - 9000) }),
    );
    w.rooms.insert(
        rid(PENDING_CONTROL),
        RoomState::PendingControl { inviter: uid("@carol:example.org"), invited_at_ms: 1 },
    );
    // Alice, an owner already, opens a second DM with the bot.
    w.rooms.insert(rid(SECOND_DM), RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 });
    w.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    w.deferred.push(Deferred {
        room_id: rid(GROUP),
        sender: uid("@promo:remote.org"),
        ..captured(&meta_n("@promo:remote.org", GROUP, 1).event_id, "deals!")
    });
    w.deferred.push(Deferred {
        owner: uid(BOB),
        room_id: rid(BOB_HELD),
        ..captured(&meta_n(STRANGER, BOB_HELD, 1).event_id, "hi bob")
    });
    let allowed = Contact::Allowed { since_ms: 1, source: AllowSource::Imported, until_ms: None };
    w.contacts.insert((uid(ALICE), usr(FRIEND)), allowed.clone());
    w.contacts.insert((uid(ALICE), usr(SPAMMER)), Contact::Blocked { since_ms: 1 });
    w.contacts.insert((uid(ALICE), Subject::Server("evil.org".try_into().unwrap())), Contact::Blocked { since_ms: 1 });
    w.contacts.insert((uid(BOB), usr(FRIEND)), allowed);
    w.strangers
        .insert((uid(BOB), uid(STRANGER)), StrangerState { last_reply_ms: Some(NOW - 60_000), ..Default::default() });
    // The promoter invited several owners within the hour: a wave.
    w.waves.insert(
        WaveKey::Sender(uid("@promo:remote.org")),
        WaveRecord { seen: vec![], wave_ms: Some(NOW - 60_000), expires_ms: NOW + 3_600_000, day: vec![] },
    );
    let alice_overview = w.overview(&uid(ALICE));
    let bob_owes = OwnerState { replies_owed: true, reply_window_start_ms: NOW - 7_200_000, ..bob.clone() };
    let mut bob_overview = w.overview(&uid(BOB));
    bob_overview.held.insert(
        rid("!owed:remote.org"),
        HeldRoom {
            reply_owed_ms: Some(NOW - 5_000_000),
            said: None,
            invited_here: None,
            ..HeldRoom::new(uid(BOB), uid(FRIEND), true, NOW - 5_000_000)
        },
    );
    w.due = Due {
        expired: vec![(uid(BOB), usr(FRIEND))],
        unpause: vec![OwnerState { paused_until_ms: Some(NOW - 1), ..bob }],
        digests: vec![DueDigest { owner: alice, overview: alice_overview, slot_ms: NOW - 5 }],
        replies: vec![DueReplies {
            owner: bob_owes,
            overview: bob_overview,
            strangers: BTreeMap::new(),
            waves: BTreeMap::new(),
        }],
    };
    w
}

/// Every command, in its owner's control room, as the processor would
/// decide it. A new command must join this list (a test checks).
const COMMANDS: &[&str] = &[
    "subscribe #list:lists.org",
    "unsubscribe !list:lists.org",
    "subscriptions",
    "banned",
    "show banned",
    "set banned ignore",
    "share blocks",
    "share blocks off",
    "block @spammer:evil.org because spam",
    "help",
    "?",
    "help verify",
    "pending",
    "digest",
    "show 1",
    "show @stranger:remote.org",
    "allow 1",
    "allow 2 for 2h",
    "allow *:remote.org",
    "deny 1",
    "deny @nobody:x.org",
    "block 1",
    "block @friend:example.org",
    "deny all",
    "block all",
    "report 1 spam, twice",
    "report @spammer:evil.org",
    "Gatekeeper: pending",
    "@gatekeeper:example.org set email new@example.org",
    "!gatekeeper show 1",
    "undo",
    "set urgent on",
    "set urgent-per-day 2",
    "unblock @spammer:evil.org",
    "unblock *:evil.org",
    "allowed",
    "blocked",
    "reply",
    "reply reset",
    "reply set Back soon",
    "settings",
    "set email me@alice.example",
    "set notify off",
    "set timezone Europe/Berlin",
    "verify 123456",
    "pause",
    "pause 2h",
    "resume",
    "stop",
    "frobnicate",
    "allow",
];

/// Every kind of input, about the world above.
fn inputs() -> Vec<Input> {
    let mut inputs = Vec::new();
    for (n, body) in COMMANDS.iter().enumerate() {
        inputs.push(msg_n(ALICE, CONTROL, "m.text", body, n as u32));
    }
    inputs.push(msg_n(BOB, BOB_CONTROL, "m.text", "pending", 0));
    // Commands from the wrong sender or room, and a notice.
    inputs.push(text(STRANGER, CONTROL, "pending"));
    inputs.push(text(ALICE, BOB_CONTROL, "allowed"));
    inputs.push(msg_n(ALICE, CONTROL, "m.notice", "stop", 0));
    // The owner writing in held rooms (consent), and their notices.
    inputs.push(text(ALICE, HELD, "Sure, let's talk"));
    inputs.push(text(BOB, BOB_HELD, "Hi"));
    inputs.push(msg_n(ALICE, GROUP, "m.notice", "a bot of mine", 0));
    // Strangers: messages, notices, edits, late decryptions, redactions.
    let original = meta_n(STRANGER, HELD, 1).event_id;
    for room in [HELD, GROUP, BOB_HELD] {
        inputs.push(msg_n(STRANGER, room, "m.text", "hello", 7));
        inputs.push(msg_n(STRANGER, room, "m.notice", "I am a bot", 8));
        inputs.push(Input::Encrypted { meta: meta_n(STRANGER, room, 9) });
        inputs.push(Input::Redaction { meta: meta_n(STRANGER, room, 10), redacts: original.clone() });
    }
    inputs.push(text(STRANGER, HELD, "hi"));
    inputs.push(msg_n(STRANGER, BOB_HELD, "m.text", "urgent: call me", 12));
    inputs.push(Input::Encrypted { meta: meta_n(STRANGER, HELD, 1) });
    inputs.push(text(BOT, HELD, "echo"));
    for replaces in [original.clone(), meta_n(STRANGER, HELD, 11).event_id] {
        inputs.push(Input::Message {
            meta: meta_n(STRANGER, HELD, 11),
            msgtype: "m.text".into(),
            body: "* hello".into(),
            html: None,
            media: None,
            replaces: Some(Replacement { original: replaces, body: "hello".into(), html: None }),
        });
    }
    // Invites, joins and leaves.
    for sender in [STRANGER, FRIEND, SPAMMER, "@new:evil.org"] {
        inputs.push(member(sender, "!fresh:remote.org", ALICE, Membership::Invite, true));
        inputs.push(member(sender, "!fresh:remote.org", BOB, Membership::Invite, false));
    }
    inputs.push(member(STRANGER, HELD, ALICE, Membership::Invite, true));
    inputs.push(member(ALICE, "!mine:example.org", "@someone:x.org", Membership::Invite, true));
    inputs.push(member(ALICE, "!dm:example.org", BOT, Membership::Invite, true));
    inputs.push(member("@carol:example.org", PENDING_CONTROL, BOT, Membership::Invite, true));
    inputs.push(member("@eve:evil.org", "!evil:evil.org", BOT, Membership::Invite, true));
    inputs.push(member(BOT, PENDING_CONTROL, BOT, Membership::Join, false));
    inputs.push(member(BOT, SECOND_DM, BOT, Membership::Join, false));
    inputs.push(member(ALICE, CONTROL, ALICE, Membership::Leave, false));
    inputs.push(member(ALICE, CONTROL, BOT, Membership::Leave, false));
    inputs.push(member(ALICE, HELD, ALICE, Membership::Leave, false));
    inputs.push(member(STRANGER, HELD, STRANGER, Membership::Leave, false));
    // Look-up results, links, mail, ticks.
    inputs.push(Input::ProfileFetched { user: uid(ALICE), displayname: Some("Alice A.".into()) });
    inputs.push(Input::ContactsImported {
        owner: uid(ALICE),
        users: vec![uid(FRIEND), uid("@old:x.org")],
        strangers: vec![(rid(HELD), uid(SPAMMER)), (rid("!old-dm:x.org"), uid("@quiet:x.org"))],
    });
    inputs.push(Input::RoomInfo { owner: uid(ALICE), room_id: rid(GROUP), name: Some("Deals!".into()), members: 40 });
    inputs.push(Input::NotTwoPeople { owner: uid(ALICE), room_id: rid(HELD), members: 3 });
    inputs.push(Input::ControlRoomReady { owner: uid(ALICE), room_id: rid("!elsewhere:example.org") });
    inputs.push(Input::MailFailed { owner: uid(BOB), to: "bob@example.org".into(), reason: "550".into() });
    for (room, owner, step) in [
        (HELD, Some(ALICE), FailedStep::Join),
        (BOB_HELD, Some(BOB), FailedStep::Silence),
        (CONTROL, Some(ALICE), FailedStep::Join),
        (HELD, None, FailedStep::Silence),
    ] {
        let (room_id, owner) = (rid(room), owner.map(uid));
        inputs.push(Input::EffectFailed { room_id, owner, step, no_answer: true, reason: "502".into() });
    }
    inputs.push(Input::DigestPartFailed {
        owner: uid(ALICE),
        messages: vec![original.clone(), meta_n(STRANGER, GROUP, 1).event_id],
        invites: vec![rid(GROUP), rid(BOB_HELD)],
    });
    for action in [
        links::LinkAction::Allow,
        links::LinkAction::Allow30,
        links::LinkAction::Deny,
        links::LinkAction::Block,
        links::LinkAction::BlockServer,
        links::LinkAction::Unsubscribe,
    ] {
        inputs.push(Input::LinkUsed { owner: uid(ALICE), action, subject: Some(usr(STRANGER)), nonce: "n".into() });
    }
    inputs.push(Input::Tick);
    // Gatekeeper's start, and what the homeserver said to its native effects.
    use crate::native::{FilterSeen, NativeInput, ReportVia};
    inputs.push(Input::Native(NativeInput::Refresh { owner: uid(ALICE) }));
    let (owner, user, seed) = (uid(ALICE), uid(SPAMMER), "$e".to_owned());
    inputs.push(Input::Native(NativeInput::Reported { owner, user, via: ReportVia::User, seed }));
    for owner in [ALICE, BOB] {
        let seen = FilterSeen {
            blocks_all: true,
            blocked: vec![usr(FRIEND), usr(SPAMMER), Subject::Server("evil.org".try_into().unwrap())],
            allowed: vec![usr(STRANGER)],
            ..Default::default()
        };
        inputs.push(Input::Native(NativeInput::InviteFilterRead { owner: uid(owner), seen }));
    }
    for owner in [ALICE, BOB] {
        inputs.push(Input::OwnerDue { owner: uid(owner) });
    }
    inputs
}

fn configs() -> Vec<EngineConfig> {
    let mail = EngineConfig {
        mail_secret: Some(gatekeeper_common::Secret::new("k".repeat(40))),
        mail_links: Some(MailLinks { public_url: "https://gk.example.org".into(), lifetime_ms: 86_400_000 }),
        notify_allowed: true,
        ..config()
    };
    vec![config(), mail, client_config()]
}

#[test]
fn every_command_is_in_the_corpus() {
    for spec in crate::commands::ALL {
        let given = COMMANDS
            .iter()
            .filter_map(|c| crate::commands::parse(c))
            .any(|c| c.spec().is_some_and(|s| s.name == spec.name));
        assert!(given, "`{}` is missing from the corpus of the reads test", spec.name);
    }
}

#[test]
fn deciding_from_the_declared_reads_equals_deciding_with_everything_loaded() {
    let base = world();
    // Alice paused, and asked for an e-mail code: rules that read more of her.
    let mut paused = base.clone();
    let pending =
        PendingEmail { address: "me@alice.example".into(), code: "123456".into(), expires_ms: NOW + 1, attempts: 0 };
    paused.owners.insert(
        uid(ALICE),
        OwnerState { paused_until_ms: Some(NOW + 60_000), email_pending: Some(pending), ..owner() },
    );
    let mut compared = 0;
    let mut decided_something = 0;
    for w in [base, paused] {
        for cfg in configs() {
            for input in inputs() {
                let declared = w.declared(&input);
                let decision = decide(&declared, &input, NOW, &cfg);
                // The named owner's overview, or (none named) any owner's.
                let owners: Vec<OwnedUserId> = match overview_read(&declared, &input) {
                    Some(owner) => vec![owner],
                    None => w.owners.keys().cloned().collect(),
                };
                for owner in owners {
                    let loaded = decide(&w.loaded(&input, &owner), &input, NOW, &cfg);
                    assert_eq!(
                        decision, loaded,
                        "{input:?} decides differently with {owner}'s overview and what is due loaded: \
                         its rule reads what `reads`/`overview_read` do not declare"
                    );
                    compared += 1;
                }
                decided_something += usize::from(!decision.is_empty());
            }
        }
    }
    // The corpus must exercise rules, not only ignored inputs.
    assert!(compared > 500 && decided_something > 100, "{compared} comparisons, {decided_something} decisions");
}
