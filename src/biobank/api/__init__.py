"""The node's HTTP adapter: DICOMweb (PS3.18) and service routes over the node's services."""

from biobank.api.app import ServiceOptions, create_app

__all__ = ["ServiceOptions", "create_app"]
