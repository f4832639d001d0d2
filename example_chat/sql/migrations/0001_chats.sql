-- The demo chat's own tables, beside pts's (schema `pts`), in schema `pts_demo`.
-- Applied by example_chat/db.py after `pts migrate`: messages reference pts.streams.

CREATE SCHEMA IF NOT EXISTS pts_demo;

-- One row per chat. `owner` is the SHA-256 of the owning browser's session
-- cookie (the cookie itself is never stored); `share_token` is the secret part
-- of the chat's share link.
CREATE TABLE pts_demo.chats (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    owner        text        NOT NULL,
    share_token  text        NOT NULL UNIQUE,
    title        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chats_owner_idx ON pts_demo.chats (owner, updated_at DESC);

-- Browsers that opened a chat's share link: they may watch it (read-only).
CREATE TABLE pts_demo.chat_viewers (
    chat_id   uuid        NOT NULL REFERENCES pts_demo.chats (id) ON DELETE CASCADE,
    viewer    text        NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, viewer)
);
CREATE INDEX chat_viewers_viewer_idx ON pts_demo.chat_viewers (viewer);

-- The history. A user message holds its text; an assistant message holds no
-- text of its own: its text is the pts stream it references, persisted (and
-- watched) through pts. Deleting the stream deletes the message.
CREATE TABLE pts_demo.messages (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id     uuid        NOT NULL REFERENCES pts_demo.chats (id) ON DELETE CASCADE,
    role        text        NOT NULL,
    content     text,
    stream_id   uuid        UNIQUE REFERENCES pts.streams (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_role_check CHECK (
        (role = 'user' AND content IS NOT NULL AND stream_id IS NULL)
        OR (role = 'assistant' AND content IS NULL AND stream_id IS NOT NULL)
    )
);
CREATE INDEX messages_chat_idx ON pts_demo.messages (chat_id, id);

-- Values the demo generates once and keeps (the CSRF signing secret), so that
-- a restart does not invalidate the cookies browsers already hold.
CREATE TABLE pts_demo.settings (
    name   text PRIMARY KEY,
    value  text NOT NULL
);
