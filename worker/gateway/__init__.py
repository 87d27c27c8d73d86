"""The Vexora protocol (docs/gateway.md): the HTTP client (``client``), the MD5 signature
(``signing``), what its answer codes mean (``answers``) and the retry policy (``retry``). No Redis;
imports ``worker.domain``, ``worker.config``, ``schemas`` and the shared helpers only.
"""
