"""Storage: content-addressed blobs, atomic file creation, site keys and the pseudonym map."""

from biobank.store.atomic import NewFile, create_once
from biobank.store.blobs import BlobStore, FileBlobStore, FixityReport, StoredBlob
from biobank.store.keyring import (
    PseudonymMap,
    create_key_file,
    pseudonym_map_path,
    read_key_file,
)

__all__ = [
    "BlobStore",
    "FileBlobStore",
    "FixityReport",
    "NewFile",
    "PseudonymMap",
    "StoredBlob",
    "create_key_file",
    "create_once",
    "pseudonym_map_path",
    "read_key_file",
]
