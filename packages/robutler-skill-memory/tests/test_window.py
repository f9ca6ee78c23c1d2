"""The context window (robutler_skill_memory.window): examples, then properties (hypothesis)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robutler_skill_memory.window import BYTES_PER_TOKEN, IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS, estimate_tokens, trim


def user(text="q"):
    return {"role": "user", "content": text}


def assistant(text="a"):
    return {"role": "assistant", "content": text}


def system(text="s"):
    return {"role": "system", "content": text}


def tool_turn(*ids, text=None):
    """An assistant message calling tools ``ids`` and their results."""
    call = {"role": "assistant", "content": text, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]}
    return [call] + [{"role": "tool", "tool_call_id": i, "content": "r"} for i in ids]


# -- examples ---------------------------------------------------------------------------------

def test_short_conversation_is_unchanged_and_the_same_objects():
    messages = [system(), user(), assistant(), user("again")]
    kept = trim(messages)
    assert kept == messages
    assert all(a is b for a, b in zip(kept, messages))


def test_oldest_messages_go_first_and_system_stays():
    messages = [system(), user("1"), assistant("1"), user("2"), assistant("2"), user("3")]
    assert trim(messages, max_messages=4) == [system(), user("2"), assistant("2"), user("3")]


def test_default_max_messages_is_50():
    messages = [m for i in range(40) for m in (user(str(i)), assistant(str(i)))]
    kept = trim(messages)
    assert len(kept) == 50
    assert kept == messages[-50:]


def test_tool_calls_and_results_are_dropped_together():
    messages = [user("1"), *tool_turn("a", "b"), assistant("1"), user("2")]
    # Room for 4 messages: the tool group (3 messages) does not fit after "1"+"2"; so history is
    # cut before it, and then the leading assistant message goes (history starts with a user).
    assert trim(messages, max_messages=4) == [user("2")]
    assert trim(messages, max_messages=6) == messages


def test_history_never_starts_with_a_tool_result_or_an_assistant_message():
    messages = [user("1"), *tool_turn("a"), user("2"), assistant("2"), user("3")]
    kept = trim(messages, max_messages=4)
    assert kept == [user("2"), assistant("2"), user("3")]


def test_current_exchange_with_tool_results_is_kept_whole_even_over_the_limits():
    messages = [system(), user("old"), assistant("old"), user("now"), *tool_turn("x", "y", "z")]
    kept = trim(messages, max_messages=2, max_tokens=1)
    assert kept == [system(), user("now"), *tool_turn("x", "y", "z")]


def test_system_messages_keep_their_place():
    messages = [system("a"), user("1"), assistant("1"), system("b"), user("2")]
    assert trim(messages, max_messages=3) == [system("a"), system("b"), user("2")]
    assert trim(messages) == messages


def test_developer_messages_count_as_system():
    messages = [{"role": "developer", "content": "d"}, user("1"), assistant("1"), user("2")]
    assert trim(messages, max_messages=2) == [messages[0], user("2")]


def test_token_limit_drops_big_old_messages():
    big = "x" * 4000  # about 1000 tokens
    messages = [user(big), assistant("ok"), user("small"), assistant("ok"), user("last")]
    kept = trim(messages, max_tokens=100)
    assert kept == [user("small"), assistant("ok"), user("last")]
    assert sum(map(estimate_tokens, kept)) <= 100


def test_window_is_contiguous_a_big_message_ends_it():
    big = "x" * 4000
    messages = [user("a"), assistant("a"), user(big), assistant("b"), user("c")]
    assert trim(messages, max_tokens=50) == [user("c")]


def test_custom_token_counter():
    messages = [user("1"), assistant("1"), user("2")]
    assert trim(messages, max_tokens=2, count_tokens=lambda m: 1) == [user("2")]
    assert trim(messages, max_tokens=3, count_tokens=lambda m: 1) == messages


def test_no_user_message_keeps_the_last_group():
    messages = [system(), assistant("1"), *tool_turn("a")]
    assert trim(messages, max_messages=1) == [system(), *tool_turn("a")]


def test_empty_and_system_only_conversations():
    assert trim([]) == []
    assert trim([system()], max_messages=1) == [system()]


@pytest.mark.parametrize("limits", [{"max_messages": 0}, {"max_tokens": 0}, {"max_messages": -3}])
def test_limits_below_one_are_refused(limits):
    with pytest.raises(ValueError, match="must be at least 1"):
        trim([user()], **limits)


def test_estimate_counts_utf8_bytes_tool_calls_and_images():
    assert estimate_tokens({"role": "user", "content": ""}) == MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens(user("abcd" * 10)) == MESSAGE_OVERHEAD_TOKENS + 10
    assert estimate_tokens(user("猫" * 4)) == MESSAGE_OVERHEAD_TOKENS + 3  # 12 bytes
    parts = {"role": "user", "content": [
        {"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "data:..."}},
    ]}
    assert estimate_tokens(parts) == MESSAGE_OVERHEAD_TOKENS + 1 + IMAGE_TOKENS
    call = tool_turn("id")[0]
    expected = len(("f" + "{}" + "id").encode())
    assert estimate_tokens(call) == MESSAGE_OVERHEAD_TOKENS + -(-expected // BYTES_PER_TOKEN)
    assert estimate_tokens({"role": "assistant", "content": None}) == MESSAGE_OVERHEAD_TOKENS


# -- properties -------------------------------------------------------------------------------

texts = st.text(max_size=60)


@st.composite
def conversations(draw):
    """Conversations as clients and the loop build them: system messages, user and assistant
    messages, tool turns (an assistant message with 1-3 calls and their results)."""
    messages = []
    counter = 0
    for kind in draw(st.lists(st.sampled_from(["system", "user", "user", "assistant", "tools"]), max_size=30)):
        if kind == "system":
            messages.append(system(draw(texts)))
        elif kind == "user":
            messages.append(user(draw(texts)))
        elif kind == "assistant":
            messages.append(assistant(draw(texts)))
        else:
            ids = []
            for _ in range(draw(st.integers(1, 3))):
                counter += 1
                ids.append(f"call_{counter}")
            messages.extend(tool_turn(*ids, text=draw(st.none() | texts)))
    return messages


limits = st.none() | st.integers(1, 40)
token_limits = st.none() | st.integers(1, 400)


def positions(kept, messages):
    """The input positions of the kept messages (they are the same objects)."""
    ids = {id(m): i for i, m in enumerate(messages)}
    return [ids[id(m)] for m in kept]


def mandatory(messages):
    """System messages and everything from the latest user message on (the last group when
    there is no user message)."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if users:
        start = users[-1]
    else:
        start = len(messages)
        while start > 0 and messages[start - 1]["role"] in ("tool", "system"):
            start -= 1
        start = max(start - 1, 0)
        while start > 0 and messages[start]["role"] == "system":
            start -= 1
    return {i for i, m in enumerate(messages) if m["role"] == "system" or i >= start}


@settings(max_examples=300, deadline=None)
@given(conversations(), limits, token_limits)
def test_window_properties(messages, max_messages, max_tokens):
    kept = trim(messages, max_messages=max_messages, max_tokens=max_tokens)
    at = positions(kept, messages)
    # A subsequence of the input, in order, each message once.
    assert at == sorted(set(at))
    # System messages and the current exchange are always there.
    required = mandatory(messages)
    assert required <= set(at)
    # Tool calls and results are never separated: every kept tool result follows its kept call.
    calls_kept = {c["id"] for m in kept for c in m.get("tool_calls") or []}
    results_kept = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
    assert calls_kept == results_kept
    for i, m in enumerate(kept):
        if m["role"] == "tool":
            previous = next(p for p in reversed(kept[:i]) if p["role"] != "system")
            assert previous["role"] in ("tool", "assistant")
    # The history is one contiguous run of the non-system messages, ending at the end.
    others = [i for i, m in enumerate(messages) if m["role"] != "system"]
    kept_others = [i for i in at if messages[i]["role"] != "system"]
    assert kept_others == others[len(others) - len(kept_others):]
    # It starts with a user message whenever the input has one.
    if any(m["role"] == "user" for m in messages) and kept_others:
        assert messages[kept_others[0]]["role"] == "user"
    # The limits hold, unless the required messages alone break them.
    if set(at) != required:
        if max_messages is not None:
            assert len(kept) <= max_messages
        if max_tokens is not None:
            assert sum(map(estimate_tokens, kept)) <= max_tokens


@settings(max_examples=200, deadline=None)
@given(conversations())
def test_a_conversation_within_the_limits_is_kept_whole(messages):
    first = next((m for m in messages if m["role"] != "system"), None)
    kept = trim(messages, max_messages=len(messages) or 1, max_tokens=sum(map(estimate_tokens, messages)) or 1)
    if first is None or first["role"] == "user":
        assert kept == messages


@settings(max_examples=200, deadline=None)
@given(conversations(), st.integers(1, 40))
def test_a_bigger_window_keeps_at_least_as_much(messages, max_messages):
    smaller = trim(messages, max_messages=max_messages)
    bigger = trim(messages, max_messages=max_messages + 5)
    assert {id(m) for m in smaller} <= {id(m) for m in bigger}
