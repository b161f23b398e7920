"""xAPI statements: validation, comparison, canonical (stored) form, time handling.

- :mod:`.validate`: ``validate_statement``, ``validate_statements``,
  ``parse_statements_json``, ``attachments_needing_parts`` (xAPI 1.0.3 and 2.0 rules).
- :mod:`.compare`: ``same_statement`` (Statement Comparison Requirements).
- :mod:`.canonical`: ``canonicalize`` (id, stored, timestamp, authority, version).
- :mod:`.timefmt`: ``parse_ms``/``format_ms``; :mod:`.duration`: ``duration_ms``.
- :mod:`.formats`: the string formats (IRI, UUID, mailto, hashes, language tags).
"""
