"""Starting, watching and stopping the service from outside, as real processes: used by ``sentimentalyzer
serve``, the end-to-end tests and the benchmarks alike. ``processes``: child processes and a
private redis-server; ``service``: an API and its workers, the naive server, readiness; ``corpus``: realistic
request texts."""
