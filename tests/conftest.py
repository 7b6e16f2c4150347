"""Test setup: nothing may reach the network, and the library's caches stay out of the user's home."""
import os
import socket
import tempfile

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# lm-eval reads its local JSON question sets through `datasets`, which caches them: keep that out of the home folder
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="ub-hf-datasets-")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or "/" in host):
            raise RuntimeError(f"test tried the network: {address}")
        return real_connect(sock, address)
    monkeypatch.setattr(socket.socket, "connect", guarded)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; excluded from the default run (-m 'not slow')")


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    """One folder for the smoke experiment's results and cache, shared by the tests that need its models."""
    return tmp_path_factory.mktemp("smoke")
