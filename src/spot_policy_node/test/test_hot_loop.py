"""spot_policy.ros.hot_loop and spot_policy.ros.polling.Waiter over real rclpy and DDS: the hot input is
handled at once without the executor, everything else of the node still runs, stop and errors."""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from std_msgs.msg import String
from std_srvs.srv import Trigger

from spot_policy.ros.hot_loop import HotInputs, HotLoop, hot_inputs_of
from spot_policy.ros.polling import PolledGroup, Waiter, take_raw

from ros_harness import wait_until

pytestmark = pytest.mark.ros


@pytest.fixture
def context(ros_context: Context) -> Context:
    return ros_context


class HotNode(Node):
    """A hot raw input ('hot_in'), echoed at once to 'hot_out'; a service; a timer; a plain topic."""

    def __init__(self, context: Context) -> None:
        super().__init__("hot_loop_test_node", context=context)
        self.hot_sub = self.create_subscription(
            String, "hot_in", self._never, 10, raw=True, callback_group=PolledGroup()
        )
        self.out = self.create_publisher(String, "hot_out", 10)
        self.plain: list[str] = []
        self.create_subscription(String, "plain_in", lambda m: self.plain.append(m.data), 10)
        self.create_service(Trigger, "~/ping", self._ping)
        self.ticks = 0
        self.create_timer(0.01, self._tick)
        self.fail_next_ping = False
        # Taken with the hot input but not waited on (as the policy node's imu/data and odom).
        self.side_sub = self.create_subscription(
            String, "side_in", self._never, 10, raw=True, callback_group=PolledGroup()
        )
        self.side: list[bytes] = []

    def hot_inputs(self) -> HotInputs:
        return HotInputs([self.hot_sub], self._on_hot)

    def _never(self, _data: bytes) -> None:
        raise AssertionError("the executor delivered a hot input")

    def _on_hot(self) -> None:
        while (taken := take_raw(self.side_sub)) is not None:
            self.side.append(taken[0])
        while (taken := take_raw(self.hot_sub)) is not None:
            self.out.publish(taken[0])

    def _ping(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.fail_next_ping:
            raise RuntimeError("a callback failed")
        response.success, response.message = True, "pong"
        return response

    def _tick(self) -> None:
        self.ticks += 1


class Loop:
    def __init__(self, node: HotNode) -> None:
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        hot = hot_inputs_of(node)
        assert hot is not None
        self.loop = HotLoop(self.executor, hot)
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(node.context,), daemon=True)
        self.thread.start()

    def _run(self, context: Context) -> None:
        try:
            self.loop.spin(context)
        except BaseException as exc:  # handed to the test thread
            self.error.append(exc)

    def close(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=5)
        self.executor.shutdown()


def test_hot_input_is_handled_and_the_rest_of_the_node_still_runs(context: Context) -> None:
    node = HotNode(context)
    client_node = Node("hot_loop_test_client", context=context)
    to_hot = client_node.create_publisher(String, "hot_in", 10)
    to_plain = client_node.create_publisher(String, "plain_in", 10)
    back = client_node.create_subscription(
        String, "hot_out", lambda _d: None, 10, raw=True, callback_group=PolledGroup()
    )
    replies = Waiter(back, context)
    client = client_node.create_client(Trigger, "/hot_loop_test_node/ping")
    client_executor = SingleThreadedExecutor(context=context)
    client_executor.add_node(client_node)
    loop = Loop(node)
    try:
        end = time.monotonic() + 10
        while to_hot.get_subscription_count() == 0 or back.get_publisher_count() == 0:
            assert time.monotonic() < end, "discovery did not complete"
            time.sleep(0.02)
        for i in range(20):
            to_hot.publish(String(data=f"m{i}"))
            taken = replies.take(2.0)
            assert taken is not None, f"no echo of m{i}"
        assert loop.loop.wakeups >= 10  # (one that arrives during a catch-up is taken right after it)

        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        client_executor.spin_until_future_complete(future, timeout_sec=5)
        assert future.done() and future.result().message == "pong"

        # An input that is taken but not waited on, arriving alone, is taken after the next catch-up.
        to_side = client_node.create_publisher(String, "side_in", 10)
        end = time.monotonic() + 10
        while to_side.get_subscription_count() == 0:
            assert time.monotonic() < end, "discovery did not complete"
            time.sleep(0.02)
        to_side.publish(String(data="side"))
        end = time.monotonic() + 5
        while not node.side and time.monotonic() < end:
            time.sleep(0.005)
        assert len(node.side) == 1

        to_plain.publish(String(data="plain"))
        end = time.monotonic() + 5
        while not node.plain and time.monotonic() < end:
            time.sleep(0.01)
        assert node.plain == ["plain"]
        end = time.monotonic() + 5
        while node.ticks < 10 and time.monotonic() < end:
            time.sleep(0.01)
        assert node.ticks >= 10 and loop.loop.housekeeping_runs >= 10  # the 100 Hz timer runs
        assert not loop.error
    finally:
        loop.close()
        client_executor.shutdown()
    assert not loop.thread.is_alive(), "stop() did not end spin()"


def test_a_hot_input_with_a_deadline_is_served_on_time_without_any_message(context: Context) -> None:
    """``due``: on_ready runs by then though nothing arrives (a lock-stepped bridge whose policy went
    silent steps on after its 1 ms wait), not at the next catch-up 50 ms later."""
    node = HotNode(context)
    calls: list[float] = []
    deadline = [time.monotonic() + 0.2]

    def on_ready() -> None:
        now = time.monotonic()
        if now >= deadline[0]:
            calls.append(now - deadline[0])
            deadline[0] = now + 0.001 if len(calls) < 50 else float("inf")

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    loop = HotLoop(executor, HotInputs([node.hot_sub], on_ready, due=lambda: deadline[0]), housekeeping_s=0.05)
    thread = threading.Thread(target=loop.spin, args=(context,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(calls) == 50, 10.0), len(calls)
    finally:
        loop.stop()
        thread.join(timeout=5)
        executor.shutdown()
        node.destroy_node()
    # Each deadline met at once (a few ms of slack for a loaded machine), never a catch-up period late.
    assert sorted(calls)[len(calls) // 2] < 0.005 and loop.housekeeping_runs < 20


def test_a_failing_executor_callback_ends_spin_with_its_error(context: Context) -> None:
    node = HotNode(context)
    client_node = Node("hot_loop_test_client2", context=context)
    client = client_node.create_client(Trigger, "/hot_loop_test_node/ping")
    node.fail_next_ping = True
    loop = Loop(node)
    try:
        assert client.wait_for_service(timeout_sec=10)
        client.call_async(Trigger.Request())
        loop.thread.join(timeout=5)
        assert not loop.thread.is_alive()
        assert len(loop.error) == 1 and "a callback failed" in str(loop.error[0])
    finally:
        loop.close()


def test_spin_returns_when_the_context_shuts_down(context: Context) -> None:
    loop = Loop(HotNode(context))
    time.sleep(0.05)
    rclpy.shutdown(context=context)
    loop.thread.join(timeout=5)
    assert not loop.thread.is_alive() and not loop.error


class Relay(Node):
    """Hot on ``inbox``: each message taken goes on to ``outbox`` with one ``x`` more (until 200)."""

    def __init__(self, name: str, inbox: str, outbox: str, context: Context) -> None:
        super().__init__(name, context=context)
        self.sub = self.create_subscription(String, inbox, lambda _d: None, 10, raw=True, callback_group=PolledGroup())
        self.pub = self.create_publisher(String, outbox, 10)
        self.taken: list[int] = []
        self.threads: set[int] = set()

    def hot_inputs(self) -> HotInputs:
        return HotInputs([self.sub], self._on_ready)

    def _on_ready(self) -> None:
        self.threads.add(threading.get_ident())
        while (taken := take_raw(self.sub)) is not None:
            count = deserialize_message(taken[0], String).data.count("x")
            self.taken.append(count)
            if count < 200:
                self.pub.publish(String(data="x" * (count + 1)))


def test_one_loop_serves_the_hot_inputs_of_two_nodes_in_one_thread(context: Context) -> None:
    """Two nodes of one process (node_main.run_nodes): a lock-step between their hot inputs, 200
    messages handed back and forth, all in the loop's one thread, each taken by the node it is for."""
    ping, pong = Relay("relay_ping", "to_ping", "to_pong", context), Relay("relay_pong", "to_pong", "to_ping", context)
    executor = SingleThreadedExecutor(context=context)
    for node in (ping, pong):
        executor.add_node(node)
    loop = HotLoop(executor, [hot_inputs_of(ping), hot_inputs_of(pong)])
    thread = threading.Thread(target=loop.spin, args=(context,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: ping.pub.get_subscription_count() and pong.pub.get_subscription_count(), 10.0)
        pong.pub.publish(String(data=""))  # to ping
        assert wait_until(lambda: len(ping.taken) + len(pong.taken) == 201, 10.0), (len(ping.taken), len(pong.taken))
    finally:
        loop.stop()
        thread.join(timeout=5)
        executor.shutdown()
    assert ping.taken == list(range(0, 201, 2)) and pong.taken == list(range(1, 200, 2))
    assert ping.threads == pong.threads == {thread.ident}


def test_a_context_shut_down_under_on_ready_ends_spin_quietly(context: Context) -> None:
    """The shutdown can land while a hot input is being taken (its handle then refuses): spin ends as
    when it lands during the wait, instead of raising out of the node's main loop."""
    node = HotNode(context)
    calls: list[int] = []

    def on_ready() -> None:
        calls.append(1)
        rclpy.shutdown(context=context)
        take_raw(node.hot_sub)

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    HotLoop(executor, HotInputs([node.hot_sub], on_ready)).spin(context)  # returns, raises nothing
    assert calls == [1]


def test_a_hot_loop_needs_a_subscription_and_plain_nodes_have_none(context: Context) -> None:
    node = Node("hot_loop_test_plain", context=context)
    assert hot_inputs_of(node) is None
    with pytest.raises(ValueError, match="at least one subscription"):
        HotLoop(SingleThreadedExecutor(context=context), HotInputs([], lambda: None))


def test_waiter_returns_none_after_its_timeout(context: Context) -> None:
    node = Node("hot_loop_test_waiter", context=context)
    sub = node.create_subscription(
        String, "nobody_publishes", lambda _d: None, 10, raw=True, callback_group=PolledGroup()
    )
    t0 = time.monotonic()
    assert Waiter(sub, context).take(0.1) is None
    assert 0.09 <= time.monotonic() - t0 < 1.0
