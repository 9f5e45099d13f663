"""Run pydicom/deid's default recipe over a folder, the way its documentation shows.

``python bench/deid_runner.py IN OUT [--limit N]``: for each folder of IN, in one process,
``get_identifiers`` then ``replace_identifiers(deid=DeidRecipe(), save=True)`` into the
mirrored folder of OUT (deid names outputs by the input's base name, so folders are kept apart).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="first N files only (0: all)")
    args = parser.parse_args()

    os.environ.setdefault("MESSAGELEVEL", "0")  # deid's own logger: quiet
    logging.disable(logging.WARNING)
    from deid.config import DeidRecipe
    from deid.dicom import get_identifiers, replace_identifiers

    files = sorted(p for p in args.src.rglob("*") if p.is_file())
    if args.limit:
        files = files[: args.limit]
    by_folder: dict[Path, list[str]] = defaultdict(list)
    for path in files:
        by_folder[path.parent].append(str(path))
    recipe = DeidRecipe()
    for folder, paths in by_folder.items():
        out = args.out / folder.relative_to(args.src)
        out.mkdir(parents=True, exist_ok=True)
        ids = get_identifiers(paths)
        replace_identifiers(
            paths, ids=ids, deid=recipe, save=True, overwrite=True, output_folder=str(out)
        )


if __name__ == "__main__":
    main()
