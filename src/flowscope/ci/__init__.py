"""The CI gate: ``flowscope check`` runs a scenario, takes the process report's verdict, and
writes it in the formats CI systems read (GitHub annotations, JUnit XML, SARIF); baselines,
finding identities and ``[tool.flowscope]`` (read by the pytest plugin too) for adopting it.

``flowscope.performance`` re-exports ``run_check``; the CLI uses the formats.
"""
