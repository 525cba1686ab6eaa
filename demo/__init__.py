"""The demos: ``make demo`` tells the whole story (story.py), ``make demo-core`` compares
digest statistics with exact ones (digests.py), and duckdb_data.py builds the DuckDB demo
database with known drift that the story, the tests and the benchmarks use."""
