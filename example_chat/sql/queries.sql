-- Every query the demo chat sends, by name (loaded by example_chat/db.py with
-- pts's own loader: each query starts with a `-- name: NAME` line).
-- Viewer identities (`owner`, `viewer`) are SHA-256 hashes of session cookies.

-- name: migrations_lock
-- Held until the migration transaction ends: concurrent runs queue up.
SELECT pg_advisory_xact_lock(hashtext('pts_demo.migrate'));

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS pts_demo;
CREATE TABLE IF NOT EXISTS pts_demo.schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM pts_demo.schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO pts_demo.schema_migrations (version, name) VALUES ($1, $2);

-- name: insert_setting
INSERT INTO pts_demo.settings (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING;

-- name: get_setting
SELECT value FROM pts_demo.settings WHERE name = $1;

-- name: create_chat
INSERT INTO pts_demo.chats (owner, share_token) VALUES ($1, $2)
RETURNING id;

-- name: list_chats
-- The viewer's own chats and the chats shared with it, most recent first.
SELECT c.id, coalesce(c.title, 'New chat') AS title, c.updated_at, c.owner = $1 AS owned
  FROM pts_demo.chats c
 WHERE c.owner = $1
    OR EXISTS (SELECT 1 FROM pts_demo.chat_viewers v WHERE v.chat_id = c.id AND v.viewer = $1)
 ORDER BY c.updated_at DESC
 LIMIT $2;

-- name: get_chat
-- A chat with what the viewer may do with it: access is 'owner', 'viewer' or NULL.
SELECT c.id, coalesce(c.title, 'New chat') AS title, c.share_token,
       CASE WHEN c.owner = $2 THEN 'owner'
            WHEN EXISTS (SELECT 1 FROM pts_demo.chat_viewers v
                          WHERE v.chat_id = c.id AND v.viewer = $2) THEN 'viewer'
       END AS access
  FROM pts_demo.chats c
 WHERE c.id = $1;

-- name: add_viewer
INSERT INTO pts_demo.chat_viewers (chat_id, viewer) VALUES ($1, $2)
ON CONFLICT DO NOTHING;

-- name: stream_access
-- What a viewer may do with an assistant message's stream: 'owner', 'viewer' or NULL.
SELECT m.chat_id,
       CASE WHEN c.owner = $2 THEN 'owner'
            WHEN EXISTS (SELECT 1 FROM pts_demo.chat_viewers v
                          WHERE v.chat_id = c.id AND v.viewer = $2) THEN 'viewer'
       END AS access
  FROM pts_demo.messages m
  JOIN pts_demo.chats c ON c.id = m.chat_id
 WHERE m.stream_id = $1;

-- name: lock_chat_for_send
-- Locks an owner's chat for the rest of the transaction (one send at a time)
-- and returns the status of its latest answer (NULL if it has none).
SELECT c.id,
       (SELECT s.status
          FROM pts_demo.messages m
          JOIN pts.streams s ON s.id = m.stream_id
         WHERE m.chat_id = c.id
         ORDER BY m.id DESC
         LIMIT 1) AS last_status
  FROM pts_demo.chats c
 WHERE c.id = $1 AND c.owner = $2
   FOR UPDATE OF c;

-- name: insert_user_message
WITH touched AS (
    UPDATE pts_demo.chats
       SET title = coalesce(title, left($2, 80)), updated_at = now()
     WHERE id = $1
)
INSERT INTO pts_demo.messages (chat_id, role, content) VALUES ($1, 'user', $2);

-- name: insert_assistant_message
INSERT INTO pts_demo.messages (chat_id, role, stream_id) VALUES ($1, 'assistant', $2);

-- name: conversation
-- A chat's messages in order, each answer with its stream's text and state
-- (text and size from one snapshot, so size is the offset right after text).
SELECT m.id, m.role, m.content, m.stream_id,
       b.status, b.text, b.size, b.abort_reason, b.error
  FROM (SELECT * FROM pts_demo.messages WHERE chat_id = $1 ORDER BY id DESC LIMIT $2) m
  LEFT JOIN pts.stream_bodies b ON b.id = m.stream_id
 ORDER BY m.id;

-- name: history_before_stream
-- The turns that precede an answer (what the model is asked to continue).
SELECT m.role, coalesce(m.content, b.text, '') AS content
  FROM (SELECT h.*
          FROM pts_demo.messages h
          JOIN pts_demo.messages a ON a.chat_id = h.chat_id AND h.id < a.id
         WHERE a.stream_id = $1
         ORDER BY h.id DESC
         LIMIT $2) m
  LEFT JOIN pts.stream_bodies b ON b.id = m.stream_id
 ORDER BY m.id;

-- name: stream_chat
SELECT chat_id FROM pts_demo.messages WHERE stream_id = $1;

-- name: latest_message_id
SELECT max(id) FROM pts_demo.messages WHERE chat_id = $1;

-- name: unclaimed_answers
-- Answers still pending $1 seconds after they were created: the tab that sent
-- their message never drove them. Oldest first, at most $2.
SELECT s.id
  FROM pts.streams s
  JOIN pts_demo.messages m ON m.stream_id = s.id
 WHERE s.status = 'pending'
   AND s.created_at < now() - make_interval(secs => $1)
 ORDER BY s.created_at
 LIMIT $2;
