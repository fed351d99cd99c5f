"""The one post schema every reader produces (see docs/formats.md)."""

from __future__ import annotations

import pyarrow as pa

POST_SCHEMA = pa.schema([
    pa.field("post_id", pa.string(), nullable=False),
    pa.field("author_id", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("lang", pa.string()),
    pa.field("text", pa.string(), nullable=False),
    pa.field("reply_to", pa.string()),
    pa.field("conversation_id", pa.string()),
    pa.field("hashtags", pa.list_(pa.string())),
    pa.field("mentions", pa.list_(pa.string())),
    pa.field("urls", pa.list_(pa.string())),
    pa.field("likes", pa.int64()),
    pa.field("reposts", pa.int64()),
    pa.field("replies", pa.int64()),
    pa.field("source", pa.string()),
])

COLUMNS = POST_SCHEMA.names
