"""All of the product's Redis I/O for jobs: the job store (``jobs``), every key name (``keys``),
the Lua scripts (``lua/*.lua``, loaded by ``scripts``), per-IP limits (``limits``), locks
(``locks``), connections and replicated acknowledgements (``connection``), and the key-name
migration (``migrate``). The webhook tables are written by ``worker.webhooks`` with these keys and
scripts. Imports ``worker.domain``, ``worker.config``, ``schemas`` and the shared helpers only.
"""
