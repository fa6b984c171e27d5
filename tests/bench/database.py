"""Sizes in the throwaway PostgreSQL cluster, for bytes per target."""

from __future__ import annotations

import psycopg2


def database_bytes(url: str) -> int:
    """Size of the database at `url` (tables, indexes, TOAST)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])
    finally:
        conn.close()

