"""Configuration: one frozen ``Settings`` built from the environment (``settings``), how a process
stops when it is wrong (``startup``), and what ``REDIS_URL`` says (``redis_url``). Imports only
``worker.domain`` and the shared helpers.
"""
