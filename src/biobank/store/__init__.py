"""Storage: blob stores (a later issue), site keys and the site-local pseudonym map."""

from biobank.store.keyring import (
    PseudonymMap,
    create_key_file,
    pseudonym_map_path,
    read_key_file,
)

__all__ = ["PseudonymMap", "create_key_file", "pseudonym_map_path", "read_key_file"]
