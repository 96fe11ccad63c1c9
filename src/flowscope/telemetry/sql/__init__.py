"""SQL statements inside operations: the listeners that attribute every query to its operation
(_listeners), what a statement's text says (_text: fingerprints, reads and writes, batches, page
walks) and one span's statements grouped by fingerprint, as the finding rules read them (_tallies).

Deliberately import-free: each user imports the module it needs.
"""
