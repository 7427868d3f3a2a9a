"""OpenAI-compatible HTTP server with a chat page: `lazyllm-edge-server` or `python -m lazyllm_edge.server`.

Needs the `server` extra (pip install 'lazyllm_edge[server]'); `import lazyllm_edge` does not. Layout: `app.py`
(routes), `schemas.py` (request validation), `slots.py` (slots, queue, worker threads), `metrics.py` (Prometheus
text), `errors.py` (OpenAI error bodies), `static/index.html` (the chat page)."""
