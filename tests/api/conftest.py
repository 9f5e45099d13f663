"""A real node served by uvicorn on a loopback port, with users of every role."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydicom import Dataset

from biobank.access import AccessService, Role
from biobank.api import ServiceOptions, create_app
from biobank.dicom.multipart import encode_multipart, multipart_content_type, new_boundary
from biobank.ingest.node import Node, NodeRole, init_node

ROLES = {
    "admin": Role.ADMIN,
    "up1": Role.UPLOADER,
    "up2": Role.UPLOADER,
    "cur": Role.CURATOR,
    "res": Role.RESEARCHER,
}


@dataclass
class Served:
    """A running node: its URL, a token per user, the node itself."""

    url: str
    tokens: dict[str, str]
    node: Node

    def client(self, user: str | None = "cur") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


class ServerThread:
    """uvicorn in a thread of this process, on an ephemeral loopback port."""

    def __init__(self, app: object) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
        )  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def serve_node(node: Node, jobs: int = 2) -> tuple[ServerThread, dict[str, str]]:
    catalog = node.open_catalog()
    try:
        access = AccessService(catalog)
        tokens = {}
        for name, role in ROLES.items():
            access.create_user(name, role)
            tokens[name] = access.create_token(name, "tests")[1]
    finally:
        catalog.close()
    return ServerThread(create_app(node, options=ServiceOptions(jobs=jobs))), tokens


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    node = init_node(tmp_path_factory.mktemp("api") / "home", site="test", role=NodeRole.SITE)
    thread, tokens = serve_node(node)
    with thread as port:
        yield Served(f"http://127.0.0.1:{port}", tokens, node)


def dicom_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def stow_body(parts: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = new_boundary()
    body = b"".join(encode_multipart(((p, {"Content-Type": part_type}) for p in parts), boundary))
    return body, multipart_content_type("application/dicom", boundary)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
