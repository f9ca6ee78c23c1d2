"""DelayTimers: callbacks a fixed delay after they are armed, behind one loop timer handle."""

import asyncio

import pytest

from robutler_core.timers import DelayTimers


async def test_armed_callbacks_run_once_after_the_delay_in_order_and_cancelled_ones_never():
    loop = asyncio.get_running_loop()
    timers = DelayTimers.for_running_loop(None, 0.05)
    ran = []
    start = loop.time()
    for name in "abcd":
        timers.arm(name, lambda name=name: ran.append((name, loop.time() - start)))
        await asyncio.sleep(0.01)
    timers.cancel("b")
    timers.cancel("missing")  # nothing
    await asyncio.sleep(0.12)
    assert [name for name, _ in ran] == ["a", "c", "d"]
    for index, (_name, elapsed) in zip((0, 2, 3), ran):
        assert elapsed >= 0.05 + index * 0.01 - 0.002
    timers.arm("e", lambda: ran.append(("e", 0)))  # after a quiet spell, armed again
    await asyncio.sleep(0.08)
    assert ran[-1][0] == "e" and len(ran) == 4


async def test_the_timers_are_reused_for_the_same_loop_and_delay_only():
    timers = DelayTimers.for_running_loop(None, 1.0)
    assert DelayTimers.for_running_loop(timers, 1.0) is timers
    assert DelayTimers.for_running_loop(timers, 2.0) is not timers


async def test_a_callback_that_arms_another_or_raises_leaves_the_others_running():
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
    timers = DelayTimers.for_running_loop(None, 0.02)
    ran = []

    def again():
        ran.append("first")
        timers.arm("again", lambda: ran.append("again"))

    def fail():
        raise ValueError("boom")

    timers.arm("first", again)
    timers.arm("fail", fail)
    timers.arm("last", lambda: ran.append("last"))
    await asyncio.sleep(0.1)
    assert ran == ["first", "last", "again"]
    assert [str(e) for e in errors] == ["boom"]


async def test_a_key_armed_again_is_due_after_the_others_and_does_not_hold_them_back():
    loop = asyncio.get_running_loop()
    timers = DelayTimers.for_running_loop(None, 0.05)
    ran = []
    start = loop.time()
    timers.arm("a", lambda: ran.append(("a-first", loop.time() - start)))
    await asyncio.sleep(0.01)
    timers.arm("b", lambda: ran.append(("b", loop.time() - start)))
    await asyncio.sleep(0.01)
    timers.arm("a", lambda: ran.append(("a", loop.time() - start)))  # replaces a's callback, due last
    await asyncio.sleep(0.1)
    assert [name for name, _ in ran] == ["b", "a"]
    assert ran[0][1] < 0.05 + 0.01 + 0.015  # b on time, not held back behind a's new deadline


def test_outside_a_running_loop_it_is_an_error():
    with pytest.raises(RuntimeError):
        DelayTimers.for_running_loop(None, 1.0)
