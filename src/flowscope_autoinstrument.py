"""flowscope's start-up hook: ``FLOWSCOPE_AUTO_INSTRUMENT=true python app.py``.

``flowscope_autoinstrument.pth`` (installed into site-packages with the package, see setup.py)
imports this module at interpreter start, and only when FLOWSCOPE_AUTO_INSTRUMENT is set to
something else than an "off" value, then calls :func:`start`. It is a separate top-level module,
importing nothing at module level, so that whatever goes wrong later (a broken dependency, a bad
setting) can be caught and reported in one line: a ``.pth`` line that raises makes ``site``
print a whole traceback. The work itself is in ``flowscope.telemetry._autoinstrument``.
"""

import sys

_started = False


def start() -> None:
    """Instrument this interpreter (``flowscope.telemetry._autoinstrument.install``); never raise.

    Runs once: some interpreters (a venv of pyenv's CPython 3.11) read site-packages' ``.pth``
    files twice at start-up.
    """
    global _started
    if _started:
        return
    _started = True
    try:
        from flowscope.telemetry._autoinstrument import install

        install()
    except Exception as err:
        sys.stderr.write(f"flowscope: FLOWSCOPE_AUTO_INSTRUMENT is set but auto-instrumentation failed at "
                         f"start-up ({type(err).__name__}: {err}); the application runs without it\n")
