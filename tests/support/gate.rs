//! Steps shared by the gate and decision scenarios.

use std::time::Duration;

use super::{Client, Mode, World, eventually};

pub const LONG: Duration = Duration::from_secs(60);
/// Synapse pushes within a fraction of a second; waiting this long for a
/// push that must not come is a generous bound.
pub const SETTLE: Duration = Duration::from_secs(3);

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
