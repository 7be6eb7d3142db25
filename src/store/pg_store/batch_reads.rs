//! A batch's look-ups in one statement per kind of key: the processor asks
//! for every room and sender of a batch before deciding it (see
//! [`Lookups::rooms_of`]), and each round trip to the server costs more
//! than the read itself. The keys go as arrays joined `WITH ORDINALITY`,
//! so that each answer lands at the position of the key it answers (a
//! key asked twice is answered twice).

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{Db, Params, decode_room, records};
use crate::engine::{Contact, Kept, OwnerState, RoomState, StrangerState, Subject, WaveKey, WaveRecord};
use crate::store::records::{ContactRecord, OwnerRecord, SeenRecord, StrangerRecord, WaveRecordV};
use crate::store::{StoreError, tally};

impl<C: postgres::GenericClient> Db<'_, C> {
    /// Runs `sql`, whose rows are a key's position (from 1) then what
    /// `decode` reads, into one answer per key (`None` where none was found).
    fn by_position<T>(
        &self,
        keys: usize,
        sql: &'static str,
        params: &Params<'_>,
        mut decode: impl FnMut(&postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<Vec<T>>, StoreError> {
        let mut out: Vec<Vec<T>> = (0..keys).map(|_| Vec::new()).collect();
        for row in self.query(sql, params)? {
            let n: i64 = row.get(0);
            let slot = usize::try_from(n - 1)
                .ok()
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| StoreError::Backend(format!("a batch read answered key {n} of {keys}")))?;
            slot.push(decode(&row)?);
        }
        Ok(out)
    }

    /// [`Db::by_position`] for keys that name at most one record each.
    fn one_each<R, T>(
        &self,
        what: &str,
        keys: usize,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Option<T>>, StoreError>
    where
        R: for<'de> serde::Deserialize<'de> + Into<T>,
    {
        let found =
            self.by_position(keys, sql, params, |row| records::decode::<R>(what, row.get(1)).map(Into::into))?;
        Ok(found.into_iter().map(|mut v| v.pop()).collect())
    }
}

fn bytes<T: AsRef<str>>(keys: impl IntoIterator<Item = T>) -> Vec<Vec<u8>> {
    keys.into_iter().map(|k| k.as_ref().as_bytes().to_vec()).collect()
}

pub(super) fn rooms_of(
    db: &Db<'_, impl postgres::GenericClient>,
    rooms: &[OwnedRoomId],
) -> Result<Vec<Vec<RoomState>>, StoreError> {
    db.by_position(
        rooms.len(),
        "SELECT k.n, r.record FROM unnest($1::bytea[]) WITH ORDINALITY AS k(id, n) \
         JOIN rooms r ON r.room_id = k.id ORDER BY k.n, r.owner",
        &[&bytes(rooms)],
        |row| decode_room(row.get(1)),
    )
}

pub(super) fn owners_of(
    db: &Db<'_, impl postgres::GenericClient>,
    users: &[OwnedUserId],
) -> Result<Vec<Option<OwnerState>>, StoreError> {
    db.one_each::<OwnerRecord, _>(
        "owner",
        users.len(),
        "SELECT k.n, o.record FROM unnest($1::bytea[]) WITH ORDINALITY AS k(id, n) JOIN owners o ON o.user_id = k.id",
        &[&bytes(users)],
    )
}

pub(super) fn contacts_of(
    db: &Db<'_, impl postgres::GenericClient>,
    keys: &[(OwnedUserId, Subject)],
) -> Result<Vec<Option<Contact>>, StoreError> {
    db.one_each::<ContactRecord, _>(
        "contact",
        keys.len(),
        "SELECT k.n, c.record FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS k(o, s, n) \
         JOIN contacts c ON c.owner = k.o AND c.subject = k.s",
        &[&bytes(keys.iter().map(|(o, _)| o)), &bytes(keys.iter().map(|(_, s)| s.to_string()))],
    )
}

pub(super) fn strangers_of(
    db: &Db<'_, impl postgres::GenericClient>,
    keys: &[(OwnedUserId, OwnedUserId)],
) -> Result<Vec<Option<StrangerState>>, StoreError> {
    db.one_each::<StrangerRecord, _>(
        "stranger",
        keys.len(),
        "SELECT k.n, s.record FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS k(o, u, n) \
         JOIN strangers s ON s.owner = k.o AND s.user_id = k.u",
        &[&bytes(keys.iter().map(|(o, _)| o)), &bytes(keys.iter().map(|(_, u)| u))],
    )
}

pub(super) fn waves_of(
    db: &Db<'_, impl postgres::GenericClient>,
    keys: &[WaveKey],
) -> Result<Vec<Option<WaveRecord>>, StoreError> {
    let encoded: Vec<Vec<u8>> = keys.iter().map(records::wave_key).collect();
    db.one_each::<WaveRecordV, _>(
        "wave",
        keys.len(),
        "SELECT k.n, w.record FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, n) JOIN waves w ON w.key = k.key",
        &[&encoded],
    )
}

pub(super) fn seen_events_of(
    db: &Db<'_, impl postgres::GenericClient>,
    rooms: &[OwnedRoomId],
) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
    let found = db.one_each::<SeenRecord, Vec<OwnedEventId>>(
        "seen",
        rooms.len(),
        "SELECT k.n, s.record FROM unnest($1::bytea[]) WITH ORDINALITY AS k(id, n) JOIN seen s ON s.room_id = k.id",
        &[&bytes(rooms)],
    )?;
    Ok(found.into_iter().map(Option::unwrap_or_default).collect())
}

/// Two counts per key asked (held rooms, then messages), as
/// [`tally::kept`] reads them one at a time.
pub(super) fn kept_of(
    db: &Db<'_, impl postgres::GenericClient>,
    keys: &[(OwnedUserId, Option<OwnedUserId>)],
) -> Result<Vec<Kept>, StoreError> {
    let counted: Vec<Vec<u8>> = keys
        .iter()
        .flat_map(|(owner, with)| {
            [tally::What::HeldRooms, tally::What::Messages]
                .map(|what| tally::Key { what, owner: Some(owner.clone()), with: with.clone() }.encode())
        })
        .collect();
    let found = db.by_position(
        counted.len(),
        "SELECT k.n, c.count FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, n) \
         JOIN kept_counts c ON c.key = k.key",
        &[&counted],
        |row| Ok(super::unbig(row.get(1))),
    )?;
    let counts: Vec<u64> = found.into_iter().map(|mut v| v.pop().unwrap_or(0)).collect();
    Ok(counts.chunks(2).map(|c| Kept { held_rooms: c[0], messages: c[1] }).collect())
}
