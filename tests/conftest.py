"""Test setup: nothing may reach the network, the library's caches stay out of the user's home, and a deprecation
fails the test that triggered it (pyproject.toml turns deprecation warnings into errors; transformers also logs
some, e.g. "`past_key_values`/`cache_params` are deprecated", which the fixture below catches)."""
import logging
import os
import socket
import tempfile

import pytest

from unlearnbench import numerics

numerics.apply()        # the kernels the benchmark pins, before anything loads torch

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


class _Deprecations(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "deprecat" in record.getMessage().lower():
            self.seen.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(autouse=True)
def logged_deprecations_fail():
    handler, loggers = _Deprecations(), [logging.getLogger(n) for n in ("transformers", "peft", "accelerate")]
    for logger in loggers:
        logger.addHandler(handler)
    yield
    for logger in loggers:
        logger.removeHandler(handler)
    if handler.seen:
        pytest.fail("a library logged a deprecation: " + "; ".join(handler.seen))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; run by hand (-m slow)")


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    """One folder for the smoke experiment's results and cache, shared by the tests that need its models."""
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="module")
def smoke_target(smoke_root):
    """The smoke experiment's fine-tuned target, its prompt format and task (a cache hit when
    tests/test_end_to_end.py ran first)."""
    from accelerate import Accelerator

    from orchestration.pipeline import Pipeline
    from unlearnbench.cache import UnitStore
    from unlearnbench.config import load_config
    from unlearnbench.tasks import build_task
    cfg = load_config(["experiment=smoke", f"cache_dir={smoke_root / 'cache'}"])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = task.load(cfg.resolved_cache_dir() / "tasks")
    pipe = Pipeline(cfg, task, data, UnitStore(cfg.resolved_cache_dir()), Accelerator())
    target = pipe.finetuned(pipe.base(), "target")
    return pipe.units.load(target), pipe.units.fmt(pipe.units.tokenizer(target)), task


@pytest.fixture
def registries():
    """The method, task and attack registries as they were before the test: what a test's extension files
    register does not leak into other tests."""
    from orchestration import extensions
    before = {kind: dict(registry) for kind, registry in extensions.REGISTRIES.items()}
    files = dict(extensions._FILES)
    yield
    for kind, registry in extensions.REGISTRIES.items():
        registry.clear()
        registry.update(before[kind])
    extensions._FILES.clear()
    extensions._FILES.update(files)
