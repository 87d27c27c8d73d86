"""vexora-checkout: the checkout worker for the Vexora payment gateway.

A regular package (not a namespace one), so that no other installed ``worker/`` directory can
merge into it. Deliberately imports nothing: ``celery -A worker`` finds the app in
``worker.celery`` only because this package has no ``app`` or ``celery`` attribute, and every
``python -m worker.<module>`` would otherwise pay for what is imported here.
"""

# The one place the version is written: pyproject.toml reads it from here at build time
# ([tool.setuptools.dynamic]), so the installed metadata and `vexora-checkout --version` agree.
__version__ = "0.1.0"
