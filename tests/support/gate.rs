//! Steps shared by the gate and decision scenarios, and the barriers that
//! show something did not happen without waiting a fixed time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Client, Mode, PushGateway, World, eventually};

pub const LONG: Duration = Duration::from_secs(60);

/// Opts `owner` in and waits until the invite-silencing rule is in place:
/// by inviting the bot, or in client mode by logging Gatekeeper in as a
/// device of the owner's account and starting it.
pub async fn opt_in(w: &mut World, owner: &Client) -> String {
    let control = match w.gatekeeper.mode {
        Mode::Appservice => owner.create_dm(&w.bot()).await,
        Mode::Client => {
            w.gatekeeper.login();
            start(w).await;
            eventually("the control room", LONG, || {
                let o = owner.clone();
                async move { o.room_named("Gatekeeper").await }
            })
            .await
        }
    };
    eventually("the greeting", LONG, || {
        let (o, c, voice) = (owner.clone(), control.clone(), w.voice(&owner.user_id));
        async move { o.notices_from(&c, &voice).await.into_iter().next() }
    })
    .await;
    eventually("the invite-silencing push rule", LONG, || {
        let o = owner.clone();
        async move { o.override_rule_ids().await.contains(&"gk.hold.invites".to_owned()).then_some(()) }
    })
    .await;
    control
}

/// Sends a command in the control room and returns Gatekeeper's answer.
pub async fn ask(w: &World, owner: &Client, control: &str, command: &str) -> String {
    let voice = w.voice(&owner.user_id);
    let before = owner.notices_from(control, &voice).await.len();
    owner.send_text(control, command).await;
    eventually(&format!("the answer to {command:?}"), LONG, || {
        let (o, c, v) = (owner.clone(), control.to_owned(), voice.clone());
        async move { o.notices_from(&c, &v).await.get(before).cloned() }
    })
    .await
}

/// Waits for the etiquette reply `stranger` gets from `owner` in `room`.
pub async fn reply_to(stranger: &Client, room: &str, owner: &str) -> String {
    eventually(&format!("the etiquette reply to {}", stranger.user_id), LONG, || {
        let (s, r, o) = (stranger.clone(), room.to_owned(), owner.to_owned());
        async move { s.notices_from(&r, &o).await.into_iter().next() }
    })
    .await
}

/// Waits until `client` sees `user`'s membership in `room` become `membership`.
pub async fn wait_membership(client: &Client, room: &str, user: &str, membership: &str) {
    eventually(&format!("{user} to be {membership} in {room}"), LONG, || {
        let (c, r, u) = (client.clone(), room.to_owned(), user.to_owned());
        let want = membership.to_owned();
        async move { (c.membership_of(&r, &u).await.as_deref() == Some(want.as_str())).then_some(()) }
    })
    .await;
}

/// Starts Gatekeeper and waits until it is ready: the start-up ping, or in
/// client mode the first sync. A client-mode Gatekeeper not yet logged in
/// starts at opt-in instead.
pub async fn start(w: &mut World) {
    if w.gatekeeper.mode == Mode::Client && !w.gatekeeper.logged_in() {
        return;
    }
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log(w.gatekeeper.ready_line(), LONG).await;
}

/// Returns once Gatekeeper has decided every event sent before the call and
/// carried out (or set aside) every effect those decisions queued on its
/// Matrix lane: after it, a reply or an action that has not shown up will
/// not.
///
/// The owner sends two words Gatekeeper does not know, the second after the
/// first's answer, and each answer names its word. One word is not enough:
/// neither intake keeps the order of events across rooms (Synapse's
/// appservice sender handles the rooms of one batch side by side; a sync
/// response groups its events by room), so an earlier event in another room
/// may be queued after the first word. The second word is sent after
/// Gatekeeper answered the first, so after everything up to the first word
/// was handed to it: it is queued behind every earlier event. Gatekeeper
/// decides its inbox in order and the executor carries out the outbox in
/// order, so the second answer comes after every earlier effect.
///
/// Not covered, so wait for what they show instead: the e-mail lane (a
/// queue of its own), and effects decided from what an earlier effect
/// learned (a follow-up, such as the messages read back after a join).
pub async fn barrier(w: &World, owner: &Client, control: &str) {
    static WORDS: AtomicU64 = AtomicU64::new(0);
    let voice = w.voice(&owner.user_id);
    for _ in 0..2 {
        let word = format!("barrier-{}", WORDS.fetch_add(1, Ordering::Relaxed));
        owner.send_text(control, &word).await;
        let named = format!("\"{word}\"");
        eventually(&format!("the answer to {word:?}"), LONG, || {
            let (o, c, v, named) = (owner.clone(), control.to_owned(), voice.clone(), named.clone());
            async move { o.notices_from(&c, &v).await.iter().any(|n| n.contains(&named)).then_some(()) }
        })
        .await;
    }
}

/// A chat of two the owner started, whose messages ring her (Synapse's
/// default one-to-one rule; Gatekeeper holds only what others start): the
/// barrier for "no push came".
pub struct Bell {
    pub room: String,
    client: Client,
}

impl Bell {
    pub async fn hang(w: &World, owner: &Client) -> Bell {
        Bell::hang_as(w, owner, "bell").await
    }

    /// A bell rung by a user of its own (one per owner in a scenario).
    pub async fn hang_as(w: &World, owner: &Client, localpart: &str) -> Bell {
        let client = w.synapse.register(localpart).await;
        let room = owner.create_dm(&client.user_id).await;
        client.join(&room).await;
        Bell { room, client }
    }

    /// Rings and waits for the push. Synapse decides an event's pushes when
    /// it stores the event, and its pusher sends an owner's pushes one at a
    /// time in that order: once this one has arrived, no push for an event
    /// sent before the call is still to come.
    pub async fn ring(&self, push: &PushGateway, owner: &Client) {
        let event = self.client.send_text(&self.room, "ring").await;
        push.wait_for(&owner.user_id, &event).await;
    }
}
