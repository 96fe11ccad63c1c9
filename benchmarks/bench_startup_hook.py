"""What the FLOWSCOPE_AUTO_INSTRUMENT start-up hook costs every Python start when it is OFF.

    .venv/bin/python benchmarks/bench_startup_hook.py          # BENCH_RUNS=300 by default

Target: under 5 ms added to ``python -c pass`` with FLOWSCOPE_AUTO_INSTRUMENT unset (exit 1
otherwise). Method, side by side:

1. Interpreter starts. A throw-away venv (``python -m venv --without-pip``) of the same
   interpreter gets a copy of the ``flowscope_autoinstrument.pth`` that is really installed in
   the dev venv (the script fails if it is not there). ``python -c pass`` is run ``BENCH_RUNS``
   times with the file active and as many times renamed to ``.pth.off`` (then ``site`` ignores
   it), alternating the order every round, so that drift lands on both sides alike. The
   headline is the difference of the medians; the difference of the minimums is printed
   beside it. Everything else in the two interpreters is identical, so the difference is the
   hook's cost plus noise (a start costs ~15-25 ms here and varies by about a millisecond).
2. The line itself, in process: ``exec`` of the installed line, timed with ``timeit`` with the
   variable unset. This is precise (microseconds) but leaves out reading the file, which (1)
   includes. Some interpreters read site-packages' ``.pth`` files twice per start (a venv of
   pyenv's CPython 3.11 does), so the line can run twice.
3. For information: the start-up with the hook ON (FLOWSCOPE_AUTO_INSTRUMENT=true, in the dev
   venv: importing flowscope, OpenTelemetry and SQLAlchemy and configuring), against the dev
   venv's start with it off.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import timeit
from pathlib import Path
from time import perf_counter

from _harness import Check, Report, describe, env_int

PTH_NAME = "flowscope_autoinstrument.pth"
TARGET_MS = 5.0


def installed_hook() -> Path:
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not path.is_file():
        sys.exit(f"{path} is missing: install flowscope (pip install -e .) into {sys.prefix} first")
    return path


def start_seconds(python: str, env: dict[str, str]) -> float:
    began = perf_counter()
    subprocess.run([python, "-c", "pass"], env=env, check=True, stdin=subprocess.DEVNULL)
    return perf_counter() - began


def main() -> None:
    runs = env_int("BENCH_RUNS", 300)
    hook = installed_hook()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSCOPE_", "PYTHON"))}
    report = Report("bench_startup_hook")
    print(f"hook: {hook}\n  {hook.read_text().strip()}")

    with tempfile.TemporaryDirectory(prefix="flowscope-startup-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      check=True, capture_output=True, text=True).stdout.strip())
        active, inactive = purelib / PTH_NAME, purelib / (PTH_NAME + ".off")
        shutil.copy(hook, inactive)
        samples: dict[str, list[float]] = {"with hook": [], "without hook": []}
        for _ in range(5):                                  # warm the page cache
            start_seconds(python, env)
        for r in range(runs):
            order = ["with hook", "without hook"] if r % 2 == 0 else ["without hook", "with hook"]
            for name in order:
                if name == "with hook":
                    inactive.rename(active)
                    samples[name].append(start_seconds(python, env))
                    active.rename(inactive)
                else:
                    samples[name].append(start_seconds(python, env))

    print(f"\n1. python -c pass, {runs} starts each, interleaved (throw-away venv, the installed hook copied in)")
    for name, values in samples.items():
        print(f"  {name:<14} {describe(values, 1e3, 'ms')}")
    median_ms = (statistics.median(samples["with hook"]) - statistics.median(samples["without hook"])) * 1e3
    min_ms = (min(samples["with hook"]) - min(samples["without hook"])) * 1e3
    print(f"  added: {median_ms:+.3f} ms (difference of medians), {min_ms:+.3f} ms (difference of minimums)")
    report.checks.append(Check("start-up added by the hook (median)", median_ms, TARGET_MS, "ms",
                               note=f"difference of minimums {min_ms:+.3f} ms; noise of one start ~1 ms"))

    line = hook.read_text()
    saved = os.environ.pop("FLOWSCOPE_AUTO_INSTRUMENT", None)
    try:
        n = 200_000
        per_line = min(timeit.repeat(lambda: exec(line, {}), number=n, repeat=5)) / n
    finally:
        if saved is not None:
            os.environ["FLOWSCOPE_AUTO_INSTRUMENT"] = saved
    print(f"\n2. the line itself, variable unset (exec, in process): {per_line * 1e6:.2f} us")
    report.info["line_us"] = per_line * 1e6

    on_runs = max(5, runs // 30)
    dev_off = [start_seconds(sys.executable, env) for _ in range(on_runs)]
    dev_on = [start_seconds(sys.executable, dict(env, FLOWSCOPE_AUTO_INSTRUMENT="true")) for _ in range(on_runs)]
    print(f"\n3. for information, the dev venv ({on_runs} starts each): hook off "
          f"{statistics.median(dev_off) * 1e3:.1f} ms, FLOWSCOPE_AUTO_INSTRUMENT=true "
          f"{statistics.median(dev_on) * 1e3:.1f} ms (imports flowscope, OpenTelemetry, SQLAlchemy; configures)")
    report.info.update(added_median_ms=median_ms, added_min_ms=min_ms, runs=runs,
                       dev_off_ms=statistics.median(dev_off) * 1e3, dev_on_ms=statistics.median(dev_on) * 1e3)
    report.print_and_exit()


if __name__ == "__main__":
    main()
