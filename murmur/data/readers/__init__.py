"""Readers that turn one raw input file into batches of rows in the post schema.

Each reader module handles one family of inputs (X account archives, X API v2 responses, generic
tables and plain text); :mod:`murmur.data.sources` finds the files, picks a reader and writes Parquet.
"""
