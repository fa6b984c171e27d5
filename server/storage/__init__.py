"""Storage of the server's signed TUF metadata: the `MetaStore` contract and `open_store`.

Backends: `sqlite.SqliteMetaStore` (embedded default) and `postgres.PostgresMetaStore`.
"""

from tufnotary.server.storage.base import Commit, MetaStore, NewFile, RenewalState, StoredFile, open_store

__all__ = ["Commit", "MetaStore", "NewFile", "RenewalState", "StoredFile", "open_store"]
