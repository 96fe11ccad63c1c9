"""Build step of flowscope's start-up hook; all other metadata is in pyproject.toml.

``FLOWSCOPE_AUTO_INSTRUMENT=true python app.py`` works through ``flowscope_autoinstrument.pth``,
which must land at the ROOT of site-packages (``site`` only reads ``.pth`` files there) for a
regular install and for an editable one (``pip install -e .``, as the Makefile does).
setuptools has no declarative way to do both: ``data-files`` paths are relative to the
installation prefix (``lib/python3.X/site-packages`` would hard-code the Python version and the
scheme), and package data lands inside the package. So ``build_py`` writes the file:

- regular wheel (``pip install .``, ``python -m build``): into ``build_lib``, the root of the wheel,
  which the installer unpacks into site-packages (and lists in RECORD, so uninstall removes it);
- editable wheel (PEP 660, setuptools >= 64): ``editable_wheel`` points ``install_lib`` at the
  unpacked editable wheel's root (files there go to site-packages as they are), whereas
  ``build_lib`` is a throw-away directory in that mode; so the file goes to ``install_lib``.

setuptools silences an exception raised by a customised ``build_py`` during an editable build
(it warns and carries on), so tests/test_startup_hook.py checks that the file is really in
site-packages, and benchmarks/bench_startup_hook.py measures what it costs at start-up.

The line costs one ``os.environ.get`` when FLOWSCOPE_AUTO_INSTRUMENT is unset or "off"; the
``.pth`` sorts after setuptools' ``__editable__.*.pth``, which puts ``src/`` on sys.path for an
editable install before this line imports ``flowscope_autoinstrument`` from there.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "flowscope_autoinstrument.pth"
PTH_LINE = (
    "import os; "
    "os.environ.get('FLOWSCOPE_AUTO_INSTRUMENT', '').strip().lower() not in ('', '0', 'false', 'no', 'off') "
    "and __import__('flowscope_autoinstrument').start()\n"
)


class build_py_with_startup_hook(build_py):  # noqa: N801 - setuptools command naming
    """``build_py`` that also writes ``flowscope_autoinstrument.pth`` (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, PTH_NAME)
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(PTH_LINE)
        self._startup_hook = path

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        hook = getattr(self, "_startup_hook", None)
        if hook and not getattr(self, "editable_mode", False):
            outputs.append(hook)
        return outputs


setup(cmdclass={"build_py": build_py_with_startup_hook})
