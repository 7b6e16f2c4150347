"""The locked environment: the lock parses, differences from it are found, and the installed packages equal it
(the README's commands install it exactly; scripts/check_latest.sh sets UNLEARNBENCH_UNLOCKED=1 to run the tests on
newer releases on purpose)."""
import os

import pytest

from unlearnbench import environment


def test_lock_pins_every_direct_dependency():
    cpu, gpu = (environment.pins(environment.LOCKS / name) for name in environment.LOCK_FILES)
    for pkg in ("torch", "transformers", "accelerate", "peft", "lm-eval", "datasets", "pytest", "setuptools"):
        assert pkg in cpu and pkg in gpu, pkg
    assert cpu["torch"].endswith("+cpu") and cpu["torch"].split("+")[0] == gpu["torch"]
    # the GPU lock differs from the CPU lock only in torch and what the CUDA build brings
    assert all(gpu[name] == v for name, v in cpu.items() if name != "torch")
    assert all(name.startswith(("nvidia-", "cuda-", "triton")) for name in set(gpu) - set(cpu))


def test_drift_names_each_difference(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(f"# a comment\npytest=={environment.installed('pytest')}\n    # via x\n"
                    "torch==0.0.1\nno-such-package-xyz==1.0 ; python_version >= '3'\n")
    assert environment.pins(lock) == {"pytest": environment.installed("pytest"), "torch": "0.0.1",
                                      "no-such-package-xyz": "1.0"}
    assert environment.drift(lock) == [f"torch {environment.installed('torch')} (lock 0.0.1)",
                                       "no-such-package-xyz missing (lock 1.0)"]
    (tmp_path / "empty.txt").write_text("# nothing pinned\n")
    with pytest.raises(ValueError, match="pins no package"):
        environment.pins(tmp_path / "empty.txt")


@pytest.mark.skipif(os.environ.get("UNLEARNBENCH_UNLOCKED") == "1", reason="newest releases on purpose")
def test_installed_packages_equal_a_lock():
    described = environment.describe()
    assert described["matches_lock"], f"installed packages differ from the lock: {described['lock_drift']}"
