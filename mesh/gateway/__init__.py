"""``mesh gateway``: OpenAI's HTTP API over the mesh, with a receipt on every answer.

Modules (import them directly; this package imports nothing, so the CLI stays
fast and tests can import one part alone):

- :mod:`~mesh.gateway.schemas`: request bodies checked into frozen objects;
- :mod:`~mesh.gateway.errors`: OpenAI's error shape and the mesh's errors mapped to it;
- :mod:`~mesh.gateway.catalog`: the local zoo's models, tokenizers and chat templates;
- :mod:`~mesh.gateway.responses`: response bodies from verified outputs;
- :mod:`~mesh.gateway.evidence`: receipts in the ``X-Mesh-Receipt`` header and ``mesh`` field;
- :mod:`~mesh.gateway.service`: :class:`Gateway`, the endpoints' work over one mesh client;
- :mod:`~mesh.gateway.auth`: optional bearer keys;
- :mod:`~mesh.gateway.sse`: the server-sent events encoder for streaming, when the mesh can;
- :mod:`~mesh.gateway.app`: the starlette app (routes, caps, deadline);
- :mod:`~mesh.gateway.serve`: hypercorn's trio worker, the startup line, signals;
- :mod:`~mesh.gateway.config`: :class:`GatewayConfig`.

The gateway uses only the mesh client's public API (``connect``, ``run``,
``peers``) and never imports torch.
"""
