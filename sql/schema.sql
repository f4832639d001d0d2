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
    CONSTRAINT streams_status_check
        CHECK (status IN ('pending', 'streaming', 'done', 'error', 'timeout', 'aborted')),
    CONSTRAINT streams_size_check CHECK (size >= 0),
    -- A finished stream is always closed to appends.
    CONSTRAINT streams_finished_closed_check
        CHECK (status IN ('pending', 'streaming') OR closed),
    -- A driven stream always has a heartbeat, so the sweeper can judge it.
    CONSTRAINT streams_streaming_heartbeat_check
        CHECK (status <> 'streaming' OR heartbeat_at IS NOT NULL)
);

-- The sweeper looks for live streams whose driver stopped heartbeating.
CREATE INDEX streams_streaming_heartbeat_idx
    ON pts.streams (heartbeat_at) WHERE status = 'streaming';
CREATE INDEX streams_expires_at_idx
    ON pts.streams (expires_at) WHERE expires_at IS NOT NULL;

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
-- `text` decodes as UTF-8; `body` is the raw bytes (for non-text streams).
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
       SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.start_offset), ''::bytea) AS body
         FROM pts.chunks c
        WHERE c.stream_id = s.id
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
