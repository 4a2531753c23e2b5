"""Public names of a package imported on first use (PEP 562), so that importing the
package (and ``cavmae --help``) loads nothing heavy.

Authors
 * speechbrain-cavmae contributors 2026
"""

import importlib


def lazy_exports(package, exports, namespace):
    """``(__getattr__, __dir__)`` for ``package`` whose public names ``exports`` maps to
    the submodule defining each; ``namespace`` is the package's ``globals()`` (a name is
    cached there once imported)."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
