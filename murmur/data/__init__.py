"""Data stages: readers, schema, cleaning, dedup, token shards, and the demo world generator."""
