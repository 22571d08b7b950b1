"""Demo data: `make demo` fills a running system with a realistic business through its public
API. `fill` posts it; `business` (with `people`, `orders`, `interactions`, `catalog`) generates it
without I/O; `posting` sends batches; `summary` reports."""
