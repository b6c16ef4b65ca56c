"""The apps and the stand-in sink that ``bench/agent_overhead`` runs: the same endpoint in Flask and
in Django (three SQL queries and a template), each with no agent, ours, sentry-sdk or elastic-apm,
chosen by the ``BENCH_AGENT`` environment variable. Benchmark code only: never imported by the
server or the agent."""
