"""Child process of :func:`hakfuzz.native.info` for builds this process cannot load.

``python -m hakfuzz.native._probe MODULE_NAME SO_PATH`` loads the module (the
parent starts it with the sanitizer runtime preloaded) and prints its default
configuration as JSON.  Kept apart from ``_info`` so that running it does not
import itself twice.
"""

from __future__ import annotations

import importlib.util
import json
import sys

from hakfuzz.native._info import read_default_config


def main(argv: list[str]) -> int:
    """Load ``argv[1]`` from path ``argv[2]`` and print its default config."""
    module_name, so_path = argv[1], argv[2]
    spec = importlib.util.spec_from_file_location(module_name, so_path)
    if spec is None or spec.loader is None:
        print(f"cannot load {so_path}: not an extension module", file=sys.stderr)
        return 1
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(json.dumps(read_default_config(module.ffi, module.lib)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
