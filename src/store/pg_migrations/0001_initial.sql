-- Gatekeeper's store on PostgreSQL, schema version 1.
--
-- Records are the same versioned serde records the sled store keeps
-- (src/store/records.rs), as JSON bytes in `bytea`: not `jsonb`, which
-- refuses the NUL character (`\u0000`) that a stranger's message may carry.
-- Keys that come from the homeserver or a remote server (IDs, state keys,
-- transaction IDs) are `bytea` too, for the same reason: `text` cannot hold
-- a NUL byte.

-- Accepted transaction IDs, for replay detection.
CREATE TABLE txns (
    txn_id bytea PRIMARY KEY,
    at_ms bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX txns_at ON txns (at_ms);

-- Events waiting to be decided, in arrival order.
CREATE TABLE inbox (
    seq bigserial PRIMARY KEY,
    internal boolean NOT NULL,
    raw bytea NOT NULL
);

-- Effects waiting to be carried out, in order; `mail` is the executor.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    mail boolean NOT NULL,
    record bytea NOT NULL
);

CREATE TABLE owners (
    user_id bytea PRIMARY KEY,
    paused_until_ms bigint,
    record bytea NOT NULL
);

-- Each owner's record of a room: a room may be held for several owners.
CREATE TABLE rooms (
    room_id bytea NOT NULL,
    owner bytea NOT NULL,
    held boolean NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (room_id, owner)
);
CREATE INDEX rooms_held_by_owner ON rooms (owner, room_id) WHERE held;

CREATE TABLE contacts (
    owner bytea NOT NULL,
    subject bytea NOT NULL,
    -- Set for an allow with an end, for the housekeeping's look-up.
    allowed_until_ms bigint,
    record bytea NOT NULL,
    PRIMARY KEY (owner, subject)
);
CREATE INDEX contacts_until ON contacts (allowed_until_ms) WHERE allowed_until_ms IS NOT NULL;

CREATE TABLE strangers (
    owner bytea NOT NULL,
    user_id bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (owner, user_id)
);

-- Captured messages.
CREATE TABLE deferred (
    owner bytea NOT NULL,
    event_id bytea NOT NULL,
    received_ms bigint NOT NULL,
    denied_ms bigint,
    record bytea NOT NULL,
    PRIMARY KEY (owner, event_id)
);

-- Counts of held rooms and kept messages (see src/store/tally.rs), by the
-- tally's own key, changed in the same transaction as what they count.
CREATE TABLE kept_counts (
    key bytea PRIMARY KEY,
    count bigint NOT NULL
);

CREATE TABLE waves (
    key bytea PRIMARY KEY,
    expires_ms bigint NOT NULL,
    record bytea NOT NULL
);

-- Followed ban lists, kept once whoever follows them, without their rules.
CREATE TABLE policy_lists (
    room_id bytea PRIMARY KEY,
    operator boolean NOT NULL,
    record bytea NOT NULL
);

-- One row per rule, by slot (event type, state key), with the index key
-- that invitations look rules up by.
CREATE TABLE policy_rules (
    room_id bytea NOT NULL,
    kind bytea NOT NULL,
    state_key bytea NOT NULL,
    index_key bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (room_id, kind, state_key)
);
CREATE INDEX policy_rules_by_name ON policy_rules (room_id, index_key);

CREATE TABLE quarantine (
    seq bigint PRIMARY KEY,
    at_ms bigint NOT NULL,
    record bytea NOT NULL
);

CREATE TABLE used_links (
    nonce bytea PRIMARY KEY,
    expires_ms bigint NOT NULL
);

CREATE TABLE failed_effects (
    id bigint PRIMARY KEY,
    record bytea NOT NULL
);

-- The events consumed last from each tracked room.
CREATE TABLE seen (
    room_id bytea PRIMARY KEY,
    record bytea NOT NULL
);

CREATE TABLE connector (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);

-- Running totals (transactions, events processed, ...) and single values
-- (the outbox's high-water mark, the highest transaction number, the
-- quarantine's size), by name.
CREATE TABLE counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);

-- The client-mode sync position: apart from connector values, so that no
-- connector key can overwrite it.
CREATE TABLE sync_position (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    position bytea NOT NULL
);
