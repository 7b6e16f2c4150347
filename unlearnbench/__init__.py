"""unlearnbench: a benchmark suite for machine unlearning in language models.

This package is the core: the config schema, the task interface and its registry, models and tokenization, the
unit cache, cost, threads and numerics. It imports none of benchmarks/, methods/, evals/ or orchestration/,
which build on it (docs/layout.md)."""
import logging

__version__ = "0.1.0"
# Bump when a change alters what a cached stage would produce (training recipe, statistics), so caches refresh.
CACHE_VERSION = 2
# bitsandbytes (the quantization attack; peft imports it) says at import that an optional kernel package is missing
# and falls back to its own CPU kernels (docs/recovery.md): not a problem of the user's run
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
