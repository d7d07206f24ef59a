"""The engine: chain runner (with the prefix cache), run store (run.json) and analysis.

- ``engine.runner``: runs recipes (chains of typed steps) on a model, caching shared prefixes;
- ``engine.oracles``: the measurements handed to techniques through their ``StepContext``;
- ``engine.store``: the run directory and the one reader/writer of run.json (schema, migration);
- ``engine.analysis``: comparison with the baseline, Pareto front, best within a budget.
"""
