"""The start path loads no heavy library: `--help` and input errors answer before torch and the others import
(unlearnbench/heavy.py); a deferred module imports on its first attribute read and not before."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnbench.heavy import Deferred

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "accelerate", "peft", "bitsandbytes", "scipy.stats", "sklearn", "rouge_score",
         "opacus", "matplotlib", "lm_eval", "datasets")

PROBE = """
import json, sys
sys.argv = [{script!r}, *{argv!r}]
import {module} as entry
code = {call}
print(json.dumps({{"code": code, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def start(script: str, argv: list[str]) -> dict:
    module = script.removesuffix(".py")
    out = subprocess.run([sys.executable, "-c", PROBE.format(script=script, argv=argv, module=module,
                                                             call="entry.cli(sys.argv[1:])", heavy=HEAVY)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script,argv,code", [
    ("run_benchmark.py", ["--help"], 0),
    ("run_benchmark.py", ["utility_floor=2"], 2),                  # a value out of range
    ("run_benchmark.py", ["unlearn.epocs=3"], 2),                  # a mistyped key
    ("run_benchmark.py", ["methods=NOP"], 2),                      # an unknown method
    ("run_benchmark.py", ["method_args.NPO.betta=1"], 2),          # a method's unknown hyperparameter
    ("run_benchmark.py", ["experiment=wmdp", "task.nope=1"], 2),   # a task family's unknown key
    ("run_benchmark.py", ["robustness.attacks=nope"], 2),          # an unknown attack
    ("run_benchmark.py", ["model.dtype=fp32"], 2),
    ("tune.py", ["--help"], 0),
    ("tune.py", ["tuning.budget=-1"], 2),
])
def test_help_and_input_errors_load_no_heavy_library(script, argv, code):
    done = start(script, argv)
    assert done["code"] == code
    assert done["loaded"] == [], f"{script} {argv} imported {done['loaded']} before answering"


def test_a_deferred_module_imports_on_first_use():
    sys.modules.pop("colorsys", None)
    colorsys = Deferred("colorsys")
    assert "colorsys" not in sys.modules
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules
    with pytest.raises(AttributeError):
        colorsys.no_such_function  # noqa: B018  (the read is the test)
