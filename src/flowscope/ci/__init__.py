"""The CI gate: ``flowscope check`` runs a scenario, takes the process report's verdict, and
writes it in the formats CI systems read (GitHub annotations, JUnit XML).

``flowscope.performance`` re-exports ``run_check``; the CLI uses the formats.
"""
