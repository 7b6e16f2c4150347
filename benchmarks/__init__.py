"""Task families (TOFU-style authors, WMDP-style multiple choice, MUSE-style documents): synthetic generators,
loaders of real data.

Every module here that registers a task (`@task(...)` from unlearnbench.tasks) is imported with the package, so
a new task is one module plus its YAML under configs/task/ (or one file anywhere, with extensions=;
docs/extending.md)."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
