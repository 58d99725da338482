"""Puts the module into the package at build time: `pip install ./python` in a checkout takes the
module `make wasm` built (target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm) when it is newer than
the copy in tinyrustlm/, and refuses to build a package without one."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUILT = HERE.parent / "target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm"
SHIPPED = HERE / "tinyrustlm/tinyrustlm.wasm"


class BuildWithModule(build_py):
    def run(self):
        if BUILT.exists() and (not SHIPPED.exists() or BUILT.stat().st_mtime > SHIPPED.stat().st_mtime):
            shutil.copyfile(BUILT, SHIPPED)
        if not SHIPPED.exists():
            raise SystemExit(f"no module to ship: build it with `make wasm` ({BUILT}) or copy a tinyrustlm.wasm to {SHIPPED}")
        super().run()


setup(cmdclass={"build_py": BuildWithModule})
