"""Masked views of payer data, for records, logs and APIs: enough to recognise, not to use."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

__all__ = ["mask_mobile", "mask_email", "mask_name", "mask_ip", "mask_contact"]


def mask_mobile(value: object) -> str:
    text = str(value or "")
    return text[:3] + "*" * max(0, len(text) - 7) + text[-4:] if len(text) > 7 else "*" * len(text)


def mask_email(value: object) -> str:
    text = str(value or "")
    local, at, domain = text.partition("@")
    if not at:
        return "*" * min(len(text), 8)
    return (local[:1] + "***") + "@" + domain


def mask_name(value: object) -> str:
    text = str(value or "")
    return text[:1] + "*" * (len(text) - 1) if text else ""


def mask_ip(value: object) -> str:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        return "*"
    if ip.version == 4:
        return ".".join(str(ip).split(".")[:2] + ["*", "*"])
    return ip.exploded.split(":")[0] + ":*"


def mask_contact(payload: Mapping[str, object]) -> dict[str, str]:
    """The masked contact kept on a record after the payer data is purged."""
    maskers = {"mobile": mask_mobile, "email": mask_email, "firstname": mask_name,
               "lastname": mask_name, "ipAddress": mask_ip}
    return {key: mask(payload.get(key)) for key, mask in maskers.items() if payload.get(key)}
