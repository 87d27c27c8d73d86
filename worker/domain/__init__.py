"""The pure rules: job states and the only moves between them (``states``), what each report
from the gateway means for a job (``settlement``), the exception tree (``errors``), masked views
of payer data (``masking``) and a webhook secret's format (``webhook_secret``). No I/O; imports
nothing of ``worker`` outside this folder. The state machine is ``states`` + ``settlement``; the
store's ``lua/move.lua`` enforces its moves atomically.
"""
