//! Entry points for fuzzing (`fuzz/`, with cargo-fuzz, by hand) and for
//! the short randomized run in the test suite. Each takes arbitrary bytes
//! and panics only when it finds a bug: a crash, an engine panic, sender
//! text reaching HTML unescaped, or a line break reaching a mail header.

use std::sync::LazyLock;

use crate::engine::{self, Deferred, EngineConfig, HeldRoom, OwnerOverview, OwnerState};
use crate::store::{MemoryStore, Store};

static CONFIG: LazyLock<EngineConfig> = LazyLock::new(EngineConfig::example);

/// Splits fuzz input into `n` strings at 0xFF bytes (lossy UTF-8).
fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> =
        data.splitn(n, |b| *b == 0xFF).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    out.resize(n, String::new());
    out
}

/// A transaction body through the intake's parser, the store and the
/// engine: whatever arrives is stored or refused, and every event is
/// decided or set aside without the engine failing.
pub fn transaction(data: &[u8]) {
    let store = MemoryStore::new();
    // An owner with a control room and a held room, so events reach rules.
    let setup = [
        br#"{"type":"m.room.member","event_id":"$i","room_id":"!c:example.org","sender":"@alice:example.org","state_key":"@gatekeeper:example.org","content":{"membership":"invite","is_direct":true}}"#.as_slice(),
        br#"{"type":"m.room.member","event_id":"$j","room_id":"!c:example.org","sender":"@gatekeeper:example.org","state_key":"@gatekeeper:example.org","content":{"membership":"join"}}"#,
        br#"{"type":"m.room.member","event_id":"$k","room_id":"!h:x.org","sender":"@s:x.org","state_key":"@alice:example.org","content":{"membership":"invite","is_direct":true}}"#,
    ];
    store.accept_transaction("setup", &setup, 1).expect("memory store");
    let _ = crate::appservice::http::parse_and_store(&store, "fuzz", &bytes::Bytes::copy_from_slice(data), 1);
    while store.stats().expect("memory store").inbox_pending > 0 {
        crate::pipeline::processor::process_batch(&store, &CONFIG, &crate::pipeline::clock::ManualClock::at(1))
            .expect("memory store");
    }
    for q in store.quarantined(1000).expect("memory store") {
        assert!(!q.reason.contains("engine failed"), "the engine panicked on: {}", q.raw);
    }
}

/// Any text as a command from the owner in the control room.
pub fn command(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    let _ = engine::commands::parse(&body);
    let owner = OwnerState::new(
        "@alice:example.org".try_into().expect("valid"),
        "!c:example.org".try_into().expect("valid"),
        1,
    );
    let mut snapshot = engine::Snapshot {
        rooms: vec![engine::RoomState::Control { owner: owner.user_id.clone() }],
        overview: Some(OwnerOverview::default()),
        ..Default::default()
    };
    snapshot.owners.insert(owner.user_id.clone(), owner);
    let input = engine::Input::Message {
        meta: engine::EventMeta {
            event_id: "$cmd".try_into().expect("valid"),
            room_id: "!c:example.org".try_into().expect("valid"),
            sender: "@alice:example.org".try_into().expect("valid"),
            ts_ms: 1,
        },
        msgtype: "m.text".into(),
        body: body.into_owned(),
        html: None,
        media: None,
        replaces: None,
    };
    let _ = engine::decide(&snapshot, &input, 1_700_000_000_000, &CONFIG);
}

/// Sender-controlled text (a message, a display name, a room name) in the
/// digest: it may appear, but never as markup.
pub fn digest(data: &[u8]) {
    let f = fields(data, 4);
    // A marker no escaping leaves intact: if it survives, markup got through.
    let (body, name, room, reason) =
        (format!("<zq{}", f[0]), format!("<zq{}", f[1]), format!("<zq{}", f[2]), format!("<zq{}", f[3]));
    let owner_id: ruma::OwnedUserId = "@alice:example.org".try_into().expect("valid");
    let sender: ruma::OwnedUserId = "@s:x.org".try_into().expect("valid");
    let mut overview = OwnerOverview::default();
    overview.deferred.push(Deferred {
        owner: owner_id.clone(),
        room_id: "!h:x.org".try_into().expect("valid"),
        event_id: "$m".try_into().expect("valid"),
        sender: sender.clone(),
        ts_ms: 1_700_000_000_000,
        received_ms: 1_700_000_000_000,
        msgtype: "m.text".into(),
        html: Some(crate::pipeline::translate::sanitize(&body)),
        body,
        media: None,
        encrypted: false,
        edited: false,
        digested: false,
        redacted_by: None,
        denied_ms: None,
    });
    overview.held.insert(
        "!g:x.org".try_into().expect("valid"),
        HeldRoom {
            owner: owner_id.clone(),
            inviter: sender,
            inviter_name: Some(name),
            is_dm: false,
            invited_at_ms: 1_700_000_000_000,
            name: Some(room),
            members: Some(3),
            reason: Some(reason),
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
    let owner = OwnerState::new(owner_id, "!c:example.org".try_into().expect("valid"), 1);
    let digest = engine::digest::render(&owner, &overview).expect("something new");
    for part in &digest.parts {
        assert!(!part.html.contains("<zq"), "sender text reached the HTML unescaped: {}", part.html);
    }
}

/// Arbitrary subject, text and unsubscribe URL: the mail either cannot be
/// built or has only the headers Gatekeeper writes.
pub fn email(data: &[u8]) {
    let f = fields(data, 4);
    let from: lettre::message::Mailbox = "Gatekeeper <gk@example.org>".parse().expect("valid");
    let Ok(message) =
        crate::email::Mailer::build(&from, &f[0], &f[1], &f[2], "<p>x</p>", "<id@example.org>", Some(&f[3]))
    else {
        return;
    };
    let raw = message.formatted();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    const OURS: [&str; 11] = [
        "From:",
        "To:",
        "Subject:",
        "Message-ID:",
        "Auto-Submitted:",
        "List-Unsubscribe:",
        "List-Unsubscribe-Post:",
        "Date:",
        "MIME-Version:",
        "Content-Type:",
        "Content-Transfer-Encoding:",
    ];
    for line in head.split("\r\n") {
        let continued = line.starts_with(' ') || line.starts_with('\t');
        assert!(continued || OURS.iter().any(|h| line.starts_with(h)), "a header was injected: {line:?}");
    }
}

/// Any text as a configuration file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = crate::config::Config::parse(&text, std::path::Path::new("fuzz.yaml"), Vec::new()) {
        let _ = crate::config::check(&config);
    }
}
