"""What operators run beside the product: deployment-wide metrics (``metrics``) and the
containers' health checks (``healthcheck``).
"""
