"""Report data (one execution's, the process's, the slowest traces) and their renderings:
terminal, JSON/CSV, HTML pages (templates/), and the report written at exit.

Kept free of imports so that ``import flowscope`` can register the exit report cheaply;
``flowscope.performance`` re-exports what is public.
"""
