"""Every proxied response names its request: an id unique across requests, workers and instances."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from proxy_api.calls import new_request_id
from tests.support.server import REPO_ROOT

REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")


def test_ids_are_well_formed_and_unique():
    ids = [new_request_id() for _ in range(5000)]
    assert all(REQUEST_ID.fullmatch(value) for value in ids)
    assert len(set(ids)) == 5000


def test_a_forked_worker_draws_its_own_prefix():
    """gunicorn forks its workers from one master: each must not continue the parent's sequence."""
    parent = new_request_id()
    code = ("import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'gateway_project.settings');"
            "import django; django.setup(); from proxy_api.calls import new_request_id\n"
            "first = new_request_id(); pid = os.fork()\n"
            "if pid == 0:\n    print(new_request_id(), flush=True); os._exit(0)\n"
            "os.waitpid(pid, 0); print(first); print(new_request_id())")
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                            env={**os.environ, "SECRET_KEY": "x"}).stdout.split()
    child, first, after = output
    assert first[:20] == after[:20]  # the same process keeps its prefix
    assert child[:20] != first[:20]  # the forked child has its own
    assert parent[:20] not in {child[:20], first[:20]}


def test_proxied_responses_carry_the_id(client, configure_gateway, auth_headers):
    configure_gateway({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    first = client.post("/v1/chat/completions", data=body, content_type="application/json", **auth_headers)
    second = client.post("/v1/chat/completions", data=body, content_type="application/json", **auth_headers)
    assert REQUEST_ID.fullmatch(first["x-request-id"])
    assert first["x-request-id"] != second["x-request-id"]
