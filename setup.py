"""Package discovery for the hakfuzz distribution (metadata lives in pyproject.toml).

One import package, three source directories:
``hakfuzz`` <- ``fuzz/``, ``hakfuzz.model`` <- ``model/``, ``hakfuzz.native`` <- ``native/``.
Subpackages under each directory are found automatically; nothing else is
installed at top level.
"""

from pathlib import Path

from setuptools import find_packages, setup

_HERE = Path(__file__).resolve().parent
_ROOTS = {"hakfuzz": "fuzz", "hakfuzz.model": "model", "hakfuzz.native": "native"}


def _packages() -> list[str]:
    found: list[str] = []
    for name, directory in _ROOTS.items():
        found.append(name)
        found.extend(f"{name}.{sub}" for sub in find_packages(str(_HERE / directory)))
    return found


setup(packages=_packages(), package_dir=_ROOTS)
