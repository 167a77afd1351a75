"""Admission on real keys (issued by the services, read back through the key cache): aliases, parallel
slots and their release, tokens per minute, the headers and flags handed to the relay."""
from __future__ import annotations

import pytest

from keys.access import Admission, admit, allowed_groups, parallel_counter
from keys.key_cache import key_lookup
from keys.principal import MASTER, Caller
from keys.services import team_create, virtual_key_generate
from models_registry.counters import counter_delete, counter_get
from providers.errors import RateLimitError

pytestmark = pytest.mark.django_db


def caller_for(**fields) -> Caller:
    issued = virtual_key_generate(fields=fields)
    return Caller(key=key_lookup(issued.plaintext))


def test_the_master_key_is_let_in_untouched():
    admission = admit(caller=MASTER, model="anything", operation="chat")
    assert (admission.model_group, admission.headers, admission.disable_fallbacks) == ("anything", {}, False)
    assert allowed_groups(MASTER) is None
    admission.release(total_tokens=10)


def test_aliases_resolve_to_the_group_and_metadata_may_disable_fallbacks():
    caller = caller_for(aliases={"gpt-4": "my-group"}, metadata={"disable_fallbacks": True})
    admission = admit(caller=caller, model="gpt-4", operation="chat")
    assert (admission.model_group, admission.disable_fallbacks, admission.headers) == ("my-group", True, {})
    assert admit(caller=caller, model="other", operation="chat").model_group == "other"


def test_parallel_slots_are_taken_and_given_back_once():
    caller = caller_for(key_alias="par", max_parallel_requests=2)
    first = admit(caller=caller, model="m", operation="chat")
    second = admit(caller=caller, model="m", operation="chat")
    with pytest.raises(RateLimitError) as refused:
        admit(caller=caller, model="m", operation="chat")
    assert refused.value.message == "Rate limit exceeded for key 'par': 2 requests at a time. Try again in 1 s."
    assert refused.value.headers == {"Retry-After": "1"}
    counter = parallel_counter(caller.key.scopes[0])
    assert counter_get(counter) == 2  # the refused call gave its slot back
    first.release()
    first.release()  # a second release of the same call frees nothing more
    assert counter_get(counter) == 1
    third = admit(caller=caller, model="m", operation="chat")
    for admission in (second, third):
        admission.release()
    assert counter_get(counter) == 0


def test_a_release_never_drives_the_parallel_count_below_zero():
    caller = caller_for(max_parallel_requests=1)
    admission = admit(caller=caller, model="m", operation="chat")
    counter = parallel_counter(caller.key.scopes[0])
    counter_delete(counter)  # the counter expired while the call was in flight
    admission.release()
    assert counter_get(counter) == 0
    admit(caller=caller, model="m", operation="chat")
    with pytest.raises(RateLimitError):
        admit(caller=caller, model="m", operation="chat")


def test_a_team_parallel_limit_is_shared_by_its_keys():
    team_create(fields={"team_alias": "Pool", "max_parallel_requests": 1}, team_id="pool")
    first, second = caller_for(team_id="pool"), caller_for(team_id="pool")
    held = admit(caller=first, model="m", operation="chat")
    with pytest.raises(RateLimitError) as refused:
        admit(caller=second, model="m", operation="chat")
    assert refused.value.message.startswith("Rate limit exceeded for team 'Pool': 1 requests at a time.")
    held.release()
    admit(caller=second, model="m", operation="chat").release()


def test_tokens_released_count_against_the_minute():
    caller = caller_for(key_alias="tok", tpm_limit=100, rpm_limit=50)
    admission = admit(caller=caller, model="m", operation="chat")
    assert isinstance(admission, Admission)
    assert {name: admission.headers[name] for name in (
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens")} == {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "49",
                                             "x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "100"}
    admission.release(total_tokens=60)
    assert admit(caller=caller, model="m", operation="chat").headers["x-ratelimit-remaining-tokens"] == "40"
    admit(caller=caller, model="m", operation="chat").release(total_tokens=40)
    with pytest.raises(RateLimitError) as refused:
        admit(caller=caller, model="m", operation="chat")
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "47"


def test_the_tightest_limit_is_the_one_reported():
    team_create(fields={"rpm_limit": 5}, team_id="tight")
    caller = caller_for(team_id="tight", rpm_limit=100)
    headers = admit(caller=caller, model="m", operation="chat").headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("5", "4")


def test_allowed_groups_answers_as_admission_would():
    team_create(fields={"models": ["a", "b"]}, team_id="grp")
    key = caller_for(team_id="grp", models=["a", "alias"], aliases={"alias": "b"})
    allowed = allowed_groups(key)
    assert ("a" in allowed, "b" in allowed, "alias" in allowed, "c" in allowed) == (True, False, True, False)
    assert allowed_groups(caller_for()) is None
    team_only = allowed_groups(caller_for(team_id="grp"))
    assert ("a" in team_only, "b" in team_only, "c" in team_only) == (True, True, False)
