"""The ``dimse:`` settings of ``node.yaml``: who may associate, where C-MOVE may send.

::

    dimse:
      ae_title: BIOBANK            # our AE title; the called AE title must be this one
      host: 127.0.0.1              # listen address (0.0.0.0: every interface)
      port: 11112                  # 0: an ephemeral port (tests)
      allowed_callers: [MODALITY1, PACS]   # empty: every association is refused
      destinations:                # C-MOVE destinations, by AE title
        PACS: {host: 10.0.0.5, port: 104}
      max_pdu: 65536               # the largest PDU we receive (0: no limit)
      max_associations: 10
      find_limit: 10000            # C-FIND matches; more are refused: narrow the query
      network_timeout: 60          # seconds
      acse_timeout: 30
      dimse_timeout: 60

Every key is optional; :meth:`DimseSettings.from_mapping` checks them and names the key of
any error. The defaults are secure: the service listens on the loopback interface only and
accepts no caller until ``allowed_callers`` lists it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from biobank.catalog.search import MAX_LIMIT
from biobank.errors import InvalidInput
from biobank.ingest.node import Node

DEFAULT_AE_TITLE = "BIOBANK"
DEFAULT_PORT = 11112
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_PDU = 65536
"""Four times pynetdicom's and dcmtk's 16 KiB default: fewer PDUs per instance received."""

_KEYS = (
    "ae_title",
    "host",
    "port",
    "allowed_callers",
    "destinations",
    "max_pdu",
    "max_associations",
    "find_limit",
    "network_timeout",
    "acse_timeout",
    "dimse_timeout",
)


@dataclass(frozen=True)
class Destination:
    """A C-MOVE destination: the AE title a requestor names and where it listens."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class DimseSettings:
    """The DIMSE service's settings (see the module docstring for the keys).

    Attributes
    ----------
    ae_title : str
        Our AE title; an association that calls another title is refused.
    host : str
        The address to listen on.
    port : int
        The TCP port (0: an ephemeral port, see :attr:`DimseServer.port`).
    allowed_callers : tuple of str
        The calling AE titles accepted; empty refuses every association.
    destinations : tuple of Destination
        Where C-MOVE may send instances.
    max_pdu : int
        The largest PDU we accept (0: no limit).
    max_associations : int
        Associations served at once; more are refused (transient: the peer may retry).
    find_limit : int
        The most matches a C-FIND returns; a query with more is refused with a comment.
    network_timeout, acse_timeout, dimse_timeout : float
        Seconds of silence before an idle association is closed, an association negotiation
        or release is given up, a DIMSE response (to our C-STORE sub-operations) is awaited.
    """

    ae_title: str = DEFAULT_AE_TITLE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allowed_callers: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = field(default=())
    max_pdu: int = DEFAULT_MAX_PDU
    max_associations: int = 10
    find_limit: int = MAX_LIMIT
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0

    def destination(self, ae_title: str) -> Destination | None:
        """The C-MOVE destination called ``ae_title`` (None if not configured)."""
        wanted = ae_title.strip()
        return next((d for d in self.destinations if d.ae_title == wanted), None)

    @classmethod
    def from_node(cls, node: Node) -> DimseSettings:
        """The settings under ``dimse:`` in the node's ``node.yaml`` (defaults when absent).

        Raises
        ------
        InvalidInput
            If a key is unknown or a value is out of range.
        """
        return cls.from_mapping(node.section("dimse"), str(node.config_path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str) -> DimseSettings:
        """Check and convert the ``dimse:`` mapping of ``source`` (a file name, for errors).

        Raises
        ------
        InvalidInput
            If a key is unknown or a value is out of range; the message names the key.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{source}: 'dimse' must be a mapping of settings")
        unknown = sorted(str(k) for k in data if k not in _KEYS)
        if unknown:
            raise InvalidInput(
                f"{source}: unknown key dimse.{unknown[0][:40]}; the keys are "
                f"{', '.join(_KEYS)} (docs/dimse.md)"
            )
        defaults = cls()
        return cls(
            ae_title=_ae_title(data.get("ae_title", defaults.ae_title), source, "dimse.ae_title"),
            host=_host(data.get("host", defaults.host), source, "dimse.host"),
            port=_integer(data.get("port", defaults.port), source, "dimse.port", 0, 65535),
            allowed_callers=_callers(data.get("allowed_callers", []), source),
            destinations=_destinations(data.get("destinations", {}), source),
            max_pdu=_max_pdu(data.get("max_pdu", defaults.max_pdu), source),
            max_associations=_integer(
                data.get("max_associations", defaults.max_associations),
                source,
                "dimse.max_associations",
                1,
                1000,
            ),
            find_limit=_integer(
                data.get("find_limit", defaults.find_limit),
                source,
                "dimse.find_limit",
                1,
                MAX_LIMIT,
            ),
            network_timeout=_seconds(
                data.get("network_timeout", defaults.network_timeout),
                source,
                "dimse.network_timeout",
            ),
            acse_timeout=_seconds(
                data.get("acse_timeout", defaults.acse_timeout), source, "dimse.acse_timeout"
            ),
            dimse_timeout=_seconds(
                data.get("dimse_timeout", defaults.dimse_timeout), source, "dimse.dimse_timeout"
            ),
        )


# --- checks -------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A short rendering of a configured value for a message (configuration, never PHI)."""
    return repr(value)[:40]


def _ae_title(value: object, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{source}: {key} must be an AE title (text), not {_show(value)}")
    title = value.strip()
    if not title:
        raise InvalidInput(f"{source}: {key} must not be empty or only spaces")
    if len(title) > 16:
        raise InvalidInput(f"{source}: {key} {_show(title)} is longer than 16 characters")
    if "\\" in title or not title.isascii() or not title.isprintable():
        raise InvalidInput(
            f"{source}: {key} {_show(title)} may hold only printable ASCII characters, "
            "without a backslash"
        )
    return title


def _host(value: object, source: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InvalidInput(
            f"{source}: {key} must be a host name or an IP address, not {_show(value)}"
        )
    return value.strip()


def _integer(value: object, source: str, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{source}: {key} must be an integer from {low} to {high}, not {_show(value)}"
        )
    return value


def _max_pdu(value: object, source: str) -> int:
    if value == 0:
        return 0
    return _integer(value, source, "dimse.max_pdu", 4096, 2**32 - 1)


def _seconds(value: object, source: str, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= 86400
    ):
        raise InvalidInput(
            f"{source}: {key} must be a number of seconds above 0 (at most 86400), "
            f"not {_show(value)}"
        )
    return float(value)


def _callers(value: object, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidInput(
            f"{source}: dimse.allowed_callers must be a list of AE titles, not {_show(value)}"
        )
    titles: list[str] = []
    for n, item in enumerate(value):
        title = _ae_title(item, source, f"dimse.allowed_callers[{n}]")
        if title not in titles:
            titles.append(title)
    return tuple(titles)


def _destinations(value: object, source: str) -> tuple[Destination, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"{source}: dimse.destinations must map AE titles to {{host: ..., port: ...}}, "
            f"not {_show(value)}"
        )
    found: dict[str, Destination] = {}
    for name, spec in value.items():
        title = _ae_title(name, source, "a key of dimse.destinations")
        key = f"dimse.destinations.{title}"
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"{source}: {key} must be a mapping {{host: ..., port: ...}}")
        extra = sorted(str(k) for k in spec if k not in ("host", "port"))
        if extra:
            raise InvalidInput(
                f"{source}: unknown key {key}.{extra[0][:40]}; a destination has host and port"
            )
        if "host" not in spec or "port" not in spec:
            raise InvalidInput(f"{source}: {key} needs both host and port")
        if title in found:
            raise InvalidInput(f"{source}: {key} is given twice")
        found[title] = Destination(
            ae_title=title,
            host=_host(spec["host"], source, f"{key}.host"),
            port=_integer(spec["port"], source, f"{key}.port", 1, 65535),
        )
    return tuple(found.values())


__all__ = ["DEFAULT_AE_TITLE", "DEFAULT_MAX_PDU", "DEFAULT_PORT", "Destination", "DimseSettings"]
