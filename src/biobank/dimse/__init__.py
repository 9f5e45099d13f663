"""The node's DIMSE service: C-ECHO, C-STORE into ingest, C-FIND, C-MOVE and C-GET.

An adapter over the ingest service and the catalogue, like the HTTP API: ``biobank serve``
reads the ``dimse:`` settings of ``node.yaml`` and starts a :class:`DimseServer` next to the
HTTP server. See ``docs/dimse.md``.

Example
-------
>>> settings = DimseSettings.from_node(node)  # doctest: +SKIP
>>> with DimseServer(node, settings=settings, ingest=ingest, catalog=catalog):
...     serve_forever()  # doctest: +SKIP
"""

from biobank.dimse.associations import AuditHook
from biobank.dimse.server import DimseServer
from biobank.dimse.settings import Destination, DimseSettings

__all__ = ["AuditHook", "Destination", "DimseServer", "DimseSettings"]
