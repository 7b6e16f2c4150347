"""unlearnbench: a benchmark suite for machine unlearning in language models."""
import logging

__version__ = "0.1.0"
# Bump when a change alters what a cached stage would produce (training recipe, statistics), so caches refresh.
CACHE_VERSION = 2
# bitsandbytes (the quantization attack; peft imports it) says at import that an optional kernel package is missing
# and falls back to its own CPU kernels (README, "Does it come back?"): not a problem of the user's run
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
