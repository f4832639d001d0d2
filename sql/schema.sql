-- The full pts schema for a fresh database. `pts migrate` applies it to an empty
-- database and records every migration in sql/migrations/ as applied; on an
-- existing database it applies the missing migrations instead. Keep both in
-- step: tests/test_migrations.py checks that they build the same catalog.

CREATE SCHEMA IF NOT EXISTS pts;

-- One row per stream. `size` is the next byte offset: the number of bytes
-- stored in pts.chunks for this stream. It is only ever changed together with
-- a chunk insert, in the same statement, so size and chunks always agree.
CREATE TABLE pts.streams (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id     text        UNIQUE,
    path          text        UNIQUE,
    content_type  text        NOT NULL DEFAULT 'text/plain',
    status        text        NOT NULL DEFAULT 'pending',
    size          bigint      NOT NULL DEFAULT 0,
    closed        boolean     NOT NULL DEFAULT false,
    abort_reason  text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz,
    finished_at   timestamptz,
    expires_at    timestamptz,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    owner         text,
    -- Durable Streams (sql/migrations/0002_durable_streams.sql explains each).
    ttl_seconds        bigint,
    stream_seq         text,
    forked_from        uuid REFERENCES pts.streams (id) ON DELETE CASCADE,
    fork_offset        bigint,
    fork_sub_offset    bigint,
    deleted_at         timestamptz,
    closed_by_producer text,
    closed_by_epoch    bigint,
    closed_by_seq      bigint,
    CONSTRAINT streams_status_check
        CHECK (status IN ('pending', 'streaming', 'done', 'error', 'timeout', 'aborted')),
    CONSTRAINT streams_size_check CHECK (size >= 0),
    -- A finished stream is always closed to appends.
    CONSTRAINT streams_finished_closed_check
        CHECK (status IN ('pending', 'streaming') OR closed),
    -- A driven stream always has a heartbeat, so the sweeper can judge it.
    CONSTRAINT streams_streaming_heartbeat_check
        CHECK (status <> 'streaming' OR heartbeat_at IS NOT NULL),
    CONSTRAINT streams_ttl_seconds_check CHECK (ttl_seconds IS NULL OR ttl_seconds >= 0),
    CONSTRAINT streams_fork_check
        CHECK ((forked_from IS NULL) = (fork_offset IS NULL) AND coalesce(fork_offset, 0) <= size)
);

-- The sweeper looks for live streams whose driver stopped heartbeating.
CREATE INDEX streams_streaming_heartbeat_idx
    ON pts.streams (heartbeat_at) WHERE status = 'streaming';
CREATE INDEX streams_expires_at_idx
    ON pts.streams (expires_at) WHERE expires_at IS NOT NULL;
-- The sweeper's pending timeout looks for pts streams (no path) nobody claimed.
-- On created_at, not updated_at: no index may cover a column an append changes
-- (size, updated_at), so that each append's update of its row is a HOT one
-- (sql/migrations/0007_hot_appends.sql).
CREATE INDEX streams_pending_created_at_idx
    ON pts.streams (created_at) WHERE status = 'pending' AND path IS NULL;

-- Append-only text. A chunk covers bytes [start_offset, start_offset + length(data)).
CREATE TABLE pts.chunks (
    stream_id     uuid        NOT NULL REFERENCES pts.streams (id) ON DELETE CASCADE,
    start_offset  bigint      NOT NULL,
    data          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, start_offset),
    CONSTRAINT chunks_start_offset_check CHECK (start_offset >= 0),
    CONSTRAINT chunks_data_check CHECK (octet_length(data) > 0)
);

-- Whole bodies for plain SQL users: SELECT text FROM pts.stream_bodies WHERE id = ...
-- `text` decodes as UTF-8; `body` is the raw bytes (for non-text streams). A
-- fork's body starts with the bytes it shares with its source.
CREATE VIEW pts.stream_bodies AS
SELECT s.id,
       s.status,
       convert_from(b.body, 'UTF8') AS text,
       s.size,
       s.closed,
       s.content_type,
       s.client_id,
       s.path,
       s.abort_reason,
       s.error,
       s.metadata,
       s.owner,
       s.created_at,
       s.updated_at,
       s.finished_at,
       b.body
  FROM pts.streams s
 CROSS JOIN LATERAL (
       WITH RECURSIVE lineage AS (
           SELECT s.id, s.forked_from, s.fork_offset, NULL::bigint AS upto
           UNION ALL
           SELECT p.id, p.forked_from, p.fork_offset, least(l.fork_offset, l.upto)
             FROM lineage l
             JOIN pts.streams p ON p.id = l.forked_from
       )
       -- An ancestor's row may straddle the fork point (a merged row, 0005): clip it.
       SELECT coalesce(string_agg(
                  CASE WHEN l.upto IS NOT NULL AND c.start_offset + octet_length(c.data) > l.upto
                       THEN substring(c.data FROM 1 FOR (l.upto - c.start_offset)::integer)
                       ELSE c.data END,
                  ''::bytea ORDER BY c.start_offset), ''::bytea) AS body
         FROM lineage l
         JOIN pts.chunks c ON c.stream_id = l.id AND (l.upto IS NULL OR c.start_offset < l.upto)
       ) b;

-- Finished streams never reopen, whoever writes the UPDATE.
CREATE FUNCTION pts.guard_status_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status NOT IN ('pending', 'streaming') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'pts: stream % is already %, it cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.closed AND NOT NEW.closed THEN
        RAISE EXCEPTION 'pts: stream % is closed, it cannot reopen', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.size < OLD.size THEN
        RAISE EXCEPTION 'pts: stream % cannot shrink from % to % bytes', OLD.id, OLD.size, NEW.size
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER streams_guard_status
    BEFORE UPDATE ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.guard_status_v1();

-- One notification per committed change of size, status or closed flag, on the
-- versioned channel 'pts_v1'. The payload is small JSON: {"id", "size", "status", "closed"}.
-- Postgres delivers it at commit, so a listener never sees uncommitted bytes.
-- A deleted stream notifies with status "deleted".
CREATE FUNCTION pts.notify_change_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pts_v1', json_build_object(
            'id', OLD.id, 'size', OLD.size, 'status', 'deleted', 'closed', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('pts_v1', json_build_object(
        'id', NEW.id, 'size', NEW.size, 'status', NEW.status, 'closed', NEW.closed)::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER streams_notify_insert
    AFTER INSERT ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v1();

CREATE TRIGGER streams_notify_update
    AFTER UPDATE ON pts.streams
    FOR EACH ROW
    WHEN (OLD.size IS DISTINCT FROM NEW.size
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.closed IS DISTINCT FROM NEW.closed)
    EXECUTE FUNCTION pts.notify_change_v1();

CREATE TRIGGER streams_notify_delete
    AFTER DELETE ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v1();

-- Durable Streams: forks, producers, and the protocol's create/append/delete.
CREATE INDEX streams_forked_from_idx ON pts.streams (forked_from) WHERE forked_from IS NOT NULL;
-- The sweeper's garbage collection looks for deleted streams (and expired ones:
-- streams_expires_at_idx).
CREATE INDEX streams_deleted_at_idx ON pts.streams (deleted_at) WHERE deleted_at IS NOT NULL;

-- One row per (stream, producer): the epoch it writes in and the last sequence
-- number accepted, updated in the same transaction as the data it guards.
CREATE TABLE pts.producers (
    stream_id    uuid        NOT NULL REFERENCES pts.streams (id) ON DELETE CASCADE,
    producer_id  text        NOT NULL,
    epoch        bigint      NOT NULL,
    last_seq     bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, producer_id),
    CONSTRAINT producers_epoch_check CHECK (epoch >= 0),
    CONSTRAINT producers_last_seq_check CHECK (last_seq >= 0)
);

-- True while some fork below this stream (at any depth) is alive: neither
-- expired nor deleted. Such a stream must keep its bytes (a soft delete).
-- Dead forks in between do not break the chain: their own live forks read
-- through them.
CREATE FUNCTION pts.ds_referenced_v1(p_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE below AS (
        SELECT id, expires_at, deleted_at FROM pts.streams WHERE forked_from = p_id
        UNION ALL
        SELECT c.id, c.expires_at, c.deleted_at
          FROM pts.streams c JOIN below b ON c.forked_from = b.id
    )
    SELECT EXISTS (SELECT 1 FROM below
                    WHERE deleted_at IS NULL AND (expires_at IS NULL OR expires_at > now()));
$$;

-- Removes a stream nobody can reach any more (deleted or expired, and no live
-- fork), then its ancestors that became unreachable with it. Returns how many
-- streams went, the dead forks below it (ON DELETE CASCADE) included.
CREATE FUNCTION pts.ds_collect_v1(p_id uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    current_id uuid := p_id;
    parent uuid;
    dead boolean;
    removed integer := 0;
BEGIN
    WHILE current_id IS NOT NULL LOOP
        SELECT forked_from,
               deleted_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= now())
          INTO parent, dead
          FROM pts.streams WHERE id = current_id FOR UPDATE;
        IF NOT FOUND OR NOT dead OR pts.ds_referenced_v1(current_id) THEN
            RETURN removed;
        END IF;
        -- Its dead forks go with it (ON DELETE CASCADE): count them too.
        removed := removed + 1 + (
            WITH RECURSIVE below AS (
                SELECT id FROM pts.streams WHERE forked_from = current_id
                UNION ALL
                SELECT c.id FROM pts.streams c JOIN below b ON c.forked_from = b.id
            )
            SELECT count(*) FROM below);
        DELETE FROM pts.streams WHERE id = current_id;
        current_id := parent;
    END LOOP;
    RETURN removed;
END;
$$;

-- PUT: create the stream at p_path, or report what is there.
-- Outcomes: 'created' | 'exists' (compare its config in the caller) | 'gone'
-- (soft-deleted: the path stays taken) | 'source_not_found' | 'source_gone' |
-- 'bad_fork_offset'. p_ttl wins over p_expires_at (the caller rejects both).
-- A fork's first own chunk is p_prefix (the materialized sub-offset), then p_data.
CREATE FUNCTION pts.ds_create_v1(
    p_path text, p_content_type text, p_ttl bigint, p_expires_at timestamptz,
    p_closed boolean, p_data bytea, p_source uuid, p_fork_offset bigint,
    p_sub_offset bigint, p_prefix bytea
) RETURNS TABLE (outcome text, stream_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    s pts.streams%ROWTYPE;
    src pts.streams%ROWTYPE;
    start_at bigint := coalesce(p_fork_offset, 0);
    new_id uuid;
BEGIN
    FOR attempt IN 1..3 LOOP
        SELECT * INTO s FROM pts.streams WHERE path = p_path FOR UPDATE;
        IF FOUND THEN
            IF s.deleted_at IS NOT NULL AND pts.ds_referenced_v1(s.id) THEN
                RETURN QUERY SELECT 'gone'::text, s.id;
                RETURN;
            ELSIF s.deleted_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now()) THEN
                RETURN QUERY SELECT 'exists'::text, s.id;
                RETURN;
            ELSIF pts.ds_referenced_v1(s.id) THEN
                -- Expired, but live forks read its bytes: keep them, free the path.
                UPDATE pts.streams SET path = NULL, deleted_at = now() WHERE id = s.id;
            ELSE
                PERFORM pts.ds_collect_v1(s.id);
            END IF;
        END IF;
        IF p_source IS NOT NULL THEN
            -- FOR SHARE: the source cannot be deleted while its fork is being made.
            SELECT * INTO src FROM pts.streams WHERE id = p_source FOR SHARE;
            IF NOT FOUND OR (src.expires_at IS NOT NULL AND src.expires_at <= now()) THEN
                RETURN QUERY SELECT 'source_not_found'::text, NULL::uuid;
                RETURN;
            ELSIF src.deleted_at IS NOT NULL THEN
                RETURN QUERY SELECT 'source_gone'::text, src.id;
                RETURN;
            ELSIF start_at > src.size THEN
                RETURN QUERY SELECT 'bad_fork_offset'::text, src.id;
                RETURN;
            END IF;
        END IF;
        INSERT INTO pts.streams AS t (path, content_type, status, size, closed, finished_at,
                                      ttl_seconds, expires_at, forked_from, fork_offset,
                                      fork_sub_offset)
        VALUES (p_path, p_content_type,
                CASE WHEN p_closed THEN 'done' ELSE 'pending' END,
                start_at + octet_length(p_prefix) + octet_length(p_data),
                p_closed,
                CASE WHEN p_closed THEN now() END,
                p_ttl,
                CASE WHEN p_ttl IS NOT NULL THEN now() + make_interval(secs => p_ttl)
                     ELSE p_expires_at END,
                p_source,
                CASE WHEN p_source IS NOT NULL THEN start_at END,
                CASE WHEN p_source IS NOT NULL THEN coalesce(p_sub_offset, 0) END)
        ON CONFLICT (path) DO NOTHING
        RETURNING t.id INTO new_id;
        IF new_id IS NOT NULL THEN
            IF octet_length(p_prefix) > 0 THEN
                INSERT INTO pts.chunks (stream_id, start_offset, data)
                VALUES (new_id, start_at, p_prefix);
            END IF;
            IF octet_length(p_data) > 0 THEN
                INSERT INTO pts.chunks (stream_id, start_offset, data)
                VALUES (new_id, start_at + octet_length(p_prefix), p_data);
            END IF;
            RETURN QUERY SELECT 'created'::text, new_id;
            RETURN;
        END IF;
        -- A concurrent PUT created the path first: look again.
    END LOOP;
    RAISE EXCEPTION 'pts: could not create stream at %', p_path USING ERRCODE = 'serialization_failure';
END;
$$;

-- POST: append p_data (possibly empty) and/or close, atomically, under the
-- stream's row lock. The producer rules and Stream-Seq are checked before
-- anything is written, so a refused request changes nothing.
-- Outcomes: 'appended' | 'duplicate' (a producer retry: nothing written) |
-- 'not_found' | 'gone' | 'driven' (a pts driver writes this stream) |
-- 'closed' | 'content_type' | 'stale_epoch' | 'bad_epoch_seq' | 'seq_gap' |
-- 'seq_conflict' | 'too_large' (p_data would take the stream past p_max_size
-- bytes; NULL: no cap). epoch/seq are the producer state to report (for a gap,
-- seq is the one received), expected_seq the sequence number a gap expected.
CREATE FUNCTION pts.ds_append_v2(
    p_path text, p_data bytea, p_media_type text, p_close boolean, p_stream_seq text,
    p_producer text, p_epoch bigint, p_seq bigint, p_max_size bigint
) RETURNS TABLE (outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s pts.streams%ROWTYPE;
    known boolean := false;
    state_epoch bigint;
    state_seq bigint;
    added bigint := octet_length(p_data);
BEGIN
    SELECT * INTO s FROM pts.streams t WHERE t.path = p_path FOR UPDATE;
    IF NOT FOUND OR (s.expires_at IS NOT NULL AND s.expires_at <= now()) THEN
        RETURN QUERY SELECT 'not_found'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.deleted_at IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN pts.ds_referenced_v1(s.id) THEN 'gone' ELSE 'not_found' END,
                            s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.status = 'streaming' THEN
        RETURN QUERY SELECT 'driven'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.closed THEN
        IF p_producer IS NOT NULL AND s.closed_by_producer = p_producer
           AND s.closed_by_epoch = p_epoch AND s.closed_by_seq = p_seq THEN
            RETURN QUERY SELECT 'duplicate'::text, s.id, s.size, true, p_epoch, p_seq, NULL::bigint;
        ELSIF added = 0 AND p_close AND p_producer IS NULL THEN
            -- Closing a closed stream again is a no-op, not an error.
            RETURN QUERY SELECT 'appended'::text, s.id, s.size, true, NULL::bigint, NULL::bigint, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'closed'::text, s.id, s.size, true, NULL::bigint, NULL::bigint, NULL::bigint;
        END IF;
        RETURN;
    END IF;
    IF added > 0 AND lower(btrim(split_part(s.content_type, ';', 1))) <> p_media_type THEN
        RETURN QUERY SELECT 'content_type'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_producer IS NOT NULL THEN
        SELECT pr.epoch, pr.last_seq INTO state_epoch, state_seq
          FROM pts.producers pr
         WHERE pr.stream_id = s.id AND pr.producer_id = p_producer
           FOR UPDATE;
        known := FOUND;
        IF NOT known THEN
            IF p_seq <> 0 THEN
                RETURN QUERY SELECT 'seq_gap'::text, s.id, s.size, s.closed, p_epoch, p_seq, 0::bigint;
                RETURN;
            END IF;
        ELSIF p_epoch < state_epoch THEN
            RETURN QUERY SELECT 'stale_epoch'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
            RETURN;
        ELSIF p_epoch > state_epoch THEN
            IF p_seq <> 0 THEN
                RETURN QUERY SELECT 'bad_epoch_seq'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
                RETURN;
            END IF;
        ELSIF p_seq <= state_seq THEN
            RETURN QUERY SELECT 'duplicate'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
            RETURN;
        ELSIF p_seq > state_seq + 1 THEN
            RETURN QUERY SELECT 'seq_gap'::text, s.id, s.size, s.closed, state_epoch, p_seq, state_seq + 1;
            RETURN;
        END IF;
    END IF;
    IF p_stream_seq IS NOT NULL AND s.stream_seq IS NOT NULL
       AND p_stream_seq COLLATE "C" <= s.stream_seq COLLATE "C" THEN
        RETURN QUERY SELECT 'seq_conflict'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- The size cap, last: a producer's retry of an accepted append stays a duplicate.
    IF p_max_size IS NOT NULL AND s.size + added > p_max_size THEN
        RETURN QUERY SELECT 'too_large'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- Every check passed: write.
    IF p_producer IS NOT NULL THEN
        INSERT INTO pts.producers AS pr (stream_id, producer_id, epoch, last_seq)
        VALUES (s.id, p_producer, p_epoch, p_seq)
        ON CONFLICT ON CONSTRAINT producers_pkey
        DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = now();
    END IF;
    IF added > 0 THEN
        INSERT INTO pts.chunks (stream_id, start_offset, data) VALUES (s.id, s.size, p_data);
    END IF;
    UPDATE pts.streams t
       SET size = t.size + added,
           stream_seq = coalesce(p_stream_seq, t.stream_seq),
           closed = t.closed OR p_close,
           status = CASE WHEN p_close THEN 'done' ELSE t.status END,
           finished_at = CASE WHEN p_close THEN now() ELSE t.finished_at END,
           closed_by_producer = CASE WHEN p_close THEN p_producer ELSE t.closed_by_producer END,
           closed_by_epoch = CASE WHEN p_close THEN p_epoch ELSE t.closed_by_epoch END,
           closed_by_seq = CASE WHEN p_close THEN p_seq ELSE t.closed_by_seq END,
           expires_at = CASE WHEN t.ttl_seconds IS NOT NULL
                             THEN now() + make_interval(secs => t.ttl_seconds)
                             ELSE t.expires_at END,
           updated_at = now()
     WHERE t.id = s.id;
    RETURN QUERY SELECT 'appended'::text, s.id, s.size + added, s.closed OR p_close, p_epoch, p_seq, NULL::bigint;
END;
$$;

-- The version-1 append (no size cap), for code from before migration 0003.
CREATE FUNCTION pts.ds_append_v1(
    p_path text, p_data bytea, p_media_type text, p_close boolean, p_stream_seq text,
    p_producer text, p_epoch bigint, p_seq bigint
) RETURNS TABLE (outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE sql AS $$
    SELECT * FROM pts.ds_append_v2(p_path, p_data, p_media_type, p_close, p_stream_seq,
                                   p_producer, p_epoch, p_seq, NULL);
$$;

-- DELETE: remove the stream, or soft-delete it while live forks read from it
-- (its path stays taken and answers 410 until the last fork goes; then
-- pts.ds_collect_v1 removes it). Returns 'deleted' | 'soft_deleted' | 'not_found'.
CREATE FUNCTION pts.ds_delete_v1(p_id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s pts.streams%ROWTYPE;
BEGIN
    SELECT * INTO s FROM pts.streams WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    IF pts.ds_referenced_v1(p_id) THEN
        UPDATE pts.streams SET deleted_at = coalesce(deleted_at, now()) WHERE id = p_id;
        RETURN 'soft_deleted';
    END IF;
    DELETE FROM pts.streams WHERE id = p_id;
    -- Its source may have been waiting for this last fork to go.
    IF s.forked_from IS NOT NULL THEN
        PERFORM pts.ds_collect_v1(s.forked_from);
    END IF;
    RETURN 'deleted';
END;
$$;


-- Issue 14: group commit (0004)
-- Appends that arrive together commit together: one statement, one transaction,
-- one NOTIFY (Postgres takes a global lock at the commit of every transaction that
-- notified, so a NOTIFY per append capped the append rate).

-- The row trigger, version 2: as version 1, except inside a batch (which sets
-- pts.notify = 'batched' for its own transaction) it stays quiet: the batch
-- announces every stream it changed itself, at its end (pts.notify_batch_v1).
-- Every other writer (plain SQL, processes from before 0004) still gets the
-- per-row notification on 'pts_v1'.
CREATE FUNCTION pts.notify_change_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('pts.notify', true) = 'batched' THEN
        RETURN NULL;  -- an AFTER trigger's result is ignored
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pts_v1', json_build_object(
            'id', OLD.id, 'size', OLD.size, 'status', 'deleted', 'closed', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('pts_v1', json_build_object(
        'id', NEW.id, 'size', NEW.size, 'status', NEW.status, 'closed', NEW.closed)::text);
    RETURN NEW;
END;
$$;

DROP TRIGGER streams_notify_insert ON pts.streams;
CREATE TRIGGER streams_notify_insert
    AFTER INSERT ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v2();

DROP TRIGGER streams_notify_update ON pts.streams;
CREATE TRIGGER streams_notify_update
    AFTER UPDATE ON pts.streams
    FOR EACH ROW
    WHEN (OLD.size IS DISTINCT FROM NEW.size
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.closed IS DISTINCT FROM NEW.closed)
    EXECUTE FUNCTION pts.notify_change_v2();

DROP TRIGGER streams_notify_delete ON pts.streams;
CREATE TRIGGER streams_notify_delete
    AFTER DELETE ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v2();

-- Announces the final state of the streams p_ids: on 'pts_v2', JSON arrays of the
-- version-1 objects {"id", "size", "status", "closed"}, as many NOTIFYs as it takes
-- to keep each payload under Postgres's 8000-byte limit; or, with p_v1 (a rolling
-- upgrade: processes from before 0004 listen on 'pts_v1' only), one 'pts_v1'
-- notification per stream instead, which the new listeners hear as well.
-- Delivered at commit, like every NOTIFY. A stream no longer there is skipped.
CREATE FUNCTION pts.notify_batch_v1(p_ids uuid[], p_v1 boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    entry text;
    buf text := '';
    sent integer := 0;
BEGIN
    FOR entry IN
        SELECT json_build_object('id', s.id, 'size', s.size, 'status', s.status,
                                 'closed', s.closed)::text
          FROM pts.streams s
         WHERE s.id = ANY (p_ids)
         ORDER BY s.id
    LOOP
        IF p_v1 THEN
            PERFORM pg_notify('pts_v1', entry);
            sent := sent + 1;
            CONTINUE;
        END IF;
        -- '[' || buf || ',' || entry || ']' must stay under 8000 bytes.
        IF buf <> '' AND octet_length(buf) + octet_length(entry) + 3 >= 8000 THEN
            PERFORM pg_notify('pts_v2', '[' || buf || ']');
            sent := sent + 1;
            buf := '';
        END IF;
        buf := CASE WHEN buf = '' THEN entry ELSE buf || ',' || entry END;
    END LOOP;
    IF buf <> '' THEN
        PERFORM pg_notify('pts_v2', '[' || buf || ']');
        sent := sent + 1;
    END IF;
    RETURN sent;
END;
$$;

-- A batch of protocol appends (the arguments of pts.ds_append_v2, one array element
-- per append), applied in one transaction. Appends to different streams are applied
-- in path order (so that concurrent batches lock rows in one order), those to one
-- stream in the order given. Each append's outcome is its own (ds_append_v2 answers
-- with an outcome rather than raising): one row per append, `ord` its place in the
-- input (from 1). One notification round (pts.notify_batch_v1) for the streams that
-- changed.
CREATE FUNCTION pts.ds_append_batch_v1(
    p_paths text[], p_data bytea[], p_media_types text[], p_close boolean[],
    p_stream_seqs text[], p_producers text[], p_epochs bigint[], p_seqs bigint[],
    p_max_size bigint, p_notify_v1 boolean
) RETURNS TABLE (ord integer, outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    r record;
    changed uuid[] := '{}';
    previous text := current_setting('pts.notify', true);
BEGIN
    PERFORM set_config('pts.notify', 'batched', true);
    FOR i IN SELECT g.i FROM generate_subscripts(p_paths, 1) AS g(i)
              ORDER BY p_paths[g.i] COLLATE "C", g.i
    LOOP
        SELECT * INTO r FROM pts.ds_append_v2(p_paths[i], p_data[i], p_media_types[i],
            p_close[i], p_stream_seqs[i], p_producers[i], p_epochs[i], p_seqs[i], p_max_size);
        IF r.outcome = 'appended' THEN
            changed := changed || r.stream_id;
        END IF;
        ord := i;
        outcome := r.outcome;
        stream_id := r.stream_id;
        size := r.size;
        closed := r.closed;
        epoch := r.epoch;
        seq := r.seq;
        expected_seq := r.expected_seq;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pts.notify', coalesce(previous, ''), true);
    PERFORM pts.notify_batch_v1(changed, p_notify_v1);
END;
$$;

-- A batch of driven appends (the `append` query of queries.sql, one array element
-- per append: stream, offset, bytes, final status or NULL, reason), applied in one
-- transaction, in stream order (and, for one stream, in the order given). An append
-- whose offset is not the stream's size, whose stream is closed or missing, or that
-- would pass the size cap p_max_size changes nothing and answers a NULL size; the
-- caller asks why, as after a failed single append. One row per append, `ord` its
-- place in the input (from 1), `size` the stream's new size.
CREATE FUNCTION pts.append_batch_v1(
    p_ids uuid[], p_offsets bigint[], p_data bytea[], p_finish text[], p_reasons text[],
    p_max_size bigint, p_notify_v1 boolean
) RETURNS TABLE (ord integer, size bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    new_size bigint;
    changed uuid[] := '{}';
    previous text := current_setting('pts.notify', true);
BEGIN
    PERFORM set_config('pts.notify', 'batched', true);
    FOR i IN SELECT g.i FROM generate_subscripts(p_ids, 1) AS g(i) ORDER BY p_ids[g.i], g.i
    LOOP
        UPDATE pts.streams t
           SET size = t.size + octet_length(p_data[i]),
               updated_at = now(),
               heartbeat_at = CASE WHEN t.status = 'streaming' THEN now() ELSE t.heartbeat_at END,
               status = coalesce(p_finish[i], t.status),
               closed = t.closed OR p_finish[i] IS NOT NULL,
               finished_at = CASE WHEN p_finish[i] IS NOT NULL THEN now() ELSE t.finished_at END,
               abort_reason = CASE WHEN p_finish[i] = 'aborted' THEN p_reasons[i]
                                   ELSE t.abort_reason END,
               error = CASE WHEN p_finish[i] IN ('error', 'timeout') THEN p_reasons[i]
                            ELSE t.error END
         WHERE t.id = p_ids[i] AND t.size = p_offsets[i] AND NOT t.closed
           AND (p_max_size IS NULL OR t.size + octet_length(p_data[i]) <= p_max_size)
        RETURNING t.size INTO new_size;
        IF FOUND THEN
            IF octet_length(p_data[i]) > 0 THEN
                INSERT INTO pts.chunks (stream_id, start_offset, data)
                VALUES (p_ids[i], p_offsets[i], p_data[i]);
            END IF;
            changed := changed || p_ids[i];
        ELSE
            new_size := NULL;
        END IF;
        ord := i;
        size := new_size;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pts.notify', coalesce(previous, ''), true);
    PERFORM pts.notify_batch_v1(changed, p_notify_v1);
END;
$$;

-- Issue 14: compaction (0005)
-- A finished stream's chunk rows merged into few large rows; see
-- sql/migrations/0005_compaction.sql for why each piece is there.
ALTER TABLE pts.chunks ADD COLUMN boundaries integer[];
ALTER TABLE pts.chunks ADD CONSTRAINT chunks_boundaries_check
    CHECK (boundaries IS NULL OR (boundaries[1] = 0 AND array_ndims(boundaries) = 1));
-- Merged rows are large: stored out of line, uncompressed, so that a read from
-- inside one fetches only the slices it needs (substring of an EXTERNAL value)
-- and a catch-up does not pay for decompression. Small rows stay inline as before.
ALTER TABLE pts.chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- When the stream's rows were merged; NULL while not yet (or never closed).
ALTER TABLE pts.streams ADD COLUMN compacted_at timestamptz;
-- The sweeper's compaction looks for finished streams not yet compacted.
CREATE INDEX streams_uncompacted_idx
    ON pts.streams (finished_at) WHERE closed AND compacted_at IS NULL;

-- Merges the chunk rows of closed stream p_id that start in the same p_target-byte
-- window of offsets into one row (rows of p_target bytes or more stay as they
-- are), in one statement: a concurrent read sees the old rows or the new, never
-- a mix. The stream's row lock keeps a second compaction (it then finds nothing
-- to merge) and a delete out meanwhile; readers never wait. Marks the stream
-- compacted. Returns how many rows went (0 if it is not closed or already compact).
CREATE FUNCTION pts.compact_v1(p_id uuid, p_target bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM 1 FROM pts.streams WHERE id = p_id AND closed FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH windows AS (
        SELECT c.start_offset / p_target AS bucket
          FROM pts.chunks c
         WHERE c.stream_id = p_id AND octet_length(c.data) < p_target
         GROUP BY 1
        HAVING count(*) > 1
    ), doomed AS (
        DELETE FROM pts.chunks c
         USING windows w
         WHERE c.stream_id = p_id AND octet_length(c.data) < p_target
           AND c.start_offset / p_target = w.bucket
        RETURNING w.bucket, c.start_offset, c.data, c.boundaries, c.created_at
    ), merged AS (
        SELECT d.bucket, min(d.start_offset) AS start_at, count(*) AS rows_in,
               string_agg(d.data, ''::bytea ORDER BY d.start_offset) AS data,
               max(d.created_at) AS created_at
          FROM doomed d
         GROUP BY d.bucket
    ), marks AS (
        SELECT d.bucket,
               array_agg((d.start_offset - m.start_at + u.rel)::integer
                         ORDER BY d.start_offset, u.rel) AS boundaries
          FROM doomed d
          JOIN merged m ON m.bucket = d.bucket
         CROSS JOIN LATERAL unnest(coalesce(d.boundaries, ARRAY[0])) AS u(rel)
         GROUP BY d.bucket
    ), inserted AS (
        INSERT INTO pts.chunks (stream_id, start_offset, data, boundaries, created_at)
        SELECT p_id, m.start_at, m.data, k.boundaries, m.created_at
          FROM merged m
          JOIN marks k ON k.bucket = m.bucket
        RETURNING 1
    )
    SELECT coalesce((SELECT sum(rows_in) FROM merged), 0) - (SELECT count(*) FROM inserted)
      INTO removed;
    UPDATE pts.streams SET compacted_at = now() WHERE id = p_id;
    RETURN removed;
END;
$$;

-- Issue 15: retention (0006)
-- `pts prune` deletes finished streams oldest first, in batches, from this index.
CREATE INDEX streams_finished_at_idx
    ON pts.streams (finished_at)
    WHERE status IN ('done', 'error', 'timeout', 'aborted') AND deleted_at IS NULL;
