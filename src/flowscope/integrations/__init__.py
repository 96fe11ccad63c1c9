"""Integrations with the tools an application already runs: the pytest plugin (pytest_plugin) and
query budgets for tests (_query_budget, public as ``flowscope.testing``); the top layer of the
library, importing any layer below.
"""
