"""Persistence: the only package that imports SQLAlchemy (index) and touches the blob files."""

from hub.store.blobs import BlobStore, StagedBlob
from hub.store.db import Database, upgrade
from hub.store.index import IndexRepository, NewInstance
from hub.store.users import UserRepository

__all__ = ["BlobStore", "Database", "IndexRepository", "NewInstance", "StagedBlob", "UserRepository", "upgrade"]
