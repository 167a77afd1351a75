"""What the `/v1/messages` end-to-end tests share: Anthropic's tool, its raw event stream, spend rows."""
from __future__ import annotations

import json

import requests

from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, GatewayProcess

WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def events(response: requests.Response) -> list[tuple[str, dict]]:
    """Every SSE frame of a whole body as (event name, parsed data), checking each has both lines."""
    parsed = []
    for block in response.content.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        parsed.append((name_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return parsed


def post_messages(gateway: GatewayProcess, body: dict, path: str = "/v1/messages", **headers) -> requests.Response:
    return requests.post(f"{gateway.url}{path}", json=body, timeout=30,
                         headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01", **headers})


def spend_log(gateway: GatewayProcess, request_id: str) -> dict:
    rows: list[dict] = []

    def logged() -> bool:
        response = requests.get(f"{gateway.url}/spend/logs", params={"request_id": request_id},
                                headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
        rows[:] = response.json()
        return bool(rows)

    assert wait_until(logged, seconds=10)
    [row] = rows
    return row
