"""Storage of the server's signed TUF metadata: the `MetaStore` contract and `open_store`.

Backends: `sqlite.SqliteMetaStore` (embedded default) and `postgres.PostgresMetaStore`.
"""

from tufnotary.server.storage.base import MetaStore, NewFile, StoredFile, open_store

__all__ = ["MetaStore", "NewFile", "StoredFile", "open_store"]
