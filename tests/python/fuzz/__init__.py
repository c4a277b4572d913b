"""A seeded, grammar-based SQL fuzzer for meshql over the demo mesh.

- `mesh.py`: the demo mesh as the fuzzer sees it: products and their columns (read from the
  server), who may see what, and each principal's row filters and masks written out as SQL, so
  that a principal's query can be rewritten into the admin query that must give the same answer.
- `grammar.py`: the statement generator (joins across domains, aggregates, windows, casts,
  nested expressions, time travel, parameters, system tables, EXPLAIN, deep nesting, junk).
- `runner.py`: runs generated statements as every demo principal and checks the invariants:
  the server stays up, every failure is a clean Flight status, a restricted principal's answer
  equals admin's answer over the rewritten query, a hidden product fails exactly like a missing
  one, and nothing hidden appears in results, errors or EXPLAIN output.
- `__main__.py`: a command line for long runs (`python -m fuzz --minutes 60`), see
  docs/testing.md.

Every statement is generated from its own `random.Random(f"{seed}:{index}")`, so one statement
reproduces alone from the seed and its index.
"""
