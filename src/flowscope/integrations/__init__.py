"""Integrations with the tools an application already runs (test runners, web frameworks,
task queues, load generators); the top layer of the library, importing any layer below.
"""
