"""Extension points that list themselves: a folder's modules are its catalogue.

`members(package, keep)` imports every module of a package (not its subpackages) in name
order and returns what `keep` accepts among the objects each module defines. Stages,
formats and model backends are found this way, so adding one is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any


def modules(package: str) -> list[ModuleType]:
    """Every module of `package`, imported, in name order (its `__path__` may span folders)."""
    root = importlib.import_module(package)
    found = sorted(info.name for info in pkgutil.iter_modules(root.__path__)
                   if not info.ispkg and not info.name.startswith("_"))
    return [importlib.import_module(f"{package}.{name}") for name in found]


def members(package: str, keep: Callable[[Any], bool]) -> list[Any]:
    """The objects defined in the modules of `package` (not imported into them) that `keep`
    accepts, module by module in name order, then in definition order."""
    out = []
    for module in modules(package):
        for value in vars(module).values():
            if getattr(value, "__module__", module.__name__) == module.__name__ and keep(value):
                out.append(value)
    return out
