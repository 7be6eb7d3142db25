-- Schema version 2: the lease two Gatekeepers on one database take turns
-- on. Who holds it is a session advisory lock (it ends with the holder's
-- connection); `epoch` is bumped by every Gatekeeper that takes it, and
-- every write transaction of the holder reads it `FOR SHARE` and compares:
-- a holder that lost its lease (its connection dropped, another took over)
-- can write nothing more, even if it still runs.
CREATE TABLE gatekeeper_lease (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch bigint NOT NULL,
    -- Who took it last, and when (milliseconds): for operators.
    holder text NOT NULL,
    taken_ms bigint NOT NULL
);
INSERT INTO gatekeeper_lease (epoch, holder, taken_ms) VALUES (0, '', 0);
