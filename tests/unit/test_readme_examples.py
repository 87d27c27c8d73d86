"""The payloads shown in the README and docs/producers.md are valid jobs, not just pretty text."""

import json
import re
from pathlib import Path

import pytest

from schemas import CheckoutRequestSchema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = CheckoutRequestSchema(notify_url_default="https://shop.example/vexora/notify")


def curl_bodies(text: str) -> list[dict]:
    return [json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", text, flags=re.S)]


def node_bodies(text: str) -> list[dict]:
    return [json.loads(body) for body in re.findall(r"node enqueue\.js '(\{.*?\})'", text, flags=re.S)]


def python_example(text: str) -> dict:
    block = re.search(r"enqueue_checkout\(\{(.*?)\}\)", text, flags=re.S).group(1)
    body = re.sub(r"#.*", "", block)
    return json.loads("{" + body.strip().rstrip(",") + "}")


EXAMPLES = {
    "README curl": curl_bodies((ROOT / "README.md").read_text())[0],
    "README python": python_example((ROOT / "README.md").read_text()),
    "producers.md node": node_bodies((ROOT / "docs" / "producers.md").read_text())[0],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_payloads_are_valid(name):
    assert SCHEMA.field_errors(EXAMPLES[name]) == {}
