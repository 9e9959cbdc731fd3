//! A throwaway PostgreSQL cluster for tests, examples and benchmarks.
